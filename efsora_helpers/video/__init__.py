"""Chapter 5, the Video Analytics Pipeline: decoding and frame sampling (keyframes on change, fixed
stride, motion-gated detection) measured against the SafetyScenes long clips' exact timelines.

Taught in ``notebooks/video/`` (``01_frames.ipynb``: :mod:`.frames` and :mod:`.sampling`). The clips
are rendered by :mod:`efsora_helpers.safetyscenes.video` (``efsora scenes video``) into ``data/video/``.
"""
