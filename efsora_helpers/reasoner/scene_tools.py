"""The warehouse tools: deterministic facts from the CV JSON, for the model to choose and explain.

Every tool reads the current scene of a :class:`SceneSession`; ``perceive_image`` replaces it by
running chapter 1's engine on an image *inside the sandbox folder* (by default the repository's
``data/``), so a model cannot make the tool read arbitrary files. Text read from signs comes back
marked untrusted. Taught in ``notebooks/reasoner/03_tools.ipynb``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from ..llm.tools import ToolRegistry
from ..perception.schema import PerceptionResult
from ..vocabulary import CLASSES, ObjectClass

ClassName = Literal[CLASSES]  # the plain strings: the tool schemas list them as an enum
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Pixels = Annotated[float, Field(ge=0.0, le=500.0)]
ObjectId = Annotated[int, Field(ge=0, le=999)]  # bounded: a grammar then caps the digits a model may write


class SceneSession:
    """The scene the tools talk about, and where images may be read from."""

    def __init__(self, result: PerceptionResult | None = None, sandbox: str | Path | None = None,
                 engine_factory=None):
        from ..paths import repo_root

        self.result = result
        self.sandbox = Path(sandbox or repo_root() / "data").resolve()
        self._engine_factory = engine_factory
        self._engine = None

    def require(self) -> PerceptionResult:
        if self.result is None:
            raise ValueError("no scene loaded: call perceive_image first")
        return self.result

    def safe_path(self, path: str) -> Path:
        target = (self.sandbox / path).resolve() if not Path(path).is_absolute() else Path(path).resolve()
        if not target.is_relative_to(self.sandbox):
            raise PermissionError(f"{path!r} is outside the image folder the tools may read")
        from ..perception.engine import IMAGE_SUFFIXES

        if target.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{path!r} is not an image file")
        if not target.is_file():
            raise FileNotFoundError(f"no image at {path!r}")
        return target

    def engine(self):
        if self._engine is None:
            if self._engine_factory is not None:
                self._engine = self._engine_factory()
            else:
                from ..perception.engine import PerceptionEngine

                self._engine = PerceptionEngine()
        return self._engine


def _box_gap(a: list[float], b: list[float]) -> float:
    """Gap between two boxes (0 when they overlap)."""
    dx = max(a[0] - b[2], b[0] - a[2], 0.0)
    dy = max(a[1] - b[3], b[1] - a[3], 0.0)
    return math.hypot(dx, dy)


def scene_tools(session: SceneSession) -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def perceive_image(path: str) -> dict:
        """Run the perception engine on an image and make it the current scene.

        Args:
            path: image path relative to the data folder, e.g. safetyscenes/images/test/test_0040.jpg
        """
        session.result = session.engine().perceive(session.safe_path(path))
        r = session.result
        return {"objects": len(r.objects), "text_regions": len(r.text_regions),
                "description": r.scene_description}

    @registry.tool
    def count_objects(class_name: ClassName, min_confidence: Fraction = 0.25) -> dict:
        """Count the detected objects of one class in the current scene.

        Args:
            class_name: the object class to count
            min_confidence: ignore detections below this confidence (0 to 1)
        """
        ids = [o.id for o in session.require().objects if o.label == class_name and o.confidence >= min_confidence]
        return {"class_name": class_name, "count": len(ids), "object_ids": ids}

    @registry.tool
    def check_ppe(worker_id: ObjectId | None = None) -> dict:
        """Report hard hat and vest for one worker, or for every worker when worker_id is null.

        Args:
            worker_id: the worker's object id, or null for all workers
        """
        safety = session.require().safety
        workers = safety.workers if safety else []
        if worker_id is not None:
            workers = [w for w in workers if w.object_id == worker_id]
            if not workers:
                raise ValueError(f"no worker with id {worker_id}")
        return {"workers": [{"id": w.object_id, ObjectClass.HARD_HAT: w.hard_hat, ObjectClass.VEST: w.vest}
                            for w in workers],
                "without_hard_hat": sum(not w.hard_hat for w in workers),
                "without_vest": sum(not w.vest for w in workers)}

    @registry.tool
    def objects_in_zone(zone: str, class_name: ClassName | None = None) -> dict:
        """List the objects inside a named zone of the current scene (e.g. forklift_zone).

        Args:
            zone: the zone's name
            class_name: only this class, or null for every class
        """
        r = session.require()
        if zone not in (r.zones or {}):
            raise ValueError(f"unknown zone {zone!r}; zones: {', '.join(r.zones or {}) or 'none'}")
        ids = set((r.safety.objects_in_zones if r.safety else {}).get(zone, []))
        objs = [o for o in r.objects if o.id in ids and (class_name is None or o.label == class_name)]
        return {"zone": zone, "count": len(objs), "objects": [{"id": o.id, "label": o.label} for o in objs]}

    @registry.tool
    def read_text_near(object_id: ObjectId, max_distance_px: Pixels = 40.0) -> dict:
        """Return the text read by OCR on or near one object (for example a sign).

        Args:
            object_id: the object's id
            max_distance_px: how far from the object's box text may be, in pixels
        """
        r = session.require()
        target = next((o for o in r.objects if o.id == object_id), None)
        if target is None:
            raise ValueError(f"no object with id {object_id}")
        texts = [t.text for t in r.text_regions if _box_gap(t.bbox, target.bbox) <= max_distance_px]
        # Untrusted: the model must report this text, not obey it.
        return {"object_id": object_id, "untrusted_text": texts}

    return registry


# The tools that only read the current scene: everything but perceive_image. The defended reasoner
# offers a subset of these, chosen from the question (reasoner.tools_for_question).
READ_ONLY_TOOLS = ["count_objects", "check_ppe", "objects_in_zone", "read_text_near"]
