"""Checkpoints: a bit-exact round trip, atomic saves, and hostile files refused with CheckpointError."""
from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save as st_save

import vae.checkpoint as checkpoint
from vae.checkpoint import FORMAT, CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint, to_bytes
from vae.config import ModelConfig, TrainConfig
from vae.model import build_model, count_parameters


@pytest.fixture
def saved(tmp_path, trained_digits, trained_digits_run):
    """A real checkpoint of the trained digits model, with its history and final metrics."""
    result, cfg = trained_digits_run
    path = save_checkpoint(tmp_path / "digits.safetensors", trained_digits, cfg, "digits", result.history, result.final)
    return path, result, cfg


def test_round_trip_is_bit_exact_with_all_metadata(saved, trained_digits):
    path, result, cfg = saved
    ck = load_checkpoint(path)
    original, loaded = trained_digits.state_dict(), ck.model.state_dict()
    assert original.keys() == loaded.keys()
    for k in original:
        assert loaded[k].dtype == original[k].dtype and torch.equal(loaded[k], original[k]), k
    assert ck.model_config == trained_digits.cfg
    assert ck.train_config == cfg
    assert ck.dataset == "digits"
    assert ck.history == result.history and len(ck.history) == cfg.epochs
    assert ck.metrics == result.final
    assert ck.path == path and not ck.model.training
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(ck.model.decode(ck.model.encode(x)[0]), trained_digits.decode(trained_digits.encode(x)[0]))


@pytest.mark.parametrize("overrides", [{"arch": "conv"}, {"arch": "conv", "likelihood": "gaussian", "obs_std": 0.3},
                                       {"latent_dim": 2, "input_shape": (3, 4, 4)}], ids=["conv", "conv-gaussian", "rgb"])
def test_round_trip_of_other_architectures(tmp_path, tiny_model, overrides):
    model = tiny_model(**overrides)
    ck = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model, None, "folder:/data/x.zip"))
    assert ck.model_config == model.cfg and ck.dataset == "folder:/data/x.zip"
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v), k


def test_non_finite_metadata_is_stored_as_null(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model(), None, "digits",
                           [{"epoch": 1, "test_neg_elbo": float("nan")}], {"iwae": float("inf"), "ok": 1.5})
    ck = load_checkpoint(path)
    assert ck.train_config is None
    assert ck.history == [{"epoch": 1, "test_neg_elbo": None}] and ck.metrics == {"iwae": None, "ok": 1.5}


def test_save_refuses_other_suffixes(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match=".safetensors"):
        save_checkpoint(tmp_path / "model.pt", tiny_model(), None, "digits")
    assert not list(tmp_path.iterdir())


def test_list_checkpoints_newest_first(tmp_path, tiny_model):
    model = tiny_model()
    for i, name in enumerate(["b", "a", "c"]):
        p = save_checkpoint(tmp_path / f"{name}.safetensors", model, None, "digits")
        os.utime(p, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["c.safetensors", "a.safetensors", "b.safetensors"]
    assert list_checkpoints(tmp_path / "missing") == []


# ---------------------------------------------------------------- atomic saves
class Boom(Exception):
    pass


def _raise(*_args, **_kwargs):
    raise Boom("disk on fire")


@pytest.mark.parametrize("target", ["os.replace", "os.fsync", "os.fdopen"])
def test_failed_save_leaves_the_old_checkpoint_and_no_temp_files(tmp_path, monkeypatch, tiny_model, target):
    path = save_checkpoint(tmp_path / "model.safetensors", tiny_model(seed=1), None, "digits")
    before = path.read_bytes()
    monkeypatch.setattr(target, _raise)
    with pytest.raises(Boom):
        save_checkpoint(path, tiny_model(seed=2), None, "digits", [{"epoch": 1}])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no .tmp left behind
    load_checkpoint(path)


def test_failed_write_midway_leaves_the_old_checkpoint(tmp_path, monkeypatch, tiny_model):
    """The write itself dies after half the bytes (a full disk): the target must be untouched."""
    path = save_checkpoint(tmp_path / "model.safetensors", tiny_model(seed=1), None, "digits")
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(os, "fdopen", lambda *a, **kw: HalfWriter(real_fdopen(*a, **kw)))
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, tiny_model(seed=2), None, "digits")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


