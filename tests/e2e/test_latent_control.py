"""The live latent control in headless Chromium against a real `streamlit run tests/e2e/latent_control_demo.py`.

The browser's decode (canvas pixels) is compared with PyTorch's decode of the same z; the released z must reach
Python; the weights payload must arrive once per model and tab, also for a freshly trained model; the conv
fallback must paint the server's images.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import vae
from tests.e2e.conftest import ROOT, page_errors, screenshot, wait_for_app
from tests.e2e.server import serve
from vae.checkpoint import from_bytes

KEY = "demo_control"
INSTANCE = f"window.__latentControl.instances.{KEY}"
TIMEOUT = 90_000  # ms; the machine is shared, a cold torch import alone can take seconds


@pytest.fixture(scope="module")
def demo_url():
    """The test-only page, served on its own free port, stopped after the module."""
    (ROOT / "artifacts").mkdir(exist_ok=True)
    with serve("tests/e2e/latent_control_demo.py", log=ROOT / "artifacts" / "e2e-latent-control.log") as url:
        yield url


def open_control(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function(f"() => window.__latentControl && {INSTANCE} && {INSTANCE}.paintedZ", timeout=TIMEOUT)
    wait_for_app(page, TIMEOUT)


def snapshot(page) -> dict:
    """The control's state once no frame is pending: the canvas shows z."""
    try:
        page.wait_for_function(
            f"() => {{ const c = {INSTANCE}; return !c.raf && c.paintedZ && c.paintedZ.every((v, i) => v === c.z[i]); }}",
            timeout=TIMEOUT)
    except Exception:
        print("control state at the timeout:", page.evaluate(f"(() => {{ const s = {INSTANCE}.snapshot(); delete s.pixels; return [s, {INSTANCE}.raf]; }})()"))
        raise
    return page.evaluate(f"{INSTANCE}.snapshot()")


def python_z(page) -> list[float]:
    text = page.get_by_text("python z = ").inner_text()
    return [float(v) for v in re.findall(r"-?\d+\.?\d*(?:e-?\d+)?", text.split("=", 1)[1])]


def wait_for_python_z(page, z: list[float]) -> None:
    """Until the page's Python shows the control's z (the release went round)."""
    deadline = time.time() + TIMEOUT / 1000
    while time.time() < deadline:
        try:
            if np.allclose(python_z(page), z, atol=1e-4):
                return
        except Exception:  # the text is being re-rendered
            pass
        time.sleep(0.2)
    raise AssertionError(f"Python shows {python_z(page)}, the control {z}")


def assert_canvas_matches(model: vae.VAE, snap: dict) -> float:
    """Canvas pixels vs PyTorch's decode of the painted z: within 1/255 per pixel. Returns the worst difference."""
    h, w = snap["height"], snap["width"]
    rgba = np.array(snap["pixels"], dtype=np.float64).reshape(h, w, 4)
    x = vae.decode(model, np.array([snap["paintedZ"]], np.float32))[0].numpy()  # (C, H, W)
    expected = 255 * (x.transpose(1, 2, 0) if x.shape[0] == 3 else np.repeat(x[0][..., None], 3, axis=2))
    worst = float(np.abs(rgba[..., :3] - expected).max())
    assert worst <= 1.0, f"browser vs PyTorch differ by {worst:.3f}/255"
    assert (rgba[..., 3] == 255).all()
    return worst


def drag_pad(page, fractions: list[tuple[float, float]]) -> None:
    box = page.locator("canvas.lc-pad").bounding_box()
    pts = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in fractions]
    page.mouse.move(*pts[0])
    page.mouse.down()
    for p in pts[1:]:
        page.mouse.move(*p, steps=3)
    page.mouse.up()


def download_checkpoint(page) -> vae.VAE:
    """The sidebar's download button: the very model the server decodes with, for PyTorch's side of the check."""
    with page.expect_download(timeout=TIMEOUT) as d:
        page.get_by_role("button", name="Download checkpoint").click()
    return from_bytes(Path(d.value.path()).read_bytes()).model.eval()


def payload_loads(page) -> dict[str, int]:
    return page.evaluate("window.__latentControl.payloadLoads")


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    return {n: vae.load_checkpoint(ROOT / "checkpoints" / f"mnist5k-mlp-{n}.safetensors").model.eval() for n in ("z2", "z16")}


