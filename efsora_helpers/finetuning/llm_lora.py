"""LoRA and QLoRA on SmolLM2-135M-Instruct, step by step, with transformers + PEFT + bitsandbytes.

LoRA (Hu et al. 2021, arXiv:2106.09685) freezes a weight matrix ``W`` (``d_out x d_in``) and learns
a low-rank update: ``W' = W + (alpha / r) B A`` with ``A`` (``r x d_in``, random) and ``B``
(``d_out x r``, zeros, so training starts from the base model). The rank ``r`` bounds how many
directions the update can move ``W`` in; ``alpha / r`` scales it, so changing ``r`` does not change
the update's size at initialisation. Trainable parameters per adapted matrix: ``r (d_in + d_out)``
instead of ``d_in d_out``. :func:`lora_forward` writes the update out by hand and
:func:`lora_parameter_counts` counts it for every rank and target set of this model (checked
against PEFT's own count).

QLoRA (Dettmers et al. 2023, arXiv:2305.14314) keeps the frozen base in 4-bit NormalFloat (NF4),
quantises the quantisation constants too (double quantisation) and trains the same LoRA matrices
in higher precision. bitsandbytes runs NF4 layers on the CPU here (:func:`load_base` with
``quantization="nf4"``); what it costs and saves is measured, not assumed
(:func:`precision_report`).

Training is a plain loop (:func:`train`): AdamW on the LoRA parameters, linear warmup then linear
decay, gradient accumulation, the loss on the answer tokens only, validation loss every few steps,
early stopping with the best adapter kept. ``efsora finetune lora`` (:func:`run`) trains on the
data ``efsora finetune llm-data`` wrote and ships an adapter folder (a few MB), its training log
and a card. Taught in ``notebooks/finetuning/05_lora.ipynb``. The same code trains a 7-8B model
with QLoRA on a GPU (``base=`` an HF model id, paged 8-bit AdamW, gradient checkpointing): see
``gpu_presets`` and ``book/finetuning/gpu_qlora.md``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..llm.local import TUNED_MODEL_ID

#: Target sets compared in the notebook: the projections of attention, then every linear layer.
TARGETS: dict[str, tuple[str, ...]] = {
    "q,v": ("q_proj", "v_proj"),
    "q,k,v,o": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "all linear": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}
QUANTIZATIONS = ("none", "nf4")
DTYPES = ("float32", "bfloat16")
ADAPTER_MODEL_ID = TUNED_MODEL_ID  # the local provider's id for the tuned model
ADAPTER_ASSET = "smollm2-135m-warehouse-lora"


def shipped_adapter_dir() -> Path:
    """The adapter the book ships (a registered asset with a card), trained by ``efsora finetune lora``."""
    from ..assets import get_asset

    return Path(get_asset(ADAPTER_ASSET))


# ---- the update written out ----------------------------------------------------------------------
def lora_delta(A, B, alpha: float, r: int):
    """``(alpha / r) B A``: the full-size update a LoRA adapter adds to ``W``."""
    return (alpha / r) * (B @ A)


def lora_forward(x, W, A, B, alpha: float, r: int):
    """``x W^T + (alpha / r) (x A^T) B^T``: the adapted layer without ever forming ``B A``
    (two thin matrix products, ``r (d_in + d_out)`` multiply-adds per token on top of the base)."""
    return x @ W.T + (alpha / r) * ((x @ A.T) @ B.T)


# ---- the model -----------------------------------------------------------------------------------
def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def hub_missing(base: str) -> FileNotFoundError:
    """The one-line error for a Hugging Face model id that is not in the local hub cache (the book
    never downloads at run time)."""
    return FileNotFoundError(f"{base} is not in the Hugging Face cache; download it first on a machine with "
                             f"network (`hf download {base}`; gated models need `hf auth login`)")


def base_tokenizer(base: str):
    """The tokenizer and chat template of an HF base model, from the hub cache only."""
    from ..env import prepare_offline_environment

    prepare_offline_environment()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(base, local_files_only=True)
    except OSError:
        raise hub_missing(base) from None


def load_base(quantization: str = "none", dtype: str = "float32", base: str | None = None):
    """SmolLM2-135M-Instruct as an HF model from the shipped GGUF (dequantised once, cached).
    ``quantization="nf4"``: the linear layers in 4-bit NF4 with double quantisation (bitsandbytes),
    computing in ``dtype``; embeddings and norms stay in ``dtype``.
    ``base``: an HF model id instead (e.g. ``mistralai/Mistral-7B-Instruct-v0.3``, see
    ``gpu_presets``), loaded from the hub cache only and put on the GPU when there is one."""
    from ..env import prepare_offline_environment

    prepare_offline_environment()
    from transformers import AutoModelForCausalLM

    from ..llm.local import dequantised_dir

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype)}
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=_torch_dtype(dtype))
    if base is None:
        model = AutoModelForCausalLM.from_pretrained(dequantised_dir(), **kwargs)
    else:
        import torch

        if torch.cuda.is_available():
            kwargs["device_map"] = {"": 0}  # the whole model on one GPU; bitsandbytes quantises it there
        try:
            model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, **kwargs)
        except OSError:
            raise hub_missing(base) from None
    if quantization == "nf4":
        keep_trainable_layout(model)
    return model


def keep_trainable_layout(model) -> int:
    """Stop bitsandbytes from repacking NF4 weights into its CPU inference layout.

    On a CPU with AVX512-BF16, bitsandbytes 0.50's ``Linear4bit`` repacks its weights the first time
    it runs in eval mode without gradients (a validation pass). The repacked path calls an op with no
    backward, so every later training step silently drops the gradient through the frozen base
    weights (PyTorch only warns "autograd kernel was not registered"). Training then looks faster and
    is wrong. Turning the repacking off keeps the dequantise-and-matmul path, which has a backward.
    Returns how many layers were changed."""
    n = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def linear_shapes(model, targets: Iterable[str] = TARGETS["all linear"]) -> dict[str, dict[str, int]]:
    """Per target name: ``d_in``, ``d_out`` and how many layers have it (SmolLM2: 30 of each)."""
    out: dict[str, dict[str, int]] = {}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in targets and hasattr(module, "in_features"):
            entry = out.setdefault(leaf, {"d_in": module.in_features, "d_out": module.out_features, "layers": 0})
            entry["layers"] += 1
    return out


def lora_parameter_counts(model, ranks: Iterable[int] = (1, 2, 4, 8, 16, 32, 64),
                          targets: dict[str, tuple[str, ...]] = TARGETS) -> list[dict[str, Any]]:
    """Trainable parameters per rank and target set, by the formula ``r (d_in + d_out)`` per matrix,
    and the share of the model's parameters that is."""
    shapes = linear_shapes(model)
    total = sum(p.numel() for p in model.parameters())
    rows = []
    for tname, names in targets.items():
        for r in ranks:
            n = sum(r * (shapes[t]["d_in"] + shapes[t]["d_out"]) * shapes[t]["layers"] for t in names)
            rows.append({"targets": tname, "rank": r, "trainable": n, "percent": 100 * n / total,
                         "adapter_mb_fp32": n * 4 / 1e6})
    return rows


