"""The voice round trip: spoken question -> VAD -> Whisper -> agent -> answer -> Piper -> WAV.

* :func:`ask`: one WAV in, one :class:`RoundTrip` out, with the latency of every stage
  (``load`` = read + resample to 16 kHz, ``vad``, ``asr``, ``agent``, ``tts``, ``write``).
* :func:`check_answer`: transcribe the answer WAV back with Whisper and measure how much of the
  answer text it contains (word error rate and word recall, both after :func:`.asr.normalise`).
* :func:`stream_transcribe`: the streaming variant. The WAV is read in chunks (as a microphone
  would deliver it); after every chunk the Silero VAD runs over what has arrived, and each
  utterance is transcribed as soon as the VAD sees it end, before the rest of the file is read.
  Time to first word is measured on a simulated live clock (audio arrives in real time, each
  processing step is measured wall time) and compared with the batch path (wait for the whole
  recording, then VAD + ASR on all of it).
* :func:`cli_ask`: ``efsora voice ask FILE.wav [--out] [--provider] [--approve] [--json]``.
  Side-effect actions are denied by default (a spoken request alone never acts: the transcript
  can be wrong and anyone in the room can speak); ``--approve ask`` shows each one and waits for
  y/n on the terminal, ``--approve auto`` allows them.

The agent is :func:`efsora_helpers.agent.graph.run_agent`. Where that is not importable, the
answer comes from a plain chat model (``efsora_helpers.llm.langchain.chat_model``) and the
result's ``answered_by`` says so. Taught in ``notebooks/agent/09_voice.ipynb``.
"""

from __future__ import annotations

import json
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from . import asr as _asr
from .audio import SAMPLE_RATE, Segment, load_audio, read_wav, resample, speech_segments

# Greedy decoding without timestamps: the short-utterance setting (measured in 08_whisper: the
# same WER as beam 5 on the SafetyScenes clips, at a fraction of the time).
ASR_OPTIONS = {"beam_size": 1, "temperature": 0.0, "without_timestamps": True}
ASR_PAD_S = 0.2  # audio kept around a VAD segment before recognition (VAD ends can clip a final consonant)
MAX_SPOKEN_WORDS = 60  # a spoken answer longer than this is cut at a sentence end

STAGES = ("load", "vad", "asr", "agent", "tts", "write")


@dataclass
class RoundTrip:
    question_file: str
    question: str  # what Whisper heard
    answer: str  # what the agent said (the spoken part)
    answer_file: str
    answered_by: str  # "run_agent" or "chat_model (stand-in: agent graph not importable)"
    status: str  # the agent's status (done, interrupted, step_limit, error)
    audio_seconds: float
    answer_audio_seconds: float
    speech: list[tuple[float, float]] = field(default_factory=list)  # VAD segments (s)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage
    agent_trace: list[dict] = field(default_factory=list)  # the agent's steps: node, tool, seconds

    @property
    def total_seconds(self) -> float:
        return float(sum(self.stages.values()))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_seconds"] = round(self.total_seconds, 3)
        d["stages"] = {k: round(v, 3) for k, v in self.stages.items()}
        return d


def _spoken(text: str, max_words: int = MAX_SPOKEN_WORDS) -> str:
    """The part of an answer worth speaking: plain words, cut at a sentence end near ``max_words``."""
    text = " ".join(str(text).replace("*", " ").replace("#", " ").replace("_", " ").split())
    words = text.split()
    if len(words) <= max_words:
        return text
    cut = " ".join(words[:max_words])
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    return cut[:end + 1] if end > len(cut) // 3 else cut + "."


