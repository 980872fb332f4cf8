"""The live pipeline: asyncio stages decode -> detect -> track -> events -> alerts joined by bounded
queues, with backpressure, a drop policy for when detection falls behind, frame sampling before the
detector, and every stage timed.

Taught in ``notebooks/video/07_stream.ipynb``; measured by ``benchmarks/video_stream.py``; on the
command line as ``efsora video analyze`` and ``efsora video stream`` (:mod:`.cli`).

How the stages talk:

* Each arrow is an :class:`asyncio.Queue` with a ``maxsize``. A full queue makes its producer wait
  (``await put``): a slow stage slows the one before it instead of letting memory grow. That is
  backpressure, and it is all an offline run (``realtime=False``) needs: decoding simply waits.
* A live camera cannot wait: its frames arrive at the clip's fps whether or not the detector keeps
  up. With ``realtime=True`` decoding is paced at the clip's fps and, when the detector queue is
  full, the *oldest* frame in it is dropped (the newest is what the tracker needs next) and counted.
  Only frames are ever dropped: the track, event and alert queues always block, because an event is
  a fact that happened once and is never seen again.
* The detector runs in its own thread (PyTorch, like onnxruntime, releases the GIL while it
  computes), so decoding and the cheap stages keep running on the event loop meanwhile. With
  ``batch > 1`` it takes whatever frames are already waiting, up to ``batch``, in one call; it never
  waits for a batch to fill (that would add latency to the first frame).
* Frame sampling happens at decode, before the queue: a fixed stride and/or motion gating
  (:func:`.sampling.motion_gated`, online), so frames the detector would never see are not queued.
* Trackers (ByteTrack from ``trackers``, one per class: workers and forklifts) get each frame's
  timestamp, so gaps from sampling or drops are predicted over the right time.

What comes out: a :class:`~efsora_helpers.perception.schema.VideoResult` (tracks and events) and
:class:`StreamStats` (per-stage latency, queue depth over time, drops, throughput, end-to-end latency
from a frame's capture to its events).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..perception.schema import (DetectedObject, FrameResult, ImageInfo, Track, TrackedObject, TrackEvent,
                                 VideoResult)
from ..vocabulary import CLASSES, ObjectClass

STAGES = ("decode", "detect", "track", "events", "alerts")
QUEUES = ("detect", "track", "events", "alerts")  # the queue *into* each stage
TRACKED = (ObjectClass.PERSON, ObjectClass.FORKLIFT)
#: ByteTrack's thresholds tuned to the shipped detector in ``02_tracking`` (the package's 0.6/0.7 are
#: for COCO detectors that score people higher).
TRACKER_KWARGS = {"high_conf_det_threshold": 0.5, "track_activation_threshold": 0.5}
CONFIDENCE = 0.1  # ByteTrack's second association uses the low-scoring boxes

_END = object()  # end of stream: never dropped, always the last item of a queue


@dataclass
class StreamConfig:
    stride: int = 1  # every stride-th frame goes to the detector (the active stride when motion gated)
    motion_threshold: float | None = None  # None: no motion gating; else sampling.motion_gated's threshold
    idle_stride: int = 30  # motion gating's heartbeat while nothing moves
    realtime: bool = False  # pace decoding at the clip's fps (a live camera)
    drop: bool | None = None  # drop oldest frames when the detector queue is full; None: when realtime
    maxsize: int = 8  # of every queue
    batch: int = 1  # frames per detector call, at most
    confidence: float = CONFIDENCE
    depth_every_s: float = 0.05  # queue-depth sampling period
    keep_frames: bool = False  # keep every processed frame's tracked objects (for an annotated video)
    detect_delay_s: float = 0.0  # an injected delay per detected frame (to show backpressure), 0 in real use
    max_frames: int | None = None  # stop after this many decoded frames (None: the whole video)

    @property
    def dropping(self) -> bool:
        return self.realtime if self.drop is None else self.drop


@dataclass
class StreamStats:
    fps: float
    maxsize: int
    decoded: int = 0  # frames read from the video
    sampled: int = 0  # frames the sampler chose for the detector
    detected: int = 0  # frames the detector ran on
    dropped: int = 0  # frames dropped from the detector queue (live mode only)
    events: int = 0  # events the events stage emitted
    delivered: int = 0  # events that reached the end of the pipeline
    alerts: int = 0
    wall_s: float = 0.0
    stage_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    batch_sizes: list[int] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)  # capture -> events stage done, per detected frame
    depth: list[tuple[float, int, int, int, int]] = field(default_factory=list)  # (t, *qsize of QUEUES)

    @property
    def duration_s(self) -> float:
        return self.decoded / self.fps if self.fps else 0.0

    def summary(self) -> dict[str, Any]:
        """Plain numbers: throughput (decoded frames per second, and as a ratio to the clip's
        duration), drops, per-stage and end-to-end latency (median and 95th percentile, ms), and the
        largest queue depths seen."""
        def pct(v, q):
            return round(float(np.percentile(v, q)), 2) if len(v) else 0.0

        depths = np.asarray([d[1:] for d in self.depth]) if self.depth else np.zeros((1, len(QUEUES)))
        out = {"decoded": self.decoded, "sampled": self.sampled, "detected": self.detected,
               "dropped": self.dropped, "events": self.events, "delivered": self.delivered, "alerts": self.alerts,
               "wall_s": round(self.wall_s, 3), "duration_s": round(self.duration_s, 3),
               "fps_processed": round(self.decoded / self.wall_s, 2) if self.wall_s else 0.0,
               "realtime_ratio": round(self.duration_s / self.wall_s, 3) if self.wall_s else 0.0,
               "mean_batch": round(float(np.mean(self.batch_sizes)), 2) if self.batch_sizes else 0.0,
               "e2e_p50_ms": pct(self.e2e_ms, 50), "e2e_p95_ms": pct(self.e2e_ms, 95)}
        for s in STAGES:
            out[f"{s}_p50_ms"] = pct(self.stage_ms[s], 50)
            out[f"{s}_p95_ms"] = pct(self.stage_ms[s], 95)
        for i, q in enumerate(QUEUES):
            out[f"max_depth_{q}"] = int(depths[:, i].max())
        return out

    def line(self) -> str:
        """One line for a terminal."""
        s = self.summary()
        return (f"{s['decoded']} frames in {s['wall_s']:.1f} s ({s['realtime_ratio']:.2f}x real time), "
                f"{s['detected']} detected, {s['dropped']} dropped, {s['events']} events, {s['alerts']} alerts; "
                f"detect p50 {s['detect_p50_ms']:.0f} ms, end-to-end p50 {s['e2e_p50_ms']:.0f} ms "
                f"p95 {s['e2e_p95_ms']:.0f} ms")


@dataclass
class _Frame:
    index: int
    time_s: float
    image: np.ndarray
    captured: float  # perf_counter when the frame "arrived" (paced time in live mode)
    detections: list[DetectedObject] | None = None
    objects: list[TrackedObject] | None = None


@dataclass
class StreamResult:
    video: VideoResult
    stats: StreamStats
    alerts: list = field(default_factory=list)


# ---- decoding and sampling -----------------------------------------------------------------------

class VideoError(ValueError):
    """The file is missing or not a readable video (the command line turns it into one line, exit 2)."""


def open_video(path) -> tuple[Any, Any, float, int, int]:
    """(container, stream, fps, width, height) of a readable video; :class:`VideoError` otherwise."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"{path}: not a readable video ({type(exc).__name__})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream")
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if fps <= 0 or not stream.codec_context.width:
        container.close()
        raise VideoError(f"{path}: no frame rate or size in the video stream")
    stream.thread_type = "SLICE"  # frames in order, one core: the detector needs the other
    return container, stream, fps, stream.codec_context.width, stream.codec_context.height


