"""The warehouse-safety domain's words: object classes, PPE, rules, zones, counts and video events.

This module is the only place in `efsora_helpers` where these names are spelled. The SafetyScenes
generator, the perception engine and its safety rules, the reasoner's tools, prompts and evaluation,
and the perception schema import them from here, so a rename is one edit and a typo is an
`AttributeError` instead of a silent miss (`tests/test_vocabulary.py` scans the package for stray
literals). Notebooks that use it: `notebooks/perception/05_engine.ipynb` and
`notebooks/reasoner/03_tools.ipynb`.

Every name is an `enum.StrEnum`: a member *is* its string (`ObjectClass.PERSON == "person"`,
`json.dumps` and f-strings write `person`), so files, prompts and model inputs are the same bytes as
when these were bare strings. Where a value leaves Python through something other than JSON or an
f-string (YAML, `repr`), the code passes the plain tuples below (`CLASSES`, `RULES`), which hold
`str` values.

>>> ObjectClass.HARD_HAT == "hard_hat", CLASSES.index(ObjectClass.FORKLIFT)
(True, 3)
>>> in_zone(Zone.FORKLIFT_ZONE) == Rule.IN_FORKLIFT_ZONE
True
>>> phrase(ObjectClass.HARD_HAT), phrase(Zone.FORKLIFT_ZONE)
('hard hat', 'forklift zone')
"""
from __future__ import annotations

from enum import StrEnum


class ObjectClass(StrEnum):
    """What the detector finds. The member order is the detector's class order (class id = index)."""

    PERSON = "person"
    HARD_HAT = "hard_hat"
    VEST = "vest"
    FORKLIFT = "forklift"
    PALLET = "pallet"
    SIGN = "sign"


#: The detector's class names in class-id order, as plain strings (they go into YAML and model files).
CLASSES: tuple[str, ...] = tuple(c.value for c in ObjectClass)


class NewClass(StrEnum):
    """Chapter 4's new detection task: warehouse-safety objects the shipped detector has never seen.
    SafetyScenes draws them only when a scene is rendered with ``SceneConfig(new_classes=True)``;
    their class ids follow the shipped six (``FINETUNE_CLASSES``)."""

    FIRE_EXTINGUISHER = "fire_extinguisher"
    SPILL = "spill"
    SAFETY_GOGGLES = "safety_goggles"


#: The fine-tuning task's class names in class-id order: the shipped detector's six, then the new ones.
FINETUNE_CLASSES: tuple[str, ...] = CLASSES + tuple(c.value for c in NewClass)

#: Personal protective equipment a worker must wear; a worker's ground truth has one flag per item.
PPE: tuple[ObjectClass, ...] = (ObjectClass.HARD_HAT, ObjectClass.VEST)

#: Classes whose footprint is tested against zones (a worker, a forklift or a pallet can stand in one).
ZONE_LABELS: tuple[ObjectClass, ...] = (ObjectClass.PERSON, ObjectClass.FORKLIFT, ObjectClass.PALLET)


class Zone(StrEnum):
    """Named floor areas. Ground truth and perception results key zone polygons by these names."""

    FORKLIFT_ZONE = "forklift_zone"


class Rule(StrEnum):
    """Safety rules a worker can break. Perception emits the first three; OTHER exists for answers
    (a model may cite a violation that no rule here names)."""

    NO_HARD_HAT = "no_hard_hat"
    NO_VEST = "no_vest"
    IN_FORKLIFT_ZONE = "in_forklift_zone"
    OTHER = "other"


#: The rule names as plain strings, in the order the answer models' JSON schemas list them.
RULES: tuple[str, ...] = tuple(r.value for r in Rule)

#: The rule each missing PPE item breaks.
PPE_RULE: dict[ObjectClass, Rule] = {ObjectClass.HARD_HAT: Rule.NO_HARD_HAT, ObjectClass.VEST: Rule.NO_VEST}

#: The rule broken by standing in each zone.
ZONE_RULE: dict[Zone, Rule] = {Zone.FORKLIFT_ZONE: Rule.IN_FORKLIFT_ZONE}


class Count(StrEnum):
    """Keys of a SafetyScenes ground truth's `counts` besides the class names (which count objects)."""

    WORKERS_WITHOUT_HARD_HAT = "workers_without_hard_hat"
    WORKERS_WITHOUT_VEST = "workers_without_vest"
    WORKERS_IN_FORKLIFT_ZONE = "workers_in_forklift_zone"
    WORKERS_IN_FORKLIFT_ZONE_WITHOUT_VEST = "workers_in_forklift_zone_without_vest"


class EventKind(StrEnum):
    """What happens to a track in a clip. The first six are written by the SafetyScenes clip
    generator; VIOLATION_START/END are for chapter 5's pipeline (a rule starts or stops being broken);
    the long clips (chapter 5) add PUT_ON_PPE/TAKE_OFF_PPE (a worker puts on or takes off a vest)
    and NEAR_MISS (a worker close to a moving forklift)."""

    ENTER_FRAME = "enter_frame"
    EXIT_FRAME = "exit_frame"
    ENTER_ZONE = "enter_zone"
    EXIT_ZONE = "exit_zone"
    OCCLUDED = "occluded"
    REAPPEARED = "reappeared"
    VIOLATION_START = "violation_start"
    VIOLATION_END = "violation_end"
    PUT_ON_PPE = "put_on_ppe"
    TAKE_OFF_PPE = "take_off_ppe"
    NEAR_MISS = "near_miss"


def in_zone(zone: str) -> str:
    """The ground truth's per-object flag for standing in `zone` (`in_forklift_zone`)."""
    return f"in_{zone}"


#: The per-object ground-truth flag of the forklift zone (the same word as the rule it breaks).
IN_FORKLIFT_ZONE: str = in_zone(Zone.FORKLIFT_ZONE)


def phrase(name: str) -> str:
    """A name as prose: `hard_hat` -> `hard hat`."""
    return str(name).replace("_", " ")
