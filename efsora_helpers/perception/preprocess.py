"""OpenCV preprocessing: load any image safely, resize (max side, letterbox), crop, colour spaces,
normalisation, and enhancement for OCR.

OpenCV arrays are ``uint8 [H, W, 3]`` in **BGR** order; matplotlib, PIL and most PyTorch models
expect RGB. Every function here takes and returns BGR unless its name says otherwise.

Taught in ``notebooks/perception/01_preprocessing.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# A decoded 20,000 x 20,000 colour image is 1.2 GB; refuse beyond this instead of running out of memory.
MAX_PIXELS = 400_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB order, torchvision's ImageNet statistics
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageError(ValueError):
    """An input that is not a usable image; the message says what to do."""


@dataclass
class LoadedImage:
    bgr: np.ndarray  # uint8 [H, W, 3]
    path: str
    channels: int  # in the file: 1 gray, 3 colour, 4 with alpha

    @property
    def height(self) -> int:
        return self.bgr.shape[0]

    @property
    def width(self) -> int:
        return self.bgr.shape[1]


def to_bgr(array: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA; 8 or 16 bit; float 0-1) as ``uint8`` BGR.

    Transparent pixels are composited over white, which is what a viewer shows and what OCR
    reads best (black text on a transparent PNG would otherwise turn into black on black).
    """
    a = np.asarray(array)
    if a.dtype == np.uint16:
        a = (a / 257.0).round().astype(np.uint8)
    elif a.dtype.kind == "f":
        a = (np.clip(a, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {a.dtype}; convert to 8-bit first")
    if a.ndim == 2:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    if a.ndim == 3 and a.shape[2] == 1:
        return cv2.cvtColor(a[:, :, 0], cv2.COLOR_GRAY2BGR)
    if a.ndim == 3 and a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        return (a[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 3:
        return np.ascontiguousarray(a)
    raise ImageError(f"unsupported image shape {a.shape}; expected [H, W], [H, W, 3] or [H, W, 4]")


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Read an image file into BGR ``uint8`` with errors that say what is wrong.

    Decodes from bytes (``np.fromfile`` + ``cv2.imdecode``) so non-ASCII paths work on every OS,
    and checks the pixel count before the full decode so a huge image fails fast.
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a folder; pass the image files (or the folder to the CLI, which expands it)")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: the file is empty")
    data = np.fromfile(p, dtype=np.uint8)
    width, height = _header_size(data)
    if width and height and width * height > max_pixels:
        raise ImageError(f"{p}: {width}x{height} is over the {max_pixels:,}-pixel limit; downscale it first")
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None:
        kind = "a text file" if _looks_like_text(data) else "not an image OpenCV can decode (or corrupt)"
        raise ImageError(f"{p}: {kind}; supported: JPEG, PNG, BMP, TIFF, WebP")
    channels = 1 if array.ndim == 2 else array.shape[2]
    # IMREAD_UNCHANGED (needed to see alpha and 16-bit) ignores the EXIF orientation that
    # cv2.imread's default, PIL viewers and phones apply; without this a portrait phone photo
    # would be detected on its side and its boxes would not match the picture the user sees.
    array = _apply_orientation(array, _exif_orientation(data))
    return LoadedImage(bgr=to_bgr(array), path=str(p), channels=channels)


def _header_size(data: np.ndarray) -> tuple[int, int]:
    """Width and height from the file header, without decoding the pixels (PIL reads lazily)."""
    import io
    import warnings

    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns about "decompression bombs"; the caller decides
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(io.BytesIO(data.tobytes())) as im:
                return im.size
    except Exception:
        return 0, 0  # not a format PIL knows; OpenCV gets the last word
    finally:
        Image.MAX_IMAGE_PIXELS = limit  # PIL's own guard stays on for the rest of the process


def _exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation tag (0x0112), 1 (upright) when there is none or it is unreadable."""
    import io
    import warnings

    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(io.BytesIO(data.tobytes())) as im:
                value = int(im.getexif().get(0x0112, 1))
                return value if 1 <= value <= 8 else 1
    except Exception:
        return 1
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip stored pixels to display orientation (EXIF tag 0x0112, values 1-8)."""
    if orientation in (5, 6, 7, 8):
        array = np.swapaxes(array, 0, 1)  # transpose: the four orientations that swap width and height
    flips = {2: (1,), 3: (0, 1), 4: (0,), 5: (), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    for axis in flips:
        array = np.flip(array, axis)
    return np.ascontiguousarray(array)


def _looks_like_text(data: np.ndarray) -> bool:
    head = data[:512].tobytes()
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(head) and all(c >= 32 or c in (9, 10, 13) for c in head)


# --- geometry --------------------------------------------------------------------------------------

def resize_max(image: np.ndarray, max_size: int | None) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_size`` (never enlarge). Returns the image and the
    scale applied (multiply original coordinates by it; divide results by it)."""
    h, w = image.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return image, 1.0
    scale = max_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # INTER_AREA averages the pixels a shrink drops: no aliasing (moire) on fine patterns.
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


@dataclass(frozen=True)
class Letterbox:
    scale: float
    pad_x: int
    pad_y: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes predicted on the letterboxed image, in original-image pixels."""
        b = np.asarray(boxes, dtype=np.float32).copy()
        b[..., [0, 2]] = (b[..., [0, 2]] - self.pad_x) / self.scale
        b[..., [1, 3]] = (b[..., [1, 3]] - self.pad_y) / self.scale
        return b


def letterbox(image: np.ndarray, size: int = 640, colour: int = 114, stride: int | None = None) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio, then pad to ``size`` x ``size`` (or, with ``stride``, only to
    the next multiple of the network stride, as ultralytics does at inference).

    Grey 114 is the padding YOLO was trained with; a plain stretch would squash every object.
    """
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    new_w, new_h = round(w * scale), round(h * scale)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation) if scale != 1 else image
    if stride:
        target_w, target_h = -(-new_w // stride) * stride, -(-new_h // stride) * stride
    else:
        target_w = target_h = size
    pad_x, pad_y = (target_w - new_w) // 2, (target_h - new_h) // 2
    out = cv2.copyMakeBorder(resized, pad_y, target_h - new_h - pad_y, pad_x, target_w - new_w - pad_x,
                             cv2.BORDER_CONSTANT, value=(colour, colour, colour))
    return out, Letterbox(scale, pad_x, pad_y)


def crop_bounds(shape: tuple[int, ...], bbox, pad: float = 0.0) -> tuple[int, int, int, int]:
    """Integer pixel bounds ``(x1, y1, x2, y2)`` of :func:`crop`'s region in an image of ``shape``
    (``x1, y1`` is where the crop sits in the image, to map results back)."""
    h, w = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in bbox)
    dx, dy = (x2 - x1) * pad, (y2 - y1) * pad
    x1, y1 = max(0, int(np.floor(x1 - dx))), max(0, int(np.floor(y1 - dy)))
    x2, y2 = min(w, int(np.ceil(x2 + dx))), min(h, int(np.ceil(y2 + dy)))
    return x1, y1, max(x1, x2), max(y1, y2)


def crop(image: np.ndarray, bbox, pad: float = 0.0) -> np.ndarray:
    """The ``[x1, y1, x2, y2]`` region, grown by ``pad`` (a fraction of its size) and clipped to the
    image. An empty region gives a 0-size array, not an exception."""
    x1, y1, x2, y2 = crop_bounds(image.shape, bbox, pad)
    return image[y1:y2, x1:x2]


# --- colour and values -----------------------------------------------------------------------------

def to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def to_hsv(image: np.ndarray) -> np.ndarray:
    """HSV with OpenCV's ranges: H in 0-179 (degrees / 2), S and V in 0-255."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2HSV)


def normalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """BGR ``uint8 [H, W, 3]`` -> RGB ``float32 [3, H, W]`` standardised with ``mean``/``std``:
    the tensor layout and statistics an ImageNet-pretrained torchvision model was trained on."""
    rgb = to_rgb(image).astype(np.float32) / 255.0
    return ((rgb - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)


def enhance_for_ocr(image: np.ndarray, upscale: float = 2.0, clahe: bool = True, denoise: bool = True,
                    binarize: bool = False) -> np.ndarray:
    """Make text easier to read: enlarge small text (recognisers want ~32 px tall glyphs), local
    contrast with CLAHE on the lightness channel, edge-preserving denoise, optional Otsu threshold.
    Returns BGR (gray values in three channels when binarised)."""
    out = image
    if upscale and upscale != 1.0:
        out = cv2.resize(out, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    if denoise:
        out = cv2.bilateralFilter(out, d=5, sigmaColor=40, sigmaSpace=5)
    if clahe:
        lab = cv2.cvtColor(out, cv2.COLOR_BGR2LAB)
        lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    if binarize:
        _, bw = cv2.threshold(to_gray(out), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        out = cv2.cvtColor(bw, cv2.COLOR_GRAY2BGR)
    return out
