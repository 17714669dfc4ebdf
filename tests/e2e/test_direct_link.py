"""A bookmark to a page, opened first on a fresh server, must get the app (navigation + model sidebar), not the
bare page script that Streamlit's v1 pages/ folder handling would run."""
from urllib.parse import urlparse

from tests.e2e.conftest import ROOT, page_errors, wait_for_app
from tests.e2e.server import serve


def test_direct_link_on_a_fresh_server(page):
    with serve("app.py", log=ROOT / "artifacts" / "e2e-direct-link.log") as url:
        page.goto(f"{url}/generate")
        wait_for_app(page, 60_000)
        page.get_by_role("heading", name="Generate").wait_for(timeout=60_000)
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Latent map" in nav and "Evaluate" in nav  # app.py's navigation, with its titles
        page.get_by_text("Current model").wait_for(state="visible", timeout=30_000)  # the shared sidebar ran too
        assert urlparse(page.url).path.rstrip("/").endswith("/generate")  # still on Generate (?model= may follow)
        assert page_errors(page) == []
