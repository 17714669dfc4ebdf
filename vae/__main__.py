"""Command line: python -m vae {train, evaluate, info}. Errors are one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

EXIT_USAGE = 2


class CliError(Exception):
    """Reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise CliError(f"{self.prog}: {message}")


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {s}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from vae import semi_cli
    from vae.config import TrainConfig

    d = TrainConfig()  # the CLI's defaults are the engine's
    p = _Parser(prog="python -m vae", description="Train, evaluate and inspect variational autoencoders.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a VAE and save a .safetensors checkpoint")
    t.add_argument("--dataset", default=None, help="mnist5k (default; with --resume, the checkpoint's), digits, shapes, mnist, fashion-mnist, kmnist, cifar10 or folder:PATH")
    t.add_argument("--arch", default=None, help="mlp (the article's) or conv")
    t.add_argument("--latent-dim", type=int, default=None, help="16; with --semi-supervised, M2's default")
    t.add_argument("--hidden", type=int, default=512)
    t.add_argument("--likelihood", default="bernoulli", choices=["bernoulli", "gaussian"])
    t.add_argument("--obs-std", type=float, default=0.1, help="std of the Gaussian likelihood")
    t.add_argument("--beta", type=float, default=d.beta)
    t.add_argument("--warmup", type=float, default=0.0, help="KL warm-up length in epochs")
    t.add_argument("--epochs", type=int, default=None, help=f"{d.epochs}; with --semi-supervised, M2's default")
    t.add_argument("--batch-size", type=int, default=None, help=f"{d.batch_size}; with --semi-supervised, M2's default")
    t.add_argument("--lr", type=float, default=None, help=f"peak learning rate ({d.lr}; with --semi-supervised, M2's default)")
    t.add_argument("--schedule", default=d.schedule, choices=["onecycle", "constant"], help="learning-rate schedule")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    t.add_argument("--device", default="auto")
    t.add_argument("--eval-every", type=int, default=1)
    t.add_argument("--iwae-k", type=int, default=0, help="also estimate the importance-weighted NLL with K samples at the end")
    t.add_argument("--root", default=None, help="folder of torchvision data sets")
    t.add_argument("--download", action="store_true", help="download torchvision data sets (needs the network)")
    t.add_argument("--image-size", type=int, default=28, help="side of images from folder:PATH")
    t.add_argument("--rgb", action="store_true", help="read folder:PATH images in colour")
    t.add_argument("--out", required=True, help="checkpoint path, ending in .safetensors")
    t.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    t.add_argument("--resume", default=None, metavar="CHECKPOINT", help="continue training its weights for --epochs more epochs")
    semi_cli.add_arguments(t)

    e = sub.add_parser("evaluate", help="held-out ELBO, IWAE NLL, active units, probe accuracy")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", default=None, help="defaults to the checkpoint's data set")
    e.add_argument("--iwae-k", type=_positive_int, default=1000)
    e.add_argument("--limit", type=int, default=0, help="evaluate on the first N held-out images only")
    e.add_argument("--root", default=None)
    e.add_argument("--json", action="store_true")

    i = sub.add_parser("info", help="config, data set and history of a checkpoint")
    i.add_argument("checkpoint")
    i.add_argument("--json", action="store_true")
    return p


