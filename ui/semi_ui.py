"""Streamlit glue for the semi-supervised M2 (vae/semi.py): the Train page's choices, the accuracy curve, the class
picker and the per-class view of an M2 model that lets the plain-VAE pages work on it."""
from __future__ import annotations

import dataclasses

import plotly.graph_objects as go
import streamlit as st

from vae.semi import is_m2
from vae.semi_cli import SEMI_DEFAULTS

KINDS = {"vae": "VAE (the article's)", "m2": "semi-supervised (M2)"}
BUDGETS = [10, 100, 1000, None]  # None: every label
M2_CLASSIFIER = SEMI_DEFAULTS["classifier"]
M2_SETTINGS = dict(dataset="mnist5k", folder="", arch=SEMI_DEFAULTS["arch"], latent_dim=SEMI_DEFAULTS["latent_dim"],
                   hidden=512, likelihood="bernoulli", beta=1.0, warmup=0.0, epochs=SEMI_DEFAULTS["epochs"],
                   batch_size=SEMI_DEFAULTS["batch_size"], lr=SEMI_DEFAULTS["lr"], seed=0, labels=100)


def model_kind_ui() -> str:
    """The Train page's choice of model: "vae" or "m2"."""
    kind = st.segmented_control("Model", list(KINDS), format_func=KINDS.get, default="vae", key="tr_kind",
                                help="M2 (Kingma et al. 2014) learns a classifier from a few labels and every image, "
                                     "and generates a chosen class")
    return kind or "vae"


def label_budget_ui(default: int | None, key: str) -> int | None:
    """How many labelled images M2 sees (balanced per class), or None for all of them."""
    index = BUDGETS.index(default) if default in BUDGETS else 1
    return st.selectbox("Labels (balanced per class)", BUDGETS, index=index, key=key,
                        format_func=lambda b: "all" if b is None else f"{b:,}",
                        help="the rest of the training images are used without their labels")


def accuracy_figure(history: list[dict], height: int = 280) -> go.Figure:
    """M2's held-out accuracy per epoch (the classifier's argmax)."""
    rows = [h for h in history if h.get("test_accuracy") is not None]
    fig = go.Figure(go.Scatter(x=[h["epoch"] for h in rows], y=[100 * h["test_accuracy"] for h in rows],
                               mode="lines+markers", line=dict(color="#59a14f"), name="held-out accuracy"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), title=dict(text="held-out accuracy (%)", x=0.5,
                      font=dict(size=14)), xaxis_title="epoch", showlegend=False)
    return fig


# ---------------------------------------------------------------- M2 through the plain-VAE pages
CLASS_KEY = "m2_class"  # this tab's chosen class y for M2 models


def chosen_class(n_classes: int) -> int:
    y = st.session_state.get(CLASS_KEY, 0)
    return y if isinstance(y, int) and 0 <= y < n_classes else 0


@st.cache_resource(max_entries=32, show_spinner=False)
def _class_view(key: str, y: int, _ck):
    """The M2 checkpoint seen as the plain VAE of class y (vae.semi.M2.as_vae), cached and shared read-only."""
    return dataclasses.replace(_ck, model=_ck.model.as_vae(y), source=_ck)


def class_view(active):
    """For an M2 model, the ActiveModel of its plain VAE for this tab's class (its own cache key); else `active`."""
    if not is_m2(active.ck.model):
        return active
    y = chosen_class(active.ck.model.n_classes)
    return dataclasses.replace(active, key=f"{active.key}#y={y}", label=active.label, ck=_class_view(active.key, y, active.ck))


def m2_of(active):
    """The M2 checkpoint behind an ActiveModel (a class view or the model itself), or None for a plain VAE."""
    if active.ck.source is not None:
        return active.ck.source
    return active.ck if is_m2(active.ck.model) else None


def class_selector_ui(active, key: str = "m2_class_picker") -> int | None:
    """Explore's class picker for M2 models: y of p(x|y, z), while the z sliders move the style. None for a VAE."""
    ck = m2_of(active)
    if ck is None:
        return None
    names = ck.semi.get("classes") or [str(i) for i in range(ck.model.n_classes)]
    y = chosen_class(ck.model.n_classes)

    def picked() -> None:
        if st.session_state[key] is not None:  # a click on the chosen class deselects it: keep the class
            st.session_state[CLASS_KEY] = int(st.session_state[key])

    st.segmented_control("Class y (M2: the z sliders move the style)", list(range(ck.model.n_classes)),
                         format_func=lambda i: names[i] if i < len(names) else str(i), default=y, key=key,
                         on_change=picked)
    return y


def m2_note(active, where) -> None:
    """One line under the model picker for M2 models: the pages show one class's VAE."""
    ck = m2_of(active)
    if ck is not None:
        y = chosen_class(ck.model.n_classes)
        acc = ck.metrics.get("accuracy")
        where.caption(f"M2 (semi-supervised{f', held-out accuracy {100 * acc:.1f} %' if isinstance(acc, float) else ''}): "
                      f"the pages show its VAE for class y = {y} (choose y on Explore); its classifier, label budget "
                      "and style grid are on **Semi-supervised**.")
