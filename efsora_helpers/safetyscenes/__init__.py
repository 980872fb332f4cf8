"""SafetyScenes: the book's own warehouse-safety data (images, video, speech) with exact ground
truth, and the small detectors trained on it. Taught in ``notebooks/setup/safetyscenes.ipynb``."""

from .render import CLASSES, Instance, Scene, SceneConfig, TextRegion, render_scene

__all__ = ["CLASSES", "Instance", "Scene", "SceneConfig", "TextRegion", "render_scene"]
