"""The explorer's pages driven in real headless Chromium against the real server: move a slider and see the image
change, upload an image and see its reconstruction, click a map point and see it picked, draw on the canvas,
train for an epoch and watch the live panel. Each test leaves a full-height screenshot in artifacts/screenshots/."""
from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from tests.e2e.conftest import open_page, page_errors, screenshot, wait_for_app

DEFAULT = "mnist5k-mlp-z32"  # the model a new tab opens on (ui/state.py DEFAULT_CHECKPOINT)

def settle(page, timeout: float = 30_000) -> None:
    """Wait for the rerun a widget change starts to finish."""
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)


def img_src(page, test_id: str) -> str:
    loc = page.locator(f"img[data-testid='{test_id}']")
    loc.wait_for(state="attached", timeout=30_000)  # Explore's server decode is in the page but not shown
    return loc.get_attribute("src")


def current_model(page) -> str:
    """What the sidebar's model picker shows (its text, or its search input's value)."""
    return page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").evaluate(
        "el => el.textContent + ' ' + [...el.querySelectorAll('input')].map(i => i.value).join(' ')")


def digit_png() -> bytes:
    """A hand-made '7': dark strokes on white paper, the way a photo of a digit looks."""
    a = np.full((120, 100), 255, np.uint8)
    a[20:32, 15:85] = 0
    for r in range(32, 105):
        c = int(80 - (r - 32) * 0.45)
        a[r, c - 6: c + 6] = 0
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_explore_slider_changes_the_image(tall_page, app_url):
    page = tall_page
    open_page(page, app_url, "explore")
    before = img_src(page, "decoded-image")
    # A Streamlit slider or the live latent control's (ui/latent_control): both are range inputs; keys move them.
    page.locator("[data-testid='stSlider'] input[type='range'], .lc-sliders input[type='range']").first.focus()
    for _ in range(40):
        page.keyboard.press("ArrowRight")
    settle(page)
    page.wait_for_function(
        "(before) => { const i = document.querySelector(\"img[data-testid='decoded-image']\"); return i && i.src !== before; }",
        arg=before, timeout=15_000)
    assert img_src(page, "decoded-image") != before
    assert page.locator("[data-testid='traversal'] img").count() >= 1
    screenshot(page, "explore-after-slider")
    assert page_errors(page) == []


def test_reconstruct_upload_shows_the_reconstruction(tall_page, app_url, tmp_path):
    page = tall_page
    open_page(page, app_url, "reconstruct")
    path = tmp_path / "seven.png"
    path.write_bytes(digit_png())
    page.locator("[data-testid='stFileUploader'] input[type='file']").last.set_input_files(str(path))
    page.locator("img[data-testid='rec-output']").wait_for(timeout=30_000)
    settle(page)
    assert page.locator("[data-testid='rec-steps'] img").count() >= 4  # uploaded, grey, cropped, fitted, centred
    assert page.locator("[data-testid='rec-samples'] img").count() == 8
    assert page.locator("[data-testid='stMetric']").count() == 3
    page.locator("[data-testid='stPlotlyChart']").last.wait_for(timeout=30_000)
    screenshot(page, "reconstruct-upload")
    assert page_errors(page) == []


def test_reconstruct_rejects_a_file_that_is_not_an_image(page, app_url, tmp_path):
    open_page(page, app_url, "reconstruct")
    path = tmp_path / "fake.png"
    path.write_bytes(b"this is text, not a PNG")
    page.locator("[data-testid='stFileUploader'] input[type='file']").last.set_input_files(str(path))
    alert = page.locator("[data-testid='stAlertContentError']")
    alert.wait_for(timeout=30_000)
    assert "not an image" in alert.inner_text()
    assert page_errors(page) == []


def test_reconstruct_drawing_on_the_canvas(tall_page, app_url):
    page = tall_page
    open_page(page, app_url, "reconstruct")
    page.locator("[data-testid='stButtonGroup'] button", has_text="Draw").click()
    settle(page)
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    x0, y0 = box["x"] + 90, box["y"] + 50
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 25):  # a "1"-ish stroke down the middle
        page.mouse.move(x0 + 40 + i, y0 + i * 8)
    page.mouse.up()
    page.locator("img[data-testid='rec-output']").wait_for(timeout=30_000)
    settle(page)
    screenshot(page, "reconstruct-drawing")
    assert page_errors(page) == []