@dataclass
class LoraSettings:
    """One training run. ``grad_accum`` micro-batches of one example make one optimiser step."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    targets: tuple[str, ...] = TARGETS["q,v"]
    lr: float = 1e-3
    steps: int = 20
    grad_accum: int = 1
    warmup_steps: int = 2
    eval_every: int = 5
    patience: int = 3  # evaluations without a better validation loss before stopping
    max_tokens: int = 1024
    quantization: str = "none"
    dtype: str = "float32"
    seed: int = 0
    base: str | None = None  # an HF model id; None: the shipped SmolLM2
    optimizer: str = "adamw"  # or "paged_adamw_8bit" (bitsandbytes, GPU)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~1/3 more compute

    def lora_config(self, init_lora_weights: bool = True):
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.targets), task_type="CAUSAL_LM",
                          init_lora_weights=init_lora_weights)


def peft_model(settings: LoraSettings, base=None, init_lora_weights: bool = True):
    """The base model (loaded if not given) wrapped with LoRA adapters; only they train."""
    import torch
    from peft import get_peft_model

    torch.manual_seed(settings.seed)
    base = base if base is not None else load_base(settings.quantization, settings.dtype, settings.base)
    if settings.quantization == "nf4":
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=settings.gradient_checkpointing)
    elif settings.gradient_checkpointing:
        base.gradient_checkpointing_enable()
        base.enable_input_require_grads()  # the frozen embeddings' output must carry a gradient for recomputation
    return get_peft_model(base, settings.lora_config(init_lora_weights))


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---- data ----------------------------------------------------------------------------------------
def encode(row: dict[str, Any], max_tokens: int = 1024, tok=None) -> dict[str, list[int]]:
    """Token ids of prompt + answer, and labels that are -100 on the prompt: the loss is on what
    the model should write, not on the facts it is given. Rows longer than ``max_tokens`` keep
    their end (the answer). ``tok``: another base model's tokenizer; the row's messages are then
    rendered with that model's chat template and end-of-sequence token."""
    from .llm_data import tokenizer

    if tok is None:
        tok, prompt, completion = tokenizer(), row["prompt"], row["completion_text"]
    else:
        prompt = tok.apply_chat_template(row["messages"], tokenize=False, add_generation_prompt=True)
        completion = row["completion"] + tok.eos_token
    p = tok(prompt, add_special_tokens=False).input_ids
    c = tok(completion, add_special_tokens=False).input_ids
    ids, labels = p + c, [-100] * len(p) + c
    return {"input_ids": ids[-max_tokens:], "labels": labels[-max_tokens:]}


