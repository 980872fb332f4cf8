"""What the transfer strategies of ``detect_grid`` do to the model and to its learning rate.

* ``task_model``: the shipped detector rebuilt for the task's nine classes, the way ultralytics'
  trainer does it (a fresh ``DetectionModel`` with ``nc=9``, then every tensor whose shape still
  fits copied from the checkpoint).
* ``is_frozen`` / ``parameter_table``: ultralytics' freeze rule (a parameter is frozen when its name
  contains ``model.{i}.`` for some ``i < freeze``, or ``.dfl``, which it always freezes) and the
  trainable and frozen parameter counts it gives per strategy.
* ``schedule``: the learning rate and gradient accumulation of every iteration, computed with
  ultralytics' own cosine factor (``one_cycle``) and its warmup rule; ``Recorder`` records the same
  from a real run (``detect_grid.train_one(callbacks=...)``) so the two can be compared.
* ``bias_lr_runs``: the bias-lr kick (``warmup_bias_lr``) measured, with and without, same run
  otherwise; ``benchmarks/finetune_detect_bias_lr.py`` runs it once and ships the CSV.

Taught in ``notebooks/finetuning/02_transfer.ipynb``.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..paths import repo_root
from ..vocabulary import FINETUNE_CLASSES
from . import detect_grid

#: ultralytics' nominal batch size: gradients accumulate until about this many images (trainer ``nbs``).
NOMINAL_BATCH = 64


def task_model(weights: str | Path = detect_grid.SHIPPED, nc: int = len(FINETUNE_CLASSES)):
    """The detector at ``weights`` rebuilt with ``nc`` classes as ultralytics' trainer does it.
    Returns the model and the names of its tensors that were *not* copied (their shape changed)."""
    from ultralytics.nn.tasks import DetectionModel, load_checkpoint

    path = Path(weights)
    if not path.is_absolute():
        path = repo_root() / path
    if not path.exists():
        raise FileNotFoundError(f"no weights at {path}")
    checkpoint, _ = load_checkpoint(str(path))
    model = DetectionModel(checkpoint.yaml, nc=nc, verbose=False)
    target = model.state_dict()
    source = checkpoint.float().state_dict()
    fresh = [k for k, v in target.items() if k not in source or source[k].shape != v.shape]
    model.load(checkpoint, verbose=False)
    return model, fresh


def is_frozen(name: str, freeze: int | None) -> bool:
    """ultralytics' rule (``BaseTrainer._setup_train``): a substring match on ``model.{i}.`` for
    ``i < freeze``, plus ``.dfl`` (the Distribution Focal Loss decoder, a fixed projection that is
    always frozen)."""
    patterns = [f"model.{i}." for i in range(freeze or 0)] + [".dfl"]
    return any(p in name for p in patterns)


def parameter_table(model, strategies=None):
    """Trainable and frozen parameters of ``model`` under each strategy's ``freeze``."""
    import pandas as pd

    strategies = strategies or list(detect_grid.STRATEGIES.values())
    rows = []
    for s in strategies:
        frozen = sum(p.numel() for n, p in model.named_parameters() if is_frozen(n, s.freeze))
        total = sum(p.numel() for p in model.parameters())
        rows.append({"strategy": s.name, "freeze": "-" if s.freeze is None else s.freeze, "trainable": total - frozen, "frozen": frozen,
                     "trainable_%": round(100 * (total - frozen) / total, 1)})
    return pd.DataFrame(rows).set_index("strategy")


def layer_table(model):
    """Parameters per top-level module of ``model.model`` (index, type, parameters)."""
    import pandas as pd

    return pd.DataFrame([{"index": i, "module": type(m).__name__, "parameters": sum(p.numel() for p in m.parameters())}
                         for i, m in enumerate(model.model)]).set_index("index")


def iterations_per_epoch(n: int, batch: int) -> int:
    return math.ceil(n / batch)  # ultralytics keeps the last, smaller batch (drop_last=False)


def schedule(strategy: detect_grid.Strategy, epochs: int, n: int, batch: int = 16):
    """Every iteration's learning rate (weights and biases) and the optimiser steps, computed with
    ultralytics' rules: the cosine factor ``one_cycle(1, lrf, epochs)`` set once per epoch; during
    warmup (the first ``round(min(warmup_epochs, epochs - 1) * iterations_per_epoch)`` iterations) a
    linear ramp from 0 (biases: from ``warmup_bias_lr``) to that epoch's rate, and gradient
    accumulation ramped from 1 batch to ``NOMINAL_BATCH / batch``; an optimiser step whenever that many
    iterations have passed since the last one."""
    import numpy as np
    import pandas as pd
    from ultralytics.utils.torch_utils import one_cycle

    if strategy.cos_lr:
        lf = one_cycle(1, strategy.lrf, epochs)
    else:
        def lf(x):
            return max(1 - x / epochs, 0) * (1.0 - strategy.lrf) + strategy.lrf
    nb = iterations_per_epoch(n, batch)
    warmup_epochs = min(round(strategy.warmup_fraction * epochs, 3), max(epochs - 1, 0))
    nw = round(warmup_epochs * nb) if warmup_epochs > 0 else 0
    acc0 = min(max(round(NOMINAL_BATCH / batch), 1), nb * epochs)
    accumulate, last_step, steps, rows = acc0, -1, 0, []
    for epoch in range(epochs):
        for i in range(nb):
            ni = i + nb * epoch
            weight_lr = bias_lr = strategy.lr0 * lf(epoch)
            if nw and ni <= nw:
                accumulate = max(1, int(np.interp(ni, [0, nw], [1, acc0]).round()))
                weight_lr = float(np.interp(ni, [0, nw], [0.0, weight_lr]))
                bias_lr = float(np.interp(ni, [0, nw], [strategy.warmup_bias_lr, bias_lr]))
            stepped = ni - last_step >= accumulate
            if stepped:
                last_step, steps = ni, steps + 1
            rows.append({"iteration": ni, "epoch": epoch, "weight_lr": weight_lr, "bias_lr": bias_lr,
                         "warmup": bool(nw and ni <= nw), "optimizer_step": stepped, "steps": steps})
    return pd.DataFrame(rows)


