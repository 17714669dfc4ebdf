"""Interpolate: decode the path between two inputs in latent space; the article's 'smooth transitions' claim."""
import numpy as np
import streamlit as st

import vae
from ui import applications_ui as ui
from ui import safe, state, svgplot, workspace
from ui.widgets import show_svg
from vae import applications as apps

st.title("Interpolate")
top = st.container()
active = state.require_model()
data = ui.dataset_or_stop(active)

start, end, settings = st.columns([1, 1, 1], gap="large")
with start:
    st.subheader("A: start")
    a, a_label = workspace.endpoint_ui(active, data, "A", "interp_a", default_index=0)
    if a is not None:
        ui.image(a, f"A: {a_label}", target=84)
with end:
    st.subheader("B: end")
    b, b_label = workspace.endpoint_ui(active, data, "B", "interp_b", default_index=1)
    if b is not None:
        ui.image(b, f"B: {b_label}", target=84)
with settings:
    st.subheader("Path")
    steps = st.slider("Steps", 2, 30, 10, key="interp_steps", bind="query-params")
    method = st.segmented_control("Interpolation", ["lerp", "slerp"], default="lerp", required=True, key="interp_method", bind="query-params",
                                  help="lerp: linear; slerp: spherical")
    st.caption("**lerp** walks the straight line between the two codes. **slerp** follows the great circle, so "
               "the code's length stays like the prior's typical length instead of shrinking mid-way.")

if a is None or b is None:
    top.info(f"Choose both endpoints: {a_label if a is None else b_label}. A is the current image (sidebar); both can "
             "be a held-out image, an upload, or a point set from the latent map.")
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
    path = proj.transform(ip.z)
    # inline SVG: as a Plotly chart these 1,000 points held the browser ~400 ms on every open of the page
    show_svg(svgplot.scatter_chart(
        proj.transform(mu), None if data.y_test is None else data.y_test.numpy(), data.classes,
        overlays=[svgplot.Series(f"{method} path", path[:, 0], path[:, 1], color="currentColor", fmt=".2f",
                                 text=[a_label] + [""] * (steps - 2) + [b_label])],
        x_title="z₁" if proj.method == "identity" else "PC 1", y_title="z₂" if proj.method == "identity" else "PC 2",
        tooltips=False), as_image=True, test_id="interp-map")
    if proj.method == "pca":
        st.caption(f"The held-out codes projected on their first two principal components "
                   f"({proj.explained.sum():.0%} of the variance); the path is projected the same way.")
with change:
    # Inline SVG, not Plotly: two small charts that would hold the browser ~250 ms on every open of this page
    st.subheader("Change per step")
    show_svg(svgplot.bar_chart(np.arange(1, steps), ip.step_change, x_title="step", y_title="mean |Δ pixel|",
                              name="step", test_id="interp-change"))
    st.subheader("Length of the code")
    typical = float(np.sqrt(active.config.latent_dim))
    show_svg(svgplot.line_chart([svgplot.Series("|z|", np.arange(steps), ip.z_norm),
                                svgplot.Series("typical |z| under the prior", [0, steps - 1], [typical, typical],
                                               color=svgplot.PALETTE[1], dash=True, markers=False)],
                               x_title="step", y_title="|z|", y_from_zero=True, test_id="interp-norm"))
