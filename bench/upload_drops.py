"""Dropped connections after uploads on /reconstruct: real server, headless Chromium, awkward PNGs alternating.

    python bench/upload_drops.py [--uploads 200] [--message-cache]

Uploads a greyscale+alpha PNG (mode LA) and a palette PNG with a transparent colour (mode P, tRNS) in turn, waits
for each run to finish, and counts dropped connections (a fatal websocket error in the browser: Streamlit's
"Connection error" dialog, e.g. "Cached ForwardMsg MISS"), ForwardMsgs the server sent as references to the
browser's cache, and the upload -> page settled time. A dropped page is reloaded and the count goes on.
Before .streamlit/config.toml's global.minCachedMessageSize, 4 of 20 such uploads dropped.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.abuse import AWKWARD, UPLOAD_INPUT, SocketWatch, connection_error_shown  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, wait_for_app  # noqa: E402
from tests.e2e.server import serve  # noqa: E402


def run(url: str, browser, uploads: int) -> dict:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watch = SocketWatch(page)
    page.goto(f"{url}/reconstruct")
    wait_for_app(page, 120_000)
    drops, seconds, stuck = 0, [], 0
    for i in range(uploads):
        name, data = AWKWARD[i % len(AWKWARD)]
        errors_before = watch.drops
        t0 = time.perf_counter()
        page.locator(UPLOAD_INPUT).set_input_files(files=[{"name": name, "mimeType": "image/png", "buffer": data}])
        page.wait_for_timeout(100)
        try:
            wait_for_app(page, 30_000)
            page.locator("[data-testid='rec-output']").wait_for(timeout=30_000)
        except Exception:  # noqa: BLE001 - a page that never settles counts below
            stuck += 1
        seconds.append(time.perf_counter() - t0)
        if watch.drops > errors_before or connection_error_shown(page):
            drops += 1
            print(f"  upload {i + 1}: dropped ({(watch.errors or ['dialog'])[-1][:100]})", flush=True)
            page.goto(f"{url}/reconstruct")
            wait_for_app(page, 120_000)
        if (i + 1) % 20 == 0:
            print(f"  {i + 1} uploads, {drops} dropped, load {os.getloadavg()[0]:.1f}", flush=True)
    page.close()
    return {"drops": drops, "stuck": stuck, "refs": watch.refs, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=200)
    ap.add_argument("--message-cache", action="store_true",
                    help="turn Streamlit's message references back on (its 10 kB default) to see the drops come back")
    args = ap.parse_args()
    extra = ("--global.minCachedMessageSize", "10000") if args.message_cache else ()
    from playwright.sync_api import sync_playwright

    print(f"load average at start: {os.getloadavg()}")
    with serve("app.py", log=ROOT / "artifacts" / "upload-drops-server.log", extra_args=extra) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        r = run(url, browser, args.uploads)
        browser.close()
    s = np.asarray(r["seconds"])
    print(f"alternating LA / palette+tRNS uploads on /reconstruct: {args.uploads}")
    print(f"  dropped connections: {r['drops']} of {args.uploads}; pages that never settled: {r['stuck']}")
    print(f"  messages sent as cache references: {r['refs']}")
    print(f"  upload -> page settled: p50 {np.percentile(s, 50):.2f} s, p95 {np.percentile(s, 95):.2f} s")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    (ROOT / "artifacts").mkdir(exist_ok=True)
    main()
