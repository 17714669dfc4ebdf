"""Latent map: the encoded data as a WebGL scatter (identity for 2-D latents, PCA or t-SNE beyond), clickable.

Clicking a point shows its image, reconstruction and 8 nearest neighbours in latent space; clicking empty space
decodes that position (Plotly only reports clicks on points, so an invisible grid of points lies under the data).
Either can be sent to the Explore page.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

import vae
from ui import safe, state
from ui.latent_control import latent_control
from ui.plots import add_click_grid, add_highlight, latent_map_figure
from ui.safe import md
from ui.widgets import image_row, show_image
from vae.explore import click_grid, decode_map_position, posterior_ellipse

COLOURS = {"label": "class label", "recon": "reconstruction error (nats)", "sigma": "mean posterior σ"}
NEIGHBOURS = 8


def settings_ui(active: state.ActiveModel) -> tuple[str, str, str]:
    """Which points, coloured by what, projected how."""
    c1, c2, c3 = st.columns(3)
    split = c1.radio("Points", list(state.SPLITS), format_func=lambda s: state.SPLITS[s].capitalize(), horizontal=True,
                     key="map_split")
    colour = c2.radio("Colour by", list(COLOURS), format_func=COLOURS.get, horizontal=True, key="map_colour")
    if active.config.latent_dim > 2:
        method = c3.radio("Projection", ["PCA", "t-SNE"], horizontal=True, key="map_method",
                          help="PCA is linear and invertible: a click on empty space decodes there. "
                               "t-SNE keeps neighbourhoods but cannot be inverted.")
    else:
        method = "identity"
        c3.caption("A 2-D latent space is drawn as it is: the axes are z₁ and z₂.")
    return split, colour, method


@st.fragment(run_every=1.0)
def wait_for_tsne(fut) -> None:
    """Poll the background t-SNE; rerun the page once it is ready."""
    if fut.done():
        st.rerun()
    st.info("Computing t-SNE in the background (a few seconds per thousand points); the PCA view is shown meanwhile.",
            icon=":material/hourglass_top:")


def pick_from_chart() -> None:
    """on_select callback: turn a clicked point into a pick (a data point, or a position on the click grid)."""
    event = st.session_state.get("map_chart")
    points = (event or {}).get("selection", {}).get("points", [])
    if not points:
        return
    p = points[0]
    kinds = st.session_state.get("map_trace_kinds", [])
    kind = kinds[p.get("curve_number", -1)] if 0 <= p.get("curve_number", -1) < len(kinds) else "data"
    if kind == "grid":
        st.session_state["map_pick"] = {"kind": "position", "xy": [float(p["x"]), float(p["y"])]}
    elif kind == "data":
        cd = p.get("customdata")
        idx = cd[0] if isinstance(cd, (list, tuple)) else cd
        if idx is not None:
            st.session_state["map_pick"] = {"kind": "point", "index": int(idx)}


def send_to_explore(z: np.ndarray, source: str) -> None:
    st.session_state["explore_pending"] = {"z": [float(v) for v in z], "source": source}
    st.switch_page("pages/explore.py")


@st.fragment
def map_ui(active: state.ActiveModel, split: str, colour: str, method: str) -> None:
    """The scatter and what is picked on it; a click reruns only this fragment."""
    x, labels = state.split_data(active, split)
    mu, sigma = state.split_latents(active, split)
    proj = state.split_projection(active, split)
    if method == "t-SNE":
        xy = state.tsne_future(active, split).result()
        axes = ("t-SNE 1", "t-SNE 2")
    else:
        xy = proj.transform(mu.numpy())
        axes = ("z₁", "z₂") if proj.method == "identity" else (f"PC 1 ({proj.explained[0]:.0%} of variance)",
                                                               f"PC 2 ({proj.explained[1]:.0%})")
    if colour == "label" and labels is None:
        st.caption("This data set has no labels: colouring by reconstruction error.")
        colour = "recon"
    values = None if colour == "label" else (state.split_recon_error(active, split) if colour == "recon"
                                             else sigma.mean(dim=1).numpy())
    classes = state.dataset_for(active).classes
    fig = latent_map_figure(xy, labels if values is None else None, classes, values, COLOURS[colour], height=600,
                            axis_titles=axes)
    fig.update_layout(legend=dict(orientation="h", x=0, y=-0.12, yanchor="top"))  # under the plot, clear of the toolbar
    kinds = ["data"] * len(fig.data)
    invertible = method != "t-SNE"
    if invertible:
        add_click_grid(fig, click_grid(xy))
        kinds.append("grid")

    pick = st.session_state.get("map_pick")
    if pick and pick["kind"] == "point" and 0 <= pick["index"] < len(x):
        i = pick["index"]
        ellipse = posterior_ellipse(mu[i], sigma[i], proj) if invertible else None
        add_highlight(fig, xy[i], ellipse)
    elif pick and pick["kind"] == "position" and invertible:
        add_highlight(fig, np.asarray(pick["xy"]), None)
    kinds.append("highlight")
    st.session_state["map_trace_kinds"] = kinds

    chart, detail = st.columns([3, 2], gap="medium")
    with chart:
        st.plotly_chart(fig, key="map_chart", on_select=pick_from_chart, selection_mode="points",
                        config={"scrollZoom": True, "displaylogo": False})
        st.caption(f"{len(xy):,} points. Click a point to inspect it"
                   + (", or empty space to decode that position." if invertible else
                      ". (t-SNE cannot be inverted: switch to PCA to decode empty space.)"))
    with detail:
        pick_ui(len(x), invertible)
        if pick and pick["kind"] == "point" and 0 <= pick["index"] < len(x):
            point_detail(active, split, pick["index"], x, labels, mu, classes)
        elif pick and pick["kind"] == "position" and invertible:
            position_detail(active, proj, pick["xy"])
        else:
            st.info("Nothing picked yet: click the map, or use the fields above.", icon=":material/ads_click:")
    live_decoder_ui(active, split, proj, invertible, mu)


def live_decoder_ui(active: state.ActiveModel, split: str, proj, invertible: bool, mu: torch.Tensor) -> None:
    """The live latent control (ui/latent_control) under the map: drag its pad and the image follows every frame.

    z stays on the map's plane (for 2-D latents the plane is the whole space): a pick on the map moves the control
    there, and a release marks z's position on the map as the pick (the marker and the panel above follow).
    """
    ss = st.session_state
    on_plane = lambda z: proj.inverse(proj.transform(np.asarray(z, np.float64)))  # noqa: E731
    L = active.config.latent_dim
    if ss.get("map_live_plane") != (active.key, split) or len(ss.get("map_z", [])) != L:
        ss["map_live_plane"] = (active.key, split)
        ss["map_z"] = on_plane(ss["map_z"]) if len(ss.get("map_z", [])) == L else proj.inverse(np.zeros(2))
    pick = ss.get("map_pick")
    if pick != ss.get("map_live_pick"):
        ss["map_live_pick"] = pick
        if pick and pick["kind"] == "point" and 0 <= pick["index"] < len(mu):
            ss["map_z"] = on_plane(mu[pick["index"]].numpy())
        elif pick and pick["kind"] == "position" and invertible:
            ss["map_z"] = proj.inverse(np.asarray(pick["xy"], np.float64))

    def released() -> None:
        if invertible:
            xy = proj.transform(np.asarray(ss["map_z"], np.float64))
            ss["map_pick"] = ss["map_live_pick"] = {"kind": "position", "xy": [float(xy[0]), float(xy[1])]}

    st.subheader("Drag through the map", anchor=False)
    st.caption("The image follows the pointer as you drag across the held-out points"
               + (" on this map's plane." if L > 2 else ".")
               + (" Releasing marks the spot on the map above." if invertible else
                  " (t-SNE cannot be inverted: switch to PCA to see the spot marked on the map.)"))
    latent_control(active, "map_z", key="map_live", dims=None if L == 2 else [], projection=proj, on_change=released)


def pick_ui(n: int, invertible: bool) -> None:
    """Picking without the mouse: a point by number, or a map position by coordinates."""
    ss = st.session_state
    with st.expander("Pick by number or position", expanded=False):
        c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
        c1.number_input("Point #", min_value=0, max_value=n - 1, value=0, step=1, key="map_index")
        c2.button("Show", key="map_show_point",
                  on_click=lambda: ss.update(map_pick={"kind": "point", "index": int(ss["map_index"])}))
        if invertible:
            c1, c2, c3 = st.columns([1, 1, 1], vertical_alignment="bottom")
            c1.number_input("x", value=0.0, step=0.1, format="%.2f", key="map_x")
            c2.number_input("y", value=0.0, step=0.1, format="%.2f", key="map_y")
            c3.button("Decode", key="map_decode", on_click=lambda: ss.update(
                map_pick={"kind": "position", "xy": [float(ss["map_x"]), float(ss["map_y"])]}))


def point_detail(active, split: str, i: int, x: torch.Tensor, labels, mu: torch.Tensor, classes) -> None:
    label = f" · class {classes[labels[i]] if classes and labels[i] < len(classes) else labels[i]}" if labels is not None else ""
    st.markdown(f"**Point #{i}**{md(label)}")
    rec = vae.reconstruct(active.model, x[i: i + 1])
    c1, c2 = st.columns(2)
    with c1:
        show_image(x[i], 140, caption="the image", test_id="map-point-image")
    with c2:
        show_image(rec.x_hat[0], 140, caption=f"reconstruction · −ELBO {float(rec.neg_elbo[0]):.1f} nats")
    nn = vae.nearest(mu, mu[i], k=NEIGHBOURS)
    caps = [f"#{j}" + (f" ({classes[labels[j]] if classes else labels[j]})" if labels is not None else "") for j in nn]
    st.markdown(f"**{NEIGHBOURS} nearest neighbours** in latent space (Euclidean distance between means)")
    image_row([x[j] for j in nn], caps, width=64, test_id="map-neighbours")
    if st.button("Open in Explore", icon=":material/tune:", key="map_send_point"):
        send_to_explore(mu[i].numpy(), f"map point #{i} ({state.SPLITS[split]}): its posterior mean μ")


def position_detail(active, proj, xy: list[float]) -> None:
    z, image = decode_map_position(active.model, proj, xy)
    st.markdown(f"**Position ({xy[0]:.2f}, {xy[1]:.2f})** on the map")
    show_image(image, 140, caption="decoded there", test_id="map-decoded")
    L = len(z)
    st.caption(("z = " if proj.method == "identity" else "z on the PCA plane = ")
               + "(" + ", ".join(f"{v:+.2f}" for v in z[:6]) + (", …" if L > 6 else "") + ")")
    if st.button("Open in Explore", icon=":material/tune:", key="map_send_position"):
        send_to_explore(z, f"map position ({xy[0]:.2f}, {xy[1]:.2f})")


active = state.require_model()
st.title("Latent map")
st.markdown("Each dot is one image's posterior mean μ. Images the model finds alike land close together; "
            "the prior N(0, I) is centred at the origin.")
if st.session_state.get("map_model") != active.key:  # a pick belongs to the model it was made on
    st.session_state["map_model"] = active.key
    st.session_state.pop("map_pick", None)
try:
    state.dataset_for(active)
except vae.DataError as exc:
    st.error(f"The model's data set cannot be loaded: {safe.error(exc)}")
    st.stop()
split, colour, method = settings_ui(active)
if st.session_state.get("map_view") != (split, method):
    st.session_state["map_view"] = (split, method)
    st.session_state.pop("map_pick", None)
if method == "t-SNE":
    fut = state.tsne_future(active, split)
    if not fut.done():
        wait_for_tsne(fut)
        method = "PCA"
    elif fut.exception() is not None:
        st.error(f"t-SNE failed ({safe.error(fut.exception())}); showing PCA instead.")
        method = "PCA"
map_ui(active, split, colour, method)
