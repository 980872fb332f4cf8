"""SafetyScenes images: deterministic, labels consistent with masks, PPE as drawn, exports valid,
and the shipped dataset regenerates byte for byte."""

import hashlib
import json

import cv2
import numpy as np
import pytest

from efsora_helpers.paths import repo_root
from efsora_helpers.safetyscenes import CLASSES, render_scene
from efsora_helpers.safetyscenes.dataset import (
    SPLITS, encode_jpeg, ground_truth, write_split, yolo_detect_lines, yolo_segment_lines,
)

SEEDS = range(40, 52)


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(s) for s in SEEDS]


def test_same_seed_same_bytes():
    a, b = render_scene(7), render_scene(7)
    assert hashlib.sha256(a.image.tobytes()).digest() == hashlib.sha256(b.image.tobytes()).digest()
    assert [(i.id, i.label, i.bbox) for i in a.instances] == [(i.id, i.label, i.bbox) for i in b.instances]
    assert encode_jpeg(a.image, 7) == encode_jpeg(b.image, 7)
    assert not np.array_equal(render_scene(8).image, a.image)


def test_boxes_are_inside_the_image_and_tight_around_masks(scenes):
    for scene in scenes:
        for inst in scene.instances:
            x1, y1, x2, y2 = inst.bbox
            assert 0 <= x1 < x2 <= scene.width and 0 <= y1 < y2 <= scene.height
            ys, xs = np.nonzero(inst.mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
            assert inst.label in CLASSES


def test_masks_do_not_overlap_except_worn_ppe(scenes):
    for scene in scenes:
        persons = {i.id: i for i in scene.by_label("person")}
        others = [i for i in scene.instances if i.label != "person"]
        for a in range(len(others)):
            for b in range(a + 1, len(others)):
                assert not (others[a].mask & others[b].mask).any()
        for ppe in scene.by_label("hard_hat") + scene.by_label("vest"):
            owner = ppe.attributes["worn_by"]
            if owner in persons:  # worn PPE is part of its worker's mask
                assert not (ppe.mask & ~persons[owner].mask).any()


def test_ppe_attributes_match_what_is_drawn(scenes):
    checked = 0
    for scene in scenes:
        hats = {i.attributes["worn_by"]: i for i in scene.by_label("hard_hat")}
        vests = {i.attributes["worn_by"]: i for i in scene.by_label("vest")}
        for person in scene.by_label("person"):
            a = person.attributes
            if not a["hard_hat"]:
                assert person.id not in hats
            elif person.id in hats:  # a visible hat sits in the top quarter of its worker
                x1, y1, x2, y2 = person.bbox
                hy = np.nonzero(hats[person.id].mask)[0].mean()
                assert y1 <= hy <= y1 + 0.25 * (y2 - y1)
                checked += 1
            if not a["vest"]:
                assert person.id not in vests
            elif person.id in vests:  # a vest has bright retro-reflective stripes inside it
                stripe = scene.image[vests[person.id].mask].mean(axis=0)
                assert stripe.max() > 60
                checked += 1
    assert checked >= 10


def test_text_regions_are_on_their_sign(scenes):
    found = 0
    for scene in scenes:
        signs = {i.id: i for i in scene.by_label("sign")}
        for t in scene.text_regions:
            x1, y1, x2, y2 = t.bbox
            sx1, sy1, sx2, sy2 = signs[t.sign_id].bbox
            assert sx1 <= x1 and sy1 <= y1 and x2 <= sx2 and y2 <= sy2
            assert signs[t.sign_id].attributes["text"] == t.text
            found += 1
    assert found >= 5


def test_yolo_labels_round_trip(scenes):
    scene = scenes[0]
    det = [list(map(float, line.split())) for line in yolo_detect_lines(scene)]
    seg = [list(map(float, line.split())) for line in yolo_segment_lines(scene)]
    assert len(det) == len(scene.instances)
    for row, inst in zip(det, scene.instances):
        cls, cx, cy, w, h = row
        assert CLASSES[int(cls)] == inst.label
        x1 = (cx - w / 2) * scene.width
        assert abs(x1 - inst.bbox[0]) < 0.01
    for row in seg:
        coords = np.array(row[1:]).reshape(-1, 2)
        assert ((0 <= coords) & (coords <= 1)).all() and len(coords) >= 3


def test_coco_export_is_valid_and_matches_boxes(tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    write_split(tmp_path, "val", list(range(200_000, 200_004)), progress=False)
    coco = COCO(str(tmp_path / "coco" / "val.json"))
    for ann in coco.loadAnns(coco.getAnnIds()):
        x, y, w, h = mask_utils.toBbox(ann["segmentation"])
        assert np.allclose([x, y, w, h], ann["bbox"])
        assert mask_utils.area(ann["segmentation"]) == ann["area"]
    gt = json.loads((tmp_path / "ground_truth" / "val" / "val_0000.json").read_text())
    assert gt["counts"]["person"] == len(gt["workers"])


def test_ground_truth_answers_questions():
    scene = render_scene(12345)
    gt = ground_truth(scene, "x.jpg")
    workers = gt["workers"]
    assert gt["counts"]["workers_without_hard_hat"] == sum(not w["hard_hat"] for w in workers)
    assert set(gt["zones"]) == {"forklift_zone"}


SHIPPED = repo_root() / "data" / "safetyscenes"


@pytest.mark.slow
def test_shipped_split_regenerates_byte_for_byte(tmp_path):
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    base, n = SPLITS["val"]
    write_split(tmp_path, "val", list(range(base, base + n)), progress=False)
    fresh = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(fresh) == 4 * n + 1
    for path in fresh:
        name = path.relative_to(tmp_path).as_posix()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest[name]["sha256"], name


def test_shipped_files_match_the_manifest():
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    on_disk = {p.relative_to(SHIPPED).as_posix() for p in SHIPPED.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == set(manifest)
    total = sum(entry["bytes"] for entry in manifest.values())
    assert total < 40e6, f"the shipped dataset is {total / 1e6:.1f} MB"
    image = cv2.imread(str(SHIPPED / "images" / "test" / "test_0000.jpg"))
    assert image.shape == (480, 640, 3)


def test_polygons_cover_every_part_of_an_occluded_mask(scenes):
    split = 0
    for scene in scenes:
        for inst, line in zip(scene.instances, yolo_segment_lines(scene)):
            coords = np.array(line.split()[1:], float).reshape(-1, 2) * [scene.width, scene.height]
            x1, y1, x2, y2 = inst.bbox
            # the polygon runs through boundary pixel centres: within a pixel of the mask's box
            assert abs(coords[:, 0].min() - x1) <= 1 and abs(coords[:, 0].max() - x2) <= 1
            assert abs(coords[:, 1].min() - y1) <= 1 and abs(coords[:, 1].max() - y2) <= 1
            n_parts, _ = cv2.connectedComponents(inst.mask.astype(np.uint8))
            split += n_parts > 2
    assert split >= 1, "no occluder split a mask in these scenes: the test checks nothing"
