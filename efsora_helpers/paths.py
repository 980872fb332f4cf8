"""Where things live: the repository root (the package is installed editable from it) and the
book's per-user home for downloads and tool settings."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The checkout the package was installed from (``pip install -e .``).

    Raises a clear error when the package was installed as a plain wheel, because the book's
    data, notebooks and prose live in the repository, not in the package.
    """
    root = _PACKAGE_DIR.parent
    if not (root / "_toc.yml").exists():
        raise FileNotFoundError(
            f"efsora_helpers is not running from a checkout of the book ({root} has no _toc.yml). "
            "Clone the repository and install it with `make setup` (pip install -e .)."
        )
    return root


def efsora_home() -> Path:
    """Per-user state: downloaded official weights, ultralytics settings. ``EFSORA_HOME`` overrides
    the default ``~/.cache/efsora``."""
    home = Path(os.environ.get("EFSORA_HOME", Path.home() / ".cache" / "efsora")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename: an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)
