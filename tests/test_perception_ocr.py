"""OCR helpers added with notebooks/perception/04_ocr.ipynb: attaching lines to a sign box, and
EasyOCR's per-frame CTC path (its greedy decoding must reproduce the text EasyOCR returns)."""

import json
from pathlib import Path

import cv2
import pytest

from efsora_helpers.perception.ocr import text_inside
from efsora_helpers.perception.schema import TextRegion

SCENES = Path(__file__).resolve().parents[1] / "data" / "safetyscenes"


def _region(k, text, bbox):
    return TextRegion(id=k, text=text, bbox=bbox, confidence=0.9)


def test_text_inside_joins_lines_whose_centre_is_in_the_box_in_reading_order():
    regions = [_region(0, "ENTRY", [60, 10, 100, 20]), _region(1, "NO", [10, 10, 50, 20]),
               _region(2, "LOAD", [10, 40, 50, 50]), _region(3, "far away", [300, 300, 340, 320]),
               _region(4, "edge", [95, 10, 140, 20])]  # centre x 117.5: outside
    assert text_inside(regions, [0, 0, 110, 60]) == "NO ENTRY LOAD"
    assert text_inside(regions, [200, 200, 210, 210]) == ""


@pytest.mark.slow
def test_greedy_ctc_on_easyocr_frames_reproduces_its_text():
    from efsora_helpers.perception.ocr import EasyOcr, ctc_frames

    image = cv2.imread(str(SCENES / "images" / "test" / "test_0006.jpg"))
    truth = json.loads((SCENES / "ground_truth" / "test" / "test_0006.json").read_text())
    easy = EasyOcr()
    horizontal, free = easy.reader.detect(image)
    results = easy.reader.recognize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), horizontal[0], free[0])
    for box, (_, text, confidence) in zip(horizontal[0], results):
        frames = ctc_frames(easy, image, box)
        decoded = "".join(s for k, s in enumerate(frames) if s and (k == 0 or s != frames[k - 1]))
        assert decoded == text
    assert truth["text_regions"][0]["text"] in [text for _, text, _ in results]
