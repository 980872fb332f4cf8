"""Warehouse rules on top of detection: who wears a hard hat and a vest, what stands in a zone, and a
plain-language scene description. Geometry only, deterministic, so an LLM (chapter 2) can be asked
to *explain* facts it did not have to compute.

Taught in ``notebooks/perception/05_engine.ipynb``.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import cv2
import numpy as np

from ..vocabulary import IN_FORKLIFT_ZONE, PPE, PPE_RULE, ZONE_LABELS, ZONE_RULE, Count, ObjectClass, Zone, phrase
from .schema import DetectedObject, SafetySummary, TextRegion, Violation, WorkerStatus

# A hard hat belongs to a person when its centre is inside the person's box, in the top part
# (a hat on a shelf behind someone is not worn); a vest when its centre is in the torso band.
# Bands as fractions of the person's height from the top; the hat band was chosen on the
# validation split (per-worker hard-hat agreement 0.805 -> 0.829 against (0.0, 0.35)).
HAT_BAND = (-0.1, 0.2)
VEST_BAND = (0.15, 0.75)


def ground_point(bbox: Sequence[float]) -> tuple[float, float]:
    """Where an object touches the floor in an upright camera view: the bottom centre of its box."""
    x1, _, x2, y2 = bbox
    return (x1 + x2) / 2.0, y2 - 1.0


def in_polygon(point: tuple[float, float], polygon: Sequence[Sequence[float]]) -> bool:
    return cv2.pointPolygonTest(np.asarray(polygon, np.float32), (float(point[0]), float(point[1])), False) >= 0


def _worn(item: DetectedObject, person: DetectedObject, band: tuple[float, float]) -> bool:
    px1, py1, px2, py2 = person.bbox
    cx, cy = (item.bbox[0] + item.bbox[2]) / 2, (item.bbox[1] + item.bbox[3]) / 2
    top, bottom = py1 + band[0] * (py2 - py1), py1 + band[1] * (py2 - py1)
    return px1 <= cx <= px2 and top <= cy <= bottom


def _assign(items: list[DetectedObject], persons: list[DetectedObject], band) -> set[int]:
    """Person ids that wear one of ``items``; each item goes to at most one person (the one whose
    band centre is nearest), so one hat cannot make two overlapping workers compliant."""
    wearing = set()
    for item in items:
        candidates = [p for p in persons if _worn(item, p, band)]
        if candidates:
            cy = (item.bbox[1] + item.bbox[3]) / 2
            best = min(candidates, key=lambda p: abs(p.bbox[1] + (band[0] + band[1]) / 2 * (p.bbox[3] - p.bbox[1]) - cy))
            wearing.add(best.id)
    return wearing


def analyze(objects: list[DetectedObject], zones: dict[str, list] | None = None) -> SafetySummary:
    """PPE per worker, objects per zone and the violations, from detected boxes."""
    zones = zones or {}
    persons = [o for o in objects if o.label == ObjectClass.PERSON]
    with_hat = _assign([o for o in objects if o.label == ObjectClass.HARD_HAT], persons, HAT_BAND)
    with_vest = _assign([o for o in objects if o.label == ObjectClass.VEST], persons, VEST_BAND)
    in_zones = {name: [o.id for o in objects if o.label in ZONE_LABELS and in_polygon(ground_point(o.bbox), poly)]
                for name, poly in zones.items()}
    workers = [WorkerStatus(object_id=p.id, bbox=p.bbox, hard_hat=p.id in with_hat, vest=p.id in with_vest,
                            zones=[z for z, ids in in_zones.items() if p.id in ids]) for p in persons]
    violations = []
    for w in workers:
        worn = ((ObjectClass.HARD_HAT, w.hard_hat), (ObjectClass.VEST, w.vest))
        missing = [phrase(item) for item, ok in worn if not ok]
        where = f" in the {', '.join(z.replace('_', ' ') for z in w.zones)}" if w.zones else ""
        if missing:
            violations.append(f"worker {w.object_id}{where} has no {' and no '.join(missing)}")
    for name, ids in in_zones.items():
        pallets = [i for i in ids if next(o for o in objects if o.id == i).label == ObjectClass.PALLET]
        if pallets and ObjectClass.FORKLIFT in name:
            violations.append(f"{_plural(len(pallets), phrase(ObjectClass.PALLET))} in the {name.replace('_', ' ')}")
    return SafetySummary(workers=workers, workers_without_hard_hat=sum(not w.hard_hat for w in workers),
                         workers_without_vest=sum(not w.vest for w in workers), objects_in_zones=in_zones,
                         violations=violations, rule_violations=rule_violations(workers))


def rule_violations(workers: list[WorkerStatus]) -> list[Violation]:
    """The violations typed, per worker in order: each missing PPE item, then each zone with a rule.
    A PPE violation names the zone the worker stands in (the first, if several)."""
    out = []
    for w in workers:
        where = w.zones[0] if w.zones else None
        for item, worn in ((ObjectClass.HARD_HAT, w.hard_hat), (ObjectClass.VEST, w.vest)):
            if not worn:
                out.append(Violation(worker_id=w.object_id, rule=PPE_RULE[item], zone=where, bbox=w.bbox,
                                     evidence=f"no {phrase(item)} detected on worker {w.object_id}"))
        x, y = ground_point(w.bbox)
        for zone in w.zones:
            if zone in ZONE_RULE:
                evidence = f"worker {w.object_id} stands in the {phrase(zone)} at ({x:.0f}, {y:.0f})"
                out.append(Violation(worker_id=w.object_id, rule=ZONE_RULE[zone], zone=zone, bbox=w.bbox,
                                     evidence=evidence))
    return out


def _plural(n: int, word: str) -> str:
    irregular = {ObjectClass.PERSON: "people"}
    return f"{n} {word if n == 1 else irregular.get(word, word + 's')}"


def describe(objects: list[DetectedObject], text_regions: list[TextRegion], safety: SafetySummary | None,
             stages: list[str]) -> str:
    """A few sentences a person (or an LLM prompt) can read; built from the facts, not generated."""
    parts = []
    if "detection" in stages or objects:
        counts = Counter(o.label for o in objects if o.label not in PPE)
        order = [ObjectClass.PERSON, ObjectClass.FORKLIFT, ObjectClass.PALLET, ObjectClass.SIGN]
        listed = [_plural(counts[k], k.replace("_", " ")) for k in sorted(counts, key=lambda k: (k not in order, order.index(k) if k in order else 0, k))]
        parts.append(("Detected " + ", ".join(listed) + ".") if listed else "No objects detected.")
    if safety is not None and safety.workers:
        n = len(safety.workers)
        ppe = []
        if safety.workers_without_hard_hat:
            ppe.append(f"{safety.workers_without_hard_hat} of {n} without a hard hat")
        if safety.workers_without_vest:
            ppe.append(f"{safety.workers_without_vest} of {n} without a vest")
        parts.append(("Workers: " + "; ".join(ppe) + ".") if ppe else f"All {n} workers wear a hard hat and a vest.")
        for zone, ids in safety.objects_in_zones.items():
            people = [w for w in safety.workers if zone in w.zones]
            if people:
                parts.append(f"{_plural(len(people), 'worker')} in the {zone.replace('_', ' ')}.")
    # The text itself stays in text_regions: OCR output is untrusted, and keeping it out of the
    # description keeps every untrusted string in one field that chapter 2 delimits.
    if text_regions or "ocr" in stages:
        parts.append(f"{_plural(len(text_regions), 'text region')} read." if text_regions else "No text read.")
    return " ".join(parts)


def compare_with_ground_truth(safety: SafetySummary, truth: dict, iou_threshold: float = 0.5) -> dict:
    """Per-worker agreement with a SafetyScenes ground-truth JSON: true workers matched to detected
    ones (greedy by IoU), then hard hat, vest and zone compared on the matched pairs; plus whether
    the image-level counts a safety officer would read are exactly right."""
    from .metrics import box_iou

    def iou(a, b) -> float:
        return float(box_iou([a], [b])[0, 0])

    predicted = list(safety.workers)
    pairs = []
    for t in sorted(truth["workers"], key=lambda w: -(w["bbox"][2] - w["bbox"][0]) * (w["bbox"][3] - w["bbox"][1])):
        best = max(predicted, key=lambda p: iou(p.bbox, t["bbox"]), default=None)
        if best is not None and iou(best.bbox, t["bbox"]) >= iou_threshold:
            pairs.append((t, best))
            predicted.remove(best)
    counts = truth["counts"]
    return {
        "true_workers": len(truth["workers"]),
        "found": len(pairs),
        "extra": len(predicted),
        "hard_hat_right": sum(t[ObjectClass.HARD_HAT] == p.hard_hat for t, p in pairs),
        "vest_right": sum(t[ObjectClass.VEST] == p.vest for t, p in pairs),
        "zone_right": sum(t[IN_FORKLIFT_ZONE] == (Zone.FORKLIFT_ZONE in p.zones) for t, p in pairs),
        "no_hard_hat_count_exact": counts[Count.WORKERS_WITHOUT_HARD_HAT] == safety.workers_without_hard_hat,
        "no_vest_count_exact": counts[Count.WORKERS_WITHOUT_VEST] == safety.workers_without_vest,
    }
