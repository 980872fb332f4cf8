"""Chapter 1, the Visual Perception Engine: preprocessing, detection, segmentation, OCR and the
engine that returns one :class:`~efsora_helpers.perception.schema.PerceptionResult`.

Taught in ``notebooks/perception/``. Heavy libraries load only when a model is first used.
"""
