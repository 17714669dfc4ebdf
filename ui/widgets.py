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
    cap = f'<div style="font-size: 0.8rem; color: #666; margin-top: 2px;">{html.escape(caption)}</div>' if caption else ""
    st.html(f"<div>{img_tag(image, width, caption, test_id)}{cap}</div>")


def image_row(images: list[torch.Tensor | np.ndarray], captions: list[str] | None = None, width: int = 84,
              test_id: str = "", stacked: bool = False) -> None:
    """Images side by side (wrapping), each with a caption under it, in one element; `stacked` puts them one under
    another with the caption on the left (rows of a traversal, say)."""
    captions = captions or [""] * len(images)
    tid = f' data-testid="{html.escape(test_id)}"' if test_id else ""
    if stacked:
        rows = "".join(
            f'<div style="display: flex; align-items: center; gap: 10px; margin-bottom: 4px;">'
            f'<span style="font-size: 0.8rem; color: #666; min-width: 90px; text-align: right;">{html.escape(cap)}</span>'
            f'{img_tag(im, width, cap)}</div>' for im, cap in zip(images, captions))
        st.html(f"<div{tid}>{rows}</div>")
        return
    cells = "".join(
        f'<figure style="margin: 0 6px 6px 0; text-align: center;">{img_tag(im, width, cap)}'
        f'<figcaption style="font-size: 0.75rem; color: #666; max-width: {width + 20}px;">{html.escape(cap)}</figcaption></figure>'
        for im, cap in zip(images, captions))
    st.html(f'<div style="display: flex; flex-wrap: wrap;"{tid}>{cells}</div>')


def key_value_table(rows: dict[str, object], header: tuple[str, str] = ("", "value")) -> None:
    """A two-column table as markdown: st.table would import pandas into the server (~65 MB, 0.6 s) for 15 rows."""
    from ui.safe import md  # escapes every markdown character, | included: user text cannot be a link or a column

    lines = [f"| {md(header[0]) or ' '} | {md(header[1])} |", "|---|---|"]
    lines += [f"| {md(k)} | {md(v) or ' '} |" for k, v in rows.items()]
    st.markdown("\n".join(lines))
