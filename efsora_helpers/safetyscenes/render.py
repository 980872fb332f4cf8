"""SafetyScenes: procedurally rendered warehouse scenes with exact ground truth.

One seed gives one scene, byte for byte: every random choice comes from one
``numpy.random.Generator`` seeded with it. A scene is drawn back to front into a BGR canvas and an
*owner map* (which instance owns each pixel), so every mask is exactly the visible part of its
object after occlusion; a worker's mask includes the hard hat and vest they wear. Boxes are the
tight boxes of the visible masks (COCO convention).

Why not trivially separable: lighting, colour temperature, blur, noise and JPEG quality vary;
workers vary in size, pose, clothing and facing; objects overlap; and distractors share colours
with the classes (orange rack beams, cones and shirts are not vests; yellow buckets and soft caps
are not hard hats). Taught in ``notebooks/setup/safetyscenes.ipynb``.

Chapter 4's new task (``SceneConfig(new_classes=True, night_probability=...)``) adds fire
extinguishers, floor spills and safety goggles (``vocabulary.NewClass``) and night lighting. Every
draw for them comes from a second generator seeded with ``[seed, 4]``, so the base scene's random
stream is untouched: the same seed gives the same workers, forklifts and signs, and a scene rendered
without them is byte for byte what it always was. Taught in ``notebooks/finetuning/01_dataset.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..vocabulary import CLASSES, IN_FORKLIFT_ZONE as IN_ZONE, NewClass, ObjectClass, Zone
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}

SIGN_TEXTS = (
    "NO ENTRY", "MAX LOAD 2T", "FORKLIFT ZONE", "EXIT", "CAUTION", "HARD HAT AREA",
    "AISLE 1", "AISLE 2", "AISLE 3", "AISLE 4", "AISLE 5", "AISLE 7", "STOP", "DANGER",
    "MAX LOAD 1T", "KEEP CLEAR", "LOADING BAY", "FIRE EXIT", "SPEED 10",
)

# BGR colours (OpenCV order).
HAT_COLOURS = [(0, 215, 255), (245, 245, 245), (0, 140, 255), (200, 90, 20), (40, 40, 210)]
VEST_COLOURS = [(40, 255, 200), (60, 240, 230), (0, 120, 255), (0, 160, 255)]  # lime, yellow, orange
SHIRT_COLOURS = [(120, 80, 40), (60, 60, 60), (180, 180, 180), (40, 40, 120), (90, 110, 60),
                 (30, 30, 30), (150, 100, 150), (0, 120, 240), (20, 200, 230)]  # last two: distractors
TROUSER_COLOURS = [(70, 50, 30), (40, 40, 40), (90, 90, 80), (110, 80, 50), (60, 60, 90)]
SKIN_COLOURS = [(170, 200, 240), (120, 160, 210), (90, 120, 170), (60, 85, 125), (150, 180, 225)]
FORKLIFT_COLOURS = [(0, 200, 250), (0, 130, 240), (30, 30, 200), (60, 150, 40), (200, 120, 30)]


@dataclass
class Instance:
    """One labelled object. ``mask`` is the visible mask (bool, image-sized)."""

    id: int
    label: str
    bbox: tuple[float, float, float, float]
    mask: np.ndarray
    attributes: dict = field(default_factory=dict)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class TextRegion:
    text: str
    bbox: tuple[float, float, float, float]
    sign_id: int


@dataclass
class Scene:
    image_id: str
    seed: int
    image: np.ndarray  # BGR uint8
    instances: list[Instance]
    text_regions: list[TextRegion]
    zones: dict[str, list[tuple[float, float]]]
    params: dict

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def by_label(self, label: str) -> list[Instance]:
        return [i for i in self.instances if i.label == label]


@dataclass
class SceneConfig:
    width: int = 640
    height: int = 480
    max_workers: int = 6
    max_forklifts: int = 2
    max_pallets: int = 4
    min_visible_fraction: float = 0.3  # an object less visible than this is not labelled
    min_visible_pixels: int = 30
    new_classes: bool = False  # chapter 4: draw fire extinguishers, spills and safety goggles
    night_probability: float = 0.0  # chapter 4: chance that a scene is lit at night (domain shift)
    goggles_probability: float = 0.45  # chance that a worker wears safety goggles (new_classes only)


# ---------------------------------------------------------------------------------------------
# Drawing: every part is a mask; the canvas and the owner map are written through it.
# ---------------------------------------------------------------------------------------------

class Painter:
    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.h, self.w, self.rng = height, width, rng
        self.canvas = np.zeros((height, width, 3), np.float32)
        self.owner = np.zeros((height, width), np.int32)  # 0 = background
        self.full_area: dict[int, int] = {}  # part pixels each owner drew, before occlusion

    def blank(self) -> np.ndarray:
        return np.zeros((self.h, self.w), np.uint8)

    def paint(self, mask: np.ndarray, colour, owner: int = 0, shade: float = 0.25, grain: float = 6.0):
        m = mask.astype(bool)
        if not m.any():
            return
        ys, xs = np.nonzero(m)
        y0, y1 = ys.min(), ys.max() + 1
        # vertical light falloff across the part plus fine grain: no flat fills
        rel = (ys - y0) / max(1, y1 - y0)
        factor = 1.0 + shade * (0.5 - rel)
        noise = self.rng.normal(0, grain, size=(len(ys), 1)).astype(np.float32)
        col = np.asarray(colour, np.float32)[None, :] * factor[:, None] + noise
        self.canvas[ys, xs] = np.clip(col, 0, 255)
        if owner:
            self.owner[ys, xs] = owner
            self.full_area[owner] = self.full_area.get(owner, 0) + len(ys)

    # shapes return masks; callers paint them
    def poly(self, pts) -> np.ndarray:
        m = self.blank()
        cv2.fillPoly(m, [np.round(np.asarray(pts)).astype(np.int32)], 1, lineType=cv2.LINE_8)
        return m

    def rect(self, x1, y1, x2, y2) -> np.ndarray:
        return self.poly([(x1, y1), (x2, y1), (x2, y2), (x1, y2)])

    def ellipse(self, cx, cy, ax, ay, angle=0.0, start=0, end=360) -> np.ndarray:
        m = self.blank()
        cv2.ellipse(m, (int(round(cx)), int(round(cy))), (max(1, int(round(ax))), max(1, int(round(ay)))),
                    angle, start, end, 1, thickness=-1, lineType=cv2.LINE_8)
        return m

    def thick_line(self, p, q, width) -> np.ndarray:
        m = self.blank()
        cv2.line(m, (int(round(p[0])), int(round(p[1]))), (int(round(q[0])), int(round(q[1]))), 1,
                 thickness=max(1, int(round(width))), lineType=cv2.LINE_8)
        return m


# ---------------------------------------------------------------------------------------------
# The scene
# ---------------------------------------------------------------------------------------------

def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _jitter(rng, colour, amount=18):
    return tuple(float(np.clip(c + rng.normal(0, amount), 0, 255)) for c in colour)


def _background(p: Painter, rng, horizon: int) -> None:
    wall = _jitter(rng, _pick(rng, [(200, 205, 210), (175, 190, 205), (210, 200, 185), (150, 150, 155)]), 12)
    floor = _jitter(rng, _pick(rng, [(130, 135, 140), (150, 150, 145), (110, 115, 120), (160, 165, 170)]), 10)
    p.paint(p.rect(0, 0, p.w, horizon), wall, shade=0.2, grain=4)
    p.paint(p.rect(0, horizon, p.w, p.h), floor, shade=-0.3, grain=9)
    # floor stains: low-contrast blotches so the floor is not a flat colour
    for _ in range(int(rng.integers(3, 9))):
        cx, cy = rng.uniform(0, p.w), rng.uniform(horizon, p.h)
        m = p.ellipse(cx, cy, rng.uniform(15, 80), rng.uniform(5, 25)) & (p.owner == 0)
        m[:horizon] = 0
        p.paint(m, _jitter(rng, tuple(c * 0.85 for c in floor), 6), grain=5)
    # wall-floor skirting
    p.paint(p.rect(0, horizon - 4, p.w, horizon + 2), (60, 60, 60), grain=3)


def _racks(p: Painter, rng, horizon: int) -> list[tuple[float, float, float, float]]:
    """Pallet racking along the back wall: blue uprights, orange beams (vest-coloured distractors),
    boxes and, sometimes, yellow buckets (hard-hat-coloured distractors). Returns upright boxes
    where signs can hang."""
    uprights = []
    n = int(rng.integers(0, 4))
    xs = np.sort(rng.uniform(0, p.w, size=n))
    top = rng.uniform(0.02, 0.12) * p.h
    for x in xs:
        width = rng.uniform(110, 220)
        x1, x2 = x - width / 2, x + width / 2
        upright = _jitter(rng, (150, 80, 20), 15)
        beam = _jitter(rng, _pick(rng, [(0, 110, 245), (0, 140, 250), (30, 60, 200)]), 10)
        levels = np.linspace(top, horizon - 2, int(rng.integers(3, 5)))
        for y in levels[1:]:  # boxes on each shelf
            bx = x1 + 6
            while bx < x2 - 12:
                bw = rng.uniform(14, 38)
                bh = rng.uniform(12, (levels[1] - levels[0]) * 0.85)
                if rng.random() < 0.8:
                    colour = _jitter(rng, (90, 140, 180), 20)
                    if rng.random() < 0.12:
                        colour = (0, 210, 250)  # yellow bin: not a hard hat
                    p.paint(p.rect(bx, y - bh, min(bx + bw, x2 - 6), y), colour, grain=6)
                    if rng.random() < 0.1:  # round yellow bucket lid, hard-hat coloured
                        p.paint(p.ellipse(bx + bw / 2, y - bh, bw / 2, bw / 5, 0, 180, 360), (0, 215, 255))
                bx += bw + rng.uniform(1, 8)
        for y in levels:
            p.paint(p.rect(x1, y - 4, x2, y + 3), beam, grain=4)
        for ux in (x1, x2 - 7):
            p.paint(p.rect(ux, top - 6, ux + 7, horizon + 3), upright, grain=4)
        uprights.append((x1, top, x2, horizon))
    return uprights


def _zone(p: Painter, rng, horizon: int) -> list[tuple[float, float]]:
    """A forklift lane on the floor: a trapezoid in perspective, bordered by yellow lines."""
    cx_far = rng.uniform(0.25, 0.75) * p.w
    cx_near = np.clip(cx_far + rng.uniform(-0.25, 0.25) * p.w, 0.15 * p.w, 0.85 * p.w)
    half_far, half_near = rng.uniform(35, 70), rng.uniform(130, 220)
    y_far = horizon + 4
    poly = [(cx_far - half_far, y_far), (cx_far + half_far, y_far),
            (cx_near + half_near, p.h - 1), (cx_near - half_near, p.h - 1)]
    lane = p.poly(poly) & (p.owner == 0)
    p.paint(lane, _jitter(rng, (120, 125, 125), 8), shade=-0.2, grain=8)
    yellow = _jitter(rng, (20, 200, 235), 12)
    for a, b in ((poly[0], poly[3]), (poly[1], poly[2])):
        p.paint(p.thick_line(a, b, rng.uniform(4, 8)), yellow, grain=5)
    return [(round(x, 1), round(y, 1)) for x, y in poly]


def _draw_sign(p: Painter, rng, owner: int, x: float, y: float, scale: float, text: str):
    """A sign plate with text. Returns the text's box, or None if it does not fit the image."""
    font = _pick(rng, [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX])
    thickness = 2 if scale > 0.55 else 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    pad = int(6 + 6 * scale)
    x1, y1 = int(x), int(y)
    x2, y2 = x1 + tw + 2 * pad, y1 + th + base + 2 * pad
    if x1 < 0 or y1 < 0 or x2 >= p.w or y2 >= p.h:
        return None
    style = int(rng.integers(4))
    plate, ink = [((245, 245, 245), (20, 20, 20)), ((0, 210, 250), (15, 15, 15)),
                  ((30, 30, 200), (245, 245, 245)), ((40, 120, 30), (245, 245, 245))][style]
    p.paint(p.rect(x1 - 2, y1 - 2, x2 + 2, y2 + 2), (25, 25, 25), owner, grain=3)  # border
    p.paint(p.rect(x1, y1, x2, y2), _jitter(rng, plate, 8), owner, shade=0.1, grain=3)
    org = (x1 + pad, y1 + pad + th)
    glyphs = p.blank()  # OpenCV draws text on 8-bit images only: draw coverage, then blend the ink
    cv2.putText(glyphs, text, org, font, scale, 255, thickness, lineType=cv2.LINE_AA)
    alpha = (glyphs.astype(np.float32) / 255.0)[..., None]
    p.canvas[:] = p.canvas * (1 - alpha) + np.asarray(ink, np.float32) * alpha
    return (float(x1 + pad), float(y1 + pad), float(x1 + pad + tw), float(y1 + pad + th + base))


