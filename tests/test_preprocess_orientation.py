"""load_image applies the EXIF orientation (as cv2.imread and every photo viewer do) and leaves
PIL's decompression-bomb guard as it found it."""

import cv2
import numpy as np
import pytest
from PIL import Image

from efsora_helpers.paths import repo_root
from efsora_helpers.perception.preprocess import load_image

SAMPLE = repo_root() / "data" / "safetyscenes" / "images" / "test" / "test_0002.jpg"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_load_image_applies_exif_orientation(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.open(SAMPLE).save(path, exif=exif, quality=95)
    loaded = load_image(path).bgr
    assert loaded.shape == ((640, 480, 3) if orientation >= 5 else (480, 640, 3))
    assert np.array_equal(loaded, cv2.imread(str(path)))  # cv2.imread's default flags apply EXIF


def test_load_image_keeps_pil_pixel_limit():
    before = Image.MAX_IMAGE_PIXELS
    load_image(SAMPLE)
    assert Image.MAX_IMAGE_PIXELS == before