# ---------------------------------------------------------------- hostile files
class CreatesFile:
    """Unpickling this creates `target`: the proof that a loader executed code from the file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def _good_bytes(latent_dim: int = 4) -> bytes:
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_shape=(1, 8, 8), latent_dim=latent_dim, hidden=16))
    return to_bytes(model, TrainConfig(dataset="digits"), "digits", [{"epoch": 1}], {"neg_elbo": 30.0})


def _split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8: 8 + n]), data[8 + n:]


def _join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _with_meta(key: str, edit) -> bytes:
    header, body = _split(_good_bytes())
    meta = header["__metadata__"]
    meta[key] = edit(meta[key])
    return _join(header, body)


def _with_model_config(**changes) -> bytes:
    return _with_meta("model_config", lambda s: json.dumps({**json.loads(s), **changes}))


def _with_train_config(raw_edit) -> bytes:
    return _with_meta("train_config", raw_edit)


def _with_tensors(transform) -> bytes:
    """Re-save the good model's tensors after `transform(dict)`, keeping its metadata."""
    from safetensors.torch import load

    data = _good_bytes()
    header, _ = _split(data)
    tensors = transform(load(data))
    return st_save(tensors, metadata=header["__metadata__"])


def _with_tensor_header(edit) -> bytes:
    header, body = _split(_good_bytes())
    name = sorted(k for k in header if k != "__metadata__")[0]
    edit(header[name])
    return _join(header, body)


def _nan_weight(t: dict) -> dict:
    t["encoder.1.weight"] = t["encoder.1.weight"].clone()
    t["encoder.1.weight"][0, 0] = float("nan")
    return t