SC = "window.__mapScatter.instances.map_scatter"


def open_map(page, app_url: str) -> None:
    open_page(page, app_url, "map")
    page.wait_for_function("() => window.__mapScatter?.stats?.paints?.length", timeout=60_000)
    page.wait_for_timeout(300)


def test_map_click_on_a_point_picks_it(tall_page, app_url):
    page = tall_page
    open_map(page, app_url)
    # ui/scatter says where a point is drawn; click point #21 of the held-out set there
    index = 21
    pos = page.evaluate(f"() => {SC}.screenOf({index})")
    page.mouse.move(pos["x"], pos["y"])
    page.wait_for_timeout(150)
    index = int(page.evaluate(f"() => {SC}.el.canvas.dataset.hover"))  # the point under the pointer (overlaps)
    page.mouse.click(pos["x"], pos["y"])
    page.locator("img[data-testid='map-point-image']").wait_for(timeout=30_000)
    settle(page)
    assert f"Point #{index}" in page.locator("[data-testid='stMarkdown']").all_inner_texts().__str__()
    assert page.locator("[data-testid='map-neighbours'] img").count() == 8
    screenshot(page, "map-point")
    # ... and send it to Explore
    page.get_by_role("button", name="Open in Explore").click()
    page.wait_for_url(re.compile(r".*/explore(\?.*)?$"), timeout=30_000)
    wait_for_app(page)
    assert f"map point #{index}" in page.locator("[data-testid='stApp']").inner_text()
    assert page_errors(page) == []


def test_map_click_on_empty_space_decodes_there(tall_page, app_url):
    page = tall_page
    open_map(page, app_url)
    # near the canvas's top-left corner there are no points (the view fits the points with a margin)
    box = page.evaluate(f"() => {{ const r = {SC}.el.canvas.getBoundingClientRect(); return [r.left, r.top]; }}")
    page.mouse.click(box[0] + 12, box[1] + 12)
    page.locator("img[data-testid='map-decoded']").wait_for(timeout=30_000)
    assert "Position (" in page.locator("[data-testid='stApp']").inner_text()
    screenshot(page, "map-position")
    assert page_errors(page) == []


def test_train_live_survives_navigation_and_leaves_other_sessions_alone(tall_page, browser, app_url):
    page = tall_page
    open_page(page, app_url, "train")
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill("4")
    page.get_by_role("spinbutton", name="Hidden width", exact=True).fill("128")
    page.get_by_role("button", name="Start training").click()
    page.locator("[data-testid='stProgress']").wait_for(timeout=60_000)
    page.locator("img[data-testid='train-preview']").wait_for(timeout=60_000)
    # Click around while it trains: another page, then back. The run goes on.
    page.locator("[data-testid='stSidebarNav'] a", has_text="Explore").click()
    page.wait_for_url(re.compile(r".*/explore(\?.*)?$"), timeout=30_000)  # ?run=: the tab's training run
    page.locator("img[data-testid='decoded-image']").wait_for(state="attached", timeout=30_000)
    # Another browser session meanwhile: responsive, and still on the shipped model.
    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    other_page = other.new_page()
    open_page(other_page, app_url, "explore")
    assert DEFAULT in current_model(other_page)
    page.locator("[data-testid='stSidebarNav'] a", has_text="Train").click()
    page.wait_for_url(re.compile(r".*/train(\?.*)?$"), timeout=30_000)
    page.get_by_role("button", name="Save").wait_for(timeout=120_000)  # the run has ended: the save form shows
    settle(page)
    text = page.locator("[data-testid='stApp']").inner_text()
    assert "finished: 4 of 4 epochs" in text
    assert page.locator("[data-testid='stPlotlyChart']").count() >= 3  # curves, KL bars, latent map
    # the trained model is this session's current model; the other session's is unchanged
    assert "this tab" in current_model(page)
    other_page.reload()
    wait_for_app(other_page)
    assert DEFAULT in current_model(other_page)
    other.close()
    screenshot(page, "train-finished")
    assert page_errors(page) == []
