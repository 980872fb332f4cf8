"""Audio preprocessing for speech recognition: load, resample to 16 kHz, chunk, find speech (VAD).

Whisper (both engines) wants mono float32 samples in [-1, 1] at 16 kHz. SafetyScenes speech is
16-bit PCM at 22,050 Hz (Piper's rate), so every clip is resampled. Taught in
``notebooks/agent/08_whisper.ipynb`` (loading, resampling) and ``09_voice.ipynb`` (chunks, VAD).

* :func:`load_audio`: a WAV file (any PCM width, any channel count; the standard-library ``wave``
  module, no ffmpeg) or an array -> float32 mono at 16 kHz. A file that is not a WAV raises
  ``ValueError`` with one line.
* :func:`resample`: polyphase resampling with :func:`scipy.signal.resample_poly`. 22,050 -> 16,000
  Hz is the exact rational ratio 320/441: upsample by 320, low-pass with a Kaiser-windowed FIR
  (scipy's default, beta 5), keep every 441st sample. The filter removes everything above the new
  Nyquist frequency (8 kHz) first, so nothing aliases; speech energy sits well below 8 kHz.
* :func:`chunks`: fixed-length windows (for the streaming path: audio arriving piece by piece).
* :func:`speech_segments`: the Silero VAD v6 ONNX model that ships inside faster-whisper
  (``faster_whisper/assets/silero_vad_v6.onnx``, run by onnxruntime, 512-sample frames at 16 kHz),
  via ``faster_whisper.vad.get_speech_timestamps``; returns segments in seconds.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

SAMPLE_RATE = 16_000  # what Whisper's feature extractor expects


@dataclass(frozen=True)
class Segment:
    """A stretch of speech, in seconds from the start of the audio."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM WAV file -> ``(float32 mono samples in [-1, 1], sample_rate)``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (one line) for anything that
    is not a readable PCM WAV (a text file renamed ``.wav``, an MP3, an empty file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as err:
        reason = str(err) or "too short for a WAV header"
        raise ValueError(f"{path} is not a PCM WAV file ({reason}); convert it to 16-bit WAV first") from None
    if width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        samples = ints.astype(np.float32) / float(1 << 23)
    elif width == 4:
        samples = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:  # average the channels to mono
        samples = samples.reshape(-1, channels).mean(axis=1)
    if samples.size == 0:
        raise ValueError(f"{path} contains no audio samples")
    return samples.astype(np.float32), int(rate)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``, Kaiser-windowed FIR anti-aliasing)."""
    samples = np.asarray(samples, dtype=np.float32)
    if orig_sr == target_sr:
        return samples
    from scipy.signal import resample_poly

    ratio = Fraction(target_sr, orig_sr)  # 16000/22050 = 320/441
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def load_audio(audio, sample_rate: int | None = None) -> np.ndarray:
    """A path, or ``(samples, sr)``, or a 16 kHz array -> float32 mono at 16 kHz.

    Integer arrays are scaled from their dtype's range; a bare array without ``sample_rate`` is
    taken to be 16 kHz already.
    """
    if isinstance(audio, (str, Path)):
        samples, sr = read_wav(audio)
    elif isinstance(audio, tuple) and len(audio) == 2:
        samples, sr = audio
    else:
        samples, sr = audio, sample_rate or SAMPLE_RATE
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return resample(samples.astype(np.float32), int(sr), SAMPLE_RATE)


def chunks(samples: np.ndarray, seconds: float = 0.5, sr: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Consecutive windows of ``seconds`` (the last one may be shorter): audio as a stream."""
    step = max(1, int(round(seconds * sr)))
    for start in range(0, len(samples), step):
        yield samples[start:start + step]


def speech_segments(samples: np.ndarray, *, threshold: float = 0.5, min_speech_ms: int = 250,
                    min_silence_ms: int = 300, speech_pad_ms: int = 100,
                    sr: int = SAMPLE_RATE) -> list[Segment]:
    """Where the speech is: Silero VAD (shipped with faster-whisper) on 16 kHz audio."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if sr != SAMPLE_RATE:
        raise ValueError(f"the VAD runs on {SAMPLE_RATE} Hz audio; resample first (got {sr})")
    options = VadOptions(threshold=threshold, min_speech_duration_ms=min_speech_ms,
                         min_silence_duration_ms=min_silence_ms, speech_pad_ms=speech_pad_ms)
    stamps = get_speech_timestamps(np.asarray(samples, dtype=np.float32), options)
    return [Segment(s["start"] / sr, s["end"] / sr) for s in stamps]


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Silero's speech probability for every 512-sample frame (32 ms at 16 kHz), for plotting."""
    from faster_whisper.vad import get_vad_model

    model = get_vad_model()
    frame = 512
    padded = np.pad(np.asarray(samples, dtype=np.float32), (0, (-len(samples)) % frame))
    return np.asarray(model(padded)).reshape(-1)
