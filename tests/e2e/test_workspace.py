"""The tab's workspace in a real browser: a link that reproduces Explore pixel for pixel in a fresh browser, an upload
that follows the user from page to page and across a model switch, two training runs overlaid then compared as A
and B, hostile query strings, and the screenshots of a new user's first five minutes (docs/screenshots/)."""
from __future__ import annotations

import shutil
from urllib.parse import parse_qs, urlparse

import pytest

from tests.e2e.conftest import ROOT, open_page, page_errors, screenshot, wait_for_app
from tests.e2e.test_app_pages import current_model, digit_png, settle

Z2 = "mnist5k-mlp-z2"
DOCS = ROOT / "docs" / "screenshots"


def nav(page, title: str) -> None:
    """Click a page in the sidebar's navigation (the same browser session, unlike page.goto)."""
    page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
    page.wait_for_timeout(300)
    wait_for_app(page, 60_000)


def canvas_pixels(page) -> str:
    """The live control's decoded image (a canvas), as a data URL: its exact pixels."""
    page.wait_for_function("() => window.__latentControl?.instances?.explore_live?.paintedZ", timeout=120_000)
    page.wait_for_timeout(500)
    return page.locator("canvas.lc-image").first.evaluate("c => c.toDataURL('image/png')")


def server_pixels(page) -> str:
    loc = page.locator("img[data-testid='decoded-image']")
    loc.wait_for(state="attached", timeout=60_000)
    return loc.get_attribute("src")


def tray_text(page) -> str:
    return page.locator("[data-testid='stSidebar']").inner_text()


def test_a_link_with_z_reproduces_explore_in_a_fresh_browser(browser, app_url):
    one = browser.new_context(viewport={"width": 1400, "height": 1400})
    page = one.new_page()
    open_page(page, app_url, f"explore?model={Z2}")
    page.get_by_role("button", name="Sample from the prior").click()
    settle(page)
    page.wait_for_function("() => new URL(location.href).searchParams.get('z')", timeout=30_000)
    url = page.url
    q = parse_qs(urlparse(url).query)
    assert q["model"] == [Z2] and len(q["z"][0].split(",")) == 2
    pixels, server = canvas_pixels(page), server_pixels(page)
    one.close()

    fresh = browser.new_context(viewport={"width": 1400, "height": 1400})
    page = fresh.new_page()
    page.goto(url)
    wait_for_app(page, 90_000)
    assert Z2 in current_model(page)
    assert server_pixels(page) == server  # PyTorch's decode of the same z
    assert canvas_pixels(page) == pixels  # and the image the user sees, decoded in the browser
    assert "z from the link" in page.locator("[data-testid='stMain']").inner_text()
    assert page_errors(page) == []
    fresh.close()


@pytest.mark.parametrize("query", [
    "explore?model=no-such-model&z=nan,1",
    f"explore?model={Z2}&z=1e308,0",
    f"explore?model={Z2}&z=1,2,3",
    f"explore?model={Z2}&z=%3Cscript%3Ealert(1)%3C/script%3E",
    "interpolate?interp_steps=1e308&interp_method=evil&img=mnist5k:999999&b=../../etc/passwd:1",
    "denoise?denoise_kind=nope&denoise_strength_gaussian=NaN&denoise_seed=-5",
])
def test_hostile_query_strings_get_a_notice_not_an_exception(page, app_url, query):
    open_page(page, app_url, query)
    page.wait_for_timeout(500)
    assert page_errors(page) == []
    assert page.locator("[data-testid='stMain'] h1").count() == 1  # the page itself is drawn
    if "z=" in query or "img=" in query or "model=no" in query:
        assert "Link: Ignored" in tray_text(page)  # the small notice (a toast, and a caption in the sidebar)