class _Progress:
    """A one-line progress bar on a terminal's stderr; silent when stderr is not a terminal."""

    def __init__(self, total_steps: int, enabled: bool):
        self.total, self.enabled, self.t0, self.last = total_steps, enabled, time.perf_counter(), 0.0

    def __call__(self, m: dict[str, float]) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.1 and m["step"] < self.total):
            return
        self.last = now
        frac = min(1.0, m["step"] / self.total)
        eta = (now - self.t0) * (1 - frac) / max(frac, 1e-9)
        bar = "#" * int(30 * frac)
        sys.stderr.write(f"\r[{bar:<30}] epoch {m['epoch']} loss {m['loss']:8.2f} (recon {m['recon']:.1f}, kl {m['kl']:.1f}) eta {eta:4.0f}s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _summary(history: list[dict[str, Any]]) -> str:
    if not history:
        return "no epochs"
    last = history[-1]
    best = min((h["test_neg_elbo"] for h in history if h.get("test_neg_elbo") is not None), default=None)

    def nats(v: float | None) -> str:  # a checkpoint stores NaN as null
        return f"{v if v is not None else float('nan'):.2f}"

    return (f"{len(history)} epochs, {last.get('seconds') or 0:.1f} s, last held-out -ELBO "
            f"{nats(last.get('test_neg_elbo'))}, best {nats(best)}")


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    """`python -m vae train`: in one process, or on every rank of a torchrun job; --resume goes on from a checkpoint."""
    from vae import semi_cli

    semi_cli.fill_defaults(args)
    if args.semi_supervised:
        return semi_cli.train_command(args)
    from vae import distributed

    launch = distributed.launch_from_env()  # torchrun with WORLD_SIZE > 1: DDP; see docs/distributed.md
    distributed.quiet_other_ranks(launch)
    try:
        return _train(args, launch)
    except Exception as exc:  # noqa: BLE001 - one line per failing rank, through main()'s error reporting
        if not launch.distributed:
            raise
        raise distributed.rank_error(exc, launch) from None


def _train(args: argparse.Namespace, launch) -> dict[str, Any]:
    import torch

    from vae import distributed
    from vae.checkpoint import CheckpointError, dataset_fits, load_checkpoint, save_checkpoint
    from vae.config import ModelConfig, TrainConfig
    from vae.data import DataError, load_dataset
    from vae.model import build_model
    from vae.training import StopFlag, fit

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CheckpointError(f"--out must end in .safetensors, got {args.out!r}")
    ck = load_checkpoint(args.resume) if args.resume else None
    name = args.dataset or (ck.dataset if ck is not None else "mnist5k")
    history0 = list(ck.history) if ck is not None else []
    start_epoch, start_step, start_seconds = distributed.resume_point(history0)
    # a job on several processes, or a resumed one, notes its world and checkpoints after every epoch
    resumable = launch.distributed or ck is not None
    world_batch = args.batch_size * launch.world_size
    extra: dict[str, Any] = {"world_size": launch.world_size, "global_batch_size": world_batch} if resumable else {}
    if ck is not None:
        extra.update({"resumed_from": str(args.resume), "resumed_at_epoch": start_epoch})
    train_cfg = TrainConfig(dataset=name, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, beta=args.beta,
                            warmup_epochs=args.warmup, schedule=args.schedule, seed=args.seed, threads=args.threads,
                            device=args.device, eval_every=args.eval_every, init_output_bias=ck is None, extra=extra)
    if ck is not None and name.startswith("folder:"):  # the images at the size the checkpoint's model expects
        c, h, _ = ck.model_config.input_shape
        data = load_dataset(name, image_size=h, grey=c == 1)
    else:
        data = load_dataset(name, root=args.root, download=args.download, image_size=args.image_size, grey=not args.rgb)
    if ck is not None:
        if (reason := dataset_fits(ck, data)) is not None:
            raise DataError(reason)
        model = ck.model
    else:
        model_cfg = ModelConfig(arch=args.arch, input_shape=data.shape, latent_dim=args.latent_dim, hidden=args.hidden,
                                likelihood=args.likelihood, obs_std=args.obs_std)
        torch.manual_seed(args.seed)  # the same initial weights on every rank, and as a single-process run
        model = build_model(model_cfg)
    device = distributed.rank_device(args.device, launch)
    stop = StopFlag()
    with distributed.process_group(launch, device) as backend, _ctrl_c_sets(stop):
        if backend is not None:
            extra["backend"] = backend
        if ck is not None and launch.rank == 0 and ck.train_config is not None:
            distributed.note_changes(ck.train_config, train_cfg)
        steps = args.epochs * math.ceil(len(data.x_train) / min(world_batch, len(data.x_train)))
        bar = _Progress(steps, launch.rank == 0 and sys.stderr.isatty())  # this run's steps
        run_total = TrainConfig.from_dict({**train_cfg.to_dict(), "epochs": start_epoch + args.epochs})
        done_rows: list[dict[str, float]] = []

        def save(history: list[dict], metrics: dict[str, Any]) -> None:
            rows = history0 + [{**r, "seconds": r["seconds"] + start_seconds} for r in history]
            save_checkpoint(out, model, run_total, data.name, rows, metrics)

        def on_epoch(row: dict[str, float], _model) -> None:
            # after every epoch, so that a crashed job can be resumed from its last finished epoch
            if launch.rank == 0:
                save(done_rows + [row], {**_last_test(row), "status": "running", "epochs_done": row["epoch"]})
            done_rows.append(row)

        result = fit(model, data, train_cfg, on_step=lambda m: bar({**m, "step": m["step"] - start_step}),
                     on_epoch=on_epoch if resumable else None, stop=stop, device=device, start_epoch=start_epoch,
                     start_step=start_step)
        bar.close()
        metrics = dict(result.final)
        metrics.update({"status": result.status, "message": result.message, "seconds": result.seconds})
        if resumable:
            metrics["world_size"] = launch.world_size
        if args.iwae_k and result.status != "nan":
            metrics["iwae_nll"] = distributed.iwae_sharded(model, data.x_test, args.iwae_k, device)
            metrics["iwae_k"] = args.iwae_k
        if launch.rank == 0:
            save(result.history, metrics)
            if result.status != "finished":
                print(f"note: {result.message}", file=sys.stderr)
    summary = {
        "seconds": round(result.seconds, 3), "epochs": result.epochs, "status": result.status,
        "test_neg_elbo": result.final.get("neg_elbo"), "test_recon": result.final.get("recon"),
        "test_kl": result.final.get("kl"), "iwae_nll": metrics.get("iwae_nll"), "checkpoint": str(out),
    }
    if resumable:
        samples = len(data.x_train) * result.epochs  # every rank's share of each epoch, all ranks together
        summary.update({"world_size": launch.world_size, "global_batch_size": world_batch,
                        "samples_per_s": round(samples / result.seconds, 1) if result.seconds > 0 else None,
                        "resumed_from": str(args.resume) if args.resume else None,
                        "total_epochs": start_epoch + result.epochs})
    return summary


@contextlib.contextmanager
def _ctrl_c_sets(stop) -> Iterator[None]:
    """Ctrl-C sets the stop flag for the with-block (every rank stops after the same step, then saves what it has)."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _last_test(row: dict[str, Any]) -> dict[str, Any]:
    return {k[len("test_"):]: row[k] for k in ("test_recon", "test_kl", "test_neg_elbo") if k in row}


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from vae.checkpoint import dataset_fits, load_checkpoint
    from vae.data import load_dataset
    from vae.explore import encode
    from vae.metrics import active_units, iwae_estimate, linear_probe, mig
    from vae.semi import evaluate_m2, is_m2
    from vae.training import evaluate

    ck = load_checkpoint(args.checkpoint)
    name = args.dataset or ck.dataset
    data = load_dataset(name, root=args.root) if not name.startswith("folder:") else load_dataset(
        name, image_size=ck.model_config.input_shape[1], grey=ck.model_config.input_shape[0] == 1)
    if (reason := dataset_fits(ck, data)) is not None:
        raise CliError(reason)
    x_test = data.x_test[: args.limit] if args.limit > 0 else data.x_test
    m2 = is_m2(ck.model)  # M2: the bounds with y summed out, and its classifier's accuracy
    ev = evaluate_m2(ck.model, x_test, data.y_test[: len(x_test)] if data.y_test is not None else None) if m2 else evaluate(ck.model, x_test)
    mu, _ = encode(ck.model, x_test)
    n_active, _ = active_units(mu)
    result: dict[str, Any] = {"checkpoint": args.checkpoint, "dataset": name, "n": len(x_test),
                              "neg_elbo": ev["neg_elbo"], "recon": ev["recon"], "kl": ev["kl"],
                              "iwae_k": args.iwae_k, "iwae_nll": iwae_estimate(ck.model, x_test, k=args.iwae_k),
                              "active_units": n_active, "latent_dim": ck.model_config.latent_dim}
    if data.y_train is not None:
        y_test = data.y_test[: len(x_test)]
        probe = linear_probe(ck.model, data.x_train, data.y_train, x_test, y_test)
        result.update({"probe_accuracy": probe["latent"], "pixel_probe_accuracy": probe["pixels"]})
    else:
        result["probe_accuracy"] = None
    if m2:
        result.update({"model": "m2", "accuracy": ev.get("accuracy"), "labels": ck.semi.get("labels")})
    if data.factors_test is not None:
        result["mig"] = mig(mu, data.factors_test[: len(x_test)])["mig"]
    return result


def cmd_info(args: argparse.Namespace) -> dict[str, Any]:
    from vae.checkpoint import load_checkpoint
    from vae.model import count_parameters

    ck = load_checkpoint(args.checkpoint)
    return {"checkpoint": args.checkpoint, "dataset": ck.dataset, "model_config": ck.model_config.to_dict(),
            "train_config": ck.train_config.to_dict() if ck.train_config else None,
            "parameters": count_parameters(ck.model), "epochs": len(ck.history), "history": _summary(ck.history),
            "model": ck.kind, **({"semi": {k: v for k, v in ck.semi.items() if k != "labelled"}} if ck.semi else {}),
            "metrics": {k: v for k, v in ck.metrics.items() if not isinstance(v, list)}}


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "info": cmd_info}


def _print_human(result: dict[str, Any]) -> None:
    for k, v in result.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for kk, vv in v.items():
                print(f"  {kk}: {vv}")
        else:
            print(f"{k}: {round(v, 4) if isinstance(v, float) else v}")


def main(argv: Sequence[str] | None = None) -> int:
    from vae.checkpoint import CheckpointError
    from vae.config import ConfigError
    from vae.data import DataError
    from vae.semi import LabelError

    try:
        args = build_parser().parse_args(argv)
        result = COMMANDS[args.command](args)
    except (CliError, CheckpointError, ConfigError, DataError, LabelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - whatever a file makes of us, the user gets one line, not a traceback
        text = str(exc).strip().splitlines()
        print(f"error: {type(exc).__name__}: {text[0] if text else 'unexpected failure'}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(result, default=str))
    else:
        _print_human(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
