"""``setup()``: the first cell of every notebook.

It makes a run reproducible and offline by default: seeds, the environment variables that stop
libraries from reaching the network (see ``shared/OFFLINE.md`` in the project notes, summarised in
``book/setup/index.md``), the compute device, the versions of the libraries the chapter uses and
the run profile. Taught in ``notebooks/setup/environment.ipynb``.
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .chapters import chapter as _chapter
from .paths import efsora_home, repo_root

PROFILES = ("ci", "full")
DEFAULT_PROFILE = "ci"

# The provider keys the book understands; only their presence is ever shown, never a value.
API_KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "DEEPSEEK_API_KEY",
    "GEMINI_API_KEY",
)

# Set before the libraries are imported; each stops a network call measured in OFFLINE.md.
OFFLINE_VARIABLES = {
    "YOLO_OFFLINE": "1",  # ultralytics: no DNS checks, no hub calls
    "YOLO_AUTOINSTALL": "False",  # ultralytics: never pip install at run time
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",  # chromadb
    "DO_NOT_TRACK": "1",
}
QUIET_VARIABLES = {
    "TOKENIZERS_PARALLELISM": "false",
    # transformers 5 draws a "Loading weights" bar on every from_pretrained (its tqdm follows
    # huggingface_hub's switch); in a notebook it is noise in the committed outputs
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}

# What each chapter's notebooks import, for the versions line of the first cell.
CHAPTER_LIBRARIES: dict[int, tuple[str, ...]] = {
    0: ("torch", "torchvision", "ultralytics", "opencv-python", "numpy", "pydantic", "jupyter-book"),
    1: ("torch", "torchvision", "ultralytics", "opencv-python", "easyocr", "rapidocr-onnxruntime", "pycocotools",
        "pydantic"),
    2: ("torch", "transformers", "xgrammar", "pydantic", "openai", "anthropic", "fastapi"),
    3: ("langgraph", "langchain-openai", "onnxruntime-genai", "chromadb", "bm25s", "mcp", "openai-whisper",
        "faster-whisper", "piper-tts"),
    4: ("torch", "ultralytics", "transformers", "peft", "bitsandbytes"),
    5: ("torch", "ultralytics", "opencv-python", "numpy"),
    6: ("fastapi", "uvicorn", "gradio", "pydantic"),
    7: ("pydantic",),
}


@dataclass
class RunContext:
    """What ``setup()`` decided; notebooks read ``ctx.device``, ``ctx.profile``, ``ctx.seed``."""

    chapter: int
    seed: int
    profile: str
    device: str
    offline: bool
    versions: dict[str, str] = field(default_factory=dict)
    keys: dict[str, bool] = field(default_factory=dict)

    def summary(self) -> str:
        vers = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        keys = ", ".join(f"{k.split('_')[0].lower()}: {'set' if v else 'not set'}" for k, v in self.keys.items())
        return "\n".join(
            [
                f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
                f"{os.cpu_count()} CPU cores",
                f"device: {self.device} | profile: {self.profile} | seed: {self.seed} | "
                f"network: {'offline (default)' if self.offline else 'online (EFSORA_ONLINE=1)'}",
                f"versions: {vers}",
                f"API keys: {keys}",
            ]
        )


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and (if installed) PyTorch; make cuDNN deterministic."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def detect_device(prefer: str | None = None) -> str:
    """``cuda`` if a CUDA GPU is usable, else ``mps`` on Apple silicon, else ``cpu``.

    ``prefer`` (or ``EFSORA_DEVICE``) forces a choice, e.g. ``cpu`` for a fair timing.
    """
    prefer = prefer or os.environ.get("EFSORA_DEVICE")
    if prefer:
        return prefer
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def library_versions(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Installed versions by distribution name, without importing anything."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def ultralytics_config_dir() -> Path:
    return efsora_home() / "ultralytics"


def prepare_offline_environment(online: bool = False) -> None:
    """Set the offline variables and give ultralytics its font locally.

    ultralytics downloads ``Arial.ttf`` when it draws training plots, and ``YOLO_OFFLINE`` does not
    stop that; any TrueType font at ``$YOLO_CONFIG_DIR/Ultralytics/Arial.ttf`` does. We copy
    DejaVu Sans, which ships inside matplotlib.
    """
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ultralytics_config_dir()))
    if not online:
        for key, value in OFFLINE_VARIABLES.items():
            os.environ.setdefault(key, value)
    for key, value in QUIET_VARIABLES.items():
        os.environ.setdefault(key, value)
    font_dir = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except ImportError:
        return
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = font_dir / name
        if not target.exists() and dejavu.exists():
            shutil.copyfile(dejavu, target)


def prepare_local_llm() -> str:
    """Build the local model's fast runtime once, during ``make setup`` (``efsora env``).

    Dequantises the shipped GGUF (~15 s) and converts it with onnxruntime-genai's model builder
    (~10 s), both offline, so that no notebook pays for it. Returns a one-line status; a machine
    without the chapter 2 packages gets a note, not an error.
    """
    from .assets import AssetError

    try:
        from .llm.ort_runtime import PRECISION, build_runtime_model
    except ImportError as exc:
        return f"local LLM runtime: skipped ({exc.name} is not installed; pip install -e '.[llm]')"
    try:
        path = build_runtime_model()
    except (AssetError, ImportError) as exc:
        return f"local LLM runtime: skipped ({exc})"
    return f"local LLM runtime: onnxruntime-genai {PRECISION} at {path}"


def load_dotenv_keys() -> dict[str, bool]:
    """Read a git-ignored ``.env`` at the repository root (never overriding the environment) and
    report which provider keys are present. Values are never returned or printed."""
    try:
        from dotenv import load_dotenv

        env_file = repo_root() / ".env"
        if env_file.exists():
            load_dotenv(env_file, override=False)
    except (ImportError, FileNotFoundError):
        pass
    return {name: bool(os.environ.get(name)) for name in API_KEY_VARIABLES}


# Known, harmless library warnings that would bury a notebook's output (and carry install paths,
# which differ between machines): torch's DataLoader on a CPU-only machine, and the deprecated
# quantisation calls inside EasyOCR's recogniser, tqdm's text fallback where ipywidgets is absent.
QUIET_WARNINGS = (
    r".*'pin_memory' argument is set as true but no accelerator is found.*",
    r"torch\.quantize_per_tensor, torch\.quantize_per_channel.*",
    r"IProgress not found.*",
)


def quiet_known_warnings() -> None:
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def setup(
    chapter: int | str = 0,
    seed: int = 0,
    profile: str | None = None,
    libraries: tuple[str, ...] | None = None,
    quiet: bool = False,
) -> RunContext:
    """Prepare a notebook run and print what it is running on.

    Offline unless ``EFSORA_ONLINE=1``. ``profile`` defaults to ``EFSORA_PROFILE`` or ``ci``
    (small data, fast); ``full`` is the laptop/GPU profile. Returns a :class:`RunContext`.
    """
    number = _chapter(chapter).number
    online = os.environ.get("EFSORA_ONLINE") == "1"
    prepare_offline_environment(online=online)
    profile = profile or os.environ.get("EFSORA_PROFILE", DEFAULT_PROFILE)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {PROFILES}")
    seed_everything(seed)
    quiet_known_warnings()
    ctx = RunContext(
        chapter=number,
        seed=seed,
        profile=profile,
        device=detect_device(),
        offline=not online,
        versions=library_versions(libraries or CHAPTER_LIBRARIES.get(number, ())),
        keys=load_dotenv_keys(),
    )
    if not quiet:
        print(ctx.summary(), file=sys.stdout)
    return ctx
