"""The new detection task and its dataset preparation: collect, deduplicate, split, write, check.

The task: SafetyScenes rendered with ``SceneConfig(new_classes=True, night_probability=0.3)``, so
three classes the shipped detector has never seen (``vocabulary.NewClass``: fire extinguisher,
spill, safety goggles) appear next to its six, and about a third of the scenes are lit at night (a
domain shift). Labels are exact (from the renderer's owner map), so every number measured here is
about the method, not about labelling noise.

The preparation, in the order a real project does it:

1. ``collect``: render scenes from seeds into a raw folder, as a camera would deliver them, with the
   accidents a real collection has: a few frames saved twice (an exact byte copy) and a few
   re-captured (the same scene encoded again at another JPEG quality).
2. ``find_duplicates``: exact duplicates by sha256 of the bytes; near duplicates by a 64-bit
   difference hash (dHash) of the pixels, measured against the distances between distinct scenes.
3. ``split_by_seed``: every capture of a scene goes to the split its seed hashes to, so no scene is
   on both sides of the train/test line (the leakage a split by image would cause).
4. ``write_yolo`` / ``write_coco``: the same boxes in both formats; ``cross_check`` reads both back
   and compares them box by box.
5. ``class_balance``: instances and images per class and split.
6. ``AUGMENT``: the training's augmentation settings, set against ultralytics' defaults.

``prepare`` runs all of it (``efsora finetune data``). Taught in
``notebooks/finetuning/01_dataset.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..paths import efsora_home
from ..safetyscenes.dataset import encode_jpeg, jpeg_quality
from ..safetyscenes.render import SceneConfig, render_scene
from ..vocabulary import FINETUNE_CLASSES, NewClass

#: First seed of the task. No other SafetyScenes range (shipped splits 100k-300k, training renders
#: 500k/600k, fresh tests 900k) comes near it.
SEED_BASE = 1_400_000
CONFIG = SceneConfig(new_classes=True, night_probability=0.3)
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(FINETUNE_CLASSES)}
NEW_CLASSES: tuple[str, ...] = tuple(c.value for c in NewClass)
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.7, "val": 0.15, "test": 0.15}
#: Default sizes of the prepared task: 200 training scenes (the learning curve's largest size), 50 + 50.
DEFAULT_SIZES: dict[str, int] = {"train": 200, "val": 50, "test": 50}
#: A collection's accidents, by seed: every 23rd scene is re-captured, every 37th saved twice.
RECAPTURE_EVERY, COPY_EVERY = 23, 37
#: dHash side (16: 256 bits) and the Hamming distance at or below which two images are near
#: duplicates. Measured in the notebook: re-captures differ by a few bits of 256, distinct scenes by
#: dozens; the common 8x8 hash (64 bits) brought two different night scenes within 6 bits.
HASH_SIZE, NEAR_DUPLICATE_BITS = 16, 12


def default_root() -> Path:
    return efsora_home() / "finetuning" / "detect-task"


@dataclass
class Capture:
    """One image of the raw collection and its labels (pixel boxes ``x1 y1 x2 y2``)."""

    image_id: str
    seed: int
    kind: str  # "original", "recapture" (re-encoded) or "copy" (the same bytes again)
    width: int
    height: int
    lighting: str
    labels: list[str] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)

    @property
    def file(self) -> str:
        return f"{self.image_id}.jpg"


def split_of(seed: int) -> str:
    """The split a scene belongs to, from a hash of its seed alone: stable whatever else is in the
    collection, and the same for every capture of the scene."""
    u = int(hashlib.sha256(f"safetyscenes-finetune:{seed}".encode()).hexdigest()[:8], 16) / 16**8
    edge = 0.0
    for split, fraction in SPLIT_FRACTIONS.items():
        edge += fraction
        if u < edge:
            return split
    return split


def task_seeds(sizes: dict[str, int] | None = None) -> dict[str, list[int]]:
    """The first seeds from ``SEED_BASE`` on that fill each split's quota, in seed order. A smaller
    request gives a prefix of a larger one, so the training subsets of the learning curve nest."""
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    out: dict[str, list[int]] = {s: [] for s in sizes}
    seed = SEED_BASE
    while any(len(out[s]) < n for s, n in sizes.items()):
        split = split_of(seed)
        if split in out and len(out[split]) < sizes[split]:
            out[split].append(seed)
        seed += 1
        if seed > SEED_BASE + 100 * (sum(sizes.values()) + 10):
            raise RuntimeError(f"cannot fill the splits {sizes}: a split's fraction is zero?")
    return out


def render(seed: int):
    """The task's scene for ``seed``."""
    return render_scene(seed, image_id=f"s{seed}", config=CONFIG)


