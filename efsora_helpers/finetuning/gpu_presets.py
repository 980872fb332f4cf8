"""QLoRA presets for a GPU box: Mistral-7B-Instruct and Llama-3-8B-Instruct on the same data and code.

Chapter 4 trains SmolLM2-135M on this machine's CPU (``llm_lora``, taught in
``notebooks/finetuning/05_lora.ipynb``). The same loop trains a 7-8B model on one GPU when three
things change, and a preset holds exactly those: the base (an HF model id, loaded from the hub
cache), the optimiser (bitsandbytes' paged 8-bit AdamW) and gradient checkpointing. The LoRA
hyperparameters follow the QLoRA authors' 7B script. Nothing here runs on a GPU in this book's
build: the expected memory and time are the figures the cited sources measured, and
:func:`estimate_memory` is arithmetic from parameter counts whose assumptions its docstring lists.
The page a reader follows is ``book/finetuning/gpu_qlora.md``; the command is
``efsora finetune lora --preset mistral-7b-qlora``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Every linear layer of a Llama/Mistral block: the QLoRA paper found LoRA on all of them is what
#: matches full fine-tuning (Dettmers et al. 2023, section 4).
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: Bits per weight of the quantisation constants (QLoRA paper, section 3): one fp32 absmax per
#: block of 64 weights is 32/64 = 0.5 bits; double quantisation stores them as 8-bit with one fp32
#: constant per 256 of them, 8/64 + 32/(64*256) = 0.127 bits.
CONSTANT_BITS = {False: 32 / 64, True: 8 / 64 + 32 / (64 * 256)}


@dataclass(frozen=True)
class Source:
    title: str
    url: str
    note: str = ""


SOURCES = {
    "qlora": Source("Dettmers et al., QLoRA: Efficient Finetuning of Quantized LLMs (NeurIPS 2023)",
                    "https://arxiv.org/abs/2305.14314",
                    "NF4, double quantisation (0.5 -> 0.127 bits per parameter of constants), paged "
                    "optimisers; a 65B model fine-tuned on one 48 GB GPU; Guanaco in 24 hours on one GPU"),
    "qlora_script": Source("QLoRA repository, scripts/finetune_guanaco_7b.sh",
                           "https://github.com/artidoro/qlora/blob/main/scripts/finetune_guanaco_7b.sh",
                           "7B recipe: r 64, alpha 16, dropout 0.1, all linear layers, lr 2e-4, batch 4 x "
                           "4 accumulation, warmup ratio 0.03, bf16, NF4 + double quant, gradient checkpointing"),
    "litgpt": Source("LitGPT, config_hub/finetune/README.md (measured on 1x A10G 24 GB, Alpaca2k, bf16)",
                     "https://github.com/Lightning-AI/litgpt/blob/main/config_hub/finetune/README.md",
                     "mistral-7b/qlora.yaml 14.29 GB peak, 44.75 min for 4 epochs; llama-3-8b/qlora.yaml "
                     "17.41 GB, 22.24 min for 2 epochs; r 32 on query and value, NF4 without double "
                     "quant, micro batch 2, 512 tokens, plain AdamW"),
    "bnb_optim": Source("bitsandbytes docs, 8-bit optimizers",
                        "https://huggingface.co/docs/bitsandbytes/v0.43.0/optimizers",
                        "8-bit optimizer states: 75% less optimizer memory than 32-bit, same performance"),
    "peft_quant": Source("PEFT docs, Quantization (QLoRA-style training)",
                         "https://huggingface.co/docs/peft/developer_guides/quantization",
                         "BitsAndBytesConfig NF4 + double quant + bf16 compute, prepare_model_for_kbit_training"),
    "korthikanti": Source("Korthikanti et al., Reducing Activation Recomputation in Large Transformer Models (2022)",
                          "https://arxiv.org/abs/2205.05198",
                          "activation memory per layer and what full recomputation keeps"),
    "mistral_config": Source("mistralai/Mistral-7B-Instruct-v0.3, config.json",
                             "https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.3/blob/main/config.json",
                             "32 layers, hidden 4096, MLP 14336, 8 KV heads of 128, vocabulary 32768, untied head"),
    "llama3_config": Source("meta-llama/Meta-Llama-3-8B-Instruct, config.json",
                            "https://huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct/blob/main/config.json",
                            "32 layers, hidden 4096, MLP 14336, 8 KV heads of 128, vocabulary 128256, untied head"),
}


@dataclass(frozen=True)
class ModelShape:
    """What the parameter count of a Llama-style decoder depends on (from its ``config.json``)."""

    layers: int
    hidden: int
    intermediate: int
    kv_dim: int  # key/value heads x head size (grouped-query attention)
    vocab: int
    tied: bool = False

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """``(d_in, d_out)`` of each linear layer of one block."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def linear_params(self) -> int:
        """Weights that bitsandbytes quantises: every linear layer of every block."""
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())

    def other_params(self) -> int:
        """Weights that stay in the compute dtype: embeddings, the output head (transformers keeps it
        unquantised) and the RMSNorm scales (two per block and a final one)."""
        heads = 1 if self.tied else 2
        return heads * self.vocab * self.hidden + (2 * self.layers + 1) * self.hidden

    def params(self) -> int:
        return self.linear_params() + self.other_params()

    def lora_params(self, rank: int, targets: tuple[str, ...]) -> int:
        """``r (d_in + d_out)`` per adapted matrix (Hu et al. 2021), over every block."""
        shapes = self.linear_shapes()
        return self.layers * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)


