"""Track-level events from a tracker's output, scored against the generator's timeline.

Taught in ``notebooks/video/04_events.ipynb``.

:class:`EventDetector` is the online part of the pipeline (the stream of ``07_stream`` calls
:meth:`EventDetector.update` once per processed frame): tracked boxes in, the schema's
:class:`~efsora_helpers.perception.schema.TrackEvent` records out, each returned at the frame it
became certain and dated to the frame it started:

* ``enter_zone`` / ``exit_zone``: a worker's *foot point* (the bottom centre of the box) crosses the
  zone polygon, debounced (``zone_min_frames`` observations in the new state; a box that flickers
  across the lane's edge is one event, not five). ``exit_zone`` carries the dwell in ``details``.
* ``take_off_ppe`` / ``put_on_ppe``: a vote over the last ``vest_window`` observations of the worker
  (a vest detection's centre in the upper two thirds of the box), not one frame: one missed vest
  detection is not a worker without a vest. Hysteresis (``vest_on_share`` / ``vest_off_share``)
  keeps a share near the line from flickering; workers too small to show a vest, cut by the frame's
  edge or behind a nearer box do not vote. The change is dated to the split of the window that best
  separates the old state from the new one.
* ``violation_start`` / ``violation_end`` (:attr:`Rule.NO_VEST` in :attr:`Zone.FORKLIFT_ZONE`): a
  worker in the zone with no vest by the vote: the book's running question as a state.
* ``near_miss``: a worker's foot point within ``near_miss_m`` metres of a *moving* forklift's
  footprint on the floor, once per close call. The floor is the generator's own camera model
  (:func:`efsora_helpers.safetyscenes.video.floor_point`: a worker's height in pixels at an image row
  sets the scale; it needs the clip's ``horizon`` row, :func:`camera_for`); without one, an
  image-space proxy (pixels scaled by the worker's box height as 1.75 m) stands in, and says so in
  ``details["floor_model"]``.

Every event's ``details["confirmed_frame"]`` is the frame at which it was returned (its latency).
:func:`clip_events` is the batch path over a shipped clip (cached detections, :func:`clip_tracks`,
:func:`run_detector`); :func:`truth_tracks` feeds the ground truth's boxes instead (the rules
without tracking errors).

Scoring. :func:`score_events` (``TrackEvent`` lists, per kind) and :func:`match_events` (the first
slice's dict events, zone kinds) match a predicted event to a true one of the same kind and worker
within ``tolerance_s``, each true event at most once, closest in time first. "Who" matters: a
predicted track id stands for the ground-truth id that the identity metrics
(:func:`.metrics.identity`) paired it with (strict: a fragment of a track names nobody), or the
worker its box covers around the event's frame (:func:`who_at`, :func:`who_is`).
:func:`truth_violations` reads the no-vest-in-zone violations off the generator's timeline (it
writes none), :func:`dwell_times` pairs entries with exits. :func:`zone_events` is the first slice's
batch zone rule.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..vocabulary import CLASSES, EventKind, ObjectClass, Rule, Zone, phrase
from .metrics import Rows, iou_matrix

if TYPE_CHECKING:
    from ..perception.schema import TrackEvent


def zone_events(tracks: Rows, zone, fps: float, min_frames: int = 3) -> list[dict]:
    """``enter_zone`` / ``exit_zone`` events per track id of ``tracks`` ({frame: [(id, x1, y1, x2, y2)]},
    frames 1-based as in MOT files; events carry 0-based ``frame`` like the generator's)."""
    poly = np.asarray(zone, np.float32)
    states: dict[int, list[tuple[int, bool]]] = {}
    for f in sorted(tracks):
        for tid, x1, y1, x2, y2 in tracks[f]:
            inside = cv2.pointPolygonTest(poly, ((x1 + x2) / 2, y2), False) >= 0
            states.setdefault(tid, []).append((f - 1, inside))
    events = []
    for tid, seq in states.items():
        current, run_start, run_state, run_len = seq[0][1], None, None, 0
        for f, inside in seq[1:]:
            if inside == current:
                run_len, run_state = 0, None
                continue
            if run_state != inside:
                run_start, run_state, run_len = f, inside, 0
            run_len += 1
            if run_len >= min_frames:
                kind = EventKind.ENTER_ZONE if inside else EventKind.EXIT_ZONE
                events.append({"frame": run_start, "time_s": round(run_start / fps, 2), "track_id": tid, "type": kind})
                current, run_state, run_len = inside, None, 0
    return sorted(events, key=lambda e: (e["frame"], e["track_id"]))


def who_at(gt: Rows, tracks: Rows, event: dict, min_iou: float = 0.5) -> int | None:
    """The ground-truth id whose box the event's track box overlaps most (IoU >= ``min_iou``) in the
    event's frame: "who" read locally, so a fragment of a worker's track still names that worker."""
    f = event["frame"] + 1
    box = next((r[1:] for r in tracks.get(f, []) if r[0] == event["track_id"]), None)
    rows = gt.get(f, [])
    if box is None or not rows:
        return None
    iou = iou_matrix([box], [r[1:] for r in rows])[0]
    return rows[int(iou.argmax())][0] if iou.max() >= min_iou else None


def match_events(predicted: list[dict], truth: list[dict], pairs: dict[int, int] | None = None,
                 tolerance_s: float = 1.0, kinds=(EventKind.ENTER_ZONE, EventKind.EXIT_ZONE)) -> dict:
    """Precision, recall and timing errors of ``predicted`` against ``truth`` (events of ``kinds``).
    ``pairs`` maps predicted track ids to ground-truth ids (the identity metrics' one-to-one
    pairing); None: each predicted event's own ``gt_id`` (from :func:`who_at`)."""
    truth = [e for e in truth if e["type"] in kinds]
    predicted = [e for e in predicted if e["type"] in kinds]
    matched = match_pairs(predicted, truth, tolerance_s, pairs if pairs is not None else (lambda e: e.get("gt_id")))
    errors = [predicted[i]["time_s"] - truth[j]["time_s"] for i, j, _ in matched]
    err = np.abs(errors) if errors else np.zeros(1)
    return {"predicted": len(predicted), "true": len(truth), "matched": len(errors),
            "precision": len(errors) / len(predicted) if predicted else float("nan"),
            "recall": len(errors) / len(truth) if truth else float("nan"),
            "mean_abs_error_s": float(err.mean()), "max_abs_error_s": float(err.max()),
            "mean_error_s": float(np.mean(errors)) if errors else 0.0}


VEST_CLASS = 3  # 1-based class of "vest" in the detection files (the detector's class order)
VEST = str(ObjectClass.VEST)  # the details key of a worker's vest state (as in the generator's events)


def vest_seen(tracks: Rows, det_rows: np.ndarray, min_confidence: float = 0.25) -> dict[tuple[int, int], bool]:
    """{(frame, track id): a vest detection's centre lies in the upper two thirds of the track's box}."""
    vests = det_rows[(det_rows[:, 7] == VEST_CLASS) & (det_rows[:, 6] >= min_confidence)]
    cx, cy = vests[:, 2] + vests[:, 4] / 2, vests[:, 3] + vests[:, 5] / 2
    out = {}
    for f, rows in tracks.items():
        here = vests[:, 0] == f
        for tid, x1, y1, x2, y2 in rows:
            inside = here & (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y1 + (y2 - y1) * 2 / 3)
            out[f, tid] = bool(inside.any())
    return out


def entries_without_vest(tracks: Rows, det_rows: np.ndarray, zone, fps: float, window_s: float = 1.0,
                         min_frames: int = 3) -> list[dict]:
    """The running question of the book, from pixels: each ``enter_zone`` of a track whose vest was
    seen in fewer than half of its frames within ``window_s`` either side of the entry (a vote over
    frames, not one frame). Adds ``vest_share`` to the event."""
    seen = vest_seen(tracks, det_rows)
    out = []
    for e in zone_events(tracks, zone, fps, min_frames):
        if e["type"] != EventKind.ENTER_ZONE:
            continue
        f0, half = e["frame"] + 1, round(window_s * fps)
        votes = [seen[f, e["track_id"]] for f in range(f0 - half, f0 + half + 1) if (f, e["track_id"]) in seen]
        share = float(np.mean(votes)) if votes else 0.0
        if share < 0.5:
            out.append({**e, "vest_share": round(share, 3)})
    return out


# --- the online detector: tracked boxes in, TrackEvent records out ----------------------------------

#: One tracked box: (track_id, label (an ObjectClass value), x1, y1, x2, y2, confidence).
TrackedBox = tuple[int, str, float, float, float, float, float]

#: A forklift's size on the generator's depth rule, in worker heights (its stories' default scale).
FORKLIFT_SIZE = 1.05

#: Defaults of :class:`EventDetector`; each can be passed as a keyword.
SETTINGS = {
    "zone_min_frames": 3,  # observations in the new state before a zone change counts (debounce)
    "vest_window": 30,  # observations in the PPE vote (1: a single frame decides; 30: 2 s at 15 fps)
    # The detector misses a worn vest in a good share of frames (more on smaller workers) and sees one
    # that is not there in a few per cent (04_events measures both), so the vote's line sits low,
    # with hysteresis against flicker:
    "vest_on_share": 0.3,  # a full window with at least this share of vests seen: wears one ...
    "vest_off_share": 0.1,  # ... at most this share: wears none; in between: no change
    "vote_min_height": 90,  # no vote from a worker box shorter than this (pixels): the detector finds
    # no vest on workers under 80 pixels tall (04_events measures it): too far away to vote
    "vote_max_overlap": 0.25,  # no vote while a nearer tracked box covers more of the worker's box
    "vest_min_confidence": 0.25,  # vest detections below this score are not votes for a vest
    "near_miss_m": None,  # None: the generator's NEAR_MISS_M
    "near_clear_m": None,  # None: the generator's NEAR_MISS_CLEAR_M (the spell ends beyond it)
    "moving_mps": None,  # None: the generator's FORKLIFT_MOVING_MPS
    "near_min_frames": 2,  # observations closer than near_miss_m before a near miss counts
    "near_rearm_s": 3.0,  # a worker's next near miss counts only this long after their last one
    "speed_window_s": 0.5,  # the forklift's speed is measured over this much of its track
    "lost_s": 2.0,  # a track unseen this long is gone (its open violation ends)
    "horizon": None,  # the image row of the horizon: the floor model; None: the image-space proxy
    "width": None,  # the frame's size in pixels: the floor model needs both; without a width no box
    "height": None,  # counts as cut by the right edge
}


def camera_for(name: str) -> dict:
    """The floor model's settings of a shipped clip (its horizon row and frame size, from the meta)."""
    from .frames import meta

    m = meta(name)
    return {"horizon": m["horizon"], "width": m["width"], "height": m["height"]}


def _confirmed(events: list, frame: int) -> list:
    """``events`` in time order, each with the frame at which it became certain
    (``details["confirmed_frame"]``: its latency is that minus ``frame``)."""
    for e in events:
        e.details["confirmed_frame"] = frame
    return sorted(events, key=lambda e: (e.frame, e.track_id))


def _covered(box, others) -> float:
    """The largest share of ``box`` that one of ``others`` covers."""
    x1, y1, x2, y2 = box
    area = max(1e-9, (x2 - x1) * (y2 - y1))
    return max((max(0.0, min(x2, o[2]) - max(x1, o[0])) * max(0.0, min(y2, o[3]) - max(y1, o[1])) / area
                for o in others), default=0.0)


class _Debounce:
    """A boolean state that changes only after ``n`` observations in a row disagree with it; the
    change is dated to the first of them. The first observation sets the state silently."""

    def __init__(self, n: int):
        self.n, self.state, self.cand, self.start, self.count = max(1, n), None, None, None, 0

    def feed(self, frame: int, value: bool) -> int | None:
        if self.state is None:
            self.state = value
            return None
        if value == self.state:
            self.cand, self.count = None, 0
            return None
        if self.cand != value:
            self.cand, self.start, self.count = value, frame, 0
        self.count += 1
        if self.count >= self.n:
            self.state, self.cand = value, None
            return self.start
        return None


class _Track:
    def __init__(self, tid: int, label: str, frame: int, settings: dict, zones):
        self.tid, self.label, self.first, self.last = tid, label, frame, frame
        self.box = (0.0, 0.0, 0.0, 0.0)
        self.zone = {z: _Debounce(settings["zone_min_frames"]) for z in zones}
        self.entered: dict[str, int | None] = {z: None for z in zones}
        self.votes: deque = deque(maxlen=max(1, settings["vest_window"]))
        self.vest: bool | None = None
        self.violation: dict[str, int] = {}  # zone -> frame the no-vest-in-zone state started
        self.path: deque = deque()  # a forklift's recent (frame, x1, x2, y2)
        self.near_at = -10**9  # the frame of this worker's last near miss
        self.foot: tuple[float, float] | None = None  # a worker's last foot point seen with nothing in front


class EventDetector:
    """Track-level events, online. ``zones``: {zone name: polygon} (a clip's ``_zones.json``);
    ``fps``: the video's frame rate (frame indices stay the video's, also when frames are skipped);
    ``settings``: any of :data:`SETTINGS` (``horizon``/``width``/``height``: :func:`camera_for`).

    Track ids must be unique per label (a person and a forklift may share a number)."""

    def __init__(self, zones: dict[str, list[list[float]]], fps: float, **settings):
        from ..safetyscenes import video as gen

        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise TypeError(f"unknown EventDetector settings: {sorted(unknown)}; known: {sorted(SETTINGS)}")
        self.s = {**SETTINGS, **settings}
        for key, default in (("near_miss_m", gen.NEAR_MISS_M), ("near_clear_m", gen.NEAR_MISS_CLEAR_M),
                             ("moving_mps", gen.FORKLIFT_MOVING_MPS)):
            if self.s[key] is None:
                self.s[key] = default
        if self.s["horizon"] is not None and None in (self.s["width"], self.s["height"]):
            raise ValueError("the floor model (horizon) needs the frame's width and height; see camera_for")
        self._right = self.s["width"] - 1 if self.s["width"] else float("inf")  # a box's x2 here: cut by the edge
        self.zones = {z: np.asarray(p, np.float32) for z, p in zones.items()}
        self.fps = float(fps)
        self.tracks: dict[tuple[str, int], _Track] = {}
        self.spells: dict[tuple, dict] = {}  # (worker key, forklift key) -> near-miss spell
        self._floor_point, self._person_m = gen.floor_point, gen.PERSON_M

    # -- geometry --------------------------------------------------------------------------------
    @property
    def on_floor(self) -> bool:
        """True: distances in metres on the generator's floor plane; False: the image-space proxy."""
        return self.s["horizon"] is not None

    def floor(self, x: float, y: float) -> tuple[float, float]:
        """An image point on the floor, in metres (across, depth), by the generator's camera model."""
        return self._floor_point(float(x), float(y), self.s["width"], self._person_h)

    def footprint(self, fk: _Track) -> tuple[float, float]:
        """The image x-range of the floor a forklift covers along its way, at its box's bottom row.
        With the generator's camera model and a heading: its footprint, from 0.56 of its size
        behind its foot point to 1.0 ahead, where the size is the depth rule's (a worker's height in
        pixels at that row, times :data:`FORKLIFT_SIZE`) and the foot point sits 0.53 sizes ahead of
        the box's rear edge (measured on the ground truth; the front edge varies: a carried pallet
        is its own object). Otherwise: the box's bottom edge."""
        x1, _, x2, y2 = fk.box
        heading = self._heading(fk)
        if not (self.on_floor and heading):
            return x1, x2
        size = FORKLIFT_SIZE * self._person_h(y2)
        rear = x1 if heading > 0 else x2
        if (heading > 0 and x1 <= 1) or (heading < 0 and x2 >= self._right):  # rear cut by the edge
            fx = (x2 if heading > 0 else x1) - heading * 0.52 * size
        else:
            fx = rear + heading * 0.53 * size
        return tuple(sorted((fx - heading * 0.56 * size, fx + heading * 1.0 * size)))

    def _person_h(self, row: float) -> float:
        horizon, H = self.s["horizon"], self.s["height"]
        return 40 + (max(row, horizon + 1.0) - horizon) / (H - horizon) * 0.62 * H

    def _distance(self, worker: _Track, fk: _Track) -> float:
        """Metres from the worker's foot point to the forklift's :meth:`footprint` on the floor."""
        wx1, wy1, wx2, wy2 = worker.box
        foot = worker.foot or ((wx1 + wx2) / 2, wy2)
        lo, hi = self.footprint(fk)
        fy2 = fk.box[3]
        if self.on_floor:
            (wx, wz), (ax, fz), (bx, _) = self.floor(*foot), self.floor(lo, fy2), self.floor(hi, fy2)
            return math.hypot(max(0.0, ax - wx, wx - bx), wz - fz)
        scale = self._person_m / max(1.0, wy2 - wy1)  # proxy: the worker's height in pixels is 1.75 m
        return scale * math.hypot(max(0.0, lo - foot[0], foot[0] - hi), foot[1] - fy2)

    def _reference_x(self, fk: _Track) -> tuple[float, float] | None:
        """The x of one point of the forklift at the start and end of its recent path: the box
        centre while the box is whole, else an edge that the frame's border cuts at neither time
        (a box cut by the border moves at half speed)."""
        if len(fk.path) < 2 or fk.path[-1][0] == fk.path[0][0]:
            return None
        (_, a1, a2, _), (_, b1, b2, _) = fk.path[0], fk.path[-1]
        right = self._right
        if min(a1, b1) > 1 and max(a2, b2) < right:
            return (a1 + a2) / 2, (b1 + b2) / 2
        if max(a2, b2) < right:
            return a2, b2
        if min(a1, b1) > 1:
            return a1, b1
        return (a1 + a2) / 2, (b1 + b2) / 2

    def _heading(self, fk: _Track) -> int:
        ref = self._reference_x(fk)
        if ref is None or abs(ref[1] - ref[0]) < 2:
            return 0
        return 1 if ref[1] > ref[0] else -1

    def _speed(self, fk: _Track, worker: _Track) -> float:
        """Metres per second over the last ``speed_window_s`` of the forklift's track."""
        ref = self._reference_x(fk)
        if ref is None:
            return 0.0
        (f0, *_, y0), (f1, *_, y1) = fk.path[0], fk.path[-1]
        if self.on_floor:
            (x0, z0), (x1, z1) = self.floor(ref[0], y0), self.floor(ref[1], y1)
            metres = math.hypot(x1 - x0, z1 - z0)
        else:
            metres = math.hypot(ref[1] - ref[0], y1 - y0) * self._person_m / max(1.0, worker.box[3] - worker.box[1])
        return metres * self.fps / (f1 - f0)

    # -- events ----------------------------------------------------------------------------------
    def _event(self, frame: int, t: _Track, kind: EventKind, text: str, **fields) -> TrackEvent:
        from ..perception.schema import TrackEvent

        noun = "worker" if t.label == ObjectClass.PERSON else phrase(t.label)
        time_s = round(frame / self.fps, 2)
        return TrackEvent(frame=frame, time_s=time_s, track_id=t.tid, label=t.label, kind=kind,
                          evidence=f"{noun} {t.tid} {text} at {time_s:.1f} s", **fields)

    def _vote(self, t: _Track, frame: int, vests: np.ndarray | None, others: list[_Track]) -> list:
        if (vests is None or t.box[3] - t.box[1] < self.s["vote_min_height"]
                or t.box[0] <= 1 or t.box[2] >= self._right
                or _covered(t.box, [o.box for o in others if o.box[3] > t.box[3]]) > self.s["vote_max_overlap"]):
            return []  # no detections, a worker too small to show a vest, cut by the frame's edge, or hidden
        x1, y1, x2, y2 = t.box
        cx, cy = vests[:, 0], vests[:, 1]
        seen = bool(((cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y1 + (y2 - y1) * 2 / 3)).any())
        t.votes.append((frame, seen))
        if len(t.votes) < t.votes.maxlen:
            return []
        share = sum(s for _, s in t.votes) / len(t.votes)
        on, off = self.s["vest_on_share"], self.s["vest_off_share"]
        if t.vest is None:
            t.vest = share >= (on + off) / 2
            return []
        if (t.vest and share > off) or (not t.vest and share < on):
            return []
        wears = not t.vest
        # date the change to the split that best separates the old state from the new one
        seq = [s for _, s in t.votes]
        best = max(range(1, len(seq)), key=lambda k: sum(v == t.vest for v in seq[:k]) + sum(v == wears for v in seq[k:]),
                   default=0)
        start = t.votes[best][0]
        t.vest = wears
        kind, verb = (EventKind.PUT_ON_PPE, "puts on") if wears else (EventKind.TAKE_OFF_PPE, "takes off")
        return [self._event(start, t, kind, f"{verb} a {phrase(ObjectClass.VEST)}",
                            details={"item": str(ObjectClass.VEST), "vest_share": round(share, 3)})]

    def _violations(self, t: _Track, frame: int, since: int) -> list:
        out = []
        for zone, state in t.zone.items():
            bad = bool(state.state) and t.vest is False
            if bad and zone not in t.violation:
                t.violation[zone] = since
                out.append(self._event(since, t, EventKind.VIOLATION_START, f"is in the {phrase(zone)} without a vest",
                                       zone=zone, rule=Rule.NO_VEST, details={VEST: False}))
            elif not bad and zone in t.violation:
                start = t.violation.pop(zone)
                out.append(self._event(since, t, EventKind.VIOLATION_END, f"is no longer in the {phrase(zone)} "
                                       "without a vest", zone=zone, rule=Rule.NO_VEST,
                                       details={"duration_s": round((since - start) / self.fps, 2)}))
        return out

    def update(self, frame: int, tracks: list[TrackedBox], detections: np.ndarray | None = None) -> list[TrackEvent]:
        """Online: called once per processed frame (0-based ``frame``; frames may be skipped).
        ``tracks``: the tracker's boxes for this frame (people and forklifts); ``detections``: this
        frame's raw detector rows in the det-file layout (frame,-1,x,y,w,h,conf,class,-1; class
        1-based in the detector's class order) for the PPE votes (None: no votes this frame).
        Returns the events that became certain at this frame, each dated to when it started."""
        vests = None
        if detections is not None:
            d = np.asarray(detections, float).reshape(-1, 9)
            d = d[(d[:, 7] == VEST_CLASS) & (d[:, 6] >= self.s["vest_min_confidence"])]
            vests = np.c_[d[:, 2] + d[:, 4] / 2, d[:, 3] + d[:, 5] / 2]
        out: list = []
        here_p, here_f = [], []
        for tid, label, x1, y1, x2, y2, _conf in tracks:
            if tid is None or tid < 0:
                continue  # a box the tracker has not confirmed yet belongs to no track
            key = (str(label), int(tid))
            t = self.tracks.get(key)
            if t is None:
                t = self.tracks[key] = _Track(int(tid), str(label), frame, self.s, self.zones)
            t.last, t.box = frame, (float(x1), float(y1), float(x2), float(y2))
            if label == ObjectClass.PERSON:
                here_p.append(t)
            elif label == ObjectClass.FORKLIFT:
                here_f.append(t)
                t.path.append((frame, float(x1), float(x2), float(y2)))
                while t.path and t.path[0][0] < frame - self.s["speed_window_s"] * self.fps:
                    t.path.popleft()
        for t in here_p:
            x1, y1, x2, y2 = t.box
            # a worker half hidden behind a forklift has a box cut short: keep the last clear foot point
            if _covered(t.box, [o.box for o in here_p + here_f if o is not t and o.box[3] > y2]) <= self.s["vote_max_overlap"]:
                t.foot = ((x1 + x2) / 2, y2)
            for zone, poly in self.zones.items():
                inside = cv2.pointPolygonTest(poly, ((x1 + x2) / 2, y2), False) >= 0
                start = t.zone[zone].feed(frame, inside)
                if start is None:
                    continue
                vest = t.vest if t.vest is not None else (bool(np.mean([s for _, s in t.votes]) >= (
                    self.s["vest_on_share"] + self.s["vest_off_share"]) / 2) if t.votes else None)
                if inside:
                    t.entered[zone] = start
                    ppe = "without a vest" if vest is False else ("wearing a vest" if vest else "(vest unknown)")
                    out.append(self._event(start, t, EventKind.ENTER_ZONE, f"enters the {phrase(zone)} {ppe}",
                                           zone=zone, details={VEST: vest}))
                else:
                    entered = t.entered.pop(zone, None)
                    t.entered[zone] = None
                    dwell = round((start - entered) / self.fps, 2) if entered is not None else None
                    out.append(self._event(start, t, EventKind.EXIT_ZONE, f"leaves the {phrase(zone)}", zone=zone,
                                           details={"dwell_s": dwell, VEST: vest,
                                                    "in_zone_since_frame": entered if entered is not None else t.first}))
                out += self._violations(t, frame, start)
            changes = self._vote(t, frame, vests, [o for o in here_p + here_f if o is not t])
            out += changes
            for e in changes:
                out += self._violations(t, frame, e.frame)
            out += self._violations(t, frame, frame)  # a vest state first known inside the zone
        out += self._near_misses(frame, here_p, here_f)
        out += self._expire(frame)
        return _confirmed(out, frame)

    def _near_misses(self, frame: int, workers: list[_Track], forklifts: list[_Track]) -> list:
        out = []
        for w in workers:
            for fk in forklifts:
                key = ((w.label, w.tid), (fk.label, fk.tid))
                d = self._distance(w, fk)
                near = d < self.s["near_miss_m"] and self._speed(fk, w) > self.s["moving_mps"]
                spell = self.spells.get(key)
                if spell is None:
                    if near:
                        self.spells[key] = {"start": frame, "n": 1, "closest": d, "emitted": False, "last": frame}
                        spell = self.spells[key]
                    else:
                        continue
                elif spell["emitted"]:
                    moving = self._speed(fk, w) > self.s["moving_mps"]
                    spell["still_since"] = None if moving else (spell.get("still_since") or frame)
                    # over when they are apart again, or when the forklift has stood still a while (it
                    # parked beside the worker: moving off again is a new close call)
                    if d > self.s["near_clear_m"] or (not moving and frame - spell["still_since"] >= self.fps):
                        del self.spells[key]
                        continue
                    spell["closest"], spell["last"] = min(spell["closest"], d), frame
                elif near:
                    spell["n"] += 1
                    spell["closest"], spell["last"] = min(spell["closest"], d), frame
                else:
                    del self.spells[key]
                    continue
                if not spell["emitted"] and spell["n"] >= self.s["near_min_frames"]:
                    spell["emitted"] = True
                    if frame - w.near_at <= self.s["near_rearm_s"] * self.fps:
                        continue  # the same close call seen again (a forklift's track broke in two)
                    w.near_at = frame
                    unit = "m" if self.on_floor else "m (image-space proxy)"
                    out.append(self._event(spell["start"], w, EventKind.NEAR_MISS,
                                           f"comes within {spell['closest']:.1f} {unit} of moving forklift {fk.tid}",
                                           details={"forklift_id": fk.tid, "distance_m": round(spell["closest"], 2),
                                                    "floor_model": self.on_floor, VEST: w.vest}))
        return out

    def _expire(self, frame: int, everything: bool = False) -> list:
        out = []
        for key, t in list(self.tracks.items()):
            if everything or frame - t.last > self.s["lost_s"] * self.fps:
                for zone, start in list(t.violation.items()):
                    out.append(self._event(t.last, t, EventKind.VIOLATION_END, f"is no longer seen (in the "
                                           f"{phrase(zone)} without a vest)", zone=zone, rule=Rule.NO_VEST,
                                           details={"duration_s": round((t.last - start) / self.fps, 2),
                                                    "track_lost": not everything, "end_of_stream": everything}))
                del self.tracks[key]
                for pair in [p for p in self.spells if key in p]:
                    del self.spells[pair]
        return out

    def finish(self, frame: int) -> list[TrackEvent]:
        """Flush at the end of the stream: every open violation ends (``details["end_of_stream"]``);
        changes still inside their debounce never became certain and are dropped."""
        return _confirmed(self._expire(frame, everything=True), frame)


# --- batch over a shipped clip ---------------------------------------------------------------------

def _tracker_kwargs(tracker: str, high_conf: float | None) -> dict:
    if high_conf is None:
        return {}
    return {"bytetrack": {"high_conf_det_threshold": high_conf, "track_activation_threshold": high_conf},
            "sort": {"track_activation_threshold": high_conf}}.get(tracker, {})


def clip_tracks(name: str, tracker: str = "bytetrack", stride: int = 1, high_conf: float | None = 0.5,
                det_rows: np.ndarray | None = None) -> dict[int, list[TrackedBox]]:
    """{0-based frame: [TrackedBox]} for workers and forklifts of clip ``name``: the cached detections
    (or ``det_rows``) of every ``stride``-th frame through ``tracker`` (:func:`.track.track`, one
    class at a time; the tracker sees the kept frames as consecutive, at ``fps / stride``)."""
    from . import track as T
    from .detect import read_detections
    from .frames import meta

    m = meta(name)
    det = read_detections(name) if det_rows is None else det_rows
    kept = np.arange(0, m["frames"], stride)
    det = det[np.isin(det[:, 0] - 1, kept)].copy()
    det[:, 0] = (det[:, 0] - 1) // stride + 1  # the kept frames, renumbered 1..len(kept)
    out: dict[int, list[TrackedBox]] = {int(f): [] for f in kept}
    for label in (ObjectClass.PERSON, ObjectClass.FORKLIFT):
        rows = T.track(tracker, det, len(kept), m["fps"] / stride, class_id=CLASSES.index(label) + 1,
                       **_tracker_kwargs(tracker, high_conf))
        for f, tid, x, y, w, h, conf, *_ in rows:
            out[int(kept[int(f) - 1])].append((int(tid), str(label), x, y, x + w, y + h, float(conf)))
    return out


def run_detector(name: str, tracks: dict[int, list[TrackedBox]], det_rows: np.ndarray | None = None,
                 **settings) -> list[TrackEvent]:
    """:class:`EventDetector` over ``tracks`` (:func:`clip_tracks`) of clip ``name``, frame by frame,
    with the frame's detections (the cached ones unless ``det_rows``) as PPE votes."""
    from .detect import read_detections
    from .frames import meta, zones

    det = read_detections(name) if det_rows is None else det_rows
    det = det[np.argsort(det[:, 0], kind="stable")]
    cuts = np.searchsorted(det[:, 0], np.arange(1, meta(name)["frames"] + 2))
    detector = EventDetector(zones(name), meta(name)["fps"], **{**camera_for(name), **settings})
    out = []
    for f in sorted(tracks):
        out += detector.update(f, tracks[f], det[cuts[f]:cuts[f + 1]])
    return out + detector.finish(max(tracks) if tracks else 0)


def clip_events(name: str, tracker: str = "bytetrack", stride: int = 1, high_conf: float | None = 0.5,
                **settings) -> list[TrackEvent]:
    """Batch: cached detections -> tracker (:func:`.track.track` per class) -> :class:`EventDetector`
    over the kept frames of clip ``name``."""
    return run_detector(name, clip_tracks(name, tracker, stride, high_conf), **settings)


# --- scoring TrackEvent lists against the generator's timeline -----------------------------------------

def _field(e, key: str):
    if isinstance(e, dict):
        return e.get(key, e.get("type") if key == "kind" else None)
    return getattr(e, key)


def match_pairs(predicted: list, truth: list, tolerance_s: float = 1.0, pairs=None) -> list[tuple[int, int, float]]:
    """(predicted index, true index, predicted - true seconds) for events of the same kind and worker
    within ``tolerance_s``, closest first, each event at most once. ``pairs``: a dict from predicted
    track id to true id, a function from a predicted event to a true id, or None (who is not checked)."""
    def who(e):
        if pairs is None:
            return None
        return pairs(e) if callable(pairs) else pairs.get(_field(e, "track_id"))

    ids = [who(p) for p in predicted]
    candidates = sorted(
        (abs(_field(p, "time_s") - _field(t, "time_s")), i, j)
        for i, p in enumerate(predicted) for j, t in enumerate(truth)
        if _field(p, "kind") == _field(t, "kind") and (pairs is None or ids[i] == _field(t, "track_id"))
        and abs(_field(p, "time_s") - _field(t, "time_s")) <= tolerance_s)
    used_p, used_t, out = set(), set(), []
    for _, i, j in candidates:
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        out.append((i, j, round(_field(predicted[i], "time_s") - _field(truth[j], "time_s"), 4)))
    return out


def score_events(predicted: list, truth: list, tolerance_s: float = 1.0, pairs=None, kinds=None) -> dict:
    """Per kind (those in ``truth`` or ``predicted``, or ``kinds``): tp, fp, fn, precision, recall,
    median and max absolute timing error in seconds (of the matches; NaN with none) and the mean
    signed error (positive: late). Events are ``TrackEvent`` records or the generator's dicts."""
    kinds = kinds or sorted({str(_field(e, "kind")) for e in list(truth) + list(predicted)})
    out = {}
    for kind in kinds:
        p = [e for e in predicted if _field(e, "kind") == kind]
        t = [e for e in truth if _field(e, "kind") == kind]
        m = match_pairs(p, t, tolerance_s, pairs)
        err = np.abs([dt for *_, dt in m]) if m else np.array([np.nan])
        tp = len(m)
        out[str(kind)] = {"tp": tp, "fp": len(p) - tp, "fn": len(t) - tp,
                          "precision": tp / len(p) if p else float("nan"), "recall": tp / len(t) if t else float("nan"),
                          "median_error_s": float(np.median(err)), "max_error_s": float(np.max(err)),
                          "mean_error_s": float(np.mean([dt for *_, dt in m])) if m else float("nan")}
    return out


def truth_violations(truth: list, n_frames: int, fps: float) -> list:
    """The generator's timeline read as ``violation_start`` / ``violation_end`` (:attr:`Rule.NO_VEST`
    in the zone): a worker in the zone without a vest, from their ``enter_zone`` (vest off) or
    ``take_off_ppe`` (inside) to their ``exit_zone`` or ``put_on_ppe``; open ones end at the last frame."""
    from ..perception.schema import TrackEvent

    inside: dict[int, str] = {}
    vest: dict[int, bool] = {}
    open_: dict[int, tuple[int, str]] = {}
    out = []

    def close(e_frame, tid, label):
        start, zone = open_.pop(tid)
        out.append(TrackEvent(frame=e_frame, time_s=round(e_frame / fps, 2), track_id=tid, label=label,
                              kind=EventKind.VIOLATION_END, zone=zone, rule=Rule.NO_VEST,
                              details={"duration_s": round((e_frame - start) / fps, 2)}))

    for e in sorted(truth, key=lambda e: _field(e, "frame")):
        kind, tid, f = _field(e, "kind"), _field(e, "track_id"), _field(e, "frame")
        label = _field(e, "label")
        details = e if isinstance(e, dict) else e.details
        if ObjectClass.VEST in details:
            vest[tid] = bool(details[ObjectClass.VEST])
        if kind == EventKind.ENTER_ZONE:
            inside[tid] = _field(e, "zone") or Zone.FORKLIFT_ZONE
        elif kind == EventKind.EXIT_ZONE:
            inside.pop(tid, None)
        bad = tid in inside and vest.get(tid) is False
        if bad and tid not in open_:
            open_[tid] = (f, inside[tid])
            out.append(TrackEvent(frame=f, time_s=round(f / fps, 2), track_id=tid, label=label,
                                  kind=EventKind.VIOLATION_START, zone=inside[tid], rule=Rule.NO_VEST,
                                  details={VEST: False}))
        elif not bad and tid in open_:
            close(f, tid, label)
    for tid in list(open_):
        close(n_frames - 1, tid, ObjectClass.PERSON)
    return out


def dwell_times(events: list) -> list[dict]:
    """Each ``exit_zone`` with the ``enter_zone`` of the same track before it: track id, entry and
    exit times, dwell seconds (entries never left and exits never entered are left out)."""
    entered: dict = {}
    out = []
    for e in sorted(events, key=lambda e: _field(e, "frame")):
        kind, key = _field(e, "kind"), (_field(e, "track_id"), _field(e, "zone"))
        if kind == EventKind.ENTER_ZONE:
            entered[key] = _field(e, "time_s")
        elif kind == EventKind.EXIT_ZONE and key in entered:
            t0 = entered.pop(key)
            out.append({"track_id": key[0], "enter_s": t0, "exit_s": _field(e, "time_s"),
                        "dwell_s": round(_field(e, "time_s") - t0, 2)})
    return out


def who_is(name: str, tracks: dict[int, list[TrackedBox]], min_iou: float = 0.3, window: int = 8):
    """A function from a predicted event to the true worker (ground-truth id) under its track's box:
    the worker :func:`who_at` names most often in the ``window`` frames either side of the event's
    frame (a majority, so the frame where two workers cross does not decide), or None. For
    ``score_events(pairs=...)``; a fragment of a worker's track still names that worker."""
    from collections import Counter

    from .frames import mot_rows
    from .metrics import by_frame

    gt = mot_rows(name)
    gt = by_frame(gt[gt[:, 7] == CLASSES.index(ObjectClass.PERSON) + 1])
    rows = {f + 1: [(b[0], *b[2:6]) for b in boxes if b[1] == ObjectClass.PERSON] for f, boxes in tracks.items()}

    def who(event) -> int | None:
        f, tid = _field(event, "frame"), _field(event, "track_id")
        votes = Counter(w for df in range(-window, window + 1)
                        if (w := who_at(gt, rows, {"frame": f + df, "track_id": tid}, min_iou)) is not None)
        return votes.most_common(1)[0][0] if votes else None

    return who


def truth_tracks(name: str) -> dict[int, list[TrackedBox]]:
    """The ground truth's worker and forklift boxes of clip ``name`` as :func:`clip_tracks` gives a
    tracker's (confidence 1): a perfect tracker, to test the event rules apart from tracking."""
    from .frames import meta, mot_rows

    out: dict[int, list[TrackedBox]] = {f: [] for f in range(meta(name)["frames"])}
    for f, tid, x, y, w, h, _, cls, _ in mot_rows(name):
        label = CLASSES[int(cls) - 1]
        if label in (ObjectClass.PERSON, ObjectClass.FORKLIFT):
            out[int(f) - 1].append((int(tid), label, x, y, x + w, y + h, 1.0))
    return out
