"""The detector and the segmenter: ultralytics YOLOv8 models whose weights come from the asset
registry, returning schema objects in original-image pixels.

``weights`` is a family name (``"safetyscenes"``: the book's own models, offline; ``"coco"``: the
official ``yolov8n.pt`` / ``yolov8n-seg.pt``, when downloaded), an asset name, or a ``.pt`` path.

Taught in ``notebooks/perception/02_detection.ipynb`` and ``03_segmentation.ipynb``.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..assets import asset, get_asset
from ..env import prepare_offline_environment
from .schema import DetectedObject, Segment, encode_mask

# family -> (detector asset, segmenter asset)
WEIGHT_FAMILIES = {
    "safetyscenes": ("safetyscenes-yolov8n-det", "safetyscenes-yolov8n-seg"),
    "coco": ("yolov8n-coco", "yolov8n-seg-coco"),
}


def resolve_weights(weights: str | Path, task: str = "detect") -> tuple[Path, str]:
    """The verified weights file and a display name. Offline, a missing official model raises
    :class:`~efsora_helpers.assets.AssetMissingError` with the command that fetches it."""
    index = {"detect": 0, "segment": 1}[task]
    name = str(weights)
    if name in WEIGHT_FAMILIES:
        name = WEIGHT_FAMILIES[name][index]
    if Path(name).suffix == ".pt" and Path(name).exists():
        return Path(name), Path(name).name
    try:
        asset(name)
    except KeyError:
        families = ", ".join(WEIGHT_FAMILIES)
        raise ValueError(f"unknown weights {weights!r}: use {families}, an asset name, or a .pt file") from None
    return get_asset(name), name


def _load_yolo(path: Path, task: str):
    # A library user may skip eh.setup(); ultralytics must still not phone home at import.
    prepare_offline_environment(online=os.environ.get("EFSORA_ONLINE") == "1")
    from ultralytics import YOLO

    model = YOLO(str(path), task=task)
    if model.task != task:
        raise ValueError(f"{path} is a {model.task} model; a {task} model is needed here")
    return model


def _trained_size(model, default: int = 640) -> int:
    """The image size the weights were trained at; predicting at it is what the model card measured."""
    args = getattr(model, "ckpt", None) or {}
    size = (args.get("train_args") or {}).get("imgsz", default)
    return int(size if isinstance(size, int) else max(size))


class _YoloStage:
    task = "detect"

    def __init__(self, weights: str | Path = "safetyscenes", device: str = "cpu", imgsz: int | None = None):
        self.path, self.name = resolve_weights(weights, self.task)
        self.model = _load_yolo(self.path, self.task)
        self.device = device
        self.imgsz = imgsz or _trained_size(self.model)
        self.names: dict[int, str] = dict(self.model.names)

    def predict(self, bgr: np.ndarray, confidence: float, iou: float):
        return self.model.predict(bgr, imgsz=self.imgsz, conf=confidence, iou=iou, device=self.device,
                                  verbose=False)[0]


class Detector(_YoloStage):
    """YOLOv8 boxes as :class:`DetectedObject` (sorted by confidence, ids from ``first_id``)."""

    task = "detect"

    def detect(self, bgr: np.ndarray, confidence: float = 0.25, iou: float = 0.7, scale: float = 1.0,
               first_id: int = 0) -> list[DetectedObject]:
        return self._objects(self.predict(bgr, confidence, iou), scale, first_id)

    def detect_batch(self, images: list[np.ndarray], confidence: float = 0.25,
                     iou: float = 0.7) -> list[list[DetectedObject]]:
        """:meth:`detect` on several frames in one model call (chapter 5's stream batches frames)."""
        results = self.model.predict(images, imgsz=self.imgsz, conf=confidence, iou=iou, device=self.device,
                                     verbose=False)
        return [self._objects(r) for r in results]

    def _objects(self, r, scale: float = 1.0, first_id: int = 0) -> list[DetectedObject]:
        boxes = r.boxes.xyxy.cpu().numpy() / scale
        return [DetectedObject(id=first_id + k, label=self.names[int(cls)], confidence=round(conf, 4),
                               bbox=[round(float(v), 1) for v in box])
                for k, (box, conf, cls) in enumerate(zip(boxes, r.boxes.conf.tolist(), r.boxes.cls.tolist()))]


class Segmenter(_YoloStage):
    """YOLOv8-seg instances as :class:`Segment`. Masks are rasterised from ultralytics' polygons at
    the original resolution (cheap, no full-size mask tensors) and attached only on request."""

    task = "segment"

    def segment(self, bgr: np.ndarray, confidence: float = 0.25, iou: float = 0.7, scale: float = 1.0,
                first_id: int = 0, original_size: tuple[int, int] | None = None,
                include_masks: bool = False, mask_encoding: str = "rle") -> list[Segment]:
        r = self.predict(bgr, confidence, iou)
        h, w = original_size or bgr.shape[:2]
        if r.masks is None:
            return []
        out = []
        for k, (box, conf, cls, polygon) in enumerate(zip(r.boxes.xyxy.cpu().numpy() / scale, r.boxes.conf.tolist(),
                                                           r.boxes.cls.tolist(), r.masks.xy)):
            points = polygon / scale
            mask = polygon_mask(points, h, w) if include_masks else None
            area = int(mask.sum()) if mask is not None else polygon_area(points, h, w)
            out.append(Segment(id=first_id + k, label=self.names[int(cls)], confidence=round(conf, 4),
                               bbox=[round(float(v), 1) for v in box], area=area,
                               mask=encode_mask(mask, mask_encoding) if mask is not None else None))
        return out


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """A boolean mask from one polygon ``[N, 2]`` (an empty polygon gives an empty mask)."""
    mask = np.zeros((height, width), np.uint8)
    if len(polygon) >= 3:
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def polygon_area(polygon: np.ndarray, height: int, width: int) -> int:
    """The pixel count :func:`polygon_mask` would give, rasterised only over the polygon's bounding
    box: a full-image mask per instance would cost more than the rest of the engine's bookkeeping."""
    if len(polygon) < 3:
        return 0
    pts = np.round(polygon).astype(np.int32)
    x0, y0 = np.maximum(pts.min(axis=0), 0)
    x1, y1 = np.minimum(pts.max(axis=0) + 1, (width, height))
    if x1 <= x0 or y1 <= y0:
        return 0
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(local, [pts - (x0, y0)], 1)
    return int(local.sum())