def _worker(p: Painter, rng, ids, foot_x: float, foot_y: float, h: float, *, facing: str | None = None,
            pose: str | None = None, phase: float | None = None, hard_hat: bool | None = None,
            vest: bool | None = None) -> dict:
    """A worker standing at (foot_x, foot_y), ``h`` pixels tall. Returns ids and PPE attributes.

    The keyword arguments pin what is otherwise drawn at random (``phase``, in radians, swings the
    stride between the legs), so a video can keep one worker's look across frames. They are applied
    after the draws, so the random stream, and every scene rendered without them, stays the same."""
    pid = ids()
    cx, top = foot_x, foot_y - h
    drawn_facing = _pick(rng, ["front", "back", "left", "right"])
    drawn_pose = _pick(rng, ["standing", "walking", "arms_up", "carrying"])
    skin = _jitter(rng, _pick(rng, SKIN_COLOURS), 8)
    shirt = _jitter(rng, _pick(rng, SHIRT_COLOURS), 12)
    trousers = _jitter(rng, _pick(rng, TROUSER_COLOURS), 10)
    has_hat = rng.random() < 0.6
    has_vest = rng.random() < 0.55
    facing = drawn_facing if facing is None else facing
    pose = drawn_pose if pose is None else pose
    has_hat = has_hat if hard_hat is None else bool(hard_hat)
    has_vest = has_vest if vest is None else bool(vest)
    side = facing in ("left", "right")
    tw = h * (0.17 if side else 0.26)  # torso width
    shoulder_y, hip_y = top + 0.18 * h, top + 0.52 * h
    # legs
    stride = {"walking": 0.09, "standing": 0.02}.get(pose, 0.03) * h
    if phase is not None:
        stride *= float(np.cos(phase))
    leg_w = 0.085 * h
    for dx, sx in ((-0.06 * h, -stride), (0.06 * h, stride)):
        hip = (cx + (dx * 0.3 if side else dx), hip_y)
        foot = (cx + (dx * 0.3 if side else dx) + sx, foot_y - 0.02 * h)
        p.paint(p.thick_line(hip, foot, leg_w), trousers, pid)
        p.paint(p.ellipse(foot[0] + (0.03 * h if facing == "right" else -0.03 * h if facing == "left" else 0),
                          foot_y - 0.015 * h, 0.055 * h, 0.022 * h), (25, 25, 25), pid)
    # torso
    torso = [(cx - tw / 2, shoulder_y), (cx + tw / 2, shoulder_y), (cx + tw * 0.45, hip_y), (cx - tw * 0.45, hip_y)]
    p.paint(p.poly(torso), shirt, pid)
    vest_id = None
    if has_vest:
        vest_id = ids()
        vest_colour = _jitter(rng, _pick(rng, VEST_COLOURS), 10)
        vy1, vy2 = shoulder_y + 0.01 * h, hip_y - 0.02 * h
        vest = [(cx - tw * 0.47, vy1), (cx + tw * 0.47, vy1), (cx + tw * 0.43, vy2), (cx - tw * 0.43, vy2)]
        m = p.poly(vest)
        if facing == "front":  # open V at the neck shows the shirt
            m &= ~p.poly([(cx - tw * 0.12, vy1 - 1), (cx + tw * 0.12, vy1 - 1), (cx, vy1 + 0.12 * h)]).astype(bool)
        p.paint(m, vest_colour, vest_id, shade=0.15, grain=5)
        for sy in (0.35, 0.44):  # retro-reflective stripes: what makes a vest a vest
            band = p.rect(cx - tw * 0.47, top + sy * h, cx + tw * 0.47, top + (sy + 0.025) * h) & m
            p.paint(band, (205, 205, 200), vest_id, shade=0.0, grain=4)
    # arms
    arm_w = 0.065 * h
    for sgn in (-1, 1):
        sh = (cx + sgn * tw * 0.45, shoulder_y + 0.02 * h)
        if pose == "arms_up" and sgn == 1:
            hand = (sh[0] + sgn * 0.06 * h, sh[1] - 0.26 * h)
        elif pose == "carrying":
            hand = (cx + sgn * tw * 0.3, shoulder_y + 0.22 * h)
        else:
            swing = (stride * 0.8 * sgn) if pose == "walking" else 0
            hand = (sh[0] + sgn * 0.03 * h + swing, sh[1] + 0.3 * h)
        if side and sgn == -1:
            continue  # the far arm is hidden in profile
        p.paint(p.thick_line(sh, hand, arm_w), shirt, pid)
        p.paint(p.ellipse(hand[0], hand[1], arm_w * 0.5, arm_w * 0.5), skin, pid)
    if pose == "carrying":  # a box in front of the torso
        p.paint(p.rect(cx - tw * 0.4, shoulder_y + 0.12 * h, cx + tw * 0.4, shoulder_y + 0.3 * h),
                _jitter(rng, (90, 140, 180), 15), pid)
    # head
    head_r = 0.065 * h
    head_cy = top + 0.085 * h
    p.paint(p.thick_line((cx, head_cy), (cx, shoulder_y), 0.05 * h), skin, pid)  # neck
    p.paint(p.ellipse(cx, head_cy, head_r * 0.9, head_r), skin, pid)
    hat_id = None
    if has_hat:
        hat_id = ids()
        colour = _jitter(rng, _pick(rng, HAT_COLOURS), 8)
        dome = p.ellipse(cx, head_cy - 0.015 * h, head_r * 1.15, head_r * 1.0, 0, 180, 360)
        brim_dx = {"left": -0.03 * h, "right": 0.03 * h}.get(facing, 0)
        brim = p.ellipse(cx + brim_dx, head_cy - 0.012 * h, head_r * 1.45, max(1.5, 0.018 * h))
        p.paint(dome | brim, colour, hat_id, shade=0.35, grain=4)
    else:
        cover = _pick(rng, ["hair", "hair", "beanie", "soft_cap"])
        if facing == "back" or cover != "hair":
            colour = _jitter(rng, (25, 30, 40), 10)
            if cover == "soft_cap" and rng.random() < 0.5:
                colour = (0, 200, 245)  # a yellow soft cap: not a hard hat
            flat = 0.55 if cover == "hair" else 0.7
            p.paint(p.ellipse(cx, head_cy - 0.02 * h, head_r * 0.95, head_r * flat, 0, 180, 360), colour, pid)
        else:
            p.paint(p.ellipse(cx, head_cy - 0.03 * h, head_r * 0.92, head_r * 0.5, 0, 180, 360), (25, 30, 40), pid)
    return {"id": pid, "hat_id": hat_id, "vest_id": vest_id, "pose": pose, "facing": facing,
            "foot": (float(foot_x), float(foot_y)), ObjectClass.HARD_HAT: has_hat, ObjectClass.VEST: has_vest}


