"""SafetyScenes on disk: YOLO labels, COCO JSON, per-image ground truth, a manifest, a card.

``write_dataset(root)`` renders every split from fixed seeds and writes, byte for byte the same
on every run (same library versions):

* ``images/<split>/<id>.jpg`` and YOLO segmentation labels ``labels/<split>/<id>.txt``
  (``class x1 y1 x2 y2 ...``, normalised polygons). ultralytics trains both detectors and
  segmenters from these (a detector takes each polygon's box);
* ``labels_detect/<split>/<id>.txt``: the same objects as YOLO boxes (``class cx cy w h``);
* ``data.yaml`` for ultralytics; ``coco/<split>.json`` with exact boxes and RLE masks;
* ``ground_truth/<split>/<id>.json``: the scene in the perception schema's terms (objects, text
  regions, workers with PPE, the forklift zone, counts) so questions have checkable answers;
* ``manifest.json`` (sha256 of every file) and ``README.md`` (the dataset card).

Taught in ``notebooks/setup/safetyscenes.ipynb``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..assets import sha256_of

from ..vocabulary import IN_FORKLIFT_ZONE, Count, ObjectClass
from .render import CLASSES, CLASS_ID, Scene, render_scene

# Fixed seed ranges: the shipped splits. Quality bars are measured on unseen seeds (FRESH_TEST).
SPLITS: dict[str, tuple[int, int]] = {"train": (100_000, 240), "val": (200_000, 60), "test": (300_000, 60)}
FRESH_TEST_BASE = 900_000


def split_seeds(split: str, count: int | None = None) -> list[int]:
    base, n = SPLITS[split]
    return list(range(base, base + (n if count is None else count)))


def jpeg_quality(seed: int) -> int:
    return int(np.random.default_rng([seed, 7]).integers(70, 93))


def encode_jpeg(image: np.ndarray, seed: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality(seed)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _polygons(mask: np.ndarray) -> list[np.ndarray]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2) for c in contours if len(c) >= 3]


def yolo_segment_lines(scene: Scene) -> list[str]:
    """One line per instance, normalised. YOLO allows one polygon per line, so a mask that an
    occluder splits into parts is joined into one polygon by thin bridges (ultralytics' own
    ``merge_multi_segment``, as its COCO converter does); keeping only the largest part would
    shrink the object's box. Contour points are pixel centres, hence the +0.5."""
    lines = []
    for inst in scene.instances:
        polys = _polygons(inst.mask)
        if not polys:
            continue
        if len(polys) == 1:
            poly = polys[0]
        else:
            from ultralytics.data.converter import merge_multi_segment

            poly = np.concatenate(merge_multi_segment([p.reshape(-1).tolist() for p in polys]), axis=0)
        poly = poly.astype(np.float64) + 0.5
        coords = " ".join(f"{x / scene.width:.6f} {y / scene.height:.6f}" for x, y in poly)
        lines.append(f"{CLASS_ID[inst.label]} {coords}")
    return lines


