"""Explore: one slider per latent dimension and the decoder's answer to every change; traversals; the 2-D manifold.

The sliders and the decoded image live in one st.fragment, so moving a slider reruns only that part of the page.
The current z is kept in st.session_state["explore_z"]; other pages (the map) send one in "explore_pending".
"""
from __future__ import annotations

import html

import numpy as np
import streamlit as st
import torch

import vae
from ui import links, state, workspace
from ui.directions import directions_ui
from ui.latent_control import current_z, latent_control
from ui.safe import md
from ui.semi_ui import class_selector_ui
from ui.widgets import CAPTION_STYLE, image_row, img_tag, show_image
from vae.applications import png_bytes
from vae.data import grid

MAX_SLIDERS = 8  # more dimensions than this: a chooser says which to show
SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def zname(d: int) -> str:
    """Dimension d (0-based) as the article writes it: z₁, z₂, …"""
    return f"z{str(d + 1).translate(SUBSCRIPTS)}"


def set_z(z: np.ndarray | list[float], source: str) -> None:
    """Make z the current latent vector (call before the sliders are drawn, or from a callback)."""
    st.session_state["explore_z"] = np.asarray(z, dtype=np.float64).reshape(-1).tolist()
    st.session_state["explore_source"] = source


def sync_state(active: state.ActiveModel) -> None:
    """A new model starts at z = 0; a z sent from another page replaces the current one."""
    L = active.config.latent_dim
    pending = st.session_state.pop("explore_pending", None)
    model_key = active.key.split("#y=")[0]  # an M2's class views share one z: changing y keeps the style
    if st.session_state.get("explore_model") != model_key or len(st.session_state.get("explore_z", [])) != L:
        st.session_state["explore_model"] = model_key
        set_z(np.zeros(L), "z = 0, the prior's mean")
    if pending is not None and len(pending["z"]) == L:
        set_z(pending["z"], pending.get("source", "sent from another page"))


def dims_ui(active: state.ActiveModel) -> list[int]:
    """Which dimensions get a slider: all of them up to MAX_SLIDERS, else a chooser (the most informative first)."""
    L = active.config.latent_dim
    if L <= MAX_SLIDERS:
        return list(range(L))
    kl = model_kl_per_dim(active)
    ranked = list(np.argsort(-np.asarray(kl))) if kl is not None else list(range(L))
    default = sorted(int(d) for d in ranked[:MAX_SLIDERS])
    label = (lambda d: f"{zname(d)} · KL {kl[d]:.2f}") if kl is not None else zname
    dims = st.multiselect(f"Dimensions with a slider ({L} in all; default: the {MAX_SLIDERS} carrying the most KL)",
                          list(range(L)), default=default, format_func=label, key=f"explore_dims:{active.key}")
    return sorted(dims)


def model_kl_per_dim(active: state.ActiveModel) -> list[float] | None:
    """Held-out KL of each dimension, from the checkpoint's metrics or its last evaluated epoch."""
    kl = active.ck.metrics.get("kl_per_dim")
    if kl is None:
        rows = [h for h in active.ck.history if h.get("kl_per_dim")]
        kl = rows[-1]["kl_per_dim"] if rows else None
    return kl if kl is not None and len(kl) == active.config.latent_dim else None


def latent_sliders_ui(active: state.ActiveModel, dims: list[int]) -> np.ndarray:
    """The live latent control (ui/latent_control): sliders for `dims` and a 2-D pad, decoded in the browser while
    dragging. Returns the whole z, (latent_dim,); a release updates st.session_state["explore_z"] and re-runs
    live_ui, the fragment that draws everything following z (the page around it does not change with z)."""
    return latent_control(active, "explore_z", key="explore_live", dims=dims, fragment=False, release_scope="fragment",
                          on_change=lambda: st.session_state.update(explore_source="set with the live control"))


def controls_ui(active: state.ActiveModel) -> None:
    """Buttons that set z: a prior sample, zero, or a data point's posterior mean."""
    L = active.config.latent_dim

    def prior() -> None:
        n = st.session_state.get("explore_draws", 0) + 1
        st.session_state["explore_draws"] = n
        z, _ = vae.sample(active.model, 1, seed=n)  # a local generator: the shared model's RNG is untouched
        set_z(z[0].numpy(), f"draw #{n} from the prior N(0, I)")

    def from_data() -> None:
        i = int(st.session_state["explore_index"])
        try:
            x = state.dataset_for(active).x_test
        except vae.DataError as exc:
            st.session_state["explore_error"] = f"The model's data set cannot be used: {exc}"
            return
        if not 0 <= i < len(x):
            st.session_state["explore_error"] = f"there is no held-out image #{i}; pick 0 to {len(x) - 1}"
            return
        mu, _ = vae.encode(active.model, x[i: i + 1])
        set_z(mu[0].numpy(), f"held-out image #{i}: its posterior mean μ")

    def from_current() -> None:
        img = workspace.current_image()
        x = workspace.input_for(active, img) if img is not None else None
        if x is None:
            st.session_state["explore_error"] = ("there is no current image" if img is None else
                                                 f"the current image ({img.source}) cannot be made into this model's input")
            return
        mu, _ = vae.encode(active.model, x[None])
        set_z(mu[0].numpy(), f"the current image ({img.source}): its posterior mean μ")

    def keep_decoded() -> None:
        z = torch.as_tensor(st.session_state["explore_z"], dtype=torch.float32)
        workspace.set_current_image(vae.decode(active.model, z)[0], f"decoded in Explore ({active.label})", "sample")

    # A wrapping row of buttons as wide as their labels: at 1024 px nothing is cut ("Sample fro…").
    row = st.container(horizontal=True, vertical_alignment="bottom")
    row.button("Sample from the prior", icon=":material/casino:", on_click=prior, width="content", key="explore_prior")
    row.button("Reset to zero", icon=":material/restart_alt:", width="content", key="explore_reset",
               on_click=lambda: set_z(np.zeros(L), "z = 0, the prior's mean"))
    cur = workspace.current_image()
    row.button("Start from the current image", icon=":material/photo:", on_click=from_current, width="content",
               disabled=cur is None, key="explore_from_current",
               help=f"Encode {cur.source} and start from its posterior mean." if cur else
               "Upload, draw or pick an image (Reconstruct, the map) to make it the current image.")
    row.button("Keep this image", icon=":material/push_pin:", on_click=keep_decoded, width="content",
               key="explore_keep", help="Make the image decoded from this z the current image (sidebar), for "
                                        "Reconstruct, Interpolate and Denoise.")
    row.number_input("Held-out image #", min_value=0, value=0, step=1, key="explore_index", width=150)
    row.button("Start from held-out image", icon=":material/input:", on_click=from_data, width="content",
               key="explore_from_data")
    if err := st.session_state.pop("explore_error", None):
        st.error(err)


