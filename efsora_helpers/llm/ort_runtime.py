"""The fast local runtime: SmolLM2 on onnxruntime-genai, the default behind the ``local`` provider.

``llm/local.py``'s token loop is written to be read (one transformers forward pass per token, the
grammar mask applied in Python). This module serves the same weights through onnxruntime-genai,
which runs the whole decode step in C++ with a preallocated KV cache and applies JSON-Schema
constraints with llguidance. Same prompt text (the HF tokenizer's chat template), same
``generate(...) -> Generation`` interface, several times the tokens per second
(``benchmarks/llm_runtime.py``).

The ONNX model is built once per machine from the dequantised HF folder that ``local.py`` writes,
by onnxruntime-genai's model builder, offline, into ``$EFSORA_HOME/cache/llm/``; the folder name
carries the GGUF's sha256, the precision and the builder version, so a new builder rebuilds.
``EFSORA_LLM_RUNTIME=transformers`` puts the teaching loop back behind the provider.
Taught in ``notebooks/reasoner/01_client.ipynb``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .errors import InvalidRequestError, LLMError
from .local import ASSET, MODEL_ID, ChatText, Generation, dequantised_dir, load_local_model

RUNTIME_VARIABLE = "EFSORA_LLM_RUNTIME"
PRECISION_VARIABLE = "EFSORA_LLM_PRECISION"  # for measuring the others; the book runs PRECISION
RUNTIMES = ("onnx", "transformers")
PRECISIONS = ("fp32", "int8", "int4")
PRECISION = "int8"  # chosen by measurement: see book/reasoner/overview.md, "The local runtime"
BUILD_TIMEOUT_S = 600


class RuntimeBuildError(LLMError):
    pass


class UnsupportedSchemaError(InvalidRequestError):
    """llguidance could not compile the JSON Schema: a bad request, not a model failure."""


def builder_version() -> str:
    import onnxruntime_genai as og

    return og.__version__


def runtime_dir(precision: str = PRECISION, asset: str = ASSET) -> Path:
    """Where the built model lives: keyed by the GGUF's sha256, the precision and the builder."""
    from ..assets import asset as asset_entry
    from ..paths import efsora_home

    sha = (asset_entry(asset).sha256 or "unpinned")[:12]
    return efsora_home() / "cache" / "llm" / f"{asset}-{sha}-ortgenai{builder_version()}-{precision}"


