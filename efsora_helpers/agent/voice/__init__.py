"""Voice for the chapter 3 agent: Whisper speech recognition, Piper speech synthesis, audio
preprocessing and the spoken round trip.

* :mod:`.convert`: the shipped CTranslate2 Whisper -> an openai-whisper checkpoint;
* :mod:`.audio`: load, resample to 16 kHz, chunk, Silero VAD;
* :mod:`.asr`: :func:`~.asr.transcribe` (faster-whisper or openai-whisper) and WER;
* :mod:`.tts`: :func:`~.tts.synthesize` (Piper offline, OpenAI TTS with a key);
* :mod:`.roundtrip`: speech -> agent -> speech, batch and streaming, and ``efsora voice ask``.

Taught in ``notebooks/agent/08_whisper.ipynb`` and ``notebooks/agent/09_voice.ipynb``.
Submodules are imported on use, so ``import efsora_helpers.agent.voice`` loads no model.
"""

from __future__ import annotations


def transcribe(audio, **kwargs):
    from .asr import transcribe as _transcribe

    return _transcribe(audio, **kwargs)


def synthesize(text, **kwargs):
    from .tts import synthesize as _synthesize

    return _synthesize(text, **kwargs)


__all__ = ["synthesize", "transcribe"]