def test_an_upload_follows_the_user_and_survives_a_model_switch(tall_page, app_url, tmp_path):
    page = tall_page
    open_page(page, app_url, f"reconstruct?model={Z2}")
    path = tmp_path / "my-seven.png"
    path.write_bytes(digit_png())
    page.locator("[data-testid='stFileUploader'] input[type='file']").last.set_input_files(str(path))
    page.locator("img[data-testid='rec-output']").wait_for(timeout=60_000)
    settle(page)
    assert "upload my-seven.png" in tray_text(page)
    nav(page, "Interpolate")
    assert "Current image: upload my-seven.png" in page.locator("[data-testid='stMain']").inner_text()
    assert "my-seven.png →" in page.locator("[data-testid='stMain']").inner_text()  # the strip's caption: A → B
    nav(page, "Denoise")
    assert "Current image: upload my-seven.png" in page.locator("[data-testid='stMain']").inner_text()
    # another model: the image stays, adapted to it
    picker = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first
    picker.click()
    page.get_by_role("option", name="mnist5k-mlp-z16", exact=True).click()
    settle(page)
    assert "mnist5k-mlp-z16" in current_model(page)
    assert "upload my-seven.png" in tray_text(page)
    nav(page, "Reconstruct")
    page.locator("img[data-testid='rec-output']").wait_for(timeout=60_000)
    assert page_errors(page) == []
    screenshot(page, "workspace-upload-after-model-switch")


def train_run(page, latent: int, epochs: int = 2) -> None:
    page.get_by_role("spinbutton", name="Latent dimensions", exact=True).fill(str(latent))
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill(str(epochs))
    page.get_by_role("spinbutton", name="Hidden width", exact=True).fill("128")
    page.get_by_role("button", name="Start training").click()
    # this run's header and its end (the Save button of an earlier run may still be on the page)
    page.wait_for_function(f"() => document.body.innerText.includes('latent {latent}, hidden 128') && "
                           f"document.body.innerText.includes('finished: {epochs} of {epochs} epochs')", timeout=240_000)
    page.get_by_role("button", name="Save").wait_for(timeout=60_000)
    settle(page)


def test_two_runs_overlaid_then_compared_as_a_and_b(tall_page, app_url):
    page = tall_page
    open_page(page, app_url, "train")
    train_run(page, 2)
    train_run(page, 8)
    main = page.locator("[data-testid='stMain']")
    assert "Runs of this tab" in main.inner_text()
    overlay = page.locator("[data-testid='stPlotlyChart']").last
    names = overlay.evaluate("el => [...new Set(el.querySelector('.js-plotly-plot')._fullData.map(t => t.legendgroup))]")
    assert len(names) == 2 and any("z2" in n for n in names) and any("z8" in n for n in names)
    screenshot(page, "train-runs-overlaid")
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url("**/evaluate**", timeout=60_000)
    wait_for_app(page, 120_000)
    text = main.inner_text()
    # A and B are the two runs (the pickers show them; the table's headers are drawn on a canvas)
    picks = page.locator("[data-testid='stMain'] [data-testid='stSelectbox']").evaluate_all(
        "els => els.map(el => el.textContent + ' ' + [...el.querySelectorAll('input')].map(i => i.value).join(' '))")
    assert any("mnist5k-z2" in p for p in picks) and any("mnist5k-z8" in p for p in picks), picks
    assert page_errors(page) == []
    screenshot(page, "evaluate-compare-runs")


