"""Interpolate: decode the path between two inputs in latent space; the article's 'smooth transitions' claim."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

import vae
from ui import applications_ui as ui
from ui import plots, safe, state
from vae import applications as apps

st.title("Interpolate")
top = st.container()
active = state.require_model()
data = ui.dataset_or_stop(active)

start, end, settings = st.columns([1, 1, 1], gap="large")
with start:
    st.subheader("Start")
    a, a_label = ui.image_picker(active, data, "interp_a", default_index=0, allow_map=0)
with end:
    st.subheader("End")
    b, b_label = ui.image_picker(active, data, "interp_b", default_index=1, allow_map=1)
with settings:
    st.subheader("Path")
    steps = st.slider("Steps", 2, 30, 10, key="interp_steps")
    method = st.segmented_control("Interpolation", ["lerp", "slerp"], default="lerp", required=True, key="interp_method",
                                  help="lerp: linear; slerp: spherical")
    st.caption("**lerp** walks the straight line between the two codes. **slerp** follows the great circle, so "
               "the code's length stays like the prior's typical length instead of shrinking mid-way.")

if a is None or b is None:
    top.info("Choose both endpoints: a held-out image, an upload, or points picked on the latent map.")
    st.stop()
try:
    ip = apps.interpolate_endpoints(active.model, a, b, steps, method)
except ValueError as exc:
    st.error(f"Cannot interpolate: {safe.error(exc)}")
    st.stop()

biggest = float(ip.step_change.max())
top.markdown(
    "The article says the latent space is **continuous**, so interpolating between two codes gives "
    "**smooth transitions** (§6, advantages).")
with top:
    ui.claim(f"Along this {method} path from {a_label} to {b_label}, consecutive frames differ by "
             f"{ip.step_change.mean():.3f} per pixel on average and by {biggest:.3f} at most, while the two ends "
             f"differ by {ip.endpoint_change:.3f}: the largest single step carries "
             f"{biggest / max(ip.step_change.sum(), 1e-12):.0%} of the total change over {steps - 1} steps"
             + (f" (an even spread would be {1 / (steps - 1):.0%})." if steps > 2 else "."))

st.subheader("Decoded path")
scale = max(1, min(ui.scale_for(data.shape, 168), 1250 // (steps * (data.shape[2] + 1))))  # fits the page width
strip = apps.upscale(vae.data.grid(ip.images, steps), scale)
st.image(strip, caption=f"{a_label} → {b_label}, {steps} steps, {method}")
png, gif = st.columns([1, 1])
png.download_button("Download PNG strip", apps.png_bytes(strip), file_name=f"interpolation-{method}-{steps}.png",
                    mime="image/png", icon=":material/download:", on_click="ignore", key="interp_png")
gif.download_button("Download animated GIF", apps.gif_bytes(ip.images, scale=ui.scale_for(data.shape, 168)),
                    file_name=f"interpolation-{method}-{steps}.gif", mime="image/gif", icon=":material/gif_box:",
                    on_click="ignore", key="interp_gif")

on_map, change = st.columns([3, 2], gap="large")
with on_map:
    st.subheader("The path on the latent map")
    mu, _ = state.latents(active)
    proj = state.projection(active)
    fig = plots.latent_map_figure(proj.transform(mu), None if data.y_test is None else data.y_test.numpy(), data.classes,
                                  height=460, axis_titles=("z₁", "z₂") if proj.method == "identity" else ("PC 1", "PC 2"))
    path = proj.transform(ip.z)
    fig.add_trace(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers", name=f"{method} path",
                             line=dict(color="black", width=2), marker=dict(size=7, color="black")))
    fig.add_trace(go.Scatter(x=path[[0, -1], 0], y=path[[0, -1], 1], mode="markers+text", name="ends",
                             text=[a_label, b_label], textposition="top center", textfont=dict(size=14, color="black"),
                             marker=dict(size=13, color="white", line=dict(color="black", width=2))))
    st.plotly_chart(fig, key="interp_map")
    if proj.method == "pca":
        st.caption(f"The held-out codes projected on their first two principal components "
                   f"({proj.explained.sum():.0%} of the variance); the path is projected the same way.")
with change:
    st.subheader("Change per step")
    st.bar_chart({"pixel change": ip.step_change}, x_label="step", y_label="mean |Δ pixel|", height=220)
    st.subheader("Length of the code")
    typical = float(np.sqrt(active.config.latent_dim))
    st.line_chart({"|z|": ip.z_norm, "typical |z| under the prior": np.full(steps, typical)},
                  x_label="step", height=220)