def answer_question(question: str, *, provider: str | None = None, approve: str = "deny",
                    max_steps: int = 8, ask_fn=None, tools=None) -> tuple[str, str, str, list[dict]]:
    """``(answer, answered_by, status, trace)`` from the agent, or a plain chat model stand-in.

    ``approve``: ``deny`` (default for voice: a spoken request alone never acts), ``auto``, or
    ``ask`` (each side-effect action waits for ``ask_fn(pending) -> {"approved", "reason"}``,
    by default y/n on the terminal; the wait counts in the agent's stage). ``tools``: the agent's
    registry (default: ``warehouse_tools()`` on the user's workspace).
    """
    try:
        from efsora_helpers.agent.graph import ask_on_terminal, resume_agent, run_agent
    except ImportError:
        run_agent = None
    if run_agent is not None:
        extra = {"tools": tools} if tools is not None else {}
        result = run_agent(question, approve=approve, provider=provider, max_steps=max_steps, **extra)
        while result.status == "interrupted" and result.pending and approve == "ask":
            result = resume_agent(result.thread_id, (ask_fn or ask_on_terminal)(result.pending))
        answer = result.answer or ""
        if result.status == "interrupted" and result.pending:
            tool = result.pending.get("tool") if isinstance(result.pending, dict) else result.pending
            answer = f"I need your approval before I run {tool}. Ask again with approval."
        trace = [{"node": r.get("node"), "tool": r.get("tool"), "seconds": r.get("seconds")}
                 for r in (result.trace or []) if isinstance(r, dict)]
        return answer, "run_agent", result.status, trace
    from langchain_core.messages import HumanMessage, SystemMessage

    from efsora_helpers.llm.langchain import chat_model

    llm = chat_model(provider, max_tokens=96)
    reply = llm.invoke([SystemMessage("You are a warehouse safety assistant. Answer in one or two short sentences."),
                        HumanMessage(question)])
    return str(reply.content), "chat_model (stand-in: agent graph not importable)", "done", []


def _cut(audio: np.ndarray, start: float, end: float, pad: float = ASR_PAD_S) -> np.ndarray:
    lo = max(0, int((start - pad) * SAMPLE_RATE))
    return audio[lo:int(np.ceil((end + pad) * SAMPLE_RATE))]


