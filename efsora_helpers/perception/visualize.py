"""Draw a :class:`PerceptionResult` on its image: boxes by class, workers coloured by PPE status,
zones, masks and text regions. Used by the chapter's notebooks and, later, the Gradio demo.

Taught in ``notebooks/perception/05_engine.ipynb``.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..vocabulary import ObjectClass
from .schema import PerceptionResult, decode_mask

# BGR colours; workers: green = hard hat and vest, orange = one missing, red = both missing
CLASS_COLOURS = {ObjectClass.PERSON: (200, 200, 200), ObjectClass.HARD_HAT: (0, 220, 255),
                 ObjectClass.VEST: (0, 140, 255), ObjectClass.FORKLIFT: (255, 120, 0),
                 ObjectClass.PALLET: (60, 120, 180), ObjectClass.SIGN: (200, 0, 200)}
PPE_COLOURS = {2: (60, 180, 60), 1: (0, 160, 255), 0: (40, 40, 230)}


def draw_result(bgr: np.ndarray, result: PerceptionResult, masks: bool = True, labels: bool = True) -> np.ndarray:
    """A copy of ``bgr`` (BGR, original size) with the result drawn on it."""
    out = bgr.copy()
    for name, polygon in result.zones.items():
        pts = np.round(np.asarray(polygon)).astype(np.int32)
        layer = out.copy()
        cv2.fillPoly(layer, [pts], (0, 200, 255))
        out = cv2.addWeighted(layer, 0.18, out, 0.82, 0)
        cv2.polylines(out, [pts], True, (0, 200, 255), 2)
    if masks:
        for s in result.segments:
            if s.mask is not None:
                m = decode_mask(s.mask)
                colour = np.array(CLASS_COLOURS.get(s.label, (255, 255, 255)), np.float32)
                out[m] = (0.55 * out[m] + 0.45 * colour).astype(np.uint8)
    status = {w.object_id: int(w.hard_hat) + int(w.vest) for w in (result.safety.workers if result.safety else [])}
    for o in result.objects:
        x1, y1, x2, y2 = (int(round(v)) for v in o.bbox)
        colour = PPE_COLOURS[status[o.id]] if o.id in status else CLASS_COLOURS.get(o.label, (255, 255, 255))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 3 if o.id in status else 2)
        if labels:
            cv2.putText(out, f"{o.label} {o.confidence:.2f}", (x1 + 2, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.42, colour, 1, cv2.LINE_AA)
    for t in result.text_regions:
        x1, y1, x2, y2 = (int(round(v)) for v in t.bbox)
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 0), 1)
        if labels:
            cv2.putText(out, t.text[:24], (x1, min(out.shape[0] - 4, y2 + 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (255, 255, 0), 1, cv2.LINE_AA)
    return out
