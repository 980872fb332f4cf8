"""``efsora perceive IMAGE...``: the engine on the command line.

One image prints (or writes) one :class:`PerceptionResult`; several images or a folder give a
:class:`PerceptionBatch` with the results and, per bad file, a one-line error. Exit codes: 0 all
good, 1 some images failed (the others are still written), 2 nothing usable (a one-line reason).

Taught in ``notebooks/perception/05_engine.ipynb``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from ..paths import write_atomically


def add_commands(sub) -> None:
    p = sub.add_parser("perceive", help="detect, segment and read an image (or a folder); print one JSON result")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("-o", "--output", type=Path, help="write the JSON here instead of stdout")
    p.add_argument("--no-detection", dest="detection", action="store_false")
    p.add_argument("--no-segmentation", dest="segmentation", action="store_false")
    p.add_argument("--no-ocr", dest="ocr", action="store_false")
    p.add_argument("--confidence", type=float, default=0.25, help="minimum detection confidence (0-1)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (0-1)")
    p.add_argument("--include-masks", action="store_true", help="add each segment's mask (compact)")
    p.add_argument("--mask-encoding", choices=("rle", "png"), default="rle")
    p.add_argument("--max-size", type=int, default=1280, help="shrink images so the longer side is at most this")
    p.add_argument("--weights", default="safetyscenes",
                   help="safetyscenes (offline default), coco (official yolov8n, needs `efsora assets fetch`), an asset name or a .pt file")
    p.add_argument("--ocr-engine", choices=("easyocr", "rapidocr"), default="easyocr")
    p.add_argument("--ocr-scope", choices=("image", "signs"), default="image",
                   help="read the whole image, or only inside detected signs (faster)")
    p.add_argument("--zones", type=Path, help='JSON {"zone_name": [[x, y], ...]} (a SafetyScenes ground-truth file works too)')
    p.add_argument("--compact", action="store_true", help="one-line JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=_perceive)


def load_zones(path: Path | None) -> dict[str, list]:
    """Zones from a JSON file: ``{name: polygon}``, or any JSON with a ``zones`` key."""
    if path is None:
        return {}
    if not path.is_file():
        raise ValueError(f"{path}: no such zones file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    zones = data.get("zones", data) if isinstance(data, dict) else None
    if not isinstance(zones, dict) or not all(
        isinstance(poly, list) and len(poly) >= 3 and all(isinstance(pt, list) and len(pt) == 2 for pt in poly)
        for poly in zones.values()
    ):
        raise ValueError(f'{path}: expected {{"zone_name": [[x, y], [x, y], [x, y], ...]}}')
    return zones


def _perceive(args) -> int:
    from ..env import prepare_offline_environment, quiet_known_warnings, seed_everything
    from .engine import EngineConfig, PerceptionEngine, expand_inputs
    from .schema import ImageFailure, PerceptionBatch

    prepare_offline_environment(online=os.environ.get("EFSORA_ONLINE") == "1")
    seed_everything(0)
    quiet_known_warnings()

    if not (args.detection or args.segmentation or args.ocr):
        raise ValueError("every stage is switched off; drop one of --no-detection/--no-segmentation/--no-ocr")
    config = EngineConfig(detection=args.detection, segmentation=args.segmentation, ocr=args.ocr,
                          confidence=args.confidence, iou=args.iou, include_masks=args.include_masks,
                          mask_encoding=args.mask_encoding, max_size=args.max_size, weights=args.weights,
                          ocr_engine=args.ocr_engine, ocr_scope=args.ocr_scope, zones=load_zones(args.zones))
    paths = expand_inputs(args.images)
    single = len(paths) == 1 and not Path(args.images[0]).is_dir()
    engine = PerceptionEngine(config)
    results, failures = [], []
    # Libraries log to stdout (ultralytics' requirement warnings); stdout must carry only the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        for path, outcome in engine.perceive_many(paths, progress=args.progress and not single):
            if isinstance(outcome, Exception):
                failures.append(ImageFailure(image_path=str(path), error=str(outcome)))
                print(f"efsora: {'error' if single else 'skipped'}: {outcome}", file=sys.stderr)
            else:
                results.append(outcome)
    if single and failures:
        return 2  # the one reason is already on stderr
    indent = None if args.compact else 2
    if single:
        text = results[0].model_dump_json(indent=indent)
    else:
        text = PerceptionBatch(results=results, errors=failures).model_dump_json(indent=indent)
    if args.output:
        write_atomically(args.output, text + "\n")
        print(f"wrote {args.output} ({len(results)} image(s), {len(failures)} error(s))", file=sys.stderr)
    else:
        print(text)
    if not results:
        return 2
    return 1 if failures else 0
