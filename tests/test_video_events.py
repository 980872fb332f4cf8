"""Track-level zone events: debounced, dated to the first frame of the new state, and scored by worker
and time; on the ground-truth boxes they reproduce the generator's zone timeline."""

import pytest

from efsora_helpers.video import events as E
from efsora_helpers.video import frames as F
from efsora_helpers.video import metrics as M
from efsora_helpers.vocabulary import EventKind, Zone

ZONE = [(100, 0), (200, 0), (200, 300), (100, 300)]


def _track(xs, tid=7):
    """One 20-pixel-wide box per frame, foot point at x (frames 1-based)."""
    return {f + 1: [(tid, x - 10, 50, x + 10, 100)] for f, x in enumerate(xs)}


def test_entries_are_debounced_and_dated_to_the_first_frame_inside():
    xs = [50] * 5 + [150, 50] + [150] * 6 + [50] * 4  # a one-frame flicker at frame 5, in from frame 7
    ev = E.zone_events(_track(xs), ZONE, fps=10, min_frames=3)
    assert [(e["type"], e["frame"]) for e in ev] == [(EventKind.ENTER_ZONE, 7), (EventKind.EXIT_ZONE, 13)]
    assert ev[0]["time_s"] == 0.7


def test_matching_needs_the_right_worker_and_time():
    truth = [{"frame": 7, "time_s": 0.7, "track_id": 3, "type": EventKind.ENTER_ZONE}]
    pred = [{"frame": 9, "time_s": 0.9, "track_id": 7, "type": EventKind.ENTER_ZONE}]
    assert E.match_events(pred, truth, {7: 3})["recall"] == 1.0
    assert E.match_events(pred, truth, {7: 3})["mean_abs_error_s"] == pytest.approx(0.2)
    assert E.match_events(pred, truth, {7: 4})["recall"] == 0.0  # the right time, the wrong worker
    assert E.match_events(pred, truth, {7: 3}, tolerance_s=0.1)["recall"] == 0.0


@pytest.mark.parametrize("name", ["busy_aisle", "vest_off_near_miss"])
def test_ground_truth_boxes_reproduce_the_generators_zone_events(name):
    rows = F.mot_rows(name)
    gt = M.by_frame(rows[rows[:, 7] == 1])
    ids = {int(i) for i in rows[:, 1]}
    predicted = E.zone_events(gt, F.zones(name)[Zone.FORKLIFT_ZONE], fps=15)
    score = E.match_events(predicted, F.events(name), {i: i for i in ids}, tolerance_s=0.5)
    assert score["precision"] == score["recall"] == 1.0
    assert score["mean_abs_error_s"] < 0.15


def test_who_at_names_the_worker_under_the_track_box():
    gt = {8: [(3, 0, 0, 10, 10), (4, 50, 50, 60, 60)]}
    tracks = {8: [(77, 51, 50, 61, 60)]}
    assert E.who_at(gt, tracks, {"frame": 7, "track_id": 77}) == 4
    assert E.who_at(gt, tracks, {"frame": 6, "track_id": 77}) is None


@pytest.mark.parametrize("name", ["vest_on_in_lane", "vest_off_near_miss"])
def test_the_running_question_on_true_tracks_with_detected_vests(name):
    """Who entered the forklift zone without a vest, and when: true tracks, the detector's vests."""
    from efsora_helpers.video.detect import detections_root, read_detections

    if not (detections_root() / f"{name}_det.txt").exists():
        pytest.skip("no cached detections")
    rows = F.mot_rows(name)
    gt = M.by_frame(rows[rows[:, 7] == 1])
    truth = [e for e in F.events(name) if e["type"] == EventKind.ENTER_ZONE and not e["vest"]]
    found = E.entries_without_vest(gt, read_detections(name), F.zones(name)[Zone.FORKLIFT_ZONE], fps=15)
    score = E.match_events(found, truth, {int(i): int(i) for i in rows[:, 1]}, tolerance_s=1.0)
    assert truth and score["recall"] == 1.0 and score["precision"] == 1.0


def test_truth_timeline_as_schema_records():
    from efsora_helpers.perception.schema import TrackEvent

    for name in F.clip_names():
        raw, records = F.events(name), F.truth_track_events(name)
        assert len(records) == len(raw) and all(isinstance(r, TrackEvent) for r in records)
        assert [r.kind.value for r in records] == [e["type"] for e in raw]
        assert all(TrackEvent.model_validate_json(r.model_dump_json()) == r for r in records)
