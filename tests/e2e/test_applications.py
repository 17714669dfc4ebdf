"""The application pages in a real browser: each opens, its main action produces its images, tables and files."""
from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from tests.e2e.conftest import open_page as open_app_page
from tests.e2e.conftest import page_errors, screenshot, wait_for_app

DOWNLOAD = "[data-testid='stDownloadButton'] button"


@pytest.fixture
def page(tall_page):
    return tall_page


def open_page(page, app_url: str, path: str) -> None:
    open_app_page(page, app_url, path)
    page.wait_for_timeout(300)


IMAGES = ("() => [...document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img')]"
          ".filter(i => i.complete && i.naturalWidth > 0).length")


def rendered_images(page, at_least: int = 1) -> int:
    """Images in the main area that the browser has actually decoded, once there are `at_least` of them."""
    page.wait_for_function(f"() => ({IMAGES})() >= {at_least}", timeout=30_000)
    return page.evaluate(IMAGES)


def download(page, label: str) -> bytes:
    with page.expect_download() as info:
        page.locator(DOWNLOAD, has_text=label).click()
    return open(info.value.path(), "rb").read()


def choose(page, text: str, nth: int = 0) -> None:
    """Click a segmented-control or pills option by its text and wait for the rerun."""
    page.locator("[data-testid=stMain] button").filter(has_text=re.compile(f"^{re.escape(text)}$")).nth(nth).click()
    page.wait_for_timeout(200)
    wait_for_app(page, timeout=90_000)


def test_interpolate_strip_map_and_exports(page, app_url):
    open_page(page, app_url, "interpolate")
    assert page_errors(page) == []
    page.get_by_text("smooth transitions").first.wait_for()
    assert rendered_images(page, 3) >= 3  # both endpoints and the strip
    # inline SVG: the held-out map (1,000 points and the path's 10), change per step (a bar each), |z| (a point each)
    chart = page.locator("img[data-testid='interp-map']")
    # the browser decoded it (a standalone SVG needs its namespace; without it the image was broken)
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=chart.element_handle(timeout=30_000),
                           timeout=30_000)
    src = chart.get_attribute("src")
    svg = base64.b64decode(src.split(",", 1)[1]).decode()
    assert svg.count("<circle") == 1000 + 10 + 10  # points, path, class legend
    assert page.locator("[data-testid='interp-change'] rect").count() == 9
    assert page.locator("[data-testid='interp-norm'] circle").count() == 10
    screenshot(page, "app-interpolate")
    gif = Image.open(io.BytesIO(download(page, "Download animated GIF")))
    assert gif.format == "GIF" and gif.n_frames == 18  # 10 steps forwards, 8 back
    strip = Image.open(io.BytesIO(download(page, "Download PNG strip")))
    assert strip.format == "PNG" and strip.width > 5 * strip.height
    choose(page, "slerp")
    assert page.get_by_text(re.compile("Along this slerp path")).count() == 1
    page.locator("[data-testid='interp-norm'] circle").first.hover()  # a point's value as its tooltip
    assert page.locator("[data-testid='interp-norm'] circle title").first.text_content().startswith("|z|: 0,")
    assert page_errors(page) == []


def test_interpolate_rejects_a_broken_upload(page, app_url):
    open_page(page, app_url, "interpolate")
    page.locator("[data-testid='stMain'] [data-testid='stFileUploaderDropzoneInput']").nth(1).set_input_files(
        files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40}])
    page.locator("[data-testid='stAlertContentError']").first.wait_for(timeout=30_000)
    assert "broken.png" in page.locator("[data-testid='stAlertContentError']").first.inner_text()
    assert page_errors(page) == []
    screenshot(page, "app-interpolate-bad-upload")


def test_generate_samples_neighbours_and_png(page, app_url):
    open_page(page, app_url, "generate")
    assert page_errors(page) == []
    page.get_by_text("They are not copies").wait_for()
    assert rendered_images(page, 2) == 2  # samples and their nearest training images
    screenshot(page, "app-generate")
    im = Image.open(io.BytesIO(download(page, "Download PNG")))
    assert im.format == "PNG" and im.width == im.height  # a 4 x 4 grid


