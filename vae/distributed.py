"""Training on several processes, GPUs or machines: DistributedDataParallel under torchrun, and --resume.

    torchrun --nproc_per_node=N -m vae train ...      (python -m vae.__main__ dispatches here when WORLD_SIZE > 1)

Every rank holds the whole data set in memory and the same model (same seed, then DDP broadcasts rank 0's
weights). Each epoch draws one permutation from a generator seeded with the run's seed, exactly as fit() does;
global batch i is perm[i*B:(i+1)*B] with B = world_size * --batch-size, and rank r trains on the r-th contiguous
part of it (a seeded per-rank shard: DistributedSampler's job, done here so that the shards of a global batch are
the halves, thirds, ... of the batch a single process with batch B would see). The reparameterization noise of the
whole global batch is drawn on every rank from one generator, again as fit() draws it, and each rank uses its rows.
Each rank's loss is its sum / (B / world_size): DDP's gradient mean over ranks is then the gradient of the mean over
the global batch even when the last batch does not split evenly. So 2 ranks x batch 64 computes what 1 process x
batch 128 computes, up to the order of floating-point sums.

Training metrics, the stop flag and the NaN check are all-reduced every step (sums and counts), so every rank takes
the same decision at the same step and no rank waits forever in a collective; held-out metrics are evaluated on a
shard per rank and all-reduced. Rank 0 alone prints, and writes the checkpoint (atomically, after every epoch and
at the end) in the same format as a single-process run. The optimizer's moments are not part of that format:
a resumed run restarts Adam.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vae.config import TrainConfig
from vae.data import Dataset
from vae.losses import kl_per_dim, reconstruction_nll
from vae.model import VAE, init_output_bias
from vae.training import (EpochCallback, FitResult, StepCallback, StopFlag, _all_finite, _make_optimizer, _make_schedule,
                          close_epoch, evaluate, kl_weight)

PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=10)  # a rank that vanished without closing its sockets


class DistributedError(ValueError):  # ValueError: the CLI reports it as one line
    """A rank failed, or the process group could not be formed; the message says which rank, in one line."""


@dataclass(frozen=True)
class Launch:
    """Where this process sits in the job, from the variables torchrun sets."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launch_from_env(env: dict[str, str] | None = None) -> Launch:
    """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them; a plain process is rank 0 of 1."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise DistributedError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (are you launching with torchrun?)") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DistributedError(f"RANK={rank} does not fit WORLD_SIZE={world}")
    return Launch(rank, world, local)


def launched_by_torchrun() -> bool:
    """True in a worker of a multi-process torchrun job."""
    return launch_from_env().distributed


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _ElboGivenNoise(nn.Module):
    """elbo_terms with the reparameterization noise passed in, so that a rank uses its rows of the global batch's eps.

    vae.losses.elbo_terms draws eps inside VAE.forward; DDP needs the forward to go through one module, and the
    noise must be the slice of the noise a single process would draw for the whole batch. The terms are the same
    functions; tests/test_distributed.py checks them against elbo_terms with the same eps.
    """

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, eps: torch.Tensor, beta: float) -> dict[str, torch.Tensor]:
        mu, logvar = self.vae.encode(x)  # (b, L) each
        z = mu + torch.exp(0.5 * logvar) * eps  # VAE.reparameterize with eps given
        logits = self.vae.decode_logits(z)
        recon = reconstruction_nll(logits, x, self.vae.cfg.likelihood, self.vae.cfg.obs_std)
        kl_dims = kl_per_dim(mu, logvar)  # (b, L)
        kl = kl_dims.sum(dim=-1)
        return {"recon": recon, "kl": kl, "kl_dims": kl_dims, "neg_elbo": recon + kl, "loss": recon + beta * kl}


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks (float64); the identity in a single process."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if _rank_world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


@torch.inference_mode()
def shard_sums(model: VAE, x: torch.Tensor, lo: int, hi: int, device: torch.device, batch_size: int = 1000,
               seed: int = 0) -> torch.Tensor:
    """Sums of recon, kl, neg_elbo and each dimension's KL over rows lo:hi of x, with the noise evaluate() gives them.

    vae.training.evaluate draws eps for x in chunks of batch_size from a generator seeded with `seed`; every rank
    draws the same chunks (a few floats per image) and keeps its rows, so the sum over ranks is evaluate()'s figure.
    """
    was_training = model.training
    model.eval()
    elbo = _ElboGivenNoise(model)
    g = torch.Generator(device=device).manual_seed(seed)
    sums = torch.zeros(3 + model.cfg.latent_dim, dtype=torch.float64, device=device)
    for i in range(0, min(hi, len(x)), batch_size):
        eps = torch.randn((min(batch_size, len(x) - i), model.cfg.latent_dim), generator=g, device=device)  # (chunk, L)
        a, b = max(lo, i), min(hi, i + batch_size)
        if a >= b:
            continue
        t = elbo(x[a:b].to(device), eps[a - i: b - i], 1.0)
        sums[:3] += torch.stack([t["recon"].sum(), t["kl"].sum(), t["neg_elbo"].sum()]).double()
        sums[3:] += t["kl_dims"].sum(dim=0).double()
    model.train(was_training)
    return sums


def evaluate_sharded(model: VAE, x: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """vae.training.evaluate(model, x) computed on one shard of x per rank, sums all-reduced: the same figures."""
    rank, world = _rank_world()
    if world == 1:
        return evaluate(model, x)
    bounds = [0] + torch.tensor([len(s) for s in torch.arange(len(x)).tensor_split(world)]).cumsum(0).tolist()
    sums = shard_sums(model, x, bounds[rank], bounds[rank + 1], device)
    dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    n = max(1, len(x))
    s = (sums / n).tolist()
    return {"recon": s[0], "kl": s[1], "neg_elbo": s[2], "kl_per_dim": s[3:]}


def iwae_sharded(model: VAE, x: torch.Tensor, k: int, device: torch.device) -> float:
    """vae.metrics.iwae_estimate over this rank's shard, all-reduced to the mean over all of x."""
    from vae.metrics import iwae_estimate

    rank, world = _rank_world()
    shard = x.tensor_split(world)[rank]
    total, n = _all_sum([iwae_estimate(model, shard, k=k) * len(shard) if len(shard) else 0.0, len(shard)], device)
    return total / max(1.0, n)


