"""Reading the shipped clips: their files, ground truth and decoded frames, and what decoding costs.

Taught in ``notebooks/video/01_frames.ipynb``. A clip ``NAME`` in ``data/video/`` is ``NAME.webm``
(VP9, 640x360, 15 fps), ``NAME_gt.txt`` (MOTChallenge boxes), ``NAME_events.json`` (the timeline the
generator read off its own ground truth), ``NAME_zones.json`` and ``NAME_meta.json``; see
:mod:`efsora_helpers.safetyscenes.video`.

Two decoders: PyAV (FFmpeg's libraries, the frames as NumPy arrays, one decoder thread unless told
otherwise) and OpenCV's ``VideoCapture`` (FFmpeg underneath too). :func:`decode_cost` times both,
and the parts of the cost: decoding the compressed packets, and converting YUV 4:2:0 to BGR.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def y_plane(frame) -> np.ndarray:
    """A decoded PyAV frame's luma (Y) plane as a (height, width) uint8 view: grey without any
    conversion (the decoder's output is YUV 4:2:0; BGR costs a colour conversion per pixel)."""
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]


def clips_root() -> Path:
    from ..safetyscenes.video import stories_root

    return stories_root()


def clip_names() -> list[str]:
    """The shipped long clips, in the generator's order."""
    from ..safetyscenes.video import STORIES

    return [n for n in STORIES if (clips_root() / f"{n}.webm").exists()]


def clip_path(name: str) -> Path:
    path = Path(name)
    return path if path.suffix else clips_root() / f"{name}.webm"


def meta(name: str) -> dict:
    return json.loads((clips_root() / f"{name}_meta.json").read_text())


def events(name: str) -> list[dict]:
    """The generator's event timeline (dicts with ``frame``, ``time_s``, ``track_id``, ``type``, ``text``)."""
    return json.loads((clips_root() / f"{name}_events.json").read_text())


def truth_track_events(name: str) -> list:
    """The generator's timeline as the schema's :class:`~efsora_helpers.perception.schema.TrackEvent`
    records (the form the pipeline's own events take), each with its sentence as ``evidence`` and
    the rest (PPE, edge, occluder, forklift, distance) in ``details``."""
    from ..perception.schema import TrackEvent

    out = []
    for e in events(name):
        details = {k: v for k, v in e.items()
                   if k not in ("frame", "time_s", "track_id", "label", "type", "zone", "text")}
        out.append(TrackEvent(frame=e["frame"], time_s=e["time_s"], track_id=e["track_id"], label=e["label"],
                              kind=e["type"], zone=e.get("zone"), evidence=e["text"], details=details))
    return out


def zones(name: str) -> dict[str, list[list[float]]]:
    return json.loads((clips_root() / f"{name}_zones.json").read_text())


def mot_rows(name: str) -> np.ndarray:
    """``NAME_gt.txt`` as an (n, 9) float array: frame (1-based), id, x, y, w, h, conf, class, visibility."""
    return np.loadtxt(clips_root() / f"{name}_gt.txt", delimiter=",", ndmin=2)


@dataclass
class Decoded:
    frames: list[np.ndarray]  # BGR uint8 (or gray when asked), in display order
    fps: float
    seconds: float  # wall time spent decoding (and converting)
    backend: str

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.seconds / max(1, len(self.frames))


def decode(path, backend: str = "pyav", progress: bool = True, gray: bool = False,
           size: tuple[int, int] | None = None, limit: int | None = None) -> Decoded:
    """Every frame of a video as NumPy arrays. ``backend``: "pyav" or "opencv". ``gray`` converts
    to one channel, ``size`` = (width, height) resizes (area interpolation): what a sampler needs.
    A tqdm progress bar counts frames. Raises ``ValueError`` for a file that is not a readable video."""
    import cv2
    from tqdm.auto import tqdm

    path = clip_path(str(path)) if not Path(path).exists() else Path(path)
    frames: list[np.ndarray] = []

    def post(img: np.ndarray) -> np.ndarray:
        if gray:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if size is not None:
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        return img

    start = time.perf_counter()
    if backend == "pyav":
        import av

        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as exc:
            raise ValueError(f"{path}: not a readable video ({exc})") from None
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"  # no frame threading: frames in order, one core
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            total = stream.frames or None
            bar = tqdm(total=total, desc=path.name, unit="frame", disable=not progress, leave=False)
            for frame in container.decode(stream):
                if gray and frame.format.name.startswith("yuv"):
                    img = y_plane(frame)
                    frames.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA) if size else img.copy())
                else:
                    frames.append(post(frame.to_ndarray(format="bgr24")))
                bar.update()
                if limit and len(frames) >= limit:
                    break
            bar.close()
    elif backend == "opencv":
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise ValueError(f"{path}: not a readable video")
        fps = cap.get(cv2.CAP_PROP_FPS)
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        bar = tqdm(total=total, desc=path.name, unit="frame", disable=not progress, leave=False)
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(post(img))
            bar.update()
            if limit and len(frames) >= limit:
                break
        bar.close()
        cap.release()
    else:
        raise ValueError(f"unknown backend {backend!r}; use 'pyav' or 'opencv'")
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return Decoded(frames, fps, time.perf_counter() - start, backend)


def decode_cost(path, repeat: int = 1) -> dict[str, float]:
    """Milliseconds per frame (best of ``repeat``) for: PyAV packets -> frames only (no conversion),
    PyAV to BGR arrays, PyAV's grey (the Y plane, :func:`y_plane`: no conversion at all), OpenCV
    ``grab`` (decode, no conversion), OpenCV ``read`` (decode + BGR)."""
    import av
    import cv2

    path = clip_path(str(path))

    def pyav(kind: str) -> tuple[float, int]:
        n = 0
        start = time.perf_counter()
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "SLICE"
            for frame in c.decode(s):
                if kind == "bgr":
                    frame.to_ndarray(format="bgr24")
                elif kind == "gray":
                    y_plane(frame)
                n += 1
        return time.perf_counter() - start, n

    def opencv(read: bool) -> tuple[float, int]:
        n = 0
        start = time.perf_counter()
        cap = cv2.VideoCapture(str(path))
        while (cap.read()[0] if read else cap.grab()):
            n += 1
        cap.release()
        return time.perf_counter() - start, n

    runs = {"pyav_decode_only": lambda: pyav("none"), "pyav_gray": lambda: pyav("gray"),
            "pyav_bgr": lambda: pyav("bgr"), "opencv_grab": lambda: opencv(False),
            "opencv_read_bgr": lambda: opencv(True)}
    out = {}
    for key, run in runs.items():
        best = min(run() for _ in range(repeat))
        out[key] = 1000 * best[0] / best[1]
    return out


def read_frames(name, indices) -> dict[int, np.ndarray]:
    """The BGR frames at ``indices`` (decoding runs up to the last one: VP9 frames depend on earlier ones)."""
    import av

    wanted = set(int(i) for i in indices)
    out: dict[int, np.ndarray] = {}
    with av.open(str(clip_path(str(name)))) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="bgr24")
            if i >= max(wanted):
                break
    return out


def truth_boxes(name: str, frame: int) -> list[tuple[int, int, tuple[float, float, float, float], float]]:
    """Ground-truth (id, class index, (x1, y1, x2, y2), visibility) in 0-based ``frame``."""
    rows = mot_rows(name)
    rows = rows[rows[:, 0] == frame + 1]
    return [(int(r[1]), int(r[7]) - 1, (r[2], r[3], r[2] + r[4], r[3] + r[5]), float(r[8])) for r in rows]