def iter_frames(container, stream, path) -> Iterator[np.ndarray]:
    """BGR frames. A decoding error mid-file, no frame at all, or far fewer frames than the
    container's duration promises (a truncated download: FFmpeg stops quietly) is a :class:`VideoError`."""
    import av

    n = 0
    try:
        for frame in container.decode(stream):
            n += 1
            yield frame.to_ndarray(format="bgr24")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: damaged video ({type(exc).__name__} while decoding frame {n})") from None
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    expected = (container.duration or 0) / 1e6 * fps  # container.duration is in microseconds
    if n == 0:
        raise VideoError(f"{path}: no video frames")
    if expected and n < 0.9 * expected:
        raise VideoError(f"{path}: truncated video ({n} frames decoded of about {expected:.0f})")


class Sampler:
    """Online frame choice: every ``stride``-th frame, or with ``motion_threshold`` the motion gate of
    :func:`.sampling.motion_gated` (``stride`` while something moves, ``idle_stride`` otherwise)."""

    def __init__(self, stride: int = 1, motion_threshold: float | None = None, idle_stride: int = 30):
        self.stride, self.threshold, self.idle = max(1, int(stride)), motion_threshold, idle_stride
        self.last_chosen: int | None = None
        self.prev_small: np.ndarray | None = None

    def choose(self, index: int, image: np.ndarray) -> bool:
        if self.threshold is None:
            return index % self.stride == 0
        from .sampling import motion_share, small_gray

        small = small_gray([image])[0]
        motion = float(motion_share(np.stack([self.prev_small, small]))[1]) if self.prev_small is not None else 0.0
        self.prev_small = small
        gap = index - self.last_chosen if self.last_chosen is not None else None
        chosen = gap is None or (motion > self.threshold and gap >= self.stride) or gap >= self.idle
        if chosen:
            self.last_chosen = index
        return chosen


