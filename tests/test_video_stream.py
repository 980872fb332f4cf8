"""The async pipeline of chapter 5 (efsora_helpers.video.stream): bounded queues, backpressure, the
live drop policy (frames only, never events), batching, cleanup on cancellation or failure, and one
real short run on a shipped clip with the shipped detector."""

import asyncio
import threading
import time

import numpy as np
import pytest

from efsora_helpers.perception.schema import DetectedObject, TrackEvent, VideoResult
from efsora_helpers.video import stream as S
from efsora_helpers.vocabulary import EventKind, ObjectClass

N_FRAMES, FPS = 45, 15


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A short synthetic video: a bright block moving right on grey (MPEG-4, 160x96, 15 fps)."""
    import av

    path = tmp_path_factory.mktemp("stream") / "moving.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=FPS)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for i in range(N_FRAMES):
            img = np.full((96, 160, 3), 90, np.uint8)
            img[30:70, 2 * i:2 * i + 20] = 230
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


class FakeDetector:
    """A stand-in for the model (unit tests only): one confident person box that follows the block,
    after ``delay_s`` of pretend inference."""

    def __init__(self, delay_s=0.0, fail_at=None):
        self.delay_s, self.fail_at, self.calls = delay_s, fail_at, 0

    def detect(self, image, confidence=0.25):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("fake detector failure")
        time.sleep(self.delay_s)
        cols = np.where(image[50, :, 0] > 160)[0]
        if not len(cols):
            return []
        return [DetectedObject(id=0, label=ObjectClass.PERSON, confidence=0.9,
                               bbox=[float(cols[0]), 30.0, float(cols[-1]), 70.0])]


class FakeEvents:
    """A stand-in events engine: one event per processed frame that has a tracked object."""

    def __init__(self):
        self.emitted = []

    def update(self, frame, tracks, detections):
        out = [TrackEvent(frame=frame, time_s=frame / FPS, track_id=t[0], label=t[1],
                          kind=EventKind.ENTER_FRAME) for t in tracks[:1]]
        self.emitted += out
        return out


class FakeAlerts:
    """A slow alert sink (unit tests only): every event becomes one alert after ``delay_s``."""

    def __init__(self, delay_s=0.0):
        self.delay_s = delay_s

    def handle(self, event):
        time.sleep(self.delay_s)
        return [f"alert {event.frame}"]


def run(clip, detector, events=None, alert_engine=None, **cfg):
    return S.analyze(clip, detector, events=events or FakeEvents(), alert_engine=alert_engine,
                     config=S.StreamConfig(**cfg))


def test_offline_run_detects_every_sampled_frame_and_keeps_queues_bounded(clip):
    r = run(clip, FakeDetector(delay_s=0.01), maxsize=3, stride=2, depth_every_s=0.005)
    s = r.stats.summary()
    assert s["decoded"] == N_FRAMES and s["sampled"] == len(range(0, N_FRAMES, 2)) == s["detected"]
    assert s["dropped"] == 0
    assert all(s[f"max_depth_{q}"] <= 3 for q in S.QUEUES)
    assert s["max_depth_detect"] == 3  # the decoder outran the detector and had to wait: backpressure
    assert len(r.video.tracks) == 1 and r.video.tracks[0].label == ObjectClass.PERSON
    assert isinstance(VideoResult.model_validate_json(r.video.model_dump_json()), VideoResult)


def test_live_mode_drops_oldest_frames_but_no_event(clip):
    events = FakeEvents()
    r = run(clip, FakeDetector(delay_s=0.15), events=events, alert_engine=FakeAlerts(0.01), realtime=True,
            maxsize=2, depth_every_s=0.005)
    s = r.stats.summary()
    assert s["dropped"] > 0 and s["dropped"] + s["detected"] == s["sampled"] == N_FRAMES
    assert all(s[f"max_depth_{q}"] <= 2 for q in S.QUEUES)
    # every event the events stage emitted came out, in the result and as an alert
    assert s["events"] == s["delivered"] == len(events.emitted) == len(r.video.events) == s["alerts"] > 0
    assert sorted(e.frame for e in r.video.events) == sorted(e.frame for e in events.emitted)
    assert s["wall_s"] >= (N_FRAMES - 1) / FPS * 0.95  # paced at the clip's fps


def test_oldest_frames_are_the_ones_dropped():
    async def go():
        q = asyncio.Queue(maxsize=2)
        dropped = sum(S._offer(q, i, True) for i in range(5))
        return dropped, [q.get_nowait() for _ in range(q.qsize())]

    assert asyncio.run(go()) == (3, [3, 4])


def test_slow_alerts_block_events_instead_of_losing_them(clip):
    r = run(clip, FakeDetector(), alert_engine=FakeAlerts(0.01), maxsize=1, depth_every_s=0.002)
    s = r.stats.summary()
    assert s["events"] == s["delivered"] == s["alerts"] == N_FRAMES - 1  # ByteTrack confirms a track on its 2nd frame
    assert s["max_depth_alerts"] <= 1


def test_batching_takes_waiting_frames(clip):
    r = run(clip, FakeDetector(delay_s=0.01), batch=4, maxsize=8)
    assert max(r.stats.batch_sizes) == 4 and r.stats.detected == N_FRAMES
    assert [e.frame for e in r.video.events] == list(range(1, N_FRAMES))  # order kept through batches


def test_motion_gated_sampler_sends_still_frames_rarely():
    still = np.zeros((90, 160, 3), np.uint8)
    sampler = S.Sampler(stride=2, motion_threshold=0.01, idle_stride=10)
    assert [i for i in range(25) if sampler.choose(i, still)] == [0, 10, 20]
    sampler = S.Sampler(stride=2, motion_threshold=0.01, idle_stride=10)
    moving = [np.full((90, 160, 3), 255 * (i % 2), np.uint8) for i in range(8)]
    assert [i for i in range(8) if sampler.choose(i, moving[i])] == [0, 2, 4, 6]


def _no_stage_threads():
    return not [t for t in threading.enumerate() if t.name.startswith(("decode", "detect"))]


def test_cancellation_leaves_no_task_or_thread(clip):
    async def go():
        task = asyncio.create_task(S.run_stream(clip, FakeDetector(delay_s=0.05), events=FakeEvents(),
                                                config=S.StreamConfig(realtime=True)))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [t for t in asyncio.all_tasks() if not t.done() and t is not asyncio.current_task()]

    assert asyncio.run(go()) == []
    assert _no_stage_threads()


def test_a_failing_stage_stops_the_pipeline(clip):
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="fake detector failure"):
        run(clip, FakeDetector(fail_at=3), maxsize=2)
    assert time.perf_counter() - start < 10 and _no_stage_threads()


@pytest.mark.parametrize("content", [b"not a video at all\n" * 10, b""])
def test_a_non_video_is_a_video_error(tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(S.VideoError, match="bad.mp4"):
        run(bad, FakeDetector())
    with pytest.raises(S.VideoError, match="no such file"):
        run(tmp_path / "missing.webm", FakeDetector())


@pytest.mark.slow
def test_real_short_run_on_a_shipped_clip():
    from efsora_helpers.video import frames as F

    name = "busy_aisle" if "busy_aisle" in F.clip_names() else F.clip_names()[0]
    path, zones, _, settings = S.resolve_clip(name)
    r = S.analyze(path, zones=zones, config=S.StreamConfig(stride=5, max_frames=150), name=name, event_settings=settings)
    s = r.stats.summary()
    assert s["decoded"] == 150 and s["detected"] == 30 and s["dropped"] == 0
    assert any(t.label == ObjectClass.PERSON for t in r.video.tracks)
    assert r.video.source == name and r.video.image_info.width == 640 and set(r.video.zones) == set(zones)
    assert s["events"] == s["delivered"] == len(r.video.events)