def shortest(dataset, n: int, family: str | None = None) -> list[dict[str, Any]]:
    """The ``n`` rows with the fewest prompt tokens (optionally of one family): CI-sized batches."""
    rows = [r for r in dataset if family is None or r["family"] == family]
    return sorted(rows, key=lambda r: (r["prompt_tokens"], r["hash"]))[:n]


# ---- loss, training ------------------------------------------------------------------------------
def completion_loss(model, examples: list[dict[str, list[int]]]) -> float:
    """Mean cross-entropy per answer token over ``examples`` (no gradient); ``exp`` of it is the
    validation perplexity on the answers."""
    import torch

    total, tokens = 0.0, 0
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex["input_ids"]], device=device)
            labels = torch.tensor([ex["labels"]], device=device)
            n = int((labels[:, 1:] != -100).sum())
            out = model(input_ids=ids, labels=labels)
            total += float(out.loss) * n
            tokens += n
    return total / max(tokens, 1)


@dataclass
class TrainLog:
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per step: loss, lr, seconds, val_loss
    best_step: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    initial_val_loss: float = math.nan

    @property
    def seconds_per_step(self) -> float:
        times = [r["seconds"] for r in self.rows]
        return sum(times) / len(times) if times else 0.0

    def val_curve(self) -> list[tuple[int, float]]:
        return [(r["step"], r["val_loss"]) for r in self.rows if r.get("val_loss") is not None]


