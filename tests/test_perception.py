"""Chapter 1: the schema, preprocessing, the engine with each stage on and off, and the CLI on
good and bad inputs (notebooks/perception/)."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from efsora_helpers.paths import repo_root
from efsora_helpers.perception import preprocess as pp
from efsora_helpers.perception.schema import (
    SCHEMA_VERSION,
    DetectedObject,
    ImageInfo,
    PerceptionResult,
    decode_mask,
    encode_mask,
    json_schema,
)

ROOT = repo_root()
SCENES = ROOT / "data" / "safetyscenes"
# A test scene with two workers, one without a hard hat, and a readable sign (ground truth below).
SAMPLE = "test_0002"


def ground_truth(name=SAMPLE):
    return json.loads((SCENES / "ground_truth" / "test" / f"{name}.json").read_text())


# --- schema -------------------------------------------------------------------------------------

def test_result_round_trips_through_json():
    result = PerceptionResult(
        image_path="x.jpg", image_info=ImageInfo(width=640, height=480),
        objects=[DetectedObject(id=0, label="person", confidence=0.9, bbox=[1, 2, 30, 40])],
    )
    again = PerceptionResult.model_validate_json(result.to_json())
    assert again == result and again.schema_version == SCHEMA_VERSION and again.count("person") == 1


@pytest.mark.parametrize("bad", [
    {"label": "person", "confidence": 1.5, "bbox": [0, 0, 1, 1]},      # confidence over 1
    {"label": "person", "confidence": 0.5, "bbox": [5, 0, 1, 1]},      # x2 < x1
    {"label": "person", "confidence": 0.5, "bbox": [0, 0, 1]},         # three numbers
    {"label": "person", "confidence": 0.5, "bbox": [0, 0, 1, 1], "colour": "red"},  # unknown field
])
def test_schema_rejects_malformed_objects(bad):
    with pytest.raises(ValueError):
        DetectedObject(id=0, **bad)


def test_exported_json_schema_is_committed_and_current():
    committed = json.loads((ROOT / "data" / "perception" / "perception_result.schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), "run `python -m efsora_helpers.perception.examples`"
    assert committed["$id"].endswith(f"/{SCHEMA_VERSION}.json")
    assert {"image_path", "image_info"} <= set(committed["required"])


def test_shipped_example_results_validate():
    examples = sorted((ROOT / "data" / "perception" / "examples").glob("*.json"))
    assert len(examples) >= 3
    for path in examples:
        PerceptionResult.model_validate_json(path.read_text())


@pytest.mark.parametrize("encoding", ["rle", "png"])
def test_masks_round_trip_exactly_and_compactly(encoding):
    mask = np.zeros((480, 640), bool)
    cv2.circle(mask.view(np.uint8), (300, 200), 80, 1, -1)
    encoded = encode_mask(mask, encoding)
    assert np.array_equal(decode_mask(encoded), mask)
    assert len(encoded.data) < mask.size / 50  # compact: far smaller than one byte per pixel


# --- preprocessing ------------------------------------------------------------------------------

@pytest.mark.parametrize("array,channels", [
    (np.full((8, 9), 200, np.uint8), 1),
    (np.full((8, 9, 1), 200, np.uint8), 1),
    (np.full((8, 9, 4), 200, np.uint8), 4),
    (np.full((8, 9, 3), 60000, np.uint16), 3),
    (np.full((8, 9, 3), 0.5, np.float32), 3),
])
def test_to_bgr_makes_three_channel_uint8(array, channels):
    out = pp.to_bgr(array)
    assert out.shape == (8, 9, 3) and out.dtype == np.uint8


def test_transparent_pixels_become_white():
    bgra = np.zeros((2, 2, 4), np.uint8)  # black, fully transparent
    assert (pp.to_bgr(bgra) == 255).all()


def test_letterbox_keeps_aspect_and_maps_boxes_back():
    image = np.zeros((300, 600, 3), np.uint8)
    boxed, lb = pp.letterbox(image, 640)
    assert boxed.shape == (640, 640, 3) and lb.scale == pytest.approx(640 / 600)
    assert (boxed[:lb.pad_y] == 114).all()  # the grey YOLO was trained with
    box = np.array([[100.0, 50.0, 200.0, 250.0]])
    on_letterbox = box * lb.scale + [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]
    assert np.allclose(lb.to_original(on_letterbox), box, atol=1e-3)
    strided, _ = pp.letterbox(image, 640, stride=32)
    assert strided.shape == (320, 640, 3)  # only padded to the next multiple of 32


def test_resize_max_never_enlarges():
    small = np.zeros((100, 50, 3), np.uint8)
    assert pp.resize_max(small, 1280)[1] == 1.0
    big, scale = pp.resize_max(np.zeros((4000, 3000, 3), np.uint8), 1000)
    assert big.shape[:2] == (1000, 750) and scale == 0.25


def test_crop_clips_to_the_image():
    image = np.arange(100, dtype=np.uint8).reshape(10, 10)
    assert pp.crop(image, [-5, -5, 3, 4]).shape == (4, 3)
    assert pp.crop(image, [20, 20, 30, 30]).size == 0


def test_normalize_is_chw_rgb_standardised():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    x = pp.normalize(bgr)
    assert x.shape == (3, 4, 5) and x.dtype == np.float32
    assert x[0, 0, 0] == pytest.approx((1 - 0.485) / 0.229)  # channel 0 is red after the swap


def test_enhance_for_ocr_upscales_and_keeps_bgr():
    out = pp.enhance_for_ocr(np.full((20, 30, 3), 90, np.uint8), upscale=2.0, binarize=True)
    assert out.shape == (40, 60, 3)


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"),
    (b"just some text\n", "text file"),
    (b"\xff\xd8\xff\xe0garbage" * 10, "decode"),
])
def test_load_image_explains_bad_files(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(pp.ImageError, match=reason):
        pp.load_image(path)


def test_load_image_refuses_oversized_images_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.zeros((100, 100), np.uint8))
    with pytest.raises(pp.ImageError, match="pixel limit"):
        pp.load_image(path, max_pixels=5000)


# --- the engine -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    from efsora_helpers.perception.engine import PerceptionEngine

    return PerceptionEngine(zones=ground_truth()["zones"], ocr_engine="rapidocr")


@pytest.fixture(scope="module")
def sample_result(engine):
    return engine.perceive(SCENES / "images" / "test" / f"{SAMPLE}.jpg")


def test_engine_finds_the_scene_contents(sample_result):
    truth = ground_truth()
    r = sample_result
    assert r.stages == ["detection", "segmentation", "ocr"]
    assert r.count("person") >= truth["counts"]["person"]
    assert any(t.text.replace(" ", "") == "AISLE2" for t in r.text_regions)
    assert r.safety is not None and len(r.safety.workers) == r.count("person")
    assert r.processing_time.total >= r.processing_time.detection + r.processing_time.ocr
    assert all(s.mask is None for s in r.segments)  # masks are off by default


@pytest.mark.parametrize("off", ["detection", "segmentation", "ocr"])
def test_each_stage_can_be_switched_off(engine, off):
    r = engine.derive(**{off: False}).perceive(SCENES / "images" / "test" / f"{SAMPLE}.jpg")
    assert off not in r.stages
    assert getattr(r.processing_time, off) == 0.0
    empty = {"detection": r.objects, "segmentation": r.segments, "ocr": r.text_regions}[off]
    assert empty == []
    if off == "detection":  # safety rules fall back to the segmenter's boxes
        assert r.safety is not None and len(r.safety.workers) >= 1


def test_masks_on_request_match_the_segment_area(engine):
    r = engine.derive(include_masks=True, detection=False, ocr=False).perceive(SCENES / "images" / "test" / f"{SAMPLE}.jpg")
    assert r.segments
    for s in r.segments:
        assert decode_mask(s.mask).sum() == s.area and s.mask.size == (480, 640)


def test_engine_maps_boxes_back_after_max_size(engine):
    image = cv2.imread(str(SCENES / "images" / "test" / f"{SAMPLE}.jpg"))
    big = cv2.resize(image, (1280, 960), interpolation=cv2.INTER_LINEAR)
    r = engine.derive(max_size=640, segmentation=False, ocr=False).perceive(big, image_path="big.jpg")
    assert r.image_info.width == 1280 and r.image_info.processed_width == 640
    people = [o.bbox for o in r.objects if o.label == "person"]
    truth = [w["bbox"] for w in ground_truth()["workers"]]
    # every true worker is found, at twice the coordinates of the 640-px ground truth
    for t in truth:
        assert any(abs(p[0] - 2 * t[0]) < 24 and abs(p[3] - 2 * t[3]) < 24 for p in people)


# --- the command line ---------------------------------------------------------------------------

def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "efsora_helpers.cli", "perceive", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def odd_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("odd")
    (d / "text.jpg").write_text("not an image\n")
    (d / "corrupt.jpg").write_bytes((SCENES / "images" / "test" / f"{SAMPLE}.jpg").read_bytes()[:2000])
    (d / "empty.png").write_bytes(b"")
    cv2.imwrite(str(d / "one_pixel.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(d / "gray.png"), cv2.imread(str(SCENES / "images" / "test" / f"{SAMPLE}.jpg"), cv2.IMREAD_GRAYSCALE))
    bgra = cv2.cvtColor(cv2.imread(str(SCENES / "images" / "test" / f"{SAMPLE}.jpg")), cv2.COLOR_BGR2BGRA)
    cv2.imwrite(str(d / "rgba.png"), bgra)
    cv2.imwrite(str(d / "huge.jpg"), np.full((10000, 10000, 3), 128, np.uint8))
    return d


@pytest.mark.parametrize("name,reason", [
    ("text.jpg", "a text file"),
    ("corrupt.jpg", "corrupt"),
    ("empty.png", "empty"),
    ("missing.jpg", "no such file"),
])
def test_cli_bad_input_is_one_line_and_exit_2(odd_inputs, name, reason):
    done = _run_cli(odd_inputs / name, "--no-ocr")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("efsora:")]
    assert len(lines) == 1 and reason in lines[0] and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_cli_folder_gives_results_and_errors(odd_inputs, tmp_path):
    out = tmp_path / "batch.json"
    done = _run_cli(odd_inputs, "--no-ocr", "--no-progress", "-o", out)
    assert done.returncode == 1 and "Traceback" not in done.stderr  # some files failed, the rest written
    batch = json.loads(out.read_text())
    ok = {r["image_path"].rsplit("/", 1)[-1]: r for r in batch["results"]}
    failed = {e["image_path"].rsplit("/", 1)[-1] for e in batch["errors"]}
    assert set(ok) == {"one_pixel.png", "gray.png", "rgba.png", "huge.jpg"}
    assert failed == {"text.jpg", "corrupt.jpg", "empty.png"}
    assert ok["huge.jpg"]["image_info"]["width"] == 10000 and ok["huge.jpg"]["image_info"]["processed_width"] == 1280
    assert ok["gray.png"]["image_info"]["channels"] == 1 and ok["rgba.png"]["image_info"]["channels"] == 4
    # the gray and RGBA copies of the sample scene still show its workers
    assert sum(o["label"] == "person" for o in ok["rgba.png"]["objects"]) >= 2


def test_cli_sample_image_to_stdout_with_masks():
    image = SCENES / "images" / "test" / f"{SAMPLE}.jpg"
    done = _run_cli(image, "--no-ocr", "--include-masks", "--confidence", "0.5", "--compact")
    assert done.returncode == 0, done.stderr
    result = PerceptionResult.model_validate_json(done.stdout)
    assert result.segments and all(s.mask is not None for s in result.segments)
    assert min(o.confidence for o in result.objects) >= 0.5


@pytest.mark.parametrize("args,reason", [
    (["--confidence", "1.5"], "confidence"),
    (["--no-detection", "--no-segmentation", "--no-ocr"], "switched off"),
    (["--weights", "nonsense"], "unknown weights"),
    (["--weights", "coco"], "efsora assets fetch yolov8n-coco --download"),
])
def test_cli_bad_options_say_what_to_do(args, reason):
    done = _run_cli(SCENES / "images" / "test" / f"{SAMPLE}.jpg", "--no-ocr", *args)
    assert done.returncode == 2 and reason in done.stderr and "Traceback" not in done.stderr


def test_polygon_area_equals_the_full_mask_count():
    from efsora_helpers.perception.models import polygon_area, polygon_mask

    rng = np.random.default_rng(0)
    for _ in range(200):  # polygons partly outside the image included
        points = rng.uniform(-50, 700, (int(rng.integers(3, 12)), 2))
        assert polygon_area(points, 480, 640) == polygon_mask(points, 480, 640).sum()
