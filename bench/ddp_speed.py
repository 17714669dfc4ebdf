"""1 process versus 2 DistributedDataParallel processes (gloo, CPU) on this machine: wall seconds and samples/s.

    python bench/ddp_speed.py [--dataset mnist5k] [--epochs 3] [--repeats 3]

Every configuration trains the article's MLP (hidden 512, latent 16) for the same epochs on the same data with the
same global batch, one torch thread per process:
  1 proc x 1 thread      python -m vae train --batch-size 128 (fit())
  1 proc x 2 threads     the same with --threads 2: the fair baseline for "use both cores"
  2 procs x 1 thread     torchrun --nproc_per_node=2, --batch-size 64 per rank (global batch 128)
  2 procs, batch 2x128   torchrun, --batch-size 128 per rank (global 256: half the all-reduces, a different run)
"train s" is the run's own clock (training + per-epoch held-out evaluation); "wall s" adds process start-up,
torch import, data loading and the rendezvous. samples/s = training images x epochs / train s. Figures are the
median over --repeats runs (min in brackets); other work on the machine makes them noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SIZES = {"mnist5k": 4000, "digits": 1500, "shapes": 5000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(nproc: int, threads: int, batch: int, args: argparse.Namespace, out: Path) -> tuple[float, dict]:
    train = ["train", "--dataset", args.dataset, "--hidden", "512", "--latent-dim", "16", "--epochs", str(args.epochs),
             "--batch-size", str(batch), "--threads", str(threads), "--device", "cpu", "--out", str(out), "--json"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "vae", *train]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "vae", *train]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist5k", choices=sorted(TRAIN_SIZES))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    configs = [("1 proc x 1 thread", 1, 1, 128), ("1 proc x 2 threads", 1, 2, 128),
               ("2 procs x 1 thread", 2, 1, 64), ("2 procs, batch 2x128", 2, 1, 128)]
    samples = TRAIN_SIZES[args.dataset] * args.epochs
    print(f"{args.dataset}, {args.epochs} epochs ({samples} training images), MLP 512/16, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    results: dict[str, list[tuple[float, float, float]]] = {c[0]: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):  # interleaved, so drifting load from other work hits every configuration alike
            for name, nproc, threads, batch in configs:
                wall, res = _run(nproc, threads, batch, args, Path(tmp) / f"r{r}.safetensors")
                results[name].append((wall, res["seconds"], res["test_neg_elbo"]))
    base = statistics.median(s for _, s, _ in results[configs[0][0]])
    print(f"{'configuration':<22} {'wall s':>15} {'train s':>15} {'samples/s':>10} {'speed-up':>8} {'-ELBO':>8}")
    for name, *_ in configs:
        walls, secs, elbos = zip(*results[name])
        med = statistics.median(secs)
        print(f"{name:<22} {statistics.median(walls):6.1f} [{min(walls):5.1f}] {med:6.2f} [{min(secs):5.2f}] "
              f"{samples / med:10.0f} {base / med:7.2f}x {statistics.median(elbos):8.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