def _schedule(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1, then linear decay to 0.1 at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    return max(0.1, 1.0 - 0.9 * (step - warmup) / span)


def train(model, train_examples: list[dict[str, list[int]]], val_examples: list[dict[str, list[int]]],
          settings: LoraSettings, log: Callable[[dict[str, Any]], None] | None = None) -> TrainLog:
    """AdamW on the trainable (LoRA) parameters with warmup, gradient accumulation, periodic
    validation and early stopping; at the end the best adapter weights are put back."""
    import random

    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    if settings.optimizer == "paged_adamw_8bit":
        import bitsandbytes as bnb

        # 8-bit Adam states in CUDA unified memory: a quarter of AdamW's state memory, and pages
        # that move to CPU RAM instead of failing when a long batch spikes the GPU memory.
        opt = bnb.optim.PagedAdamW8bit(params, lr=settings.lr, weight_decay=0.0)
    elif settings.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'paged_adamw_8bit', got {settings.optimizer!r}")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, settings.warmup_steps, settings.steps))
    rng = random.Random(settings.seed)
    order: list[int] = []
    out = TrainLog(initial_val_loss=completion_loss(model, val_examples))
    out.best_val_loss = out.initial_val_loss
    best_state = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    evals_without_gain = 0
    for step in range(1, settings.steps + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum = 0.0
        for _ in range(settings.grad_accum):
            if not order:
                order = list(range(len(train_examples)))
                rng.shuffle(order)
            ex = train_examples[order.pop()]
            loss = model(input_ids=torch.tensor([ex["input_ids"]], device=device),
                         labels=torch.tensor([ex["labels"]], device=device)).loss
            (loss / settings.grad_accum).backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        row = {"step": step, "train_loss": loss_sum / settings.grad_accum, "lr": sched.get_last_lr()[0],
               "seconds": time.perf_counter() - t0, "val_loss": None}
        if step % settings.eval_every == 0 or step == settings.steps:
            row["val_loss"] = completion_loss(model, val_examples)
            if row["val_loss"] < out.best_val_loss - 1e-4:
                out.best_val_loss, out.best_step, evals_without_gain = row["val_loss"], step, 0
                best_state = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
            else:
                evals_without_gain += 1
        out.rows.append(row)
        if log:
            log(row)
        if evals_without_gain >= settings.patience:
            out.stopped_early = True
            break
    with torch.no_grad():
        for k, v in model.named_parameters():
            if k in best_state:
                v.copy_(best_state[k])
    model.eval()
    return out


# ---- merging and saving --------------------------------------------------------------------------
def merge_agreement(model, examples: list[dict[str, list[int]]]) -> dict[str, float]:
    """Logits of the adapted model with the adapter applied on the side (unmerged) and folded into
    the weights (``merge_and_unload`` on a copy): the largest absolute difference, and whether the
    greedy next token agrees at every position."""
    import torch

    merged = copy.deepcopy(model).merge_and_unload()
    model.eval()
    merged.eval()
    worst, same = 0.0, True
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex["input_ids"]])
            a, b = model(input_ids=ids).logits, merged(input_ids=ids).logits
            worst = max(worst, float((a - b).abs().max()))
            same = same and bool((a.argmax(-1) == b.argmax(-1)).all())
    return {"max_abs_logit_diff": worst, "same_argmax": same}


def save_adapter(model, out_dir: str | Path) -> dict[str, Any]:
    """The adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``): its files and size."""
    out_dir = Path(out_dir)
    model.save_pretrained(str(out_dir))
    config_path = out_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    from ..llm.local import dequantised_dir

    if config.get("base_model_name_or_path") == str(dequantised_dir()):
        # PEFT records the local folder the base was loaded from; a shipped card names the model instead
        config["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    files = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir()) if p.is_file()}
    return {"dir": str(out_dir), "files": files, "mb": sum(files.values()) / 1e6}


def load_adapter(adapter_dir: str | Path, quantization: str = "none", dtype: str = "float32",
                 base: str | None = None):
    """The base model with a saved adapter on top (unmerged), for inference."""
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base(quantization, dtype, base), str(adapter_dir))


# ---- precisions ----------------------------------------------------------------------------------
def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def precision_report(examples: list[dict[str, list[int]]], train_steps: int = 2,
                     variants: Iterable[tuple[str, str]] = (("none", "float32"), ("none", "bfloat16"),
                                                            ("nf4", "float32"), ("nf4", "bfloat16")),
                     settings: LoraSettings | None = None) -> list[dict[str, Any]]:
    """For each (quantization, dtype): the model's weight memory, the process memory after loading,
    the answer-token loss against float32 (the error quantisation adds), and the seconds per LoRA
    training step. Each variant is loaded fresh; measured on this CPU, not taken from papers."""
    import gc

    import torch

    settings = settings or LoraSettings()
    rows, reference = [], None
    for quantization, dtype in variants:
        gc.collect()
        before = _rss_mb()
        t0 = time.perf_counter()
        base = load_base(quantization, dtype)
        load_s = time.perf_counter() - t0
        weights_mb = base.get_memory_footprint() / 1e6
        loss = completion_loss(base, examples)
        if reference is None:
            reference = loss
        model = peft_model(LoraSettings(**{**asdict(settings), "quantization": quantization, "dtype": dtype}), base)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
        times = []
        for k in range(train_steps):
            ex = examples[k % len(examples)]
            t0 = time.perf_counter()
            model.train()
            out = model(input_ids=torch.tensor([ex["input_ids"]]), labels=torch.tensor([ex["labels"]]))
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
        rows.append({"quantization": quantization, "dtype": dtype, "weights_mb": weights_mb,
                     "rss_growth_mb": _rss_mb() - before, "load_s": load_s, "answer_loss": loss,
                     "loss_vs_fp32": loss - reference, "step_s": min(times),
                     "tokens": len(examples[0]["input_ids"])})
        del model, base, opt
        gc.collect()
    return rows


