"""Track-level events: zone entry/exit (debounced, dated to the first frame of the new state, with
dwell), the PPE vote, no-vest-in-zone violations and near misses, on synthetic track sequences (fakes:
hand-made boxes) and on the shipped clips; scored by worker and time against the generator's timeline."""

import numpy as np
import pytest

from efsora_helpers.perception.schema import TrackEvent
from efsora_helpers.video import events as E
from efsora_helpers.video import frames as F
from efsora_helpers.video import metrics as M
from efsora_helpers.vocabulary import EventKind, ObjectClass, Rule, Zone

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


# --- EventDetector on synthetic track sequences (fakes: hand-made boxes, no tracker, no detector) ------

ZONES = {Zone.FORKLIFT_ZONE: [[100, 0], [200, 0], [200, 360], [100, 360]]}


def _worker(tid, x, y2=300, h=120):
    """A synthetic worker box, foot point at (x, y2)."""
    return (tid, ObjectClass.PERSON, x - 15, y2 - h, x + 15, y2, 0.9)


def _vest_row(frame, box):
    """A synthetic vest detection (det-file row, 1-based frame) in the chest of ``box``."""
    _, _, x1, y1, x2, y2, _ = box
    return [frame + 1, -1, (x1 + x2) / 2 - 5, y1 + (y2 - y1) * 0.3, 10, 10, 0.8, E.VEST_CLASS, -1]


def _run(detector, frames):
    """Feed ``frames`` ([(tracks, detections)]) to ``detector``; every event it returns, then finish's."""
    out = []
    for f, (tracks, dets) in enumerate(frames):
        out += detector.update(f, tracks, None if dets is None else np.array(dets, float).reshape(-1, 9))
    return out + detector.finish(len(frames) - 1)


def test_synthetic_zone_entry_exit_with_dwell_as_schema_records():
    xs = [50] * 10 + [150, 50] + [150] * 30 + [50] * 10  # a one-frame flicker at 10, inside 12-41
    ev = _run(E.EventDetector(ZONES, fps=10), [([_worker(3, x)], None) for x in xs])
    assert all(isinstance(e, TrackEvent) for e in ev)
    assert [(e.kind, e.frame) for e in ev] == [(EventKind.ENTER_ZONE, 12), (EventKind.EXIT_ZONE, 42)]
    assert ev[1].details["dwell_s"] == pytest.approx(3.0) and ev[0].zone == Zone.FORKLIFT_ZONE


def test_synthetic_ppe_vote_ignores_a_missed_frame_but_not_a_vest_taken_off():
    n, off_at = 60, 40
    frames = []
    for f in range(n):
        box = _worker(1, 50)
        seen = f < off_at and f != 20  # the detector misses the vest once at 20; it is gone from 40
        frames.append(([box], [_vest_row(f, box)] if seen else []))
    voted = _run(E.EventDetector(ZONES, fps=10, vest_window=10), frames)
    assert [(e.kind, e.frame) for e in voted] == [(EventKind.TAKE_OFF_PPE, off_at)]
    one_frame = _run(E.EventDetector(ZONES, fps=10, vest_window=1), frames)
    assert [e.kind for e in one_frame] == [EventKind.TAKE_OFF_PPE, EventKind.PUT_ON_PPE, EventKind.TAKE_OFF_PPE]


def test_synthetic_no_vest_in_the_zone_is_a_violation_from_entry_to_exit():
    xs = [50] * 20 + [150] * 20 + [50] * 10
    frames = [([_worker(2, x)], []) for x in xs]  # no vest ever seen
    ev = _run(E.EventDetector(ZONES, fps=10, vest_window=5), frames)
    kinds = [(e.kind, e.frame) for e in ev]
    assert (EventKind.ENTER_ZONE, 20) in kinds and (EventKind.VIOLATION_START, 20) in kinds
    assert (EventKind.VIOLATION_END, 40) in kinds
    start = next(e for e in ev if e.kind == EventKind.VIOLATION_START)
    assert start.rule == Rule.NO_VEST and next(e for e in ev if e.kind == EventKind.ENTER_ZONE).details["vest"] is False


def _forklift(tid, x, y2=300):
    return (tid, ObjectClass.FORKLIFT, x - 100, y2 - 130, x + 100, y2, 0.8)


@pytest.mark.parametrize("floor", [True, False])
def test_synthetic_near_miss_needs_a_moving_forklift(floor):
    camera = {"horizon": 130, "width": 640, "height": 360} if floor else {}
    worker = _worker(5, 400, y2=300)
    moving = [([worker, _forklift(9, 0 + 8 * f)], None) for f in range(40)]  # about 2 m/s toward the worker
    ev = _run(E.EventDetector({}, fps=15, **camera), moving)
    near = [e for e in ev if e.kind == EventKind.NEAR_MISS]
    assert len(near) == 1 and near[0].track_id == 5 and near[0].details["forklift_id"] == 9
    assert near[0].details["floor_model"] is floor
    parked = [([worker, _forklift(9, 300)], None) for f in range(40)]  # as close, standing still
    assert not [e for e in _run(E.EventDetector({}, fps=15, **camera), parked) if e.kind == EventKind.NEAR_MISS]


