"""Small render helpers shared by pages: images inlined as data URIs, rows of images with captions.

Images go into the page as `<img src="data:image/png;base64,…">` inside one st.html element (st.markdown would shrink them): no media-file round
trip, so a decoded image is painted as soon as its delta arrives (this matters for the slider latency target).
"""
from __future__ import annotations

import base64
import html

import numpy as np
import streamlit as st
import torch

from vae.applications import png_bytes


SVG_IMAGE_INK = "#808495"  # text and axes of an SVG shown as an image: readable on light and dark backgrounds


def img_tag(image: torch.Tensor | np.ndarray, width: int, title: str = "", test_id: str = "") -> str:
    """An <img> with the image inlined, its longer side drawn at `width` CSS pixels with crisp pixels."""
    data = png_bytes(image)
    h, w = _png_size(data)
    scale = width / max(h, w)
    b64 = base64.b64encode(data).decode("ascii")
    attrs = f' title="{html.escape(title)}"' if title else ""
    attrs += f' data-testid="{html.escape(test_id)}"' if test_id else ""
    return (f'<img src="data:image/png;base64,{b64}" width="{round(w * scale)}" height="{round(h * scale)}" '
            f'alt="{html.escape(title)}"{attrs} style="image-rendering: pixelated; border-radius: 4px; background: #000; max-width: 100%; height: auto; outline: 1px solid #d0d0d0;">')


def _png_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk."""
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")


def show_image(image: torch.Tensor | np.ndarray, width: int = 224, caption: str = "", test_id: str = "") -> None:
    """One image with an optional caption under it."""
    cap = f'<div style="font-size: 0.8rem; color: inherit; opacity: 0.72; margin-top: 2px;">{html.escape(caption)}</div>' if caption else ""
    st.html(f"<div>{img_tag(image, width, caption, test_id)}{cap}</div>")


def show_svg(markup: str, as_image: bool = False, test_id: str = "") -> None:
    """Inline SVG built by ui.svgplot (every text in it escaped there). st.html's sanitiser removes <svg> elements, so
    this goes through st.markdown's raw HTML: the markup is one line, so it is one HTML block, not markdown; its
    text takes the theme's colour and its points show tooltips. `as_image` sends it as an <img> instead, for large
    charts (1,000 points: the browser parses an image natively, where the markdown renderer's HTML parser spent
    ~250 ms); an image has no tooltips and cannot follow the theme, so its text and axes are a grey that reads on both.
    """
    if as_image:
        data = base64.b64encode(markup.replace("currentColor", SVG_IMAGE_INK).encode()).decode("ascii")
        tid = f' data-testid="{html.escape(test_id)}"' if test_id else ""
        st.html(f'<img src="data:image/svg+xml;base64,{data}" alt="chart"{tid} style="width: 100%; max-width: 100%;">')
        return
    st.markdown(markup.replace("\n", " "), unsafe_allow_html=True)


CAPTION_STYLE = "font-size: 0.875rem; opacity: 0.6;"  # st.caption's look: small, the text colour at 60 %


def caption_html(text: str) -> str:
    """`text` escaped, looking like st.caption, as a paragraph for inside one st.html element."""
    return f'<p style="margin: 0 0 0.5rem; {CAPTION_STYLE}">{html.escape(text)}</p>'


def image_row(images: list[torch.Tensor | np.ndarray], captions: list[str] | None = None, width: int = 84,
              test_id: str = "", stacked: bool = False, note: str = "") -> None:
    """Images side by side (wrapping), each with a caption under it, in one element; `stacked` puts them one under
    another with the caption on the left (rows of a traversal, say). `note` is a caption above them, in the same
    element (one message, one browser render fewer than an st.caption beside it)."""
    captions = captions or [""] * len(images)
    tid = f' data-testid="{html.escape(test_id)}"' if test_id else ""
    head = caption_html(note) if note else ""
    if stacked:
        rows = "".join(
            f'<div style="display: flex; align-items: center; gap: 10px; margin-bottom: 4px;">'
            f'<span style="font-size: 0.8rem; color: inherit; opacity: 0.72; min-width: 90px; text-align: right;">{html.escape(cap)}</span>'
            f'{img_tag(im, width, cap)}</div>' for im, cap in zip(images, captions))
    else:
        cells = "".join(
            f'<figure style="margin: 0 6px 6px 0; text-align: center;">{img_tag(im, width, cap)}'
            f'<figcaption style="font-size: 0.75rem; color: inherit; opacity: 0.72; max-width: {width + 20}px;">{html.escape(cap)}</figcaption></figure>'
            for im, cap in zip(images, captions))
        rows = f'<div style="display: flex; flex-wrap: wrap;">{cells}</div>'
    st.html(f"<div{tid}>{head}{rows}</div>")


def table_markdown(rows: list[dict[str, object]], formats: dict[str, str] | None = None) -> str:
    """Rows (dicts with the same keys) as a markdown table: every cell escaped with ui.safe.md (a file or run name
    cannot be a link or split a column), numbers formatted by `formats` ({column: format spec}) and right-aligned,
    None as "–"."""
    from ui.safe import md

    formats = formats or {}
    columns = list(rows[0]) if rows else []

    def cell(col: str, v: object) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "–"
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
            return format(v, formats.get(col, ""))  # digits, sign, point, e, %: nothing markdown reads
        return md(v) or " "

    numeric = [all(isinstance(r.get(c), (int, float, np.number, type(None))) and not isinstance(r.get(c), bool)
                   for r in rows) and any(r.get(c) is not None for r in rows) for c in columns]
    lines = ["| " + " | ".join(md(c) or " " for c in columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(cell(c, r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def table(rows: list[dict[str, object]], formats: dict[str, str] | None = None) -> None:
    """A small table as markdown (see table_markdown). st.dataframe and st.table would import pandas and pyarrow
    into the server for a few rows: ~76 MB resident that stays, and 0.5 s on first use."""
    st.markdown(table_markdown(rows, formats))


def key_value_table(rows: dict[str, object], header: tuple[str, str] = ("", "value")) -> None:
    """A two-column table (label, value) as markdown."""
    table([{header[0]: k, header[1]: v} for k, v in rows.items()])
