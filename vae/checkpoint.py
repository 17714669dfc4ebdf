"""Checkpoints: one .safetensors file, weights + JSON metadata; atomic saves; loads that never execute anything;
the names a user may save under.

Layout of the metadata (all values are JSON strings, as safetensors requires):
  format        FORMAT_VERSION
  model_config  ModelConfig.to_dict()
  train_config  TrainConfig.to_dict()
  dataset       the data set's name
  history       per-epoch training rows
  metrics       final held-out metrics
  model_kind    "vae" (absent in older files) or "m2", the semi-supervised model of vae/semi.py
  semi          M2 only: n_classes, the label budget and seed, alpha, the labelled subset's indices
"""
from __future__ import annotations

import dataclasses
import fcntl
import glob
import json
import math
import os
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vae.config import ConfigError, ModelConfig, TrainConfig
from vae.data import Dataset
from vae.model import VAE, build_model
from vae.names import name_problem, normalize_name
from vae.semi import KIND as M2_KIND, build_m2, is_m2


def _build(kind: str, cfg: ModelConfig, semi: dict[str, Any]):
    if kind == M2_KIND:
        return build_m2(cfg, semi.get("n_classes"), semi.get("classifier", "arch"))
    return build_model(cfg)


MODEL_KINDS = ("vae", M2_KIND)  # what a checkpoint's model_kind may say; _build makes each

FORMAT = "vae-explorer/1"
MAX_FILE_BYTES = 1 << 30  # models here are a few MB; anything near a GB is not ours
MAX_HEADER_BYTES = 16 << 20  # the history of a long run is well under this
# The models shipped with the app: overwriting them needs an explicit confirmation.
SHIPPED_CHECKPOINTS = ("mnist5k-mlp-z2", "mnist5k-mlp-z16", "mnist5k-mlp-z32")
LEFTOVER_AGE_S = 60  # where files cannot be locked, a temporary file untouched this long belongs to a dead save
MAX_DATASET_CHARS = 4096  # a data set's name, or folder:PATH
# Metadata fields read by the app and the CLI: wrong types are refused; other keys are kept if they are numbers (or
# text, in metrics) and otherwise ignored.
HISTORY_KEYS = {"epoch", "step", "seconds", "beta", "train_recon", "train_kl", "train_loss", "train_neg_elbo",
                "test_recon", "test_kl", "test_neg_elbo", "kl_per_dim"}
NUMBER_METRICS = {"recon", "kl", "neg_elbo", "iwae_nll", "iwae_k", "seconds", "epochs_done", "world_size"}
TEXT_METRICS = {"status", "message"}
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


class CheckpointError(ValueError):
    """The file is not a readable checkpoint of ours; the message says why, in one line."""


@dataclass
class Checkpoint:
    model: VAE
    model_config: ModelConfig
    train_config: TrainConfig | None
    dataset: str
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    kind: str = "vae"  # "m2": model is a vae.semi.M2
    semi: dict[str, Any] = field(default_factory=dict)  # M2's labels, alpha, n_classes
    source: "Checkpoint | None" = None  # on a derived view (M2 seen as one class's VAE): the checkpoint it shows


def _json_safe(obj: Any) -> Any:
    """NaN/Inf are not JSON: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def to_bytes(model: VAE, train_config: TrainConfig | None, dataset: str, history: list[dict] | None = None,
             metrics: dict | None = None, semi: dict | None = None) -> bytes:
    """Serialise a model and its story to safetensors bytes."""
    from safetensors.torch import save

    meta = {
        "format": FORMAT,
        "model_config": json.dumps(model.cfg.to_dict()),
        "train_config": json.dumps(train_config.to_dict() if train_config else None),
        "dataset": json.dumps(dataset),
        "history": json.dumps(_json_safe(history or [])),
        "metrics": json.dumps(_json_safe(metrics or {})),
    }
    if is_m2(model):
        meta["model_kind"] = json.dumps(M2_KIND)
        meta["semi"] = json.dumps(_json_safe({**(semi or {}), "n_classes": model.n_classes}))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return save(tensors, metadata=meta)


def save_checkpoint(path: str | Path, model: VAE, train_config: TrainConfig | None, dataset: str,
                    history: list[dict] | None = None, metrics: dict | None = None, semi: dict | None = None) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then os.replace over the target.

    Temporary files that earlier saves of the same name left behind when they were killed are removed first.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint names end in .safetensors, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_bytes(model, train_config, dataset, history, metrics, semi)
    _remove_leftovers(path)
    fd, tmp = _locked_temp(path)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb", closefd=False) as f:  # fd stays open, and locked, until the rename is done
            f.write(data)
            f.flush()
            os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def _locked_temp(path: Path) -> tuple[int, str]:
    """A new temporary file next to `path`, locked (flock) for as long as this process writes it.

    The kernel drops the lock when the writer dies, however it dies: an unlocked temporary file is a leftover.
    """
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: leftovers are then told by their age
            return fd, tmp
        if os.fstat(fd).st_nlink:  # not removed as a leftover in the instant before it was locked
            return fd, tmp
        os.close(fd)


def _remove_leftovers(path: Path) -> None:
    """Remove the temporary files of earlier saves of `path` whose writers are gone (killed mid-save)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # removed meanwhile, or not a plain file of ours
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: its writer is alive
                gone = True
            except BlockingIOError:
                gone = False
            except OSError:  # no locks here: only a temporary file untouched for a minute is a leftover
                gone = time.time() - os.fstat(fd).st_mtime > LEFTOVER_AGE_S
            if gone:
                tmp.unlink(missing_ok=True)
        finally:
            os.close(fd)


