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
RAW_KINDS = ("upload", "drawing")
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "webp", "gif"]  # photos of ink on paper: they get the model's preprocessing (MNIST recipe)


@dataclass(frozen=True)
class CurrentImage:
    x: torch.Tensor  # (C, H, W) float in [0, 1], at its own size
    source: str  # shown to the user: "upload five.png", "held-out #12 (mnist5k)", "map point"
    kind: str = "image"  # one of KINDS
    digest: str = ""  # of the pixels: a cache key for what is computed from this image
    ref: str = ""  # "DATASET:INDEX" for a held-out image: what a link carries (an upload cannot travel in a URL)

    @property
    def raw(self) -> bool:
        return self.kind in RAW_KINDS


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def _make(x: torch.Tensor, source: str, kind: str, ref: str = "") -> CurrentImage:
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
    return CurrentImage(x, str(source), kind if kind in KINDS else "image", _digest(x), ref)


def current_image() -> CurrentImage | None:
    """This tab's current image, or None."""
    return st.session_state.get(KEY)


def set_current_image(x: torch.Tensor, source: str, kind: str = "image", ref: str = "") -> None:
    """Make x (C, H, W) in [0, 1], at its own size, this tab's current image (and Interpolate's endpoint A)."""
    st.session_state[KEY] = _make(x, source, kind, ref)


def set_endpoint(slot: str, x: torch.Tensor, source: str, kind: str = "image", ref: str = "") -> None:
    """Set Interpolate's endpoint A (which is the current image) or B."""
    if slot == "A":
        set_current_image(x, source, kind, ref)
    elif slot == "B":
        st.session_state[KEY_B] = _make(x, source, kind, ref)
    else:
        raise ValueError(f"slot must be 'A' or 'B', not {slot!r}")


def endpoint(slot: str) -> CurrentImage | None:
    """Interpolate's endpoint A (the current image) or B."""
    return current_image() if slot == "A" else st.session_state.get(KEY_B)


def clear(slot: str = "A") -> None:
    st.session_state.pop(KEY if slot == "A" else KEY_B, None)


def set_upload(data: bytes, name: str, kind: str = "upload", slot: str = "A", widget: str = "") -> CurrentImage | None:
    """Decode an uploaded file (or a drawing's PNG) once and put it in `slot`; DataError if it is not a usable image.

    `widget` names the uploader: the file it still holds is not decoded (or put back after a clear) on every rerun,
    only when it changes.
    """
    digest = hashlib.sha256(data).hexdigest()[:16]
    seen = st.session_state.setdefault("ws_seen_uploads", {})
    if widget and seen.get(widget) == digest:
        return endpoint(slot)
    seen[widget] = digest  # a bad file too: its message is shown once, not decoded again on every rerun
    x = decode_upload(data)
    set_endpoint(slot, x, "drawing" if kind == "drawing" else f"upload {name}", kind)
    return endpoint(slot)


def upload_ui(slot: str, key: str, label: str = "Upload an image") -> None:
    """A file uploader that puts a new file into `slot` (decoded once) and says so; errors in one line."""
    up = st.file_uploader(label, type=UPLOAD_TYPES, key=key,
                          help="PNG, JPEG, BMP, WebP or a GIF's first frame; it becomes "
                               + ("the current image (it follows you to other pages)." if slot == "A" else "endpoint B."))
    if up is None:
        return
    try:
        set_upload(up.getvalue(), up.name, "upload", slot, widget=key)
    except DataError as exc:
        from ui.safe import error, md

        st.error(f"{md(up.name)}: {error(exc)}", icon=":material/broken_image:")


def use_heldout(slot: str, data, i: int) -> None:
    """Put held-out image #i of a data set into `slot`."""
    i = int(i)
    if 0 <= i < len(data.x_test):
        set_endpoint(slot, data.x_test[i], f"held-out #{i} ({data.name})", "dataset", f"{data.name}:{i}")


def endpoint_ui(active, data, slot: str, key: str, default_index: int = 0) -> tuple[torch.Tensor | None, str]:
    """The image in `slot` (A: the current image) as this model's input, with ways to choose another: a held-out
    index or an upload. With an empty slot, held-out #default_index stands in (without filling the slot).

    Returns (input (C, H, W), a short label), or (None, why not).
    """
    n = len(data.x_test)
    with st.expander("Choose a held-out image or upload one", expanded=endpoint(slot) is None):
        c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
        c1.number_input(f"Held-out image (0–{n - 1})", 0, n - 1, min(default_index, n - 1), key=f"{key}_index")
        c2.button("Use", key=f"{key}_use", on_click=lambda: use_heldout(slot, data, st.session_state[f"{key}_index"]),
                  width="stretch")
        upload_ui(slot, f"{key}_upload")
    img = endpoint(slot)  # after the uploader: a new file is in the slot from this run on
    if img is None:
        i = min(default_index, n - 1)
        x, label, source = data.x_test[i], f"#{i}", f"held-out #{i} (default)"
    else:
        x, label, source = input_for(active, img), short(img.source), img.source
    st.caption(f"{'Current image' if slot == 'A' else 'Endpoint B'}: {source}")
    if img is not None and x is None:
        return None, f"the {'current image' if slot == 'A' else 'image in B'} ({img.source}) cannot be made into this model's input"
    return x, label


def short(source: str, n: int = 24) -> str:
    """A source for captions: 'upload five.png' -> 'five.png', cut to n characters."""
    s = source.removeprefix("upload ")
    return s if len(s) <= n else s[: n - 1] + "…"


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


LINK_PARAMS = {"A": "img", "B": "b"}
LINK_DATASETS = ("mnist5k", "digits", "shapes", "mnist", "fashion-mnist", "kmnist", "cifar10")  # never a folder path


def link_ui() -> None:
    """?img=DATASET:INDEX (the current image) and ?b=… (Interpolate's B): applied once per tab (write_link keeps them)."""
    from ui import links, state

    if links.first_visit("images"):
        for slot, name in LINK_PARAMS.items():
            value = links.raw(name)
            if value is None:
                continue
            dataset, _, index = value.rpartition(":")
            if dataset not in LINK_DATASETS or not index.isdigit():
                links.drop(name, f"the link's {name}={links._short(value)}: not DATASET:INDEX of a built-in data set")
                continue
            try:
                data = state.dataset(dataset)
            except Exception as exc:  # noqa: BLE001 - a data set that is not here: say so, keep going
                links.drop(name, f"the link's {name}: the data set {dataset!r} cannot be loaded here ({exc})")
                continue
            if int(index) >= len(data.x_test):
                links.drop(name, f"the link's {name}: {dataset} has {len(data.x_test)} held-out images, not #{index}")
                continue
            use_heldout(slot, data, int(index))


def write_link() -> None:
    """Keep ?img= and ?b= on the current image and B when they are data-set images (else drop them)."""
    from ui import links

    for slot, name in LINK_PARAMS.items():
        img = endpoint(slot)
        links.write(name, img.ref if img is not None and img.ref else None)


def tray(container=None) -> None:
    """The sidebar's tray: the current image's thumbnail, where it came from, and a clear button."""
    from ui.widgets import show_image

    with container if container is not None else st.sidebar:
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
