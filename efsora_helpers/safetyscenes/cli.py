"""``efsora scenes ...``: generate and check the SafetyScenes dataset (added to ``efsora``)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path


def add_commands(sub) -> None:
    p = sub.add_parser("scenes", help="the SafetyScenes synthetic warehouse dataset")
    s = p.add_subparsers(dest="action", required=True)
    gen = s.add_parser("generate", help="regenerate the shipped dataset byte for byte (data/safetyscenes)")
    gen.add_argument("--out", type=Path, default=None, help="write here instead of data/safetyscenes")
    gen.add_argument("--check", action="store_true", help="regenerate into a temporary folder and compare sha256s")
    gen.set_defaults(func=_generate)
    vid = s.add_parser("video", help="regenerate the long clips of chapter 5 byte for byte (data/video)")
    vid.add_argument("names", nargs="*", help="only these clips (default: all of them)")
    vid.add_argument("--out", type=Path, default=None, help="write here instead of data/video")
    vid.add_argument("--check", action="store_true", help="regenerate into a temporary folder and compare sha256s")
    vid.set_defaults(func=_video)
    one = s.add_parser("render", help="render one scene (any seed) to an image and its ground truth")
    one.add_argument("seed", type=int)
    one.add_argument("-o", "--out", type=Path, required=True, help="image path (.jpg or .png); JSON beside it")
    one.set_defaults(func=_render)
    tr = s.add_parser("train", help="train the default detector or segmenter from scratch (CPU: about an hour)")
    tr.add_argument("task", choices=["detect", "segment"])
    tr.add_argument("--epochs", type=int, default=40)
    tr.add_argument("--imgsz", type=int, default=416)
    tr.add_argument("--n-train", type=int, default=800, help="training scenes rendered from fixed seeds")
    tr.add_argument("--work", type=Path, default=None, help="where to render the training set (default _build/)")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--init", type=Path, default=None, help="continue from these weights instead of from scratch")
    tr.set_defaults(func=_train)
    ev = s.add_parser("evaluate", help="measure a model on scenes rendered from unseen seeds")
    ev.add_argument("weights", type=Path)
    ev.add_argument("--images", type=int, default=300)
    ev.add_argument("--imgsz", type=int, default=416)
    ev.add_argument("-o", "--out", type=Path, default=None, help="report JSON (default: <weights>.eval.json)")
    ev.set_defaults(func=_evaluate)
    card = s.add_parser("model-card", help="write data/models/README.md from the training and evaluation records")
    card.set_defaults(func=_model_card)


def shipped_root() -> Path:
    from ..paths import repo_root

    return repo_root() / "data" / "safetyscenes"


def compare_manifests(expected: dict, actual: dict) -> list[str]:
    """Files whose sha256 differ, or that only one side has."""
    names = sorted(set(expected) | set(actual))
    return [n for n in names if expected.get(n, {}).get("sha256") != actual.get(n, {}).get("sha256")]


def _generate(args) -> int:
    from .dataset import write_dataset

    if args.check:
        shipped = json.loads((shipped_root() / "manifest.json").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            write_dataset(Path(tmp))
            fresh = json.loads((Path(tmp) / "manifest.json").read_text())
        diff = compare_manifests(shipped, fresh)
        if diff:
            print(f"{len(diff)} file(s) differ from the shipped manifest, e.g. {diff[:5]}", file=sys.stderr)
            return 1
        print(f"identical: {len(fresh)} files match the shipped manifest")
        return 0
    out = args.out or shipped_root()
    for sub in ("images", "labels", "labels_detect", "ground_truth", "coco"):
        shutil.rmtree(out / sub, ignore_errors=True)  # no stale files from an older version
    write_dataset(out)
    print(f"wrote {out}")
    return 0


def _video(args) -> int:
    import time

    from .video import STORIES, stories_root, write_stories

    unknown = [n for n in args.names if n not in STORIES]
    if unknown:
        raise ValueError(f"no clip named {unknown[0]!r}; clips: {', '.join(STORIES)}")
    names = args.names or list(STORIES)
    start = time.perf_counter()
    if args.check:
        shipped = json.loads((stories_root() / "manifest.json").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            write_stories(tmp, names)
            fresh = json.loads((Path(tmp) / "manifest.json").read_text())
        diff = compare_manifests({k: v for k, v in shipped.items() if k in fresh}, fresh)
        if diff:
            print(f"{len(diff)} file(s) differ from the shipped manifest, e.g. {diff[:5]}", file=sys.stderr)
            return 1
        print(f"identical: {len(fresh)} files match the shipped manifest ({time.perf_counter() - start:.0f} s)")
        return 0
    out = args.out or stories_root()
    write_stories(out, names)
    print(f"wrote {len(names)} clip(s) to {out} in {time.perf_counter() - start:.0f} s")
    return 0


def _render(args) -> int:
    import cv2

    from ..vocabulary import Count
    from .dataset import ground_truth
    from .render import render_scene

    if args.out.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise ValueError(f"cannot write an image to {args.out}: use a .jpg or .png file name")
    if not args.out.parent.is_dir():
        raise FileNotFoundError(f"no folder {args.out.parent} to write {args.out.name} into")
    scene = render_scene(args.seed)
    cv2.imwrite(str(args.out), scene.image)
    gt = ground_truth(scene, str(args.out))
    args.out.with_suffix(".json").write_text(json.dumps(gt, indent=1, sort_keys=True) + "\n")
    print(f"{args.out}: {len(scene.instances)} objects, {gt['counts'][Count.WORKERS_WITHOUT_HARD_HAT]} "
          "worker(s) without a hard hat")
    return 0


def models_dir() -> Path:
    from ..paths import repo_root

    return repo_root() / "data" / "models"


def _train(args) -> int:
    from ..env import setup
    from ..paths import repo_root
    from .train import train

    setup(quiet=True)
    suffix = "det" if args.task == "detect" else "seg"
    record = train(args.task, models_dir() / f"safetyscenes-yolov8n-{suffix}.pt",
                   args.work or repo_root() / "_build" / "safetyscenes-train", n_train=args.n_train,
                   epochs=args.epochs, imgsz=args.imgsz, device=args.device, init=args.init)
    print(json.dumps(record, indent=1))
    return 0


def _evaluate(args) -> int:
    from ..env import setup
    from .evaluate import evaluate, save_report

    setup(quiet=True)
    if not args.weights.exists():
        raise FileNotFoundError(f"no weights at {args.weights}")
    report = evaluate(args.weights, n_images=args.images, imgsz=args.imgsz)
    save_report(report, args.out or args.weights.with_suffix(".eval.json"))
    print(json.dumps(report, indent=1))
    return 0


def _model_card(args) -> int:
    from .train import model_card

    (models_dir() / "README.md").write_text(model_card(models_dir()))
    print(f"wrote {models_dir() / 'README.md'}")
    return 0