@dataclass
class Recorder:
    """Callbacks for ``detect_grid.train_one``: what a real run did at every iteration (the learning
    rate of each parameter group, the optimiser steps so far), the trainable parameters it started
    with, and how far the biases moved from their starting values (mean absolute change)."""

    rows: list[dict] = field(default_factory=list)
    trainable: int | None = None
    frozen: int | None = None
    _bias0: dict = field(default_factory=dict, repr=False)

    def callbacks(self) -> dict:
        return {"on_train_start": self._start, "on_train_batch_end": self._batch}

    def _start(self, trainer) -> None:
        params = list(trainer.model.named_parameters())
        self.trainable = sum(p.numel() for _, p in params if p.requires_grad)
        self.frozen = sum(p.numel() for _, p in params if not p.requires_grad)
        self._bias0 = {n: p.detach().clone() for n, p in params if n.endswith(".bias") and p.requires_grad}

    def _batch(self, trainer) -> None:
        import torch

        groups = {g.get("param_group", str(k)): g["lr"] for k, g in enumerate(trainer.optimizer.param_groups)}
        state = [s["step"] for s in trainer.optimizer.state.values() if "step" in s]
        named = dict(trainer.model.named_parameters())
        with torch.no_grad():
            moved = torch.cat([(named[n] - b).abs().flatten() for n, b in self._bias0.items()]) if self._bias0 else None
        self.rows.append({"iteration": len(self.rows), "epoch": trainer.epoch, "weight_lr": groups.get("weight"),
                          "bias_lr": groups.get("bias"), "steps": int(max(state)) if state else 0,
                          "bias_change": float(moved.mean()) if moved is not None else 0.0})

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)


def bias_lr_runs(strategy: str = "finetune_all", n: int = 25, epochs: int = 24, warmup_iterations: int = 10,
                 seeds=(0, 1), kicks=(0.1, 0.0), imgsz: int = 416, batch: int = 16, root: Path | None = None,
                 project: Path | None = None, log=print) -> list[dict]:
    """The bias-lr kick measured: ``strategy`` on the first ``n`` scenes for ``epochs``, with each
    ``warmup_bias_lr`` in ``kicks`` and each seed, everything else equal. The warmup lasts
    ``warmup_iterations`` iterations (the grid's 25-scene run has 10), so the kick lasts as long as in
    the grid while the run is shorter. One row per run: test mAP, the biases' mean absolute change at
    the end of warmup and of the run, wall time."""
    import shutil
    import tempfile
    from importlib.metadata import version

    from . import data

    root = Path(root or data.default_root())
    data.prepare(root)
    subset = data.train_subset_yaml(root, n)
    test_yaml = root / "yolo" / "data.yaml"
    base = detect_grid.STRATEGIES[strategy]
    nb = iterations_per_epoch(n, batch)
    fraction = warmup_iterations / nb / epochs
    project = Path(project or tempfile.mkdtemp(prefix="bias-lr-"))
    rows = []
    for seed in seeds:
        for kick in kicks:
            s = replace(base, warmup_fraction=fraction, warmup_bias_lr=kick)
            recorder = Recorder()
            load = os.getloadavg()[0]
            weights, wall, _ = detect_grid.train_one(s, subset, epochs, imgsz, batch, seed,
                                                      project / f"kick{kick}_seed{seed}", callbacks=recorder.callbacks())
            scores = detect_grid.evaluate(weights, test_yaml, imgsz)
            trace = recorder.frame()
            warm = schedule(s, epochs, n, batch)
            end_of_warmup = int(warm[warm.warmup].iteration.max()) if warm.warmup.any() else 0
            new = [scores["per_class_ap50"][c] for c in data.NEW_CLASSES]
            rows.append({
                "strategy": strategy, "n_train": n, "epochs": epochs, "imgsz": imgsz, "seed": seed,
                "warmup_bias_lr": kick, "lr0": s.lr0, "warmup_epochs": round(s.warmup_fraction * epochs, 3),
                "warmup_iterations": end_of_warmup, "map50": round(scores["map50"], 4),
                "map50_95": round(scores["map50_95"], 4), "ap50_new_mean": round(sum(new) / len(new), 4),
                "bias_change_warmup": round(float(trace.bias_change.iloc[end_of_warmup]), 5),
                "bias_change_end": round(float(trace.bias_change.iloc[-1]), 5),
                "wall_s": round(wall, 1), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
                           f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}",
                "load": round(load, 1), "ultralytics": version("ultralytics")})
            log(f"warmup_bias_lr {kick} seed {seed}: mAP50-95 {rows[-1]['map50_95']:.4f} mAP50 {rows[-1]['map50']:.4f}, "
                f"bias change {rows[-1]['bias_change_warmup']:.4f} after warmup, {wall:.0f} s")
            shutil.rmtree(weights.parent.parent, ignore_errors=True)
    return rows