def collect(raw: Path, seeds: list[int], progress: bool = False) -> list[Capture]:
    """Render ``seeds`` into ``raw`` as JPEGs, with the accidental duplicates described in the module
    doc, and write ``captures.jsonl``. Returns the captures in collection order."""
    from tqdm import tqdm

    raw = Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    captures = []
    for seed in tqdm(seeds, desc="render", disable=not progress):
        scene = render(seed)
        base = dict(seed=seed, width=scene.width, height=scene.height,
                    lighting=scene.params.get("lighting", "day"),
                    labels=[str(i.label) for i in scene.instances], boxes=[list(i.bbox) for i in scene.instances],
                    areas=[i.area for i in scene.instances])
        data = encode_jpeg(scene.image, seed)
        cap = Capture(image_id=f"s{seed}", kind="original", **base)
        (raw / cap.file).write_bytes(data)
        captures.append(cap)
        if seed % RECAPTURE_EVERY == 0:  # the same scene saved again by another program
            quality = max(60, jpeg_quality(seed) - 15)
            ok, buf = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            again = Capture(image_id=f"s{seed}_recapture", kind="recapture", **base)
            (raw / again.file).write_bytes(buf.tobytes())
            captures.append(again)
        if seed % COPY_EVERY == 0:  # a folder merged twice
            copy = Capture(image_id=f"s{seed}_copy", kind="copy", **base)
            (raw / copy.file).write_bytes(data)
            captures.append(copy)
    (raw / "captures.jsonl").write_text("".join(json.dumps(asdict(c), sort_keys=True) + "\n" for c in captures))
    return captures


def load_captures(raw: Path) -> list[Capture]:
    return [Capture(**json.loads(line)) for line in (Path(raw) / "captures.jsonl").read_text().splitlines()]


# ---- deduplication --------------------------------------------------------------------------------

