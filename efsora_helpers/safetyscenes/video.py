"""SafetyScenes video: short warehouse clips with ground-truth tracks and a scripted event timeline.

Chapter 5 (video analytics) needs clips where every answer is known: which worker is where in
every frame, under which id, how much of them is visible, and when they walk into the forklift
lane. :func:`render_clip` draws them with the same painter as the still scenes (``render.py``):

* the background (wall, floor, racks, the forklift lane, signs) is drawn once per clip;
* every frame copies it and draws the moving actors back to front (by foot point), each into its
  own small sprite that is pasted onto the frame together with its *owner* ids, so visible boxes
  come from the owner map exactly as in ``render_scene``;
* actors follow a script built from the seed (piecewise-linear paths on the floor plane, sizes
  scaled with depth as in ``render_scene``): 3-5 workers with a fixed look and PPE, one forklift
  (sometimes carrying a pallet, which is its own track), a tall stack of pallets and one or two
  more pallets. Every clip contains a worker without a vest walking into the forklift lane, a
  worker who walks behind the pallet stack (hidden, then back under the same id), a worker
  walking into view from a frame edge, and a forklift crossing.
* a light, fixed lighting and colour cast per clip and per-frame sensor noise (seeded per frame).

One seed, one clip: frames (bytes), tracks and events are identical on every run.

The long clips (chapter 5)
--------------------------
:data:`STORIES` scripts six clips of 36-50 s (:func:`render_story`, written by
``efsora scenes video`` into ``data/video/`` with its own ``manifest.json``): workers crossing
paths, hidden behind a pallet stack, a parked or passing forklift or each other, leaving the frame
and coming back, standing in the forklift lane (dwell), a vest taken off or put on mid-clip (a
worker's ``vest_changes`` in the meta; drawn so that nothing else about them changes), and near
misses. Their timelines add ``take_off_ppe`` / ``put_on_ppe`` and ``near_miss`` (a worker's foot
point within :data:`NEAR_MISS_M` of a moving forklift's footprint on the floor plane, see
:func:`floor_point`), and every event carries the worker's vest state *at that frame*.
``<name>_frames.txt`` lists a short hash of every rendered frame, so a test can re-render any frame
range (:func:`render_story` with ``frames=``) and compare it byte for byte. The 12 s clips keep
their original timeline (no PPE or near-miss events) and bytes.

Ground truth
------------
``Clip.tracks[f]`` lists ``(track_id, label, (x1, y1, x2, y2), visibility)`` for every actor with at
least :data:`MIN_VISIBLE_PIXELS` visible pixels in frame ``f`` (0-based). Boxes are the tight boxes
of the *visible* pixels (COCO convention, ``x2``/``y2`` exclusive), always inside the frame.
``visibility`` is visible pixels / the actor's whole silhouette (drawn alone, unclipped), so it
falls both when something is in front and when the actor is cut by the frame edge, as in MOT17.
A worker's silhouette includes the hard hat and vest they wear. ``Clip.feet[f]`` holds every
actor's foot point, visible or not: zone rules use it.

``write_clip`` writes ``<name>_gt.txt`` in the MOTChallenge ground-truth layout, one line per
object per frame::

    frame,id,x,y,w,h,conf,class,visibility      e.g.  12,3,210,95,41,118,1,1,0.874

``frame`` is 1-based (MOT convention), ``x, y`` is the box's top-left corner in 0-based pixels (the
convention of our detectors' output; MOTChallenge's own files are 1-based, Matlab style: a 1-pixel
shift that does not change IoU matching at 0.5), ``w, h`` in pixels, ``conf`` is 1 (count this
object), ``class`` is the 1-based index into :data:`~efsora_helpers.safetyscenes.render.CLASSES`
(1 person, 4 forklift, 5 pallet). Rows with visibility below :data:`MOT_MIN_VISIBILITY` (0.1) are
left out: the visible box of such an object is a sliver (a hard hat over a pallet, a boot at the
frame edge) that says little about where the object is, and no detector should be charged for
missing it. The visibility column lets an evaluation drop more (MOT17 practice is to report with
all boxes, and to study tracking under occlusion by filtering on this column).

Events (``Clip.events``, ``<name>_events.json``) are computed from the ground truth, not
scripted by hand:

* ``enter_zone`` / ``exit_zone``: a worker's foot point crosses the forklift lane's polygon
  (``cv2.pointPolygonTest``);
* ``occluded`` / ``reappeared``: less than 25% of the worker's in-frame silhouette is visible,
  then 60% again (the hysteresis keeps one event per occlusion); occlusions shorter than 0.4 s,
  two people crossing, are left out; ``occluder`` names what is in front;
* ``enter_frame`` / ``exit_frame``: a worker's or the forklift's foot point crosses the left or
  right frame edge.

Each has ``time_s`` (rounded to 0.1 s), ``frame`` (0-based), ``track_id``, ``label``, ``type``, the
worker's ``vest`` and ``hard_hat``, and a sentence in ``text`` such as "worker 2 enters the forklift
zone without a vest at 3.3 s": the timeline an LLM summarises.

The video file
--------------
``<name>.webm`` is VP9 in WebM (plays in browsers; ``cv2.VideoCapture`` reads it). Two writers:

* ``"pyav"`` (the default when PyAV has ``libvpx-vp9``): constant quality (``crf`` 32, about 0.3 MB
  per 12 s clip, written in about 2 s), FFmpeg's ``bitexact`` mode and one encoder thread, so the
  file is byte-identical on every run with the same PyAV/FFmpeg build.
* ``"opencv"``: ``cv2.VideoWriter`` with fourcc ``VP90`` (it prints a harmless "tag ... is not
  supported ... fallback" line: WebM has no codec tags). This build gives no say over the encoder:
  ``VIDEOWRITER_PROP_QUALITY`` is refused, ``VIDEOWRITER_PROP_KEY_INTERVAL`` changes nothing, and
  ``OPENCV_FFMPEG_WRITER_OPTIONS`` only picks hardware acceleration (the options never reach the
  encoder). OpenCV derives a high fixed bit rate from width x height x fps (about 5 Mbit/s here),
  so a 12 s clip is about 6.7 MB and takes about 35 s to encode. libvpx's output was the same in
  every run (fresh processes, one CPU or two, ``OMP_NUM_THREADS=1`` or not); only FFmpeg's WebM
  muxer differs, with a random 64-bit TrackUID (it skips that only in ``bitexact`` mode, which
  OpenCV cannot set). :func:`write_clip` rewrites the id to 1, the bitexact value, so these files
  are reproducible too.

Across library versions the video bytes may change; the ground-truth files never depend on them.
Decoded frames differ from ``Clip.frames`` by the lossy compression (and the sensor noise it
smooths away), never in geometry.

Taught in ``notebooks/setup/safetyscenes.ipynb`` and ``notebooks/video/01_frames.ipynb``; used in
chapter 5 (keyframes, ByteTrack, MOTA/IDF1, zone alerts, temporal summaries).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..vocabulary import EventKind, ObjectClass, Zone, phrase
from .render import (
    CLASS_ID,
    CLASSES,
    SIGN_TEXTS,
    Painter,
    _background,
    _draw_sign,
    _forklift,
    _pallet,
    _pick,
    _racks,
    _worker,
    _zone,
)

# The shipped clips (12 s, 640x360, 15 fps). Seeds picked for a clear picture of each story.
CLIPS: dict[str, int] = {"forklift_crossing": 5019, "zone_violation": 5004}

MIN_VISIBLE_PIXELS = 10  # fewer visible pixels: not in Clip.tracks
MOT_MIN_VISIBILITY = 0.1  # rows below this are left out of the MOT file (see the module docstring)
OCCLUDED_BELOW = 0.25  # share of the in-frame silhouette visible: "occluded" below this ...
REAPPEARS_FROM = 0.6  # ... and "reappeared" from this; the gap is hysteresis against flicker
MIN_OCCLUSION_S = 0.4  # shorter occlusions (two people crossing) are not events
FOURCC = "VP90"

Box = tuple[float, float, float, float]
TrackRow = tuple[int, str, Box, float]


@dataclass
class Clip:
    """A rendered clip and its ground truth. Frame indices are 0-based."""

    seed: int
    fps: int
    width: int
    height: int
    frames: list[np.ndarray]  # BGR uint8, height x width x 3
    tracks: list[list[TrackRow]]  # per frame: (track_id, label, visible box xyxy, visibility)
    feet: list[dict[int, tuple[float, float]]]  # per frame: every actor's foot point
    zones: dict[str, list[tuple[float, float]]]
    events: list[dict]
    actors: list[dict]
    params: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps

    def mot_lines(self, min_visibility: float = MOT_MIN_VISIBILITY) -> list[str]:
        """The MOTChallenge ground-truth lines (``frame,id,x,y,w,h,1,class,visibility``)."""
        lines = []
        for f, rows in enumerate(self.tracks):
            for tid, label, (x1, y1, x2, y2), vis in rows:
                if vis >= min_visibility:
                    lines.append(f"{f + 1},{tid},{x1:.0f},{y1:.0f},{x2 - x1:.0f},{y2 - y1:.0f},1,"
                                 f"{CLASS_ID[label] + 1},{vis:.3f}")
        return lines


# ---------------------------------------------------------------------------------------------
# The script: who goes where, when
# ---------------------------------------------------------------------------------------------

@dataclass
class _Actor:
    id: int
    label: str  # ObjectClass.PERSON, FORKLIFT or PALLET
    role: str
    xy: np.ndarray  # (n_frames, 2): the foot point (a pallet's: the middle of its front edge)
    look: list[int]  # seeds a fresh appearance rng every frame: the same draws, the same look
    size: float = 1.0  # workers and forklifts: a factor on the depth rule; pallets: width in px
    attrs: dict = field(default_factory=dict)
    moving_pose: str = "walking"
    still_pose: str = "standing"
    still_facing: str | None = None  # None: the appearance draw decides
    drawn: bool = True  # a forklift's load is drawn by the forklift
    vest_changes: list[tuple[int, bool]] = field(default_factory=list)  # (frame, worn from then on)

    def vest_at(self, f: int) -> bool:
        """Whether this worker wears a vest in frame ``f`` (``attrs`` holds the state at frame 0)."""
        worn = bool(self.attrs[ObjectClass.VEST])
        for frame, state in self.vest_changes:
            if frame <= f:
                worn = state
        return worn


def _path(keys: list[tuple[float, float, float]], times: np.ndarray) -> np.ndarray:
    """Piecewise-linear (t, x, y) keyframes sampled at ``times``; held before the first and after
    the last. Two keys at the same place make a pause."""
    ts, xs, ys = (np.asarray(v, float) for v in zip(*keys))
    return np.stack([np.interp(times, ts, xs), np.interp(times, ts, ys)], axis=1)


def _pallet_height_ratio(look: list[int]) -> float:
    """Loaded height / width of the pallet a look seed draws (drawn once, off-screen)."""
    p = Painter(260, 120, np.random.default_rng(0))
    _pallet(p, np.random.default_rng(look), 1, 10, 250, 100.0, loaded=True)
    ys = np.nonzero(p.owner.any(axis=1))[0]
    return (250 - ys.min()) / 100.0


def _script(seed: int, W: int, H: int, seconds: float, times: np.ndarray, horizon: int,
            zone: list[tuple[float, float]]) -> list[_Actor]:
    rng = np.random.default_rng([seed, 1])
    T = seconds
    s = W / 640  # speeds are quoted for a 640-pixel-wide frame
    span = H - horizon

    def y_at(d):
        return horizon + d * span

    def person_h(y):  # render_scene's size rule
        return 40 + (y - horizon) / span * 0.62 * H

    (lx0, ly0), (rx0, _), (rx1, ly1), (lx1, _) = zone

    def lane(y):  # the lane's left and right edge at image row y
        u = (y - ly0) / (ly1 - ly0)
        return lx0 + u * (lx1 - lx0), rx0 + u * (rx1 - rx0)

    def side(dir_):
        return "right" if dir_ > 0 else "left"

    n_workers = int(rng.integers(3, 6))
    actors: list[_Actor] = []
    next_id = iter(range(1, 100))

    # -- the hidden walker (B) and the pallet stack (P) in front of them --------------------------
    # B walks at the back; P stands a little nearer the camera and is taller than B appears, so B
    # is fully hidden while behind it. B waits, walks past behind P, and waits again, all inside the
    # frame, so B is visible before and after.
    b_id = next(next_id)
    b_scale = rng.uniform(0.92, 1.05)
    yB = y_at(rng.uniform(0.08, 0.16))
    hB = person_h(yB) * b_scale
    yP = yB + rng.uniform(0.11, 0.15) * span
    look_P = None
    for j in range(500):  # a pallet with three rows of boxes: tall for its width
        look = [seed, 50, j]
        ratio = _pallet_height_ratio(look)
        if ratio >= 1.0:
            look_P = look
            break
    assert look_P is not None
    wP = max(person_h(yP) * 0.85, (hB * 1.04 + (yP - yB) + 3) / ratio)
    hwB = 0.25 * hB  # half the width of a walking worker, arms and stride included
    D = wP / 2 + hwB + 0.35 * hB + 4  # from P's centre to a spot where B is fully visible
    reach = D + hwB + 4  # B's extent either side of P's centre
    vB = max(rng.uniform(45, 75) * s, 2 * D / (0.6 * T))
    zl, zr = lane(yP)
    rooms = sorted([(zl, 0.0, zl), (W - zr, zr, float(W))], reverse=True)  # (size, lo, hi) beside the lane
    _, lo, hi = rooms[0]
    if hi - lo >= 2 * reach:
        xP = rng.uniform(lo + reach, hi - reach)
    else:  # no room beside the lane: as far from it as the frame allows
        xP = float(np.clip((lo + hi) / 2, reach, W - reach))
    dirB = 1 if rng.random() < 0.5 else -1
    tH = rng.uniform(0.4, 0.5) * T  # B's mid-point behind P
    tH = max(tH, 0.1 * T + D / vB)
    t_start, t_end = tH - D / vB, tH + D / vB
    xs, xe = xP - dirB * D, xP + dirB * D
    b_range = (xP - reach, xP + reach)
    b_hat, b_vest = rng.random() < 0.6, rng.random() < 0.55
    actors.append(_Actor(b_id, ObjectClass.PERSON, "hidden_walker",
                         _path([(0, xs, yB), (t_start, xs, yB), (t_end, xe, yB), (T, xe, yB)], times),
                         [seed, 100, b_id], b_scale, {ObjectClass.HARD_HAT: b_hat, ObjectClass.VEST: b_vest}))

    # -- the zone walker (A): no vest, walks into the lane, stops there, walks on ------------------
    # The forklift drives between the stack and A (it passes in front of B and behind A), so its
    # depth is chosen first.
    a_id = next(next_id)
    dF = (yP - horizon) / span + rng.uniform(0.06, 0.12)
    yF = y_at(dF)
    a_scale = rng.uniform(0.92, 1.08)
    yA = y_at(rng.uniform(max(0.5, dF + 0.08), 0.68))
    hA = person_h(yA) * a_scale
    vA = rng.uniform(45, 75) * s
    zl, zr = lane(yA)
    dirA = 1 if zl >= W - zr else -1  # come from the roomier side
    x_entry = zl if dirA > 0 else zr
    t_enter = rng.uniform(0.2, 0.35) * T
    x_start = x_entry - dirA * vA * t_enter
    x_mid = (zl + zr) / 2 + rng.uniform(-0.15, 0.15) * (zr - zl)
    t_mid = t_enter + abs(x_mid - x_entry) / vA
    dwell = min(rng.uniform(1.0, 2.5), 0.12 * T)
    x_far = W + 3 * hA if dirA > 0 else -3 * hA
    t_far = t_mid + dwell + abs(x_far - x_mid) / vA
    a_hat = rng.random() < 0.5
    actors.append(_Actor(a_id, ObjectClass.PERSON, "zone_walker",
                         _path([(0, x_start, yA), (t_mid, x_mid, yA), (t_mid + dwell, x_mid, yA),
                                (t_far, x_far, yA)], times),
                         [seed, 100, a_id], a_scale, {ObjectClass.HARD_HAT: bool(a_hat), ObjectClass.VEST: False}))

    # -- the passer-by (C): no hard hat, walks into view from an edge, near the camera -------------
    c_id = next(next_id)
    c_scale = rng.uniform(0.92, 1.08)
    yC = y_at(rng.uniform(0.72, 0.86))
    hC = person_h(yC) * c_scale
    vC = rng.uniform(55, 85) * s
    dirC = -dirA if rng.random() < 0.8 else dirA  # usually from the other side than A: two stories, not one
    x_edge = 0.0 if dirC > 0 else W - 1e-3
    t_in = rng.uniform(0.05, 0.2) * T
    x0 = x_edge - dirC * vC * t_in
    x_across = (W + 0.4 * hC) if dirC > 0 else -0.4 * hC
    if t_in + abs(x_across - x_edge) / vC <= 0.9 * T:  # time to cross the whole frame
        keys = [(0, x0, yC), (t_in + abs(x_across - x_edge) / vC, x_across, yC)]
    else:  # turn back halfway and leave where they came in
        x_turn = x_edge + dirC * rng.uniform(0.3, 0.55) * W
        t_turn = t_in + abs(x_turn - x_edge) / vC
        pause = rng.uniform(0.5, 1.5)
        x_out = x_edge - dirC * 0.4 * hC
        keys = [(0, x0, yC), (t_turn, x_turn, yC), (t_turn + pause, x_turn, yC),
                (t_turn + pause + abs(x_out - x_turn) / vC, x_out, yC)]
    actors.append(_Actor(c_id, ObjectClass.PERSON, "passer_by", _path(keys, times), [seed, 100, c_id], c_scale,
                         {ObjectClass.HARD_HAT: False, ObjectClass.VEST: bool(rng.random() < 0.6)},
                         moving_pose="carrying" if rng.random() < 0.3 else "walking"))

    # -- extra workers: one wandering between spots, one working in place --------------------------
    extras = ["wanderer", "standing"][: n_workers - 3]
    if len(extras) == 1 and rng.random() < 0.5:
        extras = ["standing"]
    for role in extras:
        wid = next(next_id)
        scale = rng.uniform(0.92, 1.08)
        hat, vest = bool(rng.random() < 0.6), bool(rng.random() < 0.55)
        if role == "wanderer":
            v = rng.uniform(40, 70) * s
            t, keys = 0.0, []
            x, y = None, None
            while t <= T:
                for _ in range(50):  # a spot off B's stretch, so the wanderer never parks in front of B
                    nx, ny = rng.uniform(0.08, 0.92) * W, y_at(rng.uniform(0.25, 0.7))
                    if not b_range[0] - 10 <= nx <= b_range[1] + 10:
                        break
                if x is not None:
                    t += math.hypot(nx - x, ny - y) / v
                keys.append((t, nx, ny))
                t += rng.uniform(0.5, 2.0)
                keys.append((t, nx, ny))
                x, y = nx, ny
            actors.append(_Actor(wid, ObjectClass.PERSON, "wanderer", _path(keys, times), [seed, 100, wid], scale,
                                 {ObjectClass.HARD_HAT: hat, ObjectClass.VEST: vest},
                                 moving_pose="carrying" if rng.random() < 0.4 else "walking"))
        else:
            for _ in range(50):  # beside the lane, off B's stretch
                y = y_at(rng.uniform(0.2, 0.6))
                x = rng.uniform(0.06, 0.94) * W
                zl, zr = lane(y)
                h = person_h(y) * scale
                beside_lane = x + 0.3 * h < zl or x - 0.3 * h > zr
                if beside_lane and not b_range[0] - 0.3 * h <= x <= b_range[1] + 0.3 * h:
                    break
            pose = _pick(rng, ["arms_up", "standing", "carrying"])
            actors.append(_Actor(wid, ObjectClass.PERSON, "standing", _path([(0, x, y)], times), [seed, 100, wid],
                                 scale,
                                 {ObjectClass.HARD_HAT: hat, ObjectClass.VEST: vest}, still_pose=pose,
                                 still_facing=_pick(rng, ["front", "back", "left", "right"])))

    # -- the forklift: crosses the frame once, at a time that keeps B's occlusion clean ------------
    f_id = next(next_id)
    f_scale = rng.uniform(1.0, 1.15)
    sizeF = person_h(yF) * f_scale
    vF = rng.uniform(110, 150) * s
    dirF = 1 if rng.random() < 0.5 else -1
    tF = rng.uniform(0.35, 0.6) * T  # when the forklift is mid-frame
    ahead, behind = 1.0 * sizeF, 0.56 * sizeF  # its extent ahead of and behind the foot point

    def covering(t_mid):  # when the forklift is in front of B's stretch
        lo_x = b_range[0] - (ahead if dirF > 0 else behind)
        hi_x = b_range[1] + (behind if dirF > 0 else ahead)
        ta, tb = (t_mid + dirF * (lo_x - W / 2) / vF, t_mid + dirF * (hi_x - W / 2) / vF)
        return min(ta, tb), max(ta, tb)

    # Passing in front of B only lengthens B's occlusion, as long as the forklift is gone in time
    # for B to reappear before the clip ends (or arrives after B has reappeared).
    ca, cb = covering(tF)
    if cb > T - 1.0 and ca < t_end + 0.7:
        options = [tF - (cb - (T - 1.0)), tF + (t_end + 0.7 - ca)]
        tF = min(options, key=lambda t: abs(t - T / 2))
    carrying = bool(rng.random() < 0.5)
    actors.append(_Actor(f_id, ObjectClass.FORKLIFT, ObjectClass.FORKLIFT,
                         _path([(0, W / 2 - dirF * vF * tF, yF), (T, W / 2 + dirF * vF * (T - tF), yF)], times),
                         [seed, 200, f_id], f_scale,
                         {"carrying_pallet": carrying, "facing": side(dirF),
                          "forks_lift": round(float(rng.uniform(0.0, 0.25)), 3)}))
    if carrying:
        load_id = next(next_id)
        actors.append(_Actor(load_id, ObjectClass.PALLET, "load", actors[-1].xy, [], 0.0,
                             {"on_forklift": True, "forklift_id": f_id}, drawn=False))

    # -- pallets: the stack hiding B, and one or two more beside the lane -------------------------
    p_id = next(next_id)
    actors.append(_Actor(p_id, ObjectClass.PALLET, "stack", _path([(0, xP, yP)], times), look_P, wP,
                         {"on_forklift": False, "loaded": True}))
    placed = [(xP - wP / 2, xP + wP / 2, yP)]
    for _ in range(int(rng.integers(1, 3))):
        for _ in range(40):
            y = y_at(rng.uniform(0.2, 0.85))
            w = person_h(y) * rng.uniform(0.55, 0.9)
            x = rng.uniform(0.02, 0.98) * W
            zl, zr = lane(y)
            free = (x + w / 2 < zl - 4 or x - w / 2 > zr + 4)
            free &= x + w / 2 < b_range[0] - 4 or x - w / 2 > b_range[1] + 4
            free &= all(x + w / 2 < a - 6 or x - w / 2 > b + 6 for a, b, _ in placed)  # not hiding each other
            if free:
                pid = next(next_id)
                actors.append(_Actor(pid, ObjectClass.PALLET, ObjectClass.PALLET, _path([(0, x, y)], times),
                                     [seed, 300, pid], w,
                                     {"on_forklift": False, "loaded": bool(rng.random() < 0.75)}))
                placed.append((x - w / 2, x + w / 2, y))
                break
    return actors


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------

def _signs(p: Painter, rng, horizon: int) -> None:
    spots = []
    for k in range(int(rng.integers(1, 4))):
        text = "FORKLIFT ZONE" if k == 0 and rng.random() < 0.6 else _pick(rng, SIGN_TEXTS)
        x, y = rng.uniform(5, p.w * 0.75), rng.uniform(5, max(6, horizon - 50))
        scale = rng.uniform(0.45, 0.8)
        if any(abs(x - sx) < 170 and abs(y - sy) < 60 for sx, sy in spots):
            continue
        if _draw_sign(p, rng, 0, x, y, scale, text) is not None:
            spots.append((x, y))


def _look_field(rng, h: int, w: int) -> tuple[np.ndarray, float, float, dict]:
    """A milder ``_post_process``, fixed for the clip: gain, colour cast, light ramp, vignette."""
    gain = rng.uniform(0.85, 1.1)
    tint = rng.normal(1.0, 0.03, size=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle)
    light = 1.0 + rng.uniform(0, 0.3) * ramp
    vignette = 1.0 - rng.uniform(0, 0.25) * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * 2)
    gainmap = ((gain * light * vignette)[..., None] * tint[None, None, :]).astype(np.float32)
    blur = float(rng.choice([0.0, 0.0, 0.6]))
    sigma = float(rng.uniform(1.5, 3.0))
    params = {"gain": round(float(gain), 3), "blur": blur, "noise_sigma": round(sigma, 2)}
    return gainmap, blur, sigma, params


def _motion(actor: _Actor, fps: int, person_h) -> tuple[list[str | None], list[bool], np.ndarray]:
    """Per frame: facing, moving or not, and the walking phase (radians, by distance walked)."""
    xy = actor.xy
    n = len(xy)
    vel = np.zeros_like(xy)
    if n > 1:
        vel[:-1] = xy[1:] - xy[:-1]
        vel[-1] = vel[-2]
    speed = np.hypot(vel[:, 0], vel[:, 1]) * fps
    moving = speed > 3.0
    facing: list[str | None] = [None] * n
    for f in range(n):
        if moving[f]:
            vx, vy = vel[f]
            if abs(vx) >= 0.5 * abs(vy):
                facing[f] = "right" if vx > 0 else "left"
            else:
                facing[f] = "front" if vy > 0 else "back"
    # standing still: face the way they are about to walk (or last walked)
    nxt = None
    for f in range(n - 1, -1, -1):
        if moving[f]:
            nxt = facing[f]
        elif nxt is not None:
            facing[f] = nxt
    last = None
    for f in range(n):
        if moving[f]:
            last = facing[f]
        elif facing[f] is None:
            facing[f] = last if last is not None else actor.still_facing
    step = np.hypot(vel[:, 0], vel[:, 1])
    heights = np.array([person_h(y) for y in xy[:, 1]]) * actor.size
    phase = np.concatenate([[0.0], np.cumsum(2 * np.pi * step[:-1] / (0.8 * heights[:-1]))])
    return facing, [bool(m) for m in moving], phase


def _composite(canvas: np.ndarray, owner: np.ndarray, sprite: Painter, x0: int, y0: int):
    """Paste a sprite's painted pixels (and owners) at (x0, y0); returns the in-frame region."""
    H, W = owner.shape
    h, w = sprite.owner.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    sub = sprite.owner[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    m = sub != 0
    canvas[cy0:cy1, cx0:cx1][m] = sprite.canvas[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0][m]
    owner[cy0:cy1, cx0:cx1][m] = sub[m]
    return (cy0, cy1, cx0, cx1), sub


def render_clip(seed: int, seconds: float = 12.0, fps: int = 15, width: int = 640, height: int = 360) -> Clip:
    """Render a clip and its ground truth. Same arguments, same frames, tracks and events."""
    n_frames, times = _timeline(seconds, fps, width, height)
    bg, horizon, zone = _stage(seed, width, height)
    actors = _script(seed, width, height, seconds, times, horizon, zone)
    return _film(seed, actors, bg, horizon, zone, fps, width, height, range(n_frames))


def _timeline(seconds: float, fps: int, width: int, height: int) -> tuple[int, np.ndarray]:
    n_frames = round(seconds * fps)
    if n_frames < 2:
        raise ValueError("a clip needs at least two frames")
    if height < 144 or width < height:
        raise ValueError("clips need a height of at least 144 pixels and a width of at least the height")
    return n_frames, np.arange(n_frames) / fps


def _stage(seed: int, W: int, H: int) -> tuple[Painter, int, list[tuple[float, float]]]:
    """The static background, drawn once: wall, floor, racks, the forklift lane, signs."""
    rng = np.random.default_rng(seed)
    bg = Painter(H, W, rng)
    # _racks needs room for shelves of at least 14 px between the ceiling and the horizon
    horizon = max(int(rng.uniform(0.32, 0.42) * H), math.ceil(0.12 * H) + 48)
    _background(bg, rng, horizon)
    _racks(bg, rng, horizon)
    zone = _zone(bg, rng, horizon)
    _signs(bg, rng, horizon)
    return bg, horizon, zone


def _draw_worker(a: _Actor, f: int, fx: float, fy: float, h: float, motion, seed: int):
    """A worker's sprite in frame ``f`` and its top-left corner. A worker whose vest comes and goes is
    always drawn with the vest (so the appearance draws after it, hat and hair, stay the same) and,
    in frames without it, the vest's pixels are taken from a second drawing without the vest: there
    they show the shirt, whose colour and grain are drawn before the vest."""
    x0, y0 = math.floor(fx - 0.6 * h), math.floor(fy - 1.15 * h)
    facing, moving, phase = motion
    size = (math.ceil(fy + 0.1 * h) + 2 - y0, math.ceil(fx + 0.6 * h) - x0)

    def draw(vest: bool) -> Painter:
        sp = Painter(*size, np.random.default_rng([seed, 3, a.id]))  # the same grain every frame
        parts = iter([a.id, 1000 + 10 * a.id + 1, 1000 + 10 * a.id + 2])
        _worker(sp, np.random.default_rng(a.look), parts.__next__, fx - x0, fy - y0, h, facing=facing[f],
                pose=a.moving_pose if moving[f] else a.still_pose,
                phase=float(phase[f]) if moving[f] else None,
                hard_hat=a.attrs[ObjectClass.HARD_HAT], vest=vest)
        return sp

    if not a.vest_changes:
        return draw(bool(a.attrs[ObjectClass.VEST])), x0, y0
    sp = draw(True)
    if not a.vest_at(f):
        bare = draw(False)
        vest_px = sp.owner == 1000 + 10 * a.id + 1  # the vest is the second part drawn
        sp.canvas[vest_px] = bare.canvas[vest_px]
        sp.owner[vest_px] = bare.owner[vest_px]
    return sp, x0, y0


def _film(seed: int, actors: list[_Actor], bg: Painter, horizon: int, zone, fps: int, W: int, H: int,
          frame_range: range, extra_events: bool = False) -> Clip:
    """Draw the frames in ``frame_range`` and read the ground truth off them. Events need every
    frame: they are computed only when ``frame_range`` starts at 0 and covers every actor's path."""
    n_frames = len(actors[0].xy)
    span = H - horizon

    def person_h(y):
        return 40 + (y - horizon) / span * 0.62 * H

    by_id = {a.id: a for a in actors}
    motion = {a.id: _motion(a, fps, person_h) for a in actors if a.label == ObjectClass.PERSON}
    gainmap, blur, sigma, look = _look_field(np.random.default_rng([seed, 2]), H, W)

    # owner ids: a track's own id, and 1000 + 10 * id + k for its parts (hard hat, vest)
    n_ids = max(by_id) + 1
    lut = np.zeros(1000 + 10 * n_ids + 10, np.int32)
    lut[:n_ids] = np.arange(n_ids)
    for a in actors:
        lut[1000 + 10 * a.id: 1000 + 10 * a.id + 10] = a.id

    frames, tracks, feet = [], [], []
    stats = []  # per frame: {id: (visible, whole, in_frame, occluder)}
    for f in frame_range:
        canvas = bg.canvas.copy()
        owner = np.zeros((H, W), np.int32)
        whole: dict[int, int] = {}
        regions: dict[int, tuple] = {}
        order = sorted((a for a in actors if a.drawn), key=lambda a: (float(a.xy[f, 1]), a.id))
        for a in order:
            fx, fy = (float(v) for v in a.xy[f])
            grain = np.random.default_rng([seed, 3, a.id])  # the same grain every frame: a steady texture
            look_rng = np.random.default_rng(a.look) if a.look else None
            if a.label == ObjectClass.PERSON:
                sp, x0, y0 = _draw_worker(a, f, fx, fy, person_h(fy) * a.size, motion[a.id], seed)
            elif a.label == ObjectClass.FORKLIFT:
                size = person_h(fy) * a.size
                x0, y0 = math.floor(fx - 1.15 * size), math.floor(fy - 1.4 * size)
                sp = Painter(math.ceil(fy) + 4 - y0, math.ceil(fx + 1.15 * size) - x0, grain)
                load = [b.id for b in actors if b.attrs.get("forklift_id") == a.id]
                parts = iter([a.id] + load)
                _forklift(sp, look_rng, parts.__next__, fx - x0, fy - y0, size, facing=a.attrs["facing"],
                          forks_lift=a.attrs["forks_lift"], carrying=a.attrs["carrying_pallet"])
            else:
                w = a.size
                x0, y0 = math.floor(fx - w / 2) - 2, math.floor(fy - 1.5 * w)
                sp = Painter(math.ceil(fy) + 3 - y0, math.ceil(fx + w / 2) + 3 - x0, grain)
                _pallet(sp, look_rng, a.id, fx - w / 2 - x0, fy - y0, w, loaded=a.attrs["loaded"])
            sprite_tracks = lut[sp.owner]
            for tid in np.unique(sprite_tracks):
                if tid:
                    whole[int(tid)] = int((sprite_tracks == tid).sum())
            placed = _composite(canvas, owner, sp, x0, y0)
            if placed is not None:
                for tid in whole:
                    if by_id[tid] is a or by_id[tid].attrs.get("forklift_id") == a.id:
                        regions[tid] = (placed[0], lut[placed[1]] == tid)

        tr = lut[owner]
        counts = np.bincount(tr.ravel(), minlength=n_ids)
        rows, frame_stats = [], {}
        for tid in sorted(whole):
            visible = int(counts[tid])
            in_frame = int(regions[tid][1].sum()) if tid in regions else 0
            occluder = None
            if in_frame and visible < OCCLUDED_BELOW * in_frame:
                (ya, yb, xa, xb), sil = regions[tid]
                cover = tr[ya:yb, xa:xb][sil]
                cover = cover[cover != tid]
                if cover.size:
                    occluder = int(np.bincount(cover).argmax())
            frame_stats[tid] = (visible, whole[tid], in_frame, occluder)
            if visible >= MIN_VISIBLE_PIXELS:
                ys, xs = np.nonzero(tr == tid)
                box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
                rows.append((tid, by_id[tid].label, box, round(visible / whole[tid], 3)))
        tracks.append(rows)
        stats.append(frame_stats)
        feet.append({a.id: (round(float(a.xy[f, 0]), 2), round(float(a.xy[f, 1]), 2)) for a in actors})

        out = canvas * gainmap
        if blur:
            out = cv2.GaussianBlur(out, (0, 0), blur)
        noise = np.random.default_rng([seed, 4, f]).standard_normal(out.shape, dtype=np.float32)
        out += noise * np.float32(sigma)
        frames.append(np.clip(out, 0, 255).astype(np.uint8))

    actor_list = []
    for a in actors:
        entry = {"id": a.id, "label": a.label, "role": a.role}
        entry.update({k: v for k, v in a.attrs.items() if k not in ("forks_lift", "loaded")})
        actor_list.append(entry)
    zones = {Zone.FORKLIFT_ZONE: zone}
    events = []
    if frame_range == range(n_frames):
        events = _events(actors, feet, stats, zones[Zone.FORKLIFT_ZONE], fps, W)
        if extra_events:
            events = _sort_events(events + _ppe_events(actors, fps) + _near_misses(actors, feet, fps, W, person_h))
    params = {"horizon": horizon, "look": look}
    return Clip(seed, fps, W, H, frames, tracks, feet, zones, events, actor_list, params)


# ---------------------------------------------------------------------------------------------
# Events: read off the ground truth
# ---------------------------------------------------------------------------------------------

def _ppe_phrase(vest: bool, hard_hat: bool) -> str:
    worn = ((ObjectClass.VEST, vest), (ObjectClass.HARD_HAT, hard_hat))
    missing = [phrase(name) for name, on in worn if not on]
    return "without a " + " or ".join(missing) if missing else "wearing a vest and a hard hat"


def _events(actors: list[_Actor], feet, stats, zone, fps: int, W: int) -> list[dict]:
    poly = np.asarray(zone, np.float32)
    nouns = {label: phrase(label) for label in ObjectClass} | {ObjectClass.PERSON: "worker"}
    events = []

    def add(f, a, kind, text, **extra):
        t = round(f / fps, 1)
        text = text if "{at}" in text else text + " {at}"
        ev = {"time_s": t, "frame": f, "track_id": a.id, "label": a.label, "type": kind,
              "text": f"{nouns[a.label]} {a.id} " + text.format(at=f"at {t:.1f} s"), **extra}
        if a.label == ObjectClass.PERSON:
            ev.update(vest=a.vest_at(f), hard_hat=a.attrs[ObjectClass.HARD_HAT])
        if a.label == ObjectClass.FORKLIFT:
            ev.update(carrying_pallet=a.attrs["carrying_pallet"])
        events.append(ev)

    for a in actors:
        if not a.drawn or a.label == ObjectClass.PALLET:
            continue
        worker = a.label == ObjectClass.PERSON
        verb = "walks" if worker else "drives"
        in_zone = in_frame = None
        hidden_since, hidden_by, spells = None, None, []  # spells: (first hidden frame, back frame, by)
        for f in range(len(feet)):
            x, y = feet[f][a.id]
            inside_frame = 0 <= x < W
            if in_frame is not None and inside_frame != in_frame:
                edge = "left" if x < W / 2 else "right"
                if inside_frame:
                    add(f, a, EventKind.ENTER_FRAME, f"{verb} into view from the {edge}", edge=edge)
                else:
                    add(f, a, EventKind.EXIT_FRAME, f"{verb} out of view on the {edge}", edge=edge)
            in_frame = inside_frame
            if not worker:
                continue
            inside = cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0
            if in_zone is not None and inside != in_zone:
                if inside:
                    ppe = _ppe_phrase(a.vest_at(f), a.attrs[ObjectClass.HARD_HAT])
                    add(f, a, EventKind.ENTER_ZONE, f"enters the forklift zone {ppe}", zone=Zone.FORKLIFT_ZONE)
                else:
                    add(f, a, EventKind.EXIT_ZONE, "leaves the forklift zone", zone=Zone.FORKLIFT_ZONE)
            in_zone = inside
            visible, whole, in_view, occluder = stats[f].get(a.id, (0, 1, 0, None))
            if in_view < 0.5 * whole:  # mostly outside the frame: that is not an occlusion
                continue
            share = visible / in_view
            if hidden_since is None and share < OCCLUDED_BELOW:
                hidden_since, hidden_by = f, occluder
            elif hidden_since is not None and share >= REAPPEARS_FROM:
                spells.append((hidden_since, f, hidden_by))
                hidden_since = None
        if hidden_since is not None:
            spells.append((hidden_since, None, hidden_by))
        for start, end, occluder in spells:
            if ((end if end is not None else len(feet)) - start) / fps < MIN_OCCLUSION_S:
                continue
            if occluder is not None:
                what = f"{nouns[next(b for b in actors if b.id == occluder).label]} {occluder}"
                add(start, a, EventKind.OCCLUDED, f"is hidden behind {what}", occluder=occluder)
            else:
                add(start, a, EventKind.OCCLUDED, "is hidden from view", occluder=None)
            if end is not None:
                gone = round((end - start) / fps, 1)
                add(end, a, EventKind.REAPPEARED, f"reappears {{at}} (hidden for {gone:.1f} s)", hidden_for_s=gone)
    return _sort_events(events)


_EVENT_ORDER = {EventKind.EXIT_FRAME: 0, EventKind.EXIT_ZONE: 1, EventKind.OCCLUDED: 2, EventKind.REAPPEARED: 3,
                EventKind.ENTER_FRAME: 4, EventKind.ENTER_ZONE: 5, EventKind.TAKE_OFF_PPE: 6,
                EventKind.PUT_ON_PPE: 7, EventKind.NEAR_MISS: 8}


def _sort_events(events: list[dict]) -> list[dict]:
    return sorted(events, key=lambda e: (e["frame"], e["track_id"], _EVENT_ORDER[e["type"]]))


def _event(f: int, fps: int, a: _Actor, kind: str, text: str, **extra) -> dict:
    t = round(f / fps, 1)
    noun = "worker" if a.label == ObjectClass.PERSON else phrase(a.label)
    ev = {"time_s": t, "frame": f, "track_id": a.id, "label": a.label, "type": kind,
          "text": f"{noun} {a.id} {text} at {t:.1f} s", **extra}
    if a.label == ObjectClass.PERSON:
        ev.update(vest=a.vest_at(f), hard_hat=a.attrs[ObjectClass.HARD_HAT])
    return ev


def _ppe_events(actors: list[_Actor], fps: int) -> list[dict]:
    """``put_on_ppe`` / ``take_off_ppe``: the frame from which a worker wears (or no longer wears) a vest."""
    out = []
    for a in actors:
        for f, worn in a.vest_changes:
            kind, verb = (EventKind.PUT_ON_PPE, "puts on") if worn else (EventKind.TAKE_OFF_PPE, "takes off")
            out.append(_event(f, fps, a, kind, f"{verb} a {phrase(ObjectClass.VEST)}", item=ObjectClass.VEST))
    return out


PERSON_M = 1.75  # a worker's height in metres: sets the floor plane's scale
NEAR_MISS_M = 1.5  # a worker this close to a moving forklift's footprint (floor distance): a near miss ...
NEAR_MISS_CLEAR_M = 2.5  # ... which ends when they are this far apart again
FORKLIFT_MOVING_MPS = 0.5  # the forklift counts as moving above this floor speed


def floor_point(x: float, y: float, W: int, person_h) -> tuple[float, float]:
    """A foot point (pixels) on the floor plane in metres: (across, depth). A worker ``person_h(y)``
    pixels tall is 1.75 m; a pinhole camera with a focal length of ``W`` pixels puts them at depth
    1.75 * W / person_h(y) (about 4 m at the bottom of a 640x360 frame, 28 m at the horizon)."""
    h = person_h(y)
    return (x - W / 2) * PERSON_M / h, PERSON_M * W / h


def _near_misses(actors: list[_Actor], feet, fps: int, W: int, person_h) -> list[dict]:
    """``near_miss``: a worker (foot point in the frame) within :data:`NEAR_MISS_M` of a moving
    forklift's footprint on the floor (the stretch it covers along its way, from 0.56 of its size
    behind the foot point to 1.0 ahead, as drawn); one event per spell, at its first frame, with
    the closest distance in the spell and ``until_frame``, the frame at which they are clear again."""
    out = []
    forklifts = [a for a in actors if a.label == ObjectClass.FORKLIFT]
    workers = [a for a in actors if a.label == ObjectClass.PERSON]
    n = len(feet)
    for fk in forklifts:
        xy = fk.xy
        ground = np.array([floor_point(x, y, W, person_h) for x, y in xy])
        speed = np.zeros(n)
        speed[1:] = np.hypot(*(ground[1:] - ground[:-1]).T) * fps
        speed[0] = speed[1] if n > 1 else 0.0
        dir_ = 1 if fk.attrs["facing"] == "right" else -1
        for w in workers:
            spell_start, closest = None, None
            for f in range(n):
                x, y = feet[f][w.id]
                fx, fy = xy[f]
                size = person_h(fy) * fk.size
                lo, hi = sorted((fx - dir_ * 0.56 * size, fx + dir_ * 1.0 * size))
                (wx, wz), (ax, fz), (bx, _) = (floor_point(x, y, W, person_h), floor_point(lo, fy, W, person_h),
                                                floor_point(hi, fy, W, person_h))
                d = math.hypot(max(0.0, ax - wx, wx - bx), wz - fz)
                near = d < NEAR_MISS_M and speed[f] > FORKLIFT_MOVING_MPS and 0 <= x < W
                if spell_start is None and near:
                    spell_start, closest = f, d
                elif spell_start is not None:
                    closest = min(closest, d)
                    if d > NEAR_MISS_CLEAR_M or f == n - 1:
                        out.append(_event(spell_start, fps, w, EventKind.NEAR_MISS,
                                          f"comes within {closest:.1f} m of moving forklift {fk.id}",
                                          forklift_id=fk.id, min_distance_m=round(closest, 2),
                                          until_frame=f))
                        spell_start = None
    return out


# ---------------------------------------------------------------------------------------------
# The long clips (chapter 5): scripted stories of 36-50 s
# ---------------------------------------------------------------------------------------------

# Each story is a script in floor terms: a key is (time s, x, depth). Depth runs from 0 (the
# horizon) to 1 (the bottom row). x is a fraction of the frame width (below 0 or above 1: out of
# view), "L<u>" a place across the forklift lane at that depth (0 its left edge, 1 its right edge),
# or "S<k>" a place beside the story's pallet stack, k times the distance at which a worker behind
# it is fully visible (S-1 and S1: just clear of it on either side). "wears_vest" is the state at
# 0 s; vest changes are (time s, worn).
STORIES: dict[str, dict] = {
    "vest_on_in_lane": {"seed": 6111, "seconds": 40, "workers": [
        {"keys": [(0, -0.08, .55), (5, "L-0.6", .55), (9, "L-0.6", .55), (12, "L0.5", .55), (18, "L0.5", .55),
                  (22, "L1.6", .55), (30, 1.1, .55)], "hat": True, "wears_vest": False, "changes": [(7.0, True)]},
        {"keys": [(0, "L1.5", .35), (14, "L1.5", .35), (17, "L0.4", .35), (24, "L0.4", .35), (27, "L1.5", .35)],
         "hat": False, "wears_vest": True, "changes": [(10.0, False), (30.0, True)], "still": "arms_up"},
        {"keys": [(0, "S-1", .12), (8, "S-1", .12), (14, "S1", .12)], "hat": True, "wears_vest": True},
    ], "forklifts": [{"keys": [(0, -0.35, .42), (14, -0.35, .42), (21, 1.35, .42)], "carrying": True}],
        "stack": {"x": 0.14, "d": .25, "hides": .12}, "pallets": [{"x": 0.9, "d": .7, "w": 0.7}]},
    "forklift_near_miss": {"seed": 6118, "seconds": 36, "workers": [
        {"keys": [(0, 0.62, .25), (4, 0.62, .25), (9, 0.62, .58), (12, 0.62, .58), (17, 0.95, .7), (19, 1.1, .7)],
         "hat": True, "wears_vest": True},
        {"keys": [(0, 1.08, .35), (20, -0.08, .35), (26, -0.08, .35), (36, 0.4, .35)], "hat": True, "wears_vest": False},
        {"keys": [(0, -0.08, .38), (18, 1.08, .38)], "hat": False, "wears_vest": True, "pose": "carrying"},
    ], "forklifts": [{"keys": [(0, -0.35, .5), (6, -0.35, .5), (13, 1.35, .5)], "carrying": False},
                     {"keys": [(0, 1.35, .3), (24, 1.35, .3), (31, -0.35, .3)], "carrying": True}],
        "pallets": [{"x": 0.1, "d": .75, "w": 0.6}, {"x": 0.88, "d": .2, "w": 0.8}]},
    "forklift_hides": {"seed": 6120, "seconds": 40, "workers": [
        {"keys": [(0, 0.43, .1)], "hat": True, "wears_vest": True, "still": "arms_up", "facing": "front"},
        {"keys": [(0, "S-1", .15), (12, "S-1", .15), (18, "S1", .15)], "hat": True, "wears_vest": False},
        {"keys": [(0, 1.08, .7), (8, "L0.5", .7), (14, "L0.5", .7), (20, -0.08, .7), (28, -0.08, .7),
                  (34, 0.2, .75)], "hat": False, "wears_vest": True},
    ], "forklifts": [{"keys": [(0, -0.4, .55), (6, 0.24, .55), (12, 0.24, .55), (18, 1.4, .55)], "carrying": True,
                      "lift": 0.55}],  # parks with its load raised in front of worker 1
        "stack": {"x": 0.86, "d": .3, "hides": .15}, "pallets": [{"x": 0.08, "d": .5, "w": 0.6}]},
    "busy_aisle": {"seed": 6143, "seconds": 45, "workers": [
        {"keys": [(0, -0.08, .45), (14, 1.08, .45), (20, 1.08, .45), (34, -0.08, .45)], "hat": True, "wears_vest": True},
        {"keys": [(2, 1.08, .5), (16, -0.08, .5), (24, -0.08, .5), (30, "L0.5", .5), (36, "L0.5", .5),
                  (42, 1.08, .5)], "hat": True, "wears_vest": False},
        {"keys": [(0, 0.1, .62)], "hat": False, "wears_vest": True, "still": "arms_up", "changes": [(20.0, False)]},
        {"keys": [(0, "L0.3", .2), (10, "L0.3", .2), (18, "L0.6", .6), (25, "L1.8", .6)], "hat": True,
         "wears_vest": True},
        {"keys": [(0, 0.85, .78), (8, 0.85, .78), (20, -0.1, .8)], "hat": True, "wears_vest": True, "pose": "carrying"},
    ], "forklifts": [{"keys": [(0, 1.35, .35), (26, 1.35, .35), (33, -0.35, .35)], "carrying": False}],
        "pallets": [{"x": 0.07, "d": .3, "w": 0.7}, {"x": 0.93, "d": .55, "w": 0.6}]},
    "leave_and_return": {"seed": 6156, "seconds": 40, "workers": [
        {"keys": [(0, 0.3, .4), (4, -0.1, .4), (8, -0.1, .4), (12, 0.3, .4), (16, 0.3, .4), (20, 1.1, .4),
                  (26, 1.1, .4), (32, 0.6, .4)], "hat": False, "wears_vest": True},
        {"keys": [(0, 1.08, .65), (6, "L0.5", .65), (14, "L0.5", .65), (20, 1.08, .65), (28, 1.08, .65),
                  (34, 0.8, .65)], "hat": True, "wears_vest": True},
        {"keys": [(0, "S-1", .12), (10, "S-1", .12), (16, "S1", .12)], "hat": True, "wears_vest": False},
    ], "forklifts": [{"keys": [(0, -0.35, .45), (10, -0.35, .45), (17, 1.35, .45)], "carrying": True},
                     {"keys": [(0, 1.35, .6), (24, 1.35, .6), (31, -0.35, .6)], "carrying": False}],
        "stack": {"x": 0.15, "d": .24, "hides": .12}, "pallets": [{"x": 0.9, "d": .35, "w": 0.7}]},
    "vest_off_near_miss": {"seed": 6188, "seconds": 50, "workers": [
        {"keys": [(0, 0.15, .5), (12, 0.15, .5), (16, "L0.4", .5), (24, "L0.4", .5), (28, 0.15, .5)],
         "hat": True, "wears_vest": True, "changes": [(8.0, False), (31.0, True)]},
        {"keys": [(0, 0.7, .2)], "hat": True, "wears_vest": True, "still": "standing", "facing": "left"},
        {"keys": [(0, -0.08, .3), (30, -0.08, .3), (44, 1.08, .3)], "hat": True, "wears_vest": True},
        {"keys": [(0, 1.08, .34), (31, 1.08, .34), (45, -0.08, .34)], "hat": False, "wears_vest": True,
         "pose": "carrying"},
        {"keys": [(0, "S-1", .1), (34, "S-1", .1), (40, "S1", .1)], "hat": True, "wears_vest": True},
    ], "forklifts": [{"keys": [(0, 1.35, .44), (18, 1.35, .44), (25, -0.35, .44)], "carrying": True}],
        "stack": {"x": 0.86, "d": .22, "hides": .1}, "pallets": [{"x": 0.06, "d": .8, "w": 0.6}]},
}


def _story_script(name: str, W: int, H: int, times: np.ndarray, horizon: int,
                  zone: list[tuple[float, float]], fps: int) -> list[_Actor]:
    spec = STORIES[name]
    seed = spec["seed"]
    span = H - horizon
    (lx0, ly0), (rx0, _), (rx1, ly1), (lx1, _) = zone

    def y_at(d):
        return horizon + d * span

    def person_h(y):
        return 40 + (y - horizon) / span * 0.62 * H

    def lane(y):
        u = (y - ly0) / (ly1 - ly0)
        return lx0 + u * (lx1 - lx0), rx0 + u * (rx1 - rx0)

    stack = spec.get("stack")
    if stack:  # a tall loaded pallet that hides a worker walking behind it at depth stack["hides"]
        look_P = next(look for look in ([seed, 50, j] for j in range(500)) if _pallet_height_ratio(look) >= 1.0)
        ratio = _pallet_height_ratio(look_P)
        yP, yB = y_at(stack["d"]), y_at(stack["hides"])
        hB = person_h(yB)
        wP = max(person_h(yP) * 0.85, (hB * 1.04 + (yP - yB) + 3) / ratio)
        xP = stack["x"] * W
        reach = wP / 2 + 0.25 * hB + 0.35 * hB + 4  # from the stack's centre to fully visible

    def x_of(x, d):
        if isinstance(x, str) and x[0] == "L":
            left, right = lane(y_at(d))
            return left + float(x[1:]) * (right - left)
        if isinstance(x, str) and x[0] == "S":
            return xP + float(x[1:]) * reach
        return x * W

    def path(keys):
        return _path([(t, x_of(x, d), y_at(d)) for t, x, d in keys], times)

    actors: list[_Actor] = []
    ids = iter(range(1, 100))
    for w in spec["workers"]:
        wid = next(ids)
        actors.append(_Actor(wid, ObjectClass.PERSON, "worker", path(w["keys"]), [seed, 100, wid], w.get("scale", 1.0),
                             {ObjectClass.HARD_HAT: w["hat"], ObjectClass.VEST: w["wears_vest"]},
                             moving_pose=w.get("pose", "walking"), still_pose=w.get("still", "standing"),
                             still_facing=w.get("facing"),
                             vest_changes=[(round(t * fps), worn) for t, worn in w.get("changes", [])]))
    for fk in spec["forklifts"]:
        fid = next(ids)
        xy = path(fk["keys"])
        facing = "right" if xy[-1, 0] > xy[0, 0] else "left"
        actors.append(_Actor(fid, ObjectClass.FORKLIFT, ObjectClass.FORKLIFT, xy, [seed, 200, fid], fk.get("scale", 1.05),
                             {"carrying_pallet": fk["carrying"], "facing": facing, "forks_lift": fk.get("lift", 0.1)}))
        if fk["carrying"]:
            actors.append(_Actor(next(ids), ObjectClass.PALLET, "load", xy, [], 0.0,
                                 {"on_forklift": True, "forklift_id": fid}, drawn=False))
    if stack:
        pid = next(ids)
        actors.append(_Actor(pid, ObjectClass.PALLET, "stack", _path([(0, xP, yP)], times), look_P, wP,
                             {"on_forklift": False, "loaded": True}))
    for pal in spec.get("pallets", []):
        pid = next(ids)
        y = y_at(pal["d"])
        actors.append(_Actor(pid, ObjectClass.PALLET, ObjectClass.PALLET, _path([(0, pal["x"] * W, y)], times),
                             [seed, 300, pid], pal["w"] * person_h(y), {"on_forklift": False, "loaded": True}))
    return actors


def render_story(name: str, fps: int = 15, width: int = 640, height: int = 360,
                 frames: range | None = None) -> Clip:
    """Render the long clip ``name`` of :data:`STORIES` (or only the frames in ``frames``: the
    ground truth of those frames, no events). Same arguments, same bytes."""
    spec = STORIES[name]
    n_frames, times = _timeline(spec["seconds"], fps, width, height)
    bg, horizon, zone = _stage(spec["seed"], width, height)
    actors = _story_script(name, width, height, times, horizon, zone, fps)
    clip = _film(spec["seed"], actors, bg, horizon, zone, fps, width, height,
                 frames if frames is not None else range(n_frames), extra_events=True)
    clip.params["story"] = name
    for entry, a in zip(clip.actors, actors):
        if a.vest_changes:
            entry["vest_changes"] = [[f, worn] for f, worn in a.vest_changes]
    return clip


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

VP9_CRF = 32  # constant quality (lower: better and bigger); 32 keeps a 12 s clip under 0.5 MB


def _write_pyav(frames: list[np.ndarray], path: Path, fps: int, width: int, height: int) -> None:
    from fractions import Fraction

    import av  # PyAV: FFmpeg with the options OpenCV does not pass on

    # bitexact: no random TrackUID, no version strings; one thread: no scheduling in the bitstream
    with av.open(str(path), "w", format="webm", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream("libvpx-vp9", rate=fps, options={
            "crf": str(VP9_CRF), "b": "0", "deadline": "good", "cpu-used": "4", "threads": "1",
            "row-mt": "0", "g": str(5 * fps)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _write_opencv(frames: list[np.ndarray], path: Path, fps: int, width: int, height: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV {cv2.__version__} cannot write VP9/WebM here")
    for image in frames:
        writer.write(image)
    writer.release()
    _pin_track_uid(path)


def _pin_track_uid(path: Path) -> None:
    """Replace the WebM muxer's random 64-bit TrackUID (in Tracks and in Tags) with 1, the value
    FFmpeg writes in bitexact mode. OpenCV cannot set that mode, and the id is the only thing that
    differs between two OpenCV writes of the same frames."""
    data = bytearray(path.read_bytes())
    i = data.find(b"\x73\xc5\x88", 0, 4096)  # TrackUID element, 8-byte payload
    if i < 0:
        return
    uid = bytes(data[i + 3:i + 11])
    fixed = (1).to_bytes(8, "big")
    for marker in (b"\x73\xc5\x88", b"\x63\xc5\x88"):  # TrackUID; TagTrackUID
        j = data.find(marker + uid)
        while j >= 0:
            data[j + 3:j + 11] = fixed
            j = data.find(marker + uid, j + 11)
    path.write_bytes(bytes(data))


def video_backend() -> str:
    """"pyav" when PyAV has libvpx-vp9 (the default), else "opencv"."""
    try:
        import av
    except ImportError:
        return "opencv"
    return "pyav" if "libvpx-vp9" in av.codecs_available else "opencv"


def _dump(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, indent=1) + "\n", encoding="utf-8")


def write_clip(clip: Clip, out_dir, name: str, backend: str | None = None) -> dict:
    """Write ``<name>.webm``, ``<name>_gt.txt`` (MOT), ``<name>_zones.json``, ``<name>_events.json``
    and ``<name>_meta.json``, and read the video back with ``cv2.VideoCapture`` to check its frame
    count. ``backend``: "pyav" or "opencv" (default: :func:`video_backend`). Returns the paths and
    the decoded frame count."""
    backend = backend or video_backend()
    if clip.width % 2 or clip.height % 2:
        raise ValueError("VP9 in yuv420p needs an even width and height")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = out / f"{name}.webm"
    write = {"pyav": _write_pyav, "opencv": _write_opencv}[backend]
    write(clip.frames, video, clip.fps, clip.width, clip.height)
    cap = cv2.VideoCapture(str(video))
    decoded = 0
    while cap.grab():
        decoded += 1
    cap.release()
    if decoded != clip.n_frames:
        raise RuntimeError(f"{video} decodes to {decoded} frames, expected {clip.n_frames}")

    paths = {"video": video, "gt": out / f"{name}_gt.txt", "zones": out / f"{name}_zones.json",
             "events": out / f"{name}_events.json", "meta": out / f"{name}_meta.json"}
    paths["gt"].write_text("".join(line + "\n" for line in clip.mot_lines()), encoding="utf-8")
    _dump({k: [list(pt) for pt in poly] for k, poly in clip.zones.items()}, paths["zones"])
    _dump(clip.events, paths["events"])
    video_info = {"codec": "VP9", "container": "webm", "writer": backend}
    if backend == "pyav":
        video_info["crf"] = VP9_CRF
    _dump({"name": name, "seed": clip.seed, "fps": clip.fps, "seconds": clip.seconds, "frames": clip.n_frames,
           "width": clip.width, "height": clip.height, "actors": clip.actors, "classes": list(CLASSES),
           "mot": {"columns": "frame,id,x,y,w,h,conf,class,visibility", "frame_base": 1, "xy_base": 0,
                   "min_visibility": MOT_MIN_VISIBILITY},
           "video": video_info, **clip.params}, paths["meta"])
    return {**paths, "frames_decoded": decoded}


def write_clips(out_dir, seconds: float = 12.0, fps: int = 15, width: int = 640, height: int = 360) -> dict:
    """Render and write every clip in :data:`CLIPS`; returns ``{name: write_clip(...)}``."""
    return {name: write_clip(render_clip(seed, seconds, fps, width, height), out_dir, name)
            for name, seed in CLIPS.items()}


# ---------------------------------------------------------------------------------------------
# The shipped ground truth in the perception schema's video types (chapter 5 scores against it)
# ---------------------------------------------------------------------------------------------

def clip_truth(name: str, folder: str | Path | None = None, frames: bool = True):
    """A written clip's ground truth (``<name>_gt.txt``, ``_events.json``, ``_meta.json``,
    ``_zones.json``) as a :class:`~efsora_helpers.perception.schema.VideoResult`: one
    :class:`Track` per MOT id (first and last frame it is in the file), one :class:`TrackEvent` per
    event (``type`` -> ``kind``, ``text`` -> ``evidence``, the rest in ``details``) and, with
    ``frames``, one :class:`FrameResult` per frame. ``folder`` defaults to the shipped 12 s clips
    (the long clips: ``folder=stories_root()``). A worker's ``vest`` attribute is their state in
    the first frame; vest changes are ``put_on_ppe`` / ``take_off_ppe`` events."""
    from ..paths import repo_root
    from ..perception.schema import FrameResult, ImageInfo, Track, TrackedObject, TrackEvent, VideoResult

    shipped = repo_root() / "data" / "safetyscenes" / "video"
    folder = Path(folder) if folder is not None else shipped
    meta = json.loads((folder / f"{name}_meta.json").read_text())
    zones = json.loads((folder / f"{name}_zones.json").read_text())
    fps, classes = meta["fps"], meta["classes"]
    per_frame: list[list[TrackedObject]] = [[] for _ in range(meta["frames"])]
    span: dict[int, list[int]] = {}
    for line in (folder / f"{name}_gt.txt").read_text().splitlines():
        f, tid, x, y, w, h, conf, cls, vis = line.split(",")
        f, tid, x, y, w, h = int(f) - meta["mot"]["frame_base"], int(tid), float(x), float(y), float(w), float(h)
        per_frame[f].append(TrackedObject(id=tid, track_id=tid, label=classes[int(cls) - 1], confidence=float(conf),
                                          bbox=[x, y, x + w, y + h], visibility=float(vis)))
        first_last = span.setdefault(tid, [f, f])
        first_last[0], first_last[1] = min(first_last[0], f), max(first_last[1], f)
    actors = {a["id"]: a for a in meta["actors"]}
    tracks = [Track(track_id=tid, label=actors[tid]["label"], first_frame=a, last_frame=b,
                    first_time_s=round(a / fps, 3), last_time_s=round(b / fps, 3),
                    attributes={k: v for k, v in actors[tid].items()
                                if k not in ("id", "label") and not isinstance(v, (list, dict))})
              for tid, (a, b) in sorted(span.items())]
    core = ("frame", "time_s", "track_id", "label", "type", "zone", "text")
    events = [TrackEvent(frame=e["frame"], time_s=e["time_s"], track_id=e["track_id"], label=e["label"],
                         kind=e["type"], zone=e.get("zone"), evidence=e["text"],
                         details={k: v for k, v in e.items() if k not in core})
              for e in json.loads((folder / f"{name}_events.json").read_text())]
    video = folder / f"{name}.webm"
    source = video.relative_to(repo_root()).as_posix() if video.is_relative_to(repo_root()) else str(video)
    frame_results = [FrameResult(source=source, frame_index=f, timestamp_s=round(f / fps, 3), objects=objs,
                                 zones=zones) for f, objs in enumerate(per_frame)] if frames else []
    return VideoResult(source=source, fps=fps, n_frames=meta["frames"],
                       image_info=ImageInfo(width=meta["width"], height=meta["height"]),
                       zones=zones, tracks=tracks, events=events, frames=frame_results)


# ---------------------------------------------------------------------------------------------
# The long clips on disk: data/video/ (chapter 5)
# ---------------------------------------------------------------------------------------------

def stories_root() -> Path:
    """Where the long clips ship: ``data/video/`` (its own ``manifest.json``; the 12 s clips stay
    in ``data/safetyscenes/video/`` with the image dataset's manifest)."""
    from ..paths import repo_root

    return repo_root() / "data" / "video"


def frame_digest(frame: np.ndarray) -> str:
    """The first 16 hex digits of a rendered (not encoded) frame's sha256: ``<name>_frames.txt``
    lists one per frame, so a test can re-render any frame range and compare it byte for byte."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()[:16]


def write_story(name: str, out_dir) -> dict:
    """Render story ``name`` and write it like :func:`write_clip`, plus ``<name>_frames.txt``."""
    clip = render_story(name)
    info = write_clip(clip, out_dir, name)
    info["frames"] = Path(out_dir) / f"{name}_frames.txt"
    info["frames"].write_text("".join(f"{f},{frame_digest(img)}\n" for f, img in enumerate(clip.frames)))
    return info


def write_manifest(folder) -> dict:
    """``manifest.json``: sha256 and size of every file in ``folder`` (the manifest itself aside)."""
    from ..assets import sha256_of

    folder = Path(folder)
    manifest = {}
    for p in sorted(q for q in folder.iterdir() if q.is_file() and q.name != "manifest.json"):
        digest, size = sha256_of(p)
        manifest[p.name] = {"sha256": digest, "bytes": size}
    _dump(manifest, folder / "manifest.json")
    return manifest


def write_stories(out_dir=None, names=None, progress: bool = True) -> dict:
    """Render and write the long clips (default: every story, into :func:`stories_root`) and the
    folder's manifest. Returns ``{name: write_story(...)}``."""
    from tqdm.auto import tqdm

    out = Path(out_dir) if out_dir is not None else stories_root()
    out.mkdir(parents=True, exist_ok=True)
    written = {name: write_story(name, out) for name in tqdm(names or list(STORIES), desc="clips", disable=not progress)}
    write_manifest(out)
    return written
