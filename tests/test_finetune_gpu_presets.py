"""The GPU QLoRA presets: their settings, the parameter arithmetic behind the memory estimate
(checked against a real transformers + PEFT model of the same architecture, randomly initialised
and tiny), and the CLI's behaviour without a GPU."""

from __future__ import annotations

import pytest

from efsora_helpers.finetuning.gpu_presets import (
    ALL_LINEAR,
    CONSTANT_BITS,
    LLAMA_3_8B,
    MISTRAL_7B,
    PRESETS,
    ModelShape,
    estimate_memory,
    preset,
    summary,
)


def test_presets_are_qlora_with_the_asked_bases():
    assert PRESETS["mistral-7b-qlora"].base == "mistralai/Mistral-7B-Instruct-v0.3"
    assert PRESETS["llama-3-8b-qlora"].base == "meta-llama/Meta-Llama-3-8B-Instruct"
    for p in PRESETS.values():
        s = p.settings(seed=3)
        assert (s.quantization, s.dtype, s.optimizer) == ("nf4", "bfloat16", "paged_adamw_8bit")
        assert s.gradient_checkpointing and p.double_quant
        assert set(s.targets) == set(ALL_LINEAR) and s.base == p.base and s.seed == 3
        assert 0 < s.warmup_steps < s.steps and s.grad_accum * p.micro_batch == 16


def test_parameter_counts_match_the_published_sizes():
    # Hub model pages: Mistral-7B-v0.3 7,248,023,552 and Meta-Llama-3-8B 8,030,261,248 parameters.
    assert MISTRAL_7B.params() == 7_248_023_552
    assert LLAMA_3_8B.params() == 8_030_261_248


