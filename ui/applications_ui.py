"""Widgets and caches shared by the application pages (interpolate, generate, denoise, evaluate).

Pages hand their computations to vae.applications; this module only picks inputs, shows images and keeps the
results that are too slow to redo on every rerun.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import streamlit as st
import torch

import vae
from ui import safe, state
from ui.safe import md
from vae import applications as apps
from vae.data import to_uint8

# The map page may hand two endpoints to /interpolate under this key: a list of two items, each either an int
# (a row of the held-out set, as the map's point indices are) or a list of latent_dim floats (a point of the map,
# e.g. Projection.inverse of a click on empty space).
INTERP_ENDPOINTS = "interp_endpoints"

SOURCES = {"heldout": "held-out", "upload": "upload", "map": "latent map"}
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "webp", "gif"]


def claim(text: str) -> None:
    """The article's claim for this page, with the live numbers that test it."""
    st.info(text, icon=":material/menu_book:")


def scale_for(shape: tuple[int, ...], target: int = 112) -> int:
    """Nearest-neighbour factor that shows an image about `target` pixels wide (28 -> 4, 8 -> 14)."""
    return max(1, round(target / shape[-1]))


def image(x: torch.Tensor | np.ndarray, caption: str | None = None, target: int = 112) -> None:
    """One image (C, H, W) in [0, 1] or uint8 (H, W[, 3]), enlarged with crisp pixels."""
    a = x if isinstance(x, np.ndarray) and x.dtype == np.uint8 else to_uint8(x)
    big = apps.upscale(a, scale_for(a.shape[:2], target))
    st.image(big, caption=caption, width=big.shape[1])  # a fixed width: a long caption must not resize the image


def grid(images: torch.Tensor, nrow: int, caption: str | None = None, target: int = 84) -> np.ndarray:
    """Images (N, C, H, W) tiled nrow per row and shown; returns the enlarged uint8 grid for export."""
    g = apps.upscale(vae.data.grid(images, nrow), scale_for(images.shape, target))
    st.image(g, caption=caption)
    return g


def dataset_or_stop(active: state.ActiveModel) -> vae.Dataset:
    """The model's data set, or a clear message and the end of this run."""
    try:
        data = state.dataset_for(active)
    except vae.DataError as exc:
        st.error(f"The data set {md(repr(active.ck.dataset))} of this model cannot be loaded: {safe.error(exc)}")
        st.stop()
    if data.shape != tuple(active.config.input_shape):
        st.error(f"The data set's images are {data.shape}, but the model expects {tuple(active.config.input_shape)}.")
        st.stop()
    return data


def set_endpoints(a: int | np.ndarray | list[float], b: int | np.ndarray | list[float]) -> None:
    """For other pages (the latent map): hand two endpoints to /interpolate, each a held-out row or a latent vector."""
    st.session_state[INTERP_ENDPOINTS] = [e if isinstance(e, int) else [float(v) for v in np.asarray(e).ravel()]
                                          for e in (a, b)]


def map_endpoints(latent_dim: int, n_heldout: int) -> tuple[list[Any] | None, str | None]:
    """Endpoints left by the latent-map page: (two endpoints, None), (None, a reason they are unusable), or (None, None)."""
    raw = st.session_state.get(INTERP_ENDPOINTS)
    if raw is None:
        return None, None
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        return None, "the latent map's endpoints are not a pair"
    out: list[Any] = []
    for e in raw:
        if isinstance(e, (int, np.integer)) and not isinstance(e, bool):
            if not 0 <= int(e) < n_heldout:
                return None, f"held-out image #{int(e)} does not exist (there are {n_heldout})"
            out.append(int(e))
            continue
        try:
            z = torch.as_tensor(np.asarray(e, dtype=np.float32))
        except (TypeError, ValueError):
            return None, "an endpoint from the latent map is neither an index nor a latent vector"
        if z.shape != (latent_dim,) or not torch.isfinite(z).all():
            return None, f"an endpoint from the latent map is not {latent_dim} finite numbers (another model's?)"
        out.append(z)
    return out, None


