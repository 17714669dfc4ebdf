"""Denoise and complete: corrupt an input, let the VAE restore it; the article's 'denoising and completion' use."""
import math

import streamlit as st

from ui import applications_ui as ui
from ui import safe, state
from ui.safe import md
from vae import applications as apps

KINDS = {"gaussian": "Gaussian noise", "salt_pepper": "salt & pepper", "box": "box mask", "half": "side mask",
         "pixels": "pixel mask"}
STRENGTH = {"gaussian": ("Noise std", 0.3), "salt_pepper": ("Share of pixels flipped to black or white", 0.2),
            "box": ("Share of the area hidden", 0.25), "half": ("Share hidden from that side", 0.5),
            "pixels": ("Share of pixels hidden", 0.5)}

st.title("Denoise and complete")
top = st.container()
active = state.require_model()
data = ui.dataset_or_stop(active)

pick, damage = st.columns([1, 2], gap="large")
with pick:
    st.subheader("Input")
    x, label = ui.image_picker(active, data, "denoise", default_index=0, preview=False)
with damage:
    st.subheader("Corruption")
    kind = st.segmented_control("Kind", list(KINDS), format_func=KINDS.get, default="gaussian", required=True,
                                key="denoise_kind")
    text, default = STRENGTH[kind]
    a, b, c = st.columns(3)
    strength = a.slider(text, 0.0, 1.0, default, 0.05, key=f"denoise_strength_{kind}")
    seed = b.number_input("Seed", 0, 2**31 - 1, 0, key="denoise_seed")
    side, iterations = "bottom", 1
    if kind == "half":
        side = c.selectbox("Side", apps.SIDES, key="denoise_side")
    if kind in apps.MASKS:
        iterations = st.slider("Completion iterations", 1, 50, 10, key="denoise_iterations",
                               help="Each iteration reconstructs the current image and puts the reconstruction into the "
                                    "hidden pixels only; the known pixels are never changed.")

if x is None:
    top.info(f"Choose an input: {md(label)}.")
    st.stop()
try:
    r = apps.restore(active.model, x, kind, float(strength), int(seed), side, iterations)
except ValueError as exc:
    st.error(f"Cannot restore this input: {safe.error(exc)}")
    st.stop()

f = r.figures


def db(v: float) -> str:
    return "∞ dB" if math.isinf(v) else f"{v:.1f} dB"


top.markdown("The article lists **denoising and completion** (§7) among the uses of a VAE: an input off the "
             "data's manifold is encoded, and the decoder answers with the nearest thing it knows how to draw.")
with top:
    if r.completion is None:
        helped = f["mse_reconstruction"] < f["mse_corrupted"]
        ui.claim(f"Here one pass through the VAE {'lowers' if helped else 'does not lower'} the error: MSE "
                 f"{f['mse_corrupted']:.4f} ({db(f['psnr_corrupted'])}) for the noisy input, {f['mse_reconstruction']:.4f} "
                 f"({db(f['psnr_reconstruction'])}) for the reconstruction."
                 + ("" if helped else f" Even the clean original comes back with MSE {f['mse_clean']:.4f}: at this "
                                      "noise level the model's own reconstruction error outweighs the noise."))
    else:
        helped = f["mse_hidden_completed"] < f["mse_hidden_corrupted"]
        ui.claim(f"Here {f['hidden_fraction']:.0%} of the pixels are hidden. After {iterations} completion "
                 f"iteration{'s' if iterations > 1 else ''} their error {'falls' if helped else 'goes'} from MSE "
                 f"{f['mse_hidden_corrupted']:.4f} to {f['mse_hidden_completed']:.4f}; the whole image goes from "
                 f"{db(f['psnr_corrupted'])} to {db(f['psnr_completed'])} PSNR.")

cols = st.columns(4 if r.completion is not None else 3)
with cols[0]:
    ui.image(apps.mask_overlay(r.corrupted, r.known), f"corrupted · MSE {f['mse_corrupted']:.4f} · {db(f['psnr_corrupted'])}",
             target=168)
with cols[1]:
    ui.image(r.reconstruction, f"reconstruction · MSE {f['mse_reconstruction']:.4f} · {db(f['psnr_reconstruction'])}",
             target=168)
if r.completion is not None:
    with cols[2]:
        ui.image(r.completion.images[-1, 0], f"completed ({iterations} it.) · MSE {f['mse_completed']:.4f} · "
                 f"{db(f['psnr_completed'])}", target=168)
with cols[-1]:
    ui.image(r.original, f"original {label}", target=168)
if r.known is not None:
    st.caption("Hidden pixels are painted red in the corrupted image; the model sees them as black (0).")

if r.completion is not None:
    chart, strip = st.columns([2, 3], gap="large")
    with chart:
        st.subheader("Error after each iteration")
        st.line_chart({"MSE on the hidden pixels": r.completion.error}, x_label="iteration",
                      y_label="MSE on the hidden pixels", height=260)
    with strip:
        st.subheader("The completion, iteration by iteration")
        picks = sorted({0, 1, 2, iterations // 2, iterations} & set(range(iterations + 1)))
        ui.grid(r.completion.images[picks, 0], len(picks), caption="iterations " + ", ".join(map(str, picks)), target=84)