def _pallet(p: Painter, rng, owner: int, x: float, foot_y: float, w: float, loaded: bool) -> None:
    deck_h = 0.13 * w
    wood = _jitter(rng, (60, 120, 170), 15)
    p.paint(p.rect(x, foot_y - deck_h, x + w, foot_y), wood, owner, grain=8)
    for k in range(3):  # dark gaps between the blocks
        gx = x + w * (0.2 + 0.3 * k)
        p.paint(p.rect(gx, foot_y - deck_h * 0.6, gx + w * 0.12, foot_y - deck_h * 0.1), (30, 40, 50), owner, grain=3)
    if loaded:
        cols, rows = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        bw, bh = w / cols, min(w * 0.35, w / cols * rng.uniform(0.6, 1.0))
        base = _jitter(rng, (80, 135, 180), 18)
        for r in range(rows):
            for c in range(cols):
                bx, by = x + c * bw, foot_y - deck_h - (r + 1) * bh
                p.paint(p.rect(bx + 1, by + 1, bx + bw - 1, by + bh), _jitter(rng, base, 10), owner, grain=6)
                p.paint(p.rect(bx + bw * 0.45, by + 1, bx + bw * 0.55, by + bh * 0.4), (150, 185, 210), owner, grain=3)


def _forklift(p: Painter, rng, ids, foot_x: float, foot_y: float, size: float, *, facing: str | None = None,
              forks_lift: float | None = None, carrying: bool | None = None) -> dict:
    """A forklift, side view. ``facing`` ("left"/"right": where the forks point), ``forks_lift`` (a
    fraction of ``size``) and ``carrying`` pin the random choices, after the draws (see ``_worker``)."""
    fid = ids()
    right = rng.random() < 0.5  # forks point right
    if facing is not None:
        right = facing == "right"
    d = 1 if right else -1
    colour = _jitter(rng, _pick(rng, FORKLIFT_COLOURS), 10)
    body_w, body_h = size * 0.85, size * 0.42
    bx1 = foot_x - body_w / 2
    wheel_r = size * 0.13
    body_bottom = foot_y - wheel_r * 0.9
    body = p.rect(bx1, body_bottom - body_h, bx1 + body_w, body_bottom)
    counter = p.ellipse(foot_x - d * body_w * 0.45, body_bottom - body_h * 0.55, body_w * 0.18, body_h * 0.5)
    p.paint(body | counter, colour, fid, shade=0.3, grain=5)
    # overhead guard and seat
    gx1, gx2 = foot_x - d * body_w * 0.35, foot_x + d * body_w * 0.25
    roof_y = body_bottom - body_h - size * 0.55
    dark = (35, 35, 35)
    for gx in (gx1, gx2):
        p.paint(p.thick_line((gx, body_bottom - body_h), (gx, roof_y), size * 0.035), dark, fid)
    p.paint(p.thick_line((gx1, roof_y), (gx2, roof_y), size * 0.04), dark, fid)
    p.paint(p.rect(min(gx1, gx2) + size * 0.08, body_bottom - body_h - size * 0.18,
                   max(gx1, gx2) - size * 0.12, body_bottom - body_h), (30, 30, 30), fid)
    # mast and forks
    mx = foot_x + d * body_w * 0.52
    mast_top = roof_y - size * 0.12
    p.paint(p.rect(min(mx, mx + d * size * 0.07), mast_top, max(mx, mx + d * size * 0.07), foot_y - 2), (60, 60, 65), fid)
    lift = rng.uniform(0.0, 0.35) * size
    if forks_lift is not None:
        lift = forks_lift * size
    fork_y = foot_y - 4 - lift
    fork_x2 = mx + d * size * 0.55
    p.paint(p.rect(min(mx, fork_x2), fork_y - size * 0.035, max(mx, fork_x2), fork_y), (50, 50, 55), fid)
    # wheels
    for wx in (foot_x - body_w * 0.3, foot_x + body_w * 0.3):
        p.paint(p.ellipse(wx, foot_y - wheel_r, wheel_r, wheel_r), (20, 20, 20), fid)
        p.paint(p.ellipse(wx, foot_y - wheel_r, wheel_r * 0.45, wheel_r * 0.45), (140, 140, 140), fid)
    drawn_carrying = rng.random() < 0.4
    carrying = drawn_carrying if carrying is None else bool(carrying)
    pallet_id = None
    if carrying:
        pallet_id = ids()
        pw = size * 0.55
        px = min(mx, fork_x2) if right else fork_x2
        _pallet(p, rng, pallet_id, px, fork_y + 2, pw, loaded=rng.random() < 0.8)
    return {"id": fid, "pallet_id": pallet_id, "facing": "right" if right else "left",
            "foot": (float(foot_x), float(foot_y)), "carrying_pallet": carrying}