def _describe(e: Any) -> str:
    return f"held-out #{e}" if isinstance(e, int) else "a point on the map"


def image_picker(active: state.ActiveModel, data: vae.Dataset, key: str, default_index: int = 0,
                 allow_map: int | None = None, preview: bool = True) -> tuple[torch.Tensor | None, str]:
    """An input chosen by held-out index, by upload, or (allow_map = 0 or 1) from the latent map's endpoints,
    shown small when `preview` and it is an image.

    Returns an image (C, H, W) or a latent vector (L,) and a short label; (None, reason) when there is none yet.
    """
    x, label = _pick(active, data, key, default_index, allow_map)
    if preview and x is not None and x.ndim == 3:
        image(x, f"input {label}", target=84)
    return x, label


def _pick(active: state.ActiveModel, data: vae.Dataset, key: str, default_index: int,
          allow_map: int | None) -> tuple[torch.Tensor | None, str]:
    n = len(data.x_test)
    endpoints, problem = map_endpoints(active.config.latent_dim, n) if allow_map is not None else (None, None)
    options = ["heldout", "upload"] + (["map"] if endpoints is not None else [])
    source = st.segmented_control("Source", options, default="map" if endpoints is not None else "heldout",
                                  format_func=SOURCES.get, key=f"{key}_source", required=True)
    if problem:
        st.caption(f"Not using the latent map's endpoints: {problem}.")
    if source == "map" and endpoints is not None:
        e = endpoints[allow_map]
        st.caption(f"From the latent map: {_describe(e)}.")
        return (data.x_test[e], f"#{e}") if isinstance(e, int) else (e, "map point")
    if source == "upload":
        up = st.file_uploader("Image", type=UPLOAD_TYPES, key=f"{key}_upload")
        digit_style = st.checkbox("Digit-style preprocessing", value=data.shape[0] == 1
                                  and data.name in ("mnist5k", "digits", "mnist"), key=f"{key}_digit",
                                  disabled=data.shape[0] != 1,
                                  help="As MNIST was made: dark ink on light paper is inverted, cropped to the strokes, "
                                       "fitted into 20×20 and centred by mass in 28×28.")
        if up is None:
            return None, "upload an image"
        try:
            pre = vae.preprocess_image(up.getvalue(), data.shape, digit_style=digit_style)
        except vae.DataError as exc:
            st.error(f"{md(up.name)}: {safe.error(exc)}")
            return None, "the upload could not be used"
        return pre.x, Path(up.name).stem[:20]
    i = st.number_input(f"Held-out image (0–{n - 1})", 0, n - 1, min(default_index, n - 1), key=f"{key}_index")
    return data.x_test[int(i)], f"#{int(i)}"


# ---------------------------------------------------------------- slow results, kept per model


@st.cache_resource(show_spinner=False)
def _results() -> dict[tuple, Any]:
    """Finished slow results (IWAE estimates, probes), shared by sessions: plain values, never modified once stored."""
    return {}


def cached(key: tuple) -> Any | None:
    return _results().get(key)


def memo(key: tuple, compute: Callable[[], Any]) -> Any:
    """compute() once per key for every session (for quick results that reruns would otherwise repeat)."""
    value = cached(key)
    if value is None:
        value = compute()
        _store(key, value)
    return value


def _store(key: tuple, value: Any) -> None:
    store = _results()
    if len(store) > 256:  # bounded: drop the oldest half
        for k in list(store)[:128]:
            store.pop(k, None)
    store[key] = value


def run_with_progress(key: tuple, text: str, compute: Callable[[Callable[[float], None]], Any]) -> Any:
    """compute(progress) under a progress bar; the result is kept under `key` for every session."""
    bar = st.progress(0.0, text=text)
    value = compute(lambda f: bar.progress(min(1.0, max(0.0, float(f))), text=text))
    bar.empty()
    _store(key, value)
    return value
