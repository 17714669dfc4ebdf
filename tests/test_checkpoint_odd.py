"""Checkpoints with odd content: metadata validated or tolerated on load, `info`/`evaluate` in one line, pages that
say in one line that the model's data set cannot be used, and saves that clear their killed predecessors' leftovers."""
from __future__ import annotations

import contextlib
import re
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import vae
from vae.__main__ import main
from vae.checkpoint import CheckpointError, from_bytes, to_bytes

ROOT = Path(__file__).resolve().parent.parent


class _Raw(str):
    """A metadata value stored as written, not JSON-encoded again."""


def _tiny(input_shape=(1, 8, 8)) -> vae.VAE:
    torch.manual_seed(0)
    return vae.build_model(vae.ModelConfig(input_shape=input_shape, latent_dim=2, hidden=16))


def _good_meta() -> tuple[dict, dict[str, torch.Tensor]]:
    """A real checkpoint's header metadata (decoded) and its tensors."""
    model = _tiny()
    history = [{"epoch": 1, "step": 12, "seconds": 0.5, "beta": 1.0, "train_recon": 30.0, "train_kl": 2.0,
                "train_loss": 32.0, "train_neg_elbo": 32.0, "test_recon": 29.0, "test_kl": 2.1, "test_neg_elbo": 31.1,
                "kl_per_dim": [1.0, 1.1]}]
    data = to_bytes(model, vae.TrainConfig(dataset="digits"), "digits", history,
                    {"neg_elbo": 31.1, "recon": 29.0, "kl": 2.1, "status": "finished", "message": ""})
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8: 8 + n])["__metadata__"]
    return {k: _Raw(v) if k == "format" else json.loads(v) for k, v in meta.items()}, model.state_dict()


def _with_meta(**changes) -> bytes:
    """Checkpoint bytes whose metadata fields are replaced by `changes` (JSON values; a str is stored raw)."""
    from safetensors.torch import save

    meta, tensors = _good_meta()
    meta.update(changes)
    raw = {k: v if isinstance(v, _Raw) else json.dumps(v) for k, v in meta.items()}
    return save({k: v.contiguous() for k, v in tensors.items()}, metadata={k: str(v) for k, v in raw.items()})


@pytest.mark.parametrize("changes, expected", [
    ({"history": [{"epoch": 1, "test_neg_elbo": 5.0}, {"test_neg_elbo": 4.0}]}, [1, 2]),  # a row without its epoch
    ({"history": [{"epoch": 3, "note": "hello", "lr": 0.1, "nested": {"a": 1}}]}, [3]),  # unknown keys
    ({"history": []}, []),
])
def test_odd_but_harmless_histories_load(changes, expected):
    ck = from_bytes(_with_meta(**changes))
    assert [h["epoch"] for h in ck.history] == expected
    assert all(isinstance(v, (int, float, list, type(None))) for h in ck.history for v in h.values())


def test_unknown_metadata_keys_and_train_config_fields_are_ignored():
    meta, _ = _good_meta()
    ck = from_bytes(_with_meta(future={"x": 1}, train_config={**meta["train_config"], "optimizer": "lion"},
                               metrics={"neg_elbo": 1.5, "accuracy": 0.9, "notes": "fine", "curve": [[1, 2]]}))
    assert ck.train_config.dataset == "digits"
    assert ck.metrics == {"neg_elbo": 1.5, "accuracy": 0.9, "notes": "fine"}


def test_non_finite_numbers_become_null():
    ck = from_bytes(_with_meta(history=_Raw('[{"epoch": 1, "test_neg_elbo": NaN, "kl_per_dim": [Infinity, 1]}]'),
                               metrics=_Raw('{"neg_elbo": -Infinity}')))
    assert ck.history == [{"epoch": 1, "test_neg_elbo": None, "kl_per_dim": [None, 1]}]
    assert ck.metrics == {"neg_elbo": None}


