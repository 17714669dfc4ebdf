"""`python -m vae train --semi-supervised`: M2 through the one training loop, and what evaluate reports for M2."""
from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path
from typing import Any

# The settings that reach the targets on mnist5k (see bench/semi_supervised.py and the README): used for
# every flag the command line leaves out when --semi-supervised is given.
# 15 epochs with the rotation/scale augmentation (SemiConfig.rotate/scale) and alpha = 20 (vae.semi.DEFAULT_ALPHA):
# ~90 CPU-seconds a run on one thread; README "Semi-supervised (M2)" has the figures over seeds (6 epochs with shifts
# alone and alpha = 10, the earlier defaults: 81.3/83.5/83.8 % at 100 labels).
SEMI_DEFAULTS = {"arch": "mlp", "latent_dim": 4, "epochs": 15, "lr": 1e-3, "batch_size": 100, "classifier": "conv"}
PLAIN_DEFAULTS = {"arch": "mlp", "latent_dim": 16}  # the rest come from TrainConfig()


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags left at None with the plain VAE's defaults, or M2's with --semi-supervised."""
    from vae.config import TrainConfig

    d = TrainConfig()
    plain = {**PLAIN_DEFAULTS, "epochs": d.epochs, "lr": d.lr, "batch_size": d.batch_size}
    for name, value in (SEMI_DEFAULTS if getattr(args, "semi_supervised", False) else plain).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def parse_labels(text: str) -> int | None:
    """--labels N or --labels all."""
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of labels or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"at least one label per class is needed, got {n}")
    return n


def add_arguments(t: argparse.ArgumentParser) -> None:
    """The train command's M2 flags."""
    g = t.add_argument_group("semi-supervised (M2, Kingma et al. 2014)")
    g.add_argument("--semi-supervised", action="store_true", help="train M2: classifier q(y|x), q(z|x,y), p(x|y,z)")
    g.add_argument("--labels", type=parse_labels, default=100, help="labelled images, balanced per class, or 'all' (default 100)")
    g.add_argument("--label-seed", type=int, default=0, help="seed of the labelled subset")
    g.add_argument("--alpha", type=float, default=None, help="weight of the classification term, eq. (9) (default: see README)")
    g.add_argument("--max-shift", type=int, default=2, help="augmentation: random shifts of up to this many pixels")
    g.add_argument("--rotate", type=float, default=30.0, help="augmentation: random rotations of up to this many degrees (0: none)")
    g.add_argument("--scale", type=float, default=0.2, help="augmentation: random scaling by up to 1 ± this (0: none)")
    g.add_argument("--classifier", default=None, choices=["arch", "conv"], help="q(y|x) like the encoder (arch) or convolutional")


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """Train M2 and save it; the result dict of cmd_train plus test_accuracy and labels."""
    import torch

    from vae.checkpoint import CheckpointError, save_checkpoint
    from vae.config import ModelConfig, TrainConfig
    from vae.data import load_dataset
    from vae.metrics import iwae_estimate
    from vae.semi import SemiConfig, build_m2, check_labels, classifier_for, train_m2
    from vae.training import StopFlag

    from vae.__main__ import _Progress

    if args.resume:
        raise CheckpointError("--resume is for plain VAE runs; train M2 again with more --epochs")
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CheckpointError(f"--out must end in .safetensors, got {args.out!r}")
    name = args.dataset or "mnist5k"
    data = load_dataset(name, root=args.root, download=args.download, image_size=args.image_size, grey=not args.rgb)
    n_classes = check_labels(data, args.labels)
    semi = SemiConfig(labels=args.labels, label_seed=args.label_seed, alpha=args.alpha, max_shift=args.max_shift,
                      rotate=args.rotate, scale=args.scale,
                      classifier=classifier_for(data.shape, args.classifier))
    train_cfg = TrainConfig(dataset=name, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, beta=args.beta,
                            warmup_epochs=args.warmup, schedule=args.schedule, seed=args.seed, threads=args.threads,
                            device=args.device, eval_every=args.eval_every, extra={"model": "m2"})
    model_cfg = ModelConfig(arch=args.arch, input_shape=data.shape, latent_dim=args.latent_dim, hidden=args.hidden,
                            likelihood=args.likelihood, obs_std=args.obs_std)
    torch.manual_seed(args.seed)
    model = build_m2(model_cfg, n_classes, semi.classifier)
    stop = StopFlag()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl-C: finish the step, save what we have
    try:
        steps = args.epochs * math.ceil(len(data.x_train) / min(args.batch_size, len(data.x_train)))
        bar = _Progress(steps, sys.stderr.isatty())
        result, semi_meta = train_m2(model, data, train_cfg, semi, on_step=bar, stop=stop)
        bar.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    metrics = dict(result.final)
    metrics.update({"status": result.status, "message": result.message, "seconds": result.seconds})
    if args.iwae_k and result.status != "nan":
        metrics["iwae_nll"] = iwae_estimate(model, data.x_test, k=args.iwae_k)
        metrics["iwae_k"] = args.iwae_k
    save_checkpoint(out, model.cpu(), train_cfg, data.name, result.history, metrics, semi=semi_meta)
    if result.status != "finished":
        print(f"note: {result.message}", file=sys.stderr)
    return {
        "seconds": round(result.seconds, 3), "epochs": result.epochs, "status": result.status,
        "test_neg_elbo": result.final.get("neg_elbo"), "test_recon": result.final.get("recon"),
        "test_kl": result.final.get("kl"), "iwae_nll": metrics.get("iwae_nll"), "checkpoint": str(out),
        "model": "m2", "alpha": semi_meta["alpha"], "labels": semi_meta["labels"],
        "test_accuracy": result.final.get("accuracy"),
    }
