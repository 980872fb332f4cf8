"""The shipped SafetyScenes, by scene id: image, ground truth, counts, zones, workers.

One accessor for what notebooks and modules used to reach by hand-built paths
(``repo_root() / "data" / "safetyscenes" / "ground_truth" / "test" / f"{name}.json"``)::

    from efsora_helpers.safetyscenes import shipped_scene
    scene = shipped_scene("test_0040")
    scene.image_path, scene.counts["workers_without_hard_hat"], scene.zones

Taught in ``notebooks/setup/safetyscenes.ipynb``; used by every chapter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")


def shipped_root() -> Path:
    """``data/safetyscenes`` in the checkout."""
    from ..paths import repo_root

    return repo_root() / "data" / "safetyscenes"


@dataclass(frozen=True)
class ShippedScene:
    """One shipped scene. ``scene_id`` is the file stem, e.g. ``test_0040``; the split is its prefix."""

    scene_id: str

    @property
    def split(self) -> str:
        return self.scene_id.split("_", 1)[0]

    @property
    def image_path(self) -> Path:
        return shipped_root() / "images" / self.split / f"{self.scene_id}.jpg"

    @property
    def ground_truth_path(self) -> Path:
        return shipped_root() / "ground_truth" / self.split / f"{self.scene_id}.json"

    @cached_property
    def ground_truth(self) -> dict[str, Any]:
        """The generator's exact ground truth (``safetyscenes-ground-truth/1``)."""
        return json.loads(self.ground_truth_path.read_text())

    @property
    def counts(self) -> dict[str, int]:
        return self.ground_truth["counts"]

    @property
    def zones(self) -> dict[str, list[list[float]]]:
        """Zone name -> polygon in image pixels (a fixed camera's configuration)."""
        return self.ground_truth["zones"]

    @property
    def workers(self) -> list[dict[str, Any]]:
        return self.ground_truth["workers"]

    def image(self):
        """The image as an OpenCV BGR array."""
        import cv2

        image = cv2.imread(str(self.image_path))
        if image is None:
            raise FileNotFoundError(f"cannot read {self.image_path}: run `git status data/` to check the checkout")
        return image


def shipped_scene(scene_id: str) -> ShippedScene:
    """The shipped scene ``scene_id`` (``test_0040``); a clear error names what exists."""
    split = scene_id.split("_", 1)[0]
    if split not in SPLITS:
        raise ValueError(f"scene ids look like 'test_0040' (split_number), got {scene_id!r}")
    scene = ShippedScene(scene_id)
    if not scene.ground_truth_path.exists():
        ids = shipped_scene_ids(split)
        raise ValueError(f"no shipped scene {scene_id!r}; the {split} split has {ids[0]}..{ids[-1]} "
                         f"({len(ids)} scenes)" if ids else f"no shipped scenes in split {split!r}")
    return scene


def shipped_scene_ids(split: str = "test") -> list[str]:
    """Scene ids of a split, sorted."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return sorted(p.stem for p in (shipped_root() / "ground_truth" / split).glob("*.json"))


def shipped_scenes(split: str = "test") -> list[ShippedScene]:
    return [ShippedScene(i) for i in shipped_scene_ids(split)]
