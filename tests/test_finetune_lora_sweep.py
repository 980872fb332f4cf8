"""The LoRA sweep (benchmarks/finetune_lora_sweep.py; notebooks/finetuning/05_lora.ipynb): one factor
at a time, and the shipped results consistent with the settings they name."""

import dataclasses
import importlib.util

import pandas as pd
import pytest

from efsora_helpers.paths import repo_root

SHIPPED = repo_root() / "benchmarks" / "results" / "finetune_lora_sweep.csv"
# SmolLM2-135M's linear layers (d_in + d_out per target, 30 layers each): notebook 05's shape table.
IN_PLUS_OUT = {"q": 1152, "k": 768, "v": 768, "o": 1152, "gate": 2112, "up": 2112, "down": 2112}


def _benchmark():
    spec = importlib.util.spec_from_file_location("lora_sweep_bench", repo_root() / "benchmarks" / "finetune_lora_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_run_changes_one_factor_from_the_reference():
    bench = _benchmark()
    ref = bench.reference_settings(steps=12, grad_accum=2, eval_every=4)
    assert (ref.rank, ref.alpha, ref.dropout, ref.dtype) == (16, 32.0, 0.05, "bfloat16")
    assert ref.patience > ref.steps // ref.eval_every  # no early stop: every run takes every step
    for name, (factor, change) in bench.configs().items():
        changed = {k for k, v in dataclasses.asdict(dataclasses.replace(ref, **change)).items()
                   if v != getattr(ref, k)}
        if factor == "rank":  # alpha moves with rank, so alpha / r stays 2
            assert changed == {"rank", "alpha"} and change["alpha"] / change["rank"] == ref.alpha / ref.rank
        else:
            assert changed == ({factor} if factor != "reference" else set()), name


def test_an_unknown_run_is_a_one_line_error(capsys, tmp_path):
    assert _benchmark().main(["--only", "rank=3", "--out", str(tmp_path / "x")]) == 2
    assert "unknown run 'rank=3'" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


@pytest.mark.skipif(not SHIPPED.exists(), reason="the sweep has not been shipped")
def test_shipped_sweep_is_consistent_with_its_settings():
    sweep = pd.read_csv(SHIPPED)
    for _, r in sweep.iterrows():
        assert r.trainable == r["rank"] * 30 * sum(IN_PLUS_OUT[t] for t in r.targets.split(",")), r.run
    same = ["steps", "grad_accum", "lr", "dtype", "train_examples", "val_examples", "train_tokens", "val_step_0"]
    assert (sweep[same].nunique() == 1).all(), "every run: same schedule, same examples, same starting loss"