# ---- detection -----------------------------------------------------------------------------------

def detect_many(detector, images: list[np.ndarray], confidence: float) -> list[list[DetectedObject]]:
    """The detector on several frames: one batched call when it has ``detect_batch`` (the book's
    :class:`~efsora_helpers.perception.models.Detector`); any other object with
    ``detect(image, confidence=)`` one by one."""
    if len(images) > 1 and hasattr(detector, "detect_batch"):
        return detector.detect_batch(images, confidence=confidence)
    return [detector.detect(img, confidence=confidence) for img in images]


# ---- tracking ------------------------------------------------------------------------------------

class MultiTracker:
    """One ByteTrack per tracked class; ids made unique across classes, in order of first sight."""

    def __init__(self, fps: float, labels=TRACKED, kind: str = "bytetrack", **kwargs):
        from .track import make_tracker

        kwargs = {**TRACKER_KWARGS, **kwargs} if kind == "bytetrack" else kwargs
        self.trackers = {str(lab): make_tracker(kind, fps, **kwargs) for lab in labels}
        self.ids: dict[tuple[str, int], int] = {}
        self.tracks: dict[int, Track] = {}

    def update(self, frame: int, time_s: float, detections: list[DetectedObject]) -> list[TrackedObject]:
        import supervision as sv

        out: list[TrackedObject] = []
        for label, tracker in self.trackers.items():
            mine = [d for d in detections if d.label == label]
            xyxy = np.asarray([d.bbox for d in mine], np.float32).reshape(-1, 4)
            conf = np.asarray([d.confidence for d in mine], np.float32)
            result = tracker.update(sv.Detections(xyxy=xyxy, confidence=conf, class_id=np.zeros(len(mine), int)),
                                    timestamp=time_s)
            for box, tid, c in zip(result.xyxy, result.tracker_id, result.confidence):
                if tid < 0:
                    continue
                gid = self.ids.setdefault((label, int(tid)), len(self.ids) + 1)
                out.append(TrackedObject(id=len(out), track_id=gid, label=label, confidence=round(float(c), 4),
                                         bbox=[round(float(v), 1) for v in box]))
                t = self.tracks.get(gid)
                if t is None:
                    self.tracks[gid] = Track(track_id=gid, label=label, first_frame=frame, last_frame=frame,
                                             first_time_s=round(time_s, 3), last_time_s=round(time_s, 3))
                else:
                    t.last_frame, t.last_time_s = frame, round(time_s, 3)
        return out


# ---- events --------------------------------------------------------------------------------------

def make_event_detector(zones: dict, fps: float, **settings):
    """The events engine: :class:`.events.EventDetector` (taught in ``04_events``); ``settings``: e.g.
    a shipped clip's floor model, :func:`.events.camera_for`."""
    from .events import EventDetector

    return EventDetector(zones, fps, **settings)


def det_rows(frame: int, detections: list[DetectedObject]) -> np.ndarray:
    """Detections as the det-file rows the events engine reads (``frame,-1,x,y,w,h,conf,class,-1``,
    frame and class 1-based; the class in the detector's order, which is :data:`CLASSES`)."""
    rows = [(frame + 1, -1, x1, y1, x2 - x1, y2 - y1, d.confidence, CLASSES.index(d.label) + 1, -1)
            for d in detections if d.label in CLASSES for x1, y1, x2, y2 in [d.bbox]]
    return np.asarray(rows, float).reshape(-1, 9)


# ---- the pipeline --------------------------------------------------------------------------------

def _offer(q: asyncio.Queue, item, drop: bool) -> int:
    """Put without waiting, dropping the oldest items while the queue is full; returns how many."""
    dropped = 0
    while True:
        try:
            q.put_nowait(item)
            return dropped
        except asyncio.QueueFull:
            q.get_nowait()  # _END is always last, so what goes here is a frame
            dropped += 1