@st.fragment
def live_ui(active: state.ActiveModel, dims: list[int], traverse: bool) -> None:
    """Sliders -> decode -> image (and the traversal grid around z): rerun alone on every slider change."""
    model, L = active.model, active.config.latent_dim
    # No columns: a release re-runs this fragment, and the browser renders its messages one at a time while the
    # server's run waits for a core; each layout block is one more render before the decode (bench/app_latency.py).
    # current_z is what the control returns: a release's callback set it before this run.
    z = current_z("explore_z", L)
    shown = ", ".join(f"{zname(d)}={z[d]:+.2f}" for d in range(min(L, 4)))
    server_decode(model, z, st.session_state.get("explore_source", ""),
                  f"The image below, decoded from z = ({shown}{', …' if L > 4 else ''}), follows the pointer while "
                  "you drag.")
    latent_sliders_ui(active, dims)  # returns the same z (tests/e2e compare the two decodes)
    if traverse and dims:
        st.subheader("Traversal", anchor=False)
        images, values = vae.traversal(model, torch.as_tensor(z, dtype=torch.float32), dims, -3.0, 3.0, 9)
        rows = [grid(images[r], nrow=images.shape[1]) for r in range(len(dims))]
        image_row(rows, [f"{zname(d)}: −3 … +3" for d in dims], width=9 * 44, test_id="traversal", stacked=True,
                  note="Each row sweeps one dimension from −3 to 3 around the current z, the others held fixed.")
    # A release re-runs only this fragment: the link follows z here, last, so that the browser's URL update (a
    # history.pushState and a state change of Streamlit's whole app) is not among the messages it handles before the
    # paint of the decode.
    links.write("z", z.tolist())


def server_decode(model: vae.VAE, z: np.ndarray, source: str, caption: str) -> None:
    """Where z came from (bold) and a caption on one line, with PyTorch's decode of z kept in the page but not shown
    (the user sees one image, the browser's): the tests and bench/app_latency.py compare it with the browser's and
    time the round trip. One element, not three (markdown, caption, html): two renders fewer per release."""
    x_hat = vae.decode(model, torch.as_tensor(z, dtype=torch.float32))[0]
    st.html(f'<p style="margin: 0;"><strong>{html.escape(source)}</strong> '
            f'<span style="{CAPTION_STYLE}">· {html.escape(caption)}</span></p>'
            f'<div style="display: none">{img_tag(x_hat, 28, "server decode", "decoded-image")}</div>')


@st.cache_resource(max_entries=8, show_spinner=False)
def manifold_png(key: str, _model: vae.VAE) -> bytes:
    """The 15x15 manifold grid as PNG bytes, once per model. st.image serves it by URL, so the browser caches it and
    a rerun sends a few bytes instead of the whole image again."""
    images, _ = vae.manifold_grid(_model, n=15)
    return png_bytes(grid(images.flatten(0, 1), nrow=15))


active = state.require_model()
sync_state(active)
if links.first_visit("explore") and (z_link := links.floats("z", active.config.latent_dim)) is not None:
    set_z(z_link, "z from the link")
links.write("z", st.session_state["explore_z"])
st.title("Explore the latent space")
st.markdown(f"**{md(active.label)}** has {active.config.latent_dim} latent dimension(s). Move a slider: the decoder turns "
            "the vector $z$ into an image. Values far outside ±3 are places the prior $\\mathcal{N}(0, I)$ rarely visits.")
class_selector_ui(active)  # M2 models only: y of p(x|y, z)
controls_ui(active)
directions_ui(active)  # sliders along directions made on the latent map
dims = dims_ui(active)
traverse = st.toggle("Show the traversal grid (it follows the sliders)", value=True, key="explore_traverse", bind="query-params")
live_ui(active, dims, traverse)

if active.config.latent_dim == 2:
    st.subheader("The 2-D manifold", anchor=False)
    st.caption("A 15×15 grid of z evenly spaced in probability under the prior (Kingma & Welling, fig. 4): "
               "left→right z₁ grows, top→bottom z₂ falls.")
    st.image(manifold_png(active.key, active.model), width=15 * 36, caption="the decoder's view of the prior")
