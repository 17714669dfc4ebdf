"""A real `streamlit run app.py` server on 127.0.0.1 and Debian's headless Chromium driven by playwright."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.server import serve

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def app_url():
    """The app as a user starts it, for the whole test session."""
    (ROOT / "artifacts").mkdir(exist_ok=True)
    with serve("app.py", log=ROOT / "artifacts" / "e2e-server.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run `apt-get install -y chromium` (tests/run.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _page(browser, viewport: dict):
    context = browser.new_context(viewport=viewport)
    yield context.new_page()
    context.close()


@pytest.fixture
def page(browser):
    yield from _page(browser, {"width": 1400, "height": 1000})


@pytest.fixture
def tall_page(browser):
    """Streamlit scrolls inside its own container: a tall viewport shows the whole page, and screenshots it."""
    yield from _page(browser, {"width": 1400, "height": 2200})


def open_page(page, app_url: str, path: str, timeout: float = 90_000) -> None:
    """Go to /path and wait until the app's script run has finished."""
    page.goto(f"{app_url}/{path}")
    wait_for_app(page, timeout=timeout)


def wait_for_app(page, timeout: float = 30_000) -> None:
    """Wait until Streamlit has finished running the script (no 'running' indicator, main block present)."""
    page.wait_for_selector("[data-testid='stMain']", timeout=timeout)
    # stApp carries the script's run state; before the first run it is "initial" and the page is still empty.
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def page_errors(page) -> list[str]:
    """Texts of Streamlit exception blocks on the page."""
    return page.locator("[data-testid='stException']").all_inner_texts()
