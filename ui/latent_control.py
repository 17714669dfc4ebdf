"""Live latent control: sliders and a 2-D pad whose decoded image follows the pointer every animation frame.

A Streamlit components-v2 element (inline HTML/CSS/JS from ui/latent_control/, no iframe). MLP decoders run in the
browser from weights sent once per model and browser tab (vae.export); the others (conv) fall back to throttled
round trips through Python. On release the final z lands in st.session_state[value_key] before the next run, so
the whole page follows:

    z = latent_control(active, "explore_z")   # np.ndarray (L,) float32, also st.session_state["explore_z"]
    st.session_state["explore_z"] = mu[i]     # set it from elsewhere (a map click, a button callback): the control follows

Set value_key before the control is drawn in a run (or in a widget callback); a value set after it shows next run.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

import vae
from ui import components, state
from ui.components import b64 as _b64, from_folder
from vae.explore import Projection
from vae.export import ExportError, export_decoder

_component = from_folder("vae_latent_control", "latent_control")

BROWSER_MODELS = "_latent_control_browser_models"  # payload ids the browser tab holds, as its JS last reported
BROWSER_PADS = "_latent_control_browser_pads"  # pad ids the browser tab holds: a pad (up to 10,000 points and their
# mu, ~0.5 MB of JSON on the latent map) is sent once per tab, not serialized, hashed and sent on every rerun
MAX_PAD_POINTS = 2000  # the pad's background; mnist5k's held-out set is 1000


@dataclass(frozen=True)
class ModelPayload:
    id: str  # what the browser caches it under: model key + decoder content
    json: dict[str, Any]  # latent_dim, input_shape, decoder (None when it runs on the server), server_note
    span: float  # the sliders run over [-span, span]
    nbytes: int  # size of the JSON the browser receives once

    @property
    def in_browser(self) -> bool:
        return self.json["decoder"] is not None


def _heldout(active: state.ActiveModel) -> tuple[np.ndarray, np.ndarray | None, list[str] | None] | None:
    """Held-out mu (N, L), labels and class names; None when the data set cannot be read (a folder moved)."""
    try:
        mu, _ = state.latents(active)
        data = state.dataset_for(active)
    except (vae.DataError, OSError):
        return None
    labels = None if data.y_test is None else data.y_test.numpy()
    return mu.numpy(), labels, data.classes


@st.cache_resource(max_entries=16, show_spinner=False)
def model_payload(key: str, _active: state.ActiveModel) -> ModelPayload:
    """The decoder for the browser (sent once per model and tab) and the sliders' range, once per model and server."""
    model, cfg = _active.model, _active.config
    try:
        decoder = export_decoder(model, "float32")  # float16 misses the 1/255 target: see tests/test_export.py
        decoder_json, decoder_id, note = decoder.to_json(), decoder.model_id, ""
    except ExportError as exc:
        decoder_json, decoder_id = None, "server"
        note = (f"This model's decoder runs only on the server ({exc}): while you drag, the image follows through "
                "round trips to Python, a few per second rather than every frame.")
    span = 3.0
    held = _heldout(_active)
    if held is not None and len(held[0]):
        span = float(min(10.0, max(3.0, np.ceil(2 * np.percentile(np.abs(held[0]), 99.9)) / 2)))
    payload_id = hashlib.sha256(f"{key}|{decoder_id}".encode()).hexdigest()[:16]
    body = {"id": payload_id, "latent_dim": cfg.latent_dim, "input_shape": list(cfg.input_shape),
            "decoder": decoder_json, "server_note": note}
    return ModelPayload(payload_id, body, span, len(json.dumps(body)))


def _projection_digest(proj) -> str:
    if isinstance(proj, Projection):
        return hashlib.sha256(proj.mean.tobytes() + proj.components.tobytes()).hexdigest()[:16]
    return hashlib.sha256(np.ascontiguousarray(proj.xy).tobytes() + np.ascontiguousarray(proj.mu).tobytes()).hexdigest()[:16]


MAX_INVERSE_POINTS = 10_000  # the browser's inverse interpolates among these (~0.7 MB for 16-D latents)