def fit_distributed(
    model: VAE,
    data: Dataset,
    cfg: TrainConfig,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
    stop: StopFlag | Any | None = None,
    step_every: int = 1,
    device: torch.device | str = "cpu",
    start_epoch: int = 0,
    start_step: int = 0,
) -> FitResult:
    """fit() over every rank of the initialised process group (or alone, without one): --batch-size per rank.

    start_epoch / start_step continue a resumed run: epoch and step numbers, the KL warm-up and the data order go
    on from there. Callbacks are called on every rank with the same (reduced) figures; let rank 0 report them.
    """
    rank, world = _rank_world()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(device)
    model.to(device).train()
    g_data = torch.Generator().manual_seed(cfg.seed)  # shuffling, on the CPU, identical on every rank
    for _ in range(start_epoch):  # a resumed run continues the first run's sequence of permutations
        torch.randperm(len(data.x_train), generator=g_data)
    # reparameterization noise, identical on every rank; a resumed run does not replay the first run's noise
    g_eps = torch.Generator(device=device).manual_seed(cfg.seed + 1 + start_step)
    x_train = data.x_train.to(device)
    n = len(x_train)
    if n == 0:
        raise ValueError("the training set is empty")
    batch = min(cfg.batch_size * world, n)  # the global batch
    steps_per_epoch = math.ceil(n / batch)
    if cfg.init_output_bias:  # as fit() does; every rank holds all of x_train, so every rank sets the same bias
        init_output_bias(model, x_train.mean(dim=0))
    elbo = _ElboGivenNoise(model)
    if world > 1:
        ddp_kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
        elbo = nn.parallel.DistributedDataParallel(elbo, **ddp_kw)
    opt = _make_optimizer(model, cfg.lr, device)
    sched = _make_schedule(opt, cfg, cfg.epochs * steps_per_epoch)  # a resumed run is a new cycle over its epochs
    last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
    warmup_offset = start_epoch * steps_per_epoch  # warm-up is measured in epochs: continue where it was

    history: list[dict[str, float]] = []
    status, message, step, beta = "finished", "", 0, kl_weight(cfg, warmup_offset, steps_per_epoch)
    t0 = time.perf_counter()
    for e in range(1, cfg.epochs + 1):
        epoch = start_epoch + e
        perm = torch.randperm(n, generator=g_data).to(device)
        sums = [0.0, 0.0, 0.0, 0.0]  # recon, kl, loss, samples: over all ranks
        done = 0
        for i in range(steps_per_epoch):
            idx = perm[i * batch: (i + 1) * batch]  # the global batch, (B,)
            eps = torch.randn((len(idx), model.cfg.latent_dim), generator=g_eps, device=device)  # as fit() draws it
            shards = idx.tensor_split(world)  # contiguous, sizes differing by at most one (the last may be empty)
            mine, lo = shards[rank], sum(len(s) for s in shards[:rank])
            beta = kl_weight(cfg, warmup_offset + step, steps_per_epoch)
            t = elbo(x_train[mine], eps[lo: lo + len(mine)], beta)
            stopping = stop is not None and stop.is_set()
            # one small all-reduce per step: the metrics, and a shared decision to stop or to give up on NaN
            with torch.no_grad():
                stats = torch.cat([torch.stack([t["recon"].sum(), t["kl"].sum(), t["loss"].sum()]).double(),
                                   torch.tensor([len(mine), float(stopping)], dtype=torch.float64, device=device)])
            if world > 1:
                dist.all_reduce(stats, op=dist.ReduceOp.SUM)
            recon_s, kl_s, loss_s, count, stops = stats.tolist()  # the step's one host synchronisation
            if stops:
                status, message = "stopped", f"stopped by the user during epoch {epoch}"
                break
            if not math.isfinite(loss_s):
                status = "nan"
                message = (f"the loss became {loss_s / count} at epoch {epoch}, step {i + 1}; training stopped and the last "
                           f"good weights were kept (try a lower learning rate or the Bernoulli likelihood)")
                break
            # sum / (B / world): DDP averages the ranks' gradients, giving the gradient of the global batch's mean
            loss = t["loss"].sum() / (len(idx) / world)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            done += 1
            sums = [a + b for a, b in zip(sums, (recon_s, kl_s, loss_s, count))]
            if on_step is not None and step % step_every == 0:
                on_step({"step": start_step + step, "epoch": epoch, "batch": i + 1, "steps_per_epoch": steps_per_epoch,
                         "loss": loss_s / count, "recon": recon_s / count, "kl": kl_s / count, "beta": beta,
                         "seconds": time.perf_counter() - t0})
        if status == "nan" or not _all_finite(model):  # weights are identical on every rank: the same verdict
            model.load_state_dict(last_good)
            status = "nan"
            message = message or f"the weights became non-finite during epoch {epoch}; the last good weights were kept"
            break
        last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if status == "stopped" and done == 0:
            break
        seen = sums[3] or 1.0
        row = {"epoch": epoch, "step": start_step + step, "seconds": time.perf_counter() - t0, "beta": beta,
               "train_recon": sums[0] / seen, "train_kl": sums[1] / seen, "train_loss": sums[2] / seen}
        due = e % cfg.eval_every == 0 or e == cfg.epochs or status != "finished"
        close_epoch(model, row, (lambda m: evaluate_sharded(m, data.x_test, device)) if due else None, history, on_epoch)
        if status == "stopped":
            break
    model.eval()
    seconds = time.perf_counter() - t0
    final = evaluate_sharded(model, data.x_test, device) if len(data.x_test) else {}
    return FitResult(history, seconds, len(history), status, message, final)


