"""The CLI as a user runs it: real subprocesses, real files; errors are one line on stderr with exit status 2."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vae", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(Path.home())})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cli") / "digits-z2.safetensors"
    r = run_cli("train", "--dataset", "digits", "--arch", "mlp", "--latent-dim", "2", "--epochs", "3", "--threads", "1",
                "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout.strip().splitlines()[-1])


def test_train_json_last_line(trained):
    out, result = trained
    assert out.exists()
    assert {"seconds", "epochs", "test_neg_elbo", "recon_agreement", "checkpoint"} <= set(result)
    assert result["epochs"] == 3 and result["checkpoint"] == str(out)
    assert 0 < result["test_neg_elbo"] < 100  # 8x8 digits: a few tens of nats


def test_evaluate_json(trained):
    out, _ = trained
    r = run_cli("evaluate", str(out), "--iwae-k", "20", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("neg_elbo", "recon", "kl", "iwae_nll", "active_units", "probe_accuracy"):
        assert key in result
    assert result["iwae_nll"] <= result["neg_elbo"] + 1.0  # the k-sample bound is at least as tight (up to noise)
    assert 0 <= result["active_units"] <= 2
    assert 0.1 < result["probe_accuracy"] <= 1.0
    assert 0.1 < result["recon_agreement"] <= 1.0  # z2 on 8x8 digits: about half read back as the same digit


def test_info(trained):
    out, _ = trained
    r = run_cli("info", str(out))
    assert r.returncode == 0, r.stderr
    assert "digits" in r.stdout and "latent_dim: 2" in r.stdout and "3 epochs" in r.stdout


class _Hostile:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/vae-cli-pwned"),))


def _pickle_file(path: Path) -> Path:
    path.write_bytes(pickle.dumps(_Hostile()))
    return path


@pytest.mark.parametrize("args", [
    ["train", "--dataset", "no-such-set", "--out", "x.safetensors"],
    ["train", "--epochs", "0", "--out", "x.safetensors"],
    ["train", "--latent-dim", "100000", "--out", "x.safetensors"],
    ["train", "--epochs", "many", "--out", "x.safetensors"],
    ["train", "--out", "model.pt"],
    ["train", "--dataset", "mnist", "--root", "{tmp}", "--out", "x.safetensors"],
    ["evaluate"],
    ["evaluate", "{tmp}/missing.safetensors"],
    ["evaluate", "{pickle}"],
    ["info", "{pickle}"],
    ["info", "{truncated}"],
    ["frobnicate"],
], ids=lambda a: " ".join(a)[:40])
def test_errors_are_one_line_exit_2(args, tmp_path, trained, capsys, monkeypatch):
    """In-process through vae.__main__.main (the same code the subprocess runs; one real subprocess below)."""
    from vae.__main__ import main

    monkeypatch.chdir(tmp_path)
    Path("/tmp/vae-cli-pwned").unlink(missing_ok=True)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(trained[0].read_bytes()[:5000])
    subs = {"{tmp}": str(tmp_path), "{pickle}": str(_pickle_file(tmp_path / "evil.safetensors")), "{truncated}": str(truncated)}
    args = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert not Path("/tmp/vae-cli-pwned").exists()


def test_hostile_checkpoint_in_a_real_process(tmp_path):
    Path("/tmp/vae-cli-pwned").unlink(missing_ok=True)
    r = run_cli("evaluate", str(_pickle_file(tmp_path / "evil.safetensors")), "--json")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert not Path("/tmp/vae-cli-pwned").exists()
