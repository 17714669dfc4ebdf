"""Reconstruct: upload or draw an image; see every preprocessing step, the reconstruction, the posterior
N(mu, sigma^2) per dimension, the scores, the image's place on the latent map with its 2-sigma ellipse, and
samples z = mu + sigma * eps decoded side by side (the reparameterization made visible)."""
from __future__ import annotations

import streamlit as st

import vae
from ui import safe, state
from ui.plots import add_highlight, latent_map_figure, posterior_figure
from ui.safe import md
from ui.widgets import image_row, show_image
from vae.explore import posterior_ellipse
from vae.reconstruction import ImageAnalysis, analyse_image, uses_digit_style

IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "webp", "gif"]
N_SAMPLES = 8


def canvas_ui() -> bytes | None:
    """A drawing canvas (streamlit-drawable-canvas); PNG bytes of the drawing, or None while it is empty."""
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception as exc:  # noqa: BLE001 - the component registers itself at import; outside a server it cannot
        st.warning(f"The drawing canvas is not available here ({type(exc).__name__}); upload an image instead.")
        return None
    c1, c2 = st.columns([1, 1])
    width = c2.slider("Pen width", 6, 40, 20, key="rec_pen")
    c2.caption("Draw one digit with the mouse, big and centred like a handwritten one. The bin icon clears it.")
    with c1:
        result = st_canvas(stroke_width=width, stroke_color="#000000", background_color="#ffffff", height=280,
                           width=280, drawing_mode="freedraw", key="rec_canvas", return_image_data=True)
    if not (result.json_data or {}).get("objects"):
        return None
    return result.image_bytes


def input_ui() -> tuple[bytes | None, str]:
    """The image to reconstruct, from an upload or the canvas, and a name for it."""
    source = st.segmented_control("Image source", ["Upload", "Draw"], default="Upload", key="rec_source")
    if source == "Draw":
        return canvas_ui(), "drawing"
    up = st.file_uploader("An image (PNG, JPEG, BMP, WebP, or a GIF's first frame)", type=IMAGE_TYPES, key="rec_upload")
    if up is None:
        return None, ""
    return up.getvalue(), up.name


def analysis_ui(active: state.ActiveModel, data: bytes, name: str, digit_style: bool) -> ImageAnalysis | None:
    """Analyse the image and render everything; a bad image gives one clear message and None."""
    try:
        a = analyse_image(active.model, data, digit_style, n_samples=N_SAMPLES,
                          seed=st.session_state.get("rec_seed", 0))
    except vae.DataError as exc:
        st.error(f"{md(name) if name else 'The image'}: {safe.error(exc)}", icon=":material/broken_image:")
        return None
    st.subheader("1 · From your image to the model's input", anchor=False)
    image_row([img for _, img in a.pre.steps], [cap for cap, _ in a.pre.steps], width=112, test_id="rec-steps")

    st.subheader("2 · Encode, decode, score", anchor=False)
    c1, c2, c3 = st.columns([1, 1, 2])
    with c1:
        show_image(a.pre.x, 180, caption="the model's input x", test_id="rec-input")
    with c2:
        show_image(a.x_hat, 180, caption="reconstruction (decoded μ)", test_id="rec-output")
    with c3:
        m1, m2, m3 = st.columns(3)
        m1.metric("reconstruction", f"{a.recon:.1f}", help="−log p(x | z = μ) in nats")
        m2.metric("KL", f"{a.kl:.1f}", help="KL(q(z|x) ‖ N(0, I)) in nats: how far the posterior is from the prior")
        m3.metric("−ELBO", f"{a.neg_elbo:.1f}", help="reconstruction + KL, nats: lower is a more typical image")
        typical = active.ck.metrics.get("neg_elbo")
        if isinstance(typical, (int, float)):
            st.caption(f"For comparison, the held-out images average {typical:.1f} nats.")
    st.plotly_chart(posterior_figure(a.mu.numpy(), a.sigma.numpy()), key="rec_posterior")

    st.subheader("3 · The reparameterization: z = μ + σ ⊙ ε", anchor=False)
    st.caption(f"{N_SAMPLES} draws of ε ~ N(0, I), each z decoded. Where σ is large the samples vary; where it is small "
               "the encoder is sure.")
    c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
    with c1:
        image_row(list(a.x_samples), [f"ε #{i + 1}" for i in range(len(a.x_samples))], width=84, test_id="rec-samples")
    c2.button("New draws", icon=":material/casino:", key="rec_redraw",
              on_click=lambda: st.session_state.update(rec_seed=st.session_state.get("rec_seed", 0) + 1))
    return a


def map_ui(active: state.ActiveModel, a: ImageAnalysis) -> None:
    """The held-out map with this image's posterior mean and its 2σ ellipse projected into the map's plane."""
    st.subheader("4 · Where it lands on the latent map", anchor=False)
    try:
        data = state.dataset_for(active)
    except vae.DataError as exc:
        st.info(f"The model's data set is not available, so there is no map to place the image on ({safe.error(exc)}).")
        return
    mu, _ = state.latents(active)
    proj = state.projection(active)
    xy = proj.transform(mu.numpy())
    labels = None if data.y_test is None else data.y_test.numpy()
    axes = ("z₁", "z₂") if proj.method == "identity" else ("PC 1", "PC 2")
    fig = latent_map_figure(xy, labels, data.classes, height=480, axis_titles=axes)
    add_highlight(fig, proj.transform(a.mu.numpy()[None])[0], posterior_ellipse(a.mu, a.sigma, proj), name="your image")
    st.plotly_chart(fig, key="rec_map")
    st.caption("The red ring is μ; the dotted line is the 2σ ellipse of q(z|x)"
               + (" projected onto the map's PCA plane." if proj.method == "pca" else "."))


active = state.require_model()
st.title("Reconstruct an image")
st.markdown("Give the encoder an image of your own. It is converted the way the training images were, encoded to a "
            "posterior $q(z|x) = \\mathcal{N}(\\mu, \\sigma^2)$, and decoded back.")
cfg = active.config
data, name = input_ui()
digit_style = st.checkbox("MNIST-style preprocessing (grey, white on black, cropped, fitted into 20×20, centred by mass)",
                          value=uses_digit_style(cfg.input_shape, active.ck.dataset), disabled=cfg.input_shape[0] != 1,
                          key=f"rec_digit_style:{active.key}")
if data is None:
    st.info("Upload an image or draw one to see its reconstruction.", icon=":material/upload:")
    st.stop()
analysis = analysis_ui(active, data, name, digit_style)
if analysis is not None:
    map_ui(active, analysis)
