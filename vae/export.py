"""A decoder as a compact float buffer plus a list of ops, for running it outside PyTorch (the browser's drag loop).

Only decoders made of Linear / ReLU / Sigmoid / Tanh / (Un)Flatten layers export; the article's MLP decoder is
Linear(L, H) -> ReLU -> Linear(H, D), and VAE.decode adds the final sigmoid. Convolutional decoders raise
ExportError: callers decode those in PyTorch instead.

Layout: every Linear contributes its weight (out, in) row-major, then its bias (out,), one after the other, in the
buffer's dtype, little-endian. `ops` says where each piece starts (in elements, not bytes).
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from vae.model import VAE

DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
# Larger decoders would cost the browser more than a frame per decode (and tens of MB to send): decode on the server.
MAX_PARAMS = 4_000_000
_ACTIVATIONS = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}


class ExportError(ValueError):
    """The decoder has a layer the exported op list cannot express, or is too large to ship."""


@dataclass(frozen=True)
class DecoderExport:
    model_id: str  # content hash of the buffer and ops: equal ids, equal decoders
    latent_dim: int
    input_shape: tuple[int, int, int]  # (C, H, W) of the decoded image
    dtype: str  # a key of DTYPES
    ops: list[dict[str, Any]] = field(repr=False)  # {"op": "linear", "in", "out", "w", "b"} | {"op": "relu"} | ...
    buffer: bytes = field(repr=False)

    @property
    def n_params(self) -> int:
        return len(self.buffer) // DTYPES[self.dtype].itemsize

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the buffer as base64, everything else as plain values."""
        return {"model_id": self.model_id, "latent_dim": self.latent_dim, "input_shape": list(self.input_shape),
                "dtype": self.dtype, "ops": self.ops, "buffer": base64.b64encode(self.buffer).decode("ascii")}


def export_decoder(model: VAE, dtype: str = "float32") -> DecoderExport:
    """The model's decoder (+ the sigmoid of VAE.decode) as ops over one flat buffer."""
    if dtype not in DTYPES:
        raise ExportError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    cfg = model.cfg
    ops: list[dict[str, Any]] = []
    pieces: list[np.ndarray] = []
    offset = 0
    if not isinstance(model.decoder, nn.Sequential):
        raise ExportError(f"the {cfg.arch} decoder is not a plain sequence of layers")
    for layer in model.decoder:
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().cpu().float().numpy()  # (out, in)
            b = (layer.bias.detach().cpu().float().numpy() if layer.bias is not None
                 else np.zeros(layer.out_features, np.float32))
            ops.append({"op": "linear", "in": layer.in_features, "out": layer.out_features, "w": offset, "b": offset + w.size})
            pieces += [w.ravel(), b]
            offset += w.size + b.size
        elif type(layer) in _ACTIVATIONS:
            ops.append({"op": _ACTIVATIONS[type(layer)]})
        elif isinstance(layer, (nn.Flatten, nn.Unflatten, nn.Identity)):
            continue  # the buffer is flat anyway; (C, H, W) order is torch's row-major order
        else:
            raise ExportError(f"the {cfg.arch} decoder has a {type(layer).__name__} layer, which only PyTorch runs here")
    ops.append({"op": "sigmoid"})  # VAE.decode = sigmoid(decode_logits)
    linears = [op for op in ops if op["op"] == "linear"]
    if not linears or linears[0]["in"] != cfg.latent_dim or linears[-1]["out"] != cfg.input_dim:
        raise ExportError("the decoder's layers do not map the latent space to the image")
    if offset > MAX_PARAMS:
        raise ExportError(f"the decoder has {offset:,} weights; more than {MAX_PARAMS:,} are decoded on the server")
    flat = np.concatenate(pieces).astype(DTYPES[dtype])
    if not np.isfinite(flat).all():
        raise ExportError("the decoder has non-finite weights" + (" in float16" if dtype == "float16" else ""))
    buffer = flat.tobytes()
    digest = hashlib.sha256(buffer)
    digest.update(repr((ops, cfg.latent_dim, cfg.input_shape, dtype)).encode())
    return DecoderExport(digest.hexdigest()[:16], cfg.latent_dim, tuple(cfg.input_shape), dtype, ops, buffer)


def decode_exported(export: DecoderExport, z: np.ndarray) -> np.ndarray:
    """Run the exported ops in NumPy (float64 accumulation, like the browser): z (N, L) -> images (N, C, H, W)."""
    params = np.frombuffer(export.buffer, dtype=DTYPES[export.dtype]).astype(np.float64)
    h = np.atleast_2d(np.asarray(z, dtype=np.float64))
    for op in export.ops:
        if op["op"] == "linear":
            w = params[op["w"]: op["w"] + op["in"] * op["out"]].reshape(op["out"], op["in"])
            h = h @ w.T + params[op["b"]: op["b"] + op["out"]]
        elif op["op"] == "relu":
            h = np.maximum(h, 0.0)
        elif op["op"] == "sigmoid":
            h = 1.0 / (1.0 + np.exp(-h))
        elif op["op"] == "tanh":
            h = np.tanh(h)
    return h.reshape(len(h), *export.input_shape)


def max_decode_error(model: VAE, export: DecoderExport, z: np.ndarray | torch.Tensor) -> float:
    """Largest per-pixel difference between PyTorch's decode and the exported decoder's over the rows of z."""
    from vae.explore import decode

    z = np.asarray(z, dtype=np.float32)
    return float(np.abs(decode(model, z).numpy().astype(np.float64) - decode_exported(export, z)).max())
