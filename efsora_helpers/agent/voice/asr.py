"""Speech to text: one :func:`transcribe` over two Whisper engines on the same weights.

* ``engine="faster"`` (the default, the fast path): faster-whisper on CTranslate2, straight from
  the shipped ``whisper-tiny-en-ct2`` asset, int8 on the CPU.
* ``engine="openai"`` (the teaching path): the ``openai-whisper`` package's own log-mel front end,
  PyTorch encoder-decoder and decoding loop, on the same weights converted by
  :mod:`efsora_helpers.agent.voice.convert`.

Both take a path to a WAV file, ``(samples, sample_rate)`` or a 16 kHz float array; audio is loaded
and resampled by :mod:`.audio` (numpy in, so openai-whisper never needs the ffmpeg binary). The
result is a :class:`Transcript` with the text, the language, the wall time, the real-time factor
(processing seconds per second of audio: below 1 is faster than real time) and the segments.
Taught in ``notebooks/agent/08_whisper.ipynb``; the speech node of the agent calls
``transcribe(path).text``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from .audio import SAMPLE_RATE, load_audio
from .convert import DEFAULT_ASSET

ENGINES = ("faster", "openai")


@dataclass(frozen=True)
class TranscriptSegment:
    start: float
    end: float
    text: str


@dataclass
class Transcript:
    text: str
    language: str
    seconds: float  # wall time of the recognition (model already loaded)
    audio_seconds: float
    engine: str
    segments: list[TranscriptSegment] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        """Real-time factor: processing seconds per second of audio."""
        return self.seconds / self.audio_seconds if self.audio_seconds else float("nan")

    real_time_factor = rtf

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rtf"] = round(self.rtf, 4)
        return d

    def __str__(self) -> str:
        return self.text


def _threads() -> int:
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def faster_model(asset: str = DEFAULT_ASSET, compute_type: str = "int8", cpu_threads: int | None = None):
    """A cached ``faster_whisper.WhisperModel`` on the shipped CT2 folder (CPU)."""
    from faster_whisper import WhisperModel

    from efsora_helpers.assets import get_asset

    return WhisperModel(str(get_asset(asset)), device="cpu", compute_type=compute_type,
                        cpu_threads=cpu_threads or _threads(), local_files_only=True)


@lru_cache(maxsize=2)
def openai_model(asset: str = DEFAULT_ASSET):
    """A cached openai-whisper ``Whisper`` model on the converted checkpoint (fp32, CPU)."""
    import torch

    from .convert import load_whisper

    torch.set_num_threads(_threads())
    return load_whisper(asset).eval()


def _faster(audio: np.ndarray, *, asset, beam_size, temperature, vad_filter, compute_type,
            without_timestamps, condition_on_previous_text, initial_prompt):
    model = faster_model(asset, compute_type)
    segments, info = model.transcribe(
        audio, language="en", beam_size=beam_size, temperature=temperature, vad_filter=vad_filter,
        without_timestamps=without_timestamps, condition_on_previous_text=condition_on_previous_text,
        initial_prompt=initial_prompt)
    segs = [TranscriptSegment(round(s.start, 2), round(s.end, 2), s.text.strip()) for s in segments]
    return segs, info.language


def _openai(audio: np.ndarray, *, asset, beam_size, temperature, without_timestamps,
            condition_on_previous_text, initial_prompt):
    model = openai_model(asset)
    options = {"beam_size": beam_size} if beam_size and beam_size > 1 else {}
    result = model.transcribe(
        audio, language="en", fp16=False, temperature=temperature, verbose=None,
        without_timestamps=without_timestamps, condition_on_previous_text=condition_on_previous_text,
        initial_prompt=initial_prompt, **options)
    segs = [TranscriptSegment(round(float(s["start"]), 2), round(float(s["end"]), 2), s["text"].strip())
            for s in result["segments"]]
    return segs, result.get("language", "en")


def transcribe(audio, *, engine: str = "faster", asset: str = DEFAULT_ASSET, beam_size: int = 5,
               temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), vad_filter: bool = False,
               compute_type: str = "int8", without_timestamps: bool = False,
               condition_on_previous_text: bool = True, initial_prompt: str | None = None,
               sample_rate: int | None = None) -> Transcript:
    """Recognise the speech in ``audio`` (path, ``(samples, sr)`` or 16 kHz array) -> Transcript.

    Defaults follow both libraries' own defaults (beam search of 5, temperature fallback 0 -> 1 in
    steps of 0.2 when a window's output looks like a failure), English only (the weights are
    tiny.en). ``compute_type`` applies to faster-whisper only (``int8`` fast, ``float32`` to match
    openai-whisper's arithmetic). ``seconds`` excludes loading the model (load it once with
    :func:`warm_up`).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown ASR engine {engine!r}; use one of {ENGINES}")
    samples = load_audio(audio, sample_rate)
    kwargs = dict(asset=asset, beam_size=beam_size, temperature=temperature,
                  without_timestamps=without_timestamps,
                  condition_on_previous_text=condition_on_previous_text, initial_prompt=initial_prompt)
    with _LOCK:  # one recognition at a time: models are shared per process
        if engine == "faster":
            faster_model(asset, compute_type)
            start = time.perf_counter()
            segs, language = _faster(samples, vad_filter=vad_filter, compute_type=compute_type, **kwargs)
        else:
            openai_model(asset)
            start = time.perf_counter()
            segs, language = _openai(samples, **kwargs)
        seconds = time.perf_counter() - start
    text = " ".join(s.text for s in segs).strip()
    return Transcript(text=text, language=language or "en", seconds=seconds,
                      audio_seconds=len(samples) / SAMPLE_RATE, engine=engine, segments=segs)


def warm_up(engine: str = "faster", **kwargs) -> float:
    """Load an engine's model (and run it once on a second of silence); return the seconds taken."""
    start = time.perf_counter()
    transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), engine=engine, **kwargs)
    return time.perf_counter() - start


# --- word error rate --------------------------------------------------------------------------

_NUMBERS = None  # no number normalisation: "7" vs "seven" counts as an error (stated in the notebook)


def normalise(text: str) -> str:
    """The book's WER normaliser: lowercase, hyphens to spaces, other punctuation removed,
    whitespace collapsed. Nothing else (numbers are not spelled out, so "7" vs "seven" is an error)."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    text = text.replace("'", "")
    return " ".join(text.split())


def wer(references: list[str] | str, hypotheses: list[str] | str) -> float:
    """Corpus word error rate with :mod:`jiwer` after :func:`normalise` on both sides."""
    import jiwer

    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    refs = [normalise(r) for r in references]
    hyps = [normalise(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))
