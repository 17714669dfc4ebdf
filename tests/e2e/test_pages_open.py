"""Every page in the registry opens in a real browser with no exception, and leaves a screenshot to look at."""
import pytest

from tests.e2e.conftest import page_errors, screenshot, wait_for_app
from ui.registry import PAGES


@pytest.mark.parametrize("spec", PAGES, ids=[p.url_path or "home" for p in PAGES])
def test_page_opens(page, app_url, spec):
    page.goto(f"{app_url}/{spec.url_path}")
    wait_for_app(page)
    page.wait_for_timeout(500)
    screenshot(page, spec.url_path or "home")
    assert page_errors(page) == []
    assert page.locator("[data-testid='stSidebar']").is_visible()
