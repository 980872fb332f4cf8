"""Pictures for chapter 5: a clip's event timeline and frames with their ground-truth boxes.

Taught in ``notebooks/video/01_frames.ipynb``.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..vocabulary import EventKind, ObjectClass
from .sampling import event_windows

#: Colour of the state each event starts (matplotlib names); states not listed are not drawn.
STATE_COLOURS = {EventKind.ENTER_ZONE: "tab:orange", EventKind.OCCLUDED: "tab:grey",
                 EventKind.EXIT_FRAME: "whitesmoke", EventKind.TAKE_OFF_PPE: "tab:red",
                 EventKind.NEAR_MISS: "black"}
STATE_NAMES = {EventKind.ENTER_ZONE: "in the forklift zone", EventKind.OCCLUDED: "hidden",
               EventKind.EXIT_FRAME: "out of view", EventKind.TAKE_OFF_PPE: "vest off",
               EventKind.NEAR_MISS: "near miss"}


def timeline(ax, events: list[dict], n_frames: int, fps: float, title: str = "", tracks=None) -> None:
    """One row per track: bars for the states the events start (zone, hidden, out of view, vest off)
    and a marker per near miss. A track out of view, or a worker without a vest, from the first frame
    has its bar from 0."""
    tracks = sorted({e["track_id"] for e in events}) if tracks is None else tracks
    row = {t: i for i, t in enumerate(tracks)}
    for w in event_windows(events, n_frames):
        kind, t = w.event["type"], w.event["track_id"]
        if kind not in STATE_COLOURS or t not in row:
            continue
        if kind == EventKind.NEAR_MISS:
            ax.plot(w.start / fps, row[t], marker="X", color="black", markersize=9, zorder=5)
            continue
        height = 0.5 if kind == EventKind.TAKE_OFF_PPE else 0.8
        ax.broken_barh([(w.start / fps, (w.end - w.start) / fps)], (row[t] - height / 2, height),
                       facecolors=STATE_COLOURS[kind], edgecolor="grey" if kind == EventKind.EXIT_FRAME else "none",
                       alpha=0.9, zorder=2 if kind == EventKind.TAKE_OFF_PPE else 1)
    for t in tracks:  # out of view from the first frame: until the first enter_frame
        edge = next((e for e in events if e["track_id"] == t and e["type"] in (EventKind.ENTER_FRAME, EventKind.EXIT_FRAME)),
                    None)
        if edge is not None and edge["type"] == EventKind.ENTER_FRAME:
            ax.broken_barh([(0, edge["frame"] / fps)], (row[t] - 0.4, 0.8), facecolors=STATE_COLOURS[EventKind.EXIT_FRAME],
                           edgecolor="grey", alpha=0.9, zorder=1)
    for t in tracks:  # no vest from the first frame: until the first put_on_ppe
        first = next((e for e in events if e["track_id"] == t), None)
        if first is None or ObjectClass.VEST not in first or first["type"] == EventKind.TAKE_OFF_PPE:
            continue
        if first["type"] == EventKind.PUT_ON_PPE or not first[ObjectClass.VEST]:
            end = next((e["frame"] for e in events if e["track_id"] == t and e["type"] == EventKind.PUT_ON_PPE),
                       n_frames)
            ax.broken_barh([(0, end / fps)], (row[t] - 0.25, 0.5), facecolors=STATE_COLOURS[EventKind.TAKE_OFF_PPE],
                           alpha=0.9, zorder=2)
    ax.set_yticks(range(len(tracks)), [f"id {t}" for t in tracks])
    ax.set_xlim(0, n_frames / fps)
    ax.set_ylim(-0.7, len(tracks) - 0.3)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9, loc="left")
    ax.grid(axis="x", alpha=0.3)


def draw_truth(image: np.ndarray, boxes, classes: list[str]) -> np.ndarray:
    """A copy of ``image`` with ground-truth boxes and ids (from :func:`.frames.truth_boxes`)."""
    out = image.copy()
    colours = {0: (60, 200, 60), 3: (0, 140, 255), 4: (200, 120, 40)}
    for tid, cls, (x1, y1, x2, y2), vis in boxes:
        c = colours.get(cls, (220, 220, 220))
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), c, 2)
        cv2.putText(out, f"{tid} {classes[cls]}", (int(x1) + 2, max(12, int(y1) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, c, 1, cv2.LINE_AA)
    return out