def test_first_five_minutes(tall_page, app_url, tmp_path):
    """Home, Train with the defaults, Explore, Latent map, Reconstruct an upload, Interpolate, Denoise: screenshots
    for docs/screenshots/, each page without an exception."""
    page = tall_page
    shots = []
    open_page(page, app_url, "")
    page.locator("img[data-testid='home-decoded']").wait_for(timeout=120_000)  # the data set is loaded
    card = page.locator("[data-testid='stMarkdown'] table", has_text="reconstruction agreement")  # markdown table
    card.wait_for(timeout=60_000)
    assert "95.7%" in card.inner_text()
    page.locator("[data-testid='history-curves'] svg").nth(2).wait_for(timeout=60_000)  # the training history
    page.wait_for_timeout(1000)
    shots.append(screenshot(page, "first-home"))
    nav(page, "Train")
    page.get_by_role("button", name="Start training").click()
    # The live charts never vanish while the run goes on: sample the page every 100 ms until it ends.
    page.locator("[data-testid='stPlotlyChart']").first.wait_for(timeout=120_000)
    counts = page.evaluate("""async () => {
        const out = [];
        const t0 = performance.now();
        while (performance.now() - t0 < 120000) {
            out.push(document.querySelectorAll("[data-testid='stMain'] [data-testid='stPlotlyChart']").length);
            if ([...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Save')) break;
            await new Promise(r => setTimeout(r, 100));
        }
        return out;
    }""")
    # curves, KL per dimension and the latent map: once all three are drawn (after the first epoch), they stay
    first = next((i for i, c in enumerate(counts) if c >= 3), len(counts))
    runs = []  # run-length encoded, for the message: [(count, how many samples in a row)]
    for c in counts:
        runs = runs[:-1] + [(c, runs[-1][1] + 1)] if runs and runs[-1][0] == c else runs + [(c, 1)]
    assert first < len(counts) and min(counts[first:]) >= 3, runs  # no live chart vanishes, not even for 100 ms
    page.get_by_role("button", name="Save").wait_for(timeout=300_000)
    settle(page)
    shots.append(screenshot(page, "first-train-defaults"))
    nav(page, "Explore")
    canvas_pixels(page)
    shots.append(screenshot(page, "first-explore"))
    # The map draws with ui/scatter (not Plotly), and polls the t-SNE worker: wait for its first paint.
    page.locator("[data-testid='stSidebarNav'] a", has_text="Latent map").first.click()
    page.wait_for_function("() => window.__mapScatter?.stats?.paints?.length", timeout=120_000)
    wait_for_app(page, 120_000)
    settle(page)
    shots.append(screenshot(page, "first-map"))
    nav(page, "Reconstruct")
    path = tmp_path / "seven.png"
    path.write_bytes(digit_png())
    page.locator("[data-testid='stFileUploader'] input[type='file']").last.set_input_files(str(path))
    page.locator("img[data-testid='rec-output']").wait_for(timeout=60_000)
    settle(page)
    shots.append(screenshot(page, "first-reconstruct-upload"))
    nav(page, "Interpolate")
    shots.append(screenshot(page, "first-interpolate"))
    nav(page, "Denoise")
    shots.append(screenshot(page, "first-denoise"))
    assert page_errors(page) == []
    DOCS.mkdir(parents=True, exist_ok=True)
    for shot in shots:
        shutil.copy(shot, DOCS / shot.name)


def test_explore_buttons_fit_at_1024_px(browser, app_url):
    context = browser.new_context(viewport={"width": 1024, "height": 900})
    page = context.new_page()
    try:
        open_page(page, app_url, "explore")
        buttons = page.locator("[data-testid='stMain'] [data-testid='stButton'] button")
        buttons.first.wait_for(timeout=60_000)
        cut = buttons.evaluate_all("bs => bs.filter(b => [...b.querySelectorAll('p, div')].some("
                                   "e => e.scrollWidth > e.clientWidth + 1)).map(b => b.innerText)")
        assert cut == []  # no "Sample fro…"
        screenshot(page, "explore-1024")
    finally:
        context.close()


def test_captions_are_readable_in_the_dark_theme(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1400}, color_scheme="dark")
    page = context.new_page()
    try:
        open_page(page, app_url, "interpolate")
        page.locator("[data-testid='stMain'] [data-testid='stImage']").first.wait_for(timeout=60_000)
        open_page(page, app_url, "reconstruct")
        page.locator("[data-testid='stButtonGroup'] button", has_text="Data set").click()
        settle(page)
        page.get_by_role("button", name="Use this image").click()
        page.locator("img[data-testid='rec-output']").wait_for(timeout=60_000)
        settle(page)
        # the captions under the images: light text on the dark page, not a fixed grey
        colour = page.locator("[data-testid='rec-steps'] figcaption").first.evaluate(
            "e => getComputedStyle(e).color")
        rgb = [int(v) for v in colour[colour.index("(") + 1: colour.index(")")].split(",")[:3]]
        assert min(rgb) > 150, colour
        screenshot(page, "reconstruct-dark")
    finally:
        context.close()


def test_a_trained_model_stays_current_on_the_next_page(page, app_url):
    """After a run is adopted, opening another page keeps it: the picker drawn before the run (the default model)
    must not switch the model back behind the new picker (seen: the picker said 'run #1' while pages used z32)."""
    open_page(page, app_url, "train")
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill("1")
    page.keyboard.press("Tab")
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("button", name="Save").wait_for(timeout=180_000)
    settle(page)
    nav(page, "Explore")
    main = page.locator("[data-testid='stMain']").inner_text()
    assert "run #" in current_model(page)
    assert "has 16 latent dimension" in main and "mnist5k-mlp-z32" not in main