@st.cache_resource(max_entries=16, show_spinner=False)
def neighbour_pad_data(key: str, digest: str, _nmap, _labels: np.ndarray | None, _classes: list[str] | None,
                       axes: tuple[str, str]) -> dict[str, Any]:
    """The pad over a nonlinear map (vae.projections.NeighbourMap): its points, and the points the browser
    interpolates between to turn a place on the map into z (the same rule as the server's inverse)."""
    xy = np.asarray(_nmap.xy, np.float32)
    mu = np.asarray(_nmap.mu, np.float32)
    keep = np.linspace(0, len(xy) - 1, min(len(xy), MAX_PAD_POINTS)).astype(int)
    inv = np.linspace(0, len(xy) - 1, min(len(xy), MAX_INVERSE_POINTS)).astype(int)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    c, half = (lo + hi) / 2, float(max(hi - lo) / 2 * 1.06 + 1e-6)
    labels = _labels if _labels is not None and len(_labels) == len(xy) and _labels.max(initial=0) < 256 else None
    return {
        "id": f"{key}|{digest}", "points": _b64(xy[keep]),
        "extent": [float(c[0] - half), float(c[0] + half), float(c[1] - half), float(c[1] + half)],
        "axis_titles": list(axes), "class_names": _classes if labels is not None else None,
        "labels": _b64(labels[keep].astype(np.uint8)) if labels is not None else None,
        "caption": (f"The points of the map above. Dragging decodes the place under the pointer: the distance-weighted "
                    f"mean μ of its {_nmap.k} nearest points on the map."),
        "projection": None,
        "inverse": {"xy": _b64(xy[inv]), "mu": _b64(mu[inv]), "k": int(_nmap.k), "L": int(mu.shape[1])},
    }


@st.cache_resource(max_entries=32, show_spinner=False)
def pad_data(key: str, digest: str, _active: state.ActiveModel, _proj: Projection) -> dict[str, Any] | None:
    """The pad: held-out points on the plane of `_proj`, their labels, the plane itself (~12 kB of JSON per run)."""
    held = _heldout(_active)
    if held is None or not len(held[0]) or _active.config.latent_dim < 2:
        return None
    mu, labels, classes = held
    keep = np.linspace(0, len(mu) - 1, min(len(mu), MAX_PAD_POINTS)).astype(int)
    xy = _proj.transform(mu[keep]).astype(np.float32)  # (N, 2)
    half = float(max(1.0, 1.1 * np.percentile(np.abs(xy), 99.5)))
    if _proj.method == "pca":
        axes = [f"PC1 ({_proj.explained[0]:.0%})", f"PC2 ({_proj.explained[1]:.0%})"]
        caption = (f"Held-out set on a PCA plane ({_proj.explained.sum():.0%} of the variance of z). Dragging moves z "
                   "within the plane; the other directions stay.")
    else:
        axes = ["z₁", "z₂"]
        caption = "Held-out set. Drag the ring, or focus the pad and use the arrow keys."
    return {
        "id": f"{key}|{digest}", "points": _b64(xy), "extent": [-half, half, -half, half], "axis_titles": axes,
        "caption": caption, "class_names": classes if labels is not None else None,
        "labels": _b64(labels[keep].astype(np.uint8)) if labels is not None and labels.max() < 256 else None,
        "projection": {"mean": _proj.mean.tolist(), "components": _proj.components.tolist()},
    }


