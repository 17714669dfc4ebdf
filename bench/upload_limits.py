"""Uploads in real headless Chromium against a real `streamlit run app.py`: the server's resident memory and the
time to an answer for issue 15's refused archive (2.9 MB zip, 120 members x 24 MB of zeros) and for a good one.

    python bench/upload_limits.py [--repeats 3] [--images 2000]

Prints, per upload: seconds from the click on "Make a data set" to the message, and the server's RSS before, right
after and 5 s after. Loopback only; the upload folder is a temporary one. The machine is shared: figures are noisy.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, open_page  # noqa: E402
from tests.e2e.server import serve  # noqa: E402
from tests.zipcraft import bomb_zip  # noqa: E402


def server_pid() -> int:
    """The `streamlit run` child of this process."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"streamlit" in cmd:
            return int(d.name)
    raise RuntimeError("no streamlit server found")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def good_zip(path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            a = np.zeros((28, 28), np.uint8)
            r, c = rng.integers(4, 20, 2)
            if i % 2:
                a[r: r + 4, 3:25] = 255
            else:
                a[3:25, c: c + 4] = 255
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, "PNG")
            zf.writestr(f"set/{'bars' if i % 2 else 'columns'}/{i}.png", buf.getvalue())
    return path


def upload(page, pid: int, path: Path, done_text: str) -> None:
    before = rss_mb(pid)
    page.locator("[data-testid='stExpander'] input[type='file']").set_input_files(str(path))
    page.locator("[data-testid='stExpander']").get_by_text(path.name).wait_for(timeout=120_000)
    t = time.perf_counter()
    page.get_by_role("button", name="Make a data set").click()
    page.get_by_text(done_text).first.wait_for(timeout=300_000)
    seconds = time.perf_counter() - t
    after = rss_mb(pid)
    time.sleep(5)
    print(f"  {path.name} ({path.stat().st_size / 1e6:.1f} MB): answer in {seconds:.2f} s; server RSS "
          f"{before:.0f} -> {after:.0f} MB, {rss_mb(pid):.0f} MB 5 s later", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=2000)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bomb = tmp / "bomb.zip"
        bomb.write_bytes(bomb_zip())
        good = good_zip(tmp / f"good-{args.images}.zip", args.images)
        os.environ["VAE_EXPLORER_UPLOAD_DIR"] = str(tmp / "uploads")
        with serve("app.py") as url, sync_playwright() as p:
            pid = server_pid()
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            open_page(page, url, "train")
            page.get_by_text("Your own images: upload a .zip or image files").click()
            time.sleep(3)
            print(f"server RSS after opening /train: {rss_mb(pid):.0f} MB; load average "
                  f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
            for _ in range(args.repeats):
                upload(page, pid, bomb, "Not used: the archive")
            upload(page, pid, good, "Made a data set of")
            print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            browser.close()


if __name__ == "__main__":
    main()
