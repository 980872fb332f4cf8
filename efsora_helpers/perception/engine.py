"""The Visual Perception Engine: one call, one :class:`PerceptionResult`.

>>> engine = PerceptionEngine(ocr=False)                      # doctest: +SKIP
>>> result = engine.perceive("data/safetyscenes/images/test/test_0002.jpg")
>>> result.safety.workers_without_hard_hat

Models load once, on first use, and are reused for every image. Each stage can be switched off;
the result's ``stages`` says which ran, so "no text found" and "OCR not run" stay different.

Taught in ``notebooks/perception/05_engine.ipynb``; the command line is ``efsora perceive``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..vocabulary import ObjectClass
from .preprocess import ImageError, LoadedImage, load_image, resize_max, to_bgr
from .schema import ImageInfo, ModelInfo, PerceptionResult, ProcessingTime
from .safety import analyze, describe

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# The settings each loaded model depends on: an engine derived with these unchanged can share it.
_MODEL_SETTINGS = {"_detector": ("weights", "device"), "_segmenter": ("weights", "segmenter_weights", "device"),
                   "_ocr": ("ocr_engine",)}


@dataclass(frozen=True)
class EngineConfig:
    detection: bool = True
    segmentation: bool = True
    ocr: bool = True
    confidence: float = 0.25
    iou: float = 0.7  # NMS threshold, ultralytics' default for predict
    include_masks: bool = False
    mask_encoding: str = "rle"
    max_size: int | None = 1280
    weights: str = "safetyscenes"  # or "coco" (official), an asset name, a .pt file
    segmenter_weights: str | None = None  # defaults to the family of `weights`
    ocr_engine: str = "easyocr"
    ocr_scope: str = "image"  # "image": whole image; "signs": only inside detected signs (faster)
    zones: dict[str, list] = field(default_factory=dict)
    device: str = "cpu"

    def __post_init__(self):
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")
        if not 0.0 < self.iou <= 1.0:
            raise ValueError(f"iou must be in (0, 1], got {self.iou}")
        if self.max_size is not None and self.max_size < 32:
            raise ValueError(f"max_size must be at least 32 pixels, got {self.max_size}")
        if self.mask_encoding not in ("rle", "png"):
            raise ValueError(f"mask_encoding must be 'rle' or 'png', got {self.mask_encoding!r}")
        if self.ocr_scope not in ("image", "signs"):
            raise ValueError(f"ocr_scope must be 'image' or 'signs', got {self.ocr_scope!r}")


class PerceptionEngine:
    def __init__(self, config: EngineConfig | None = None, **overrides):
        self.config = replace(config or EngineConfig(), **overrides)
        self._detector = self._segmenter = self._ocr = None
        self.load_seconds: dict[str, float] = {}

    def derive(self, **overrides) -> "PerceptionEngine":
        """A new engine with some settings changed (stages, thresholds, zones...) that reuses this
        engine's loaded models wherever the change leaves them valid."""
        other = PerceptionEngine(self.config, **overrides)
        for attribute, settings in _MODEL_SETTINGS.items():
            if all(getattr(other.config, s) == getattr(self.config, s) for s in settings):
                setattr(other, attribute, getattr(self, attribute))
        return other

    # --- models, loaded on first use -----------------------------------------------------------
    def _timed_load(self, stage: str, factory):
        start = time.perf_counter()
        model = factory()
        self.load_seconds[stage] = round(time.perf_counter() - start, 3)
        return model

    @property
    def detector(self):
        if self._detector is None:
            from .models import Detector

            self._detector = self._timed_load("detection", lambda: Detector(self.config.weights, self.config.device))
        return self._detector

    @property
    def segmenter(self):
        if self._segmenter is None:
            from .models import Segmenter

            weights = self.config.segmenter_weights or self.config.weights
            self._segmenter = self._timed_load("segmentation", lambda: Segmenter(weights, self.config.device))
        return self._segmenter

    @property
    def ocr(self):
        if self._ocr is None:
            from .ocr import make_ocr

            self._ocr = self._timed_load("ocr", lambda: make_ocr(self.config.ocr_engine))
        return self._ocr

    def load(self) -> dict[str, float]:
        """Load every enabled model (done before the first image's clock starts). Returns seconds per model."""
        c = self.config
        for enabled, name in ((c.detection, "detector"), (c.segmentation, "segmenter"), (c.ocr, "ocr")):
            if enabled:
                getattr(self, name)
        return dict(self.load_seconds)

    def warm_up(self) -> dict[str, float]:
        """Load the models and run one small image through them: the first inference of a PyTorch
        model pays one-off costs (layer fusion, allocator growth) that are not per-image latency."""
        loaded = self.load()
        self.perceive(np.full((64, 64, 3), 114, np.uint8), image_path="<warm-up>")
        return loaded

    # --- one image ---------------------------------------------------------------------------------
    def perceive(self, image: str | Path | np.ndarray, image_path: str | None = None) -> PerceptionResult:
        """Run the enabled stages on a file path or an already decoded array (gray, BGR or BGRA)."""
        c = self.config
        start = time.perf_counter()
        if isinstance(image, np.ndarray):
            if image.size == 0:
                raise ImageError("the image array is empty")
            loaded = LoadedImage(to_bgr(image), image_path or "<array>", 1 if image.ndim == 2 else image.shape[2])
        else:
            loaded = load_image(image)  # a bad file fails here, before any model loads
        work, scale = resize_max(loaded.bgr, c.max_size)
        times = {"preprocessing": time.perf_counter() - start}
        self.load()  # once per engine; not part of any image's time
        start = time.perf_counter() - times["preprocessing"]
        stages: list[str] = []
        objects, segments, texts = [], [], []

        if c.detection:
            t = time.perf_counter()
            objects = self.detector.detect(work, c.confidence, c.iou, scale=scale)
            times["detection"] = time.perf_counter() - t
            stages.append("detection")
        if c.segmentation:
            t = time.perf_counter()
            segments = self.segmenter.segment(work, c.confidence, c.iou, scale=scale,
                                              original_size=(loaded.height, loaded.width),
                                              include_masks=c.include_masks, mask_encoding=c.mask_encoding)
            times["segmentation"] = time.perf_counter() - t
            stages.append("segmentation")
        if c.ocr:
            t = time.perf_counter()
            signs = [o.bbox for o in objects if o.label == ObjectClass.SIGN]
            if c.ocr_scope == "signs" and c.detection:
                texts = self.ocr.read_regions(loaded.bgr, signs)
            else:
                texts = self.ocr.read(work, scale=scale)
            times["ocr"] = time.perf_counter() - t
            stages.append("ocr")

        t = time.perf_counter()
        # Safety rules need boxes: from the detector, or from the segmenter when detection is off.
        boxes = objects if c.detection else segments if c.segmentation else None
        safety = analyze(boxes, c.zones) if boxes is not None else None
        description = describe(boxes or [], texts, safety, stages)
        times["analysis"] = time.perf_counter() - t
        times["total"] = time.perf_counter() - start

        return PerceptionResult(
            image_path=str(image_path or loaded.path),
            image_info=ImageInfo(width=loaded.width, height=loaded.height, channels=loaded.channels,
                                 processed_width=work.shape[1], processed_height=work.shape[0]),
            objects=objects, segments=segments, text_regions=texts, zones=c.zones, safety=safety,
            scene_description=description, stages=stages,
            models=ModelInfo(detector=self.detector.name if c.detection else None,
                             segmenter=self.segmenter.name if c.segmentation else None,
                             ocr=self.ocr.name if c.ocr else None),
            processing_time=ProcessingTime(**{k: round(v, 4) for k, v in times.items()}),
        )

    # --- many images --------------------------------------------------------------------------------
    def perceive_many(self, inputs: Iterable[str | Path], progress: bool = True) -> Iterator[tuple[Path, PerceptionResult | Exception]]:
        """Each image's result, or the error that image raised (a bad file never stops the batch)."""
        paths = expand_inputs(inputs)
        if progress:
            from tqdm.auto import tqdm

            paths = tqdm(paths, desc="perceive", unit="image")
        for path in paths:
            try:
                yield path, self.perceive(path)
            except (ImageError, OSError) as error:
                yield path, error


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders expanded to their images (sorted, not recursive)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"{p}: no images in this folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(found)
        else:
            out.append(p)
    return out