def dhash(image: np.ndarray, size: int = HASH_SIZE) -> np.ndarray:
    """Difference hash: grey, shrink to (size+1) x size, one bit per horizontal neighbour pair
    (is the left pixel brighter?); ``size * size`` bits. Robust to re-encoding, noise and small
    brightness changes; weak on dark, low-contrast frames when ``size`` is small."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (size + 1, size), interpolation=cv2.INTER_AREA).astype(np.int16)
    return (small[:, :-1] > small[:, 1:]).flatten()


def hamming_matrix(hashes) -> np.ndarray:
    """Pairwise Hamming distances of equal-length bit vectors (rows of ``hashes``)."""
    b = np.asarray(hashes, dtype=np.int32)
    return b.shape[1] - (b @ b.T + (1 - b) @ (1 - b).T)


@dataclass
class DedupReport:
    files: list[str]
    sha256: list[str]
    dhash: np.ndarray  # one row of bits per file
    exact_groups: list[list[str]]  # files with identical bytes (groups of 2+)
    near_groups: list[list[str]]  # files within NEAR_DUPLICATE_BITS of each other (groups of 2+)
    keep: list[str]  # the first file of each near group, and every other file

    @property
    def removed(self) -> list[str]:
        return [f for f in self.files if f not in set(self.keep)]


def find_duplicates(folder: Path, files: list[str], bits: int = NEAR_DUPLICATE_BITS,
                    size: int = HASH_SIZE) -> DedupReport:
    """Exact (sha256) and near (``size`` x ``size`` dHash within ``bits``) duplicate groups among
    ``files`` of ``folder``, grouped transitively; keeps the first file of each group."""
    folder = Path(folder)
    digests, hashes = [], []
    for name in files:
        data = (folder / name).read_bytes()
        digests.append(hashlib.sha256(data).hexdigest())
        hashes.append(dhash(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE), size))
    by_digest: dict[str, list[str]] = {}
    for name, digest in zip(files, digests):
        by_digest.setdefault(digest, []).append(name)
    exact = [g for g in by_digest.values() if len(g) > 1]
    dist = hamming_matrix(hashes)
    parent = list(range(len(files)))  # union-find over near pairs

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(dist <= bits, k=1))):
        parent[root(int(j))] = root(int(i))
    groups: dict[int, list[str]] = {}
    for i, name in enumerate(files):
        groups.setdefault(root(i), []).append(name)
    near = [g for g in groups.values() if len(g) > 1]
    keep = [g[0] for g in groups.values()]
    keep = [f for f in files if f in set(keep)]
    return DedupReport(list(files), digests, np.array(hashes), exact, near, keep)


# ---- splits -----------------------------------------------------------------------------------

def split_by_seed(captures: list[Capture]) -> dict[str, list[Capture]]:
    out: dict[str, list[Capture]] = {s: [] for s in SPLIT_FRACTIONS}
    for c in captures:
        out[split_of(c.seed)].append(c)
    return out


def seeds_in_more_than_one_split(splits: dict[str, list[Capture]]) -> set[int]:
    seen: dict[int, set[str]] = {}
    for split, caps in splits.items():
        for c in caps:
            seen.setdefault(c.seed, set()).add(split)
    return {seed for seed, where in seen.items() if len(where) > 1}


# ---- formats ----------------------------------------------------------------------------------

def yolo_lines(c: Capture) -> list[str]:
    """YOLO detection labels: ``class cx cy w h``, normalised to the image size."""
    lines = []
    for label, (x1, y1, x2, y2) in zip(c.labels, c.boxes):
        cx, cy = (x1 + x2) / 2 / c.width, (y1 + y2) / 2 / c.height
        lines.append(f"{CLASS_ID[label]} {cx:.6f} {cy:.6f} {(x2 - x1) / c.width:.6f} {(y2 - y1) / c.height:.6f}")
    return lines


def coco_dict(captures: list[Capture], description: str) -> dict:
    """COCO detection JSON: ``bbox`` is ``[x, y, width, height]`` in pixels, category ids start at 1."""
    images, anns = [], []
    for k, c in enumerate(captures, 1):
        images.append({"id": k, "file_name": c.file, "width": c.width, "height": c.height})
        for label, (x1, y1, x2, y2), area in zip(c.labels, c.boxes, c.areas):
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": CLASS_ID[label] + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": area, "iscrowd": 0})
    cats = [{"id": i + 1, "name": n, "supercategory": "warehouse"} for i, n in enumerate(FINETUNE_CLASSES)]
    return {"info": {"description": description}, "images": images, "annotations": anns, "categories": cats}


def data_yaml(train: str = "images/train") -> str:
    lines = ["# SafetyScenes fine-tuning task (chapter 4). Written by `efsora finetune data`.",
             "# no `path:` key: ultralytics resolves the splits next to this file",
             f"train: {train}", "val: images/val", "test: images/test", "names:"]
    return "\n".join(lines + [f"  {i}: {n}" for i, n in enumerate(FINETUNE_CLASSES)]) + "\n"


def write_split(root: Path, raw: Path, split: str, captures: list[Capture]) -> None:
    """Images (hard links into ``raw`` where possible), YOLO labels and the split's COCO JSON."""
    root, raw = Path(root), Path(raw)
    for sub in ("images", "labels"):
        d = root / "yolo" / sub / split
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for c in captures:
        target = root / "yolo" / "images" / split / c.file
        try:
            target.hardlink_to(raw / c.file)
        except OSError:
            shutil.copyfile(raw / c.file, target)
        (root / "yolo" / "labels" / split / f"{c.image_id}.txt").write_text("\n".join(yolo_lines(c)) + "\n")
    (root / "coco").mkdir(parents=True, exist_ok=True)
    (root / "coco" / f"{split}.json").write_text(json.dumps(coco_dict(captures, f"finetune {split}"), sort_keys=True) + "\n")


