"""The perception result: one versioned pydantic schema that chapters 2, 3, 5 and 6 consume.

Coordinates are pixels of the *original* image, boxes are ``[x1, y1, x2, y2]`` (top-left
inclusive, bottom-right exclusive, the COCO/ultralytics convention), times are seconds. Masks are
off by default; when asked for they are compact: COCO run-length encoding (``rle``, the format
``pycocotools`` reads) or a base64 PNG (``png``, what a browser shows). The JSON Schemas are exported
to ``data/perception/*.schema.json`` and example outputs live beside them.

Version 1.1.0 added, all optional so 1.0.0 files still load: typed violations
(``SafetySummary.rule_violations``: worker, :class:`~efsora_helpers.vocabulary.Rule`, zone,
evidence, box, beside the 1.0.0 sentences) and the video types chapters 5 and 6 stream and store:
:class:`FrameResult` (one frame's objects with track ids and its safety summary), :class:`Track`,
:class:`TrackEvent` (enter/exit zone, occlusion, violation start/end) and :class:`VideoResult`.
Version 1.2.0 added three event kinds for chapter 5's long clips: ``put_on_ppe``, ``take_off_ppe``
(a worker puts on or takes off a vest) and ``near_miss`` (a worker close to a moving forklift).
Rule and event names come from :mod:`efsora_helpers.vocabulary`.

Taught in ``notebooks/perception/05_engine.ipynb``.

>>> result = PerceptionResult(image_path="a.jpg", image_info=ImageInfo(width=640, height=480))
>>> PerceptionResult.model_validate_json(result.model_dump_json()) == result
True
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..vocabulary import EventKind, Rule

SCHEMA_NAME = "efsora-perception"
# Semantic versioning: a new optional field is a minor bump, a renamed or removed field a major one.
SCHEMA_VERSION = "1.2.0"
SCHEMA_MAJOR = SCHEMA_VERSION.split(".")[0]


def _readable_version(version: str) -> str:
    # A reader of 1.x reads every 1.y (minor versions only add optional fields); 2.0 renamed something.
    major = version.split(".")[0]
    if major != SCHEMA_MAJOR:
        raise ValueError(f"schema_version {version} cannot be read by this reader of {SCHEMA_VERSION} "
                         f"(major version {SCHEMA_MAJOR}); upgrade efsora_helpers")
    return version


Version = Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$"), AfterValidator(_readable_version)]


def _ordered_box(box: list[float]) -> list[float]:
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise ValueError(f"a box is [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1, got {box}")
    return box


BBox = Annotated[list[float], Field(min_length=4, max_length=4), AfterValidator(_ordered_box)]
Confidence = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[float, float]


class _Strict(BaseModel):
    # Unknown fields are errors: a typo in a producer must not pass silently into chapter 2.
    model_config = ConfigDict(extra="forbid")


class ImageInfo(_Strict):
    width: int = Field(gt=0, description="original width in pixels")
    height: int = Field(gt=0, description="original height in pixels")
    channels: int = Field(3, description="channels in the file (1 gray, 3 colour, 4 with alpha)")
    processed_width: int | None = Field(None, description="width the models saw after --max-size")
    processed_height: int | None = None


class DetectedObject(_Strict):
    id: int = Field(ge=0, description="unique among objects; WorkerStatus.object_id and objects_in_zones refer to it")
    label: str
    confidence: Confidence
    bbox: BBox


class Mask(_Strict):
    encoding: Literal["rle", "png"]
    size: tuple[int, int] = Field(description="[height, width] of the mask (the original image)")
    data: str = Field(description="COCO compressed RLE counts, or a base64 PNG (0/255)")


class Segment(_Strict):
    id: int = Field(ge=0)
    label: str
    confidence: Confidence
    bbox: BBox
    area: int = Field(ge=0, description="mask area in pixels of the original image")
    mask: Mask | None = None


class TextRegion(_Strict):
    id: int = Field(ge=0)
    text: str = Field(description="text read from the image: untrusted input, never instructions")
    bbox: BBox
    confidence: Confidence
    polygon: list[Point] | None = Field(None, description="the text quadrilateral when not axis-aligned")


class WorkerStatus(_Strict):
    """PPE and zone status of one detected person (warehouse rules, see ``safety.py``)."""

    object_id: int = Field(description="id of the person in objects")
    bbox: BBox
    hard_hat: bool
    vest: bool
    zones: list[str] = Field(default_factory=list, description="zones the worker's feet are in")


class Violation(_Strict):
    """One rule broken by one worker (1.1.0): what the reasoner checks answers against, the agent
    acts on, a video turns into start/end events and the API returns."""

    worker_id: int = Field(ge=0, description="id of the person in objects")
    rule: Rule
    zone: str | None = Field(None, description="the zone the worker stands in, if any (for a zone rule: that zone)")
    evidence: str = Field(description="one line: what the rules saw")
    bbox: BBox = Field(description="the worker's box")


class SafetySummary(_Strict):
    workers: list[WorkerStatus] = Field(default_factory=list)
    workers_without_hard_hat: int = 0
    workers_without_vest: int = 0
    objects_in_zones: dict[str, list[int]] = Field(
        default_factory=dict, description="zone name -> ids of objects whose ground point is inside"
    )
    violations: list[str] = Field(default_factory=list, description="one plain sentence each")
    rule_violations: list[Violation] = Field(
        default_factory=list, description="1.1.0: the violations typed, one per worker and rule"
    )


class ProcessingTime(_Strict):
    """Wall-clock seconds per stage; ``total`` includes loading and resizing the image."""

    preprocessing: float = 0.0
    detection: float = 0.0
    segmentation: float = 0.0
    ocr: float = 0.0
    analysis: float = 0.0
    total: float = 0.0


class ModelInfo(_Strict):
    detector: str | None = Field(None, description="asset name or weights file")
    segmenter: str | None = None
    ocr: str | None = None


class PerceptionResult(_Strict):
    schema_name: Literal["efsora-perception"] = SCHEMA_NAME
    schema_version: Version = SCHEMA_VERSION
    image_path: str
    image_info: ImageInfo
    objects: list[DetectedObject] = Field(default_factory=list)
    segments: list[Segment] = Field(default_factory=list)
    text_regions: list[TextRegion] = Field(default_factory=list)
    zones: dict[str, list[Point]] = Field(default_factory=dict, description="camera zones used (polygons)")
    safety: SafetySummary | None = None
    scene_description: str = ""
    stages: list[Literal["detection", "segmentation", "ocr"]] = Field(
        default_factory=list, description="the stages that ran; an empty list in a skipped stage is not 'nothing found'"
    )
    models: ModelInfo = Field(default_factory=ModelInfo)
    processing_time: ProcessingTime = Field(default_factory=ProcessingTime)

    def count(self, label: str) -> int:
        """Detected objects with this label."""
        return sum(o.label == label for o in self.objects)

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)


class ImageFailure(_Strict):
    image_path: str
    error: str = Field(description="one line: what is wrong and what to do")


class PerceptionBatch(_Strict):
    """What ``efsora perceive`` writes for several images: every result, and every image that failed."""

    schema_name: Literal["efsora-perception-batch"] = "efsora-perception-batch"
    schema_version: Version = SCHEMA_VERSION
    results: list[PerceptionResult] = Field(default_factory=list)
    errors: list[ImageFailure] = Field(default_factory=list)


# --- video (1.1.0): what chapter 5's pipeline writes and chapter 6's API streams --------------------

Detail = bool | int | float | str | None


class TrackedObject(_Strict):
    """A detection in one video frame, with the id of the track it belongs to."""

    id: int = Field(ge=0, description="unique within the frame; the frame's safety summary refers to it")
    track_id: int | None = Field(None, ge=0, description="the same in every frame; null until a tracker confirms it")
    label: str
    confidence: Confidence
    bbox: BBox
    visibility: float | None = Field(None, ge=0.0, le=1.0, description="share of the object visible (ground truth)")


class FrameResult(_Strict):
    """One frame of a video: its objects with track ids, the zones and the frame's safety summary."""

    schema_name: Literal["efsora-perception-frame"] = "efsora-perception-frame"
    schema_version: Version = SCHEMA_VERSION
    source: str = Field(description="the video file or stream")
    frame_index: int = Field(ge=0, description="0-based")
    timestamp_s: float = Field(ge=0.0, description="seconds from the start of the video")
    objects: list[TrackedObject] = Field(default_factory=list)
    zones: dict[str, list[Point]] = Field(default_factory=dict)
    safety: SafetySummary | None = None