@pytest.mark.parametrize("changes, words", [
    ({"history": [1, 2, 3]}, "history row 1 is a number"),
    ({"history": {"epoch": 1}}, "history is an object"),
    ({"history": [{"epoch": 1, "test_neg_elbo": "31.1"}]}, "test_neg_elbo"),
    ({"history": [{"epoch": "one"}]}, "epoch"),
    ({"history": [{"epoch": -1}]}, "epoch"),
    ({"history": [{"epoch": 1, "kl_per_dim": ["a"]}]}, "kl_per_dim"),
    ({"history": [{"epoch": True}]}, "epoch"),
    ({"history": [{"epoch": 10**30}]}, "epoch"),
    ({"metrics": [1]}, "metrics are a list"),
    ({"metrics": {"neg_elbo": "low"}}, "neg_elbo"),
    ({"metrics": {"status": 3}}, "status"),
    ({"dataset": 5}, "data set name"),
    ({"dataset": ""}, "data set name"),
    ({"train_config": {"dataset": 5}}, "configuration"),
    ({"train_config": {"extra": [1]}}, "configuration"),
    ({"train_config": [1]}, "configuration"),
    ({"model_config": {"arch": "mlp", "input_shape": 8}}, "configuration"),
    ({"history": _Raw("[" * 100_000 + "]" * 100_000)}, "not valid JSON"),
    ({"metrics": _Raw('{"neg_elbo": 1' + "0" * 5000 + "}")}, "not valid JSON"),
])
def test_wrong_types_are_refused_in_one_line(changes, words):
    with pytest.raises(CheckpointError) as info:
        from_bytes(_with_meta(**changes))
    msg = str(info.value)
    assert words in msg and "\n" not in msg and len(msg) < 300


@pytest.mark.parametrize("changes", [
    {"history": [1, 2, 3]},
    {"history": [{"epoch": 1, "seconds": None, "test_neg_elbo": None}]},
    {"history": [{"test_neg_elbo": "x"}]},
    {"metrics": {"neg_elbo": None, "seconds": None}},
])
def test_info_and_evaluate_never_print_a_traceback(tmp_path, capsys, changes):
    path = tmp_path / "odd.safetensors"
    path.write_bytes(_with_meta(**changes))
    for command in (["info", str(path)], ["evaluate", str(path), "--iwae-k", "2"]):
        code = main(command)
        err = capsys.readouterr().err.strip().splitlines()
        assert code in (0, 2) and len(err) <= 1 and not any("Traceback" in line for line in err), (command, err)
        assert code == 0 or err[0].startswith("error:")