def _cone(p: Painter, rng, foot_x, foot_y, size):
    """An orange traffic cone with white bands: vest colours, not a vest."""
    pts = [(foot_x - size * 0.3, foot_y - size * 0.08), (foot_x + size * 0.3, foot_y - size * 0.08),
           (foot_x + size * 0.06, foot_y - size), (foot_x - size * 0.06, foot_y - size)]
    m = p.poly(pts)
    p.paint(m, _jitter(rng, (0, 110, 250), 10))
    p.paint(p.rect(foot_x - size, foot_y - size * 0.62, foot_x + size, foot_y - size * 0.52) & m, (235, 235, 235))
    p.paint(p.rect(foot_x - size * 0.4, foot_y - size * 0.1, foot_x + size * 0.4, foot_y), (30, 30, 30))


EXTINGUISHER_RED = (35, 35, 205)
SPILL_COLOURS = {"oil": (38, 42, 48), "coolant": (60, 150, 70), "water": None}  # water: darker floor


def _extinguisher(p: Painter, rng, owner: int, x: float, bottom: float, height: float) -> None:
    """A wall-mounted fire extinguisher: a red cylinder with a domed top, a black valve and handle,
    a hose down its side and a white instruction label (red signs and red hard hats are the
    distractors)."""
    w = height * rng.uniform(0.32, 0.4)
    top = bottom - height
    red = _jitter(rng, EXTINGUISHER_RED, 10)
    body = p.rect(x - w / 2, top + 0.22 * height, x + w / 2, bottom) | p.ellipse(x, top + 0.22 * height, w / 2, 0.1 * height)
    p.paint(p.rect(x - w * 0.7, bottom - 0.45 * height, x + w * 0.7, bottom - 0.38 * height), (70, 70, 70), owner, grain=3)  # bracket
    p.paint(body, red, owner, shade=0.3, grain=4)
    p.paint(p.rect(x - w * 0.38, top + 0.42 * height, x + w * 0.38, top + 0.68 * height), (235, 235, 235), owner, grain=3)
    p.paint(p.rect(x - w * 0.16, top + 0.04 * height, x + w * 0.16, top + 0.16 * height), (25, 25, 25), owner, grain=3)
    side = 1 if rng.random() < 0.5 else -1
    p.paint(p.thick_line((x, top + 0.04 * height), (x + side * w * 0.6, top), max(2, 0.05 * height)), (25, 25, 25), owner)
    hose_x = x + side * (w / 2 + 0.05 * height)
    p.paint(p.thick_line((x + side * w * 0.1, top + 0.1 * height), (hose_x, top + 0.2 * height), max(2, 0.05 * height)),
            (20, 20, 20), owner)
    p.paint(p.thick_line((hose_x, top + 0.2 * height), (hose_x, bottom - 0.15 * height), max(2, 0.05 * height)),
            (20, 20, 20), owner)


