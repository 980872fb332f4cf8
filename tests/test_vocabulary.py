"""The vocabulary (efsora_helpers/vocabulary.py) is the only place the domain's words are spelled,
and it agrees with the shipped dataset, the clips, the detector and the reasoner's schemas."""

import ast
import json
from pathlib import Path

import pytest

from efsora_helpers.paths import repo_root
from efsora_helpers.vocabulary import (
    CLASSES,
    IN_FORKLIFT_ZONE,
    PPE,
    PPE_RULE,
    RULES,
    ZONE_LABELS,
    ZONE_RULE,
    Count,
    EventKind,
    ObjectClass,
    Rule,
    Zone,
    in_zone,
)

ROOT = repo_root()
PACKAGE = ROOT / "efsora_helpers"
DATA = ROOT / "data" / "safetyscenes"
# "other" is Rule.OTHER's value but also plain English; the scan leaves it alone.
WORDS = ({c.value for c in ObjectClass} | {r.value for r in Rule if r is not Rule.OTHER} | {z.value for z in Zone}
         | {c.value for c in Count} | {e.value for e in EventKind} | {IN_FORKLIFT_ZONE})


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings (first statement of a module, class or def)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                out.add(id(value))
    return out


def stray_literals(source: str) -> list[tuple[int, str]]:
    """(line, word) of every string constant that is a vocabulary word, docstrings excluded."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in WORDS
            and id(node) not in docs]


def test_no_module_spells_a_vocabulary_word():
    files = [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "vocabulary.py"]
    assert len(files) > 40
    found = [f"{p.relative_to(ROOT)}:{line}: {word!r}" for p in files for line, word in stray_literals(p.read_text())]
    assert not found, "import these from efsora_helpers.vocabulary instead:\n" + "\n".join(found)


def test_the_scan_catches_a_literal_and_skips_docstrings():
    source = ('"""A person in the forklift_zone."""\n\ndef f(o):\n    """forklift_zone"""\n'
              '    return o.label == "person" or f"{o} vest" or "in_forklift_zone"\n')
    assert sorted(stray_literals(source)) == [(5, "in_forklift_zone"), (5, "person")]


def test_members_are_their_strings():
    assert ObjectClass.HARD_HAT == "hard_hat" and json.dumps({ObjectClass.VEST: [Zone.FORKLIFT_ZONE]}) == \
        '{"vest": ["forklift_zone"]}'
    assert f"{Rule.NO_VEST}" == "no_vest" and all(type(c) is str for c in CLASSES + RULES)
    assert CLASSES == tuple(ObjectClass) and RULES == tuple(Rule)
    assert IN_FORKLIFT_ZONE == in_zone(Zone.FORKLIFT_ZONE) == Rule.IN_FORKLIFT_ZONE
    assert set(PPE_RULE) == set(PPE) and set(ZONE_RULE) == set(Zone)
    assert set(ZONE_LABELS) <= set(ObjectClass)


def test_classes_match_the_dataset_yaml():
    import yaml

    names = yaml.safe_load((DATA / "data.yaml").read_text())["names"]
    assert [names[i] for i in sorted(names)] == list(CLASSES)


def test_ground_truth_uses_the_vocabulary():
    files = sorted((DATA / "ground_truth").rglob("*.json"))
    assert len(files) >= 300
    zones, counts, worker_keys = set(), set(), set()
    for path in files:
        gt = json.loads(path.read_text())
        zones |= set(gt["zones"])
        counts |= set(gt["counts"])
        for w in gt["workers"]:
            worker_keys |= set(w)
        assert {o["label"] for o in gt["objects"]} <= set(CLASSES)
    assert zones == {z.value for z in Zone}
    assert counts == set(CLASSES) | {c.value for c in Count}
    assert {*PPE, IN_FORKLIFT_ZONE} <= worker_keys


def test_clips_use_the_vocabulary():
    for meta in sorted((DATA / "video").glob("*_meta.json")):
        name = meta.name.removesuffix("_meta.json")
        assert json.loads(meta.read_text())["classes"] == list(CLASSES)
        events = json.loads((DATA / "video" / f"{name}_events.json").read_text())
        assert {e["type"] for e in events} <= {k.value for k in EventKind}
        assert {e["zone"] for e in events if "zone" in e} <= {z.value for z in Zone}
        assert set(json.loads((DATA / "video" / f"{name}_zones.json").read_text())) == {z.value for z in Zone}


@pytest.mark.parametrize("task", ["det", "seg"])
def test_detector_class_names_are_the_vocabulary(task):
    from ultralytics import YOLO

    model = YOLO(str(ROOT / "data" / "models" / f"safetyscenes-yolov8n-{task}.pt"))
    assert [model.names[i] for i in sorted(model.names)] == list(CLASSES)


def test_reasoner_schemas_list_the_vocabulary():
    from efsora_helpers.reasoner.scene_tools import SceneSession, scene_tools
    from efsora_helpers.reasoner.structured import SceneAnalysis, schema_of

    rule = schema_of(SceneAnalysis)["$defs"]["SafetyViolation"]["properties"]["rule"]
    assert rule["enum"] == list(RULES)
    count = next(s for s in scene_tools(SceneSession()).specs() if s.name == "count_objects")
    assert count.parameters["properties"]["class_name"]["enum"] == list(CLASSES)