def test_evaluate_names_a_data_set_that_does_not_fit(tmp_path, capsys):
    path = tmp_path / "misfit.safetensors"
    path.write_bytes(_with_meta(dataset="shapes"))  # an 8x8 model, a data set of larger images
    assert main(["evaluate", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "'shapes'" in line and "the model expects (1, 8, 8)" in line


def test_dataset_fits(digits):
    ck = from_bytes(_with_meta())
    assert vae.dataset_fits(ck, digits) is None
    ck28 = from_bytes(to_bytes(_tiny((1, 28, 28)), None, "digits"))
    reason = vae.dataset_fits(ck28, digits)
    assert reason is not None and "(1, 28, 28)" in reason and "'digits'" in reason and "\n" not in reason


# ---------------------------------------------------------------- temporary files of killed saves

_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    import vae
    target, rounds = Path(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(0)
    # a few MB, so that a save takes long enough to be caught in the middle
    model = vae.build_model(vae.ModelConfig(input_shape=(1, 28, 28), latent_dim=2, hidden=1024))
    temps = lambda: set(target.parent.glob(f".{target.name}.*.tmp"))
    caught = 0
    for r in range(rounds):
        before = temps()
        pid = os.fork()
        if pid == 0:  # the child saves again and again until it is killed
            while True:
                vae.save_checkpoint(target, model, None, "digits", [{"epoch": r}])
        deadline = time.monotonic() + 10
        while not (temps() - before) and time.monotonic() < deadline:
            pass  # busy-wait: a new temporary file means the child is in the middle of a save
        caught += bool(temps() - before)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(caught, len(temps()))
""")


def test_killed_saves_leave_the_checkpoint_whole_and_at_most_one_temporary_file(tmp_path):
    """100 real processes killed with SIGKILL in the middle of a save (forked from one that has imported torch)."""
    target = tmp_path / "model.safetensors"
    vae.save_checkpoint(target, _tiny((1, 28, 28)), None, "digits", [{"epoch": 0}])
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(target), "100"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    caught, left = map(int, proc.stdout.split())
    assert caught >= 90, proc.stdout  # nearly every kill landed while a temporary file was being written
    assert left <= 1
    assert len(list(tmp_path.glob(".model.safetensors.*.tmp"))) <= 1
    ck = vae.load_checkpoint(target)  # whichever save finished last, it is whole
    assert ck.model_config.input_shape == (1, 28, 28)
    vae.save_checkpoint(target, ck.model, None, "digits", ck.history)  # the next ordinary save clears the last one
    assert list(tmp_path.glob(".*.tmp")) == []


def test_a_save_leaves_the_temporary_files_of_live_writers_alone(tmp_path):
    """Another process still writing (its temporary file locked) keeps its file, whatever its age."""
    target = tmp_path / "m.safetensors"
    live = tmp_path / ".m.safetensors.abcd1234.tmp"
    live.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(live, (old, old))
    other = tmp_path / ".other.safetensors.abcd1234.tmp"  # another checkpoint's temporary file: not ours to remove
    other.write_bytes(b"x")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        f = open({str(live)!r}, "r+b")
        fcntl.flock(f, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        vae.save_checkpoint(target, _tiny(), None, "digits")
        assert live.exists() and other.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    vae.save_checkpoint(target, _tiny(), None, "digits")  # its writer is gone now: the file is a leftover
    assert not live.exists() and other.exists()


# ---------------------------------------------------------------- pages with a model whose data set cannot be used

PAGES = ["home", "explore", "map", "reconstruct", "generate", "interpolate", "denoise", "evaluate", "train"]


@pytest.fixture
def odd_models(tmp_path, monkeypatch, digits):
    """Two valid 8x8 models in a private checkpoints/: one names a data set of other images, one a data set that
    does not exist."""
    from ui import state

    folder = tmp_path / "checkpoints"
    model = vae.build_model(vae.ModelConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=16))
    vae.fit(model, digits, vae.TrainConfig(dataset="digits", epochs=1, threads=1, device="cpu"))
    paths = {why: vae.save_checkpoint(folder / f"{why}.safetensors", model, None, dataset, [{"epoch": 1}], {})
             for why, dataset in [("misfit", "shapes"), ("missing", "no-such-set")]}
    monkeypatch.setattr(state, "CHECKPOINT_DIR", folder)
    for name in ("shapes", "no-such-set"):  # loaded (or failed) before the pages ask: no "loading…" in between
        with contextlib.suppress(vae.DataError):
            state.prefetch_dataset(name).result()
    return paths


@pytest.mark.parametrize("page", PAGES)
def test_pages_say_in_one_line_that_the_data_set_cannot_be_used(odd_models, page):
    from streamlit.testing.v1 import AppTest

    for why, path in odd_models.items():
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["model_key"] = f"path:{path}"
        at.run().switch_page(f"pages/{page}.py").run()
        if page == "explore":
            next(b for b in at.button if b.label == "Start from this image").click().run()
        assert [e.value for e in at.exception] == [], (why, page)
        # Messages are shown escaped for markdown (ui.safe): compare what the user reads.
        texts = [re.sub(r"\\(.)", r"\1", e.value) for e in [*at.error, *at.warning, *at.info, *at.caption, *at.markdown]]
        if page in ("map", "explore") or (page == "home" and why == "misfit"):
            expected = "the model expects (1, 8, 8)" if why == "misfit" else "no-such-set"
            assert any(expected in t for t in texts), (why, page, texts)
