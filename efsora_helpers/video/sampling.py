"""What to run the detector on: frame sampling strategies, and what each one costs in missed or late
events, measured on the SafetyScenes long clips against the generator's exact timeline.

Taught in ``notebooks/video/01_frames.ipynb``. Three strategies pick the frames a detector sees:

* :func:`fixed_stride`: every ``k``-th frame. Simple, predictable load, blind between samples.
* :func:`change_keyframes`: a frame becomes a keyframe when it differs enough from the *last
  keyframe* (mean absolute difference of small grey frames, or a grey-level histogram distance),
  optionally at least every ``max_gap`` frames.
* :func:`motion_gated`: a cheap motion measure on *consecutive* frames (share of pixels that
  changed) gates the detector: every ``active_stride``-th frame while something moves, one
  heartbeat every ``idle_stride`` frames while nothing does.

The cheap signals (:func:`small_gray`, :func:`frame_change`, :func:`motion_share`) run on every
decoded frame at 160x90; the detector runs only on the chosen frames.

How a choice is scored (:func:`score`): every event of the timeline starts a *state* that lasts
until the event that undoes it (``enter_zone`` until ``exit_zone``, ``occluded`` until
``reappeared``, ``take_off_ppe`` until ``put_on_ppe``, a ``near_miss`` until the worker is clear
again, ...). A pipeline that looks only at the chosen frames can notice the event only if one of
them falls inside that state: the event is *recalled* if so, and its *timing error* is the time
from the event to the first chosen frame. This treats the detector and tracker on a chosen frame as
perfect (the ground truth stands in for them), so it isolates what sampling alone loses: an upper
bound on what any detector can do with those frames.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..vocabulary import EventKind

SMALL = (160, 90)  # width, height of the frames the cheap signals look at
PIXEL_CHANGE = 12  # grey levels: a pixel "moved" when it changed more than this (sensor noise is ~2-3)

#: The event that ends the state each kind of event starts.
UNDONE_BY: dict[str, str] = {
    EventKind.ENTER_ZONE: EventKind.EXIT_ZONE, EventKind.EXIT_ZONE: EventKind.ENTER_ZONE,
    EventKind.OCCLUDED: EventKind.REAPPEARED, EventKind.REAPPEARED: EventKind.OCCLUDED,
    EventKind.ENTER_FRAME: EventKind.EXIT_FRAME, EventKind.EXIT_FRAME: EventKind.ENTER_FRAME,
    EventKind.TAKE_OFF_PPE: EventKind.PUT_ON_PPE, EventKind.PUT_ON_PPE: EventKind.TAKE_OFF_PPE,
}


def small_gray(frames: Sequence[np.ndarray], size: tuple[int, int] = SMALL) -> np.ndarray:
    """(n, h, w) float32 grey frames, shrunk with area averaging (which also averages the sensor
    noise away: a 4x4 block mean has a quarter of a pixel's noise)."""
    out = []
    for img in frames:
        g = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if g.shape[::-1] != tuple(size):
            g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
        out.append(g.astype(np.float32))
    return np.stack(out)


def frame_change(small: np.ndarray) -> np.ndarray:
    """Mean absolute grey-level difference to the previous frame (0 for the first)."""
    d = np.zeros(len(small), np.float32)
    d[1:] = np.abs(small[1:] - small[:-1]).mean(axis=(1, 2))
    return d


def motion_share(small: np.ndarray, pixel_change: float = PIXEL_CHANGE) -> np.ndarray:
    """Share of pixels that changed by more than ``pixel_change`` since the previous frame."""
    m = np.zeros(len(small), np.float32)
    m[1:] = (np.abs(small[1:] - small[:-1]) > pixel_change).mean(axis=(1, 2))
    return m


def _hist(g: np.ndarray) -> np.ndarray:
    h = cv2.calcHist([g.astype(np.uint8)], [0], None, [32], [0, 256])
    return cv2.normalize(h, h).astype(np.float32)


def every_frame(n: int) -> np.ndarray:
    return np.arange(n)


def fixed_stride(n: int, stride: int) -> np.ndarray:
    return np.arange(0, n, max(1, int(stride)))


def change_keyframes(small: np.ndarray, threshold: float, method: str = "diff",
                     max_gap: int | None = None) -> np.ndarray:
    """Frames that differ from the last keyframe by more than ``threshold``: mean absolute grey
    difference (``method="diff"``, grey levels) or the Bhattacharyya distance of 32-bin grey
    histograms (``"hist"``, 0-1). Frame 0 is a keyframe; ``max_gap`` forces one at least that often."""
    keys = [0]
    ref = small[0]
    ref_hist = _hist(ref) if method == "hist" else None
    for t in range(1, len(small)):
        if method == "diff":
            dist = float(np.abs(small[t] - ref).mean())
        elif method == "hist":
            dist = float(cv2.compareHist(ref_hist, _hist(small[t]), cv2.HISTCMP_BHATTACHARYYA))
        else:
            raise ValueError(f"unknown method {method!r}; use 'diff' or 'hist'")
        if dist > threshold or (max_gap and t - keys[-1] >= max_gap):
            keys.append(t)
            ref = small[t]
            if ref_hist is not None:
                ref_hist = _hist(ref)
    return np.asarray(keys)


def motion_gated(motion: np.ndarray, threshold: float, active_stride: int = 1, idle_stride: int = 30) -> np.ndarray:
    """Frames for the detector: while ``motion`` (from :func:`motion_share`) is above ``threshold``,
    every ``active_stride``-th frame; otherwise one every ``idle_stride`` frames."""
    chosen = [0]
    for t in range(1, len(motion)):
        gap = t - chosen[-1]
        if (motion[t] > threshold and gap >= active_stride) or gap >= idle_stride:
            chosen.append(t)
    return np.asarray(chosen)


# ---------------------------------------------------------------------------------------------
# Scoring against the timeline
# ---------------------------------------------------------------------------------------------

@dataclass
class Window:
    event: dict
    start: int  # the event's frame
    end: int  # first frame at which its state no longer holds


def event_windows(events: list[dict], n_frames: int) -> list[Window]:
    """Each event with the frames its state holds: from the event to the next event of the same
    track that undoes it (:data:`UNDONE_BY`), or to ``until_frame`` for a near miss, or to the end."""
    out = []
    for i, e in enumerate(events):
        if e["type"] == EventKind.NEAR_MISS:
            end = int(e.get("until_frame", e["frame"] + 1))
        else:
            undo = UNDONE_BY.get(e["type"])
            end = next((later["frame"] for later in events[i + 1:]
                        if later["track_id"] == e["track_id"] and later["type"] == undo and later["frame"] > e["frame"]),
                       n_frames)
        out.append(Window(e, int(e["frame"]), max(int(end), int(e["frame"]) + 1)))
    return out


def score(chosen: np.ndarray, events: list[dict], n_frames: int, fps: float) -> dict:
    """Share of frames chosen, event recall, and timing errors (seconds, over recalled events);
    ``by_kind`` holds recall per event type."""
    chosen = np.sort(np.asarray(chosen))
    delays, hits, kinds = [], [], {}
    for w in event_windows(events, n_frames):
        i = np.searchsorted(chosen, w.start)
        hit = i < len(chosen) and chosen[i] < w.end
        hits.append(hit)
        kinds.setdefault(w.event["type"], []).append(hit)
        if hit:
            delays.append((chosen[i] - w.start) / fps)
    delays_arr = np.asarray(delays) if delays else np.zeros(1)
    return {"fraction": len(chosen) / n_frames, "recall": float(np.mean(hits)) if hits else 1.0,
            "events": len(hits), "mean_delay_s": float(delays_arr.mean()), "p90_delay_s": float(np.quantile(delays_arr, 0.9)),
            "max_delay_s": float(delays_arr.max()),
            "by_kind": {str(k): float(np.mean(v)) for k, v in sorted(kinds.items())}}


def sweep(clips: dict[str, dict], strategy: str, values: Sequence[float], **kwargs) -> list[dict]:
    """Score ``strategy`` ("stride", "diff", "hist", "motion" or "motion_stride") at each value over all
    ``clips`` ({name: {"small", "motion", "events", "fps"}}), pooling events and frames. Each row:
    the parameter, the pooled fraction, recall and timing errors, and the selection time per frame."""
    rows = []
    for v in values:
        chosen_total, frames_total, hits, delays, seconds = 0, 0, 0, [], 0.0
        n_events = 0
        for c in clips.values():
            n = len(c["small"])
            start = time.perf_counter()
            if strategy == "stride":
                chosen = fixed_stride(n, int(v))
            elif strategy in ("diff", "hist"):
                chosen = change_keyframes(c["small"], v, method=strategy, **kwargs)
            elif strategy == "motion":  # the knob: the motion threshold
                chosen = motion_gated(c["motion"], v, **kwargs)
            elif strategy == "motion_stride":  # the knob: the stride while something moves
                chosen = motion_gated(c["motion"], active_stride=int(v), **kwargs)
            else:
                raise ValueError(f"unknown strategy {strategy!r}")
            seconds += time.perf_counter() - start
            s = score(chosen, c["events"], n, c["fps"])
            chosen_total += len(chosen)
            frames_total += n
            hits += round(s["recall"] * s["events"])
            n_events += s["events"]
            for w in event_windows(c["events"], n):
                i = np.searchsorted(chosen, w.start)
                if i < len(chosen) and chosen[i] < w.end:
                    delays.append((chosen[i] - w.start) / c["fps"])
        d = np.asarray(delays) if delays else np.zeros(1)
        rows.append({"strategy": strategy, "param": float(v), "fraction": chosen_total / frames_total,
                     "recall": hits / max(1, n_events), "events": n_events, "mean_delay_s": float(d.mean()),
                     "p90_delay_s": float(np.quantile(d, 0.9)), "select_ms_per_frame": 1000 * seconds / frames_total})
    return rows


# ---------------------------------------------------------------------------------------------
# With the detector instead of the ground truth on the chosen frames
# ---------------------------------------------------------------------------------------------

#: Events after which the track is in view: a detector can confirm them on the next chosen frame.
SEEN_AFTER = (EventKind.ENTER_ZONE, EventKind.EXIT_ZONE, EventKind.REAPPEARED, EventKind.ENTER_FRAME,
              EventKind.PUT_ON_PPE, EventKind.TAKE_OFF_PPE, EventKind.NEAR_MISS)


def first_looks(chosen: np.ndarray, events: list[dict], n_frames: int, kinds=SEEN_AFTER) -> list[tuple[dict, int]]:
    """(event, the first chosen frame inside its window) for each event of ``kinds`` that the choice catches."""
    chosen = np.sort(np.asarray(chosen))
    out = []
    for w in event_windows(events, n_frames):
        if w.event["type"] not in kinds:
            continue
        i = np.searchsorted(chosen, w.start)
        if i < len(chosen) and chosen[i] < w.end:
            out.append((w.event, int(chosen[i])))
    return out


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def confirmed(event: dict, truth_box, detections, zone=None, min_iou: float = 0.5) -> bool:
    """Whether ``detections`` (objects with ``label`` and ``bbox``) on the frame where the event is
    first looked at show what the event says: a box of the track's class over its ground-truth box
    (IoU >= ``min_iou``) and, for a zone entry or exit, that box's foot point (bottom centre) inside
    or outside ``zone``. ``truth_box`` None (the track is not in the ground truth there): False."""
    if truth_box is None:
        return False
    best = max((d for d in detections if d.label == event["label"]), key=lambda d: box_iou(d.bbox, truth_box),
               default=None)
    if best is None or box_iou(best.bbox, truth_box) < min_iou:
        return False
    if event["type"] in (EventKind.ENTER_ZONE, EventKind.EXIT_ZONE) and zone is not None:
        x1, _, x2, y2 = best.bbox
        inside = cv2.pointPolygonTest(np.asarray(zone, np.float32), ((x1 + x2) / 2, y2), False) >= 0
        return inside == (event["type"] == EventKind.ENTER_ZONE)
    return True
