"""Latent map: every image's posterior mean on a 2-D map (the latent plane itself for 2-D latents; PCA, t-SNE or UMAP
beyond), drawn by ui/scatter (hover thumbnails, pan/zoom, box and lasso), decodable anywhere.

A place on a nonlinear map decodes through its inverse (vae/projections.py: the distance-weighted mean μ of the
nearest points on the map); on PCA through the plane. Selections give image grids, class counts, their mean latent
decoded, and two of them an attribute direction that Explore turns into a slider.
"""
from __future__ import annotations

import uuid

import numpy as np
import streamlit as st
import torch

import vae
from ui import links, projections, safe, state, workspace
from ui.latent_control import latent_control
from ui.safe import md
from ui.scatter import atlas_png, make_layer, scatter_map
from ui.widgets import image_row, show_image
from vae.applications import png_bytes
from vae.data import grid
from vae.explore import Projection, posterior_ellipse
from vae.projections import (METHODS, LinearMap, NeighbourMap, ProjectionError, class_counts, direction,
                             direction_name)


COLOURS = {"label": "class label", "recon": "reconstruction error (nats)", "sigma": "mean posterior σ"}
PROJECTIONS = {"auto": "Auto", "pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
NEIGHBOURS = 8
GRID_MAX = 64  # images shown for a selection
ss = st.session_state


# ------------------------------------------------------------------------------------------------ settings and URL
def from_url() -> None:
    """The URL's view (?proj=tsne&colour=label&split=all&point=12) seeds this tab's settings, once per page visit."""
    if ss.get("map_url_read"):
        return
    ss["map_url_read"] = True
    q = st.query_params
    if q.get("split") in state.SPLITS:
        ss["map_split"] = q["split"]
    if q.get("colour") in COLOURS:
        ss["map_colour"] = q["colour"]
    if q.get("proj") in PROJECTIONS:
        ss["map_method"] = q["proj"]
    if str(q.get("point", "")).isdigit():
        ss["map_url_point"] = int(q["point"])


URL_KEYS = ("split", "colour", "proj", "point")


def to_url(split: str, colour: str, method: str) -> None:
    """The view and the current model into the URL, as one change: each change of st.query_params is a message the
    browser handles with a history.pushState and a re-render of the whole app. ?model= is written here too, or a
    model switch would send two (this one with the old model, then app.py's links.write_model with the new)."""
    pick = ss.get("map_pick")
    want = {"split": split, "colour": colour, "proj": method}
    if pick and pick.get("kind") == "point":
        want["point"] = str(pick["index"])
    model = links.model_value()
    if {k: st.query_params.get(k) for k in (*URL_KEYS, "model")} != {**dict.fromkeys(URL_KEYS), **want, "model": model}:
        keep = {k: st.query_params.get_all(k) for k in st.query_params if k not in (*URL_KEYS, "model")}  # ?img=, …
        st.query_params.from_dict({**keep, **want, **({"model": model} if model else {})})


def settings_ui(active: state.ActiveModel) -> tuple[str, str, str]:
    """Which points, coloured by what, projected how ("auto" picks the nonlinear map once it is ready)."""
    # One flex row, not st.columns: a row is one element for the browser to render on every rerun, columns one each.
    row = st.container(horizontal=True, wrap=False, gap="medium")
    split = row.radio("Points", list(state.SPLITS), format_func=lambda s: state.SPLITS[s].capitalize(), horizontal=True,
                     key="map_split", width="stretch")
    colour = row.radio("Colour by", list(COLOURS), format_func=COLOURS.get, horizontal=True, key="map_colour",
                      width="stretch")
    if active.config.latent_dim > 2:
        method = row.radio("Projection", list(PROJECTIONS), format_func=PROJECTIONS.get, horizontal=True,
                          key="map_method", width="stretch",
                          help="Auto: t-SNE as soon as it is computed (in the background), PCA until then. PCA is "
                               "linear; t-SNE and UMAP keep neighbourhoods. Every map decodes anywhere.")
    else:
        method = "identity"
        row.caption("A 2-D latent space is drawn as it is: the axes are z₁ and z₂.")
    return split, colour, method


# ----------------------------------------------------------------------------------------------------- the view
@st.cache_resource(max_entries=16, show_spinner=False)
def linear_map(key: str, split: str, _active: state.ActiveModel) -> LinearMap:
    mu, _ = state.split_latents(_active, split)
    return LinearMap(state.split_projection(_active, split), mu.numpy())


def resolve_view(active: state.ActiveModel, split: str, method: str) -> tuple[str, object]:
    """(the method shown, its map): the nonlinear one when ready, else PCA with a note saying why.

    The note has a place of its own, drawn whether or not there is a note: when PCA turns into t-SNE the map
    below keeps its position in the page (the browser updates it in place rather than building it anew)."""
    note = st.empty()
    lin = linear_map(active.key, split, active)
    if method in ("identity", "pca"):
        return lin.method, lin
    wanted = projections.DEFAULT_METHOD if method == "auto" else method
    fut = projections.map_for(active, split, wanted)
    if not fut.done():
        with note:
            wait_for_map(fut, METHODS[wanted], method == "auto")
        return "pca", lin
    exc = fut.exception()
    if exc is not None:
        why = safe.error(exc) if isinstance(exc, ProjectionError) else f"{type(exc).__name__}: {safe.error(exc)}"
        note.warning(f"{METHODS[wanted]} could not be made ({safe.error(why)}); showing PCA instead.", icon=":material/warning:")
        return "pca", lin
    return wanted, fut.result()


@st.fragment(run_every=1.0)
def wait_for_map(fut, name: str, auto: bool) -> None:
    """Poll the background map; rerun the page once it is ready."""
    if fut.done():
        st.rerun()
    st.info(f"Computing {name} in the background; " + ("the map switches to it by itself when it is ready. "
            if auto else "") + "The PCA view is shown meanwhile.", icon=":material/hourglass_top:")


def axes_of(shown: str, m) -> tuple[str, str]:
    if shown == "identity":
        return "z₁", "z₂"
    if shown == "pca":
        e = m.projection.explained
        return f"PC 1 ({e[0]:.0%} of variance)", f"PC 2 ({e[1]:.0%})"
    return f"{METHODS[shown]} 1", f"{METHODS[shown]} 2"


def how_inverse(shown: str, m) -> str:
    """How a place on this map becomes z, in a sentence."""
    if shown == "identity":
        return "The map is the latent space: a place is z."
    if shown == "pca":
        return ("PCA is linear: a place decodes to the point of the PCA plane through the data's mean "
                f"(the plane holds {m.projection.explained.sum():.0%} of the variance of μ).")
    fitted = f" (fitted on {m.fitted_on:,} of them, the rest placed by neighbours)" if m.fitted_on < len(m.xy) else ""
    return (f"{METHODS[shown]} has no formula back: a place decodes to the distance-weighted mean μ of its "
            f"{m.k} nearest points on the map{fitted}. Computed in {m.seconds:.1f} s.")


@st.cache_resource(max_entries=4, show_spinner=False)
def atlas(name: str, split: str, n: int, _x: torch.Tensor) -> dict:
    return atlas_png(_x)


def colour_values(active, split: str, colour: str, sigma: torch.Tensor):
    if colour == "recon":
        return state.split_recon_error(active, split)
    if colour == "sigma":
        return sigma.mean(dim=1).numpy()
    return None


# ------------------------------------------------------------------------------------------------- picks, marks
def current_image_mu(active):
    """The tab's current image on this model: (mu, sigma, source) or None."""
    try:
        cur = workspace.current_image()
        x = workspace.input_for(active) if cur is not None else None
    except Exception:  # noqa: BLE001 - an image that cannot be adapted is simply not placed
        return None
    if x is None:
        return None
    rec = vae.reconstruct(active.model, x[None])
    return rec.mu[0].numpy(), rec.sigma[0].numpy(), cur.source


def send_to_explore(z: np.ndarray, source: str) -> None:
    ss["explore_pending"] = {"z": [float(v) for v in z], "source": source}
    st.switch_page("pages/explore.py")


def endpoint_buttons(x: torch.Tensor, source: str, key: str) -> None:
    """Set as A / B for Interpolate (the workspace's endpoints)."""
    c1, c2 = st.columns(2)
    if c1.button("Set as A", key=f"{key}_A", icon=":material/looks_one:",
                 help="Interpolate's endpoint A (it also becomes the current image)"):
        workspace.set_endpoint("A", x, source, kind="map")
        st.toast(f"{source} is Interpolate's A (and the current image).")
    if c2.button("Set as B", key=f"{key}_B", icon=":material/looks_two:", help="Interpolate's endpoint B"):
        workspace.set_endpoint("B", x, source, kind="map")
        st.toast(f"{source} is Interpolate's B.")


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
    endpoint_buttons(x[i], f"map point #{i}", "map_point")


def position_detail(active, shown: str, m, xy: list[float]) -> None:
    z = m.inverse(np.asarray(xy, np.float64))[0]
    image = vae.decode(active.model, torch.as_tensor(z, dtype=torch.float32))[0]
    st.markdown(f"**Position ({xy[0]:.2f}, {xy[1]:.2f})** on the map")
    show_image(image, 140, caption="decoded there", test_id="map-decoded")
    L = len(z)
    prefix = {"identity": "z = ", "pca": "z on the PCA plane = "}.get(shown, f"z from the {METHODS.get(shown, '')} inverse = ")
    st.caption(prefix + "(" + ", ".join(f"{v:+.2f}" for v in z[:6]) + (", …" if L > 6 else "") + ")")
    if st.button("Open in Explore", icon=":material/tune:", key="map_send_position"):
        send_to_explore(z, f"map position ({xy[0]:.2f}, {xy[1]:.2f})")
    endpoint_buttons(image, f"map position ({xy[0]:.2f}, {xy[1]:.2f})", "map_position")


def pick_ui(n: int) -> None:
    """Picking without the mouse: a point by number, or a map position by coordinates."""
    with st.expander("Pick by number or position", expanded=False):
        row = st.container(horizontal=True, vertical_alignment="bottom")  # rows, not st.columns: fewer elements
        row.number_input("Point #", min_value=0, max_value=n - 1, value=0, step=1, key="map_index")
        row.button("Show", key="map_show_point",
                   on_click=lambda: ss.update(map_pick={"kind": "point", "index": int(ss["map_index"])}))
        row = st.container(horizontal=True, vertical_alignment="bottom")
        row.number_input("x", value=0.0, step=0.1, format="%.2f", key="map_x")
        row.number_input("y", value=0.0, step=0.1, format="%.2f", key="map_y")
        row.button("Decode", key="map_decode", on_click=lambda: ss.update(
            map_pick={"kind": "position", "xy": [float(ss["map_x"]), float(ss["map_y"])]}))


# --------------------------------------------------------------------------------------------------- selections
def selection_ui(active, split: str, x: torch.Tensor, labels, mu: torch.Tensor, classes) -> None:
    """The box/lasso selection: its images, counts per class, mean latent decoded; groups A and B; a direction."""
    st.subheader("Selection", anchor=False)
    sel = ss.get("map_scatter:select")
    ids = np.asarray(sel["ids"] if sel else [], dtype=np.int64)
    ids = ids[(ids >= 0) & (ids < len(x))]
    if len(ids) == 0:
        st.caption("Choose Box or Lasso above the map and draw around points: their images, classes and mean latent "
                   "appear here." + (" (The last selection held no points.)" if sel else ""))
    else:
        counts = class_counts(labels, ids, classes)
        st.markdown(f"**{len(ids):,} point(s)** selected by {sel.get('how') or 'hand'}"
                    + ("; per class: " + ", ".join(f"{md(k)}: {v}" for k, v in counts.items()) if counts else ""))
        c1, c2 = st.columns([3, 1])
        with c1:
            shown = ids[:GRID_MAX]
            st.image(png_bytes(grid(x[shown], nrow=16)), width=min(16, len(shown)) * 36,
                     caption=f"{len(shown)} of {len(ids)} images" if len(ids) > GRID_MAX else "their images")
        with c2:
            if len(ids) == 1:
                st.caption("One point: its mean latent is its own μ. Select more for a mean.")
            mean_z = mu[ids].mean(dim=0)
            show_image(vae.decode(active.model, mean_z)[0], 112, caption="their mean latent, decoded",
                       test_id="map-selection-mean")
        b1, b2, b3 = st.columns(3)
        name = direction_name(labels, ids, ids, classes).split(" → ")[0]
        if b1.button("Use as group A", key="map_group_A", icon=":material/filter_1:"):
            ss["map_groups"]["A"] = {"ids": ids.tolist(), "name": name}
        if b2.button("Use as group B", key="map_group_B", icon=":material/filter_2:"):
            ss["map_groups"]["B"] = {"ids": ids.tolist(), "name": name}
        if b3.button("Clear the selection", key="map_clear_selection"):
            ss.pop("map_scatter:select", None)
            ss["map_selection_reset"] = ss.get("map_selection_reset", 0) + 1
            st.rerun(scope="fragment")
    direction_ui(active, split, labels, mu, classes)


def direction_ui(active, split: str, labels, mu: torch.Tensor, classes) -> None:
    """Groups A and B -> mean μ(B) − mean μ(A): its traversal, and a slider on Explore."""
    groups = ss["map_groups"]
    if not groups:
        st.caption("Two selections make an attribute direction: use one as group A, another as group B.")
        return
    st.markdown("**Attribute direction** " + " · ".join(
        f"{g}: {len(groups[g]['ids'])} points (mostly {md(groups[g]['name'])})" for g in ("A", "B") if g in groups))
    if not ("A" in groups and "B" in groups):
        st.caption("Now select a second group and use it as " + ("B." if "A" in groups else "A."))
        return
    try:
        d = direction(mu.numpy(), groups["A"]["ids"], groups["B"]["ids"])
    except ProjectionError as exc:
        st.warning(f"No direction: {safe.error(exc)}.", icon=":material/warning:")
        return
    default = direction_name(labels, groups["A"]["ids"], groups["B"]["ids"], classes)
    name = st.text_input("Name of the direction", value=default, key=f"map_direction_name:{default}", max_chars=40)
    t = torch.linspace(-0.25, 1.25, 9).unsqueeze(1)
    path = torch.as_tensor(d.mean_a, dtype=torch.float32) + t * torch.as_tensor(d.vector, dtype=torch.float32)
    strip = vae.decode(active.model, path)
    image_row([grid(strip, nrow=9)], [f"mean of A → mean of B ({name}), from −0.25 to 1.25 of the way; "
                                      f"|B − A| = {d.length:.2f}"], width=9 * 44, test_id="map-direction")
    if st.button("Use as a slider on Explore", key="map_direction_send", icon=":material/linear_scale:"):
        dirs = [e for e in ss.get("explore_directions", []) if not (e["model"] == active.key and e["name"] == name)]
        dirs.append({"model": active.key, "name": name or default, "vector": d.vector.tolist(), "id": uuid.uuid4().hex[:8],
                     "source": f"map ({state.SPLITS[split]}): A {d.n_a} points, B {d.n_b} points"})
        ss["explore_directions"] = dirs
        st.switch_page("pages/explore.py")


# ------------------------------------------------------------------------------------------------------ the page
@st.fragment
def map_ui(active: state.ActiveModel, split: str, colour: str, shown: str, m) -> None:
    """The scatter, what is picked and selected on it; a pick or a selection reruns only this fragment."""
    x, labels = state.split_data(active, split)
    mu, sigma = state.split_latents(active, split)
    classes = state.dataset_for(active).classes
    if colour == "label" and labels is None:
        st.caption("This data set has no labels: colouring by reconstruction error.")
        colour = "recon"
    values = colour_values(active, split, colour, sigma)
    axes = axes_of(shown, m)
    layer = make_layer(f"{active.key}|{split}|{shown}", m.xy, labels, classes, values, COLOURS[colour], axes)

    pick = ss.get("map_pick")
    marks, ellipse = [], None
    if pick and pick["kind"] == "point" and 0 <= pick["index"] < len(x):
        i = pick["index"]
        p = m.xy[i]
        marks.append({"x": float(p[0]), "y": float(p[1]), "label": f"#{i}"})
        if isinstance(m, LinearMap):
            ellipse = posterior_ellipse(mu[i], sigma[i], m.projection)
    elif pick and pick["kind"] == "position":
        marks.append({"x": pick["xy"][0], "y": pick["xy"][1], "label": "decoded"})
    cur = current_image_mu(active)
    if cur is not None:
        c_mu, c_sigma, source = cur
        p = m.transform(c_mu)[0]
        marks.append({"x": float(p[0]), "y": float(p[1]), "label": "current image", "color": "#1f77b4"})
        if isinstance(m, LinearMap) and ellipse is None:
            ellipse = posterior_ellipse(c_mu, c_sigma, m.projection)

    def picked() -> None:
        ss["map_pick"] = ss.get("map_scatter:pick")

    data = state.dataset_for(active)
    chart, detail = st.columns([3, 2], gap="medium")
    with chart:
        scatter_map("map_scatter", layer, atlas_id=f"atlas:{data.name}:{split}:{len(x)}",
                    atlas=lambda: atlas(data.name, split, len(x), x), marks=marks, ellipse=ellipse,
                    status=f"{len(x):,} points · {PROJECTIONS.get(shown, 'latent plane' if shown == 'identity' else shown)}",
                    height=560, selection_reset=ss.get("map_selection_reset", 0), on_pick=picked)
        err = m.roundtrip_error()  # the data points' figure, measured once per map
        st.caption(f"{len(x):,} points. Hover a point to see its image; click it to inspect it, or click empty space "
                   "to decode that place. Wheel zooms, drag pans; Box and Lasso select.\n\n"
                   f"**Decoding a place.** {how_inverse(shown, m)} Round trip z → map → z on the data points: median "
                   f"error {err:.0%} of the points' spread" + (" (leave-one-out)." if isinstance(m, NeighbourMap) else ".")
                   + ("" if cur is None else f" The current image ({cur[2]}) is placed by "
                      + ("the projection, with its 2σ posterior ellipse." if isinstance(m, LinearMap)
                         else "its nearest latent neighbours.")))
    with detail:
        pick_ui(len(x))
        if pick and pick["kind"] == "point" and 0 <= pick["index"] < len(x):
            point_detail(active, split, pick["index"], x, labels, mu, classes)
        elif pick and pick["kind"] == "position":
            position_detail(active, shown, m, pick["xy"])
        else:
            st.info("Nothing picked yet: click the map, or use the fields above.", icon=":material/ads_click:")
    selection_ui(active, split, x, labels, mu, classes)
    live_decoder_ui(active, split, shown, m, mu, labels, classes, axes)


def live_decoder_ui(active, split: str, shown: str, m, mu: torch.Tensor, labels, classes, axes) -> None:
    """The live latent control under the map: drag its pad and the image follows, decoded through the map's inverse.

    A pick on the map moves the control there; a release marks the spot on the map as the pick.
    """
    L = active.config.latent_dim
    linear = isinstance(m, LinearMap)
    proj: Projection | NeighbourMap = m.projection if linear else m
    on_map = (lambda z: m.inverse(m.transform(np.asarray(z, np.float64)))[0])  # noqa: E731
    if ss.get("map_live_plane") != (active.key, split, shown) or len(ss.get("map_z", [])) != L:
        ss["map_live_plane"] = (active.key, split, shown)
        ss["map_z"] = (on_map(ss["map_z"]) if len(ss.get("map_z", [])) == L else m.inverse(np.zeros(2))[0]).tolist()
    pick = ss.get("map_pick")
    if pick != ss.get("map_live_pick"):
        ss["map_live_pick"] = pick
        if pick and pick["kind"] == "point" and 0 <= pick["index"] < len(mu):
            ss["map_z"] = (on_map(mu[pick["index"]].numpy()) if linear else mu[pick["index"]].numpy()).tolist()
        elif pick and pick["kind"] == "position":
            ss["map_z"] = m.inverse(np.asarray(pick["xy"], np.float64))[0].tolist()

    def released() -> None:
        xy = m.transform(np.asarray(ss["map_z"], np.float64))[0]
        ss["map_pick"] = ss["map_live_pick"] = {"kind": "position", "xy": [float(xy[0]), float(xy[1])]}

    st.subheader("Drag through the map", anchor=False)
    st.caption("The image follows the pointer as you drag, decoded in your browser"
               + ({"identity": ".", "pca": " on this map's PCA plane."}.get(shown, f" through the {METHODS.get(shown)} "
                                                                             "map's inverse (the same rule as a click)."))
               + " Releasing marks the spot on the map above.")
    # Inline, not a fragment inside map_ui's: see latent_control's fragment= (a nested one blanked the page, issue 11).
    latent_control(active, "map_z", key="map_live", dims=None if L == 2 else [], projection=proj, on_change=released,
                   pad_labels=(labels, classes, axes), fragment=False)


active = state.require_model()
projections.prefetch(active)
st.title("Latent map")
st.markdown("Each dot is one image's posterior mean μ. Images the model finds alike land close together; "
            "the prior N(0, I) is centred at the origin.")
from_url()
if ss.get("map_model") != active.key:  # picks and groups belong to the model they were made on
    ss["map_model"] = active.key
    ss.pop("map_pick", None)
    ss.pop("map_scatter:select", None)
    ss["map_groups"] = {}
ss.setdefault("map_groups", {})
try:
    state.dataset_for(active)
except vae.DataError as exc:
    st.error(f"The model's data set cannot be loaded: {safe.error(exc)}")
    st.stop()
split, colour, method = settings_ui(active)
if ss.get("map_view") != (split, method):
    if ss.get("map_view") is not None and ss["map_view"][0] != split:  # other points: picks and groups are void
        ss.pop("map_scatter:select", None)
        ss["map_groups"] = {}
    ss["map_view"] = (split, method)
    ss.pop("map_pick", None)
if (i := ss.pop("map_url_point", None)) is not None:
    ss["map_pick"] = {"kind": "point", "index": i}
shown, m = resolve_view(active, split, method)
if ss.get("map_shown") != shown:  # Auto turned PCA into t-SNE, say: a position belongs to the map it was picked on
    ss["map_shown"] = shown
    if (ss.get("map_pick") or {}).get("kind") == "position":
        ss.pop("map_pick", None)
try:
    map_ui(active, split, colour, shown, m)
finally:  # last: the URL's change is handled in the browser before whatever follows it, the map included
    to_url(split, colour, method)
