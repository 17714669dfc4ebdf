"""Semi-supervised: M2 (Kingma et al. 2014) against the latent probe (M1) and pixels, on the same labels; the paper's
figures for reference; the style grid (the paper's analogies: one image's z decoded as every class)."""
from __future__ import annotations

import json

import plotly.graph_objects as go
import streamlit as st
import torch

import vae
from ui import safe, semi_ui, state
from ui.safe import md
from ui.widgets import show_image, table
from vae.data import grid
from vae.semi import PAPER_ERRORS, compare_on_labels, style_agreement, style_grid

BENCH_FILE = state.ROOT / "docs" / "semi_supervised.json"  # written by bench/semi_supervised.py --out
M1_PREFERRED = "mnist5k-mlp-z16"


def bench_rows() -> list[dict] | None:
    try:
        rows = json.loads(BENCH_FILE.read_text())["rows"]
        return rows if isinstance(rows, list) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def budget_figure(rows: list[dict]) -> go.Figure:
    """Held-out accuracy against labels: ours (mean ± spread over seeds) and the paper's M2 and M1+M2."""
    fig = go.Figure()
    colors = {"M2": "#59a14f", "M1 probe": "#4e79a7", "pixels": "#bab0ac"}
    for method, color in colors.items():
        pts = sorted((r["labels"], r["mean"], r["std"]) for r in rows if r["method"] == method)
        if pts:
            x, m, s = zip(*pts)
            fig.add_trace(go.Scatter(x=x, y=[100 * v for v in m], error_y=dict(array=[100 * v for v in s]),
                                     mode="lines+markers", name=f"{method} (mnist5k, ours)", line=dict(color=color)))
    for method, dash in (("M2", "dot"), ("M1+M2", "dash")):
        x = sorted(PAPER_ERRORS[method])
        fig.add_trace(go.Scatter(x=x, y=[100 - PAPER_ERRORS[method][n][0] for n in x], mode="lines+markers",
                                 name=f"{method} (paper, 50,000 unlabelled)", line=dict(color="#888", dash=dash)))
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=10, b=10), xaxis=dict(type="log", title="labelled images"),
                      yaxis_title="held-out accuracy (%)")
    return fig


def m1_for(dataset: str) -> state.ActiveModel | None:
    """A plain VAE trained on the same data set, for the latent probe: the shipped z16 model when it fits."""
    files = sorted(state.checkpoint_files(), key=lambda p: p.stem != M1_PREFERRED)
    for path in files:
        try:
            m = state.file_model(path)
        except vae.CheckpointError:
            continue
        if m.ck.kind == "vae" and m.ck.dataset == dataset:
            return m
    return None


@st.cache_resource(max_entries=8, show_spinner="Comparing on the same labels…")
def comparison(key: str, m1_key: str, _ck, _data, _m1) -> dict[str, float]:
    return compare_on_labels(_ck.model, _data, _ck.semi.get("labelled", []), _m1)


@st.cache_resource(max_entries=8, show_spinner="Reading the style grid…")
def conditional_agreement(key: str, _ck, _data) -> float | None:
    return style_agreement(_ck.model, _data)


st.title("Semi-supervised learning")
st.markdown("The article lists semi-supervised learning among a VAE's uses. **M2** (Kingma, Rezende, Mohamed & "
            "Welling 2014, §3.1.2) makes the label part of the model: a classifier $q(y|x)$, an encoder $q(z|x,y)$ "
            "and a decoder $p(x|y,z)$. Labelled images train all three with the bound $\\mathcal{L}(x,y)$ (eq. 6) "
            "and the classifier's cross-entropy weighted by α (eq. 9); unlabelled ones with $\\mathcal{U}(x)$, "
            "the bound with $y$ summed out under $q(y|x)$ plus its entropy (eq. 7). Here it is set against the "
            "simpler use: a logistic regression on a plain VAE's latent means (M1's probe), and on raw pixels.")

