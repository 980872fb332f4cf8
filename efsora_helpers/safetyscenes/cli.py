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
    one = s.add_parser("render", help="render one scene (any seed) to an image and its ground truth")
    one.add_argument("seed", type=int)
    one.add_argument("-o", "--out", type=Path, required=True, help="image path (.jpg or .png); JSON beside it")
    one.set_defaults(func=_render)


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


def _render(args) -> int:
    import cv2

    from .dataset import ground_truth
    from .render import render_scene

    scene = render_scene(args.seed)
    if not cv2.imwrite(str(args.out), scene.image):
        raise ValueError(f"cannot write an image to {args.out} (use .jpg or .png)")
    gt = ground_truth(scene, str(args.out))
    args.out.with_suffix(".json").write_text(json.dumps(gt, indent=1, sort_keys=True) + "\n")
    print(f"{args.out}: {len(scene.instances)} objects, {gt['counts']['workers_without_hard_hat']} "
          "worker(s) without a hard hat")
    return 0
