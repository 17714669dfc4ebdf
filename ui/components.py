"""What the app's components-v2 elements (ui/latent_control, ui/scatter, the copy-link button) share: loading a
component from its folder, the bytes they send as base64, and the ids a browser tab reports it holds."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Callable

import numpy as np
import streamlit as st

UI = Path(__file__).parent


def from_folder(name: str, folder: str):
    """st.components.v2.component `name` from ui/<folder>/<folder>.html, .css and .js."""
    assets = UI / folder
    return st.components.v2.component(
        name,
        html=(assets / f"{folder}.html").read_text(encoding="utf-8"),
        css=(assets / f"{folder}.css").read_text(encoding="utf-8"),
        js=(assets / f"{folder}.js").read_text(encoding="utf-8"),
    )


def b64(a: np.ndarray) -> str:
    """An array's raw bytes as base64 (the browser reads them into a typed array)."""
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def component_state(key: str) -> dict[str, Any]:
    """The state a component instance last reported (a dict; empty before its first report)."""
    s = st.session_state.get(key)
    return s if isinstance(s, dict) else {}


def remember_ids(key: str, name: str, session_key: str) -> Callable[[], None]:
    """An on_<name>_change callback: keep the ids (payloads, layers, pads) the browser tab says it holds in
    st.session_state[session_key], so that Python sends each one once per tab."""

    def on_change() -> None:
        ids = component_state(key).get(name)
        if isinstance(ids, list):
            st.session_state[session_key] = [i for i in ids if isinstance(i, str)]

    return on_change