# ---- the shipped run -----------------------------------------------------------------------------
def default_run_dir() -> Path:
    from ..paths import efsora_home

    return efsora_home() / "finetuning" / "lora_runs"


def write_card(out_dir: Path, settings: LoraSettings, log: TrainLog, data_report: dict | None,
               adapter: dict[str, Any]) -> Path:
    """``README.md`` beside the adapter: what it is, how it was trained, what it measured."""
    curve = "\n".join(f"| {s} | {v:.4f} |" for s, v in log.val_curve())
    title = (f"a LoRA adapter for {settings.base}" if settings.base
             else f"{ADAPTER_MODEL_ID}: a LoRA adapter for SmolLM2-135M-Instruct")
    where = "on the GPU" if settings.optimizer == "paged_adamw_8bit" else "on this CPU"
    lines = [
        f"# {title}",
        "",
        "Trained by `efsora finetune lora` (efsora_helpers.finetuning.llm_lora) on instruction data from",
        "SafetyScenes ground truth (`efsora finetune llm-data`), decontaminated against chapter 2's",
        "evaluation set. Base: the shipped Q4_1 GGUF of SmolLM2-135M-Instruct, dequantised to float32.",
        "License: Apache-2.0 (the base model's); the data is generated by this book.",
        "",
        "## Settings",
        "```json",
        json.dumps(asdict(settings), indent=1),
        "```",
        "",
        f"Adapter: {adapter['mb']:.2f} MB. Steps run: {len(log.rows)}; best step {log.best_step}; "
        f"stopped early: {log.stopped_early}; {log.seconds_per_step:.2f} s per step {where}.",
        f"Validation loss on answer tokens: {log.initial_val_loss:.4f} before, {log.best_val_loss:.4f} best "
        f"(perplexity {math.exp(log.initial_val_loss):.2f} -> {math.exp(log.best_val_loss):.2f}).",
        "",
        "| step | validation loss |", "| --- | --- |", curve,
        "",
        "## Data",
        "```json",
        json.dumps(data_report or {}, indent=1),
        "```",
        "",
        "## Use",
        "`efsora_helpers.finetuning.llm_lora.load_adapter(<this folder>)`; for the fast runtime, merge",
        "(`merge_and_unload`) and build with onnxruntime-genai's model builder, or pass the folder as",
        "`--extra_options adapter_path=<this folder>` to the builder.",
    ]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(settings: LoraSettings, data_dir: str | Path | None = None, out_dir: str | Path | None = None,
        max_train: int | None = None, max_val: int = 64, progress: bool = True) -> dict[str, Any]:
    """Train on the saved instruction data and ship: ``adapter/``, ``train_log.jsonl``,
    ``metrics.json`` and ``README.md`` (the card) in ``out_dir``."""
    import torch
    from datasets import load_from_disk

    from .llm_data import default_out_dir

    threads = int(os.environ.get("OMP_NUM_THREADS") or 0)
    if threads:
        torch.set_num_threads(threads)
    data_dir = Path(data_dir or default_out_dir())
    if not (data_dir / "dataset_dict.json").exists():
        raise FileNotFoundError(f"no instruction data in {data_dir}: run `efsora finetune llm-data` first")
    data = load_from_disk(str(data_dir))
    out_dir = Path(out_dir or default_run_dir() / time.strftime("%Y%m%d-%H%M%S"))
    out_dir.mkdir(parents=True, exist_ok=True)
    train_rows = list(data["train"])
    if max_train:
        import random

        random.Random(settings.seed).shuffle(train_rows)
        train_rows = train_rows[:max_train]
    val_rows = shortest(data["validation"], max_val) if max_val else list(data["validation"])
    tok = base_tokenizer(settings.base) if settings.base else None
    train_ex = [encode(r, settings.max_tokens, tok) for r in train_rows]
    val_ex = [encode(r, settings.max_tokens, tok) for r in val_rows]
    model = peft_model(settings)
    logf = open(out_dir / "train_log.jsonl", "w")

    def log(row):
        logf.write(json.dumps(row) + "\n")
        logf.flush()
        if progress:
            val = f" val {row['val_loss']:.4f}" if row["val_loss"] is not None else ""
            print(f"step {row['step']}/{settings.steps} loss {row['train_loss']:.4f}{val} ({row['seconds']:.1f} s)")

    t0 = time.perf_counter()
    tlog = train(model, train_ex, val_ex, settings, log)
    logf.close()
    adapter = save_adapter(model, out_dir / "adapter")
    report_path = data_dir / "report.json"
    data_report = json.loads(report_path.read_text()) if report_path.exists() else None
    metrics = {"settings": asdict(settings), "train_examples": len(train_ex), "val_examples": len(val_ex),
               "initial_val_loss": tlog.initial_val_loss, "best_val_loss": tlog.best_val_loss,
               "best_step": tlog.best_step, "steps_run": len(tlog.rows), "stopped_early": tlog.stopped_early,
               "seconds_per_step": tlog.seconds_per_step, "wall_s": time.perf_counter() - t0,
               "adapter_mb": adapter["mb"], "trainable_parameters": trainable_parameters(model)}
    if torch.cuda.is_available():  # the peak to compare with gpu_presets.estimate_memory
        metrics["max_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    write_card(out_dir, settings, tlog, data_report, adapter)
    return metrics


# ---- the fast runtime ----------------------------------------------------------------------------
def build_ort_with_adapter(adapter_dir: str | Path, out_dir: str | Path, precision: str = "fp32",
                           timeout_s: int = 900) -> Path:
    """An onnxruntime-genai model with a PEFT adapter baked in at build time.

    onnxruntime-genai's model builder takes ``--extra_options adapter_path=<peft folder>`` and
    writes the LoRA A and B matrices as extra MatMuls beside each target weight (B pre-scaled by
    ``alpha/r``). Run-time swapping (``og.Adapters``) needs ``.onnx_adapter`` files instead, which
    this builder does not write. The builder runs offline in a subprocess on the dequantised HF
    folder, as ``llm/ort_runtime.py`` does (same ``architectures`` fix)."""
    import shutil
    import subprocess
    import sys

    from ..llm.local import dequantised_dir

    out_dir = Path(out_dir)
    src = out_dir.with_name(out_dir.name + ".hf")
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    hf = dequantised_dir()
    for f in hf.iterdir():
        if f.name != "config.json":
            (src / f.name).symlink_to(f)
    config = json.loads((hf / "config.json").read_text())
    config["architectures"] = ["LlamaForCausalLM"]
    (src / "config.json").write_text(json.dumps(config, indent=2))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src), "-o", str(out_dir),
           "-p", precision, "-e", "cpu", "-c", str(src / "cache"), "--extra_options",
           f"adapter_path={Path(adapter_dir).resolve()}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    shutil.rmtree(src, ignore_errors=True)
    if done.returncode != 0 or not (out_dir / "genai_config.json").exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the onnxruntime-genai builder failed with the adapter: {tail[0]}")
    return out_dir