def read_yolo(label_file: Path, width: int, height: int) -> list[tuple[int, list[float]]]:
    """A YOLO label file back to ``(class id, [x1, y1, x2, y2] pixels)``."""
    out = []
    for line in Path(label_file).read_text().split("\n"):
        if line.strip():
            k, cx, cy, w, h = line.split()
            cx, cy, w, h = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
            out.append((int(k), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    return out


def cross_check(root: Path, split: str) -> dict:
    """Read the split's YOLO labels and COCO JSON back and compare them box by box: same images,
    same number of boxes, same classes (COCO id = YOLO id + 1), corners within ``max_px``."""
    root = Path(root)
    coco = json.loads((root / "coco" / f"{split}.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    worst, boxes, class_mismatch, count_mismatch = 0.0, 0, 0, 0
    for img in coco["images"]:
        stem = Path(img["file_name"]).stem
        yolo = read_yolo(root / "yolo" / "labels" / split / f"{stem}.txt", img["width"], img["height"])
        anns = by_image.get(img["id"], [])
        if len(anns) != len(yolo):
            count_mismatch += 1
            continue
        for (k, box), a in zip(yolo, anns):
            x, y, w, h = a["bbox"]
            class_mismatch += int(a["category_id"] != k + 1)
            worst = max(worst, float(np.max(np.abs(np.array(box) - [x, y, x + w, y + h]))))
            boxes += 1
    images_on_disk = {p.stem for p in (root / "yolo" / "images" / split).glob("*.jpg")}
    return {"split": split, "images": len(coco["images"]), "boxes": boxes, "max_px": round(worst, 4),
            "class_mismatches": class_mismatch, "count_mismatches": count_mismatch,
            "images_match": images_on_disk == {Path(i["file_name"]).stem for i in coco["images"]}}


def class_balance(splits: dict[str, list[Capture]]):
    """A table: instances per class and split, and the share of images that contain the class."""
    import pandas as pd

    rows = []
    for name in FINETUNE_CLASSES:
        row = {"class": name, "new": name in NEW_CLASSES}
        for split, caps in splits.items():
            row[f"{split}_instances"] = sum(c.labels.count(name) for c in caps)
            row[f"{split}_images_%"] = round(100 * sum(name in c.labels for c in caps) / max(1, len(caps)), 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index("class")


# ---- augmentation -----------------------------------------------------------------------------

#: The training's augmentation where it is pinned, and why (everything else: ultralytics' defaults).
AUGMENT: dict[str, tuple[float, str]] = {
    "fliplr": (0.0, "changed from 0.5: a horizontal flip mirrors sign text, which no warehouse shows; the other "
                    "classes are left-right symmetric and the renderer already draws both facings"),
    "flipud": (0.0, "the default, pinned: the floor is always below, an upside-down forklift teaches nothing"),
    "degrees": (0.0, "the default, pinned: a fixed, level camera; rotating a box also loosens it"),
}


def train_augmentation() -> dict[str, float]:
    """The augmentation arguments the grid passes to ``model.train``."""
    return {k: v for k, (v, _) in AUGMENT.items()}


def ultralytics_defaults(keys=("fliplr", "flipud", "degrees", "translate", "scale", "hsv_h", "hsv_s", "hsv_v",
                               "mosaic", "mixup", "close_mosaic")) -> dict:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return {k: DEFAULT_CFG_DICT[k] for k in keys}


# ---- all of it ----------------------------------------------------------------------------------

def prepare(root: Path | None = None, sizes: dict[str, int] | None = None, progress: bool = False) -> dict:
    """Collect, deduplicate, split by seed, write YOLO and COCO, cross-check, count. Writes
    ``report.json`` in ``root`` and returns it. Re-running with the same sizes re-renders nothing."""
    root = Path(root or default_root())
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    if any(n < 1 for n in sizes.values()) or set(sizes) != set(SPLIT_FRACTIONS):
        raise ValueError(f"sizes must give train, val and test at least one scene each, not {sizes}")
    report_path = root / "report.json"
    if report_path.exists():
        report = json.loads(report_path.read_text())
        if report.get("sizes") == sizes:
            return report
    seeds = task_seeds(sizes)
    ordered = sorted(s for v in seeds.values() for s in v)
    raw = root / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    captures = collect(raw, ordered, progress)
    dedup = find_duplicates(raw, [c.file for c in captures])
    kept = [c for c in captures if c.file in set(dedup.keep)]
    splits = split_by_seed(kept)
    for split, caps in splits.items():
        write_split(root, raw, split, caps)
    (root / "yolo" / "data.yaml").write_text(data_yaml())
    checks = [cross_check(root, s) for s in splits]
    report = {
        "sizes": sizes, "seeds": seeds, "captures": len(captures),
        "exact_duplicate_groups": len(dedup.exact_groups), "near_duplicate_groups": len(dedup.near_groups),
        "removed": dedup.removed, "images": {s: len(c) for s, c in splits.items()},
        "seeds_in_two_splits": sorted(seeds_in_more_than_one_split(splits)),
        "night_images": {s: sum(c.lighting == "night" for c in caps) for s, caps in splits.items()},
        "cross_check": checks,
        "balance": class_balance(splits).reset_index().to_dict(orient="records"),
    }
    report_path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return report


def train_subset_yaml(root: Path, n: int) -> Path:
    """A data.yaml whose training set is the first ``n`` training scenes (in seed order: the subsets
    nest), listed in a text file, so no image is copied."""
    root = Path(root)
    images = sorted((root / "yolo" / "images" / "train").glob("*.jpg"), key=lambda p: int(p.stem[1:].split("_")[0]))
    if n > len(images):
        raise ValueError(f"asked for {n} training scenes; the prepared task has {len(images)} (efsora finetune data --train N)")
    listing = root / "yolo" / f"train_{n}.txt"
    listing.write_text("".join(f"./images/train/{p.name}\n" for p in images[:n]))
    path = root / "yolo" / f"data_train_{n}.yaml"
    path.write_text(data_yaml(train=listing.name))
    return path