class Track(_Strict):
    """One tracked object over its life in a video."""

    track_id: int = Field(ge=0)
    label: str
    first_frame: int = Field(ge=0)
    last_frame: int = Field(ge=0)
    first_time_s: float = Field(ge=0.0)
    last_time_s: float = Field(ge=0.0)
    attributes: dict[str, Detail] = Field(default_factory=dict, description="e.g. a worker's hard_hat and vest")


class TrackEvent(_Strict):
    """Something that happened to one track at one frame: it entered or left the frame or a zone,
    was hidden or reappeared, or started or stopped breaking a rule."""

    frame: int = Field(ge=0, description="0-based frame index")
    time_s: float = Field(ge=0.0)
    track_id: int = Field(ge=0)
    label: str
    kind: EventKind
    zone: str | None = None
    rule: Rule | None = Field(None, description="for violation_start and violation_end")
    evidence: str = Field("", description="one plain sentence")
    details: dict[str, Detail] = Field(
        default_factory=dict, description="facts of this kind of event: edge, occluder, hidden_for_s, the worker's PPE"
    )


class VideoResult(_Strict):
    """A whole video: its tracks and events, and (optionally) every frame's result."""

    schema_name: Literal["efsora-video"] = "efsora-video"
    schema_version: Version = SCHEMA_VERSION
    source: str
    fps: float = Field(gt=0)
    n_frames: int = Field(ge=0)
    image_info: ImageInfo
    zones: dict[str, list[Point]] = Field(default_factory=dict)
    tracks: list[Track] = Field(default_factory=list)
    events: list[TrackEvent] = Field(default_factory=list)
    frames: list[FrameResult] = Field(default_factory=list, description="empty when only tracks and events are kept")


