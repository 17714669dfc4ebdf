"""Fuzzing the checkpoint loader and image preprocessing with seeded mutations of real files.

Every case starts from a real file (a checkpoint written by vae.save_checkpoint; images written by Pillow in each
accepted format, and the corrupt fixtures) and mutates it: bit flips, truncations, byte splices, edits of the
safetensors header (its length, tensor entries) and of the metadata JSON (wrong types, unknown keys, NaN, huge
numbers, deep nesting), and of image headers (sizes, with valid PNG checksums). The only exceptions allowed are
CheckpointError and DataError; a checkpoint that loads must also survive what `vae info` and the pages do with it
and save again. A failure names the seed and the case:

    FUZZ_SEED=123 python -m pytest tests/test_fuzz.py            # the same run again
    FUZZ_SEED=123 FUZZ_CASE=4567 python -m pytest tests/test_fuzz.py   # one case

Without FUZZ_SEED each developer's run draws a new seed (printed) and explores new cases; CI (CI=true) uses a fixed
seed, so that whether a submission lands does not depend on the draw.
"""
from __future__ import annotations

import io
import json
import math
import os
import random
import secrets
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

import vae
from vae.__main__ import _summary
from vae.checkpoint import CheckpointError, from_bytes, to_bytes
from vae.data import DataError, preprocess_image

SEED = int(os.environ.get("FUZZ_SEED") or (20261201 if os.environ.get("CI") else secrets.randbelow(2**31)))
ONLY = int(os.environ["FUZZ_CASE"]) if os.environ.get("FUZZ_CASE") else None
CHECKPOINT_CASES = 6000
IMAGE_CASES = 4000
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _cases(n: int) -> range:
    return range(ONLY, ONLY + 1) if ONLY is not None else range(n)


def _run(name: str, n: int, base: list[bytes], mutate: Callable, check: Callable, allowed: tuple) -> None:
    """Mutate and check n cases; collect every unexpected exception with what reproduces it."""
    print(f"\n{name}: FUZZ_SEED={SEED}, {n} cases")
    failures, outcomes, t0 = [], {"refused": 0, "accepted": 0}, time.perf_counter()
    for i in _cases(n):
        rng = random.Random(f"{name}:{SEED}:{i}")
        data, what = mutate(rng, base[rng.randrange(len(base))])
        try:
            check(data)
            outcomes["accepted"] += 1
        except allowed as exc:
            msg = str(exc)
            if "\n" in msg or not msg:  # refusals are one line for the user
                failures.append(f"case {i} ({what}): {type(exc).__name__} message is not one line: {msg[:200]!r}")
            outcomes["refused"] += 1
        except Exception as exc:  # noqa: BLE001 - anything else is the bug this test looks for
            failures.append(f"case {i} ({what}): {type(exc).__name__}: {str(exc)[:300]}")
    print(f"{name}: {outcomes} in {time.perf_counter() - t0:.1f} s")
    assert not failures, (f"FUZZ_SEED={SEED}: {len(failures)} unexpected exceptions; rerun one with FUZZ_SEED={SEED} "
                          f"FUZZ_CASE=N\n" + "\n".join(failures[:20]))


# ---------------------------------------------------------------- generic byte mutations


def _flip_bits(rng: random.Random, data: bytes, lo: int = 0, hi: int | None = None) -> tuple[bytes, str]:
    b = bytearray(data)
    hi = len(b) if hi is None else min(hi, len(b))
    k = rng.choice([1, 1, 2, 4, 16])
    for _ in range(k):
        j = rng.randrange(lo, hi)
        b[j] ^= 1 << rng.randrange(8)
    return bytes(b), f"{k} bit flips in bytes {lo}:{hi}"


def _truncate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    n = rng.choice([rng.randrange(len(data)), rng.randrange(min(64, len(data))), len(data) - rng.randrange(1, 16)])
    return data[:max(0, n)], f"truncated to {max(0, n)} bytes"


def _splice(rng: random.Random, data: bytes, lo: int = 0, hi: int | None = None) -> tuple[bytes, str]:
    hi = len(data) if hi is None else min(hi, len(data))
    j = rng.randrange(lo, max(lo + 1, hi))
    op = rng.choice(["insert", "delete", "overwrite", "repeat"])
    k = rng.choice([1, 2, 4, 8, 64])
    if op == "insert":
        out = data[:j] + rng.randbytes(k) + data[j:]
    elif op == "delete":
        out = data[:j] + data[j + k:]
    elif op == "overwrite":
        out = data[:j] + bytes([rng.choice([0, 0xFF, rng.randrange(256)])]) * k + data[j + k:]
    else:
        out = data[:j] + data[j: j + k] * rng.randrange(2, 50) + data[j + k:]
    return out, f"{op} {k} bytes at {j}"


