"""The current image of a tab (ui/workspace.py, vae/adapt.py): adapting one image to each model, and the sidebar tray."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from vae.adapt import MAX_SIDE, adapt, decode_upload, try_adapt
from vae.data import DataError

ROOT = Path(__file__).resolve().parent.parent


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def ink_on_paper(h: int = 300, w: int = 200) -> np.ndarray:
    """A dark vertical stroke on white paper, off centre: a '1' as a phone would photograph it."""
    a = np.full((h, w, 3), 250, np.uint8)
    a[h // 5: 4 * h // 5, w // 5: w // 5 + max(2, w // 12)] = 10
    return a


def test_decode_upload_keeps_colour_and_bounds_size():
    x = decode_upload(png(ink_on_paper(2000, 1000)))
    assert x.shape == (3, MAX_SIDE, MAX_SIDE // 2) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1


def test_raw_upload_gets_the_mnist_recipe_for_a_digit_model():
    x = decode_upload(png(ink_on_paper()))
    p = adapt(x, (1, 28, 28), raw=True, digit_style=True)
    assert p.x.shape == (1, 28, 28)
    assert float(p.x[0, 0, 0]) == 0.0 and float(p.x.max()) > 0.9  # white ink on black, as MNIST
    ys, xs = np.nonzero(p.x[0].numpy() > 0.2)
    assert abs(xs.mean() - 13.5) < 2 and abs(ys.mean() - 13.5) < 2  # centred by mass
    assert [c for c, _ in p.steps][:2] == ["uploaded", "grey"]


@pytest.mark.parametrize("src,target", [((1, 28, 28), (1, 8, 8)), ((1, 8, 8), (1, 28, 28)), ((1, 28, 28), (3, 32, 32)),
                                        ((3, 32, 32), (1, 28, 28))])
def test_model_space_images_are_resized_and_converted(src, target):
    x = torch.rand(src)
    out = adapt(x, target, raw=False).x
    assert out.shape == target and torch.isfinite(out).all()


def test_same_shape_is_returned_unchanged():
    x = torch.rand(1, 28, 28)
    assert torch.equal(adapt(x, (1, 28, 28), raw=False).x, x)


def test_blank_or_broken_images_cannot_be_adapted():
    with pytest.raises(DataError):
        adapt(torch.ones(3, 40, 40), (1, 28, 28), raw=True, digit_style=True)  # blank paper
    assert try_adapt(torch.full((1, 8, 8), float("nan")), (1, 8, 8), raw=False) is None
    assert try_adapt(torch.rand(2, 8, 8), (1, 8, 8), raw=False) is None


def _tray_script():
    import streamlit as st
    import torch

    from ui import workspace

    if st.button("set"):
        workspace.set_current_image(torch.rand(1, 28, 28), "held-out #3 (mnist5k)", "dataset")
    if st.button("set B"):
        workspace.set_endpoint("B", torch.rand(1, 28, 28), "map point")
    workspace.tray()
    cur = workspace.current_image()
    st.write(f"current: {cur.source if cur else None}")


def test_tray_shows_clears_and_keeps_b():
    at = AppTest.from_function(_tray_script, default_timeout=60).run()
    assert not at.sidebar.subheader and "current: None" in at.markdown[0].value
    next(b for b in at.button if b.label == "set").click().run()
    next(b for b in at.button if b.label == "set B").click().run()
    # Sources can hold file names, so the captions escape them for markdown (ui.safe.md).
    assert [re.sub(r"\\(.)", r"\1", c.value) for c in at.sidebar.caption] == ["held-out #3 (mnist5k)",
                                                                               "Interpolate's B: map point"]
    next(b for b in at.button if b.label == "Clear").click().run()
    assert "current: None" in at.markdown[0].value
    assert [c.value for c in at.sidebar.caption] == ["Interpolate's B: map point"]