def ort_agreement(model, ort_dir: str | Path, prompt: str, new_tokens: int = 24) -> dict[str, Any]:
    """The PEFT model and the ORT model built with its adapter, on one prompt: last-position logit
    difference (and the adapter's own effect on the logits, for scale) and the greedy texts."""
    import numpy as np
    import onnxruntime_genai as og
    import torch

    from .llm_data import tokenizer

    tok = tokenizer()
    ids = tok(prompt, add_special_tokens=False).input_ids
    ort = og.Model(str(ort_dir))
    params = og.GeneratorParams(ort)
    params.set_search_options(max_length=len(ids) + new_tokens, do_sample=False)
    gen = og.Generator(ort, params)
    gen.append_tokens(np.array([ids], dtype=np.int32))
    ort_logits = np.array(gen.get_logits())[0, -1]
    ort_out: list[int] = []
    while not gen.is_done() and len(ort_out) < new_tokens:
        gen.generate_next_token()
        ort_out.append(int(gen.get_next_tokens()[0]))
    model.eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        peft_logits = model(x).logits[0, -1].numpy()
        peft_out = model.generate(x, max_new_tokens=new_tokens, do_sample=False)[0, len(ids):].tolist()
        with model.disable_adapter():
            base_logits = model(x).logits[0, -1].numpy()
            base_out = model.generate(x, max_new_tokens=new_tokens, do_sample=False)[0, len(ids):].tolist()
    n = min(len(ort_out), len(peft_out))
    return {"max_abs_logit_diff_ort_vs_peft": float(np.abs(ort_logits - peft_logits).max()),
            "max_abs_logit_diff_peft_vs_base": float(np.abs(peft_logits - base_logits).max()),
            "same_greedy_tokens": ort_out[:n] == peft_out[:n], "tokens_compared": n,
            "ort_text": tok.decode(ort_out), "peft_text": tok.decode(peft_out), "base_text": tok.decode(base_out)}


