"""Benchmark: the local model's two runtimes side by side in one process.

The transformers token loop (``llm/local.py``, the teaching loop) against onnxruntime-genai
(``llm/ort_runtime.py``, the provider's default) at each precision: decode tokens/s and time to
first token on a short (~120-token) and a long (~700-token) prompt at 1 and 2 threads, the cost of
a JSON-Schema constraint, and how far each greedy answer agrees with the float32 transformers loop.
Threads are set per engine in-process (``torch.set_num_threads``; the ORT session overlay), so one
run compares them under the same machine load, which it records (``os.getloadavg``).

Prints a table with the decode ratio and writes ``benchmarks/results/llm_runtime.json`` and ``.md``.
Asserts nothing about speed. About 3 minutes on 2 idle cores.
Run: .venv/bin/python benchmarks/llm_runtime.py [--precisions fp32 int8 int4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

NEW_TOKENS = 64
THREADS = (1, 2)
SCHEMA = {  # a reasoner-like answer: bounded strings and an enum, so it closes within NEW_TOKENS
    "type": "object",
    "properties": {
        "workers": {"enum": list(range(21))},
        "risk": {"type": "string", "enum": ["low", "medium", "high"]},
        "reason": {"type": "string", "maxLength": 120},
    },
    "required": ["workers", "risk", "reason"],
    "additionalProperties": False,
}
RESULTS = Path(__file__).parent / "results"
OTHER_RUNTIMES = """## Runtimes not in this run

From the project's offline measurements (December 2026), made on a 2-core VM without AVX2, not
re-measured here: llama-cpp-python 0.3.36 on the shipped Q4_1 GGUF decoded 69/62 tok/s (1 thread,
short/long) but ships as an sdist only (7.5 min of compiling on 2 cores, needs gcc, g++, cmake);
its GBNF grammar constraint cost 30-45 % of the decode speed and its greedy text left the float32
loop's after ~30-60 words; GGUF LoRA via `lora_path=` matched PEFT. ctranslate2 int8 decoded
39/28 tok/s with the fastest time to first token but has no logits hook, so no JSON-Schema
constraint at all. onnxruntime-genai is a binary wheel (11 MB; with onnx and onnx-ir for its model
builder about 21 MB of wheels, a few seconds to install) on the onnxruntime the book already pins,
its llguidance constraint costs little, and `--extra_options adapter_path=<peft adapter>` bakes a
PEFT LoRA adapter into a built model (OFFLINE.md: output matched transformers + PEFT; not re-tested
for this run; run-time adapter swapping with `.onnx_adapter` files not tested).
"""


def prompts(llm) -> dict[str, str]:
    """A short question and a long scene listing, rendered with the model's chat template."""
    system = "You are a warehouse safety assistant. Answer from the scene facts only."
    short = ("Scene: 4 workers, 2 without hard hats, one forklift moving near the loading dock, "
             "three pallets stacked in the aisle and a sign that reads 'forklift zone'. "
             "Two of the workers stand inside the painted forklift lane; the other two carry boxes past "
             "the racks. What are the risks and what should the supervisor do first?")
    objects = []
    for i in range(1, 31):
        kind = ("person", "forklift", "pallet", "sign")[i % 4]
        ppe = f", hard hat {'yes' if i % 3 else 'no'}, vest {'yes' if i % 5 else 'no'}" if kind == "person" else ""
        objects.append(f"- object {i}: {kind} at x={40 * i % 640}, y={23 * i % 480}{ppe}")
    long = "Scene facts:\n" + "\n".join(objects) + "\n\nWhich workers are at risk, and why? Answer briefly."
    return {name: llm.render([{"role": "system", "content": system}, {"role": "user", "content": text}])
            for name, text in (("short", short), ("long", long))}


def measure(llm, prompt: str, rounds: int, **kwargs) -> dict:
    gens = [llm.generate(prompt, max_new_tokens=NEW_TOKENS, **kwargs) for _ in range(rounds)]
    return {
        "decode_tok_s": round(statistics.median(g.tokens_per_s for g in gens), 1),
        "ttft_s": round(statistics.median(g.first_token_s for g in gens), 3),
        "prompt_tokens": gens[0].prompt_tokens,
        "new_tokens": len(gens[0].token_ids),
        "token_ids": gens[0].token_ids,
        "text": gens[0].text,
    }