def test_unknown_settings_are_an_error():
    with pytest.raises(TypeError, match="vest_windw"):
        E.EventDetector(ZONES, fps=15, vest_windw=3)


def test_score_events_per_kind():
    def ev(kind, t, tid=1):
        return TrackEvent(frame=round(t * 10), time_s=t, track_id=tid, label=ObjectClass.PERSON, kind=kind)

    truth = [ev(EventKind.ENTER_ZONE, 1.0), ev(EventKind.NEAR_MISS, 2.0), ev(EventKind.NEAR_MISS, 5.0)]
    pred = [ev(EventKind.ENTER_ZONE, 1.3), ev(EventKind.NEAR_MISS, 2.2), ev(EventKind.NEAR_MISS, 9.0)]
    s = E.score_events(pred, truth, tolerance_s=1.0)
    assert (s[EventKind.ENTER_ZONE]["tp"], s[EventKind.ENTER_ZONE]["median_error_s"]) == (1, pytest.approx(0.3))
    assert (s[EventKind.NEAR_MISS]["tp"], s[EventKind.NEAR_MISS]["fp"], s[EventKind.NEAR_MISS]["fn"]) == (1, 1, 1)
    assert E.score_events(pred, truth, pairs={1: 2})[EventKind.ENTER_ZONE]["tp"] == 0  # the wrong worker


def test_truth_violations_from_the_generators_timeline():
    name = "vest_off_near_miss"
    truth = F.truth_track_events(name)
    v = E.truth_violations(truth, F.meta(name)["frames"], 15)
    entry = next(e for e in truth if e.kind == EventKind.ENTER_ZONE and e.details["vest"] is False)
    assert v[0].kind == EventKind.VIOLATION_START and (v[0].frame, v[0].track_id) == (entry.frame, entry.track_id)


# --- real clips ---------------------------------------------------------------------------------------

def test_true_boxes_reproduce_the_generators_zone_events_and_most_near_misses():
    """The rules apart from tracking: the ground truth's boxes as a perfect tracker."""
    enter, near_tp, near_true = [], 0, 0
    for name in F.clip_names():
        truth = F.truth_track_events(name)
        s = E.score_events(E.run_detector(name, E.truth_tracks(name)), truth, 1.0, pairs=lambda e: e.track_id,
                           kinds=[EventKind.ENTER_ZONE, EventKind.EXIT_ZONE, EventKind.NEAR_MISS])
        enter.append(s[EventKind.ENTER_ZONE]["recall"] == s[EventKind.EXIT_ZONE]["recall"] == 1.0)
        near_tp += s[EventKind.NEAR_MISS]["tp"]
        near_true += s[EventKind.NEAR_MISS]["tp"] + s[EventKind.NEAR_MISS]["fn"]
    assert all(enter) and near_tp / near_true >= 0.8


def test_real_clip_events_answer_the_running_question():
    """Cached detections -> ByteTrack -> EventDetector on a shipped clip: the worker who walks into
    the lane without a vest is found within a second."""
    from efsora_helpers.video.detect import detections_root

    name = "vest_off_near_miss"
    if not (detections_root() / f"{name}_det.txt").exists():
        pytest.skip("no cached detections")
    ev = E.clip_events(name)
    found = [e for e in ev if e.kind == EventKind.ENTER_ZONE and e.details[E.VEST] is False]
    truth = [e for e in F.truth_track_events(name) if e.kind == EventKind.ENTER_ZONE and e.details[E.VEST] is False]
    assert truth and len(found) == len(truth)
    assert all(abs(f.time_s - t.time_s) <= 1.0 for f, t in zip(found, truth))


def test_real_clip_with_frames_skipped_keeps_zone_events_dated_in_video_frames():
    """The stream samples every k-th frame: events stay in the video's frame numbers and times."""
    from efsora_helpers.video.detect import detections_root

    name = "vest_off_near_miss"
    if not (detections_root() / f"{name}_det.txt").exists():
        pytest.skip("no cached detections")
    ev = E.clip_events(name, stride=3)
    assert all(e.frame % 3 == 0 for e in ev if e.kind in (EventKind.ENTER_ZONE, EventKind.EXIT_ZONE))
    s = E.score_events(ev, F.truth_track_events(name), tolerance_s=1.0, kinds=[EventKind.ENTER_ZONE])
    assert s[EventKind.ENTER_ZONE]["recall"] == 1.0


def test_the_floor_model_needs_the_frame_size():
    with pytest.raises(ValueError, match="width and height"):
        E.EventDetector(ZONES, fps=15, horizon=130)


def test_unconfirmed_boxes_make_no_events():
    xs = [50] * 5 + [150] * 10
    ev = _run(E.EventDetector(ZONES, fps=10), [([_worker(-1, x)], None) for x in xs])
    assert ev == []