def _spill(p: Painter, rng, owner: int, cx: float, cy: float, size: float, floor_colour) -> str:
    """A liquid spill on the floor: overlapping flattened blobs (perspective) with glossy highlights.
    The floor's own low-contrast stains are the distractors. Returns the liquid."""
    liquid = _pick(rng, list(SPILL_COLOURS))
    colour = SPILL_COLOURS[liquid] or tuple(c * 0.72 for c in floor_colour)
    m = p.blank()
    for _ in range(int(rng.integers(3, 7))):
        ax = size * rng.uniform(0.25, 0.6)
        m |= p.ellipse(cx + rng.normal(0, size * 0.35), cy + rng.normal(0, size * 0.08), ax, ax * rng.uniform(0.22, 0.35),
                       rng.uniform(-10, 10))
    p.paint(m, _jitter(rng, colour, 6), owner, shade=-0.1, grain=3)
    for _ in range(int(rng.integers(1, 4))):  # specular highlights: a liquid reflects the ceiling lights
        hx, hy = cx + rng.normal(0, size * 0.25), cy + rng.normal(0, size * 0.05)
        glint = p.ellipse(hx, hy, size * rng.uniform(0.05, 0.14), size * 0.025) & m
        p.paint(glint.astype(np.uint8), (225, 225, 220), owner, shade=0.0, grain=5)
    return liquid