async def run_stream(source, detector, *, zones: dict | None = None, config: StreamConfig | None = None,
                     events=None, alert_engine=None, on_event: Callable | None = None,
                     on_alert: Callable | None = None, on_frame: Callable[[int], None] | None = None,
                     name: str | None = None, event_settings: dict | None = None) -> StreamResult:
    """Run the pipeline over the video at ``source`` (a path). ``detector``: anything with
    ``detect(bgr, confidence=) -> list[DetectedObject]``. ``events``: an object with
    ``update(frame, boxes, det_rows) -> list[TrackEvent]`` (default :func:`make_event_detector` with
    ``event_settings``; boxes are ``(track_id, label, x1, y1, x2, y2, confidence)``, rows :func:`det_rows`).
    ``alert_engine``: optional, with ``handle(event) -> list``. ``on_event`` / ``on_alert`` are called
    as each event or alert comes out, ``on_frame`` with each decoded frame's index."""
    cfg = config or StreamConfig()
    container, vstream, fps, width, height = open_video(source)
    zones = dict(zones or {})
    events = events if events is not None else make_event_detector(zones, fps, **(event_settings or {}))
    stats = StreamStats(fps=fps, maxsize=cfg.maxsize)
    queues = {q: asyncio.Queue(maxsize=cfg.maxsize) for q in QUEUES}
    tracker = MultiTracker(fps)
    sampler = Sampler(cfg.stride, cfg.motion_threshold, cfg.idle_stride)
    found: list[TrackEvent] = []
    alerts: list = []
    kept: list[FrameResult] = []
    loop = asyncio.get_running_loop()
    decode_pool = ThreadPoolExecutor(1, thread_name_prefix="decode")
    detect_pool = ThreadPoolExecutor(1, thread_name_prefix="detect")
    frames = iter_frames(container, vstream, source)
    start = time.perf_counter()

    async def decode():
        index = 0
        while True:
            t0 = time.perf_counter()
            image = await loop.run_in_executor(decode_pool, next, frames, None)
            if image is None or (cfg.max_frames is not None and index >= cfg.max_frames):
                break
            stats.stage_ms["decode"].append(1000 * (time.perf_counter() - t0))
            captured = time.perf_counter()
            if cfg.realtime:  # a camera delivers frame i at i / fps, not sooner
                due = start + index / fps
                if due > captured:
                    await asyncio.sleep(due - captured)
                captured = max(due, captured)
            stats.decoded += 1
            if on_frame:
                on_frame(index)
            if sampler.choose(index, image):
                stats.sampled += 1
                item = _Frame(index, index / fps, image, captured)
                if cfg.dropping:
                    stats.dropped += _offer(queues["detect"], item, True)
                    await asyncio.sleep(0)  # let the detector take it before the next frame
                else:
                    await queues["detect"].put(item)
            index += 1
        await queues["detect"].put(_END)  # waits even in live mode: nothing is left to pace

    async def detect():
        q = queues["detect"]
        while True:
            batch = [await q.get()]
            while len(batch) < cfg.batch and batch[-1] is not _END and not q.empty():
                batch.append(q.get_nowait())
            end = batch[-1] is _END
            batch = [b for b in batch if b is not _END]
            if batch:
                t0 = time.perf_counter()
                found_objects = await loop.run_in_executor(
                    detect_pool, _detect_call, detector, [b.image for b in batch], cfg.confidence, cfg.detect_delay_s)
                ms = 1000 * (time.perf_counter() - t0)
                stats.stage_ms["detect"].append(ms)
                stats.batch_sizes.append(len(batch))
                stats.detected += len(batch)
                for item, dets in zip(batch, found_objects):
                    item.detections = dets
                    await queues["track"].put(item)
            if end:
                await queues["track"].put(_END)
                return

    async def track():
        while (item := await queues["track"].get()) is not _END:
            t0 = time.perf_counter()
            item.objects = tracker.update(item.index, item.time_s, item.detections)
            stats.stage_ms["track"].append(1000 * (time.perf_counter() - t0))
            await queues["events"].put(item)
        await queues["events"].put(_END)

    async def detect_events():
        while (item := await queues["events"].get()) is not _END:
            t0 = time.perf_counter()
            boxes = [(o.track_id, o.label, *o.bbox, o.confidence) for o in item.objects]
            new = list(events.update(item.index, boxes, det_rows(item.index, item.detections)))
            stats.stage_ms["events"].append(1000 * (time.perf_counter() - t0))
            stats.e2e_ms.append(1000 * (time.perf_counter() - item.captured))
            if cfg.keep_frames:
                kept.append(FrameResult(source=str(source), frame_index=item.index, timestamp_s=round(item.time_s, 3),
                                        objects=item.objects, zones=zones))
            item.image = None  # the pixels are not needed past this point
            for e in new:
                stats.events += 1
                await queues["alerts"].put(e)  # never dropped: blocks if alerts fall behind
            await queues["alerts"].put(item.time_s)  # the clock: a debounced alert fires on time
        await queues["alerts"].put(_END)

    async def alert():
        def send(notes):
            for a in notes:
                alerts.append(a)
                stats.alerts += 1
                if on_alert:
                    on_alert(a)

        while (e := await queues["alerts"].get()) is not _END:
            if isinstance(e, float):
                if alert_engine is not None and hasattr(alert_engine, "tick"):
                    send(alert_engine.tick(e))
                continue
            t0 = time.perf_counter()
            found.append(e)
            stats.delivered += 1
            if on_event:
                on_event(e)
            if alert_engine is not None:
                send(alert_engine.handle(e))
            stats.stage_ms["alerts"].append(1000 * (time.perf_counter() - t0))
        if alert_engine is not None and hasattr(alert_engine, "flush"):
            send(alert_engine.flush())  # the stream ended: open alerts resolve

    async def watch():
        while True:
            stats.depth.append((time.perf_counter() - start, *(queues[q].qsize() for q in QUEUES)))
            await asyncio.sleep(cfg.depth_every_s)

    try:
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(watch())
            stages = [tg.create_task(f()) for f in (decode, detect, track, detect_events, alert)]
            await asyncio.gather(*stages)
            watcher.cancel()
    except ExceptionGroup as group:  # one stage failed and the others were cancelled: raise its error
        raise _first(group) from None
    finally:  # threads first: the decoder may be inside next(frames) until its call returns
        decode_pool.shutdown(wait=True, cancel_futures=True)
        detect_pool.shutdown(wait=True, cancel_futures=True)
        frames.close()
        container.close()
    stats.wall_s = time.perf_counter() - start
    stats.depth.append((stats.wall_s, *(queues[q].qsize() for q in QUEUES)))
    found.sort(key=lambda e: (e.frame, e.track_id))
    video = VideoResult(source=name or str(source), fps=fps, n_frames=stats.decoded,
                        image_info=ImageInfo(width=width, height=height), zones=zones,
                        tracks=sorted(tracker.tracks.values(), key=lambda t: t.track_id), events=found,
                        frames=kept)
    return StreamResult(video, stats, alerts)