def read_header(data: bytes) -> dict[str, Any]:
    """Parse and check the safetensors header by hand, before any tensor is touched."""
    if len(data) < 8:
        raise CheckpointError("the file is too short to be a safetensors checkpoint")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or n > len(data) - 8:
        hint = " (it looks like a pickle: those are never loaded)" if data[:1] == b"\x80" or data[:2] == b"PK" else ""
        raise CheckpointError(f"not a safetensors checkpoint, or a truncated one{hint}")
    try:
        header = json.loads(data[8: 8 + n])
    except (ValueError, RecursionError):  # not JSON, not UTF-8, numbers of thousands of digits, deep nesting
        raise CheckpointError("the checkpoint's header is corrupt (not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError("the checkpoint's header is corrupt (not a JSON object)")
    body = len(data) - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"the checkpoint's header is corrupt at tensor {name!r}") from None
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= body):
            raise CheckpointError("the checkpoint is truncated: tensor data runs past the end of the file")
    return header


def _meta_json(meta: dict[str, str], key: str) -> Any:
    if key not in meta:
        raise CheckpointError(f"the checkpoint's metadata has no {key!r}")
    try:
        return json.loads(meta[key])
    except (TypeError, ValueError, RecursionError):
        raise CheckpointError(f"the checkpoint's metadata {key!r} is not valid JSON") from None


def _number(v: Any) -> bool:
    """A JSON number (not a boolean) or null, as the saver writes them (NaN and Inf become null)."""
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, float) or abs(v) < 2**63))


def _finite(v: int | float | None) -> int | float | None:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and all(_number(e) for e in v)


def _clean_history(history: Any) -> list[dict[str, Any]]:
    """Rows of numbers, one per epoch; kl_per_dim a list of numbers; other values of unknown keys are dropped."""
    if not isinstance(history, list):
        raise _wrong_types(f"its history is {_kind(history)}, not a list of epochs")
    rows = []
    for i, row in enumerate(history, start=1):
        if not isinstance(row, dict):
            raise _wrong_types(f"its history row {i} is {_kind(row)}, not an object of numbers")
        out: dict[str, Any] = {}
        for k, v in row.items():
            if k == "kl_per_dim" and _numbers(v):
                out[k] = [_finite(e) for e in v]
            elif k != "kl_per_dim" and _number(v):
                out[k] = _finite(v)
            elif k in HISTORY_KEYS:
                raise _wrong_types(f"its history row {i} has {k} = {_short(v)}, not a number")
        epoch = out.setdefault("epoch", i)  # rows are epochs: a row without its number is the i-th
        if not isinstance(epoch, int) or epoch < 0:
            raise _wrong_types(f"its history row {i} has epoch = {_short(epoch)}, not an epoch number")
        rows.append(out)
    return rows


def _clean_metrics(metrics: Any) -> dict[str, Any]:
    """Numbers, kl_per_dim a list of numbers, status and message strings; other values of unknown keys are dropped."""
    if not isinstance(metrics, dict):
        raise _wrong_types(f"its metrics are {_kind(metrics)}, not an object")
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if k in TEXT_METRICS:
            if not isinstance(v, str):
                raise _wrong_types(f"its metric {k} = {_short(v)} is not text")
            out[k] = v
        elif k == "kl_per_dim" and _numbers(v):
            out[k] = [_finite(e) for e in v]
        elif k != "kl_per_dim" and _number(v):
            out[k] = _finite(v)
        elif k in NUMBER_METRICS or k == "kl_per_dim":
            raise _wrong_types(f"its metric {k} = {_short(v)} is not a number")
        elif isinstance(v, str):
            out[k] = v
    return out


def _wrong_types(what: str) -> CheckpointError:
    return CheckpointError(f"the checkpoint's metadata has the wrong types: {what}")


def _kind(v: Any) -> str:
    """What a JSON value is, in words."""
    if isinstance(v, bool) or v is None:
        return "a boolean" if v is not None else "null"
    return {dict: "an object", list: "a list", str: "text"}.get(type(v), "a number")


