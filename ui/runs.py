"""Every training run of this browser tab: its settings, curves, final metrics and (within a memory cap) weights.

A finished run becomes a model of the tab (ui.state's session models, so the sidebar and Compare can pick it). The
runs' weights together stay under MAX_WEIGHT_MB: past it, the oldest runs that are neither saved nor the current model
lose their weights (curves, settings and metrics stay, and the Train page says which were dropped). A saved run is
listed once in the model picker: as its file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from ui import state

KEY = "runs"  # st.session_state: {run id: Run}, oldest first
MAX_WEIGHT_MB = 64  # the tab's trained weights; an mnist5k MLP (hidden 512) is about 3.3 MB
MAX_RUNS = 50  # curves and settings of at most this many runs; the oldest are forgotten


@dataclass
class Run:
    id: int
    label: str
    created: float
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    status: str
    model_key: str | None = None  # the session model holding the weights; None once dropped
    saved_as: str | None = None  # the checkpoint file it was saved to
    weight_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def has_weights(self) -> bool:
        return self.model_key is not None or self.saved_as is not None

    def title(self) -> str:
        return f"#{self.id} {self.label} · {time.strftime('%H:%M', time.localtime(self.created))}"


def all_runs() -> dict[int, Run]:
    return st.session_state.setdefault(KEY, {})


def record(job, active: state.ActiveModel) -> Run:
    """Keep a finished job (and its model, already a session model) as a run of the tab; enforce the caps."""
    runs = all_runs()
    size = sum(p.numel() * p.element_size() for p in active.model.state_dict().values())
    run = Run(job.id, job.label, job.created, job.model_config.to_dict(), job.train_config.to_dict(),
              list(active.ck.history), {k: v for k, v in active.ck.metrics.items() if not isinstance(v, list)},
              active.ck.metrics.get("status", "finished"), active.key, None, size)
    runs[run.id] = run
    enforce_caps()
    return run


def weights_mb() -> float:
    return sum(r.weight_bytes for r in all_runs().values() if r.model_key is not None) / 2**20


def enforce_caps() -> list[Run]:
    """Drop the weights of the oldest unsaved, not current runs past MAX_WEIGHT_MB, and forget runs past MAX_RUNS."""
    runs = all_runs()
    dropped = []
    current = st.session_state.get("model_key")
    for run in list(runs.values()):  # oldest first
        if weights_mb() <= MAX_WEIGHT_MB:
            break
        if run.model_key is None or run.model_key == current:
            continue
        st.session_state.get("session_models", {}).pop(run.model_key, None)
        run.model_key = None
        run.notes.append(f"weights dropped: this tab keeps at most {MAX_WEIGHT_MB} MB of trained weights")
        dropped.append(run)
    while len(runs) > MAX_RUNS:
        oldest = next(iter(runs))
        run = runs.pop(oldest)
        if run.model_key is not None and run.model_key != current:
            st.session_state.get("session_models", {}).pop(run.model_key, None)
    return dropped


def mark_saved(job_id: int, path) -> None:
    """The run was saved to `path`: from now on the picker lists the file only (once), and the run points to it."""
    run = all_runs().get(job_id)
    if run is None:
        return
    if run.model_key is not None:
        st.session_state.get("session_models", {}).pop(run.model_key, None)
    run.model_key = None
    run.saved_as = str(path)


def model_key_of(run: Run) -> str | None:
    """The key under which ui.state's picker knows this run's model (a session model or its saved file)."""
    if run.saved_as is not None:
        return f"path:{run.saved_as}"
    return run.model_key


def resolve(key: str, strict: bool = False) -> state.ActiveModel | None:
    """A picker key (session model, upload, or path:FILE) as an ActiveModel; None if it is gone or unreadable (with
    strict, an unreadable file raises CheckpointError, which says what is wrong with it)."""
    from pathlib import Path

    choices = state._choices()
    if key not in choices:
        return None
    _, target = choices[key]
    if isinstance(target, state.ActiveModel):
        return target
    try:
        return state.file_model(Path(target))
    except OSError:
        return None
    except state.CheckpointError:
        if strict:
            raise
        return None


def model_choices() -> dict[str, str]:
    """Every model the tab can pick (its runs, uploads, shipped and saved files): key -> label."""
    return {k: label for k, (label, _) in state._choices().items()}
