"""``efsora reason IMAGE --question ...``: the Visual Reasoner from the command line.

stdout carries the answer (or, with ``--json``, one JSON object); library logs go to stderr.
``--cv-result FILE`` reuses a chapter 1 result when FILE exists and saves the engine's result there
when it does not. Exit 0 on an answer, 2 on a usage error (missing file, missing key, bad option).
Taught in ``notebooks/reasoner/05_reasoner.ipynb``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_QUESTION = "Is there a safety violation in this warehouse?"


def add_parser(sub) -> None:
    from .prompts import STRATEGIES
    from .reasoner import MODES

    p = sub.add_parser("reason", help="ask an LLM about an image through chapter 1's perception")
    p.add_argument("image", help="an image, or a chapter 1 JSON result")
    p.add_argument("--question", "-q", help=f"default: {DEFAULT_QUESTION!r}; in interactive mode, the first "
                   "question (then one per line from standard input)")
    p.add_argument("--provider", help="local (default), openai, anthropic, deepseek, gemini, openai_compatible")
    p.add_argument("--model", help="model id (default: the provider's default in the catalog)")
    p.add_argument("--base-url", help="for openai_compatible: the server, e.g. http://localhost:11434/v1")
    p.add_argument("--strategy", choices=STRATEGIES, default="direct")
    p.add_argument("--mode", choices=MODES, default="standard")
    p.add_argument("--cv-result", type=Path, help="chapter 1 JSON to reuse, or where to save the engine's")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    p.add_argument("--max-tokens", type=int, default=200)
    p.set_defaults(func=run)


def _scene(args):
    from ..perception.schema import load_result

    source = Path(args.image)
    if not source.exists():
        raise FileNotFoundError(f"no such file: {source}")
    if args.cv_result and args.cv_result.exists():
        return load_result(args.cv_result)
    if source.suffix.lower() == ".json":
        return load_result(source)
    from ..perception.engine import PerceptionEngine

    result = PerceptionEngine().perceive(source)
    if args.cv_result:
        from ..paths import write_atomically

        write_atomically(args.cv_result, result.model_dump_json(indent=1))
    return result


def run(args) -> int:
    from ..env import load_dotenv_keys, prepare_offline_environment, quiet_known_warnings
    from ..llm.client import LLMClient
    from .reasoner import VisualReasoner

    if not Path(args.image).exists():  # before loading any model
        raise FileNotFoundError(f"no such file: {args.image}")
    prepare_offline_environment()
    quiet_known_warnings()
    load_dotenv_keys()
    client = LLMClient(args.provider, args.model, base_url=args.base_url)  # key errors before any work
    scene = _scene(args)
    reasoner = VisualReasoner(client, max_tokens=args.max_tokens)
    if args.mode == "interactive":
        reasoner.analyze(scene, args.question or "", mode="interactive", strategy=args.strategy,
                         output=lambda text: print(text, flush=True))
        return 0
    answer = reasoner.analyze(scene, args.question or DEFAULT_QUESTION, mode=args.mode, strategy=args.strategy)
    answers = answer if isinstance(answer, list) else [answer]
    for a in answers:
        if args.json:
            row = a.row()
            row["structured"] = a.structured.model_dump() if a.structured is not None else None
            row["warnings"] = a.warnings
            print(json.dumps(row, ensure_ascii=False, default=str))
        else:
            label = f"[{a.provider} {a.mode}/{a.strategy}] " if len(answers) > 1 else ""
            print(label + (a.answer if a.mode != "safety" or a.structured is None
                           else a.structured.model_dump_json(indent=1)))
            for w in a.warnings:
                print(f"warning: {w}", file=sys.stderr)
    return 0