def test_shape_arithmetic_equals_a_real_model_and_peft():
    """The same formulas on a tiny random Llama (grouped-query attention, untied head): total
    parameters equal the model's, LoRA parameters equal PEFT's trainable count."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=224, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=300, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    shape = ModelShape(layers=2, hidden=64, intermediate=224, kv_dim=2 * 16, vocab=300)
    assert shape.params() == sum(p.numel() for p in model.parameters())
    targets = ("q_proj", "v_proj", "down_proj")
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    assert shape.lora_params(4, targets) == sum(p.numel() for p in peft.parameters() if p.requires_grad)


def test_memory_estimate_terms():
    p = PRESETS["mistral-7b-qlora"]
    mem = p.memory()
    assert mem["total"] == pytest.approx(sum(v for k, v in mem.items() if k != "total"))
    # NF4 with double quantisation: 4.127 bits per linear weight (QLoRA paper, section 3)
    assert CONSTANT_BITS[True] == pytest.approx(0.127, abs=1e-3) and CONSTANT_BITS[False] == 0.5
    assert mem["base_4bit"] == pytest.approx(MISTRAL_7B.linear_params() * 4.127 / 8 / 1e9, rel=1e-3)
    no_dq = p.memory(double_quant=False)
    assert no_dq["base_4bit"] > mem["base_4bit"]
    # 8-bit optimiser states are a quarter of AdamW's (bitsandbytes docs: 75% less)
    assert p.memory(optimizer="adamw")["optimizer"] == pytest.approx(4 * mem["optimizer"])
    # checkpointing keeps one block's activations instead of every block's
    assert p.memory(gradient_checkpointing=False)["activations"] > 5 * mem["activations"]
    assert p.memory(seq_len=2048)["total"] > mem["total"]
    # Llama-3's vocabulary is four times Mistral's: bigger output head and logits
    llama = PRESETS["llama-3-8b-qlora"].memory()
    assert llama["logits"] > 3 * mem["logits"] and llama["base_bf16"] > mem["base_bf16"]
    # both presets fit a 24 GB GPU by this estimate, and need more than the 4-bit weights alone
    for m in (mem, llama):
        assert m["base_4bit"] < m["total"] < 24
    with pytest.raises(ValueError):
        estimate_memory(MISTRAL_7B, 8, ALL_LINEAR, 512, optimizer="sgd")


def test_summary_names_its_sources():
    for p in PRESETS.values():
        lines = summary(p)
        assert p.base in lines[0] and "estimated GPU memory" in "\n".join(lines)
        assert sum("https://" in line for line in lines) >= 1 + len(p.expected)
    with pytest.raises(ValueError, match="mistral-7b-qlora"):
        preset("mistral-7b")


def test_preset_without_a_gpu_is_one_line_and_exit_2(monkeypatch, capsys):
    import torch

    from efsora_helpers.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["finetune", "lora", "--preset", "mistral-7b-qlora"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err and "CUDA GPU" in err and "gpu_qlora.md" in err


def test_preset_dry_run_prints_the_preset(capsys):
    from efsora_helpers.cli import main

    assert main(["finetune", "lora", "--preset", "llama-3-8b-qlora", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "meta-llama/Meta-Llama-3-8B-Instruct" in out and "paged_adamw_8bit" in out


def test_a_base_missing_from_the_hub_cache_is_a_one_line_error():
    from efsora_helpers.finetuning.llm_lora import base_tokenizer, load_base

    for load in (lambda: load_base(base="efsora-test/not-downloaded"), lambda: base_tokenizer("efsora-test/not-downloaded")):
        with pytest.raises(FileNotFoundError, match="download it first") as info:
            load()
        assert "\n" not in str(info.value)


def test_encode_with_a_base_tokenizer_renders_that_models_template():
    """Given SmolLM2's own tokenizer, the re-rendering path gives exactly the shipped encoding:
    the GPU path differs only in whose chat template and end token it uses."""
    from efsora_helpers.finetuning.llm_data import render_row, tokenizer
    from efsora_helpers.finetuning.llm_lora import encode

    row = {"messages": [{"role": "system", "content": "Answer in JSON."},
                        {"role": "user", "content": "How many people are in the aisle?"}],
           "completion": '{"answer": "2"}'}
    row.update(render_row(row))
    assert tokenizer().eos_token == "<|im_end|>"
    assert encode(row, 1024, tokenizer()) == encode(row, 1024)


def test_preset_settings_on_a_gpu_box_take_steps_and_base_overrides(monkeypatch, capsys):
    """What ``--preset`` hands to the training loop when a GPU is visible (training itself is not run)."""
    import argparse

    import torch

    from efsora_helpers.finetuning.cli import _preset_settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = argparse.Namespace(preset="mistral-7b-qlora", dry_run=False, seed=1, steps=None, base=None)
    full = _preset_settings(args)
    assert full == PRESETS["mistral-7b-qlora"].settings(seed=1)
    smoke = _preset_settings(argparse.Namespace(**{**vars(args), "steps": 5, "base": "/models/mistral"}))
    assert (smoke.steps, smoke.base, smoke.rank) == (5, "/models/mistral", full.rank)
    assert "mistralai/Mistral-7B-Instruct-v0.3" in capsys.readouterr().out


@pytest.mark.slow
def test_gradient_checkpointing_keeps_every_adapter_gradient():
    """The presets' gradient checkpointing, run on SmolLM2 with an NF4 base on the CPU: every LoRA
    matrix gets the same gradient as without checkpointing (recomputation changes memory, not maths)."""
    import torch

    from efsora_helpers.finetuning.llm_data import render_row
    from efsora_helpers.finetuning.llm_lora import LoraSettings, encode, load_base, peft_model

    row = {"messages": [{"role": "system", "content": "Answer in JSON."},
                        {"role": "user", "content": "How many people are in the aisle?"}],
           "completion": '{"answer": "2"}'}
    row.update(render_row(row))
    ex = encode(row, 256)

    def grads(checkpointing):
        torch.manual_seed(0)
        settings = LoraSettings(rank=4, dropout=0.0, quantization="nf4", gradient_checkpointing=checkpointing)
        model = peft_model(settings, load_base("nf4"), init_lora_weights=False)
        model.train()
        model(input_ids=torch.tensor([ex["input_ids"]]), labels=torch.tensor([ex["labels"]])).loss.backward()
        return {k: p.grad for k, p in model.named_parameters() if p.requires_grad}

    plain, recomputed = grads(False), grads(True)
    assert all(g is not None and float(g.abs().sum()) > 0 for g in recomputed.values())
    assert max(float((plain[k] - recomputed[k]).abs().max()) for k in plain) < 1e-4
