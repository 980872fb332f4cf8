"""Annotated video: boxes, ids, zones and event banners drawn on frames, heads blurred first, and
the frames written as MP4/WebM (PyAV) or a small GIF for the book's page.

Taught in ``notebooks/video/08_privacy.ipynb``; ``efsora video analyze --annotated out.mp4`` writes
its output with :func:`draw` and :class:`VideoWriter`. Heads are blurred (:mod:`.privacy`) *before*
the boxes and labels are drawn, so the text stays legible and no raw head pixel reaches the file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..vocabulary import EventKind, ObjectClass
from .privacy import redact

#: BGR colours by label; the same three as :func:`.plots.draw_truth` (by class index there).
COLOURS = {ObjectClass.PERSON: (60, 200, 60), ObjectClass.FORKLIFT: (0, 140, 255), ObjectClass.PALLET: (200, 120, 40),
           ObjectClass.HARD_HAT: (0, 220, 220), ObjectClass.VEST: (0, 110, 250)}
#: Banner colour (BGR) by event kind: red for what an alert is raised on, amber for state changes.
BANNER = {EventKind.NEAR_MISS: (40, 40, 220), EventKind.VIOLATION_START: (40, 40, 220),
          EventKind.ENTER_ZONE: (0, 150, 240), EventKind.TAKE_OFF_PPE: (40, 40, 220)}
ZONE_COLOUR = (0, 165, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _unpack(box) -> tuple[int | None, str, float, float, float, float, float | None]:
    tid, label, x1, y1, x2, y2, *rest = box
    conf = float(rest[0]) if rest and rest[0] is not None else None
    # an object no tracker has confirmed yet (a PPE box, a new worker) has no id
    return (None if tid is None else int(tid)), str(label), float(x1), float(y1), float(x2), float(y2), conf


def _event_text(e) -> str:
    """One short line for an event record (a schema ``TrackEvent``, or a dict with the same keys)."""
    get = e.get if isinstance(e, dict) else lambda k, d=None: getattr(e, k, d)
    kind = get("kind") or get("type")
    where = f" {get('zone')}" if get("zone") else ""
    return f"{get('time_s', 0.0):5.1f}s  id {get('track_id')}  {kind}{where}"


def draw(frame_bgr: np.ndarray, boxes, zones=None, events=(), blur_heads: bool = True) -> np.ndarray:
    """A new annotated frame (the input is not changed).

    ``boxes``: ``(track_id, label, x1, y1, x2, y2[, confidence])`` in pixels; ``zones``: a dict of
    name -> polygon (``[[x, y], ...]``) or a list of polygons, drawn as outlined, lightly filled
    areas; ``events``: the ``TrackEvent`` records happening in this frame, one banner line each.
    With ``blur_heads`` the head region of every person box is blurred before anything is drawn."""
    unpacked = [_unpack(b) for b in boxes]
    people = [(x1, y1, x2, y2) for _, label, x1, y1, x2, y2, _ in unpacked if label == ObjectClass.PERSON]
    out = redact(frame_bgr, people) if blur_heads else frame_bgr.copy()
    polygons = list(zones.items()) if isinstance(zones, dict) else [("", p) for p in (zones or [])]
    if polygons:
        fill = out.copy()
        for _, poly in polygons:
            pts = np.round(np.asarray(poly, float)).astype(np.int32).reshape(-1, 1, 2)
            cv2.fillPoly(fill, [pts], ZONE_COLOUR)
        out = cv2.addWeighted(fill, 0.18, out, 0.82, 0)  # light tint: the floor stays readable
        for name, poly in polygons:
            pts = np.round(np.asarray(poly, float)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], True, ZONE_COLOUR, 1, cv2.LINE_AA)
            if name:
                x, y = pts[pts[:, 0, 1].argmin(), 0]  # beside the top vertex: the banner covers the bottom
                cv2.putText(out, str(name), (int(x) + 4, int(y) + 12), _FONT, 0.4, ZONE_COLOUR, 1, cv2.LINE_AA)
    for tid, label, x1, y1, x2, y2, conf in unpacked:
        c = COLOURS.get(label, (220, 220, 220))
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), c, 2)
        text = ("" if tid is None else f"{tid} ") + label + (f" {conf:.2f}" if conf is not None else "")
        cv2.putText(out, text, (int(x1) + 2, max(12, int(y1) - 4)), _FONT, 0.42, c, 1, cv2.LINE_AA)
    events = list(events)
    if events:
        line_h = 18
        top = out.shape[0] - line_h * len(events) - 4  # bottom banner: the top of the frame has the signs
        overlay = out.copy()
        cv2.rectangle(overlay, (0, top), (out.shape[1], out.shape[0]), (0, 0, 0), -1)
        out = cv2.addWeighted(overlay, 0.55, out, 0.45, 0)
        for i, e in enumerate(events):
            kind = e.get("kind") if isinstance(e, dict) else getattr(e, "kind", None)
            colour = BANNER.get(kind, (235, 235, 235))
            cv2.putText(out, _event_text(e), (6, top + 14 + i * line_h), _FONT, 0.48, colour, 1, cv2.LINE_AA)
    return out


def _codec_for(path: Path) -> tuple[str, dict[str, str]]:
    import av

    suffix = path.suffix.lower()
    if suffix == ".webm":
        return "libvpx-vp9", {"crf": "34", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    if suffix in (".mp4", ".m4v", ".mov", ".mkv"):
        try:  # a PyAV wheel without libx264 (or an FFmpeg built without GPL parts) still has MPEG-4 part 2
            av.codec.Codec("libx264", "w")
            return "libx264", {"crf": "26", "preset": "veryfast"}
        except (av.error.FFmpegError, ValueError):
            return "mpeg4", {}
    raise ValueError(f"{path}: unsupported video suffix {suffix!r}; use .mp4 or .webm")


class VideoWriter:
    """Writes BGR frames to an MP4 (H.264 when PyAV's FFmpeg has libx264, else MPEG-4 part 2) or a
    WebM (VP9), chosen by the file's suffix. ``size`` is (width, height); frames of another size are
    resized. Use as a context manager, or call :meth:`close`.

    >>> with VideoWriter("out.mp4", fps=15, size=(640, 360)) as w:  # doctest: +SKIP
    ...     w.write(frame)
    """

    def __init__(self, path, fps: float, size: tuple[int, int]):
        import av
        from fractions import Fraction

        self.path = Path(path)
        self.codec, options = _codec_for(self.path)
        self.size = (int(size[0]) // 2 * 2, int(size[1]) // 2 * 2)  # 4:2:0 needs even sides
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream(self.codec, rate=rate, options=options)
        self._stream.width, self._stream.height = self.size
        self._stream.pix_fmt = "yuv420p"
        if self.codec == "mpeg4":
            self._stream.bit_rate = 2_000_000  # FFmpeg's default, 200 kb/s, smears the boxes' text at 640x360
        self.frames = 0

    def write(self, frame_bgr: np.ndarray) -> None:
        import av

        if frame_bgr.shape[1::-1] != self.size:
            frame_bgr = cv2.resize(frame_bgr, self.size, interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr), format="bgr24")
        frame.pts = self.frames
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():  # flush the encoder's delayed frames
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_gif(frames, path, fps: float, width: int = 320, colours: int = 128) -> Path:
    """A small looping GIF for a web page: frames downscaled to ``width`` pixels, one adaptive
    palette of ``colours`` shared by every frame (computed on a strip of frames; one palette keeps
    the frames' colours steady and lets Pillow store only what changes between frames)."""
    from PIL import Image

    frames = list(frames)
    if not frames:
        raise ValueError("write_gif: no frames")
    h, w = frames[0].shape[:2]
    size = (int(width), max(2, round(h * width / w)))
    small = [cv2.cvtColor(cv2.resize(f, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB) for f in frames]
    step = max(1, len(small) // 8)
    strip = Image.fromarray(np.concatenate(small[::step], axis=0))
    palette = strip.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in small]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                   optimize=True, disposal=1)
    return path
