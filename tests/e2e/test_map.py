"""The latent map in real Chromium against the real app: a 16-D model's map turns into t-SNE by itself, hovering a
point shows its image (from the tab's thumbnail atlas, no round trip), a lasso selects and its grid appears, and two
selections make a direction that becomes a slider on Explore which moves the image."""
from __future__ import annotations

import re

import numpy as np

import vae
from tests.e2e.conftest import page_errors, screenshot, wait_for_app

TIMEOUT = 120_000
SC = "window.__mapScatter.instances.map_scatter"


def open_map(page, app_url: str, model: str | None = None) -> None:
    page.goto(app_url)
    wait_for_app(page, TIMEOUT)
    if model:
        page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").click()
        page.get_by_role("option", name=model, exact=True).click()
        wait_for_app(page, TIMEOUT)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Latent map").click()
    page.wait_for_function("() => window.__mapScatter?.stats?.paints?.length", timeout=TIMEOUT)
    wait_for_app(page, TIMEOUT)


def test_a_16d_models_map_turns_nonlinear_by_itself(tall_page, app_url):
    page = tall_page
    open_map(page, app_url, "mnist5k-mlp-z16")
    status = page.locator(".sc-status")
    assert "PCA" in status.inner_text() or "t-SNE" in status.inner_text()
    # No click: Auto switches to t-SNE once the worker has it (minutes only on a crowded machine).
    page.wait_for_function(f"() => {SC}.el.status.textContent.includes('t-SNE')", timeout=600_000)
    wait_for_app(page, TIMEOUT)
    text = page.locator("[data-testid='stApp']").inner_text()
    assert "t-SNE has no formula back" in text and "Round trip z → map → z" in text
    # the drag pad decodes through the t-SNE inverse: drag it and the live image follows
    assert "through the t-SNE map's inverse" in text
    screenshot(page, "map-tsne")
    assert page_errors(page) == []


def test_hover_shows_the_points_image(tall_page, app_url):
    page = tall_page
    open_map(page, app_url)
    page.wait_for_function(f"() => {SC}.atlas && {SC}.atlas.ready", timeout=TIMEOUT)  # sent once after first paint
    i = 37
    pos = page.evaluate(f"() => {SC}.screenOf({i})")
    page.mouse.move(pos["x"], pos["y"])
    page.wait_for_function(f"() => !{SC}.el.tip.hidden", timeout=5_000)
    hovered = int(page.evaluate(f"() => {SC}.el.canvas.dataset.hover"))
    thumb = page.evaluate(f"""() => {{ const c = {SC}.el.thumb; const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                                       return Array.from(d.filter((_, k) => k % 4 === 0)); }}""")
    x = vae.load_dataset("mnist5k").x_test[hovered, 0]  # the app's mnist5k: the held-out image of that number
    expected = (x.clamp(0, 1) * 255).round().flatten().numpy()
    assert np.abs(np.asarray(thumb, np.float64) - expected).max() <= 1  # the image itself, from the atlas
    assert f"#{hovered}" in page.evaluate(f"() => {SC}.el.tipText.textContent")
    ms = page.evaluate("() => window.__mapScatter.stats.hovers.at(-1).ms")
    assert ms >= 0  # measured in the page (figures: bench/map_latency.py)
    screenshot(page, "map-hover")
    assert page_errors(page) == []


def lasso(page, fx: float, fy: float, r: float) -> None:
    """Draw a lasso: a 16-gon of radius r (fraction of the canvas) around (fx, fy) (fractions of the canvas)."""
    box = page.evaluate(f"() => {{ const c = {SC}.el.canvas.getBoundingClientRect(); return [c.left, c.top, c.width, c.height]; }}")
    left, top, w, h = box
    pts = [(left + w * (fx + r * np.cos(a)), top + h * (fy + r * np.sin(a))) for a in np.linspace(0, 2 * np.pi, 17)]
    page.mouse.move(*pts[0])
    page.mouse.down()
    for p in pts[1:]:
        page.mouse.move(*p, steps=2)
    page.mouse.up()


def test_lasso_selection_grid_direction_and_its_slider_on_explore(tall_page, app_url):
    page = tall_page
    open_map(page, app_url)
    page.locator(".sc-tool[data-mode='lasso']").click()
    lasso(page, 0.3, 0.4, 0.14)
    page.get_by_text("selected by lasso").wait_for(timeout=TIMEOUT)
    wait_for_app(page, TIMEOUT)
    assert page.locator("[data-testid='map-selection-mean']").count() == 1
    grid = page.locator("[data-testid='stImage']").filter(has_text=re.compile(r"their images|\d+ of \d+ images"))
    assert grid.count() == 1 and grid.locator("img").count() == 1
    n_a = int(page.get_by_text("selected by lasso").inner_text().split(" ")[0].replace(",", ""))
    assert n_a >= 2
    screenshot(page, "map-lasso")
    page.get_by_role("button", name="Use as group A").click()
    wait_for_app(page, TIMEOUT)
    lasso(page, 0.7, 0.6, 0.14)
    page.get_by_text("selected by lasso").wait_for(timeout=TIMEOUT)
    wait_for_app(page, TIMEOUT)
    page.get_by_role("button", name="Use as group B").click()
    wait_for_app(page, TIMEOUT)
    page.locator("[data-testid='map-direction']").wait_for(timeout=TIMEOUT)
    name = page.get_by_label("Name of the direction").input_value()
    assert " → " in name
    screenshot(page, "map-direction")
    page.get_by_role("button", name="Use as a slider on Explore").click()
    page.wait_for_url(re.compile(r".*/explore(\?.*)?$"), timeout=TIMEOUT)
    wait_for_app(page, TIMEOUT)
    slider = page.locator("[data-testid='stSlider']").filter(has_text=name)
    slider.wait_for(timeout=TIMEOUT)
    before = page.locator("img[data-testid='decoded-image']").get_attribute("src")
    slider.get_by_role("slider").focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    page.wait_for_timeout(300)
    wait_for_app(page, TIMEOUT)
    page.wait_for_function(
        "(b) => document.querySelector(\"img[data-testid='decoded-image']\").src !== b", arg=before, timeout=TIMEOUT)
    assert page.get_by_text(f"moved along “{name}”").count() >= 1
    screenshot(page, "explore-direction-slider")
    assert page_errors(page) == []
