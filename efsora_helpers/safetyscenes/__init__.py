"""SafetyScenes: the book's own warehouse-safety data (images, video, speech) with exact ground
truth, and the small detectors trained on it. Taught in ``notebooks/setup/safetyscenes.ipynb``."""

from .render import CLASSES, Instance, Scene, SceneConfig, TextRegion, render_scene
from .shipped import ShippedScene, shipped_scene, shipped_scene_ids, shipped_scenes

__all__ = ["CLASSES", "Instance", "Scene", "SceneConfig", "ShippedScene", "TextRegion", "render_scene",
           "shipped_scene", "shipped_scene_ids", "shipped_scenes"]
