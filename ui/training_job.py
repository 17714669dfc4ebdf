"""A training run in a background thread, owned by one browser session (kept in its st.session_state).

vae.fit runs in the thread with a StopFlag; after every step and epoch the callbacks copy what the Train page shows
(progress, history, reconstructions of fixed held-out images, per-dimension KL, the held-out latent map) into a
snapshot under a lock. The page polls `progress()` from a fragment; a test calls `join()`. No streamlit here.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

import vae
from vae.checkpoint import Checkpoint
from vae.data import grid
from vae.semi import SemiConfig, build_m2, check_labels, is_m2, reconstruct_m2, train_m2

MAP_POINTS = 2000  # the live map shows at most this many held-out points: enough to watch clusters form
# While a run trains, the pages' threads share the CPU and the GIL with it. Its thread runs at this niceness (Linux
# threads have their own), so the server's threads, at 0, get the CPU first; and Python hands the GIL over every
# 1 ms instead of 5, so a page waits less for a training thread that holds it. Measured with a page-like Plotly
# figure beside a default run, load average ~17: 2.0-2.7x its time alone at nice 0, 1.5x at nice 5 with 1 ms; nice
# 10 left a default run 230 s on that machine (0 would be 10-20 s), hence 5.
TRAIN_NICE = 5
TRAIN_SWITCH_INTERVAL = 0.001
_running = 0
_running_lock = threading.Lock()
_switch_interval = sys.getswitchinterval()  # what to restore when the last run ends (read when the first starts)
_ids = itertools.count(1)


@dataclass
class Progress:
    """What the page draws, copied out of the training thread."""

    status: str = "starting"  # starting | running | finished | stopped | nan | error
    message: str = ""
    epoch: int = 0  # epochs completed
    epochs: int = 0
    step: int = 0
    total_steps: int = 0
    seconds: float = 0.0
    eta: float | None = None  # seconds left, once a few steps have run
    history: list[dict[str, Any]] = field(default_factory=list)
    preview: np.ndarray | None = None  # uint8 grid: originals on top, reconstructions below
    kl_per_dim: list[float] | None = None
    map_xy: np.ndarray | None = None  # (N, 2) held-out latent means, PCA'd when L > 2
    map_axes: tuple[str, str] = ("z₁", "z₂")

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "nan", "error")

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


def preview_indices(data: vae.Dataset, n: int = 10) -> list[int]:
    """Fixed held-out images to reconstruct live: one per class where labels exist, else the first n."""
    if data.y_test is not None:
        y = data.y_test.numpy()
        firsts = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)[:n]]
        if len(firsts) >= min(n, 4):
            return firsts
    return list(range(min(n, len(data.x_test))))


def lower_thread_priority(nice: int) -> bool:
    """Give the calling thread a lower CPU priority (Linux: setpriority on its thread id); False where unsupported."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        return True
    except (AttributeError, OSError):
        return False


def _training(delta: int) -> None:
    """Count the runs going in this process; the GIL's switch interval is short while there is one."""
    global _running, _switch_interval
    with _running_lock:
        if _running == 0 and delta > 0:
            _switch_interval = sys.getswitchinterval()
        _running += delta
        sys.setswitchinterval(TRAIN_SWITCH_INTERVAL if _running else _switch_interval)


