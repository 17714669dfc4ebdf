"""vae.distributed and fit() under it: DDP under torchrun matches a single process with the same global batch; resume; failures end cleanly.

The 2-process runs are real: `python -m torch.distributed.run --nproc_per_node=2` over gloo on 127.0.0.1, as a
subprocess. Tolerances: the only difference between 2 ranks x batch 64 and 1 process x batch 128 is the order of
floating-point sums (the gradient is two half-batch sums added by the all-reduce instead of one sum), ~1e-7
relative per step; after 36 Adam steps (one-cycle lr) the weights were measured 4e-7 apart, so 1e-5 leaves room for other BLAS
blockings while still catching any real difference (a shifted shard, misaligned noise or an unscaled loss moves
the weights by ~lr = 2e-3 on the first step).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vae
from vae import distributed, training
from vae.__main__ import main
from vae.losses import elbo_terms
from vae.training import evaluate, fit

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--dataset", "digits", "--latent-dim", "2", "--hidden", "64", "--threads", "1", "--seed", "3"]
WEIGHT_ATOL = 1e-5  # see the module docstring
NATS_ATOL = 1e-3  # held-out -ELBO, nats per image: evaluated with the same noise on both sides, so only weight drift


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_cmd(args: list[str], nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), "-m", "vae", "train", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    return env


def _torchrun(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(_torchrun_cmd(args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _single(args: list[str], capsys) -> dict:
    """python -m vae train in this process (not under torchrun: fit(), or the resume path)."""
    capsys.readouterr()
    assert main(["train", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _max_weight_diff(a: vae.VAE, b: vae.VAE) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


# ---------------------------------------------------------------- in one process: the pieces against their oracles


def test_elbo_given_noise_matches_elbo_terms(tiny_model, digits):
    model = tiny_model()
    x = digits.x_train[:50]
    expected = elbo_terms(model, x, 0.7, torch.Generator().manual_seed(5))
    eps = torch.randn((50, model.cfg.latent_dim), generator=torch.Generator().manual_seed(5))  # the draw VAE.forward makes
    got = elbo_terms(model, x, 0.7, eps=eps)
    for k in ("recon", "kl", "kl_dims", "neg_elbo", "loss"):
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0)
    # a rank holding rows 10:30 of the batch gets those rows of the whole batch's noise
    part = training.elbo_objective(model, x[10:30], None, 0.7, training.BatchNoise(torch.Generator().manual_seed(5), 50, 10, 30))
    for k in ("recon", "kl", "kl_dims", "neg_elbo", "loss"):
        torch.testing.assert_close(part[k], expected[k][10:30], rtol=0, atol=0)


def test_shards_of_the_evaluation_add_up_to_evaluate(tiny_model, digits):
    model = tiny_model()
    x = digits.x_test  # 297 images: shards cut across evaluate()'s 1000-image chunks only with a smaller chunk
    ev = evaluate(model, x, batch_size=100)
    cuts = [0, 37, 150, 151, 297]
    sums = sum(training.shard_sums(model, x, a, b, batch_size=100) for a, b in zip(cuts, cuts[1:]))
    got = (sums / len(x)).tolist()
    assert got[:3] == pytest.approx([ev["recon"], ev["kl"], ev["neg_elbo"]], rel=1e-6)
    assert got[3:] == pytest.approx(ev["kl_per_dim"], rel=1e-6, abs=1e-9)


def test_fit_in_a_one_rank_process_group_is_fit(tiny_model, tiny_train, digits, tmp_path):
    """In a process group (DDP wrapper, all-reduces) of one rank, fit() trains as without one: same batches, same
    noise, same history."""
    cfg = tiny_train(epochs=2, batch_size=100, warmup_epochs=1.0)
    a, b = tiny_model(seed=4), tiny_model(seed=4)
    ra = fit(a, digits, cfg)
    torch.distributed.init_process_group("gloo", store=torch.distributed.FileStore(str(tmp_path / "store"), 1), rank=0,
                                         world_size=1)
    try:
        assert training.in_process_group()
        rb = fit(b, digits, cfg)
    finally:
        torch.distributed.destroy_process_group()
    assert (ra.status, rb.status) == ("finished", "finished")
    assert _max_weight_diff(a, b) < 1e-6
    for row_a, row_b in zip(ra.history, rb.history, strict=True):
        for k in ("epoch", "step", "beta", "train_loss", "train_kl", "test_neg_elbo"):
            assert row_b[k] == pytest.approx(row_a[k], rel=1e-5), k
    assert rb.final["neg_elbo"] == pytest.approx(ra.final["neg_elbo"], rel=1e-6)


def test_fit_continues_epochs_steps_and_warmup(tiny_model, tiny_train, digits):
    cfg = tiny_train(epochs=1, batch_size=500, warmup_epochs=4.0)  # 3 steps per epoch
    r = fit(tiny_model(), digits, cfg, start_epoch=2, start_step=6)
    (row,) = r.history
    assert (row["epoch"], row["step"]) == (3, 9)
    assert row["beta"] == pytest.approx(cfg.beta * (2 * 3 + 2) / (4 * 3))  # the warm-up goes on from epoch 2


def test_fit_stops_and_keeps_the_last_good_weights_on_nan(tiny_model, tiny_train, digits):
    model = tiny_model()
    with torch.no_grad():
        model.encoder[1].weight.fill_(float("nan"))
    r = fit(model, digits, tiny_train(epochs=2))
    assert r.status == "nan" and "loss became nan" in r.message and r.history == []


@pytest.mark.parametrize("env, expected", [
    ({}, distributed.Launch(0, 1, 0)),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, distributed.Launch(3, 4, 1)),
])
def test_launch_from_env(env, expected):
    assert distributed.launch_from_env(env) == expected


@pytest.mark.parametrize("env", [{"RANK": "2", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "two"}])
def test_launch_from_env_rejects_nonsense(env):
    with pytest.raises(distributed.DistributedError):
        distributed.launch_from_env(env)


def test_single_process_resume_appends_history_and_starts_from_the_weights(tmp_path, capsys, monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    _single([*TINY_ARGS, "--epochs", "3", "--batch-size", "128", "--out", str(first)], capsys)
    ck1 = vae.load_checkpoint(first)
    # no --dataset: the checkpoint's data set (digits) is used; a fresh mnist5k model would not even fit its shape
    # lr 1e-7: the resumed weights must stay where the checkpoint left them (no fresh init, no output-bias reset)
    out = _single(["--resume", str(first), "--epochs", "2", "--batch-size", "128", "--lr", "1e-7", "--threads", "1",
                   "--out", str(second)], capsys)
    ck2 = vae.load_checkpoint(second)
    assert out["total_epochs"] == 5 and out["resumed_from"] == str(first)
    assert [h["epoch"] for h in ck2.history] == [1, 2, 3, 4, 5]
    assert ck2.history[:3] == ck1.history
    assert [h["step"] for h in ck2.history[3:]] == [48, 60]  # 12 steps an epoch, going on from 36
    assert ck2.history[3]["seconds"] > ck1.history[-1]["seconds"]
    assert ck2.dataset == "digits" and ck2.model_config == ck1.model_config
    assert ck2.train_config.epochs == 5 and ck2.train_config.extra["resumed_at_epoch"] == 3
    assert _max_weight_diff(ck2.model, ck1.model) < 1e-4
    assert ck2.history[3]["train_loss"] == pytest.approx(ck1.history[-1]["train_loss"], abs=1.0)


def test_resume_refuses_data_of_another_shape(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    first = tmp_path / "a.safetensors"
    _single([*TINY_ARGS, "--epochs", "1", "--out", str(first)], capsys)
    assert main(["train", "--resume", str(first), "--dataset", "shapes", "--epochs", "1", "--out", str(tmp_path / "b.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expects (1, 8, 8)" in err[0] and "'digits'" in err[0]
    assert not (tmp_path / "b.safetensors").exists()


# ---------------------------------------------------------------- two real processes over gloo on 127.0.0.1


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """One 2-process run: 2 ranks x batch 64, 3 epochs on digits (36 steps). Returns (folder, stdout, json)."""
    folder = tmp_path_factory.mktemp("ddp")
    proc = _torchrun([*TINY_ARGS, "--epochs", "3", "--batch-size", "64", "--out", "ddp.safetensors", "--json"], folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    return folder, proc.stdout, json.loads(lines[-1])


def test_two_ranks_match_one_process_with_the_same_global_batch(two_rank_run, tmp_path, capsys):
    folder, _, ddp = two_rank_run
    single = _single([*TINY_ARGS, "--epochs", "3", "--batch-size", "128", "--out", str(tmp_path / "one.safetensors")], capsys)
    assert ddp["world_size"] == 2 and ddp["global_batch_size"] == 128 and ddp["status"] == "finished"
    assert ddp["test_neg_elbo"] == pytest.approx(single["test_neg_elbo"], abs=NATS_ATOL)
    assert ddp["test_kl"] == pytest.approx(single["test_kl"], abs=NATS_ATOL)
    a, b = vae.load_checkpoint(folder / "ddp.safetensors"), vae.load_checkpoint(tmp_path / "one.safetensors")
    assert _max_weight_diff(a.model, b.model) < WEIGHT_ATOL
    for row_a, row_b in zip(a.history, b.history, strict=True):
        assert (row_a["epoch"], row_a["step"]) == (row_b["epoch"], row_b["step"])
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], abs=NATS_ATOL)  # all-reduced over both ranks


def test_only_rank_0_prints_and_the_checkpoint_is_an_ordinary_one(two_rank_run):
    folder, stdout, ddp = two_rank_run
    assert [line for line in stdout.splitlines() if line.startswith("{")] == [stdout.strip().splitlines()[-1]]
    ck = vae.load_checkpoint(folder / ddp["checkpoint"])
    assert ck.dataset == "digits" and ck.model_config.input_shape == (1, 8, 8)
    assert [h["epoch"] for h in ck.history] == [1, 2, 3]
    assert ck.train_config.batch_size == 64 and ck.train_config.extra == {"world_size": 2, "global_batch_size": 128, "backend": "gloo"}
    assert ck.metrics["status"] == "finished" and ck.metrics["neg_elbo"] == pytest.approx(ddp["test_neg_elbo"])
    assert [p.name for p in folder.iterdir()] == ["ddp.safetensors"]  # no temporary files left by the atomic writes
    x = vae.load_dataset("digits").x_test[:4]
    assert vae.reconstruct(ck.model, x).x_hat.shape == x.shape  # it runs like any checkpoint


def test_the_two_rank_checkpoint_resumes_in_one_process(two_rank_run, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    folder, _, _ = two_rank_run
    out = _single(["--resume", str(folder / "ddp.safetensors"), "--epochs", "1", "--batch-size", "128", "--threads", "1",
                   "--out", str(tmp_path / "more.safetensors")], capsys)
    ck = vae.load_checkpoint(tmp_path / "more.safetensors")
    assert out["total_epochs"] == 4 and [h["epoch"] for h in ck.history] == [1, 2, 3, 4] and ck.history[-1]["step"] == 48
    assert ck.train_config.extra["world_size"] == 1 and ck.train_config.extra["resumed_at_epoch"] == 3


def test_an_error_on_a_rank_is_one_line_naming_the_rank(tmp_path, capsys, monkeypatch):
    """Rank 1 of 2 fails before the process group forms (no peer needed): one line on stderr, exit 2, silent stdout."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # rank 1 sends its stdout to /dev/null; put it back afterwards
    missing = tmp_path / "missing.safetensors"
    assert main(["train", "--resume", str(missing), "--epochs", "1", "--out", str(tmp_path / "x.safetensors"), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: rank 1 of 2: cannot read {missing}: No such file or directory"]
    assert not (tmp_path / "x.safetensors").exists()


def test_a_rank_killed_mid_run_ends_the_other_and_leaves_the_last_epoch_resumable(tmp_path, capsys):
    """Two workers started as torchrun starts them, with no torchrun to clean up: rank 1 is killed in the middle of
    training, and rank 0, inside an all-reduce, must end by itself with one line and a non-zero status."""
    out = tmp_path / "long.safetensors"
    port = _free_port()
    cmd = [sys.executable, "-m", "vae", "train", *TINY_ARGS, "--epochs", "2000", "--batch-size", "64", "--out", str(out)]
    workers = [subprocess.Popen(cmd, cwd=tmp_path, env={**_env(), "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        deadline = time.monotonic() + 90
        while not out.exists() and all(w.poll() is None for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)  # rank 0 writes the checkpoint after every epoch
        assert out.exists(), [w.communicate(timeout=30)[1][-2000:] for w in workers]
        workers[1].send_signal(signal.SIGKILL)  # one rank dies without a word, in the middle of training
        _, err = workers[0].communicate(timeout=60)  # the other must not wait forever in its all-reduce
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
            w.communicate()
    assert workers[0].returncode == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: DistributedError: rank 0 of 2: "), err[-2000:]
    ck = vae.load_checkpoint(out)  # written atomically: whatever epoch it holds is whole
    assert ck.metrics["status"] == "running" and len(ck.history) == ck.history[-1]["epoch"] >= 1
    resumed = _single(["--resume", str(out), "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "r.safetensors")], capsys)
    assert resumed["total_epochs"] == len(ck.history) + 1
