"""Schema 1.1.0: typed violations, the video types, the exported JSON Schemas, and 1.0.0 files
that still load (efsora_helpers/perception/schema.py; notebooks/perception/05_engine.ipynb)."""

import json

import jsonschema
import pytest
from pydantic import ValidationError

from efsora_helpers.paths import repo_root
from efsora_helpers.perception.safety import analyze, rule_violations
from efsora_helpers.perception.schema import (
    SCHEMA_FILES,
    SCHEMA_VERSION,
    FrameResult,
    PerceptionResult,
    TrackedObject,
    TrackEvent,
    load_result,
    schema_text,
)
from efsora_helpers.vocabulary import EventKind, Rule, Zone

ROOT = repo_root()
V1_0 = ROOT / "tests" / "fixtures" / "perception-1.0.0"
EXAMPLES = sorted((ROOT / "data" / "perception" / "examples").glob("*.json"))


@pytest.mark.parametrize("file", sorted(SCHEMA_FILES))
def test_exported_schema_files_are_current(file):
    model, name = SCHEMA_FILES[file]
    committed = (ROOT / "data" / "perception" / file).read_text()
    assert committed == schema_text(model, name), "run `python -m efsora_helpers.perception.examples`"
    assert json.loads(committed)["$id"].endswith(f"/{name}/{SCHEMA_VERSION}.json")


def test_version_is_1_2_and_the_examples_are_written_with_it():
    assert SCHEMA_VERSION == "1.2.0"
    assert len(EXAMPLES) == 4
    for path in EXAMPLES:
        assert load_result(path).schema_version == SCHEMA_VERSION


def _v1_files():
    files = sorted(V1_0.glob("test_*.json")) + sorted((ROOT / "data" / "reasoner").rglob("*.json"))
    return [f for f in files if f.name != "questions.json"]


@pytest.mark.parametrize("path", _v1_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_files_written_as_1_0_0_still_load(path):
    result = load_result(path)
    assert result.schema_version == "1.0.0"
    assert result.safety is None or result.safety.rule_violations == []
    # and the current JSON Schema accepts them as they are
    jsonschema.validate(json.loads(path.read_text()), json.loads(schema_text()))


def test_the_1_0_0_examples_are_the_1_1_0_examples_without_the_new_field():
    for path in EXAMPLES:
        old = json.loads((V1_0 / path.name).read_text())
        new = json.loads(path.read_text())
        for d in (old, new):
            del d["schema_version"], d["processing_time"]
        del new["safety"]["rule_violations"]
        assert old == new, path.name


def test_a_newer_major_version_is_refused_clearly():
    data = json.loads(EXAMPLES[0].read_text()) | {"schema_version": "2.0.0"}
    with pytest.raises(ValidationError, match="schema_version 2.0.0 cannot be read"):
        PerceptionResult.model_validate(data)
    assert PerceptionResult.model_validate(data | {"schema_version": "1.7.2"}).schema_version == "1.7.2"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_typed_violations_agree_with_the_workers_and_the_sentences(path):
    result = load_result(path)
    safety = result.safety
    assert safety.rule_violations == rule_violations(safety.workers)
    assert analyze(result.objects, result.zones) == safety
    by_rule = {r: {v.worker_id for v in safety.rule_violations if v.rule is r} for r in Rule}
    assert len(by_rule[Rule.NO_HARD_HAT]) == safety.workers_without_hard_hat
    assert len(by_rule[Rule.NO_VEST]) == safety.workers_without_vest
    assert by_rule[Rule.IN_FORKLIFT_ZONE] == {w.object_id for w in safety.workers if Zone.FORKLIFT_ZONE in w.zones}
    workers = {w.object_id: w for w in safety.workers}
    for v in safety.rule_violations:
        assert v.bbox == workers[v.worker_id].bbox and str(v.worker_id) in v.evidence
        assert v.zone == (workers[v.worker_id].zones or [None])[0]
    # every worker a sentence names has a typed violation
    named = {int(s.split()[1]) for s in safety.violations if s.startswith("worker ")}
    assert named <= {v.worker_id for v in safety.rule_violations}


def test_frame_and_event_types_round_trip_and_validate():
    frame = FrameResult(source="cam.webm", frame_index=3, timestamp_s=0.2,
                        objects=[TrackedObject(id=0, track_id=7, label="person", confidence=0.9, bbox=[1, 2, 30, 40])])
    event = TrackEvent(frame=3, time_s=0.2, track_id=7, label="person", kind=EventKind.VIOLATION_START,
                       zone=Zone.FORKLIFT_ZONE, rule=Rule.NO_VEST, evidence="worker 7 has no vest")
    for value, file in ((frame, "frame_result.schema.json"), (event, "track_event.schema.json")):
        text = value.model_dump_json()
        assert type(value).model_validate_json(text) == value
        jsonschema.validate(json.loads(text), json.loads((ROOT / "data" / "perception" / file).read_text()))
    with pytest.raises(ValidationError):
        TrackEvent(frame=0, time_s=0, track_id=1, label="person", kind="teleported")
