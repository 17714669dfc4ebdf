"""A page for bench/map_latency.py and the browser tests: N points (up to 100,000) encoded by a shipped model, PCA,
drawn by ui/scatter or by Plotly's WebGL scatter, so both can be timed on the same data.

    streamlit run tests/e2e/scatter_demo.py   then   /?n=70000&kind=scatter   (kind=plotly for Plotly)

N > 5,000 is mnist5k's 5,000 images repeated with seeded Gaussian noise (sigma 0.1, clipped to [0, 1]). The "Re-encode"
button encodes again from scratch (no cache), so a click times encode + PCA + payload + first paint.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

import vae
from ui.plots import PALETTE
from ui.scatter import atlas_png, make_layer, scatter_map

ROOT = Path(__file__).resolve().parents[2]
torch.set_num_threads(1)


@st.cache_resource(show_spinner=False)
def model() -> vae.VAE:
    return vae.load_checkpoint(ROOT / "checkpoints" / "mnist5k-mlp-z16.safetensors").model


@st.cache_resource(max_entries=2, show_spinner=False)
def images(n: int) -> tuple[torch.Tensor, np.ndarray]:
    """n images: mnist5k's, then noisy copies of them (seeded)."""
    d = vae.load_dataset("mnist5k")
    x0, y0 = torch.cat([d.x_train, d.x_test]), torch.cat([d.y_train, d.y_test]).numpy()
    reps = -(-n // len(x0))
    g = torch.Generator().manual_seed(0)
    xs = [x0] + [(x0 + 0.1 * torch.randn(x0.shape, generator=g)).clamp(0, 1) for _ in range(reps - 1)]
    return torch.cat(xs)[:n].contiguous(), np.tile(y0, reps)[:n]


@st.cache_resource(max_entries=2, show_spinner=False)
def atlas(n: int) -> dict:
    return atlas_png(images(n)[0])


n = int(st.query_params.get("n", 5000))
n = max(10, min(n, 100_000))
kind = st.query_params.get("kind", "scatter")
x, labels = images(n)
st.session_state.setdefault("seed", 0)
if st.button("Re-encode", key="reencode"):
    st.session_state["seed"] += 1
seed = st.session_state["seed"]

t0 = time.perf_counter()
mu, _ = vae.encode(model(), x)
t1 = time.perf_counter()
proj = vae.fit_projection(mu)
xy = proj.transform(mu.numpy()).astype(np.float32)
t2 = time.perf_counter()
if kind == "plotly":
    fig = go.Figure()
    for c in np.unique(labels):
        m = labels == c
        fig.add_trace(go.Scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", name=str(c), customdata=np.nonzero(m)[0],
                                   marker=dict(size=4, color=PALETTE[int(c) % 10], opacity=0.75)))
    fig.update_layout(height=560, title=f"seed {seed}", dragmode="pan", margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key="plotly_map", config={"scrollZoom": True})
else:
    layer = make_layer(f"demo|{n}|{seed}", xy, labels, [str(i) for i in range(10)], None, "", ("PC 1", "PC 2"))
    scatter_map("demo_scatter", layer, atlas_id=f"atlas:demo:{n}", atlas=lambda: atlas(n), height=560)
t3 = time.perf_counter()
st.caption(f"timing: encode {t1 - t0:.3f} s · PCA {t2 - t1:.3f} s · payload and render call {t3 - t2:.3f} s")
