"""Write the schema's JSON Schemas and example results to ``data/perception/`` so later chapters
(the reasoner, the agent, the API) can start from real outputs without running chapter 1.

    python -m efsora_helpers.perception.examples

The examples are the engine's actual output on SafetyScenes test scenes (the book's models,
EasyOCR, the scene's forklift lane as a zone); only ``processing_time`` changes between runs.
Taught in ``notebooks/perception/05_engine.ipynb``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..paths import repo_root
from .schema import PerceptionResult, write_json_schemas

# Test scenes: a lone worker without PPE; two workers without hard hats and two signs; three
# workers, two in the forklift lane; a crowded scene where the engine miscounts the lane (honest).
EXAMPLE_SCENES = ("test_0015", "test_0040", "test_0054", "test_0009")


def perception_data_dir() -> Path:
    return repo_root() / "data" / "perception"


def scene_ground_truth(name: str, split: str = "test") -> dict:
    """The generator's ground truth of one SafetyScenes image (``data/safetyscenes/ground_truth``)."""
    gt = repo_root() / "data" / "safetyscenes" / "ground_truth" / split / f"{name}.json"
    return json.loads(gt.read_text())


def scene_zones(name: str, split: str = "test") -> dict:
    """The forklift lane of a SafetyScenes image, from its ground truth (a fixed camera's zones are
    configuration, drawn once per camera; the renderer knows them exactly)."""
    return scene_ground_truth(name, split)["zones"]


def scene_image(name: str, split: str = "test") -> Path:
    """A SafetyScenes image, relative to the repository root (the form results record)."""
    return Path("data/safetyscenes/images") / split / f"{name}.jpg"


def perceive_scene(engine, name: str, split: str = "test", **overrides) -> PerceptionResult:
    """``engine`` on one SafetyScenes image with the scene's forklift lane as a zone; the result's
    ``image_path`` is repository-relative. ``overrides`` change other engine settings."""
    image = scene_image(name, split)
    scene_engine = engine.derive(zones=scene_zones(name, split), **overrides)
    return scene_engine.perceive(repo_root() / image, image_path=image.as_posix())


def write_examples(names=EXAMPLE_SCENES) -> list[Path]:
    from ..env import prepare_offline_environment, seed_everything
    from .engine import PerceptionEngine

    prepare_offline_environment()
    seed_everything(0)
    out_dir = perception_data_dir()
    written = write_json_schemas(out_dir)
    engine = PerceptionEngine()
    for k, name in enumerate(names):
        # one example carries masks, so consumers see the RLE format
        result = perceive_scene(engine, name, include_masks=k == 0)
        path = out_dir / "examples" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.to_json() + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_examples():
        print("wrote", p.relative_to(repo_root()))