def _check_input(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a WAV file")
    return path


def ask(path, *, out=None, provider: str | None = None, approve: str = "deny", tts_provider: str = "piper",
        engine: str = "faster", agent=None) -> RoundTrip:
    """Answer the spoken question in the WAV file ``path``; write the spoken answer to ``out``.

    ``agent`` (optional) replaces :func:`answer_question`: a callable ``question -> (answer,
    answered_by, status[, trace])``, e.g. a fake in a unit test.
    """
    from .tts import speak, write_wav

    path = _check_input(path)
    out = Path(out) if out else path.with_name(path.stem + ".answer.wav")
    stages: dict[str, float] = {}

    t = time.perf_counter()
    samples = load_audio(path)
    stages["load"] = time.perf_counter() - t

    t = time.perf_counter()
    segments = speech_segments(samples)
    stages["vad"] = time.perf_counter() - t
    if not segments:
        raise ValueError(f"{path}: the voice activity detector found no speech")
    # Recognise only the speech (plus its padding): silence costs encoder time and invites hallucination.
    speech = _cut(samples, segments[0].start, segments[-1].end)

    transcript = _asr.transcribe(speech, engine=engine, **ASR_OPTIONS)
    stages["asr"] = transcript.seconds
    question = transcript.text
    if not question:
        raise ValueError(f"{path}: Whisper heard no words")

    t = time.perf_counter()
    if agent is None:
        reply = answer_question(question, provider=provider, approve=approve)
    else:
        reply = agent(question)
    answer, answered_by, status = reply[:3]
    trace = list(reply[3]) if len(reply) > 3 else []
    stages["agent"] = time.perf_counter() - t
    spoken = _spoken(answer) or "I have no answer."

    t = time.perf_counter()
    speech_out = speak(spoken, provider=tts_provider)
    stages["tts"] = time.perf_counter() - t

    t = time.perf_counter()
    write_wav(out, speech_out.samples, speech_out.sample_rate)
    stages["write"] = time.perf_counter() - t

    return RoundTrip(question_file=str(path), question=question, answer=spoken, answer_file=str(out),
                     answered_by=answered_by, status=status, audio_seconds=len(samples) / SAMPLE_RATE,
                     answer_audio_seconds=speech_out.duration,
                     speech=[(round(s.start, 3), round(s.end, 3)) for s in segments], stages=stages,
                     agent_trace=trace)


def check_answer(result: RoundTrip, engine: str = "faster") -> dict:
    """Transcribe the answer WAV back; WER and word recall against the answer text."""
    heard = _asr.transcribe(result.answer_file, engine=engine, beam_size=5).text
    ref, hyp = _asr.normalise(result.answer).split(), _asr.normalise(heard).split()
    recall = sum(1 for w in set(ref) if w in set(hyp)) / max(1, len(set(ref)))
    return {"heard": heard, "wer": _asr.wer(result.answer, heard), "word_recall": recall}


# --- streaming --------------------------------------------------------------------------------

def iter_wav(path, seconds: float = 0.5) -> Iterator[tuple[np.ndarray, int]]:
    """Read a 16-bit WAV file ``seconds`` at a time (the file is never read whole)."""
    path = _check_input(path)
    read_wav(path)  # validates the header with a one-line error (cheap: the clips are small)
    with wave.open(str(path), "rb") as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        step = max(1, int(rate * seconds))
        while True:
            raw = wav.readframes(step)
            if not raw:
                break
            block = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
            if channels > 1:
                block = block.reshape(-1, channels).mean(axis=1)
            yield block, rate


@dataclass
class StreamEvent:
    text: str
    start: float  # utterance start in the audio (s)
    end: float  # utterance end in the audio (s)
    arrived: float  # audio time when the chunk that closed it arrived (s)
    clock: float  # simulated live clock when its text was ready (s)


def _segments_after(audio: np.ndarray, after: float, min_silence_s: float):
    """VAD segments in ``audio`` that start at or after ``after`` seconds (only the tail is scanned)."""
    offset = int(after * SAMPLE_RATE)
    segments = speech_segments(audio[offset:], min_silence_ms=int(min_silence_s * 1000))
    return [Segment(s.start + offset / SAMPLE_RATE, s.end + offset / SAMPLE_RATE) for s in segments]


def stream_transcribe(path, *, chunk_seconds: float = 0.5, min_silence_s: float = 0.3,
                      engine: str = "faster") -> dict:
    """Transcribe utterance by utterance while the file is read chunk by chunk.

    The live clock: a chunk ending at audio time ``a`` cannot be processed before ``a`` (it has not
    been spoken yet); processing then takes its measured wall time. ``clock = max(clock, a) +
    work``. Returns the events (one per utterance, with the clock when its text was ready), the
    time to first word, the total, and ``read_fraction``: how much of the file had been read when
    the first text was ready.
    """
    raw: list[np.ndarray] = []
    rate = None
    clock = 0.0
    arrived = 0.0
    done_until = 0.0  # audio time up to which utterances have been transcribed
    events: list[StreamEvent] = []
    vad_seconds = asr_seconds = 0.0
    chunks_read = 0
    for block, rate in iter_wav(path, chunk_seconds):
        chunks_read += 1
        raw.append(block)
        arrived += len(block) / rate
        t = time.perf_counter()
        audio = resample(np.concatenate(raw), rate, SAMPLE_RATE)
        segments = _segments_after(audio, done_until, min_silence_s)
        work = time.perf_counter() - t
        vad_seconds += work
        clock = max(clock, arrived) + work
        # An utterance is closed once enough silence follows it inside what has arrived.
        closed = [s for s in segments if s.start >= done_until and arrived - s.end >= min_silence_s]
        for seg in closed:
            piece = _cut(audio, seg.start, seg.end)
            tr = _asr.transcribe(piece, engine=engine, **ASR_OPTIONS)
            asr_seconds += tr.seconds
            clock += tr.seconds
            done_until = seg.end
            events.append(StreamEvent(tr.text, round(seg.start, 3), round(seg.end, 3), round(arrived, 3),
                                      round(clock, 3)))
    total_audio = arrived
    # End of stream: whatever is still open is transcribed now.
    if rate is not None:
        audio = resample(np.concatenate(raw), rate, SAMPLE_RATE)
        for seg in _segments_after(audio, done_until, min_silence_s):
            if seg.start >= done_until:
                piece = _cut(audio, seg.start, seg.end)
                tr = _asr.transcribe(piece, engine=engine, **ASR_OPTIONS)
                asr_seconds += tr.seconds
                clock = max(clock, arrived) + tr.seconds
                done_until = seg.end
                events.append(StreamEvent(tr.text, round(seg.start, 3), round(seg.end, 3), round(arrived, 3),
                                          round(clock, 3)))
    if not events:
        raise ValueError(f"{path}: no speech found")
    first = events[0]
    return {
        "events": events,
        "text": " ".join(e.text for e in events).strip(),
        "time_to_first_word": first.clock,
        "total": clock,
        "audio_seconds": total_audio,
        "read_fraction": first.arrived / total_audio if total_audio else 1.0,
        "chunks": chunks_read,
        "vad_seconds": vad_seconds,
        "asr_seconds": asr_seconds,
    }


def batch_transcribe(path, engine: str = "faster") -> dict:
    """The batch path on the same live clock: wait for the whole recording, then VAD + ASR."""
    samples, rate = read_wav(_check_input(path))
    duration = len(samples) / rate
    t = time.perf_counter()
    audio = resample(samples, rate, SAMPLE_RATE)
    segments = speech_segments(audio)
    vad = time.perf_counter() - t
    if not segments:
        raise ValueError(f"{path}: no speech found")
    tr = _asr.transcribe(audio, engine=engine, **ASR_OPTIONS)
    total = duration + vad + tr.seconds
    # Batch gives every word at once: the first word is ready when everything is.
    return {"text": tr.text, "time_to_first_word": total, "total": total, "audio_seconds": duration,
            "vad_seconds": vad, "asr_seconds": tr.seconds}


def join_clips(paths, gap_seconds: float = 1.0, lead_seconds: float = 0.5) -> tuple[np.ndarray, int]:
    """Several clips of one rate, joined with silence between them (a longer recording to stream)."""
    parts, rate = [], None
    for p in paths:
        samples, sr = read_wav(p)
        if rate is not None and sr != rate:
            raise ValueError(f"{p}: sample rate {sr} differs from {rate}")
        rate = sr
        parts.append(samples)
    gap = np.zeros(int(gap_seconds * rate), dtype=np.float32)
    out = [np.zeros(int(lead_seconds * rate), dtype=np.float32)]
    for s in parts:
        out += [s, gap]
    audio = np.concatenate(out)
    return np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16), rate


# --- the command line -------------------------------------------------------------------------

def cli_ask(args) -> int:
    """``efsora voice ask FILE.wav``: print what was heard and answered; write the spoken answer."""
    path = _check_input(args.file)
    read_wav(path)  # a file that is not a WAV fails here, in one line, before any model loads
    result = ask(path, out=getattr(args, "out", None), provider=getattr(args, "provider", None),
                 approve=getattr(args, "approve", "deny") or "deny")
    if getattr(args, "json", False):
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    print(f"heard:    {result.question}")
    print(f"answer:   {result.answer}  [{result.answered_by}, {result.status}]")
    print(f"wrote:    {result.answer_file} ({result.answer_audio_seconds:.1f} s of speech)")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result.stages.items())
    print(f"latency:  {result.total_seconds:.2f} s ({stages})")
    return 0