class TrainingJob:
    """One run of vae.fit on a fresh model, in a daemon thread."""

    def __init__(self, model_config: vae.ModelConfig, train_config: vae.TrainConfig, data: vae.Dataset, label: str = "",
                 semi: SemiConfig | None = None):
        self.id = next(_ids)
        self.semi = semi  # given: a semi-supervised M2 (vae.semi) instead of the plain VAE
        self.semi_meta: dict[str, Any] = {}
        self.model_config = model_config
        self.train_config = train_config
        self.data = data  # shared, read-only: fit only reads x_train / x_test
        self.label = label or (f"{data.name}-{model_config.arch}-z{model_config.latent_dim}"
                               + ("" if semi is None else f"-m2-{'all' if semi.labels is None else semi.labels}"))
        self.stop_flag = vae.StopFlag()
        self.model: vae.VAE | None = None
        self.result: vae.FitResult | None = None
        self.adopted = False  # the page has made the result this session's current model
        self.created = time.time()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        steps = -(-len(data.x_train) // min(train_config.batch_size, max(1, len(data.x_train))))
        self._progress = Progress(epochs=train_config.epochs, total_steps=steps * train_config.epochs)
        self._preview_idx = preview_indices(data)
        self._x_preview = data.x_test[self._preview_idx]
        self._x_map = data.x_test[:MAP_POINTS]
        self.map_labels = None if data.y_test is None else data.y_test[:MAP_POINTS].numpy()
        self.classes = data.classes

    # ------------------------------------------------------------------ control
    def start(self) -> "TrainingJob":
        self._thread = threading.Thread(target=self._run, name=f"vae-train-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask fit to stop before its next step; the weights so far are kept."""
        self.stop_flag.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; True if it has."""
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def progress(self) -> Progress:
        with self._lock:
            p = self._progress
            return replace(p, history=list(p.history))

    def checkpoint(self) -> Checkpoint | None:
        """The trained model with its story, once the run has ended with at least one epoch; else None."""
        if self.running or self.model is None or self.result is None or not self.result.history:
            return None
        metrics = {k: v for k, v in self.result.final.items()}
        metrics.update({"status": self.result.status, "message": self.result.message, "seconds": self.result.seconds})
        return Checkpoint(self.model, self.model_config, self.train_config, self.data.name, self.result.history, metrics,
                          kind="m2" if self.semi is not None else "vae", semi=self.semi_meta)

    # ------------------------------------------------------------------ the thread
    def _update(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self._progress, k, v)

    def _on_step(self, m: dict[str, float]) -> None:
        done, total = m["step"], self._progress.total_steps
        eta = m["seconds"] / done * (total - done) if done >= 3 else None
        self._update(status="running", step=int(done), seconds=m["seconds"], eta=eta)

    def _snapshot(self, model: vae.VAE, row: dict[str, Any] | None) -> None:
        rec = (reconstruct_m2 if is_m2(model) else vae.reconstruct)(model, self._x_preview)
        preview = grid(torch.cat([self._x_preview.cpu(), rec.x_hat]), nrow=len(self._x_preview))
        mu, _ = vae.encode(model, self._x_map)
        proj = vae.fit_projection(mu)
        axes = ("z₁", "z₂") if proj.method == "identity" else ("PC 1", "PC 2")
        with self._lock:
            p = self._progress
            if row is not None:
                p.history.append(dict(row))
                p.epoch = int(row["epoch"])
                p.kl_per_dim = row.get("kl_per_dim", p.kl_per_dim)
            p.preview = preview
            p.map_xy = proj.transform(mu).astype(np.float32)
            p.map_axes = axes

    def _on_epoch(self, row: dict[str, Any], model: vae.VAE) -> None:
        self._snapshot(model, row)

    def _run(self) -> None:
        t0 = time.perf_counter()
        lower_thread_priority(TRAIN_NICE)
        _training(+1)
        try:
            # The init draws from torch's global RNG: seed it here so a run is repeatable. Shared models never
            # sample from the global RNG (they use local generators), so this cannot disturb another session.
            torch.manual_seed(self.train_config.seed)
            if self.semi is None:
                self.model = vae.build_model(self.model_config).eval()
            else:
                self.model = build_m2(self.model_config, check_labels(self.data, self.semi.labels), self.semi.classifier).eval()
            self._snapshot(self.model, None)  # epoch 0: what an untrained decoder makes of the inputs
            self._update(status="running")
            if self.semi is None:
                result = vae.fit(self.model, self.data, self.train_config, on_step=self._on_step,
                                 on_epoch=self._on_epoch, stop=self.stop_flag)
            else:  # the same fit(), with J^alpha (eq. 9) as its objective; rows add the held-out accuracy
                result, self.semi_meta = train_m2(self.model, self.data, self.train_config, self.semi,
                                                  on_step=self._on_step, on_epoch=self._on_epoch, stop=self.stop_flag)
            self.model.cpu().eval()
            self.result = result
            message = result.message
            if result.status == "stopped":
                message = f"stopped after {result.epochs} epoch(s); the weights so far are kept"
            if result.status == "nan" and not result.history:
                message += " No epoch finished, so there is no model to keep."
            self._update(status=result.status, message=message, seconds=result.seconds, eta=0.0,
                         kl_per_dim=result.final.get("kl_per_dim", self._progress.kl_per_dim))
        except Exception as exc:  # noqa: BLE001 - whatever went wrong is shown on the page, the app keeps working
            self._update(status="error", message=f"training failed: {type(exc).__name__}: {exc}",
                         seconds=time.perf_counter() - t0, eta=None)
        finally:
            _training(-1)
            self._done.set()
