"""M2 in real headless Chromium: the shipped mnist5k-m2-100 model's style grid on the Semi-supervised page, and the
class selector on Explore changing the decoded digit while z stays put."""
from __future__ import annotations

import re

from tests.e2e.conftest import open_page, page_errors, screenshot, wait_for_app

M2_MODEL = "mnist5k-m2-100"


def pick_model(page, name: str) -> None:
    page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name=re.compile(f"^{re.escape(name)}$")).click()
    wait_for_app(page, timeout=90_000)


def test_semi_page_shows_the_comparison_and_the_style_grid(tall_page, app_url):
    page = tall_page
    open_page(page, app_url, "semi")
    pick_model(page, M2_MODEL)
    grid = page.locator("img[data-testid='style-grid']")
    grid.wait_for(timeout=90_000)
    box = grid.bounding_box()
    assert box["width"] > 8 * box["height"] / 6  # 11 columns (the image, then y = 0..9) by 6 rows
    page.get_by_text("M2 classifier").wait_for()
    page.get_by_text("pixels").first.wait_for()
    screenshot(page, "semi-style-grid")
    before = grid.get_attribute("src")
    page.get_by_role("spinbutton", name="Seed (which held-out images)").fill("3")
    page.keyboard.press("Enter")
    page.wait_for_function("(b) => { const i = document.querySelector(\"img[data-testid='style-grid']\");"
                           " return i && i.src !== b; }", arg=before, timeout=60_000)
    assert page_errors(page) == []


def test_explore_class_selector_changes_the_digit_not_the_style(tall_page, app_url):
    page = tall_page
    open_page(page, app_url, "explore")
    pick_model(page, M2_MODEL)
    page.get_by_text("Class y (M2").wait_for(timeout=60_000)
    image = page.locator("img[data-testid='decoded-image']")  # the server decode, kept in the page but hidden
    image.wait_for(state="attached", timeout=60_000)
    before = image.get_attribute("src")
    page.locator("[data-testid=stMain] button").filter(has_text=re.compile("^7$")).first.click()
    page.wait_for_function("(b) => { const i = document.querySelector(\"img[data-testid='decoded-image']\");"
                           " return i && i.src !== b; }", arg=before, timeout=60_000)
    wait_for_app(page, timeout=90_000)
    screenshot(page, "explore-m2-class-7")
    assert page_errors(page) == []
