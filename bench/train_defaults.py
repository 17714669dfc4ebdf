"""Train's default settings: the reconstruction agreement after each epoch and the seconds it took to get there.

    python bench/train_defaults.py [--threads 1] [--epochs N] [--latent-dim L] [--lr LR]

The settings are read from pages/train.py's DEFAULT_SETTINGS (parsed, not imported: the page needs a server), so the
figures are those of the app's defaults. Per epoch: training seconds so far (the app's clock: per-epoch held-out
evaluation included, this script's own agreement measurement excluded), held-out -ELBO and the agreement; then the
first epoch at or above 90 %. Prints the load average, since the figures move with it.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vae import ModelConfig, TrainConfig, build_model, load_dataset  # noqa: E402
from vae.metrics import pixel_classifier, recon_agreement  # noqa: E402
from vae.training import fit  # noqa: E402


def page_defaults() -> dict:
    """DEFAULT_SETTINGS of pages/train.py, evaluated from its source (only literals and vae.TrainConfig().lr)."""
    tree = ast.parse((ROOT / "pages" / "train.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DEFAULT_SETTINGS":
            out = {}
            for kw in node.value.keywords:
                try:
                    out[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    out[kw.arg] = TrainConfig().lr  # the only non-literal the page has used
            return out
    raise SystemExit("DEFAULT_SETTINGS not found in pages/train.py")


def main() -> None:
    d = page_defaults()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=d["epochs"])
    ap.add_argument("--latent-dim", type=int, default=d["latent_dim"])
    ap.add_argument("--lr", type=float, default=d["lr"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(d["dataset"])
    reader = pixel_classifier(data.x_train, data.y_train)
    print(f"defaults: {d}")
    print(f"pixel reader: {reader.score(data.x_test, data.y_test):.1%} of held-out digits read right; "
          f"threads {args.threads}; load average at start {os.getloadavg()}")
    torch.manual_seed(d["seed"])
    model = build_model(ModelConfig(arch=d["arch"], input_shape=data.shape, latent_dim=args.latent_dim,
                                    hidden=d["hidden"], likelihood=d["likelihood"]))
    cfg = TrainConfig(dataset=d["dataset"], epochs=args.epochs, batch_size=d["batch_size"], lr=args.lr, beta=d["beta"],
                      warmup_epochs=d["warmup"], seed=d["seed"], threads=args.threads)
    spent = [0.0]  # seconds of agreement measurement, taken off fit's clock
    rows = []

    def on_epoch(row, m):
        t = time.perf_counter()
        rows.append((row["epoch"], row["seconds"] - spent[0], row.get("test_neg_elbo"), recon_agreement(m, data.x_test, reader)))
        spent[0] += time.perf_counter() - t

    fit(model, data, cfg, on_epoch=on_epoch)
    print("epoch  train s  held-out -ELBO  agreement")
    for epoch, s, neg_elbo, agree in rows:
        print(f"{epoch:5d}  {s:7.1f}  {neg_elbo:14.1f}  {agree:9.1%}")
    first = next(((e, s, a) for e, s, a in ((r[0], r[1], r[3]) for r in rows) if a >= 0.9), None)
    print("first epoch with agreement >= 90 %: " + (f"epoch {first[0]} after {first[1]:.1f} s" if first else "none"))
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