@dataclass(frozen=True)
class GpuPreset:
    name: str
    base: str
    shape: ModelShape
    shape_source: str
    rank: int = 64
    alpha: float = 16.0
    dropout: float = 0.1
    targets: tuple[str, ...] = ALL_LINEAR
    lr: float = 2e-4
    micro_batch: int = 1  # the loop of llm_lora feeds one example at a time
    grad_accum: int = 16  # effective batch 16, as the QLoRA 7B script (4 x 4)
    steps: int = 400  # about one epoch of the 6,051 training examples at 16 per step
    warmup_steps: int = 12  # 3% of the steps (the script's warmup ratio 0.03)
    eval_every: int = 25
    patience: int = 4
    max_tokens: int = 1024  # prompts of the instruction data reach about 1,100 tokens; the end is kept
    quantization: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "bfloat16"
    optimizer: str = "paged_adamw_8bit"
    gradient_checkpointing: bool = True
    expected: tuple[str, ...] = field(default_factory=tuple)  # measured figures from sources, with the source key

    def settings(self, seed: int = 0):
        """The ``llm_lora.LoraSettings`` that ``efsora finetune lora --preset`` trains with."""
        from .llm_lora import LoraSettings

        return LoraSettings(rank=self.rank, alpha=self.alpha, dropout=self.dropout, targets=self.targets,
                            lr=self.lr, steps=self.steps, grad_accum=self.grad_accum,
                            warmup_steps=self.warmup_steps, eval_every=self.eval_every, patience=self.patience,
                            max_tokens=self.max_tokens, quantization=self.quantization, dtype=self.compute_dtype,
                            seed=seed, base=self.base, optimizer=self.optimizer,
                            gradient_checkpointing=self.gradient_checkpointing)

    def memory(self, **overrides: Any) -> dict[str, float]:
        kwargs = {"rank": self.rank, "targets": self.targets, "seq_len": self.max_tokens,
                  "micro_batch": self.micro_batch, "optimizer": self.optimizer,
                  "gradient_checkpointing": self.gradient_checkpointing, "double_quant": self.double_quant}
        return estimate_memory(self.shape, **{**kwargs, **overrides})


MISTRAL_7B = ModelShape(layers=32, hidden=4096, intermediate=14336, kv_dim=8 * 128, vocab=32768)
LLAMA_3_8B = ModelShape(layers=32, hidden=4096, intermediate=14336, kv_dim=8 * 128, vocab=128256)

PRESETS: dict[str, GpuPreset] = {
    "mistral-7b-qlora": GpuPreset(
        name="mistral-7b-qlora", base="mistralai/Mistral-7B-Instruct-v0.3", shape=MISTRAL_7B,
        shape_source="mistral_config",
        expected=("litgpt: Mistral-7B QLoRA peaked at 14.29 GB and took 44.75 min for 4 epochs of Alpaca2k "
                  "on one A10G (r 32 on q and v, micro batch 2, 512 tokens)",
                  "litgpt: the same run as plain LoRA on a bf16 base peaked at 20.66 GB and took 31.01 min: "
                  "QLoRA traded about 44% more time for about 31% less memory")),
    "llama-3-8b-qlora": GpuPreset(
        name="llama-3-8b-qlora", base="meta-llama/Meta-Llama-3-8B-Instruct", shape=LLAMA_3_8B,
        shape_source="llama3_config",
        expected=("litgpt: Llama-3-8B QLoRA peaked at 17.41 GB and took 22.24 min for 2 epochs of Alpaca2k "
                  "on one A10G (r 32 on q and v, micro batch 2, 512 tokens)",
                  "litgpt: plain LoRA on the bf16 base peaked at 19.73 GB (micro batch 1) in 14.79 min")),
}


