"""What the transfer strategies freeze and the learning rate they train with
(``efsora_helpers.finetuning.transfer``), checked against ultralytics' trainer itself."""

import math
from dataclasses import replace

import pytest

from efsora_helpers.finetuning import detect_grid, transfer


def test_freeze_rule_matches_module_indices_not_prefixes_of_them():
    assert transfer.is_frozen("model.1.conv.weight", 10)
    assert not transfer.is_frozen("model.11.cv1.conv.weight", 10)  # "model.1." is not in "model.11."
    assert transfer.is_frozen("model.21.m.0.cv1.bn.bias", 22)
    assert not transfer.is_frozen("model.22.cv2.0.0.conv.weight", 22)
    assert transfer.is_frozen("model.22.dfl.conv.weight", None)  # ultralytics always freezes the DFL decoder
    assert not transfer.is_frozen("model.0.conv.weight", None)


@pytest.fixture(scope="module")
def shipped_for_task():
    return transfer.task_model()


def test_shipped_detector_rebuilt_for_nine_classes_keeps_all_but_the_class_outputs(shipped_for_task):
    model, fresh = shipped_for_task
    assert model.model[-1].nc == 9
    # Only the last conv of each of the three class branches changes shape (6 -> 9 outputs).
    assert sorted(fresh) == sorted(f"model.22.cv3.{i}.2.{p}" for i in range(3) for p in ("weight", "bias"))


def test_parameter_table_counts_what_each_freeze_leaves_trainable(shipped_for_task):
    model, _ = shipped_for_task
    table = transfer.parameter_table(model)
    layers = transfer.layer_table(model)["parameters"]
    dfl = sum(p.numel() for p in model.model[-1].dfl.parameters())
    total = int(layers.sum())
    assert table.loc["finetune_all", "trainable"] == total - dfl
    assert table.loc["freeze_backbone", "trainable"] == int(layers.loc[10:].sum()) - dfl
    assert table.loc["head_only", "trainable"] == int(layers.loc[22]) - dfl
    assert (table["trainable"] + table["frozen"] == total).all()


def test_schedule_warmup_ramps_to_the_cosine_rate_and_kicks_biases():
    strategy = replace(detect_grid.STRATEGIES["scratch"], warmup_fraction=0.25)  # 2 of 8 epochs
    s = transfer.schedule(strategy, epochs=8, n=32, batch=16)  # 2 iterations per epoch, warmup to iteration 4
    assert len(s) == 16
    assert s.loc[0, "weight_lr"] == 0.0 and s.loc[0, "bias_lr"] == pytest.approx(0.1)
    lf2 = ((1 - math.cos(2 * math.pi / 8)) / 2) * (strategy.lrf - 1) + 1  # one_cycle(1, lrf, 8) at epoch 2
    assert s.loc[4, "weight_lr"] == pytest.approx(strategy.lr0 * lf2)  # warmup lands on the epoch's rate
    assert s.loc[4, "bias_lr"] == pytest.approx(strategy.lr0 * lf2)
    assert s.loc[5, "weight_lr"] == s.loc[4, "weight_lr"]  # the cosine moves once per epoch
    assert s.loc[15, "weight_lr"] < s.loc[5, "weight_lr"]
    assert s.warmup.sum() == 5
    # Accumulation ramps from 1 to 64 / 16 = 4 batches per optimiser step.
    assert s.optimizer_step.iloc[:3].tolist() == [True, False, True] and s.steps.iloc[-1] < len(s) / 2


def test_no_warmup_means_no_kick():
    s = transfer.schedule(detect_grid.STRATEGIES["head_only"], epochs=4, n=16)
    assert not s.warmup.any() and (s.bias_lr == s.weight_lr).all()


@pytest.mark.slow
def test_a_real_run_trains_with_the_computed_schedule_and_freeze(tmp_path, shipped_for_task):
    """Two epochs of ultralytics on eight scenes: the recorded learning rates, optimiser steps and
    trainable parameters are the ones transfer computes (warmup and bias kick included)."""
    from efsora_helpers.finetuning import data
    from efsora_helpers.finetuning.detect_eval import quiet_ultralytics

    data.prepare(tmp_path / "task", sizes={"train": 8, "val": 2, "test": 2})
    strategy = replace(detect_grid.STRATEGIES["freeze_backbone"], warmup_fraction=0.5, warmup_bias_lr=0.1)
    recorder = transfer.Recorder()
    with quiet_ultralytics():
        detect_grid.train_one(strategy, data.train_subset_yaml(tmp_path / "task", 8), 2, 128, 4, 0, tmp_path / "runs",
                              callbacks=recorder.callbacks())
    recorded, computed = recorder.frame(), transfer.schedule(strategy, 2, 8, 4)
    assert len(recorded) == len(computed) == 4
    assert recorded.weight_lr.tolist() == pytest.approx(computed.weight_lr.tolist())
    assert recorded.bias_lr.tolist() == pytest.approx(computed.bias_lr.tolist())
    assert recorded.steps.tolist() == computed.steps.tolist()
    assert recorder.trainable == transfer.parameter_table(shipped_for_task[0]).loc["freeze_backbone", "trainable"]
    assert recorded.bias_change.iloc[0] > 0.05  # one AdamW step at the kicked bias lr 0.1