@pytest.mark.parametrize("name", ["z2", "z16"])
def test_browser_decode_equals_pytorch_and_release_reaches_python(page, demo_url, shipped, name):
    model = shipped[name]
    open_control(page, f"{demo_url}/?model=mnist5k-mlp-{name}")
    snap = snapshot(page)
    assert not snap["server"] and snap["paintedZ"] == [0.0] * model.cfg.latent_dim
    assert_canvas_matches(model, snap)

    drag_pad(page, [(0.5, 0.5), (0.7, 0.3), (0.8, 0.25)])
    snap = snapshot(page)
    assert snap["paintedZ"] == snap["committed"] and np.abs(snap["paintedZ"]).max() > 0.5
    assert_canvas_matches(model, snap)
    wait_for_python_z(page, snap["committed"])

    # Keyboard: the first slider, five steps of 0.01 to the right; committed once the keys rest.
    slider = page.locator(".lc-sliders input[type=range]").first
    slider.focus()
    before = snap["committed"][0]
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => Math.abs({INSTANCE}.committed[0] - ({before} + 0.05)) < 0.006", timeout=TIMEOUT)
    snap = snapshot(page)
    assert_canvas_matches(model, snap)
    wait_for_python_z(page, snap["committed"])

    # Keyboard on the pad: up moves z's second map coordinate up.
    page.locator("canvas.lc-pad").focus()
    page.keyboard.press("Shift+ArrowUp")
    page.wait_for_function(f"(z) => {INSTANCE}.committed.some((v, i) => Math.abs(v - z[i]) > 1e-3)",
                           arg=snap["committed"], timeout=TIMEOUT)
    snap = snapshot(page)
    assert_canvas_matches(model, snap)
    wait_for_python_z(page, snap["committed"])
    assert page_errors(page) == []
    assert list(payload_loads(page).values()) == [1]


def test_weights_reach_the_browser_once_per_model_also_a_fresh_one(page, demo_url, shipped):
    open_control(page, f"{demo_url}/?model=mnist5k-mlp-z2")
    first_id = snapshot(page)["modelId"]
    for k in range(3):  # releases re-run the page; the weights must not come again
        drag_pad(page, [(0.5, 0.5), (0.3 + 0.1 * k, 0.6)])
        wait_for_python_z(page, snapshot(page)["committed"])
    assert payload_loads(page) == {first_id: 1}

    page.get_by_role("button", name="Train a tiny MLP").click()
    page.wait_for_function(f"(id) => {INSTANCE}.model && {INSTANCE}.model.id !== id && {INSTANCE}.paintedZ",
                           arg=first_id, timeout=TIMEOUT)
    wait_for_app(page, TIMEOUT)
    fresh = download_checkpoint(page)
    snap = snapshot(page)
    assert snap["width"] == snap["height"] == 8 and not snap["server"]
    assert_canvas_matches(fresh, snap)
    drag_pad(page, [(0.5, 0.5), (0.2, 0.8)])
    snap = snapshot(page)
    assert_canvas_matches(fresh, snap)
    wait_for_python_z(page, snap["committed"])
    fresh_id = snap["modelId"]
    assert payload_loads(page) == {first_id: 1, fresh_id: 1}

    # Back to the shipped model: the tab still holds its weights, nothing is sent again.
    page.get_by_test_id("stSidebar").get_by_role("combobox").click()
    page.get_by_role("option", name="mnist5k-mlp-z2", exact=False).click()  # "… · 2-D map & manifold"
    page.wait_for_function(f"(id) => {INSTANCE}.model.id === id", arg=first_id, timeout=TIMEOUT)
    wait_for_app(page, TIMEOUT)
    assert_canvas_matches(shipped["z2"], snapshot(page))
    assert payload_loads(page) == {first_id: 1, fresh_id: 1}
    # the pads (held-out points) too: each came once, however many reruns followed
    pads = page.evaluate("window.__latentControl.padLoads")
    assert len(pads) == 2 and set(pads.values()) == {1}, pads
    pad_id = page.evaluate(f"{INSTANCE}.pad.id")

    # A tab that lost its copies (evicted, reloaded) says so on the next rerun and gets the weights and pad again.
    page.evaluate("window.__latentControl.forgetModels(); window.__latentControl.forgetPads()")
    drag_pad(page, [(0.5, 0.5), (0.6, 0.4)])
    page.wait_for_function(f"(a) => window.__latentControl.payloadLoads[a[0]] === 2 && "
                           f"window.__latentControl.padLoads[a[1]] === 2 && {INSTANCE}.pad && {INSTANCE}.paintedZ",
                           arg=[first_id, pad_id], timeout=TIMEOUT)
    assert_canvas_matches(shipped["z2"], snapshot(page))
    assert page_errors(page) == []