# ---------------------------------------------------------------- checkpoints

LONG_TEXT = "é" * 5000


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, hostile on purpose: wrong types, huge and non-finite numbers, long text."""
    kind = rng.randrange(12 if depth < 3 else 8)
    return [
        lambda: None, lambda: rng.random() < 0.5, lambda: rng.randrange(-3, 10), lambda: 10 ** rng.randrange(10, 40),
        lambda: rng.uniform(-1e6, 1e6), lambda: rng.choice([math.nan, math.inf, -math.inf, 1e308, -0.0]),
        lambda: rng.choice(["", "x", "mnist5k", "folder:/etc", "NaN", "12", LONG_TEXT, "\x00\n\u202e"]),
        lambda: 2 ** 64,
        lambda: [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))],
        lambda: {rng.choice(["epoch", "step", "a", "", "kl_per_dim", "test_neg_elbo"]): _json_value(rng, depth + 1)
                 for _ in range(rng.randrange(4))},
        lambda: [rng.uniform(-5, 5) for _ in range(rng.randrange(1, 5))],
        lambda: {"epoch": rng.randrange(-1, 5), "test_neg_elbo": _json_value(rng, depth + 1)},
    ][kind]()


def _edit_json(rng: random.Random, value: Any) -> tuple[Any, str]:
    """Replace, delete or add one thing somewhere inside a decoded JSON value."""
    path, node = [], value
    while isinstance(node, (dict, list)) and node and rng.random() < 0.7:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(key)
        node = node[key]
    if not path:
        return _json_value(rng), "replaced whole"
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    op = rng.choice(["replace", "replace", "delete", "add"])
    if op == "delete":
        del parent[path[-1]]
    elif op == "add" and isinstance(parent, dict):
        parent[rng.choice(["epoch", "extra", "zzz", "kl_per_dim", "status"])] = _json_value(rng)
    else:
        parent[path[-1]] = _json_value(rng)
    return value, f"{op} at {path}"


def _with_header(data: bytes, header: Any, rng: random.Random) -> bytes:
    n = struct.unpack("<Q", data[:8])[0]
    text = json.dumps(header, separators=(",", ":") if rng.random() < 0.5 else None).encode()
    text += b" " * rng.choice([0, 0, (8 - len(text) % 8) % 8])  # safetensors pads headers with spaces
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def _mutate_checkpoint(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    n = struct.unpack("<Q", data[:8])[0]
    r = rng.random()
    if r < 0.15:
        return _flip_bits(rng, data, 0, 8 + n)  # in the header: most of what can go wrong
    if r < 0.22:
        return _flip_bits(rng, data, 8 + n)  # in the weights: NaN, or just other weights
    if r < 0.30:
        return _truncate(rng, data)
    if r < 0.38:
        return _splice(rng, data, 0, 8 + n)
    if r < 0.43:
        v = rng.choice([0, 1, n - 1, n + 1, n * 2, len(data), 2**63, 2**64 - 1, rng.randrange(2**64)])
        return struct.pack("<Q", v) + data[8:], f"header length {v}"
    header = json.loads(data[8: 8 + n])
    meta = header["__metadata__"]
    if r < 0.75:  # the metadata: decoded, edited inside, encoded again
        key = rng.choice(["history", "history", "metrics", "model_config", "train_config", "dataset", "format"])
        if rng.random() < 0.8 and key != "format":
            value, what = _edit_json(rng, json.loads(meta[key]))
            meta[key] = json.dumps(value)
        elif rng.random() < 0.5:
            meta[key] = rng.choice(["", "{", "[" * 5000 + "]" * 5000, "1" * 5000, "NaN", "[1,]", '"\\ud800"'])
            what = "raw text"
        else:
            del meta[key]
            what = "deleted"
        return _with_header(data, header, rng), f"metadata {key}: {what}"
    if r < 0.90:  # a tensor's entry
        name = rng.choice([k for k in header if k != "__metadata__"])
        field = rng.choice(["dtype", "shape", "data_offsets", None])
        if field is None:
            del header[name]
        else:
            header[name][field] = rng.choice([_json_value(rng), "F16", "I64", [1], [0, 10**12], [3, 3], [-1, 4]])
        return _with_header(data, header, rng), f"tensor {name} {field or 'deleted'}"
    if r < 0.95:
        header[rng.choice(["__metadata__", "extra.weight", "x"])] = _json_value(rng)
        return _with_header(data, header, rng), "header entry replaced or added"
    return _with_header(data, _json_value(rng), rng), "header replaced by another JSON value"


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory, digits) -> list[bytes]:
    """Real checkpoints written by save_checkpoint: a short trained run on digits, and a conv model of 3x8x8."""
    folder = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    mlp = vae.build_model(vae.ModelConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=16))
    cfg = vae.TrainConfig(dataset="digits", epochs=2, batch_size=256, threads=1, device="cpu")
    result = vae.fit(mlp, digits, cfg)
    conv = vae.build_model(vae.ModelConfig(arch="conv", input_shape=(3, 8, 8), latent_dim=2, hidden=8))
    paths = [vae.save_checkpoint(folder / "mlp.safetensors", mlp, cfg, "digits", result.history,
                                 {**result.final, "status": "finished", "message": ""}),
             vae.save_checkpoint(folder / "conv.safetensors", conv, None, "folder:/data/x", [], {})]
    return [p.read_bytes() for p in paths]


def test_fuzz_checkpoint_loader(checkpoint_files, digits):
    def check(data: bytes) -> None:
        ck = from_bytes(data)
        # what `vae info` and the pages do with a checkpoint that loads
        _summary(ck.history)
        json.dumps({"model_config": ck.model_config.to_dict(), "metrics": ck.metrics,
                    "train_config": ck.train_config.to_dict() if ck.train_config else None}, default=str)
        for row in ck.history:
            assert isinstance(row["epoch"], int)
            assert all(v is None or isinstance(v, (int, float, list)) for v in row.values())
        reason = vae.dataset_fits(ck, digits)
        assert reason is None or "\n" not in reason
        from_bytes(to_bytes(ck.model, ck.train_config, ck.dataset, ck.history, ck.metrics))  # and it saves again

    _run("checkpoint", CHECKPOINT_CASES, checkpoint_files, _mutate_checkpoint, check, (CheckpointError,))


# ---------------------------------------------------------------- images


def _png_set_size(data: bytes, w: int, h: int) -> bytes:
    """The PNG with IHDR's width and height replaced and its CRC recomputed (a valid-looking header)."""
    ihdr = bytearray(data[12:29])  # type + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", w, h)
    return data[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def _mutate_image(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    r = rng.random()
    if r < 0.35:
        return _flip_bits(rng, data, 0, rng.choice([64, len(data)]))
    if r < 0.50:
        return _truncate(rng, data)
    if r < 0.75:
        return _splice(rng, data, 0, rng.choice([64, len(data)]))
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 33:
        w, h = rng.choice([(0, 5), (1, 1), (2**31 - 1, 1), (70000, 70000), (5, 2**31 - 1), (rng.randrange(1, 4000), rng.randrange(1, 4000))])
        return _png_set_size(data, w, h), f"PNG size {w}x{h} (valid CRC)"
    if data[:3] == b"GIF":
        w, h = rng.randrange(65536), rng.randrange(65536)
        return data[:6] + struct.pack("<HH", w, h) + data[10:], f"GIF screen {w}x{h}"
    if data[:2] == b"BM":
        w, h = rng.randrange(-2**31, 2**31), rng.randrange(-2**31, 2**31)
        return data[:18] + struct.pack("<ii", w, h) + data[26:], f"BMP size {w}x{h}"
    return _flip_bits(rng, data)


@pytest.fixture(scope="module")
def image_files(digits) -> list[bytes]:
    """A digit written by Pillow in every accepted format and mode, plus the corrupt fixtures."""
    a = np.kron((digits.x_test[3, 0].numpy() * 255).astype(np.uint8), np.ones((3, 3), np.uint8))  # 24x24
    rgb = np.stack([a, 255 - a, a // 2], -1)
    out = []
    for arr, mode, fmt, kw in [(a, "L", "PNG", {}), (rgb, "RGB", "PNG", {}), (a, "L", "JPEG", {"quality": 90}),
                               (rgb, "RGB", "JPEG", {}), (rgb, "RGB", "BMP", {}), (a, "L", "GIF", {}),
                               (rgb, "RGB", "WEBP", {"lossless": True}), (rgb, "RGB", "WEBP", {})]:
        buf = io.BytesIO()
        Image.fromarray(arr, mode).save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    rgba = Image.fromarray(np.dstack([rgb, a]), "RGBA")
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    out.append(buf.getvalue())
    out += [(FIXTURES / name).read_bytes() for name in ("corrupt.png", "truncated.png")]
    return out


def test_fuzz_image_preprocessing(image_files):
    shapes = [((1, 28, 28), True), ((3, 32, 32), False), ((1, 8, 8), True), ((1, 28, 28), False)]

    def check(data: bytes) -> None:
        shape, digit_style = shapes[len(data) % len(shapes)]
        pre = preprocess_image(data, shape, digit_style=digit_style)
        assert tuple(pre.x.shape) == shape and bool(torch.isfinite(pre.x).all())
        assert float(pre.x.min()) >= 0 and float(pre.x.max()) <= 1

    _run("image", IMAGE_CASES, image_files, _mutate_image, check, (DataError,))