def _goggles(p: Painter, rng, owner: int, worker_owner: int, cx: float, foot_y: float, h: float, facing: str) -> bool:
    """Safety goggles at eye level on a worker drawn by ``_worker`` (same geometry). From behind
    only the strap shows, painted as the worker's; returns whether the goggles themselves are drawn."""
    top = foot_y - h
    head_r, eye_y = 0.065 * h, top + 0.085 * h + 0.008 * h
    frame = (28, 28, 28)
    lens = _jitter(rng, _pick(rng, [(235, 215, 170), (190, 190, 185), (240, 225, 200)]), 6)
    band_h = max(2.0, 0.034 * h)
    if facing == "back":
        p.paint(p.rect(cx - head_r * 0.95, eye_y - band_h * 0.25, cx + head_r * 0.95, eye_y + band_h * 0.25), frame, worker_owner)
        return False
    if facing == "front":
        x1, x2 = cx - head_r * 0.88, cx + head_r * 0.88
    else:  # profile: the lens sits on the side the worker faces
        d = 1 if facing == "right" else -1
        x1, x2 = sorted((cx + d * head_r * 0.95, cx - d * head_r * 0.15))
    outer = p.rect(x1, eye_y - band_h / 2, x2, eye_y + band_h / 2)
    p.paint(outer, frame, owner, grain=3)
    inset = max(1.0, band_h * 0.22)
    if facing == "front":
        for a, b in ((x1 + inset, cx - inset / 2), (cx + inset / 2, x2 - inset)):
            p.paint(p.rect(a, eye_y - band_h / 2 + inset, b, eye_y + band_h / 2 - inset) & outer, lens, owner, shade=0.3, grain=4)
    else:
        p.paint(p.rect(x1 + inset, eye_y - band_h / 2 + inset, x2 - inset, eye_y + band_h / 2 - inset) & outer, lens, owner,
                shade=0.3, grain=4)
    return True


