"""Benchmark: chapter 3's speed figures (agent, retrieval, memory, speech in and out) in one run.

What it measures, with every model loaded once, warm-up calls excluded and the cold-start load
times reported in their own table:

1. ASR real-time factor (recognition seconds / audio seconds) on the shipped SafetyScenes speech
   (``data/safetyscenes/speech/*.wav``, 24 Piper clips, 55 s) for faster-whisper int8,
   faster-whisper fp32 and openai-whisper (PyTorch, on the converted CT2 weights), interleaved clip
   by clip so a change in machine load hits all three alike; greedy decoding without timestamps
   (the round trip's setting, ``roundtrip.ASR_OPTIONS``); WER of each against
   ``transcripts.jsonl`` (``asr.wer``: ``asr.normalise`` on both sides).
   Taught in ``notebooks/agent/08_whisper.ipynb``.
2. TTS real-time factor (synthesis seconds / seconds of speech produced): Piper
   (``voice.tts.speak``, the timed form of ``synthesize``) on the transcripts' 24 texts.
   Taught in ``notebooks/agent/09_voice.ipynb``.
3. Retrieval: ``agent.search`` on ``data/agent/search_queries.yaml`` over the handbook + book index
   (``default_index``): recall@1/3/5, MRR, median and p95 query latency per mode (bm25, dense,
   hybrid) via ``search.evaluate``/``summarize`` (notebook ``03_search.ipynb``); and
   ``agent.memory.VectorMemory`` (chromadb, temp folder) on ``data/agent/memory_eval.yaml``:
   recall@1/3/5, MRR and median/p95 recall latency via ``memory.retrieval_metrics``, without and
   with the queries' metadata filters (notebook ``04_memory.ipynb``).
4. Agent latency: ``graph.run_agent`` (local SmolLM2-135M through the loopback server) on a fixed
   set of tasks of different kinds from ``tasks.load_tasks()``, ``approve="deny"``, a fresh
   workspace per run (``tools.warehouse_tools(ws, search=<handbook-only index>)``, as in
   ``notebooks/agent/01_graph.ipynb``: ``max_tokens=96``, ``max_steps=6``): wall time, status,
   steps, tokens, success (``tasks.score``) and seconds per node (trace rows;
   ``trace.latency_by_node`` over all timed runs). Patterns: ``05_patterns.ipynb``.
5. Voice round trip: ``voice.roundtrip.ask`` on 3 spoken questions, seconds per stage (load, VAD,
   ASR, agent, TTS, write) and in total. The agent stage is ``run_agent`` as ``efsora voice ask``
   calls it (local model, ``max_steps=8``, ``approve="deny"``, a graph compiled per question) but on
   a temp workspace (not the user's) and the handbook + book index built in step 3 (the CLI's
   ``default_index``), passed through ``ask(agent=...)``. Notebook ``09_voice.ipynb``.

Each timed figure is the median over ``--rounds`` rounds (clip, text, query, task or question
timed once per round). Threads: ``OMP_NUM_THREADS`` is set to ``--threads`` (default 1) before
any library loads, and ``torch.set_num_threads`` likewise, so every engine runs on that many
threads. Date, machine, commit, thread count and ``os.getloadavg()`` at start, end and per
section are recorded (a loaded machine slows every figure). Asserts nothing about speed.
Everything is offline (``eh.setup``; the local LLM is a loopback server in this process).

Writes ``benchmarks/results/agent_chapter3.md`` and ``.json`` (``--quick``: ``agent_chapter3_quick``
so a smoke run never overwrites a real measurement). Progress on stderr.

Run (quiet machine): OMP_NUM_THREADS=1 .venv/bin/python benchmarks/agent_chapter3.py [--rounds 3]
     smoke:          OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/agent_chapter3.py --quick
     parts:          --skip voice agent   (any of asr tts retrieval memory agent voice)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("asr", "tts", "retrieval", "memory", "agent", "voice")
# Six kinds: scene count, PPE, zone, handbook search, calculator, workspace file.
AGENT_TASKS = ["count_people_0002", "ppe_no_hat_0040", "zone_workers_0004", "handbook_speed",
               "calc_pallet_weight", "file_inventory_count"]
QUICK_AGENT_TASKS = ["calc_pallet_weight", "ppe_no_hat_0040"]
WARMUP_TASK = "count_people_0009"  # not timed: loads the perception models and warms the LLM server
VOICE_CLIPS = ["q05", "q11", "q01"]  # q05 is 09_voice's question; q11 a handbook topic; q01 a count
AGENT_MAX_TOKENS = 96  # 01_graph.ipynb's settings
AGENT_MAX_STEPS = 6
VOICE_MAX_STEPS = 8  # roundtrip.answer_question's
NODES = ("planner", "speech", "vision", "search", "calculator", "memory", "files", "action", "reasoner",
         "evaluator", "respond")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load3() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def med(values) -> float:
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else float("nan")


def p95(values) -> float:
    import numpy as np

    values = [v for v in values if v is not None]
    return float(np.percentile(values, 95)) if values else float("nan")


def r(x, n=3):
    return None if x is None else round(float(x), n)


def bar(iterable, desc: str, total: int | None = None):
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)


class Cold:
    """Cold-start (load) times, each measured once, outside every timed loop."""

    def __init__(self):
        self.rows: list[dict] = []

    def time(self, what: str, fn, note: str = ""):
        t = time.perf_counter()
        out = fn()
        s = time.perf_counter() - t
        self.rows.append({"what": what, "seconds": round(s, 3), "note": note})
        log(f"  cold: {what} {s:.2f} s")
        return out


# ---------------------------------------------------------------------------------------- 1. ASR
def bench_asr(clips: list[dict], rounds: int, cold: Cold) -> dict:
    from efsora_helpers.agent.voice import asr
    from efsora_helpers.agent.voice.audio import SAMPLE_RATE, load_audio
    from efsora_helpers.agent.voice.convert import DEFAULT_ASSET
    from efsora_helpers.agent.voice.roundtrip import ASR_OPTIONS

    speech = REPO / "data" / "safetyscenes" / "speech"
    arrays = [load_audio(speech / c["file"]) for c in clips]  # load + resample once: engines get arrays
    audio_s = sum(len(a) for a in arrays) / SAMPLE_RATE
    engines = {"faster-whisper int8": dict(engine="faster", compute_type="int8"),
               "faster-whisper fp32": dict(engine="faster", compute_type="float32"),
               "openai-whisper fp32 (PyTorch)": dict(engine="openai")}
    # Load exactly the cache entries transcribe() uses (positional arguments, as in asr._faster).
    cold.time("Whisper tiny.en, faster-whisper int8 (load)", lambda: asr.faster_model(DEFAULT_ASSET, "int8"))
    cold.time("Whisper tiny.en, faster-whisper fp32 (load)", lambda: asr.faster_model(DEFAULT_ASSET, "float32"))
    cold.time("Whisper tiny.en, openai-whisper (convert if not cached, load)",
              lambda: asr.openai_model(DEFAULT_ASSET))
    for kw in engines.values():  # warm-up: first-call allocations, not timed
        asr.transcribe(arrays[0], **kw, **ASR_OPTIONS)
    secs = {e: [[0.0] * len(arrays) for _ in range(rounds)] for e in engines}
    texts = {e: [[""] * len(arrays) for _ in range(rounds)] for e in engines}
    load_start = load3()
    for rd in range(rounds):
        for i, a in enumerate(bar(arrays, f"ASR round {rd + 1}/{rounds}")):
            for e, kw in engines.items():  # interleaved clip by clip
                t = asr.transcribe(a, **kw, **ASR_OPTIONS)
                secs[e][rd][i], texts[e][rd][i] = t.seconds, t.text
    refs = [c["text"] for c in clips]
    rows = []
    for e in engines:
        rtfs = [sum(s) / audio_s for s in secs[e]]
        rows.append({"engine": e, "clips": len(arrays), "audio_s": r(audio_s, 2),
                     "seconds": r(med(sum(s) for s in secs[e]), 2), "rtf": r(med(rtfs), 4),
                     "rtf_min": r(min(rtfs), 4), "rtf_max": r(max(rtfs), 4),
                     "median_clip_s": r(med(med(s[i] for s in secs[e]) for i in range(len(arrays))), 3),
                     "wer": r(asr.wer(refs, texts[e][0]), 4),
                     "same_text_every_round": all(t == texts[e][0] for t in texts[e])})
    base = {e: texts[e][0] for e in engines}
    agree = sum(a == b for a, b in zip(base["faster-whisper fp32"], base["openai-whisper fp32 (PyTorch)"]))
    return {"rows": rows, "decoding": ASR_OPTIONS, "load_start": load_start, "load_end": load3(),
            "fp32_engines_same_text_clips": agree,
            "hypotheses": {e: dict(zip([c["id"] for c in clips], base[e])) for e in engines}}


# ---------------------------------------------------------------------------------------- 2. TTS
def bench_tts(clips: list[dict], rounds: int, cold: Cold) -> dict:
    from efsora_helpers.agent.voice import tts

    cold.time("Piper voice joe-medium (load + first phrase)", lambda: tts.speak("Ready."))
    tts.speak(clips[0]["text"])  # warm-up
    texts = [c["text"] for c in clips]
    secs = [[0.0] * len(texts) for _ in range(rounds)]
    durs = [0.0] * len(texts)
    load_start = load3()
    for rd in range(rounds):
        for i, text in enumerate(bar(texts, f"TTS round {rd + 1}/{rounds}")):
            s = tts.speak(text)
            secs[rd][i], durs[i] = s.seconds, s.duration
    speech_s = sum(durs)
    rtfs = [sum(s) / speech_s for s in secs]
    per_text = [med(s[i] for s in secs) / durs[i] for i in range(len(texts))]
    chars = sum(len(t) for t in texts)
    row = {"engine": "Piper joe-medium (onnxruntime)", "texts": len(texts), "chars": chars,
           "speech_s": r(speech_s, 2), "seconds": r(med(sum(s) for s in secs), 3), "rtf": r(med(rtfs), 4),
           "rtf_min": r(min(rtfs), 4), "rtf_max": r(max(rtfs), 4), "median_text_rtf": r(med(per_text), 4),
           "max_text_rtf": r(max(per_text), 4), "chars_per_s": int(round(chars / med(sum(s) for s in secs)))}
    return {"rows": [row], "load_start": load_start, "load_end": load3()}


# ---------------------------------------------------------------------------------- 3. retrieval
def bench_retrieval(rounds: int, cold: Cold) -> dict:
    from efsora_helpers.agent import search as S

    index = cold.time("search index, handbook + book (default_index; embeddings from the cache)", S.default_index)
    cold.rows[-1]["note"] = (f"{len(index.doc_ids)} documents, {len(index)} chunks, {index.embedded_now} embedded now; "
                             f"chunk {index.times.load_and_chunk:.2f} s, BM25 {index.times.bm25:.2f} s, "
                             f"dense {index.times.dense:.2f} s")
    queries = S.load_queries()
    for mode in S.MODES:  # warm-up: the first dense query loads MiniLM if the cache spared the build from it
        index.search(queries[0].query, k=3, mode=mode)
    load_start = load3()
    runs = [S.evaluate(index, queries, S.MODES) for _ in bar(range(rounds), "retrieval rounds")]
    summary = S.summarize(runs[0])
    rows = []
    for mode in S.MODES:
        per_query = [med(run[i].seconds for run in runs) for i, q in enumerate(runs[0]) if q.mode == mode]
        s = summary[mode]
        rows.append({"mode": mode, "queries": s["queries"], "recall@1": r(s["recall@1"]), "recall@3": r(s["recall@3"]),
                     "recall@5": r(s["recall@5"]), "mrr": r(s["mrr"]), "median_ms": r(1000 * med(per_query), 2),
                     "p95_ms": r(1000 * p95(per_query), 2)})
    return {"rows": rows, "index": repr(index), "load_start": load_start, "load_end": load3()}


def bench_memory(rounds: int, cold: Cold, tmp: Path) -> dict:
    from efsora_helpers.agent.memory import VectorMemory, load_eval_set, load_memories, retrieval_metrics

    data = load_eval_set()
    memory = cold.time("VectorMemory (chromadb) in a temp folder", lambda: VectorMemory(tmp / "memory"))
    ids = cold.time(f"store the {len(data['memories'])} labelled memories (embed + upsert)",
                    lambda: load_memories(memory, data))
    memory.recall(data["queries"][0]["query"], k=5)  # warm-up
    load_start = load3()
    rows = []
    for filters in (False, True):
        runs = [retrieval_metrics(memory, data["queries"], ids, ks=(1, 3, 5), use_filters=filters)
                for _ in bar(range(rounds), f"memory rounds ({'filters' if filters else 'no filter'})")]
        summary, _ = runs[0]
        per_query = [med(run[1][i]["seconds"] for run in runs) for i in range(len(data["queries"]))]
        rows.append({"queries": len(data["queries"]), "filters": "with where" if filters else "none",
                     "recall@1": r(summary["recall@1"]), "recall@3": r(summary["recall@3"]),
                     "recall@5": r(summary["recall@5"]), "mrr": r(summary["mrr"]),
                     "median_ms": r(1000 * med(per_query), 2), "p95_ms": r(1000 * p95(per_query), 2)})
    return {"rows": rows, "memories": len(data["memories"]), "load_start": load_start, "load_end": load3()}


# -------------------------------------------------------------------------------------- 4. agent
def node_seconds(trace: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in trace:
        node = row.get("node") or "?"
        out[node] = out.get(node, 0.0) + float(row.get("seconds") or 0.0)
    return out


def bench_agent(task_ids: list[str], rounds: int, cold: Cold, tmp: Path) -> dict:
    from efsora_helpers.agent.graph import build_agent, run_agent
    from efsora_helpers.agent.search import HandbookIndex, load_handbook
    from efsora_helpers.agent.tasks import load_tasks, prepare_workspace, score
    from efsora_helpers.agent.tools import warehouse_tools
    from efsora_helpers.agent.trace import latency_by_node
    from efsora_helpers.llm.langchain import chat_model, local_server
    from efsora_helpers.perception.engine import PerceptionEngine

    cold.time("local LLM server, SmolLM2-135M (onnxruntime-genai)", local_server)
    llm = chat_model("local", max_tokens=AGENT_MAX_TOKENS)
    handbook = cold.time("search index, handbook only", lambda: HandbookIndex.from_documents(load_handbook()))
    engine = cold.time("PerceptionEngine(ocr_engine='rapidocr') (construct; models load on first image)",
                       lambda: PerceptionEngine(ocr_engine="rapidocr"))
    tasks = {t.id: t for t in load_tasks()}

    def one(task, ws: Path):
        tools = warehouse_tools(ws, search=handbook, engine_factory=lambda: engine)
        graph = build_agent(llm=llm, tools=tools, max_steps=AGENT_MAX_STEPS)
        prepare_workspace(task, ws)
        result = run_agent(task.prompt, graph=graph, approve="deny", max_steps=AGENT_MAX_STEPS)
        return result, score(task, result, ws)

    warm, _ = cold.time(f"first agent run ({WARMUP_TASK}: perception models load, LLM warm-up; not timed)",
                        lambda: one(tasks[WARMUP_TASK], tmp / "agent-warmup"))
    cold.rows[-1]["note"] = f"status {warm.status}, {warm.steps} steps"
    load_start = load3()
    runs: dict[str, list] = {tid: [] for tid in task_ids}
    with bar(None, "agent runs", total=rounds * len(task_ids)) as progress:
        for rd in range(rounds):
            for tid in task_ids:
                result, grade = one(tasks[tid], tmp / f"agent-{tid}-r{rd}")
                runs[tid].append((result, grade))
                progress.update(1)
                progress.set_postfix_str(f"{tid} {result.seconds:.1f}s {result.status}")
    rows, node_rows = [], []
    for tid, rs in runs.items():
        first, grade = rs[0]
        per_node = [node_seconds(res.trace) for res, _ in rs]
        nodes = {n: r(med(p.get(n, 0.0) for p in per_node), 2) for n in NODES if any(n in p for p in per_node)}
        rows.append({"task": tid, "kind": tasks[tid].kind, "seconds": r(med(res.seconds for res, _ in rs), 2),
                     "seconds_min": r(min(res.seconds for res, _ in rs), 2),
                     "seconds_max": r(max(res.seconds for res, _ in rs), 2),
                     "status": "/".join(sorted({res.status for res, _ in rs})),
                     "steps": (lambda m: int(m) if m == int(m) else m)(med(res.steps for res, _ in rs)),
                     "tokens": int(round(med(res.tokens.get("total", 0) for res, _ in rs))),
                     "llm_calls": sum(1 for row in first.trace if (row.get("input_tokens") or 0) > 0),
                     "success": f"{sum(g.success for _, g in rs)}/{len(rs)}",
                     "nodes": nodes, "path": " > ".join(row.get("node") or "?" for row in first.trace),
                     "answer": first.answer[:200], "reasons": grade.reasons})
    for d in latency_by_node([res for rs in runs.values() for res, _ in rs]):
        node_rows.append({**d, "share": None})
    total = sum(d["seconds_total"] for d in node_rows) or 1.0
    for d in node_rows:
        d["share"] = round(d["seconds_total"] / total, 3)
    return {"rows": rows, "nodes": node_rows, "load_start": load_start, "load_end": load3(),
            "settings": {"max_tokens": AGENT_MAX_TOKENS, "max_steps": AGENT_MAX_STEPS, "approve": "deny",
                         "search": "handbook-only HandbookIndex", "ocr_engine": "rapidocr"}}


# -------------------------------------------------------------------------------------- 5. voice
def bench_voice(clip_ids: list[str], rounds: int, cold: Cold, tmp: Path, refs: dict[str, str],
                done: set[str]) -> dict:
    from efsora_helpers.agent.search import default_index
    from efsora_helpers.agent.tools import warehouse_tools
    from efsora_helpers.agent.voice import asr, roundtrip as rt, tts
    from efsora_helpers.agent.voice.audio import SAMPLE_RATE, speech_segments
    from efsora_helpers.llm.langchain import local_server

    import numpy as np

    if not any(c["what"].startswith("local LLM server") for c in cold.rows):  # step 4 skipped
        cold.time("local LLM server, SmolLM2-135M (onnxruntime-genai)", local_server)
    cold.time("Silero VAD (first call, 1 s of silence)",
              lambda: speech_segments(np.zeros(SAMPLE_RATE, dtype=np.float32)))
    if "asr" not in done:
        cold.time("Whisper tiny.en, faster-whisper int8 (load + 1 s of silence)",
                  lambda: asr.warm_up("faster", **rt.ASR_OPTIONS))
    if "tts" not in done:
        cold.time("Piper voice joe-medium (load + first phrase)", lambda: tts.speak("Ready."))
    if "retrieval" not in done:
        cold.time("search index, handbook + book (default_index; embeddings from the cache)", default_index)
    index = default_index()  # what efsora voice ask searches (built in step 3, or just now)
    counter = {"n": 0}

    def agent(question: str):
        """roundtrip.answer_question(question, provider="local", approve="deny"), on a temp workspace."""
        counter["n"] += 1
        ws = tmp / f"voice-{counter['n']}"
        return rt.answer_question(question, provider="local", approve="deny", max_steps=VOICE_MAX_STEPS,
                                  tools=warehouse_tools(ws, search=index))

    speech = REPO / "data" / "safetyscenes" / "speech"
    rt.ask(speech / f"{clip_ids[0]}.wav", out=tmp / "voice-warmup.wav", provider="local", agent=agent)  # warm-up
    load_start = load3()
    results: dict[str, list] = {c: [] for c in clip_ids}
    with bar(None, "voice round trips", total=rounds * len(clip_ids)) as progress:
        for rd in range(rounds):
            for c in clip_ids:
                res = rt.ask(speech / f"{c}.wav", out=tmp / f"{c}-r{rd}.answer.wav", provider="local",
                             approve="deny", agent=agent)
                results[c].append(res)
                progress.update(1)
    rows = []
    for c, rs in results.items():
        first = rs[0]
        row = {"clip": c, "question_s": r(first.audio_seconds, 2), "heard": first.question,
               "wer": r(asr.wer(refs[c], first.question), 3), "status": "/".join(sorted({x.status for x in rs})),
               "answer_s": r(med(x.answer_audio_seconds for x in rs), 2), "answer": first.answer[:200]}
        for stage in rt.STAGES:
            row[stage] = r(med(x.stages.get(stage, 0.0) for x in rs), 3)
        row["total"] = r(med(x.total_seconds for x in rs), 2)
        row["agent_nodes"] = " > ".join(f"{t['node']} {t.get('seconds') or 0:.1f}" for t in first.agent_trace)
        rows.append(row)
    return {"rows": rows, "load_start": load_start, "load_end": load3(),
            "settings": {"asr": rt.ASR_OPTIONS, "agent_max_steps": VOICE_MAX_STEPS, "approve": "deny",
                         "search": "default_index (handbook + book)", "tts": "piper"}}


# ------------------------------------------------------------------------------------ reporting
def table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float) and v != v:
            return "n/a"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(h for _, h in cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(cell(row.get(k)) for k, _ in cols) + " |" for row in rows]
    return "\n".join(lines)


def section_load(s: dict) -> str:
    return f"load average (1/5/15 min) at the section's start {s['load_start']}, end {s['load_end']}"


def markdown(meta: dict, res: dict) -> str:
    out = [f"# Chapter 3 benchmark: agent, retrieval, memory and voice ({meta['date']})", "",
           f"- command: `{meta['command']}`",
           f"- machine: {meta['machine']}; Python {meta['python']}; threads per engine: {meta['threads']} "
           f"(OMP_NUM_THREADS, torch.set_num_threads)",
           f"- commit: {meta['commit']}",
           f"- load average (1/5/15 min) at start {meta['load_start']}, at end {meta['load_end']} "
           "(a loaded machine slows every figure)",
           f"- median of {meta['rounds']} rounds; warm-up calls excluded; model loads in \"Cold start\"; "
           f"wall time {meta['wall_s']} s" + ("; **--quick smoke run: fewer clips, tasks and questions**" if meta["quick"] else ""),
           ""]
    if "asr" in res:
        s = res["asr"]
        out += ["## 1. Speech recognition (Whisper tiny.en), notebook 08_whisper", "",
                f"Greedy decoding without timestamps ({s['decoding']}), engines interleaved clip by clip; "
                f"RTF = recognition seconds / audio seconds (below 1: faster than real time); WER over all "
                f"clips after `asr.normalise`. fp32 engines wrote the same text on "
                f"{s['fp32_engines_same_text_clips']}/{s['rows'][0]['clips']} clips. {section_load(s)}.", "",
                table(s["rows"], [("engine", "engine"), ("clips", "clips"), ("audio_s", "audio s"),
                                  ("seconds", "recognition s"), ("rtf", "RTF"), ("rtf_min", "RTF min"),
                                  ("rtf_max", "RTF max"), ("median_clip_s", "median s / clip"), ("wer", "WER"),
                                  ("same_text_every_round", "same text every round")]), ""]
    if "tts" in res:
        s = res["tts"]
        out += ["## 2. Speech synthesis (Piper), notebook 09_voice", "",
                f"RTF = synthesis seconds / seconds of speech produced, on the transcripts' texts. {section_load(s)}.", "",
                table(s["rows"], [("engine", "engine"), ("texts", "texts"), ("chars", "chars"), ("speech_s", "speech s"),
                                  ("seconds", "synthesis s"), ("rtf", "RTF"), ("rtf_min", "RTF min"), ("rtf_max", "RTF max"),
                                  ("median_text_rtf", "median RTF / text"), ("max_text_rtf", "max RTF / text"),
                                  ("chars_per_s", "chars / s")]), ""]
    if "retrieval" in res:
        s = res["retrieval"]
        out += ["## 3a. Search (handbook + book), notebook 03_search", "",
                f"`{s['index']}`; recall@k = share of queries with a relevant document in the top k (one hit per "
                f"document); latency per query = median over rounds, then median and 95th percentile over the "
                f"queries (dense and hybrid include embedding the query). {section_load(s)}.", "",
                table(s["rows"], [("mode", "mode"), ("queries", "queries"), ("recall@1", "recall@1"),
                                  ("recall@3", "recall@3"), ("recall@5", "recall@5"), ("mrr", "MRR"),
                                  ("median_ms", "median ms"), ("p95_ms", "p95 ms")]), ""]
    if "memory" in res:
        s = res["memory"]
        out += ["## 3b. Long-term memory (VectorMemory, chromadb), notebook 04_memory", "",
                f"{s['memories']} labelled memories in a temp folder; recall@k = share of a query's relevant "
                f"memories in the top k, averaged (`memory.retrieval_metrics`); \"with where\" applies each "
                f"query's metadata filter where it has one. {section_load(s)}.", "",
                table(s["rows"], [("filters", "filters"), ("queries", "queries"), ("recall@1", "recall@1"),
                                  ("recall@3", "recall@3"), ("recall@5", "recall@5"), ("mrr", "MRR"),
                                  ("median_ms", "median ms"), ("p95_ms", "p95 ms")]), ""]
    if "agent" in res:
        s = res["agent"]
        st = s["settings"]
        nodes = [n for n in NODES if any(n in row["nodes"] for row in s["rows"])]
        rows = [{**row, **{f"n_{n}": row["nodes"].get(n) for n in nodes}} for row in s["rows"]]
        out += ["## 4. Agent (LangGraph, local SmolLM2-135M), notebooks 01_graph and 05_patterns", "",
                f"`run_agent` per task with a fresh workspace, approve={st['approve']}, max_tokens={st['max_tokens']}, "
                f"max_steps={st['max_steps']}, {st['search']}; seconds = wall time of the run (median over rounds), "
                f"node columns = seconds in that node per run (median); success = `tasks.score` over the rounds. "
                f"{section_load(s)}.", "",
                table(rows, [("task", "task"), ("kind", "kind"), ("seconds", "seconds"), ("seconds_min", "min"),
                             ("seconds_max", "max"), ("status", "status"), ("steps", "steps"), ("tokens", "tokens"),
                             ("llm_calls", "LLM calls"), ("success", "success")]
                      + [(f"n_{n}", n) for n in nodes]), "",
                "Time per node over all timed runs (`trace.latency_by_node`):", "",
                table(s["nodes"], [("node", "node"), ("calls", "calls"), ("seconds_total", "seconds total"),
                                   ("seconds_mean", "mean s"), ("seconds_max", "max s"), ("share", "share"),
                                   ("tokens", "tokens")]), "",
                "Paths (first round): " + "; ".join(f"{row['task']}: {row['path']}" for row in s["rows"]), ""]
    if "voice" in res:
        s = res["voice"]
        out += ["## 5. Voice round trip, notebook 09_voice", "",
                "`roundtrip.ask`: WAV -> load/resample -> Silero VAD -> Whisper (faster-whisper int8, greedy) -> "
                f"agent (`run_agent`, local model, max_steps={s['settings']['agent_max_steps']}, approve=deny, "
                f"{s['settings']['search']}, graph compiled per question as `efsora voice ask` does) -> Piper -> WAV. "
                f"Seconds per stage, median over rounds; WER of what Whisper heard. {section_load(s)}.", "",
                table(s["rows"], [("clip", "clip"), ("question_s", "question s"), ("wer", "WER heard"),
                                  ("status", "status"), ("load", "load"), ("vad", "VAD"), ("asr", "ASR"),
                                  ("agent", "agent"), ("tts", "TTS"), ("write", "write"), ("total", "total s"),
                                  ("answer_s", "answer speech s")]), "",
                "Heard / answered (first round): " + "; ".join(
                    f"{row['clip']}: \"{row['heard']}\" -> \"{row['answer'][:100]}\"" for row in s["rows"]), ""]
    out += ["## Cold start (each once, outside the timed loops)", "",
            table(res["cold"], [("what", "what"), ("seconds", "seconds"), ("note", "note")]), ""]
    if meta["skipped"]:
        out += [f"Skipped in this run: {', '.join(meta['skipped'])}.", ""]
    return "\n".join(out)


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "efsora_helpers",
                                "data", "benchmarks/agent_chapter3.py"], cwd=REPO, capture_output=True,
                               text=True, timeout=20).stdout.strip()
        return sha + (" (with uncommitted changes in efsora_helpers/, data/ or this script)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per figure (default 3; --quick 1)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 clips/texts, 2 tasks, 1 question, 1 round")
    ap.add_argument("--skip", nargs="+", default=[], choices=SECTIONS, help="sections to leave out")
    ap.add_argument("--tasks", nargs="+", help=f"agent task ids (default: {' '.join(AGENT_TASKS)})")
    ap.add_argument("--threads", type=int, default=1, help="threads per engine (default 1)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output path without suffix (default benchmarks/results/agent_chapter3[_quick])")
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before any engine loads (ORT, CT2, torch read it)

    import torch

    import efsora_helpers as eh

    torch.set_num_threads(args.threads)
    eh.setup(chapter="agent", quiet=True)

    started, load_start = time.time(), load3()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    records = [json.loads(line) for line in
               (REPO / "data" / "safetyscenes" / "speech" / "transcripts.jsonl").read_text().splitlines() if line.strip()]
    refs = {c["id"]: c["text"] for c in records}
    clips = records[:4] if args.quick else records
    task_ids = args.tasks or (QUICK_AGENT_TASKS if args.quick else AGENT_TASKS)
    voice_clips = VOICE_CLIPS[:1] if args.quick else VOICE_CLIPS
    cold = Cold()
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp_name:
        tmp = Path(tmp_name)
        steps = [("asr", lambda: bench_asr(clips, rounds, cold)),
                 ("tts", lambda: bench_tts(clips, rounds, cold)),
                 ("retrieval", lambda: bench_retrieval(rounds, cold)),
                 ("memory", lambda: bench_memory(rounds, cold, tmp)),
                 ("agent", lambda: bench_agent(task_ids, rounds, cold, tmp)),
                 ("voice", lambda: bench_voice(voice_clips, rounds, cold, tmp, refs, set(res)))]
        for name, fn in steps:
            if name in args.skip:
                continue
            t = time.time()
            log(f"[{name}] load {load3()}")
            res[name] = fn()
            res[name]["wall_s"] = round(time.time() - t, 1)
            log(f"[{name}] done in {res[name]['wall_s']} s")
    res["cold"] = cold.rows
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    cmd = "python benchmarks/agent_chapter3.py" + (" --quick" if args.quick else "") + f" --rounds {rounds}" + \
        (f" --skip {' '.join(args.skip)}" if args.skip else "") + (f" --tasks {' '.join(args.tasks)}" if args.tasks else "") + \
        (f" --threads {args.threads}" if args.threads != 1 else "")
    meta = {"date": date, "command": cmd, "quick": args.quick, "rounds": rounds, "threads": args.threads,
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, {model or 'cpu model unknown'}, "
                       f"{'AVX512' if 'avx512f' in cpuinfo else 'no AVX512'}",
            "python": platform.python_version(), "commit": commit(), "load_start": load_start, "load_end": load3(),
            "wall_s": round(time.time() - started, 1), "skipped": list(args.skip),
            "agent_tasks": task_ids if "agent" not in args.skip else [],
            "voice_clips": voice_clips if "voice" not in args.skip else []}
    out = args.out or RESULTS / ("agent_chapter3_quick" if args.quick else "agent_chapter3")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(meta, res)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, **res}, indent=1, default=str))
    print(text)
    log(f"wrote {out.with_suffix('.md')} and .json in {meta['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