def current_z(value_key: str, latent_dim: int) -> np.ndarray:
    """st.session_state[value_key] as a float32 (L,) array; the prior's mean when absent or unusable."""
    raw = st.session_state.get(value_key)
    try:
        z = np.asarray(raw.detach().cpu() if hasattr(raw, "detach") else raw, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        z = None
    if z is None or z.shape != (latent_dim,) or not np.isfinite(z).all():
        z = np.zeros(latent_dim, np.float32)
        _store(value_key, z)
    return z


def _valid_z(value: Any, latent_dim: int) -> np.ndarray | None:
    try:
        z = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        return None
    return z if z.shape == (latent_dim,) and np.isfinite(z).all() else None


def _json_z(z: np.ndarray) -> list[float]:
    # float32 -> shortest decimals: the browser's copy is the number it committed (0.78, not 0.7799999713897705).
    return [round(float(v), 6) for v in z]


def _server_image(model: vae.VAE, z: np.ndarray, seq: int) -> dict[str, Any]:
    """One decode for the conv fallback, as bytes in torch's (C, H, W) order."""
    x = vae.decode(model, z[None])[0].numpy()
    pixels = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
    return {"seq": seq, "z": _json_z(z), "pixels": _b64(pixels)}


def _store(value_key: str, z: np.ndarray) -> None:
    """Write z back in the form the page keeps it: a list stays a list, anything else becomes a float32 array."""
    st.session_state[value_key] = _json_z(z) if isinstance(st.session_state.get(value_key), list) else z


def _callbacks(key: str, value_key: str, latent_dim: int, on_change: Callable[[], None] | None) -> dict[str, Any]:
    """on_<state>_change handlers: they run before the rerun the browser asked for."""

    def component_state() -> dict[str, Any]:
        return components.component_state(key)

    def on_z() -> None:
        z = _valid_z(component_state().get("z"), latent_dim)
        if z is not None:
            _store(value_key, z)
            st.session_state[f"_latent_control_released:{key}"] = True
            if on_change is not None:
                on_change()

    def on_preview() -> None:
        p = component_state().get("preview")
        if isinstance(p, dict) and isinstance(p.get("seq"), int):
            z = _valid_z(p.get("z"), latent_dim)
            if z is not None:
                st.session_state[f"_latent_control_preview:{key}"] = (p["seq"], z)

    return {"on_z_change": on_z, "on_models_change": components.remember_ids(key, "models", BROWSER_MODELS),
            "on_pads_change": components.remember_ids(key, "pads", BROWSER_PADS), "on_preview_change": on_preview}


def _render(active: state.ActiveModel, value_key: str, key: str, dims: list[int] | None, pad: bool,
            projection, image_px: int, pad_px: int, on_change: Callable[[], None] | None, pad_labels=None,
            release_scope: str = "app") -> None:
    payload = model_payload(active.key, active)
    pad_json = None
    if pad and active.config.latent_dim >= 2:
        try:
            proj = projection if projection is not None else state.projection(active)
            if isinstance(proj, Projection):
                pad_json = pad_data(active.key, _projection_digest(proj), active, proj)
            else:  # a nonlinear map with a neighbour inverse (the latent map's t-SNE / UMAP)
                labels, classes, axes = pad_labels or (None, None, ("map 1", "map 2"))
                pad_json = neighbour_pad_data(active.key, _projection_digest(proj), proj, labels, classes, tuple(axes))
        except (vae.DataError, OSError):
            pad_json = None  # the data set is gone (a folder moved): sliders only
    L = active.config.latent_dim
    z = current_z(value_key, L)
    send = payload.id not in st.session_state.get(BROWSER_MODELS, [])
    pad_id = pad_json["id"] if pad_json else None
    send_pad = pad_id is not None and pad_id not in st.session_state.get(BROWSER_PADS, [])
    data: dict[str, Any] = {
        "key": key, "payload_id": payload.id, "z": _json_z(z), "span": payload.span, "dims": dims,
        "pad_id": pad_id, "pad": pad_json if send_pad else None, "image_px": image_px, "pad_px": pad_px,
        "payload": payload.json if send else None,
    }
    if not payload.in_browser:
        seq, shown = st.session_state.pop(f"_latent_control_preview:{key}", (0, z))
        data["image"] = _server_image(active.model, shown, seq)
    # Sent as a one-element list: Streamlit scans a dict's values for data frames, and that check imports pandas
    # and pyarrow into the server (~70 MB, 0.6 s) on the first Explore; a list goes out as plain JSON.
    _component(key=key, data=[data], **_callbacks(key, value_key, L, on_change))
    released = st.session_state.pop(f"_latent_control_released:{key}", False)
    ctx = get_script_run_ctx()
    if released and release_scope == "app" and ctx is not None and ctx.fragment_ids_this_run:
        st.rerun(scope="app")  # a release re-ran only this fragment: run the page so everything follows z


def latent_control(active: state.ActiveModel, value_key: str, *, key: str | None = None, dims: list[int] | None = None,
                   pad: bool = True, projection=None, image_px: int = 196, pad_px: int = 280,
                   on_change: Callable[[], None] | None = None, pad_labels=None, fragment: bool = True,
                   release_scope: str = "app") -> np.ndarray:
    """Draw the live control for the active model; returns this run's z (L,), also st.session_state[value_key].

    dims: which dimensions get a slider (all when None; [] for none); the others keep their values. The pad shows
    the held-out points on `projection`'s plane (default: state.projection, raw z for 2-D latents, PCA otherwise)
    for latent_dim >= 2 when `pad`; dragging on it moves z parallel to that plane. `projection` may instead be a
    nonlinear map with a neighbour inverse (vae.projections.NeighbourMap, with pad_labels = (labels, class names,
    axis titles)): then dragging sets z to the inverse of the place under the pointer. on_change runs
    (as a widget callback, before the rerun) when a release changes z. Browser round trips (the weights'
    acknowledgement, server previews) re-run only this control; a release re-runs the page.

    fragment=False draws the control inline, without a fragment of its own, for a caller that is itself a fragment
    and draws other things before the control in the same block (the latent map); the control's round trips then
    re-run the caller's fragment. A fragment nested there is not safe in Streamlit 1.67: when the outer fragment's
    rerun is queued behind a full run (a component in it reports state during that run, as the map's scatter does
    on a new layer), the full run's unsent outer deltas are dropped from the send queue while the nested fragment's
    deltas after them are kept, and the browser, given an element past the end of a block it has just built,
    throws "Bad delta path index" inside React's state update: the whole page goes blank (issue 11).

    release_scope="fragment" (with fragment=False, inside the caller's fragment) lets a release re-run only the
    caller's fragment, for a page whose every z-dependent part is in that fragment (Explore): one short run per
    release instead of the control's run followed by the whole page's.
    """
    if release_scope not in ("app", "fragment"):
        raise ValueError(f"release_scope is 'app' or 'fragment', not {release_scope!r}")
    key = key or f"{value_key}_control"
    if "__" in key:
        raise ValueError("the control's key must not contain '__' (Streamlit's event delimiter)")
    z = current_z(value_key, active.config.latent_dim)
    dims = None if dims is None else [int(d) for d in dims]
    render = st.fragment(_render) if fragment else _render
    render(active, value_key, key, dims, pad, projection, image_px, pad_px, on_change, pad_labels, release_scope)
    return z
