"""Frame sampling (efsora_helpers.video): the strategies pick what they promise, scoring counts an
event only if a chosen frame falls while its state holds, and decoding reads the shipped clips."""

import numpy as np
import pytest

from efsora_helpers.video import frames as F
from efsora_helpers.video import sampling as S
from efsora_helpers.vocabulary import EventKind


def _still_then_step(n=40, step_at=20):
    base = np.full((n, 90, 160), 100.0, np.float32)
    base[step_at:, 30:60, 40:80] = 200.0  # something appears and stays
    return base


def test_fixed_stride_and_every_frame():
    assert list(S.fixed_stride(10, 3)) == [0, 3, 6, 9]
    assert len(S.every_frame(7)) == 7


def test_change_keyframes_fire_once_on_a_lasting_change():
    small = _still_then_step()
    assert list(S.change_keyframes(small, threshold=2.0)) == [0, 20]
    assert list(S.change_keyframes(small, threshold=2.0, max_gap=15)) == [0, 15, 20, 35]
    # the histogram moves too: 1200 of 14400 pixels changed grey level
    assert list(S.change_keyframes(small, threshold=0.05, method="hist")) == [0, 20]


def test_motion_gate_follows_motion_with_a_heartbeat():
    motion = np.zeros(100, np.float32)
    motion[40:50] = 0.2
    chosen = S.motion_gated(motion, threshold=0.01, active_stride=2, idle_stride=30)
    assert list(chosen) == [0, 30, 40, 42, 44, 46, 48, 78]


def test_motion_share_ignores_sensor_noise():
    rng = np.random.default_rng(0)
    small = 100 + rng.normal(0, 1, (5, 90, 160)).astype(np.float32)  # sensor noise (sigma 3) after 4x4 averaging
    assert S.motion_share(small).max() < 0.001
    small[3:, :45] += 50
    assert S.motion_share(small)[3] == pytest.approx(0.5, abs=0.01)


def _ev(frame, tid, kind, **extra):
    return {"frame": frame, "track_id": tid, "type": kind, **extra}


def test_an_event_counts_only_if_a_chosen_frame_falls_while_its_state_holds():
    events = [_ev(10, 1, EventKind.ENTER_ZONE), _ev(13, 1, EventKind.EXIT_ZONE),  # a 3-frame visit
              _ev(30, 2, EventKind.OCCLUDED), _ev(50, 2, EventKind.REAPPEARED),
              _ev(60, 3, EventKind.NEAR_MISS, until_frame=64)]
    windows = [(w.start, w.end) for w in S.event_windows(events, 100)]
    assert windows == [(10, 13), (13, 100), (30, 50), (50, 100), (60, 64)]
    every = S.score(S.every_frame(100), events, 100, fps=10)
    assert every["recall"] == 1.0 and every["max_delay_s"] == 0.0 and every["fraction"] == 1.0
    stride = S.score(S.fixed_stride(100, 5), events, 100, fps=10)
    # frames 0, 5, 10, ...: the visit (10-12) is seen at 10; its exit at 15; near miss (60-63) at 60
    assert stride["recall"] == 1.0 and stride["max_delay_s"] == pytest.approx(0.2)
    sparse = S.score(S.fixed_stride(100, 8), events, 100, fps=10)
    # frames 0, 8, 16, ..., 56, 64: the visit (10-12) and the near miss (60-63) fall between samples
    assert sparse["recall"] == pytest.approx(3 / 5)
    assert sparse["by_kind"][EventKind.ENTER_ZONE] == 0.0


def test_decode_reads_a_shipped_clip_with_both_backends():
    name = F.clip_names()[0]
    a = F.decode(name, backend="pyav", progress=False, limit=20)
    b = F.decode(name, backend="opencv", progress=False, limit=20)
    assert len(a.frames) == len(b.frames) == 20 and a.fps == b.fps == 15
    assert a.frames[0].shape == (360, 640, 3)
    # two FFmpeg front ends, one decoder: the frames agree up to colour conversion rounding
    assert np.abs(a.frames[5].astype(int) - b.frames[5].astype(int)).mean() < 2.0
    small = F.decode(name, progress=False, gray=True, size=S.SMALL, limit=3)
    assert small.frames[0].shape == (90, 160)


def test_decode_refuses_a_file_that_is_not_a_video(tmp_path):
    bad = tmp_path / "notes.webm"
    bad.write_text("not a video")
    for backend in ("pyav", "opencv"):
        with pytest.raises(ValueError, match="not a readable video|no video frames"):
            F.decode(bad, backend=backend, progress=False)


class _Det:
    def __init__(self, label, bbox):
        self.label, self.bbox = label, bbox


def test_first_looks_and_detector_confirmation():
    events = [_ev(10, 1, EventKind.ENTER_ZONE, label="person"), _ev(20, 1, EventKind.EXIT_ZONE, label="person"),
              _ev(30, 2, EventKind.OCCLUDED, label="person")]
    looks = S.first_looks(S.fixed_stride(40, 4), events, 40)
    assert [(e["type"], f) for e, f in looks] == [(EventKind.ENTER_ZONE, 12), (EventKind.EXIT_ZONE, 20)]  # not occluded
    zone = [(100, 100), (200, 100), (200, 200), (100, 200)]
    truth = (140, 60, 160, 150)  # foot point (150, 150): inside the zone
    enter = events[0]
    assert S.confirmed(enter, truth, [_Det("person", (141, 61, 161, 151))], zone)
    assert not S.confirmed(enter, truth, [_Det("forklift", (141, 61, 161, 151))], zone)  # wrong class
    assert not S.confirmed(enter, truth, [_Det("person", (141, 100, 161, 190))], zone)  # IoU too low
    assert not S.confirmed(events[1], truth, [_Det("person", (141, 61, 161, 151))], zone)  # still inside: no exit
    assert not S.confirmed(enter, None, [_Det("person", (141, 61, 161, 151))], zone)
    assert S.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