def build_runtime_model(precision: str = PRECISION, asset: str = ASSET) -> Path:
    """Build the ONNX model once (~10 s after the ~15 s dequantisation); later calls return at once.

    The builder runs in a subprocess with the Hugging Face hub offline: it reads only the local
    folder, and its torch memory is freed when it exits.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    out = runtime_dir(precision, asset)
    if (out / "genai_config.json").exists():
        return out
    hf = dequantised_dir(asset)
    print(f"Building the onnxruntime-genai {precision} model into {out} (once per machine, ~10 s)...",
          file=sys.stderr)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    source = tmp / "hf"
    source.mkdir(parents=True)
    for f in hf.iterdir():  # links, not copies: the float32 weights are 540 MB
        (source / f.name).symlink_to(f)
    config = json.loads((hf / "config.json").read_text())
    # The builder picks its converter by this key, which the GGUF-derived config lacks.
    config["architectures"] = ["LlamaForCausalLM"]
    (source / "config.json").unlink()
    (source / "config.json").write_text(json.dumps(config, indent=2))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source), "-o", str(tmp / "model"),
           "-p", precision, "-e", "cpu", "-c", str(tmp / "builder_cache")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if done.returncode != 0 or not (tmp / "model" / "genai_config.json").exists():
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeBuildError(f"the onnxruntime-genai model builder failed ({tail[0]}); "
                                f"EFSORA_LLM_RUNTIME=transformers runs the model without it")
    (tmp / "model" / "efsora_build.json").write_text(json.dumps(
        {"asset": asset, "precision": precision, "builder": f"onnxruntime-genai {builder_version()}",
         "source": str(hf)}, indent=2))
    try:
        (tmp / "model").rename(out)  # atomic: a crashed build never leaves a half-written model
    except OSError:  # another process won the race
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def guidance_schema(schema: dict | None) -> dict:
    """The schema as llguidance should enforce it: no undeclared keys, no free whitespace.

    JSON Schema allows extra properties unless told otherwise, and llguidance (unlike xgrammar's
    strict mode) lets the model write them; flexible whitespace lets it pad with newlines until
    ``max_tokens``. ``None`` (JSON mode): any JSON object.
    """

    def close(node):
        if isinstance(node, list):
            return [close(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: close(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out

    closed = close(schema) if schema is not None else {"type": "object"}
    return {**closed, "x-guidance": {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}}


class RuntimeModel(ChatText):
    """SmolLM2 on onnxruntime-genai with the interface ``LocalProvider`` uses from ``LocalModel``."""

    def __init__(self, precision: str = PRECISION, asset: str = ASSET, threads: int | None = None):
        from ..env import prepare_offline_environment

        prepare_offline_environment(online=os.environ.get("EFSORA_ONLINE") == "1")
        import onnxruntime_genai as og
        from transformers import AutoTokenizer

        t0 = time.perf_counter()
        self.path = build_runtime_model(precision, asset)
        self.precision = precision
        config = og.Config(str(self.path))
        threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
        if threads:  # ORT ignores OMP_NUM_THREADS; 0 would mean one thread per core
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
        self.model = og.Model(config)
        # The HF tokenizer and its chat template, not onnxruntime-genai's: prompts stay byte-identical
        # to the transformers loop's, and so do token counts.
        self.tokenizer = AutoTokenizer.from_pretrained(dequantised_dir(asset))
        self.load_s = time.perf_counter() - t0
        self.name = MODEL_ID
        self.context_window = int(json.loads((self.path / "genai_config.json").read_text())["model"]["context_length"])
        self.eos_ids = self.stop_token_ids()
        self._lock = threading.Lock()  # one generation at a time (the server is threaded)

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

        The same contract as :meth:`LocalModel.generate`, except ``trace``: the decode step runs
        inside onnxruntime-genai, so there is no per-step view of the logits to record.
        """
        import numpy as np
        import onnxruntime_genai as og

        if trace:
            raise ValueError("trace=True needs the step-by-step loop: use load_local_model() "
                             "(the transformers runtime), not the onnxruntime-genai one")
        ids = self.encode(prompt)
        constrained = json_schema is not None or json_mode
        params = og.GeneratorParams(self.model)
        search = {"max_length": len(ids) + max_new_tokens, "do_sample": temperature > 0}
        if temperature > 0:
            # top_k off (its default is 50): the transformers loop samples from the whole top_p set.
            search.update(temperature=temperature, top_p=top_p, top_k=self.tokenizer.vocab_size,
                          random_seed=seed if seed is not None else 0)
        params.set_search_options(**search)
        if constrained:
            params.set_guidance("json_schema", json.dumps(guidance_schema(json_schema)))
        out_ids: list[int] = []
        text, finish, first_token_s = "", "length", 0.0
        t0 = time.perf_counter()
        with self._lock:
            try:
                generator = og.Generator(self.model, params)
            except RuntimeError as exc:
                if constrained and "grammar" in str(exc).lower():
                    raise UnsupportedSchemaError(f"the JSON Schema cannot be enforced by llguidance: {exc}") from exc
                raise
            generator.append_tokens(np.array([ids], dtype=np.int32))  # prefill
            while not generator.is_done():
                # CTRL-style penalty over the answer so far, as in local.py; never under a grammar,
                # where it would push the model away from the quotes and braces it must repeat.
                if repetition_penalty != 1.0 and out_ids and not constrained:
                    logits = generator.get_logits()
                    seen = np.array(sorted(set(out_ids)))
                    picked = logits[0, -1, seen]
                    logits[0, -1, seen] = np.where(picked > 0, picked / repetition_penalty,
                                                   picked * repetition_penalty)
                    generator.set_logits(logits)
                try:
                    generator.generate_next_token()
                except RuntimeError as exc:
                    # A valid but unbounded schema (e.g. {"$ref": "#"} required in itself) can outgrow
                    # llguidance's parser mid-answer: the request's fault, not the model's.
                    if constrained and "parser" in str(exc).lower():
                        raise UnsupportedSchemaError(
                            f"the JSON Schema is too complex for llguidance: {str(exc).split('<state>')[0].strip()}") from exc
                    raise
                token = int(generator.get_next_tokens()[0])
                if not out_ids:
                    first_token_s = time.perf_counter() - t0
                if token in self.eos_ids:  # the grammar ends an answer with EOS, too
                    finish = "stop"
                    break
                out_ids.append(token)
                new_text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
                delta, text = new_text[len(text):], new_text
                if on_text and delta:
                    on_text(delta)
                if stop and any(s in text for s in stop):
                    text = text[: min(text.index(s) for s in stop if s in text)]
                    finish = "stop"
                    break
        return Generation(text, out_ids, len(ids), finish, first_token_s, time.perf_counter() - t0)


def load_runtime_model(precision: str | None = None, asset: str = ASSET) -> RuntimeModel:
    """One onnxruntime-genai model per process: the provider and the loopback server share it."""
    return _load_runtime_model(precision or os.environ.get(PRECISION_VARIABLE) or PRECISION, asset)


@lru_cache(maxsize=3)
def _load_runtime_model(precision: str, asset: str) -> RuntimeModel:
    return RuntimeModel(precision, asset)


def selected_runtime() -> str:
    name = os.environ.get(RUNTIME_VARIABLE, "onnx") or "onnx"
    if name not in RUNTIMES:
        raise ValueError(f"{RUNTIME_VARIABLE}={name!r} is not a runtime; use one of {RUNTIMES}")
    return name


def load_default_model():
    """The model behind the ``local`` provider: onnxruntime-genai unless
    ``EFSORA_LLM_RUNTIME=transformers`` asks for the step-by-step loop."""
    return load_local_model() if selected_runtime() == "transformers" else load_runtime_model()