def _night(image: np.ndarray, rng, horizon: int) -> tuple[np.ndarray, dict]:
    """Night lighting: a dark, blue-shifted frame lit by pools of light from ceiling lamps, with the
    stronger sensor noise of a high gain. Applied after ``_post_process``."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ambient = rng.uniform(0.18, 0.32)
    light = np.full((h, w), ambient, np.float32)
    n_lamps = int(rng.integers(1, 4))
    for _ in range(n_lamps):
        lx, ly = rng.uniform(0.1, 0.9) * w, rng.uniform(horizon * 0.6, h * 0.8)
        radius = rng.uniform(0.18, 0.35) * w
        light += rng.uniform(0.5, 0.9) * np.exp(-(((xx - lx) ** 2 + ((yy - ly) * 1.6) ** 2) / (2 * radius ** 2)))
    tint = np.array([1.15, 0.95, 0.75], np.float32) * rng.normal(1.0, 0.03, size=3).astype(np.float32)  # BGR: bluish
    out = image.astype(np.float32) * np.minimum(light, 1.1)[..., None] * tint[None, None, :]
    sigma = rng.uniform(5, 11)
    out = out + rng.normal(0, sigma, size=out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8), {"lighting": "night", "ambient": round(float(ambient), 3),
                                                   "lamps": n_lamps, "night_noise_sigma": round(float(sigma), 2)}


def _post_process(image: np.ndarray, rng) -> tuple[np.ndarray, dict]:
    h, w = image.shape[:2]
    gain = rng.uniform(0.6, 1.25)
    tint = rng.normal(1.0, 0.06, size=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle))
    light = 1.0 + rng.uniform(0, 0.45) * ramp
    vignette = 1.0 - rng.uniform(0, 0.35) * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * 2)
    out = image * (gain * light * vignette)[..., None] * tint[None, None, :]
    blur = float(rng.choice([0, 0, 0.6, 1.0, 1.5]))
    if blur:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    if rng.random() < 0.15:  # motion blur
        k = int(rng.integers(3, 8))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        out = cv2.filter2D(out, -1, kernel)
    sigma = rng.uniform(2, 9)
    out = out + rng.normal(0, sigma, size=out.shape).astype(np.float32)
    params = {"gain": round(gain, 3), "blur": blur, "noise_sigma": round(float(sigma), 2)}
    return np.clip(out, 0, 255).astype(np.uint8), params


def render_scene(seed: int, image_id: str | None = None, config: SceneConfig | None = None) -> Scene:
    """Render one warehouse scene. Same seed and config, same pixels and labels."""
    cfg = config or SceneConfig()
    rng = np.random.default_rng(seed)
    p = Painter(cfg.height, cfg.width, rng)
    counter = iter(range(1, 10_000))
    ids = lambda: next(counter)  # noqa: E731  (instance ids in drawing order)

    horizon = int(rng.uniform(0.3, 0.45) * cfg.height)
    _background(p, rng, horizon)
    uprights = _racks(p, rng, horizon)
    zone = _zone(p, rng, horizon)

    # signs on the wall or the racks
    signs, sign_spots = [], []
    for _ in range(int(rng.integers(1, 4))):
        text = _pick(rng, SIGN_TEXTS)
        if rng.random() < 0.2:
            text = f"{chr(65 + int(rng.integers(26)))}{int(rng.integers(1, 40))}-{int(rng.integers(1, 20)):02d}"
        scale = rng.uniform(0.45, 0.95)
        if uprights and rng.random() < 0.5:
            x1, top, x2, _ = _pick(rng, uprights)
            x, y = rng.uniform(x1, max(x1 + 1, x2 - 60)), rng.uniform(top, max(top + 1, horizon * 0.5))
        else:
            x, y = rng.uniform(5, cfg.width * 0.75), rng.uniform(5, max(6, horizon - 50))
        if any(abs(x - sx) < 170 and abs(y - sy) < 60 for sx, sy in sign_spots):
            continue  # signs do not cover each other
        sid = ids()
        box = _draw_sign(p, rng, sid, x, y, scale, text)
        if box is not None:
            signs.append((sid, text, box))
            sign_spots.append((x, y))

    # chapter 4's new objects behind the floor objects, from their own generator (see the module doc)
    xr = np.random.default_rng([seed, 4]) if (cfg.new_classes or cfg.night_probability > 0) else None
    extinguishers, spills = [], []
    if cfg.new_classes:
        base_rng, p.rng = p.rng, xr  # the paint grain of new objects too comes from their generator
        sign_ids = [sid for sid, _, _ in signs]
        for _ in range(int(xr.integers(0, 3))):
            height = xr.uniform(30, 62)
            bottom = horizon - xr.uniform(6, 40)
            x = xr.uniform(0.04, 0.96) * cfg.width
            near = p.owner[max(0, int(bottom - height) - 4):int(bottom) + 4, max(0, int(x - height)):int(x + height)]
            if bottom - height < 4 or np.isin(near, sign_ids).any():
                continue  # no room under the ceiling, or it would cover a sign
            eid = ids()
            _extinguisher(p, xr, eid, x, bottom, height)
            extinguishers.append(eid)
        floor_colour = tuple(float(v) for v in p.canvas[min(cfg.height - 1, horizon + 8), 2])
        for _ in range(int(xr.integers(0, 3))):
            spill_id = ids()
            cy = horizon + xr.uniform(0.15, 0.95) * (cfg.height - horizon)
            size = (30 + (cy - horizon) / (cfg.height - horizon) * 150) * xr.uniform(0.7, 1.3)
            liquid = _spill(p, xr, spill_id, xr.uniform(0.05, 0.95) * cfg.width, cy, size, floor_colour)
            spills.append((spill_id, liquid))
        p.rng = base_rng

    # floor objects, far to near
    placements = []
    floor_span = cfg.height - horizon
    for kind, n in (("worker", int(rng.integers(1, cfg.max_workers + 1))),
                    (ObjectClass.FORKLIFT, int(rng.integers(0, cfg.max_forklifts + 1))),
                    (ObjectClass.PALLET, int(rng.integers(0, cfg.max_pallets + 1))),
                    ("cone", int(rng.integers(0, 3)))):
        for _ in range(n):
            foot_y = horizon + rng.uniform(0.12, 1.08) * floor_span
            placements.append((foot_y, kind, rng.uniform(-0.05, 1.05) * cfg.width))
    placements.sort(key=lambda t: (t[0], t[1], t[2]))

    workers, forklifts, pallets = [], [], []
    for foot_y, kind, x in placements:
        depth = (foot_y - horizon) / floor_span  # 0 at the horizon, 1 at the bottom edge
        person_h = 40 + depth * 0.62 * cfg.height
        if kind == "worker":
            height = person_h * rng.uniform(0.9, 1.1)
            workers.append(_worker(p, rng, ids, x, foot_y, height))
            if cfg.new_classes and xr.random() < cfg.goggles_probability:
                w = workers[-1]
                gid = ids()
                base_rng, p.rng = p.rng, xr
                w["goggles_id"] = gid if _goggles(p, xr, gid, w["id"], x, foot_y, height, w["facing"]) else None
                p.rng = base_rng
        elif kind == ObjectClass.FORKLIFT:
            forklifts.append(_forklift(p, rng, ids, x, foot_y, person_h * rng.uniform(1.0, 1.25)))
        elif kind == ObjectClass.PALLET:
            pid = ids()
            w = person_h * rng.uniform(0.55, 0.9)
            _pallet(p, rng, pid, x - w / 2, foot_y, w, loaded=rng.random() < 0.75)
            pallets.append(pid)
        else:
            _cone(p, rng, x, foot_y, person_h * 0.35)

    image, params = _post_process(p.canvas, rng)
    params["horizon"] = horizon
    if xr is not None and cfg.night_probability > 0 and xr.random() < cfg.night_probability:
        image, night = _night(image, xr, horizon)
        params |= night

    # masks from the owner map; a worker owns the hat and vest they wear
    children = {w["id"]: [c for c in (w["hat_id"], w["vest_id"], w.get("goggles_id")) if c] for w in workers}
    instances: list[Instance] = []

    def add(owner_id, label, attributes, parts=()):
        mask = p.owner == owner_id
        full = p.full_area.get(owner_id, 0)
        for c in parts:
            mask |= p.owner == c
            full += p.full_area.get(c, 0)
        area = int(mask.sum())
        if area < cfg.min_visible_pixels or full == 0 or area / full < cfg.min_visible_fraction:
            return None
        ys, xs = np.nonzero(mask)
        bbox = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        inst = Instance(owner_id, label, bbox, mask, attributes)
        instances.append(inst)
        return inst

    zone_poly = np.asarray(zone, np.float32)
    for w in workers:
        in_zone = cv2.pointPolygonTest(zone_poly, w["foot"], False) >= 0
        person = add(w["id"], ObjectClass.PERSON, {ObjectClass.HARD_HAT: w[ObjectClass.HARD_HAT],
                                                   ObjectClass.VEST: w[ObjectClass.VEST], "pose": w["pose"],
                                                   "facing": w["facing"], IN_ZONE: bool(in_zone),
                                         "hard_hat_id": w["hat_id"], "vest_id": w["vest_id"]}, children[w["id"]])
        worn_by = person.id if person else None
        if w["hat_id"]:
            add(w["hat_id"], ObjectClass.HARD_HAT, {"worn_by": worn_by})
        if w["vest_id"]:
            add(w["vest_id"], ObjectClass.VEST, {"worn_by": worn_by})
        if w.get("goggles_id"):
            add(w["goggles_id"], NewClass.SAFETY_GOGGLES, {"worn_by": worn_by})
    for f in forklifts:
        in_zone = cv2.pointPolygonTest(zone_poly, f["foot"], False) >= 0
        add(f["id"], ObjectClass.FORKLIFT, {"carrying_pallet": f["carrying_pallet"], "facing": f["facing"],
                                            IN_ZONE: bool(in_zone)})
        if f["pallet_id"]:
            add(f["pallet_id"], ObjectClass.PALLET, {"on_forklift": True})
    for pid in pallets:
        add(pid, ObjectClass.PALLET, {"on_forklift": False})
    for eid in extinguishers:
        add(eid, NewClass.FIRE_EXTINGUISHER, {"mount": "wall"})
    for spill_id, liquid in spills:
        add(spill_id, NewClass.SPILL, {"liquid": liquid})
    text_regions = []
    for sid, text, box in signs:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        readable = (p.owner[y1:y2, x1:x2] == sid).mean() >= 0.98  # text hidden behind something: no text label
        if add(sid, ObjectClass.SIGN, {"text": text if readable else None}) is not None and readable:
            text_regions.append(TextRegion(text, box, sid))
    instances.sort(key=lambda i: i.id)
    return Scene(image_id or f"scene_{seed}", seed, image, instances, text_regions,
                 {Zone.FORKLIFT_ZONE: zone}, params)
