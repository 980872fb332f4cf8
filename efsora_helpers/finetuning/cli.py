"""``efsora finetune ...``: chapter 4 from the command line.

One ``finetune`` parser; each part of the chapter adds its own actions below it:

* part B (the LLM): ``efsora finetune llm-data`` builds the instruction data set
  (:mod:`.llm_data`); ``efsora finetune lora`` trains a LoRA or QLoRA adapter (:mod:`.llm_lora`).
* part A (the detector) adds its actions in :func:`_cv_commands`.

Errors a user can fix end with one line and exit code 2 (``efsora_helpers.cli.main``).
"""

from __future__ import annotations

from pathlib import Path


def add_commands(sub) -> None:
    p = sub.add_parser("finetune", help="chapter 4: fine-tune the detector and the local LLM")
    s = p.add_subparsers(dest="action", required=True)
    _cv_commands(s)
    _llm_commands(s)


# ---- part A: the detector ------------------------------------------------------------------------
def _cv_commands(s) -> None:
    """Part A's actions (transfer learning for the detector) register here."""


# ---- part B: the LLM -----------------------------------------------------------------------------
def _llm_commands(s) -> None:
    d = s.add_parser("llm-data", help="build the LLM instruction data from SafetyScenes ground truth")
    d.add_argument("--out", type=Path, help="output folder (default: $EFSORA_HOME/finetuning/llm_data)")
    d.add_argument("--fresh-scenes", type=int, default=0,
                   help="also render this many new scenes (ground truth only) from unused seeds")
    d.add_argument("--val-fraction", type=float, default=0.1)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_llm_data)


def _llm_data(args) -> int:
    from .llm_data import build_instruction_data

    report = build_instruction_data(out_dir=args.out, fresh_scenes=args.fresh_scenes,
                                    val_fraction=args.val_fraction, seed=args.seed)
    for line in report.lines():
        print(line)
    return 0