def engine_runs(name: str, make, rounds: int, texts: dict[str, str]) -> list[dict]:
    rows = []
    for threads in THREADS:
        llm = make(threads)
        llm.generate(texts["short"], max_new_tokens=4)  # warm-up: first-call allocations
        llm.generate(texts["short"], max_new_tokens=4, json_schema=SCHEMA)  # compiles the grammar
        for prompt_name, prompt in texts.items():
            load = os.getloadavg()[0]
            free = measure(llm, prompt, rounds)
            row = {"engine": name, "threads": threads, "prompt": prompt_name, "load_1min": round(load, 2), **free}
            if prompt_name == "short":
                constrained = measure(llm, prompt, rounds, json_schema=SCHEMA)
                row["decode_tok_s_schema"] = constrained["decode_tok_s"]
                row["schema_text"] = constrained["text"]
            rows.append(row)
            print(f"  {name} {threads}t {prompt_name}: {row['decode_tok_s']} tok/s, TTFT {row['ttft_s']} s "
                  f"(load {row['load_1min']})", flush=True)
    return rows


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precisions", nargs="*", default=["fp32", "int8", "int4"])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.pop("OMP_NUM_THREADS", None)  # threads are set per engine below
    import torch

    import efsora_helpers as eh
    from efsora_helpers.llm.local import load_local_model
    from efsora_helpers.llm.ort_runtime import PRECISION, RuntimeModel, builder_version

    eh.setup(chapter="reasoner", quiet=True)
    started = time.time()
    load_before = os.getloadavg()
    reference = load_local_model()
    texts = prompts(reference)

    def transformers_at(threads: int):
        torch.set_num_threads(threads)
        return reference

    print("transformers loop (fp32):", flush=True)
    rows = engine_runs("transformers fp32", transformers_at, args.rounds, texts)
    for precision in args.precisions:
        print(f"onnxruntime-genai {precision}:", flush=True)
        rows += engine_runs(f"onnxruntime-genai {precision}", lambda t, p=precision: RuntimeModel(p, threads=t),
                            args.rounds, texts)

    ref = {(r["threads"], r["prompt"]): r for r in rows if r["engine"] == "transformers fp32"}
    for r in rows:
        base = ref[(r["threads"], r["prompt"])]
        r["decode_ratio"] = round(r["decode_tok_s"] / base["decode_tok_s"], 2)
        r["ttft_ratio"] = round(r["ttft_s"] / base["ttft_s"], 2)
        r["same_tokens_as_fp32_loop"] = common_prefix(r["token_ids"], ref[(1, r["prompt"])]["token_ids"])
        if "schema_text" in r:
            r["schema_cost"] = round(1 - r["decode_tok_s_schema"] / r["decode_tok_s"], 3)
            r["schema_answer_matches_fp32_loop"] = r["schema_text"] == ref[(1, "short")]["schema_text"]
    for r in rows:
        r.pop("token_ids")

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
                   f"{'AVX512' if 'avx512f' in Path('/proc/cpuinfo').read_text() else 'no AVX512'}",
        "load_1_5_15_before": [round(x, 2) for x in load_before],
        "load_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        "versions": {"torch": torch.__version__, "onnxruntime-genai": builder_version()},
        "new_tokens": NEW_TOKENS, "rounds": args.rounds, "book_precision": PRECISION,
        "wall_s": round(time.time() - started, 1),
        "command": f"python benchmarks/llm_runtime.py --precisions {' '.join(args.precisions)} --rounds {args.rounds}",
    }
    header = ("| engine | threads | prompt (tokens) | decode tok/s | x loop | TTFT s | schema cost | "
              "tokens same as fp32 loop | schema answer same | load |")
    lines = [header, "| " + " | ".join(["---"] * 10) + " |"]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['threads']} | {r['prompt']} ({r['prompt_tokens']}) | {r['decode_tok_s']} | "
            f"{r['decode_ratio']} | {r['ttft_s']} | {r.get('schema_cost', '')} | "
            f"{r['same_tokens_as_fp32_loop']}/{r['new_tokens']} | {r.get('schema_answer_matches_fp32_loop', '')} | "
            f"{r['load_1min']} |")
    table = "\n".join(lines)
    print(table)
    print(json.dumps(meta))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "llm_runtime.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (RESULTS / "llm_runtime.md").write_text(
        f"# Local LLM runtimes, side by side ({meta['date']})\n\n"
        f"Source: `{meta['command']}`; {meta['machine']}; load average before "
        f"{meta['load_1_5_15_before']}, after {meta['load_1_5_15_after']} (2 shared cores: a high load "
        f"slows every engine). {NEW_TOKENS} new tokens, greedy, median of {args.rounds} rounds; "
        f"\"x loop\" = decode tok/s over the transformers loop's at the same threads and prompt; "
        f"schema cost = 1 - constrained/free tok/s.\n\n{table}\n\n{OTHER_RUNTIMES}")


if __name__ == "__main__":
    main()