# ---------------------------------------------------------------- the CLI path: python -m vae train under torchrun


def pick_device(name: str, launch: Launch) -> torch.device:
    """One device per rank: cuda:LOCAL_RANK when CUDA is asked for (or 'auto' finds it), else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DistributedError(f"--device {name} asks for CUDA, but PyTorch sees no GPU here")
    want = torch.device(name if name != "auto" else "cuda")
    if want.index is not None and launch.distributed and want.index != launch.local_rank:
        raise DistributedError(f"under torchrun each rank uses cuda:LOCAL_RANK; pass --device cuda or auto, not {name}")
    index = launch.local_rank if launch.distributed else (want.index or 0)
    if index >= torch.cuda.device_count():
        raise DistributedError(f"local rank {launch.local_rank} needs GPU {index}, but only {torch.cuda.device_count()} are "
                               f"visible: use --nproc_per_node <= the number of GPUs")
    return torch.device("cuda", index)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return re.sub(r"^\[[^\]]*\.(?:cc|cpp|h):\d+\] ", "", line)  # gloo's "[/path/pair.cc:545] " source prefix


def _tagged(exc: Exception, launch: Launch) -> Exception:
    """The same error, its message prefixed with the rank; anything the CLI does not report becomes DistributedError."""
    msg = f"rank {launch.rank} of {launch.world_size}: {_one_line(exc)}"
    if isinstance(exc, (ValueError, OSError)):  # the CLI prints these as one line
        try:
            new = type(exc)(msg)
            if str(new) == msg:
                return new
        except Exception:  # noqa: BLE001 - a constructor with another signature
            pass
    return DistributedError(msg)


def _resumed_config(args: argparse.Namespace, ck) -> tuple[str, tuple[int, int, int] | None]:
    """The data set to train on and, for folder: data, the image shape the checkpoint expects."""
    name = args.dataset or (ck.dataset if ck is not None else "mnist5k")
    return name, (ck.model_config.input_shape if ck is not None else None)


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """`python -m vae train` under torchrun (any world size) or with --resume: the result dict of cmd_train."""
    from vae.__main__ import _Progress  # noqa: PLC0415 - the CLI's progress bar, for rank 0
    from vae.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from vae.config import ModelConfig
    from vae.data import DataError, load_dataset
    from vae.model import build_model

    launch = launch_from_env()
    if launch.rank != 0:  # main() prints the returned result: keep rank 0's stdout only
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    joined, previous_sigint = False, signal.SIG_DFL
    handled = False
    try:
        out = Path(args.out)
        if out.suffix != ".safetensors":
            raise CheckpointError(f"--out must end in .safetensors, got {args.out!r}")
        ck = load_checkpoint(args.resume) if args.resume else None
        name, shape = _resumed_config(args, ck)
        history0 = list(ck.history) if ck is not None else []
        start_epoch = int(history0[-1].get("epoch", len(history0))) if history0 else 0
        start_step = int(history0[-1].get("step", 0) or 0) if history0 else 0
        start_seconds = float(history0[-1].get("seconds", 0.0) or 0.0) if history0 else 0.0
        extra: dict[str, Any] = {"world_size": launch.world_size, "global_batch_size": args.batch_size * launch.world_size}
        if ck is not None:
            extra.update({"resumed_from": str(args.resume), "resumed_at_epoch": start_epoch})
        train_cfg = TrainConfig(dataset=name, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, beta=args.beta,
                                warmup_epochs=args.warmup, schedule=args.schedule, seed=args.seed, threads=args.threads,
                                device=args.device, eval_every=args.eval_every, init_output_bias=ck is None, extra=extra)
        if shape is not None and name.startswith("folder:"):
            data = load_dataset(name, image_size=shape[1], grey=shape[0] == 1)
        else:
            data = load_dataset(name, root=args.root, download=args.download, image_size=args.image_size, grey=not args.rgb)
        if ck is not None:
            if data.shape != ck.model_config.input_shape:
                raise DataError(f"data set {name!r} has images of shape {data.shape}; the checkpoint's model expects "
                                f"{ck.model_config.input_shape} (it was trained on {ck.dataset!r})")
            model = ck.model
        else:
            model_cfg = ModelConfig(arch=args.arch, input_shape=data.shape, latent_dim=args.latent_dim, hidden=args.hidden,
                                    likelihood=args.likelihood, obs_std=args.obs_std)
            torch.manual_seed(args.seed)  # the same initial weights on every rank, and as a single-process run
            model = build_model(model_cfg)
        device = pick_device(args.device, launch)
        if launch.distributed:
            backend = "nccl" if device.type == "cuda" else "gloo"
            kw = {"device_id": device} if device.type == "cuda" else {}
            dist.init_process_group(backend, rank=launch.rank, world_size=launch.world_size, timeout=PROCESS_GROUP_TIMEOUT, **kw)
            joined = True
            extra["backend"] = backend

        stop = StopFlag()
        if threading.current_thread() is threading.main_thread():  # Ctrl-C: every rank stops after the same step
            previous_sigint, handled = signal.signal(signal.SIGINT, lambda *_: stop.set()), True
        if ck is not None and launch.rank == 0 and ck.train_config is not None:
            _note_changes(ck.train_config, train_cfg)
        steps = args.epochs * math.ceil(len(data.x_train) / min(args.batch_size * launch.world_size, len(data.x_train)))
        bar = _Progress(steps, launch.rank == 0 and sys.stderr.isatty())  # this run's steps
        run_total = TrainConfig.from_dict({**train_cfg.to_dict(), "epochs": start_epoch + args.epochs})

        def on_step(m: dict[str, float]) -> None:
            bar({**m, "step": m["step"] - start_step})

        def save(history: list[dict], metrics: dict[str, Any]) -> None:
            rows = history0 + [{**r, "seconds": r["seconds"] + start_seconds} for r in history]
            save_checkpoint(out, model, run_total, data.name, rows, metrics)

        def on_epoch(row: dict[str, float], _model: VAE) -> None:
            # after every epoch, so that a crashed job can be resumed from its last finished epoch
            if launch.rank == 0:
                save(done_rows + [row], {**_last_test(row), "status": "running", "epochs_done": row["epoch"]})
            done_rows.append(row)

        done_rows: list[dict[str, float]] = []
        result = fit_distributed(model, data, train_cfg, on_step=on_step, on_epoch=on_epoch, stop=stop, device=device,
                                 start_epoch=start_epoch, start_step=start_step)
        bar.close()
        metrics = dict(result.final)
        metrics.update({"status": result.status, "message": result.message, "seconds": result.seconds,
                        "world_size": launch.world_size})
        if args.iwae_k and result.status != "nan":
            metrics["iwae_nll"] = iwae_sharded(model, data.x_test, args.iwae_k, device)
            metrics["iwae_k"] = args.iwae_k
        if launch.rank == 0:
            save(result.history, metrics)
            if result.status != "finished":
                print(f"note: {result.message}", file=sys.stderr)
        samples = len(data.x_train) * result.epochs  # every rank's share of each epoch, all ranks together
        return {
            "seconds": round(result.seconds, 3), "epochs": result.epochs, "status": result.status,
            "test_neg_elbo": result.final.get("neg_elbo"), "test_recon": result.final.get("recon"),
            "test_kl": result.final.get("kl"), "iwae_nll": metrics.get("iwae_nll"), "checkpoint": str(out),
            "world_size": launch.world_size, "global_batch_size": args.batch_size * launch.world_size,
            "samples_per_s": round(samples / result.seconds, 1) if result.seconds > 0 else None,
            "resumed_from": str(args.resume) if args.resume else None, "total_epochs": start_epoch + result.epochs,
        }
    except Exception as exc:  # noqa: BLE001 - one line per failing rank, through main()'s error reporting
        if not launch.distributed:
            raise
        raise _tagged(exc, launch) from None
    finally:
        if handled:
            signal.signal(signal.SIGINT, previous_sigint if previous_sigint is not None else signal.SIG_DFL)
        # Tear the group down only on a clean exit: after a peer vanished, gloo's teardown over the dead connection
        # can abort the process (SIGABRT, seen once in CI) before the one-line error is printed. Exiting frees it.
        if joined and sys.exc_info()[0] is None:
            dist.destroy_process_group()


def _last_test(row: dict[str, Any]) -> dict[str, Any]:
    return {k[len("test_"):]: row[k] for k in ("test_recon", "test_kl", "test_neg_elbo") if k in row}


def _note_changes(before: TrainConfig, now: TrainConfig) -> None:
    """Tell the user which hyper-parameters differ from the checkpoint's run (the command line wins)."""
    for key in ("lr", "schedule", "beta", "warmup_epochs", "batch_size", "seed"):
        a, b = getattr(before, key), getattr(now, key)
        if a != b:
            print(f"note: resuming with {key} {b} (the checkpoint was trained with {a})", file=sys.stderr)