def test_denoise_noise_then_mask_completion(page, app_url):
    open_page(page, app_url, "denoise")
    assert page_errors(page) == []
    page.get_by_text("one pass through the VAE").wait_for()
    assert rendered_images(page, 3) == 3
    screenshot(page, "app-denoise-noise")
    choose(page, "box mask")
    page.get_by_text(re.compile("After 10 completion iterations")).wait_for()
    assert rendered_images(page, 5) == 5  # corrupted, reconstruction, completed, original, iteration strip
    page.locator("[data-testid='stPlotlyChart']").first.wait_for()  # error after each iteration, best one marked
    assert page.locator("[data-testid='stPlotlyChart']").count() == 1
    assert page_errors(page) == []
    screenshot(page, "app-denoise-box")


def test_evaluate_iwae_probes_and_comparison(page, app_url):
    open_page(page, app_url, "evaluate")
    assert page_errors(page) == []
    page.get_by_text("balance the reconstruction loss").wait_for()
    page.get_by_role("button", name=re.compile("Estimate with k")).click()
    page.get_by_text("IWAE −log p(x)").first.wait_for(timeout=90_000)
    choose(page, "100")  # keep only 10 labels per class: the fast probe
    choose(page, "all")
    page.get_by_role("button", name="Run the probes").click()
    page.locator("[data-testid='stMarkdown'] table", has_text="labelled images").first.wait_for(timeout=120_000)
    wait_for_app(page)
    assert page_errors(page) == []
    screenshot(page, "app-evaluate")


def pick_model(page, name: str) -> None:
    """Choose the current model in the shared sidebar, as a user would."""
    page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name=re.compile(f"^{re.escape(name)}$")).click()
    wait_for_app(page, timeout=90_000)


def pick_compared(page, slot: str, name: str) -> None:
    """Choose model `name` in Compare's A or B selectbox."""
    box = page.locator("[data-testid=stMain] [data-testid='stSelectbox']").filter(
        has=page.locator("[data-testid='stWidgetLabel']", has_text=re.compile(f"^{slot}:$")))
    box.wait_for(timeout=60_000)
    box.click()
    page.get_by_role("option", name=re.compile(f"^{re.escape(name)}$")).click()
    wait_for_app(page, timeout=90_000)
    assert box.locator("input").input_value() == name


def test_evaluate_compares_beta_1_with_beta_4(page, app_url):
    open_page(page, app_url, "evaluate")
    pick_model(page, "mnist5k-mlp-z16")
    page.get_by_role("tab", name="Compare two models").click()
    pick_compared(page, "A", "mnist5k-mlp-z16")  # A and B offer every model; pick the β = 1 / β = 4 pair explicitly
    pick_compared(page, "B", "mnist5k-mlp-z16-beta4")
    claim = page.get_by_text("The reconstruction/KL balance, measured")
    claim.wait_for(timeout=60_000)
    assert "A (β = 1.0)" in claim.inner_text() and "B (β = 4.0)" in claim.inner_text()
    page.locator("[data-testid='stPlotlyChart']").nth(2).wait_for()  # both latent maps (after the KL chart)
    assert rendered_images(page, 1) >= 1  # inputs and both reconstructions
    page.wait_for_timeout(500)
    assert page_errors(page) == []
    screenshot(page, "app-evaluate-compare")


def test_evaluate_shows_mig_for_a_shapes_model(page, app_url):
    open_page(page, app_url, "evaluate")
    pick_model(page, "shapes-mlp-z6")
    page.get_by_text("Disentanglement (MIG)").wait_for()
    page.locator("[data-testid='stMetric']", has_text="MIG").wait_for()
    assert page_errors(page) == []
    screenshot(page, "app-evaluate-shapes")