def test_conv_decoder_falls_back_to_the_server_and_says_so(page, demo_url):
    open_control(page, demo_url)
    page.get_by_role("button", name="Train a tiny conv").click()
    page.wait_for_function(f"() => {INSTANCE}.model && {INSTANCE}.model.server", timeout=TIMEOUT)
    wait_for_app(page, TIMEOUT)
    assert "runs only on the server" in page.locator(".lc-note").inner_text()
    assert page.locator(".lc-status").inner_text() == "Decoded on the server"
    model = download_checkpoint(page)
    assert model.cfg.arch == "conv"
    assert_canvas_matches(model, snapshot(page))

    page.evaluate("window.__latentControl.resetStats()")
    box = page.locator("canvas.lc-pad").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    for i in range(40):  # ~2 s of dragging: time for several round trips
        page.mouse.move(box["x"] + box["width"] * (0.5 + 0.01 * i), box["y"] + box["height"] * (0.5 - 0.008 * i))
        time.sleep(0.05)
    # Previews painted while the button is still down: the image followed the drag through Python.
    page.wait_for_function("() => window.__latentControl.stats.paints.some(p => p.dragging)", timeout=TIMEOUT)
    page.mouse.up()
    committed = page.evaluate(f"{INSTANCE}.committed")
    wait_for_python_z(page, committed)
    page.wait_for_function(f"(z) => {INSTANCE}.paintedZ.every((v, i) => Math.abs(v - z[i]) < 1e-4)",
                           arg=committed, timeout=TIMEOUT)
    assert_canvas_matches(model, snapshot(page))
    assert page_errors(page) == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_in_both_themes(browser, demo_url, scheme):
    context = browser.new_context(viewport={"width": 1300, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    try:
        open_control(page, f"{demo_url}/?model=mnist5k-mlp-z16")
        drag_pad(page, [(0.5, 0.5), (0.65, 0.35)])
        wait_for_python_z(page, snapshot(page)["committed"])
        bg = page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor")
        dark = sum(int(v) for v in re.findall(r"\d+", bg)[:3]) < 3 * 128
        assert dark == (scheme == "dark")
        screenshot(page, f"latent_control_{scheme}")
        assert page_errors(page) == []
    finally:
        context.close()


# ------------------------------------------------------------------ in the app: Explore and the Latent map
def open_app_page(page, app_url: str, title: str, key: str) -> None:
    """Through the navigation, as a user would (a first visit straight to /explore skips st.navigation), on the 2-D
    model (a link: ?model=)."""
    page.goto(f"{app_url}/?model=mnist5k-mlp-z2")
    wait_for_app(page, TIMEOUT)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    page.wait_for_function(f"() => window.__latentControl?.instances?.{key}?.paintedZ", timeout=TIMEOUT)
    wait_for_app(page, TIMEOUT)


def test_explore_page_follows_a_release(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    page = context.new_page()
    try:
        open_app_page(page, app_url, "Explore", "explore_live")
        key = "window.__latentControl.instances.explore_live"
        before = page.locator("img[data-testid='decoded-image']").get_attribute("src")
        drag_pad(page, [(0.5, 0.5), (0.3, 0.7), (0.25, 0.75)])
        z = page.evaluate(f"{key}.committed")
        shown = ", ".join(f"z{'₁₂'[d]}={v:+.2f}" for d, v in enumerate(z[:2]))
        page.get_by_text(f"decoded from z = ({shown}").wait_for(timeout=TIMEOUT)  # the page's Python has the new z
        assert page.locator("img[data-testid='decoded-image']").get_attribute("src") != before
        assert page.get_by_text("set with the live control").count() == 1
        screenshot(page, "explore-live-control")
        assert page_errors(page) == []
    finally:
        context.close()


def test_map_page_marks_a_release_and_follows_a_pick(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    try:
        open_app_page(page, app_url, "Latent map", "map_live")
        key = "window.__latentControl.instances.map_live"
        drag_pad(page, [(0.5, 0.5), (0.7, 0.4), (0.72, 0.35)])
        z = page.evaluate(f"{key}.committed")
        # A 2-D model's map is the latent plane itself: the pick panel shows the released z as the position.
        page.get_by_text(f"Position ({z[0]:.2f}, {z[1]:.2f}) on the map").wait_for(timeout=TIMEOUT)

        # A pick made without the control (the panel's number field) moves the control to that point.
        page.get_by_text("Pick by number or position").click()
        page.get_by_role("spinbutton", name="x", exact=True).fill("-1.5")
        page.get_by_role("spinbutton", name="y", exact=True).fill("0.5")
        page.get_by_role("button", name="Decode").click()
        page.wait_for_function(f"() => Math.abs({key}.z[0] + 1.5) < 1e-4 && Math.abs({key}.z[1] - 0.5) < 1e-4",
                               timeout=TIMEOUT)
        screenshot(page, "map-live-control")
        assert page_errors(page) == []
    finally:
        context.close()
