"""The latent map's scatter: a components-v2 element (ui/scatter/) that draws up to 100,000 points on a canvas, pans and
zooms, shows each point's image under the pointer from a thumbnail atlas held in the tab, and selects with a box or a
lasso. Measured against Plotly's WebGL scatter in bench/map_latency.py.

    scatter_map("map_scatter", layer, atlas_id, atlas, marks=[...])   # picks and selections land in session state:
    st.session_state["map_scatter:pick"]    # {"kind": "point", "index": i} | {"kind": "position", "xy": [x, y]}
    st.session_state["map_scatter:select"]  # {"ids": [...], "how": "box" | "lasso"}

Big payloads travel once per tab: the layer (positions and colours of one map) and the atlas (one PNG of every
point's image), each sent only while the browser's report of what it holds lacks it.
"""
from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import streamlit as st
import torch
from PIL import Image

from ui import components
from ui.components import b64 as _b64, from_folder
from ui.plots import PALETTE

_component = from_folder("vae_map_scatter", "scatter")
HELD = "_map_scatter_held"  # ids the browser tab holds, as its JS last reported
ATLAS_COLS = 256


def viridis(n: int = 256) -> list[str]:
    """Viridis as n hex colours (matplotlib's, sampled through plotly's named scale)."""
    from plotly.colors import sample_colorscale

    out = []
    for c in sample_colorscale("Viridis", [i / (n - 1) for i in range(n)]):
        r, g, b = (int(round(float(v))) for v in c[c.index("(") + 1: -1].split(","))
        out.append(f"#{r:02x}{g:02x}{b:02x}")
    return out


@dataclass(frozen=True)
class Layer:
    id: str
    body: dict[str, Any]
    n: int


def make_layer(geometry: str, xy: np.ndarray, labels: np.ndarray | None, class_names: list[str] | None,
               values: np.ndarray | None, value_title: str, axes: tuple[str, str]) -> Layer:
    """Positions (N, 2) coloured by class (labels) or by a value (a 256-step viridis), as the browser's payload."""
    xy = np.ascontiguousarray(xy, dtype=np.float32)
    body: dict[str, Any] = {"kind": "layer", "points": _b64(xy), "axes": list(axes), "geometry": geometry}
    if values is None and labels is not None:
        k = int(labels.max()) + 1 if len(labels) else 1
        names = [class_names[c] if class_names and c < len(class_names) else str(c) for c in range(k)]
        body.update(color=_b64((labels % len(PALETTE)).astype(np.uint8)), palette=PALETTE,
                    legend=[[names[c], PALETTE[c % len(PALETTE)]] for c in range(k) if (labels == c).any()])
    else:
        v = np.zeros(len(xy)) if values is None else np.asarray(values, np.float64)
        lo, hi = (float(np.nanpercentile(v, 1)), float(np.nanpercentile(v, 99))) if len(v) else (0.0, 1.0)
        idx = np.clip((v - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8)
        body.update(color=_b64(idx), palette=viridis(), colorbar={"title": value_title, "lo": f"{lo:.3g}", "hi": f"{hi:.3g}"})
    if labels is not None and labels.max(initial=0) < 256:
        body["labels"] = _b64(labels.astype(np.uint8))
        k = int(labels.max(initial=0)) + 1
        body["names"] = [class_names[c] if class_names and c < len(class_names) else str(c) for c in range(k)]
    digest = hashlib.sha256(f"{geometry}|{len(xy)}|".encode() + hashlib.sha256(body["color"].encode()).digest()).hexdigest()[:16]
    body["id"] = f"layer:{digest}"
    return Layer(body["id"], body, len(xy))


def atlas_png(x: torch.Tensor, cols: int = ATLAS_COLS) -> dict[str, Any]:
    """Every image (N, C, H, W) in [0, 1] tiled into one PNG, `cols` per row: the hover thumbnails."""
    n, c, h, w = x.shape
    rows = max(1, -(-n // cols))
    px = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    if n < rows * cols:
        px = torch.cat([px, torch.zeros(rows * cols - n, c, h, w, dtype=torch.uint8)])
    tiles = px.view(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c).numpy()
    img = Image.fromarray(tiles[..., 0] if c == 1 else tiles[..., :3], mode="L" if c == 1 else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # fast: the atlas is made once per data set, sent once per tab
    return {"kind": "atlas", "png": base64.b64encode(buf.getvalue()).decode("ascii"), "n": n, "w": w, "h": h,
            "cols": cols}


def _callbacks(key: str, on_pick: Callable[[], None] | None, on_select: Callable[[], None] | None) -> dict[str, Any]:
    def component_state() -> dict[str, Any]:
        return components.component_state(key)

    def pick() -> None:
        p = component_state().get("pick")
        if not isinstance(p, dict):
            return
        if p.get("kind") == "point" and isinstance(p.get("index"), int):
            st.session_state[f"{key}:pick"] = {"kind": "point", "index": int(p["index"])}
        elif p.get("kind") == "position" and isinstance(p.get("xy"), list) and len(p["xy"]) == 2:
            xy = [float(v) for v in p["xy"]]
            if all(np.isfinite(xy)):
                st.session_state[f"{key}:pick"] = {"kind": "position", "xy": xy}
        else:
            return
        if on_pick is not None:
            on_pick()

    def select() -> None:
        s = component_state().get("select")
        if isinstance(s, dict) and isinstance(s.get("ids"), list):
            ids = [int(i) for i in s["ids"] if isinstance(i, int)]
            st.session_state[f"{key}:select"] = {"ids": ids, "how": str(s.get("how", ""))}
            if on_select is not None:
                on_select()

    return {"on_held_change": components.remember_ids(key, "held", HELD), "on_pick_change": pick,
            "on_select_change": select}


def scatter_map(key: str, layer: Layer, atlas_id: str | None = None, atlas: Callable[[], dict] | None = None, *,
                marks: list[dict] | None = None, ellipse: np.ndarray | None = None, status: str = "",
                height: int = 560, clickable: bool = True, selection_reset: int = 0,
                on_pick: Callable[[], None] | None = None, on_select: Callable[[], None] | None = None) -> None:
    """Draw the map. `atlas` makes the thumbnail payload when the tab lacks it (called after the layer is held)."""
    held = st.session_state.get(HELD, [])
    data: dict[str, Any] = {
        "key": key, "layer_id": layer.id, "layer": None if layer.id in held else layer.body, "atlas_id": atlas_id,
        "atlas": None, "marks": marks or [], "ellipse": None if ellipse is None else np.round(ellipse, 5).tolist(),
        "status": status, "height": height, "clickable": clickable, "selection_reset": selection_reset,
    }
    # The atlas follows the layer: first paint is not held up by megabytes of thumbnails.
    if atlas_id and atlas is not None and layer.id in held and atlas_id not in held:
        data["atlas"] = {**atlas(), "id": atlas_id}
    # Sent as a one-element list, like the latent control's: for a dict Streamlit scans the values for data frames,
    # and that check imports pandas and pyarrow into the server (~70 MB, 0.6 s) on the first map.
    _component(key=key, data=[data], **_callbacks(key, on_pick, on_select))
