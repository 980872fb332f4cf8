"""Chapter 4, part A: the new detection task and its preparation (efsora_helpers.finetuning.data),
the transfer-learning grid's plumbing (detect_grid) and the `efsora finetune` commands."""

import csv
import json

import cv2
import numpy as np
import pytest

from efsora_helpers.cli import main
from efsora_helpers.finetuning import data
from efsora_helpers.safetyscenes import dataset as shipped_dataset
from efsora_helpers.safetyscenes import train as shipped_train
from efsora_helpers.safetyscenes.render import SceneConfig, render_scene
from efsora_helpers.vocabulary import CLASSES, FINETUNE_CLASSES, NewClass


def test_task_classes_extend_the_shipped_ones():
    assert FINETUNE_CLASSES[:len(CLASSES)] == CLASSES
    assert FINETUNE_CLASSES[len(CLASSES):] == tuple(NewClass) == data.NEW_CLASSES
    assert all(type(c) is str for c in FINETUNE_CLASSES) and len(set(FINETUNE_CLASSES)) == len(FINETUNE_CLASSES)


def test_no_seed_is_in_two_splits_of_the_full_task():
    seeds = data.task_seeds()
    assert {s: len(v) for s, v in seeds.items()} == data.DEFAULT_SIZES
    sets = [set(v) for v in seeds.values()]
    assert sum(len(s) for s in sets) == len(set().union(*sets)), "a seed is in two splits"
    assert all(data.split_of(seed) == split for split, v in seeds.items() for seed in v)
    # every capture of a scene (original, re-capture, copy) follows its seed
    caps = [data.Capture(f"s{seed}{suffix}", seed, kind, 640, 480, "day")
            for v in seeds.values() for seed in v for suffix, kind in (("", "original"), ("_copy", "copy"))]
    assert not data.seeds_in_more_than_one_split(data.split_by_seed(caps))


def test_task_seeds_nest_and_stay_clear_of_other_safetyscenes_ranges():
    small, large = data.task_seeds({"train": 25, "val": 5, "test": 5}), data.task_seeds()
    for split in small:
        assert large[split][:len(small[split])] == small[split]
    used = [(b, b + n) for b, n in shipped_dataset.SPLITS.values()]
    used += [(shipped_train.TRAIN_SEED_BASE, shipped_train.TRAIN_SEED_BASE + 10_000),
             (shipped_train.VAL_SEED_BASE, shipped_train.VAL_SEED_BASE + 10_000),
             (shipped_dataset.FRESH_TEST_BASE, shipped_dataset.FRESH_TEST_BASE + 100_000)]
    task = [s for v in large.values() for s in v]
    assert not any(lo <= s < hi for s in task for lo, hi in used)


def test_new_classes_keep_the_base_scene_and_are_deterministic():
    seen = set()
    for seed in range(data.SEED_BASE, data.SEED_BASE + 12):
        plain, task = render_scene(seed), data.render(seed)
        assert [i.label for i in plain.instances] == [i.label for i in task.instances if i.label not in data.NEW_CLASSES]
        seen |= {i.label for i in task.instances}
    assert set(data.NEW_CLASSES) <= seen
    a, b = data.render(data.SEED_BASE + 3), data.render(data.SEED_BASE + 3)
    assert np.array_equal(a.image, b.image) and [i.bbox for i in a.instances] == [i.bbox for i in b.instances]
    # the default configuration draws none of it
    assert np.array_equal(render_scene(123).image, render_scene(123, config=SceneConfig()).image)
    assert not any(i.label in data.NEW_CLASSES for i in render_scene(123).instances)


def test_night_lighting_darkens_and_is_recorded():
    nights = [data.render(s) for s in range(data.SEED_BASE, data.SEED_BASE + 30)]
    night = [s for s in nights if s.params.get("lighting") == "night"]
    day = [s for s in nights if "lighting" not in s.params]
    assert 3 <= len(night) <= 20
    assert np.mean([s.image.mean() for s in night]) < 0.7 * np.mean([s.image.mean() for s in day])


def test_dhash_separates_recaptures_from_other_scenes():
    a, b = data.render(data.SEED_BASE).image, data.render(data.SEED_BASE + 1).image
    again = cv2.imdecode(cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_COLOR)
    d = data.hamming_matrix([data.dhash(a), data.dhash(again), data.dhash(b)])
    assert (d == d.T).all() and (np.diag(d) == 0).all()
    assert d[0, 1] <= data.NEAR_DUPLICATE_BITS < d[0, 2]


def test_yolo_lines_round_trip_to_pixels(tmp_path):
    cap = data.Capture("x", 1, "original", 640, 480, "day", [str(NewClass.SPILL)], [[10.0, 20.0, 110.0, 70.0]], [3000])
    (tmp_path / "x.txt").write_text("\n".join(data.yolo_lines(cap)) + "\n")
    ((k, box),) = data.read_yolo(tmp_path / "x.txt", 640, 480)
    assert k == FINETUNE_CLASSES.index(NewClass.SPILL)
    assert np.allclose(box, cap.boxes[0], atol=1e-3)
    coco = data.coco_dict([cap], "t")
    assert coco["annotations"][0]["bbox"] == [10.0, 20.0, 100.0, 50.0] and coco["annotations"][0]["category_id"] == k + 1