# The exported JSON Schemas: file name -> (model, name in $id).
SCHEMA_FILES: dict[str, tuple[type[BaseModel], str]] = {
    "perception_result.schema.json": (PerceptionResult, SCHEMA_NAME),
    "frame_result.schema.json": (FrameResult, "efsora-perception-frame"),
    "track_event.schema.json": (TrackEvent, "efsora-track-event"),
    "video_result.schema.json": (VideoResult, "efsora-video"),
}


def json_schema(model: type[BaseModel] = PerceptionResult, name: str = SCHEMA_NAME) -> dict:
    """The JSON Schema of ``model`` (draft 2020-12), with its version in ``$id``."""
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://efsora.book/schemas/{name}/{SCHEMA_VERSION}.json"
    schema["title"] = f"{name} {SCHEMA_VERSION}"
    return schema


def schema_text(model: type[BaseModel] = PerceptionResult, name: str = SCHEMA_NAME) -> str:
    """The exported file's exact text."""
    return json.dumps(json_schema(model, name), indent=2, sort_keys=True) + "\n"


def write_json_schema(path: Path, model: type[BaseModel] = PerceptionResult, name: str = SCHEMA_NAME) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(model, name))
    return path


def write_json_schemas(folder: Path) -> list[Path]:
    """Every exported schema (:data:`SCHEMA_FILES`) into ``folder``."""
    return [write_json_schema(Path(folder) / file, model, name) for file, (model, name) in SCHEMA_FILES.items()]


def load_result(path: Path | str) -> PerceptionResult:
    """Read and validate a result file; the error names the file and the first bad field."""
    path = Path(path)
    try:
        return PerceptionResult.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such perception result (make one with `efsora perceive IMAGE -o {path}`)")


# --- masks ----------------------------------------------------------------------------------------

def encode_mask(mask: np.ndarray, encoding: Literal["rle", "png"] = "rle") -> Mask:
    """A boolean ``[H, W]`` mask as COCO compressed RLE (usually 50-200x smaller than the raw mask)
    or a base64 PNG."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask is 2-D [height, width], got shape {mask.shape}")
    h, w = mask.shape
    if encoding == "rle":
        from pycocotools import mask as mask_utils

        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return Mask(encoding="rle", size=(h, w), data=rle["counts"].decode("ascii"))
    if encoding == "png":
        import cv2

        ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255)
        if not ok:
            raise ValueError("OpenCV could not encode the mask as PNG")
        return Mask(encoding="png", size=(h, w), data=base64.b64encode(buf.tobytes()).decode("ascii"))
    raise ValueError(f"unknown mask encoding {encoding!r}; use 'rle' or 'png'")


def decode_mask(mask: Mask) -> np.ndarray:
    """The boolean ``[H, W]`` array back from :func:`encode_mask`'s output."""
    h, w = mask.size
    if mask.encoding == "rle":
        from pycocotools import mask as mask_utils

        return mask_utils.decode({"size": [h, w], "counts": mask.data.encode("ascii")}).astype(bool)
    import cv2

    array = cv2.imdecode(np.frombuffer(base64.b64decode(mask.data), np.uint8), cv2.IMREAD_GRAYSCALE)
    if array is None or array.shape != (h, w):
        raise ValueError("the PNG mask is corrupt or does not match its declared size")
    return array > 127