def yolo_detect_lines(scene: Scene) -> list[str]:
    lines = []
    for inst in scene.instances:
        x1, y1, x2, y2 = inst.bbox
        cx, cy = (x1 + x2) / 2 / scene.width, (y1 + y2) / 2 / scene.height
        w, h = (x2 - x1) / scene.width, (y2 - y1) / scene.height
        lines.append(f"{CLASS_ID[inst.label]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def coco_annotations(scene: Scene, image_index: int, first_ann_id: int) -> tuple[dict, list[dict]]:
    image = {"id": image_index, "file_name": f"{scene.image_id}.jpg", "width": scene.width, "height": scene.height}
    anns = []
    for k, inst in enumerate(scene.instances):
        x1, y1, x2, y2 = inst.bbox
        anns.append({
            "id": first_ann_id + k, "image_id": image_index, "category_id": CLASS_ID[inst.label] + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": inst.area, "iscrowd": 0,
            "segmentation": rle(inst.mask),
        })
    return image, anns


def coco_categories() -> list[dict]:
    return [{"id": i + 1, "name": name, "supercategory": "warehouse"} for i, name in enumerate(CLASSES)]


def ground_truth(scene: Scene, image_path: str) -> dict:
    """The scene in the terms of chapter 1's perception result, plus the answers chapters ask for."""
    r = lambda v: round(float(v), 1)  # noqa: E731
    objects = [{"id": i.id, "label": i.label, "confidence": 1.0, "bbox": [r(v) for v in i.bbox]} for i in scene.instances]
    workers = []
    hat, vest = ObjectClass.HARD_HAT, ObjectClass.VEST
    for i in scene.by_label(ObjectClass.PERSON):
        a = i.attributes
        workers.append({"id": i.id, "bbox": [r(v) for v in i.bbox], hat: a[hat], vest: a[vest],
                        IN_FORKLIFT_ZONE: a[IN_FORKLIFT_ZONE], "pose": a["pose"]})
    texts = [{"text": t.text, "bbox": [r(v) for v in t.bbox], "confidence": 1.0, "sign_id": t.sign_id}
             for t in scene.text_regions]
    counts = {label: len(scene.by_label(label)) for label in CLASSES}
    counts |= {
        Count.WORKERS_WITHOUT_HARD_HAT: sum(not w[hat] for w in workers),
        Count.WORKERS_WITHOUT_VEST: sum(not w[vest] for w in workers),
        Count.WORKERS_IN_FORKLIFT_ZONE: sum(w[IN_FORKLIFT_ZONE] for w in workers),
        Count.WORKERS_IN_FORKLIFT_ZONE_WITHOUT_VEST: sum(w[IN_FORKLIFT_ZONE] and not w[vest] for w in workers),
    }
    return {
        "schema": "safetyscenes-ground-truth/1",
        "image_path": image_path,
        "image_info": {"width": scene.width, "height": scene.height},
        "seed": scene.seed,
        "objects": objects,
        "segments": [{"id": i.id, "label": i.label, "bbox": [r(v) for v in i.bbox], "area": i.area} for i in scene.instances],
        "text_regions": texts,
        "workers": workers,
        "zones": {k: [[r(x), r(y)] for x, y in v] for k, v in scene.zones.items()},
        "counts": counts,
        "render": scene.params,
    }


def _dump(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def write_split(root: Path, split: str, seeds: list[int], progress: bool = True) -> dict:
    """Render and write one split; returns per-class instance counts."""
    root = Path(root)
    for sub in ("images", "labels", "labels_detect", "ground_truth"):
        (root / sub / split).mkdir(parents=True, exist_ok=True)
    coco = {"info": {"description": f"SafetyScenes {split}"}, "images": [], "annotations": [],
            "categories": coco_categories()}
    counts = dict.fromkeys(CLASSES, 0)
    for index, seed in enumerate(tqdm(seeds, desc=f"SafetyScenes {split}", disable=not progress)):
        scene = render_scene(seed, image_id=f"{split}_{index:04d}")
        name = scene.image_id
        (root / "images" / split / f"{name}.jpg").write_bytes(encode_jpeg(scene.image, seed))
        (root / "labels" / split / f"{name}.txt").write_text("\n".join(yolo_segment_lines(scene)) + "\n")
        (root / "labels_detect" / split / f"{name}.txt").write_text("\n".join(yolo_detect_lines(scene)) + "\n")
        gt = ground_truth(scene, f"images/{split}/{name}.jpg")
        (root / "ground_truth" / split / f"{name}.json").write_text(_dump(gt))
        image, anns = coco_annotations(scene, index + 1, len(coco["annotations"]) + 1)
        coco["images"].append(image)
        coco["annotations"].extend(anns)
        for inst in scene.instances:
            counts[inst.label] += 1
    (root / "coco").mkdir(exist_ok=True)
    (root / "coco" / f"{split}.json").write_text(json.dumps(coco, sort_keys=True) + "\n")
    return counts


def data_yaml(root: Path, splits: list[str]) -> str:
    lines = ["# SafetyScenes for ultralytics (detect and segment). Written by `efsora scenes generate`.",
             "# no `path:` key: ultralytics then resolves the splits next to this file",
             *(f"{s}: images/{s}" for s in splits), "names:"]
    lines += [f"  {i}: {name}" for i, name in enumerate(CLASSES)]
    return "\n".join(lines) + "\n"


def write_manifest(root: Path) -> dict:
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {}
    for p in files:
        digest, size = sha256_of(p)  # the asset registry's hashing, one implementation
        manifest[p.relative_to(root).as_posix()] = {"sha256": digest, "bytes": size}
    (root / "manifest.json").write_text(_dump(manifest))
    return manifest


def write_dataset(
    root: Path, splits: dict[str, tuple[int, int]] | None = None, progress: bool = True, media: bool | None = None
) -> dict:
    """Write the dataset: images, labels, COCO, ground truth, data.yaml, card, manifest and, for the
    shipped dataset (``media`` defaults to True when ``splits`` is not given), speech and video."""
    root = Path(root)
    media = splits is None if media is None else media
    splits = splits or SPLITS
    stats = {}
    for split, (base, n) in splits.items():
        stats[split] = write_split(root, split, list(range(base, base + n)), progress)
    (root / "data.yaml").write_text(data_yaml(root, list(splits)))
    media_notes = write_media(root, progress) if media else {}
    size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
    (root / "README.md").write_text(dataset_card(splits, stats, media_notes, size_mb))
    write_manifest(root)
    return stats


def write_media(root: Path, progress: bool = True) -> dict:
    """Speech (Piper TTS) and video clips with their ground truth; returns notes for the card."""
    from .speech import generate_speech

    notes = {}
    records = generate_speech(root / "speech", progress=progress)
    notes["speech"] = {"clips": len(records), "seconds": round(sum(r["duration_s"] for r in records), 1)}
    try:
        from .video import write_clips
    except ImportError:
        return notes
    written = write_clips(root / "video")
    notes["video"] = {name: f"{info['frames_decoded']} frames, 15 fps, 640x360, VP9 WebM" for name, info in written.items()}
    return notes


def dataset_card(splits: dict[str, tuple[int, int]], stats: dict[str, dict], media: dict | None = None,
                 size_mb: float = 0.0) -> str:
    from importlib.metadata import version

    header = "| split | seeds | images | " + " | ".join(CLASSES) + " |"
    rule = "| --- | --- | ---: | " + " | ".join("---:" for _ in CLASSES) + " |"
    rows = [f"| {s} | {b}-{b + n - 1} | {n} | " + " | ".join(str(stats[s][c]) for c in CLASSES) + " |"
            for s, (b, n) in splits.items()]
    return "\n".join([
        "# SafetyScenes: dataset card",
        "",
        "Synthetic warehouse-safety scenes rendered by `efsora_helpers.safetyscenes` (OpenCV + NumPy),",
        "with exact ground truth: class, box and visible instance mask for every object, PPE",
        "attributes for every worker, text and box for every readable sign, the forklift-zone polygon.",
        "",
        "## Classes",
        "",
        ", ".join(f"{i} `{c}`" for i, c in enumerate(CLASSES)) + ". A worker's mask includes the hard hat",
        "and vest they wear; a `pallet` is a pallet with or without its load of boxes.",
        "",
        "## Splits and instance counts",
        "",
        header, rule, *rows,
        "",
        *_media_section(media or {}),
        "## Generation",
        "",
        "Each image is `render_scene(seed)`: one `numpy.random.Generator` per seed drives every choice",
        "(layout, clothing, pose, lighting, blur, noise, JPEG quality 70-92), so the same seed gives",
        f"the same bytes with the same library versions (written with OpenCV {version('opencv-python')},",
        f"NumPy {version('numpy')}). Regenerate byte for byte with `efsora scenes generate`;",
        "`efsora scenes generate --check` regenerates into a temporary folder and compares every",
        f"sha256 with `manifest.json`. Size: about {size_mb:.0f} MB.",
        "",
        "## Known limits",
        "",
        "- Synthetic and flat-shaded: a model trained only on it will not transfer to real photos;",
        "  with internet, use official COCO weights for real images.",
        "- Frontal camera, a single floor plane, no real perspective distortion of objects.",
        "- Objects less than 30 % visible are not labelled (they are still drawn).",
        "- Box labels come from visible masks (COCO convention). A mask split by an occluder becomes",
        "  one YOLO polygon whose parts are joined by thin bridges (YOLO allows one polygon per object).",
        "",
    ])


def _media_section(media: dict) -> list[str]:
    lines = []
    if "speech" in media:
        sp = media["speech"]
        lines += ["## Speech", "",
                  f"`speech/`: {sp['clips']} spoken questions and commands ({sp['seconds']} s in all), "
                  "synthesised offline by Piper TTS with the CC0 voice en_US-joe-medium (22,050 Hz, 16-bit "
                  "mono WAV); exact transcripts in `speech/transcripts.jsonl`.", ""]
    if "video" in media:
        lines += ["## Video", "",
                  "`video/`: " + "; ".join(f"`{name}` ({info})" for name, info in media["video"].items())
                  + ". Ground-truth tracks in MOTChallenge format (`*_gt.txt`), zones and the scripted "
                  "event timeline as JSON.", ""]
    return lines
