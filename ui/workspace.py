"""The current image of this browser tab, and Interpolate's second endpoint.

One image follows the user from page to page (upload, drawing, data-set index, generated sample, map point):
Reconstruct, Interpolate (as endpoint A), Denoise and Explore start from it, and it survives page and model
switches because it is kept at its own size in st.session_state (one session per browser tab) and adapted to each
model's input when asked (vae.adapt). An upload is decoded once, when it is set.

Contract used by other pages (pages/map.py):
    current_image() -> CurrentImage | None
    input_for(active) -> torch.Tensor | None
    set_current_image(x, source) -> None
    set_endpoint("A" | "B", x, source) -> None
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import streamlit as st
import torch

from ui.safe import md
from vae.adapt import adapt, decode_upload, try_adapt
from vae.data import DataError, Preprocessed

KEY = "ws_current"  # st.session_state key of the current image (endpoint A)
KEY_B = "ws_endpoint_b"  # Interpolate's endpoint B
KINDS = ("upload", "drawing", "dataset", "sample", "map", "image")
RAW_KINDS = ("upload", "drawing")  # photos of ink on paper: they get the model's preprocessing (MNIST recipe)


@dataclass(frozen=True)
class CurrentImage:
    x: torch.Tensor  # (C, H, W) float in [0, 1], at its own size
    source: str  # shown to the user: "upload five.png", "held-out #12 (mnist5k)", "map point"
    kind: str = "image"  # one of KINDS
    digest: str = ""  # of the pixels: a cache key for what is computed from this image

    @property
    def raw(self) -> bool:
        return self.kind in RAW_KINDS


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def _make(x: torch.Tensor, source: str, kind: str) -> CurrentImage:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    x = x.detach().cpu().float()
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 3) or not torch.isfinite(x).all():
        raise ValueError(f"the current image must be (1 or 3, H, W) finite values, not {tuple(x.shape)}")
    x = x.clamp(0, 1).contiguous()
    return CurrentImage(x, str(source), kind if kind in KINDS else "image", _digest(x))


def current_image() -> CurrentImage | None:
    """This tab's current image, or None."""
    return st.session_state.get(KEY)


def set_current_image(x: torch.Tensor, source: str, kind: str = "image") -> None:
    """Make x (C, H, W) in [0, 1], at its own size, this tab's current image (and Interpolate's endpoint A)."""
    st.session_state[KEY] = _make(x, source, kind)


def set_endpoint(slot: str, x: torch.Tensor, source: str, kind: str = "image") -> None:
    """Set Interpolate's endpoint A (which is the current image) or B."""
    if slot == "A":
        set_current_image(x, source, kind)
    elif slot == "B":
        st.session_state[KEY_B] = _make(x, source, kind)
    else:
        raise ValueError(f"slot must be 'A' or 'B', not {slot!r}")


def endpoint(slot: str) -> CurrentImage | None:
    """Interpolate's endpoint A (the current image) or B."""
    return current_image() if slot == "A" else st.session_state.get(KEY_B)


def clear(slot: str = "A") -> None:
    st.session_state.pop(KEY if slot == "A" else KEY_B, None)


def set_upload(data: bytes, name: str, kind: str = "upload") -> CurrentImage:
    """Decode an uploaded file (or a drawing's PNG) once and make it the current image; DataError if unusable.

    The same bytes again (a rerun with the uploader still holding the file) are not decoded again.
    """
    digest = hashlib.sha256(data).hexdigest()[:16]
    cur = current_image()
    if cur is not None and st.session_state.get("ws_upload_digest") == (digest, cur.digest):
        return cur
    x = decode_upload(data)
    set_current_image(x, f"{'drawing' if kind == 'drawing' else 'upload ' + name}", kind)
    cur = current_image()
    st.session_state["ws_upload_digest"] = (digest, cur.digest)
    return cur


def default_digit_style(active) -> bool:
    """Whether the current image should get the MNIST recipe for this model (grey digit models, raw images)."""
    from vae.reconstruction import uses_digit_style

    return uses_digit_style(tuple(active.config.input_shape), active.ck.dataset)


def prepared_for(active, digit_style: bool | None = None, image: CurrentImage | None = None) -> Preprocessed | None:
    """The current image (or `image`) as the active model's input, with every step; None if there is none.

    Raises DataError when it cannot be adapted (a blank drawing under the MNIST recipe, say).
    """
    image = image or current_image()
    if image is None:
        return None
    style = default_digit_style(active) if digit_style is None else digit_style
    return adapt(image.x, tuple(active.config.input_shape), image.raw, style and image.raw)


def input_for(active, image: CurrentImage | None = None) -> torch.Tensor | None:
    """The current image as the active model's input (C, H, W), or None if there is none or it cannot be adapted."""
    image = image or current_image()
    if image is None:
        return None
    style = default_digit_style(active) and image.raw
    return try_adapt(image.x, tuple(active.config.input_shape), image.raw, style)


def tray() -> None:
    """The sidebar's tray: the current image's thumbnail, where it came from, and a clear button."""
    from ui.widgets import show_image

    with st.sidebar:
        cur = current_image()
        b = endpoint("B")
        if cur is None and b is None:
            return
        st.subheader("Current image")
        if cur is not None:
            c1, c2 = st.columns([1, 2], vertical_alignment="center")
            with c1:
                show_image(cur.x, 56, test_id="tray-current")
            c2.caption(md(cur.source))
            c2.button("Clear", key="ws_clear", icon=":material/close:", on_click=clear, args=("A",),
                      help="Forget the current image (Reconstruct, Interpolate's A, Denoise and Explore start from it).")
        if b is not None:
            c1, c2 = st.columns([1, 2], vertical_alignment="center")
            with c1:
                show_image(b.x, 56, test_id="tray-b")
            c2.caption(f"Interpolate's B: {md(b.source)}")
            c2.button("Clear B", key="ws_clear_b", icon=":material/close:", on_click=clear, args=("B",))