def test_augmentation_turns_off_the_flip_ultralytics_does():
    aug, defaults = data.train_augmentation(), data.ultralytics_defaults()
    assert aug["fliplr"] == 0.0 and defaults["fliplr"] > 0
    assert set(aug) <= set(defaults) and all(data.AUGMENT[k][1] for k in aug)


def test_cli_defaults_are_the_task_sizes():
    from efsora_helpers.finetuning.cli import TASK_SIZES

    assert TASK_SIZES == data.DEFAULT_SIZES


@pytest.mark.parametrize("argv, message", [
    (["finetune", "detect-grid", "--strategies", "nope"], "unknown strategy"),
    (["finetune", "detect-grid", "--sizes", "a,b"], "whole numbers"),
    (["finetune", "detect-grid", "--sizes", "0"], "positive"),
    (["finetune", "data", "--train", "0"], "at least one scene"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main([*argv, *(["--data" if argv[1] == "detect-grid" else "--out", str(tmp_path)])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("efsora: error:") and message in err and "\n" not in err


@pytest.mark.slow
def test_prepare_writes_checked_formats_and_removes_planted_duplicates(tmp_path):
    sizes = {"train": 10, "val": 3, "test": 3}
    report = data.prepare(tmp_path, sizes=sizes)
    assert report["images"] == sizes and not report["seeds_in_two_splits"]
    caps = data.load_captures(tmp_path / "raw")
    planted = [c.file for c in caps if c.kind != "original"]
    assert planted and sorted(report["removed"]) == sorted(planted)
    assert report["exact_duplicate_groups"] == sum(c.kind == "copy" for c in caps)
    for check in report["cross_check"]:
        assert check["images_match"] and check["class_mismatches"] == check["count_mismatches"] == 0
        assert check["max_px"] < 0.01
    assert data.prepare(tmp_path, sizes=sizes) == report  # a second call reuses the prepared task
    subset = data.train_subset_yaml(tmp_path, 4)
    assert len((tmp_path / "yolo" / "train_4.txt").read_text().split()) == 4 and subset.exists()


@pytest.mark.slow
def test_grid_runs_a_tiny_transfer_and_writes_a_row(tmp_path):
    from efsora_helpers.env import setup
    from efsora_helpers.finetuning.detect_grid import FIELDS, run_grid

    setup(quiet=True)
    results = tmp_path / "grid.csv"
    rows = run_grid(["head_only"], [4], epochs=1, imgsz=64, batch=4, root=tmp_path / "task", results=results,
                    task_sizes={"train": 4, "val": 2, "test": 2}, log=lambda *_: None)
    assert len(rows) == 1
    with results.open() as f:
        (row,) = list(csv.DictReader(f))
    assert list(row) == FIELDS and row["strategy"] == "head_only" and row["freeze"] == "22"
    assert 0.0 <= float(row["map50"]) <= 1.0 and float(row["train_s_per_epoch"]) > 0
    json.dumps(rows)


def test_the_grid_budget_is_fixed_in_images_not_epochs():
    from efsora_helpers.finetuning.detect_grid import STRATEGIES, epochs_for, run_grid

    assert [epochs_for(n, 2400) for n in (25, 50, 100, 200)] == [96, 48, 24, 12]
    assert {n * epochs_for(n, 2400) for n in (25, 50, 100, 200)} == {2400}
    assert epochs_for(5000, 2400) == 1
    with pytest.raises(ValueError, match="either epochs or image_passes"):
        run_grid(["scratch"], [25], epochs=3, image_passes=2400)
    with pytest.raises(ValueError, match="either epochs or image_passes"):
        run_grid(["scratch"], [25])
    # only random weights get ultralytics' bias-lr kick
    assert {s.name for s in STRATEGIES.values() if s.warmup_bias_lr > 0} == {"scratch"}


@pytest.mark.slow
def test_ship_picks_on_validation_strips_and_writes_a_card(tmp_path):
    from efsora_helpers.env import setup
    from efsora_helpers.finetuning.detect_grid import run_grid
    from efsora_helpers.finetuning.detect_ship import candidates, ship

    setup(quiet=True)
    results, root = tmp_path / "grid.csv", tmp_path / "task"
    with pytest.raises(FileNotFoundError, match="detect-grid --keep-runs"):
        candidates(results, root / "runs")
    run_grid(["head_only", "freeze_backbone"], [4], epochs=1, imgsz=64, batch=4, root=root, results=results,
             task_sizes={"train": 4, "val": 2, "test": 2}, keep_runs=True, log=lambda *_: None)
    assert len(candidates(results, root / "runs")) == 2
    out = tmp_path / "models" / "best.pt"
    lines = []
    record = ship(results, root, out, log=lines.append)
    import torch

    assert torch.load(out, map_location="cpu", weights_only=False).get("optimizer") is None
    assert len(record["selection"]) == 2 and "validation" in record["selected_by"]
    best_val = max(r["val_map50_95"] for r in record["selection"])
    assert any(r["strategy"] == record["run"]["strategy"] and r["val_map50_95"] == best_val for r in record["selection"])
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] == record["sha256"]
    text = out.with_suffix(".md").read_text()
    assert record["sha256"] in text and "| head_only | 4 |" in text


def test_ship_without_kept_runs_says_what_to_do(tmp_path):
    from efsora_helpers.finetuning.detect_ship import candidates

    grid = tmp_path / "grid.csv"
    grid.write_text("strategy,n_train,map50_95\nscratch,25,0.0\n")
    with pytest.raises(FileNotFoundError, match="--keep-runs"):
        candidates(grid, tmp_path / "runs")
