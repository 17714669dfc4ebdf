"""Semi-supervised accuracy on mnist5k: labels x {M2, M1 probe, pixels}, mean and spread over seeds of the labelled
subset, and M2's training seconds. The three methods see the same labelled images for a seed.

    python bench/semi_supervised.py [--labels 100 1000] [--seeds 0 1 2] [--epochs N] [--out docs/semi_supervised.json]
    python bench/semi_supervised.py --quick   # 100 labels, one seed, 3 epochs: a smoke run

M1 probe: logistic regression on the latent means of a plain VAE trained on all 4,000 training images without
labels (the shipped checkpoints/mnist5k-mlp-z16.safetensors, or --m1 PATH). Pixels: the same on raw pixels.
M2: `python -m vae train --dataset mnist5k --semi-supervised --labels N` with its defaults (vae/semi_cli.py).
One thread per run; the load average is printed with every figure, since the machine may be shared.
"""
from __future__ import annotations

import argparse
import json
import dataclasses
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vae.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from vae.config import ModelConfig, TrainConfig  # noqa: E402
from vae.data import load_dataset  # noqa: E402
from vae.semi import SemiConfig, build_m2, choose_labelled, compare_on_labels, train_m2  # noqa: E402
from vae.semi_cli import SEMI_DEFAULTS  # noqa: E402


def run_m2(data, labels: int, seed: int, epochs: int, alpha: float | None):
    """One M2 run with the CLI's defaults; returns the model, its semi metadata, fit's result and the config."""
    d = SEMI_DEFAULTS
    torch.manual_seed(seed)
    model = build_m2(ModelConfig(arch=d["arch"], input_shape=data.shape, latent_dim=d["latent_dim"]), 10, d["classifier"])
    # the CLI's SemiConfig: its classifier kind goes into the checkpoint's metadata
    cfg = TrainConfig(dataset="mnist5k", epochs=epochs, batch_size=d["batch_size"], lr=d["lr"], seed=seed, threads=1,
                      device="cpu", eval_every=epochs)
    result, meta = train_m2(model, data, cfg, SemiConfig(labels=labels, label_seed=seed, alpha=alpha,
                                                         classifier=d["classifier"]))
    return model, meta, result, cfg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=SEMI_DEFAULTS["epochs"])
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--m1", default=str(ROOT / "checkpoints" / "mnist5k-mlp-z16.safetensors"))
    p.add_argument("--quick", action="store_true", help="100 labels, seed 0, 3 epochs")
    p.add_argument("--save", default=None, help="save the first run's M2 (first --labels, first seed) here")
    p.add_argument("--out", default=None, help="also write the table as JSON (the Semi-supervised page reads docs/semi_supervised.json)")
    args = p.parse_args()
    if args.quick:
        args.labels, args.seeds, args.epochs = [100], [0], 3
    torch.set_num_threads(1)
    data = load_dataset("mnist5k")
    m1 = load_checkpoint(args.m1).model
    print(f"mnist5k: {len(data.x_train)} training / {len(data.x_test)} held-out images; M2 {args.epochs} epochs, "
          f"{SEMI_DEFAULTS}; M1 = {Path(args.m1).name}", flush=True)
    rows = []
    for n in args.labels:
        acc: dict[str, list[float]] = {"M2": [], "M1 probe": [], "pixels": []}
        secs: list[float] = []
        cpus: list[float] = []
        for seed in args.seeds:
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            model, meta, result, cfg = run_m2(data, n, seed, args.epochs, args.alpha)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)  # training and its per-epoch evaluation
            seconds = result.seconds
            if args.save and (n, seed) == (args.labels[0], args.seeds[0]):  # the first run: the shipped checkpoint
                metrics = {**result.final, "status": result.status, "seconds": result.seconds}
                save_checkpoint(args.save, model, cfg, "mnist5k", result.history, metrics, semi=meta)
            assert np.array_equal(meta["labelled"], choose_labelled(data.y_train, n, seed))
            res = compare_on_labels(model, data, meta["labelled"], m1)
            acc["M2"].append(res["m2"])
            acc["M1 probe"].append(res["m1_probe"])
            acc["pixels"].append(res["pixels"])
            secs.append(seconds)
            print(f"  labels {n:5d} seed {seed}: M2 {100 * res['m2']:.1f} %  M1 probe {100 * res['m1_probe']:.1f} %  "
                  f"pixels {100 * res['pixels']:.1f} %  M2 trained {seconds:.0f} s ({cpus[-1]:.0f} CPU-s)  load {os.getloadavg()[0]:.1f}",
                  flush=True)
        for method, values in acc.items():
            rows.append({"labels": n, "method": method, "mean": float(np.mean(values)), "std": float(np.std(values)),
                         "seeds": list(args.seeds), "values": values,
                         "seconds": round(float(np.mean(secs)), 1) if method == "M2" else None,
                         "cpu_seconds": round(float(np.mean(cpus)), 1) if method == "M2" else None})
    print()
    print(f"{'labels':>7} | {'M2 acc %':>13} | {'M1 probe %':>13} | {'pixels %':>13} | M2 train s | M2 error %")
    for n in args.labels:
        r = {row["method"]: row for row in rows if row["labels"] == n}
        cell = lambda m: f"{100 * r[m]['mean']:5.1f} ± {100 * r[m]['std']:4.1f}"  # noqa: E731
        print(f"{n:7d} | {cell('M2'):>13} | {cell('M1 probe'):>13} | {cell('pixels'):>13} | "
              f"{r['M2']['seconds']:10.0f} | {100 - 100 * r['M2']['mean']:.1f}")
    print(f"load average {os.getloadavg()}; {len(args.seeds)} seed(s); one thread")
    if args.out:
        Path(args.out).write_text(json.dumps({"epochs": args.epochs, "settings": SEMI_DEFAULTS,
                                              "augmentation": {k: v for k, v in dataclasses.asdict(SemiConfig()).items()
                                                               if k in ("max_shift", "rotate", "scale")},
                                              "rows": rows,
                                              "loadavg": os.getloadavg(), "date": time.strftime("%Y-%m-%d")}, indent=1))


if __name__ == "__main__":
    main()
