"""Helpers for the executable book *Senior AI Engineer interview preparation*.

Each helper's docstring names the notebook that teaches it. Import is light: heavy libraries
(torch, ultralytics) load only when a helper that needs them runs.
"""

from .assets import AssetChecksumError, AssetMissingError, get_asset
from .chapters import CHAPTERS, chapter
from .env import RunContext, detect_device, seed_everything, setup

__all__ = [
    "AssetChecksumError",
    "AssetMissingError",
    "CHAPTERS",
    "RunContext",
    "chapter",
    "detect_device",
    "get_asset",
    "seed_everything",
    "setup",
]
__version__ = "0.1.0"