rows = bench_rows()
st.subheader("Accuracy against the label budget", anchor=False)
if rows:
    st.plotly_chart(budget_figure(rows), key="semi_budget")
    table([{"labels": r["labels"], "method": r["method"], "accuracy %": f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}",
            "M2 training (s)": f"{r['seconds']:.0f}" if r.get("seconds") else "–"} for r in rows])
    st.caption("`python bench/semi_supervised.py`: mnist5k (4,000 training / 1,000 held-out images), three seeds "
               "of the labelled subset, the same labels for the three methods; ± is the standard deviation. The "
               "paper's curves used 50,000 unlabelled MNIST images (table 1).")
else:
    st.caption("No bench figures yet: run `python bench/semi_supervised.py --out docs/semi_supervised.json`.")

active = state.current()
ck = semi_ui.m2_of(active) if active is not None else None
if ck is None:
    st.info("The current model is a plain VAE. Pick an M2 model in the sidebar (the shipped `mnist5k-m2-100`, or "
            "one trained on **Train** with *semi-supervised (M2)*) for its classifier and its style grid.",
            icon=":material/info:")
    st.stop()

try:
    data = state.dataset(ck.dataset)
except vae.DataError as exc:
    st.error(f"The data set {md(repr(ck.dataset))} of this model cannot be loaded: {safe.error(exc)}")
    st.stop()
if data.y_test is None or data.shape != tuple(ck.model_config.input_shape):
    st.error(f"The data set {md(repr(ck.dataset))} has no labels or images of another shape; this model cannot be scored on it.")
    st.stop()

st.subheader(f"This model: {md(active.label)}", anchor=False)
labelled = ck.semi.get("labelled") or []
m1 = m1_for(ck.dataset)
if labelled and len(labelled) <= len(data.x_train):
    res = comparison(active.key.split("#y=")[0], m1.key if m1 else "", ck, data, m1.model if m1 else None)
    c1, c2, c3 = st.columns(3)
    c1.metric("M2 classifier", f"{100 * res['m2']:.1f} %", help="argmax of q(y|x) on the held-out images")
    if "m1_probe" in res:
        c2.metric(f"latent probe ({md(m1.label)})", f"{100 * res['m1_probe']:.1f} %",
                  help="logistic regression on the plain VAE's latent means, the same labelled images")
    c3.metric("pixels", f"{100 * res['pixels']:.1f} %", help="logistic regression on raw pixels, the same labelled images")
    st.caption(f"{len(labelled):,} labelled images (balanced per class, seed {ck.semi.get('label_seed', 0)}), "
               f"{len(data.x_train) - len(labelled):,} used without labels; α = {ck.semi.get('alpha', 0):.3g}; "
               f"held-out −ELBO with y summed out: {ck.metrics.get('neg_elbo', float('nan')):.1f} nats.")

st.subheader("Style grid: one image's z, every class", anchor=False)
st.markdown("Each row keeps the style $z$ that $q(z|x,y)$ reads from the real image on the left (with $y$ the "
            "classifier's guess), then decodes it as every class: $p(x|y,z)$ for y = 0…9 (the paper's figure 1b).")
c1, c2 = st.columns(2)
n_rows = c1.slider("Rows", 1, 12, 6, key="semi_rows")
seed = c2.number_input("Seed (which held-out images)", 0, 10_000, 0, key="semi_seed")
pick = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(int(seed)))[:n_rows]
x = data.x_test[pick]
images, guesses = style_grid(ck.model, x)  # (R, K, C, H, W)
cells = torch.cat([x[:, None], images], dim=1)  # the real image, then the K classes
k = ck.model.n_classes
show_image(grid(cells.flatten(0, 1), nrow=k + 1), min(900, (k + 1) * 56), test_id="style-grid",
           caption="left: the real image; then y = " + ", ".join(str(i) for i in range(k))
           + " · classifier's guesses: " + " ".join(str(int(g)) for g in guesses))
if (agree := conditional_agreement(active.key.split("#y=")[0], ck, data)) is not None:
    st.caption(f"Over the first 200 held-out images' styles, a logistic regression on pixels (fitted on the training "
               f"split) reads **{agree:.0%}** of the grid's cells as the class they were decoded as (10 % if the "
               "decoder ignored y). A small z (4 dimensions by default) leaves the class to y; with 16 the decoder "
               "drew the class from z and ignored y (15 %).")
