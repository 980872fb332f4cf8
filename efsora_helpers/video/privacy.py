"""Privacy for the video pipeline: blur heads from the person boxes, in the right order, and keep
only what the retention policy allows.

Taught in ``notebooks/video/08_privacy.ipynb``. Three parts:

* **Where the head is.** :func:`head_box` is the top :data:`HEAD_FRACTION` of a person box, a little
  wider than it. :func:`head_coverage` measures that rule against the hard-hat boxes of the
  SafetyScenes still images (the clips' ground truth has person boxes only; the stills are drawn by
  the same worker painter, ``safetyscenes.render._worker``).
* **Blurring and its order.** :func:`blur_regions` pixelates regions (coarse blocks, then a smoothing
  pass); :func:`sharpness` (variance of the Laplacian) measures what detail is left.
  :func:`detect_then_redact` fixes the order: the detector sees the raw frame in memory (a blurred
  head hides its hard hat), and only the redacted frame leaves the function. :func:`alert_crop`
  is what an alert keeps: a crop of the redacted frame.
* **Retention.** :class:`RetentionPolicy` says what is kept (event and track records; blurred media
  for ``media_days``; raw frames never) and :meth:`RetentionPolicy.apply` enforces it on a folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..vocabulary import ObjectClass

#: Share of a person box's height, from its top, blurred as the head. The worker painter puts the head
#: centre at 0.085 and its radius at 0.065 of the drawn height (the face ends at 0.15); boxes of
#: partly hidden workers are shorter than the drawn height, so the rule keeps a margin (measured in
#: the notebook on the stills' hard-hat boxes).
HEAD_FRACTION = 0.25
#: Extra width on each side, as a share of the box width (a brim sticks out of a profile's box).
HEAD_SIDE_MARGIN = 0.1
#: Extra height above the box top, as a share of its height.
HEAD_TOP_MARGIN = 0.05
#: Blocks across the longer side of a blurred region: few enough that no facial feature survives.
CELLS = 5


def head_box(person_box, fraction: float = HEAD_FRACTION, side: float = HEAD_SIDE_MARGIN,
             top: float = HEAD_TOP_MARGIN, shape: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """The head region (x1, y1, x2, y2, integer pixels) of a person box ``(x1, y1, x2, y2)``: its top
    ``fraction`` plus margins, clipped to ``shape`` = (height, width) when given."""
    x1, y1, x2, y2 = (float(v) for v in person_box[:4])
    w, h = x2 - x1, y2 - y1
    hx1, hy1 = x1 - side * w, y1 - top * h
    hx2, hy2 = x2 + side * w, y1 + fraction * h
    box = [int(np.floor(hx1)), int(np.floor(hy1)), int(np.ceil(hx2)), int(np.ceil(hy2))]
    if shape is not None:
        H, W = shape[:2]
        box = [min(max(box[0], 0), W), min(max(box[1], 0), H), min(max(box[2], 0), W), min(max(box[3], 0), H)]
    return tuple(box)


def blur_regions(frame: np.ndarray, regions, cells: int = CELLS) -> np.ndarray:
    """A copy of ``frame`` with each region ``(x1, y1, x2, y2)`` pixelated into about ``cells`` blocks
    across its longer side, then smoothed (the block edges would otherwise be the only sharp detail).
    Regions are clipped to the frame; empty ones are skipped."""
    out = frame.copy()
    H, W = frame.shape[:2]
    for r in regions:
        x1, y1 = max(0, int(r[0])), max(0, int(r[1]))
        x2, y2 = min(W, int(r[2])), min(H, int(r[3]))
        if x2 <= x1 or y2 <= y1:
            continue
        roi = out[y1:y2, x1:x2]
        h, w = roi.shape[:2]
        scale = cells / max(h, w)
        small = cv2.resize(roi, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        blocks = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        k = max(3, (max(h, w) // cells) | 1)  # about one block wide, odd
        out[y1:y2, x1:x2] = cv2.GaussianBlur(blocks, (k, k), 0)
    return out


def redact(frame: np.ndarray, person_boxes, **rule) -> np.ndarray:
    """A copy of ``frame`` with the head region of every person box blurred (``rule``: see :func:`head_box`)."""
    regions = [head_box(b, shape=frame.shape, **rule) for b in person_boxes]
    return blur_regions(frame, regions)


def sharpness(image: np.ndarray, region=None) -> float:
    """Variance of the Laplacian of the grey image (or of ``region``): near 0 when no edge is left."""
    if region is not None:
        x1, y1, x2, y2 = (int(v) for v in region)
        image = image[max(0, y1):y2, max(0, x1):x2]
    if image.size == 0:
        return 0.0
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def detail_share(image: np.ndarray, reference: np.ndarray, region, ignore: np.ndarray | None = None) -> float | None:
    """The share of ``reference``'s detail (variance of the Laplacian) left in ``image`` inside
    ``region``, skipping the region's 2-pixel rim (where a blurred region meets sharp surroundings)
    and the pixels of the boolean mask ``ignore`` grown by 2 pixels (drawn boxes and text, which are
    sharp on purpose). None when fewer than 20 pixels remain or the reference has no detail there."""
    x1, y1, x2, y2 = (int(v) for v in region)
    mask = np.zeros(image.shape[:2], bool)
    mask[max(0, y1 + 2):max(0, y2 - 2), max(0, x1 + 2):max(0, x2 - 2)] = True
    if ignore is not None:
        mask &= ~cv2.dilate(ignore.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if mask.sum() < 20:
        return None

    def lap(img):
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
        return cv2.Laplacian(grey, cv2.CV_64F)[mask]

    ref = lap(reference).var()
    return float(lap(image).var() / ref) if ref > 0 else None


def detect_then_redact(frame: np.ndarray, detect) -> tuple[list, np.ndarray]:
    """The pipeline's order: ``detect(frame)`` runs on the raw frame (in memory only; a head blurred
    first hides its hard hat from the detector), then the frame is redacted from the detected person
    boxes. Returns (detections, redacted frame); only the redacted frame may be stored or sent."""
    detections = detect(frame)
    people = [d.bbox for d in detections if d.label == ObjectClass.PERSON]
    return detections, redact(frame, people)


def alert_crop(redacted: np.ndarray, box, pad: float = 0.2) -> np.ndarray:
    """What an alert keeps: the region around ``box`` (plus ``pad`` of its size) cut from the
    *redacted* frame, never from the raw one."""
    H, W = redacted.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    dx, dy = pad * (x2 - x1), pad * (y2 - y1)
    return redacted[max(0, int(y1 - dy)):min(H, int(y2 + dy)), max(0, int(x1 - dx)):min(W, int(x2 + dx))].copy()


# --- how well the rule covers heads ---------------------------------------------------------------

def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def hat_person_pairs(root: Path | None = None) -> tuple[list[tuple[list[float], list[float]]], int]:
    """Every hard-hat box of the SafetyScenes stills' ground truth with the person box it overlaps most:
    ((person box, hat box) pairs, number of hats with no person box: workers hidden but for the hat)."""
    from ..safetyscenes.shipped import shipped_root

    root = Path(root) if root else shipped_root() / "ground_truth"
    pairs, orphans = [], 0
    for f in sorted(root.glob("*/*.json")):
        objects = json.loads(f.read_text())["objects"]
        people = [o["bbox"] for o in objects if o["label"] == ObjectClass.PERSON]
        for hat in (o["bbox"] for o in objects if o["label"] == ObjectClass.HARD_HAT):
            best = max(people, key=lambda p: _overlap(p, hat), default=None)
            if best is None or _overlap(best, hat) == 0:
                orphans += 1
            else:
                pairs.append((best, hat))
    return pairs, orphans


def head_coverage(pairs, **rule) -> np.ndarray:
    """For each (person box, hat box) pair, the share of the hat box inside :func:`head_box` of the person."""
    out = []
    for person, hat in pairs:
        area = (hat[2] - hat[0]) * (hat[3] - hat[1])
        out.append(_overlap(head_box(person, **rule), hat) / area if area > 0 else 0.0)
    return np.array(out, float)


def hat_on_head(person_box, hat_boxes, **rule) -> bool:
    """Whether any detected hard-hat box has its centre in the head region of ``person_box``: how
    the notebook credits the detector with a worker's hard hat (the clips' truth has no hat boxes)."""
    x1, y1, x2, y2 = head_box(person_box, **rule)
    return any(x1 <= (h[0] + h[2]) / 2 <= x2 and y1 <= (h[1] + h[3]) / 2 <= y2 for h in hat_boxes)


# --- retention ------------------------------------------------------------------------------------

#: Records of what happened (no pixels): kept for as long as the site keeps its incident log.
RECORD_SUFFIXES = (".json", ".jsonl", ".csv", ".txt", ".parquet")
#: Media the pipeline writes, all redacted: annotated clips and alert crops.
MEDIA_SUFFIXES = (".mp4", ".webm", ".mkv", ".gif", ".jpg", ".jpeg", ".png")


def is_raw(path: Path) -> bool:
    """A file that holds raw (unredacted) pixels by the pipeline's naming: a ``raw`` folder on its path
    or a stem ending in ``_raw``. The pipeline never writes one; the policy deletes any it finds."""
    return "raw" in path.parts[:-1] or path.stem.endswith("_raw")


@dataclass
class RetentionReport:
    deleted: list[Path] = field(default_factory=list)  # expired media
    raw_deleted: list[Path] = field(default_factory=list)  # raw pixels that should never have been written
    kept: list[Path] = field(default_factory=list)
    unknown: list[Path] = field(default_factory=list)  # neither a record nor media: left for a person to decide


@dataclass(frozen=True)
class RetentionPolicy:
    """What the pipeline keeps. ``records_days=None``: event and track records are kept (no pixels in
    them); blurred media (clips, alert crops) for ``media_days``; raw frames are never kept. The
    default 3 days follows the EDPB's video guidelines (3/2019, section 8: storage beyond 72 hours
    needs more justification); a site sets its own with its data-protection officer."""

    media_days: float = 3.0
    records_days: float | None = None

    def decide(self, path: Path, age_s: float) -> str:
        """"raw", "expired", "keep" or "unknown" for a file ``age_s`` seconds old."""
        suffix = path.suffix.lower()
        if is_raw(path):
            return "raw"
        if suffix in MEDIA_SUFFIXES:
            return "expired" if age_s > self.media_days * 86400 else "keep"
        if suffix in RECORD_SUFFIXES:
            return "expired" if self.records_days is not None and age_s > self.records_days * 86400 else "keep"
        return "unknown"

    def apply(self, folder, now: float | None = None, dry_run: bool = False) -> RetentionReport:
        """Enforce the policy on every file under ``folder`` (by modification time against ``now``,
        default the clock): delete expired files and raw ones unless ``dry_run``."""
        now = time.time() if now is None else now
        report = RetentionReport()
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            verdict = self.decide(path, now - path.stat().st_mtime)
            target = {"raw": report.raw_deleted, "expired": report.deleted, "keep": report.kept,
                      "unknown": report.unknown}[verdict]
            target.append(path)
            if verdict in ("raw", "expired") and not dry_run:
                path.unlink()
        return report
