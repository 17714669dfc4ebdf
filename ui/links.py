"""Links that reproduce a view: the page (its URL path), the model, and each page's state in the URL's query string.

Widgets whose value is a page's main setting are bound to the URL by Streamlit (`bind="query-params"`); this module
carries what no widget holds: the model (by checkpoint name), Explore's z, the current image when it is a data-set
image, and (for pages/map.py) a projection, a colouring and a picked point. A URL's values are applied the first time
a page runs in a browser tab; after that the page writes its state back on every run. A value that cannot be used (an
unknown model, a z of the wrong length, not a number, NaN, 1e308) is dropped from the URL with a small notice, never
an exception.
"""
from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from ui.components import from_folder

MAX_CHARS = 20_000  # longer query values are not parsed at all
MAX_ABS = 1e3  # latent coordinates and map positions beyond this are not a place anyone means
NOTICES = "links_notices"
READ = "links_read"  # scopes (pages) whose URL values this tab has applied

_copy = from_folder("vae_copy_link", "copy_link")


def notice(text: str) -> None:
    """A small notice (a toast) about a link's value that was ignored; the tab's last few are kept for tests."""
    st.toast(text, icon=":material/link_off:")
    kept = st.session_state.setdefault(NOTICES, [])
    kept.append(text)
    del kept[:-20]


def first_visit(scope: str) -> bool:
    """True the first time `scope` (a page) runs in this tab: the moment to apply the URL's values to the state."""
    done = st.session_state.setdefault(READ, set())
    if scope in done:
        return False
    done.add(scope)
    return True


def raw(name: str) -> str | None:
    """A query parameter's value (the last if repeated), or None; absurdly long values are refused with a notice."""
    if name not in st.query_params:
        return None
    value = st.query_params.get(name)
    if value is None:
        return None
    if len(value) > MAX_CHARS:
        drop(name, f"the link's {name!r} is {len(value):,} characters long")
        return None
    return value


def drop(name: str, why: str) -> None:
    """Remove an unusable parameter from the URL, saying why."""
    notice(f"Ignored {why}.")
    write(name, None)


def floats(name: str, n: int | None = None, limit: float = MAX_ABS) -> list[float] | None:
    """Comma-separated finite numbers with |v| <= limit (and exactly n of them when n is given), or None."""
    value = raw(name)
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    try:
        out = [float(p) for p in parts]
    except ValueError:
        drop(name, f"the link's {name}={_short(value)}: not a list of numbers")
        return None
    if not all(math.isfinite(v) and abs(v) <= limit for v in out):
        drop(name, f"the link's {name}={_short(value)}: every value must be a finite number within ±{limit:g}")
        return None
    if n is not None and len(out) != n:
        drop(name, f"the link's {name}: {len(out)} value(s), and this model needs {n}")
        return None
    return out


def integer(name: str, lo: int, hi: int) -> int | None:
    """An integer in [lo, hi], or None."""
    value = raw(name)
    if value is None:
        return None
    try:
        v = int(value.strip())
    except ValueError:
        drop(name, f"the link's {name}={_short(value)}: not a whole number")
        return None
    if not lo <= v <= hi:
        drop(name, f"the link's {name}={v}: it must be between {lo} and {hi}")
        return None
    return v


def choice(name: str, options: list[str]) -> str | None:
    """One of `options`, or None."""
    value = raw(name)
    if value is None:
        return None
    if value not in options:
        drop(name, f"the link's {name}={_short(value)}: choose one of {', '.join(options[:8])}")
        return None
    return value


def write(name: str, value) -> None:
    """Put a value in the URL (floats as the shortest text that reads back as the same float32), or remove it (None)."""
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
        return
    if isinstance(value, (list, tuple)):
        text = ",".join(_f32(v) for v in value)
    elif isinstance(value, float):
        text = _f32(value)
    else:
        text = str(value)
    if st.query_params.get(name) != text:
        st.query_params[name] = text


def _f32(v: float) -> str:
    import numpy as np

    return f"{float(np.float32(v)):.9g}"  # 9 significant digits identify a float32: the decoder sees the same z


def _short(value: str, n: int = 24) -> str:
    return value if len(value) <= n else value[: n - 1] + "…"


# ---------------------------------------------------------------------------------------------- the app's params


def apply_model() -> None:
    """?model=NAME (a checkpoint's file name without .safetensors): make it the tab's model, once per tab."""
    from ui import state

    if not first_visit("model"):
        return
    name = raw("model")
    if name is None:
        return
    names = {p.stem: p for p in state.checkpoint_files()}
    if name not in names:
        drop("model", f"the link's model {_short(name)!r}: there is no such checkpoint here")
        return
    st.session_state["model_key"] = f"path:{names[name]}"


def model_value() -> str | None:
    """What ?model= says for the current model: its file's stem, or None (a model trained or uploaded in a tab)."""
    key = st.session_state.get("model_key") or ""
    return Path(key[5:]).stem if key.startswith("path:") else None


def write_model() -> None:
    """Keep ?model= on the current model when it is a file (a model trained or uploaded in a tab has no link)."""
    write("model", model_value())


def notices_ui(container) -> None:
    """The values this tab's link had that were ignored, as small captions (a toast alone is gone in seconds)."""
    kept = st.session_state.get(NOTICES, [])
    if kept:
        with container:
            for text in kept[-4:]:
                st.caption(f":material/link_off: Link: {text}")


def copy_link_ui() -> None:
    """The sidebar's 'copy link' control, with what a link cannot carry."""
    with st.sidebar:
        _copy(key="copy_link", data={"label": "Copy link to this view"})
        key = st.session_state.get("model_key") or ""
        if key and not key.startswith("path:"):
            st.caption("This model lives in this tab only: a link opens the default model instead. Save it (Train) "
                       "to share it.")