HOSTILE = {
    # name: (bytes factory, what the message must mention)
    "empty": (lambda: b"", "too short"),
    "truncated-in-length": (lambda: _good_bytes()[:5], "too short"),
    "truncated-in-header": (lambda: _good_bytes()[:200], "truncated"),
    "truncated-in-tensors": (lambda: _good_bytes()[:-100], "truncated"),
    "one-byte-short": (lambda: _good_bytes()[:-1], "truncated"),
    "header-not-json": (lambda: (lambda d: d[:8] + b"{" * 20 + d[28:])(_good_bytes()), "not JSON"),
    "header-not-utf8": (lambda: (lambda d: d[:8] + b"\xff\xfe" + d[10:])(_good_bytes()), "not JSON"),
    "header-deeply-nested": (lambda: (lambda h: struct.pack("<Q", len(h)) + h)(b"[" * 100_000 + b"]" * 100_000), "not JSON"),
    "header-a-list": (lambda: _join([1, 2, 3], b""), "not a JSON object"),
    "huge-header-length": (lambda: struct.pack("<Q", 2**62) + _good_bytes()[8:], "not a safetensors"),
    "header-length-past-end": (lambda: struct.pack("<Q", len(_good_bytes())) + _good_bytes()[8:], "truncated"),
    "metadata-a-list": (lambda: (lambda hb: _join({**hb[0], "__metadata__": [1]}, hb[1]))(_split(_good_bytes())), "metadata"),
    "no-metadata": (lambda: (lambda hb: _join({k: v for k, v in hb[0].items() if k != "__metadata__"}, hb[1]))(_split(_good_bytes())), "format"),
    "wrong-format": (lambda: _with_meta("format", lambda _: "pythae/2"), "pythae/2"),
    "model-config-not-json": (lambda: _with_meta("model_config", lambda _: "{oops"), "model_config"),
    "latent-dim-1e9": (lambda: _with_model_config(latent_dim=10**9), "latent_dim"),
    "hidden-negative": (lambda: _with_model_config(hidden=-5), "hidden"),
    "side-1e6": (lambda: _with_model_config(input_shape=[1, 10**6, 10**6]), "height"),
    "channels-float": (lambda: _with_model_config(input_shape=[1.0, 8, 8]), "channels"),
    "input-shape-int": (lambda: _with_model_config(input_shape=5), "configuration"),
    "unknown-arch": (lambda: _with_model_config(arch="__import__('os')"), "architecture"),
    "unknown-config-field": (lambda: _with_model_config(evil=1), "unknown"),
    "lr-huge-integer": (lambda: _with_train_config(lambda s: json.dumps({**json.loads(s), "lr": 10**400})), "lr must be"),
    "device-not-a-string": (lambda: _with_train_config(lambda s: json.dumps({**json.loads(s), "device": 5})), "device"),
    "history-not-a-list": (lambda: _with_meta("history", lambda _: json.dumps({"a": 1})), "wrong types"),
    "shape-mismatch": (lambda: _with_model_config(latent_dim=5), r"shape \[16, 4\] F32, expected \[16, 5\]"),
    "shape-wrong": (lambda: _with_tensor_header(lambda info: info.update(shape=[3, 3])), "shape"),
    "shape-not-a-list": (lambda: _with_tensor_header(lambda info: info.update(shape=7)), "shape"),
    "offsets-past-end": (lambda: _with_tensor_header(lambda info: info.update(data_offsets=[0, 10**12])), "truncated"),
    "offsets-missing": (lambda: _with_tensor_header(lambda info: info.pop("data_offsets")), "corrupt"),
    "missing-tensor": (lambda: _with_tensors(lambda t: {k: v for k, v in t.items() if k != "decoder.0.bias"}), "missing"),
    "extra-tensor": (lambda: _with_tensors(lambda t: {**t, "payload": torch.zeros(3)}), "unexpected"),
    "nan-weights": (lambda: _with_tensors(_nan_weight), "NaN"),
    "inf-weights": (lambda: _with_tensors(lambda t: {**t, "decoder.0.bias": torch.full_like(t["decoder.0.bias"], float("inf"))}), "NaN or Inf"),
    "float64-weights": (lambda: _with_tensors(lambda t: {k: v.double() for k, v in t.items()}), "F64"),
    "float16-weights": (lambda: _with_tensors(lambda t: {k: v.half() for k, v in t.items()}), "F16"),
    "int-weights": (lambda: _with_tensors(lambda t: {k: v.to(torch.int32) for k, v in t.items()}), "I32"),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_checkpoints_are_refused(tmp_path, kind):
    make, message = HOSTILE[kind]
    path = tmp_path / f"{kind}.safetensors"
    path.write_bytes(make())
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert path.name in str(info.value) and "\n" not in str(info.value)  # one line, naming the file


@pytest.fixture
def no_big_allocation(monkeypatch):
    """Make build_model fail loudly if asked to allocate a big model for real (a meta-device build is free)."""
    real = checkpoint.build_model

    def guarded(cfg):
        if torch.get_default_device().type != "meta":
            with torch.device("meta"):
                n = count_parameters(real(cfg))
            if n > 5_000_000:
                raise AssertionError(f"a hostile config made the loader allocate {n:,} parameters")
        return real(cfg)

    monkeypatch.setattr(checkpoint, "build_model", guarded)


@pytest.mark.parametrize("changes", [
    {"latent_dim": 10**9},  # out of bounds: refused by the config before any model exists
    {"latent_dim": 512, "hidden": 4096, "input_shape": [3, 128, 128]},  # in bounds but ~0.8 G parameters
], ids=["out-of-bounds", "in-bounds-but-huge"])
def test_big_configs_are_refused_before_allocating(tmp_path, no_big_allocation, changes):
    path = tmp_path / "big.safetensors"
    path.write_bytes(_with_model_config(**changes))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickles_are_never_unpickled(tmp_path, writer):
    # the payload works: unpickling it really creates a file
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(CreatesFile(proof))).close()
    assert proof.exists()

    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    payload = {"state_dict": {"w": torch.zeros(2)}, "evil": CreatesFile(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["missing.safetensors", "folder.safetensors"])
def test_unreadable_paths_raise_checkpoint_error(tmp_path, name):
    (tmp_path / "folder.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / name)


def test_a_good_checkpoint_passes_the_same_checks(tmp_path):
    """The hostile cases are edits of this file; it must load, or the tests above prove nothing."""
    path = tmp_path / "good.safetensors"
    path.write_bytes(_good_bytes())
    ck = load_checkpoint(path)
    assert ck.model_config.latent_dim == 4 and ck.train_config.dataset == "digits" and ck.history == [{"epoch": 1}]
    header, body = _split(_good_bytes())
    path.write_bytes(_join(header, body))  # our own re-serialisation of the header is also fine
    load_checkpoint(path)
    assert FORMAT == header["__metadata__"]["format"]