def _short(v: Any) -> str:
    """A JSON value in a few characters, for a message."""
    if isinstance(v, (list, dict)):
        return _kind(v)
    text = json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def from_bytes(data: bytes, path: Path | None = None) -> Checkpoint:
    """Validate and load checkpoint bytes: header, config bounds, tensor shapes, finiteness, strict state dict."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if len(data) > MAX_FILE_BYTES:
        raise CheckpointError(f"the file is {len(data) / 2**20:.0f} MB; checkpoints here are far smaller")
    header = read_header(data)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointError("the checkpoint's metadata is corrupt (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"not a VAE-explorer checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    try:
        model_config = ModelConfig.from_dict(_meta_json(meta, "model_config"))  # strict: it says what the weights are
        tc = _meta_json(meta, "train_config")
        if isinstance(tc, dict):  # notes of a run: fields of a later version are ignored
            tc = {k: v for k, v in tc.items() if k in TRAIN_FIELDS}
        train_config = TrainConfig.from_dict(tc) if tc is not None else None
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"the checkpoint's configuration is invalid: {exc}") from None
    dataset = _meta_json(meta, "dataset")
    if not isinstance(dataset, str) or not 0 < len(dataset) <= MAX_DATASET_CHARS:
        raise _wrong_types(f"its data set name {_short(dataset)} is not a name")
    history = _clean_history(_meta_json(meta, "history"))
    metrics = _clean_metrics(_meta_json(meta, "metrics"))
    kind = _meta_json(meta, "model_kind") if "model_kind" in meta else "vae"
    semi = _meta_json(meta, "semi") if kind == M2_KIND else {}
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"unknown model kind {_short(kind)}; this version reads {', '.join(MODEL_KINDS)}")
    if not isinstance(semi, dict):
        raise CheckpointError("the checkpoint's metadata 'semi' is not a JSON object")

    with torch.device("meta"):  # shapes only: nothing is allocated until the file's tensors are known to match
        try:
            expected = {k: (tuple(v.shape), v.dtype) for k, v in _build(kind, model_config, semi).state_dict().items()}
        except ConfigError as exc:
            raise CheckpointError(f"the checkpoint's configuration is invalid: {exc}") from None
    stored = {k: v for k, v in header.items() if k != "__metadata__"}
    if set(stored) != set(expected):
        missing, extra = set(expected) - set(stored), set(stored) - set(expected)
        raise CheckpointError(f"the weights do not match the config (missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]})")
    for k, info in stored.items():
        if not isinstance(info.get("shape"), list) or tuple(info["shape"]) != expected[k][0] or info.get("dtype") != "F32":
            # json.dumps escapes control characters: one line whatever the file holds; a plain dtype name stays bare
            shape, dtype = json.dumps(info.get("shape"))[:60], json.dumps(info.get("dtype"))[:24].strip('"')
            raise CheckpointError(f"tensor {k!r} has shape {shape} {dtype}, expected {list(expected[k][0])} F32")
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"the checkpoint's tensors cannot be read: {exc}") from None
    for k, v in tensors.items():
        if not torch.isfinite(v).all():
            raise CheckpointError(f"tensor {k!r} holds NaN or Inf values; refusing to load it")
    model = _build(kind, model_config, semi)  # the file holds this many weights, so the allocation is bounded by its size
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return Checkpoint(model, model_config, train_config, dataset, history, metrics, path, kind, semi)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a .safetensors checkpoint from disk. Never unpickles; any problem raises CheckpointError."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CheckpointError(f"{path.name}: {size / 2**20:.0f} MB is far larger than any checkpoint here")
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return from_bytes(data, path)
    except CheckpointError as exc:
        raise CheckpointError(f"{path.name}: {exc}") from None


def dataset_fits(ck: Checkpoint, data: Dataset) -> str | None:
    """Why the checkpoint's model cannot read this data set, in one line; None when its images fit the model."""
    shape = ck.model_config.input_shape
    if tuple(data.shape) != shape:
        trained_on = f" (it was trained on {ck.dataset!r})" if ck.dataset != data.name else ""
        return f"data set {data.name!r} has images of shape {tuple(data.shape)}; the model expects {shape}{trained_on}"
    return None


def list_checkpoints(folder: str | Path) -> list[Path]:
    """The .safetensors files in `folder`, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.safetensors"), key=lambda p: (-p.stat().st_mtime, p.name))


@dataclass(frozen=True)
class SaveTarget:
    path: Path
    exists: bool  # a file of that name is already there: saving replaces it
    shipped: bool  # ... and it is one of the shipped models


def checkpoint_target(folder: str | Path, name: str) -> SaveTarget:
    """Validate a user's checkpoint name and say where it would be written; CheckpointError says what is wrong."""
    name = normalize_name(name)
    problem = name_problem(name)
    if problem:
        raise CheckpointError(problem)
    path = Path(folder) / f"{name}.safetensors"
    return SaveTarget(path, path.exists(), name in SHIPPED_CHECKPOINTS)
