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


# ---------------------------------------------------------------- the app: tray across pages, links

APP = str(ROOT / "app.py")
Z2 = "mnist5k-mlp-z2"  # 2-D latents: short links


@pytest.fixture(scope="module", autouse=True)
def mnist5k_loaded(cached_mnist5k_source):
    from ui import state

    with cached_mnist5k_source():
        state.prefetch_dataset("mnist5k").result()


def app(page: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    return at


def clean(at: AppTest) -> None:
    assert [e.value for e in at.exception] == []


def test_a_link_sets_model_z_and_current_image():
    at = app(model=Z2, img="mnist5k:7")
    clean(at)
    assert at.session_state["model_key"].endswith(f"{Z2}.safetensors")
    assert at.session_state["ws_current"].source == "held-out #7 (mnist5k)"
    assert "held-out #7 (mnist5k)" in [re.sub(r"\\(.)", r"\1", c.value) for c in at.sidebar.caption]  # md-escaped


@pytest.mark.parametrize("query,notice", [
    ({"model": "no-such-model"}, "no such checkpoint"),
    ({"model": "../../etc/passwd"}, "no such checkpoint"),
    ({"img": "mnist5k:99999"}, "held-out images"),
    ({"img": "folder:/etc:1"}, "DATASET:INDEX"),
    ({"img": "mnist5k:-1"}, "DATASET:INDEX"),
])
def test_hostile_app_links_are_ignored_with_a_notice(query, notice):
    at = app(**query)
    clean(at)
    assert any(notice in t for t in at.session_state["links_notices"]), at.session_state["links_notices"]
    assert "ws_current" not in at.session_state or at.session_state["ws_current"] is None


@pytest.mark.parametrize("z,notice", [
    ("nan,1", "finite"), ("1e308,0", "finite"), ("inf,0", "finite"), ("a,b", "not a list of numbers"),
    ("1,2,3", "needs 2"), ("", "not a list of numbers"), ("1" * 30_000, "characters long"),
])
def test_hostile_z_is_ignored_with_a_notice(z, notice):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(model=Z2)
    at.run()
    at.query_params["z"] = z
    at.switch_page("pages/explore.py").run()
    clean(at)
    assert at.session_state["explore_z"] == [0.0, 0.0]
    assert any(notice in t for t in at.session_state["links_notices"]), at.session_state["links_notices"]


def test_a_link_with_z_opens_explore_there_and_explore_keeps_the_link_current():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(model=Z2)
    at.run()
    at.query_params["z"] = "0.5,-1.25"
    at.switch_page("pages/explore.py").run()
    clean(at)
    assert at.session_state["explore_z"] == [0.5, -1.25]
    assert at.session_state["explore_source"] == "z from the link"
    at.button(key="explore_reset").click().run()
    assert at.query_params["z"] == "0,0" and at.query_params["model"] == Z2


# ---------------------------------------------------------------- the default model


def test_the_app_opens_on_a_model_that_gives_back_the_digit_it_was_shown(mnist5k):
    import vae
    from ui import state
    from vae.metrics import data_agreement

    ck = vae.load_checkpoint(ROOT / "checkpoints" / state.DEFAULT_CHECKPOINT)
    assert ck.metrics["recon_agreement"] >= 0.95
    assert data_agreement(ck.model, mnist5k) == pytest.approx(ck.metrics["recon_agreement"], abs=0.003)  # re-measured
    at = app()
    clean(at)
    assert at.session_state["model_key"].endswith(state.DEFAULT_CHECKPOINT)
    # The model card is a markdown table (ui.widgets.key_value_table), its cells md-escaped.
    card = next(m.value for m in at.markdown if "| reconstruction agreement |" in m.value)
    rows = dict(line.strip("| ").split(" | ", 1) for line in card.splitlines()[2:])
    assert rows["reconstruction agreement"].replace("\\", "") == f"{ck.metrics['recon_agreement']:.1%}"
    assert any("reads as the same class" in c.value for c in at.caption)


def test_a_model_without_a_stored_agreement_is_measured_in_the_background(tmp_path, monkeypatch, trained_digits, digits):
    import vae
    from ui import quality, state

    path = tmp_path / "digits-tiny.safetensors"
    vae.save_checkpoint(path, trained_digits, None, "digits", [], {"neg_elbo": 30.0})
    active = state.ActiveModel("test:digits-tiny", "digits-tiny", vae.load_checkpoint(path))
    fut = quality.agreement_future(active)
    assert fut.result(timeout=120) == pytest.approx(vae.metrics.data_agreement(trained_digits, digits))
    assert quality.agreement_text(active).endswith("%")


def test_the_maps_view_joins_the_link_and_keeps_the_model():
    """The map writes its view (?split, ?colour, ?proj, ?point) as one change and keeps the app's own parameters."""
    at = app("map", model=Z2)
    clean(at)
    at.radio(key="map_colour").set_value("recon").run()
    at.button(key="map_show_point").click().run()  # point #0, picked by number
    clean(at)
    q = at.query_params
    assert (q["colour"], q["split"], q["proj"], q["point"], q["model"]) == ("recon", "test", "identity", "0", Z2)
