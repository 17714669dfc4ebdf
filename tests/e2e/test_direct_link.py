"""A fresh server: a bookmark to a page, opened first, must get the app (navigation + model sidebar), not the bare page
script that Streamlit's v1 pages/ folder handling would run; and the first visitor sees the app while the server is
still importing torch, then the page by itself."""
from urllib.parse import urlparse

from tests.e2e.conftest import ROOT, page_errors, wait_for_app
from tests.e2e.server import serve


def test_direct_link_on_a_fresh_server(page):
    with serve("app.py", log=ROOT / "artifacts" / "e2e-direct-link.log") as url:
        page.goto(f"{url}/generate")
        # the preload waits for this first visitor before importing torch (ui/preload.py): the note comes first
        page.get_by_text("The server is starting").wait_for(timeout=30_000)
        assert "Latent map" in page.locator("[data-testid='stSidebarNav']").inner_text()  # the navigation already
        wait_for_app(page, 60_000)
        page.get_by_role("heading", name="Generate").wait_for(timeout=60_000)
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Latent map" in nav and "Evaluate" in nav  # app.py's navigation, with its titles
        page.get_by_text("Current model").wait_for(state="visible", timeout=30_000)  # the shared sidebar ran too
        assert urlparse(page.url).path.rstrip("/").endswith("/generate")  # still on Generate (?model= may follow)
        assert page_errors(page) == []


def test_a_fresh_servers_home_shows_the_intro_then_the_model_by_itself(page):
    outside = []  # the app works offline: nothing it loads may come from another host (a favicon did, from Google)
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
            else None)
    with serve("app.py", log=ROOT / "artifacts" / "e2e-fresh-home.log") as url:
        page.goto(url)
        page.get_by_text("The server is starting").wait_for(timeout=30_000)
        page.get_by_role("heading", name="VAE latent-space explorer").wait_for(timeout=5_000)
        page.get_by_role("link", name="Latent map").first.wait_for(timeout=5_000)
        page.get_by_text("Model card", exact=True).wait_for(timeout=60_000)  # no reload, no click
        page.get_by_text("The server is starting").wait_for(state="detached", timeout=10_000)
        wait_for_app(page, 60_000)
        page.get_by_text("Current model").wait_for(state="visible", timeout=30_000)
        assert page_errors(page) == []
    assert outside == []
