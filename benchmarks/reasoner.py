"""Benchmark: the local LLM's speed (tokens per second, time to first token, with and without a
grammar), the reasoner's latency per answer, the response cache's speed-up on repeated questions,
and accuracy on the labelled evaluation set per mode x strategy.

Prints figures and ratios; asserts nothing about speed. With API keys set, ``--providers`` adds
hosted providers to the accuracy table.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reasoner.py [--questions 70] [--rounds 3]
     [--rows-csv answers.csv] [--skip-speed] [--configs standard/direct tools/direct]
"""

import argparse
import os
import platform
import statistics
import time

import pandas as pd

import efsora_helpers as eh
from efsora_helpers.llm import LLMClient, ResponseCache, available_providers
from efsora_helpers.llm.ort_runtime import load_default_model, selected_runtime
from efsora_helpers.perception.schema import load_result
from efsora_helpers.reasoner import PromptEngine, VisualReasoner, render
from efsora_helpers.reasoner.evaluation import evaluate, load_eval_set
from efsora_helpers.reasoner.structured import DirectResponse, schema_of

CONFIGS = [("standard", "direct"), ("standard", "few_shot"), ("standard", "cot"), ("tools", "direct")]


def speed(rounds: int) -> dict:
    llm = load_default_model()  # the provider's runtime: EFSORA_LLM_RUNTIME=transformers for the old loop
    questions = load_eval_set()
    scene = load_result(questions[0].cv_path)
    engine = PromptEngine(llm.count_tokens)
    built = engine.build(scene, questions[0].question, "direct")
    prompt = llm.render([{"role": m.role, "content": m.content} for m in built.messages])
    free, constrained = [], []
    for _ in range(rounds):
        free.append(llm.generate(prompt, max_new_tokens=64, repetition_penalty=1.1))
        constrained.append(llm.generate(prompt, max_new_tokens=64, json_schema=schema_of(DirectResponse)))
    med = lambda xs: statistics.median(xs)  # noqa: E731
    return {
        "prompt_tokens": free[0].prompt_tokens,
        "load_s": round(llm.load_s, 2),
        "runtime": selected_runtime() + (f" {llm.precision}" if hasattr(llm, "precision") else ""),
        "loaded_from": getattr(llm, "loaded_from", "cache"),
        "ttft_s": round(med([g.first_token_s for g in free]), 3),
        "decode_tok_s": round(med([g.tokens_per_s for g in free]), 1),
        "decode_tok_s_constrained": round(med([g.tokens_per_s for g in constrained]), 1),
        "grammar_overhead_ratio": round(med([g.tokens_per_s for g in free]) / med([g.tokens_per_s for g in constrained]), 3),
        "prompt_chars": len(render(built.messages)),
    }


def cache_speedup(n: int) -> dict:
    client = LLMClient("local", cache=ResponseCache())
    reasoner = VisualReasoner(client)
    questions = load_eval_set()[:n]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for q in questions:
            reasoner.reset()
            reasoner.analyze(load_result(q.cv_path), q.question)
        times.append(time.perf_counter() - start)
    return {"questions": n, "first_s": round(times[0], 2), "repeat_s": round(times[1], 3),
            "speedup": round(times[0] / max(times[1], 1e-9), 1), "hits": client.cache.hits}


def accuracy(n: int, providers: list[str], rows_csv: str | None = None, configs=CONFIGS) -> pd.DataFrame:
    questions = load_eval_set()
    step = max(1, len(questions) // n)
    subset = questions[::step][:n]
    rows = []
    for provider in providers:
        for mode, strategy in configs:
            answers = evaluate(lambda: VisualReasoner(LLMClient(provider)), subset, mode=mode, strategy=strategy)
            rows += [a.row() for a in answers]
    df = pd.DataFrame(rows)
    if rows_csv:  # every answer, so a figure quoted from the table can be traced to its questions
        df.to_csv(rows_csv, index=False)
    keys = ["provider", "mode", "strategy"]
    table = df.groupby(keys).agg(
        accuracy=("correct", "mean"), cv_ceiling=("cv_ceiling", "mean"), valid=("valid", "mean"),
        latency_s=("latency_s", "median"), input_tokens=("input_tokens", "mean"),
        output_tokens=("output_tokens", "mean"), cost_usd=("cost_usd", "mean"), n=("correct", "size"),
    )
    by_kind = df.pivot_table(index=keys, columns="kind", values="correct", aggfunc="mean").add_prefix("acc_")
    return table.join(by_kind).round(3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=70)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-questions", type=int, default=5)
    parser.add_argument("--providers", nargs="*", help="default: every available provider")
    parser.add_argument("--rows-csv", help="write one row per answer to this CSV file")
    parser.add_argument("--skip-speed", action="store_true", help="accuracy only")
    parser.add_argument("--configs", nargs="*", help="mode/strategy pairs, e.g. tools/direct (default: all four)")
    args = parser.parse_args()
    eh.setup(chapter="reasoner", quiet=True)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {time.strftime('%Y-%m-%d')}")
    if not args.skip_speed:
        print("local model speed:", speed(args.rounds))
        print("response cache:", cache_speedup(args.cache_questions))
    providers = args.providers or available_providers()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        configs = [tuple(c.split("/")) for c in args.configs] if args.configs else CONFIGS
        print(accuracy(args.questions, providers, args.rows_csv, configs))


if __name__ == "__main__":
    main()