def preset(name: str) -> GpuPreset:
    if name not in PRESETS:
        raise ValueError(f"no GPU preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def estimate_memory(shape: ModelShape, rank: int, targets: tuple[str, ...], seq_len: int, micro_batch: int = 1,
                    optimizer: str = "paged_adamw_8bit", gradient_checkpointing: bool = True,
                    double_quant: bool = True, overhead_gb: float = 1.0) -> dict[str, float]:
    """GPU memory of one QLoRA training step, in GB (1e9 bytes), by component. An estimate to
    size a GPU, not a measurement; compare it with ``torch.cuda.max_memory_allocated`` after a
    few steps (the run's log) and with the measured figures in :data:`PRESETS`.

    Assumptions, term by term:

    * frozen linear weights in NF4: 4 bits plus the quantisation constants (:data:`CONSTANT_BITS`:
      0.127 bits with double quantisation, 0.5 without; QLoRA paper, section 3);
    * embeddings, output head and norms in bf16 (2 bytes): transformers quantises linear layers
      only and keeps the output head in the compute dtype;
    * LoRA weights and their gradients in fp32 (4 + 4 bytes per parameter, PEFT's default for
      adapters on a quantised base);
    * optimiser state: AdamW's two moments, 8 bytes per parameter in fp32, 2 bytes with 8-bit states
      (bitsandbytes docs: 75% less);
    * activations in bf16, with no attention-score matrix stored (PyTorch's scaled-dot-product
      attention); per block and token the backward keeps about ``8 h + 2 kv + 5 i`` values (inputs
      and outputs of the projections and norms, the SwiGLU intermediates, LoRA's dropout copies),
      an approximate count in the spirit of Korthikanti et al. 2022. With gradient checkpointing
      only each block's input is kept, plus one block recomputed at a time;
    * logits: bf16 logits, the fp32 copy the loss makes and its gradient, 10 bytes per vocabulary
      entry per token;
    * ``overhead_gb`` for the CUDA context, cuBLAS workspaces and allocator slack (an assumption;
      the caching allocator's fragmentation can add more);
    * paged optimiser pages moved to CPU RAM are not counted (they only move under pressure).
    """
    if optimizer not in ("adamw", "paged_adamw_8bit"):
        raise ValueError(f"optimizer must be 'adamw' or 'paged_adamw_8bit', got {optimizer!r}")
    gb = 1e9
    tokens = micro_batch * seq_len
    n_lora = shape.lora_params(rank, targets)
    per_block = (8 * shape.hidden + 2 * shape.kv_dim + 5 * shape.intermediate) * tokens * 2
    if gradient_checkpointing:
        activations = shape.layers * tokens * shape.hidden * 2 + per_block
    else:
        activations = shape.layers * per_block
    out = {
        "base_4bit": shape.linear_params() * (4 + CONSTANT_BITS[double_quant]) / 8 / gb,
        "base_bf16": shape.other_params() * 2 / gb,
        "lora_weights": n_lora * 4 / gb,
        "lora_gradients": n_lora * 4 / gb,
        "optimizer": n_lora * (2 if optimizer == "paged_adamw_8bit" else 8) / gb,
        "activations": activations / gb,
        "logits": tokens * shape.vocab * 10 / gb,
        "overhead": overhead_gb,
    }
    out["total"] = sum(out.values())
    return out


def summary(p: GpuPreset) -> list[str]:
    """What ``efsora finetune lora --preset NAME --dry-run`` prints: the settings, the estimate and
    the measured figures from sources."""
    mem = p.memory()
    parts = ", ".join(f"{k} {v:.2f}" for k, v in mem.items() if k != "total")
    lines = [
        f"preset {p.name}: {p.base} ({p.shape.params() / 1e9:.2f}B parameters, {SOURCES[p.shape_source].url})",
        f"QLoRA: NF4 weights, double quantisation {p.double_quant}, compute {p.compute_dtype}; LoRA r {p.rank}, "
        f"alpha {p.alpha:g}, dropout {p.dropout:g} on {', '.join(p.targets)} "
        f"({p.shape.lora_params(p.rank, p.targets) / 1e6:.1f}M trainable)",
        f"training: {p.optimizer}, lr {p.lr:g}, {p.steps} steps of {p.micro_batch} x {p.grad_accum} examples, "
        f"warmup {p.warmup_steps}, max {p.max_tokens} tokens, gradient checkpointing {p.gradient_checkpointing}",
        f"estimated GPU memory: {mem['total']:.1f} GB ({parts}; estimate_memory's assumptions)",
    ]
    for line in p.expected:
        key, text = line.split(": ", 1)
        lines.append(f"measured elsewhere: {text} ({SOURCES[key].url})")
    return lines


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
