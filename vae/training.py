"""fit(): Adam on the negative ELBO with callbacks, a cooperative stop flag and a NaN guard."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from vae.config import TrainConfig
from vae.data import Dataset
from vae.losses import elbo_terms
from vae.model import VAE, init_output_bias

StepCallback = Callable[[dict[str, float]], None]
EpochCallback = Callable[[dict[str, float], VAE], None]


class StopFlag:
    """Set from any thread (a Stop button, a signal handler); fit() checks it before every step."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


@dataclass
class FitResult:
    history: list[dict[str, float]]  # one row per epoch
    seconds: float
    epochs: int  # epochs completed
    status: str  # "finished" | "stopped" | "nan"
    message: str = ""
    final: dict[str, float] = field(default_factory=dict)  # held-out metrics at the end


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def kl_weight(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear KL warm-up: 0 -> beta over warmup_epochs, then beta."""
    if cfg.warmup_epochs <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, step / (cfg.warmup_epochs * steps_per_epoch))


@torch.inference_mode()
def evaluate(model: VAE, x: torch.Tensor, batch_size: int = 1000, seed: int = 0, objective=None) -> dict[str, Any]:
    """Held-out means per sample: recon, kl, neg_elbo (nats), and the KL of each latent dimension."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    sums = {"recon": 0.0, "kl": 0.0, "neg_elbo": 0.0}
    kl_dims = torch.zeros(model.cfg.latent_dim, device=device)
    for i in range(0, len(x), batch_size):
        xb = x[i: i + batch_size].to(device, non_blocking=True)
        if objective is None:
            t = elbo_terms(model, xb, 1.0, g)
        else:
            t = objective(model, xb, None, 1.0, lambda *shape: torch.randn((len(xb), *shape), generator=g, device=device))
        for k in sums:
            sums[k] += float(t[k].sum())
        if "kl_dims" in t:
            kl_dims += t["kl_dims"].sum(dim=0)
    model.train(was_training)
    n = max(1, len(x))
    out: dict[str, Any] = {k: v / n for k, v in sums.items()}
    out["kl_per_dim"] = (kl_dims / n).tolist()
    return out


def _make_optimizer(model: VAE, lr: float, device: torch.device) -> torch.optim.Optimizer:
    # Fused Adam measured ~1.24x faster than the for-loop one on this MLP on 2 CPU cores.
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def _make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    # One-cycle (Smith & Topin 2019): measured on mnist5k it reaches 115 nats in ~10 epochs where a constant
    # lr of 3e-3 needs ~18: the warm-up tolerates a high peak lr and the annealing settles the weights.
    if cfg.schedule == "onecycle" and total_steps > 1:
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.1)
    return None


def _all_finite(model: VAE) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def close_epoch(model: VAE, row: dict[str, Any], evaluate_fn: Callable[[VAE], dict[str, Any]] | None,
                history: list[dict[str, Any]], on_epoch: EpochCallback | None) -> None:
    """End an epoch's row: held-out metrics when due (evaluate_fn given), append it, call on_epoch in eval mode."""
    if evaluate_fn is not None:
        ev = evaluate_fn(model)
        row.update({"test_recon": ev["recon"], "test_kl": ev["kl"], "test_neg_elbo": ev["neg_elbo"]})
        row["kl_per_dim"] = ev["kl_per_dim"]
    row["train_neg_elbo"] = row["train_recon"] + row["train_kl"]
    history.append(row)
    if on_epoch is not None:
        model.eval()
        on_epoch(row, model)
        model.train()


def fit(
    model: VAE,
    data: Dataset,
    cfg: TrainConfig,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
    stop: StopFlag | Any | None = None,
    step_every: int = 1,
    *,
    objective=None,
) -> FitResult:
    """Train `model` in place on data.x_train; evaluate on data.x_test. Returns the history, never raises on NaN."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    model.to(device).train()
    g_data = torch.Generator().manual_seed(cfg.seed)  # shuffling, on the CPU
    g_eps = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # reparameterization noise
    x_train = data.x_train.to(device)
    n = len(x_train)
    if n == 0:
        raise ValueError("the training set is empty")
    bs = min(cfg.batch_size, n)
    steps_per_epoch = math.ceil(n / bs)
    if cfg.init_output_bias:
        init_output_bias(model, x_train.mean(dim=0))
    opt = _make_optimizer(model, cfg.lr, device)
    sched = _make_schedule(opt, cfg, cfg.epochs * steps_per_epoch)
    last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}

    history: list[dict[str, float]] = []
    status, message, step = "finished", "", 0
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(n, generator=g_data).to(device)
        sums = torch.zeros(3, device=device)  # recon, kl, loss summed over samples; read once per epoch
        for i in range(steps_per_epoch):
            if stop is not None and stop.is_set():
                status, message = "stopped", f"stopped by the user during epoch {epoch}"
                break
            xb = x_train[perm[i * bs: (i + 1) * bs]]
            beta = kl_weight(cfg, step, steps_per_epoch)
            if objective is None:
                t = elbo_terms(model, xb, beta, g_eps)
            else:  # stand-in for engine's hook: objective(model, xb, yb, beta, noise)
                t = objective(model, xb, None, beta, lambda *shape: torch.randn((len(xb), *shape), generator=g_eps, device=device))
            loss = t["loss"].mean()
            if not torch.isfinite(loss):
                status = "nan"
                message = (f"the loss became {loss.item()} at epoch {epoch}, step {i + 1}; training stopped and the last "
                           f"good weights were kept (try a lower learning rate or the Bernoulli likelihood)")
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            with torch.no_grad():
                sums += torch.stack([t["recon"].sum(), t["kl"].sum(), t["loss"].sum()]).detach()
            if on_step is not None and step % step_every == 0:
                on_step({"step": step, "epoch": epoch, "batch": i + 1, "steps_per_epoch": steps_per_epoch,
                         "loss": loss.item(), "recon": t["recon"].mean().item(), "kl": t["kl"].mean().item(),
                         "beta": beta, "seconds": time.perf_counter() - t0})
        if status == "nan" or not _all_finite(model):
            model.load_state_dict(last_good)  # weights may already be NaN from the step before: roll back
            status = "nan"
            message = message or f"the weights became non-finite during epoch {epoch}; the last good weights were kept"
            break
        last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if status == "stopped" and i == 0:
            break  # stopped before this epoch did anything: no row for it
        seen = min(n, (i + (status == "finished")) * bs) or 1
        row = {"epoch": epoch, "step": step, "seconds": time.perf_counter() - t0, "beta": beta,
               "train_recon": float(sums[0]) / seen, "train_kl": float(sums[1]) / seen, "train_loss": float(sums[2]) / seen}
        due = epoch % cfg.eval_every == 0 or epoch == cfg.epochs or status != "finished"
        close_epoch(model, row, (lambda m: evaluate(m, data.x_test, objective=objective)) if due else None, history, on_epoch)
        if status == "stopped":
            break
    model.eval()
    seconds = time.perf_counter() - t0
    final = evaluate(model, data.x_test, objective=objective) if len(data.x_test) else {}
    return FitResult(history, seconds, len(history), status, message, final)