def _first(group: BaseExceptionGroup) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


def _detect_call(detector, images, confidence, delay_s):
    if delay_s:
        time.sleep(delay_s * len(images))  # an injected delay (07_stream's backpressure demo), not the model
    return detect_many(detector, images, confidence)


def analyze(source, detector=None, **kwargs) -> StreamResult:
    """:func:`run_stream` from synchronous code (a script, the command line). ``detector`` None: the
    shipped one, ``Detector("safetyscenes")``. Inside a running event loop (a notebook) the pipeline
    runs on its own loop in a helper thread; there, ``await run_stream(...)`` is the direct way."""
    if detector is None:
        from ..perception.models import Detector

        detector = Detector("safetyscenes")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_stream(source, detector, **kwargs))
    with ThreadPoolExecutor(1, thread_name_prefix="analyze") as pool:
        return pool.submit(asyncio.run, run_stream(source, detector, **kwargs)).result()


def resolve_clip(clip: str, zones_path=None) -> tuple[Path, dict, str, dict]:
    """(video path, zones, display name, event settings) for ``clip``: a shipped clip's name (its
    zones unless ``zones_path`` is given, and its floor model for near misses) or a path to any video
    (zones from ``zones_path``, else none; near misses by the image-space proxy)."""
    import json

    from .events import camera_for
    from .frames import clip_names, clip_path, zones as clip_zones

    if clip in clip_names():
        path, zones, name, settings = clip_path(clip), clip_zones(clip), clip, camera_for(clip)
    else:
        path, zones, name, settings = Path(clip), {}, Path(clip).name, {}
        if not path.is_file():
            raise VideoError(f"{clip}: no such file and no shipped clip of that name "
                             f"(shipped: {', '.join(clip_names())})")
    if zones_path is not None:
        try:
            zones = json.loads(Path(zones_path).read_text())
        except (OSError, ValueError) as exc:
            raise VideoError(f"{zones_path}: not a zones JSON file ({type(exc).__name__})") from None
        if not isinstance(zones, dict):
            raise VideoError(f"{zones_path}: expected {{zone name: [[x, y], ...]}}")
    return path, zones, name, settings


__all__ = ["StreamConfig", "StreamStats", "StreamResult", "Sampler", "MultiTracker", "VideoError", "analyze",
           "run_stream", "detect_many", "open_video", "resolve_clip"]
