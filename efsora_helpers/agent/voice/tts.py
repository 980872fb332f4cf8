"""Text to speech: :func:`synthesize` ``(text) -> (int16 samples, sample_rate)`` behind one interface.

* ``provider="piper"`` (default, offline): Piper (a VITS voice run by onnxruntime) with the
  registry's CC0 voice ``piper-voice-joe-medium`` at 22,050 Hz; the synthesis itself is
  :func:`efsora_helpers.safetyscenes.speech.synthesize` (deterministic, zero noise, one cached
  session), so the answers sound like the SafetyScenes questions.
* ``provider="openai"`` (only when ``OPENAI_API_KEY`` is set): the Audio API's
  ``client.audio.speech.create(model="gpt-4o-mini-tts", voice=..., input=..., response_format="pcm")``,
  which returns raw 16-bit little-endian mono PCM at 24 kHz (OpenAI's text-to-speech guide, checked
  December 2026; models ``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts``).
* Edge-TTS is not offered: the ``edge-tts`` package is not installed in the book's environment
  (and it needs Microsoft's online service). A provider is a function ``text -> (samples, sr)``,
  so adding one is :func:`register_provider`.

Taught in ``notebooks/agent/09_voice.ipynb``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

OPENAI_TTS_MODEL = "gpt-4o-mini-tts"
OPENAI_TTS_VOICE = "alloy"
OPENAI_PCM_RATE = 24_000  # the rate of response_format="pcm"


def _piper(text: str, **kwargs) -> tuple[np.ndarray, int]:
    from efsora_helpers.safetyscenes.speech import synthesize as piper_synthesize

    return piper_synthesize(text, **kwargs)


def _openai(text: str, *, model: str = OPENAI_TTS_MODEL, voice: str = OPENAI_TTS_VOICE,
            **_ignored) -> tuple[np.ndarray, int]:
    if not os.environ.get("OPENAI_API_KEY"):
        raise ValueError("the openai TTS provider needs OPENAI_API_KEY; use provider='piper' offline")
    from openai import OpenAI

    response = OpenAI().audio.speech.create(model=model, voice=voice, input=text, response_format="pcm")
    samples = np.frombuffer(response.read(), dtype="<i2").astype(np.int16)
    return samples, OPENAI_PCM_RATE


_PROVIDERS: dict[str, Callable[..., tuple[np.ndarray, int]]] = {"piper": _piper, "openai": _openai}


def register_provider(name: str, fn: Callable[..., tuple[np.ndarray, int]]) -> None:
    """Add a TTS provider: ``fn(text, **kwargs) -> (int16 samples, sample_rate)``."""
    _PROVIDERS[name] = fn


def providers() -> list[str]:
    """Providers usable here: piper always; openai when its key is set."""
    names = ["piper"]
    if os.environ.get("OPENAI_API_KEY"):
        names.append("openai")
    return names + [n for n in _PROVIDERS if n not in ("piper", "openai")]


@dataclass
class Speech:
    samples: np.ndarray  # int16 mono
    sample_rate: int
    seconds: float  # synthesis wall time
    provider: str

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def rtf(self) -> float:
        """Synthesis seconds per second of speech produced."""
        return self.seconds / self.duration if self.duration else float("nan")


def synthesize(text: str, provider: str = "piper", **kwargs) -> tuple[np.ndarray, int]:
    """Speak ``text``: ``(int16 mono samples, sample_rate)``."""
    speech = speak(text, provider=provider, **kwargs)
    return speech.samples, speech.sample_rate


def speak(text: str, provider: str = "piper", **kwargs) -> Speech:
    """Like :func:`synthesize`, with the timing (``seconds``, ``rtf``) kept."""
    if not text or not text.strip():
        raise ValueError("nothing to say: the text is empty")
    if provider not in _PROVIDERS:
        raise ValueError(f"unknown TTS provider {provider!r}; known: {sorted(_PROVIDERS)}")
    start = time.perf_counter()
    samples, rate = _PROVIDERS[provider](text, **kwargs)
    return Speech(np.asarray(samples, dtype=np.int16), int(rate), time.perf_counter() - start, provider)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """16-bit mono PCM WAV (standard-library ``wave``)."""
    from efsora_helpers.safetyscenes.speech import write_wav as _write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write(path, np.asarray(samples, dtype=np.int16), sample_rate)