def adapter_runtime(adapter_dir: str | Path, precision: str = "fp32", threads: int | None = None,
                    cache_dir: str | Path | None = None):
    """The onnxruntime-genai runtime with ``adapter_dir`` baked in, built once into
    ``$EFSORA_HOME/cache/llm/`` (keyed by the adapter's sha256 and the precision); the same
    ``generate``/``render`` interface as the base runtime (``llm.ort_runtime.RuntimeModel``)."""
    import hashlib
    import threading

    import onnxruntime_genai as og

    from ..assets import sha256_of
    from ..llm.local import MODEL_ID
    from ..llm.ort_runtime import RuntimeModel
    from ..paths import efsora_home
    from .llm_data import tokenizer

    adapter_dir = Path(adapter_dir)
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no adapter_model.safetensors in {adapter_dir}")
    key = hashlib.sha256((sha256_of(weights)[0] + (adapter_dir / "adapter_config.json").read_text()).encode()).hexdigest()
    out = Path(cache_dir or efsora_home() / "cache" / "llm") / f"{ADAPTER_MODEL_ID}-{key[:12]}-ortgenai{og.__version__}-{precision}"
    if not (out / "genai_config.json").exists():
        build_ort_with_adapter(adapter_dir, out, precision)
    runtime = RuntimeModel.__new__(RuntimeModel)  # RuntimeModel.__init__ builds the base model; reuse the rest
    config = og.Config(str(out))
    threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
    if threads:
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
    runtime.path, runtime.precision = out, precision
    runtime.model = og.Model(config)
    runtime.tokenizer = tokenizer()
    runtime.load_s = 0.0
    runtime.name = MODEL_ID
    runtime.context_window = int(json.loads((out / "genai_config.json").read_text())["model"]["context_length"])
    runtime.eos_ids = runtime.stop_token_ids()
    runtime._lock = threading.Lock()
    return runtime


def adapted_client(adapter_dir: str | Path, precision: str = "fp32", cache_dir: str | Path | None = None):
    """An ``LLMClient`` on the local provider whose model carries the adapter: chapter 2's
    reasoner and evaluation run on it unchanged (same prompts, same constrained decoding). Its
    label reads ``local/smollm2-135m-warehouse``. For a like-for-like comparison, evaluate the base
    model at the same precision (``EFSORA_LLM_PRECISION``)."""
    from ..llm.client import LLMClient
    from ..llm.local_provider import LocalProvider

    provider = LocalProvider(ADAPTER_MODEL_ID, adapter_dir=adapter_dir, precision=precision, cache_dir=cache_dir)
    return LLMClient("local", ADAPTER_MODEL_ID, adapter=provider)
