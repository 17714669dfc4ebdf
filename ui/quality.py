"""The reconstruction agreement of the app's models (vae.metrics.recon_agreement), measured once per model.

Shipped and CLI-trained checkpoints carry it in their metrics; any other model (trained in a tab, uploaded, an old
file) is measured in a background thread, so that no page waits for the pixel reader to be fitted.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import streamlit as st

from ui import state
from vae.metrics import data_agreement

_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vae-agreement")
_FUTURES: "OrderedDict[str, Future]" = OrderedDict()
_LOCK = threading.Lock()
EXPLAINED = ("the share of held-out images that a logistic regression on pixels (fitted on the training split) "
             "reads as the same class as their reconstruction: does the model give back the digit it was shown?")


def stored(active: state.ActiveModel) -> float | None:
    v = active.ck.metrics.get("recon_agreement")
    return float(v) if isinstance(v, (int, float)) and 0 <= v <= 1 else None


def _measure(active: state.ActiveModel) -> float | None:
    data = state.prefetch_dataset(active.ck.dataset).result()
    return data_agreement(active.model, data)


def agreement_future(active: state.ActiveModel) -> Future:
    """The model's agreement (a float, or None without labels), from its metrics or measured in the background."""
    value = stored(active)
    if value is not None:
        fut: Future = Future()
        fut.set_result(value)
        return fut
    with _LOCK:
        fut = _FUTURES.get(active.key)
        if fut is None or (fut.done() and fut.exception() is not None):
            fut = _POOL.submit(_measure, active)
            _FUTURES[active.key] = fut
        _FUTURES.move_to_end(active.key)
        while len(_FUTURES) > 32:
            _FUTURES.popitem(last=False)
        return fut


def agreement_text(active: state.ActiveModel) -> str | None:
    """'96.3 %', 'measuring…', or None (no labels / the data set cannot be read)."""
    fut = agreement_future(active)
    if not fut.done():
        return "measuring…"
    if fut.exception() is not None:
        return None
    v = fut.result()
    return None if v is None else f"{v:.1%}"


def wait_ui(active: state.ActiveModel) -> None:
    """While the agreement is being measured, rerun the page once it is known."""
    if not agreement_future(active).done():
        _poll(active.key)


@st.fragment(run_every=1.0)
def _poll(key: str) -> None:
    with _LOCK:
        fut = _FUTURES.get(key)
    if fut is None or fut.done():
        st.rerun()
