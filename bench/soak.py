"""Soak: several users at once on one real server (loopback only), for a bounded time, doing awkward things.

    python bench/soak.py [--contexts 6] [--minutes 5] [--scan-files 3000]

N browser contexts (separate sessions) of one headless Chromium share one `streamlit run app.py` on 127.0.0.1. Each:
uploads the awkward PNGs (greyscale+alpha, palette+tRNS) on /reconstruct, switches pages, trains once (context 0 on a
folder of --scan-files images under a data root, a slow scan; the others on a built-in data set, started while that
scan runs), and sends one refused archive (Train's data-set upload when the page has one; else a refused checkpoint
in the sidebar). It stops at --minutes (each context finishes its current step), then the server idles --settle
seconds. Printed: dropped connections, exceptions shown, the server's resident memory at start / peak / end (and
the end of the first and second half, for growth), the worst wait a user saw for a built-in data set while another
user's scan ran, and the load average. Issue 11 asks for --contexts 20 --minutes 5: <= 1 GB, no growth in the second
half.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.abuse import AWKWARD, UPLOAD_INPUT  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.server import serve  # noqa: E402

READY = "[data-testid='stApp'][data-test-script-state='notRunning']"
PAGES = ["", "explore", "map", "reconstruct", "interpolate", "generate", "denoise", "evaluate", "train"]
BUILT_IN = ["digits", "shapes"]  # not loaded at start: a user's run has to wait for its load


# ------------------------------------------------------------------------------------------ the server's memory

def server_pid(port: int) -> int | None:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(cmd) and str(port).encode() in cmd:
                return int(d.name)
    return None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_for_preload(log: Path, timeout: float = 120.0) -> bool:
    """Wait until the server's start-up work (ui/preload.py) has logged its last step, then 2 s: "start" is the
    memory of a server ready for its first user, not one caught half-way through importing torch (534-602 MB)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "preload: first figures" in text or "preload failed" in text:
            time.sleep(2.0)
            return True
        time.sleep(0.25)
    return False


class MemoryWatch(threading.Thread):
    """Samples the server's resident memory twice a second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), rss_mb(self.pid)))
            except OSError:
                return
            self.stop.wait(0.5)


# ------------------------------------------------------------------------------------------ files the users send

def scan_folder(n: int) -> Path:
    """n small PNGs in sub-folders (labels), made once and kept under artifacts/ for later runs."""
    folder = ROOT / "artifacts" / f"soak-scan-{n}"
    if len(list(folder.glob("*/*.png"))) >= n:
        return folder
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / f"class{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((48, 48)) * 255).astype(np.uint8)).save(sub / f"{i}.png")
    return folder


def bomb_zip() -> bytes:
    """The archive of issue 15: 120 members of 24 MB of zeros (about 2.9 MB compressed)."""
    path = ROOT / "artifacts" / "soak-bomb.zip"
    if not path.exists():
        buf = io.BytesIO()
        zeros = bytes(24 * 2**20)
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            for i in range(120):
                z.writestr(f"img{i:03d}.png", zeros)
        path.write_bytes(buf.getvalue())
    return path.read_bytes()


# ------------------------------------------------------------------------------------------ one user

class Stats:
    def __init__(self):
        self.drops = 0
        self.exceptions: list[str] = []
        self.actions = 0
        self.timeouts = 0
        self.waits: list[tuple[float, bool, str]] = []  # (seconds, a scan was running, data set)
        self.refused: list[str] = []
        self.scan_running = False
        self.scan_seconds: float | None = None


async def settle(page, timeout: float = 120_000) -> None:
    await page.wait_for_timeout(150)
    await page.wait_for_selector("[data-testid='stMain']", timeout=timeout)
    await page.wait_for_selector(READY, timeout=timeout)


async def check(page, stats: Stats, what: str) -> None:
    stats.actions += 1
    shown = await page.locator("[data-testid='stException']").all_inner_texts()
    stats.exceptions += [f"{what}: {t[:200]}" for t in shown]
    if await page.get_by_text("Connection error").count():
        stats.drops += 1
        print(f"  dropped connection after {what}", flush=True)
        await page.reload()
        await settle(page)


async def goto(page, url: str, path: str, stats: Stats) -> None:
    await page.goto(f"{url}/{path}")
    await settle(page)
    await check(page, stats, f"open /{path}")


async def upload_awkward(page, url: str, stats: Stats, n: int = 2) -> None:
    await goto(page, url, "reconstruct", stats)
    for i in range(n):
        name, data = AWKWARD[i % 2]
        await page.locator(UPLOAD_INPUT).set_input_files(files=[{"name": name, "mimeType": "image/png", "buffer": data}])
        await settle(page)
        await check(page, stats, f"upload {name}")


async def train(page, url: str, stats: Stats, dataset: str, folder: Path | None) -> None:
    """One training run; times the wait from Start to the run's header (the data set loaded)."""
    await goto(page, url, "train", stats)
    box = page.locator("[data-testid='stMain'] [data-testid='stSelectbox']").filter(has_text="Data set").first
    option = "folder…" if folder is not None else dataset
    for _ in range(4):  # a rerun landing as the list opens closes it: open it again
        await box.click()
        item = page.get_by_role("option", name=option, exact=True)
        try:
            await item.wait_for(timeout=10_000)
            await item.click()
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError
            await page.keyboard.press("Escape")
    else:
        raise RuntimeError(f"the data set option {option!r} never appeared")
    if folder is not None:
        await page.get_by_role("textbox", name="Folder or .zip of images (for folder…)").fill(str(folder))
    await page.get_by_role("spinbutton", name="Epochs", exact=True).fill("3")
    await page.get_by_role("spinbutton", name="Hidden width", exact=True).fill("64")
    stats.filled.append(1)
    if len(stats.filled) >= stats.users:
        stats.ready.set()
    try:  # every user's form is filled: user 0 starts its scan, the others 1 s later
        await asyncio.wait_for(stats.ready.wait(), 300)
    except asyncio.TimeoutError:
        pass  # a user fell behind (or failed): go on without it
    if folder is None:
        await asyncio.sleep(1.0)
    scan_running = stats.scan_running
    t0 = time.perf_counter()
    if folder is not None:
        stats.scan_running = True
    await page.get_by_role("button", name="Start training").click()
    header = page.locator("h3", has_text="Run #")
    error = page.locator("[data-testid='stMain'] [data-testid='stAlertContentError']")
    try:
        await header.or_(error).first.wait_for(timeout=240_000)
    except Exception:  # noqa: BLE001 - counted, the soak goes on
        stats.timeouts += 1
    waited = time.perf_counter() - t0
    if folder is not None:
        stats.scan_running = False
        stats.scan_seconds = waited
        if await error.count():
            stats.refused.append("scan: " + (await error.first.inner_text())[:120])
    else:
        stats.waits.append((waited, scan_running, dataset))
    await check(page, stats, f"train on {dataset}")


async def refuse_archive(page, url: str, stats: Stats) -> None:
    """Train's data-set upload, if the page has one, with the zip bomb; else a pickle as a checkpoint."""
    await goto(page, url, "train", stats)
    uploader = page.locator("[data-testid='stFileUploader']", has_text="Images or one .zip")
    if not await uploader.first.is_visible():
        opener = page.locator("[data-testid='stExpander'] summary", has_text="pload")
        if await opener.count():
            await opener.first.click()
            await page.wait_for_timeout(500)
    if await uploader.count():
        await uploader.locator("input[type=file]").set_input_files(
            files=[{"name": "bomb.zip", "mimeType": "application/zip", "buffer": bomb_zip()}])
        await page.get_by_role("button", name="Make a data set").click()
        what = "archive"
    else:
        await page.locator("[data-testid='stSidebar'] [data-testid='stFileUploaderDropzoneInput']").set_input_files(
            files=[{"name": "refused.safetensors", "mimeType": "application/octet-stream",
                    "buffer": b"\x80\x04" + bytes(1000)}])
        what = "checkpoint"
    await settle(page)
    msg = page.locator("[data-testid='stAlertContentError']")
    await msg.first.wait_for(timeout=120_000)
    stats.refused.append(f"{what}: {(await msg.first.inner_text())[:120]}")
    await check(page, stats, f"refused {what}")


async def user(i: int, browser, url: str, deadline: float, stats: Stats, folder: Path) -> None:
    ctx = await browser.new_context(viewport={"width": 1300, "height": 1000})
    ctx.set_default_timeout(120_000)  # a loaded shared machine: slow, not broken
    page = await ctx.new_page()
    page.on("console", lambda m: m.text and "fatal error" in m.text and print(f"  [{i}] {m.text[:120]}", flush=True))
    try:
        await train(page, url, stats, "folder" if i == 0 else BUILT_IN[i % len(BUILT_IN)], folder if i == 0 else None)
        await upload_awkward(page, url, stats)
        await refuse_archive(page, url, stats)
        step = i
        while time.monotonic() < deadline:
            path = PAGES[step % len(PAGES)]
            step += 1
            if path == "reconstruct":
                await upload_awkward(page, url, stats)
            else:
                await goto(page, url, path, stats)
    except Exception as exc:  # noqa: BLE001 - one user's failure is reported, the others go on
        stats.timeouts += 1
        print(f"  user {i}: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
    finally:
        await ctx.close()


async def soak(url: str, contexts: int, minutes: float, folder: Path) -> list[Stats]:
    from playwright.async_api import async_playwright

    stats = [Stats() for _ in range(contexts)]
    stats[0].ready, stats[0].filled, stats[0].users = asyncio.Event(), [], contexts
    deadline = time.monotonic() + minutes * 60
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # One flag for "a scan is running", seen by every user: user 0's.
        users = [user(i, browser, url, deadline, stats[i] if i == 0 else _Shared(stats[i], stats[0]), folder)
                 for i in range(contexts)]
        await asyncio.gather(*users)
        await browser.close()
    return stats


class _Shared:
    """A user's Stats, reading and writing the scan flag of user 0's."""

    def __init__(self, own: Stats, scan: Stats):
        object.__setattr__(self, "_own", own)
        object.__setattr__(self, "_scan", scan)

    def __getattr__(self, name):
        return getattr(self._scan if name in _SHARED else self._own, name)

    def __setattr__(self, name, value):
        setattr(self._scan if name in _SHARED else self._own, name, value)


_SHARED = ("scan_running", "ready", "filled", "users")  # kept on user 0's Stats, seen by all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", type=int, default=6)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--scan-files", type=int, default=3000)
    ap.add_argument("--settle", type=float, default=150.0,
                    help="seconds of idle server after the users leave (Streamlit keeps a closed tab's session 120 s)")
    args = ap.parse_args()
    args.contexts = max(1, min(args.contexts, 40))  # bounded
    args.minutes = max(0.5, min(args.minutes, 30))
    (ROOT / "artifacts").mkdir(exist_ok=True)
    folder = scan_folder(args.scan_files)
    bomb_zip()
    print(f"soak: {args.contexts} contexts x {args.minutes:g} min; load average at start {os.getloadavg()}", flush=True)
    runs = Path(tempfile.mkdtemp(prefix="soak-runs-"))
    os.environ.update(VAE_EXPLORER_DATA_ROOT=str(folder.parent), VAE_EXPLORER_RUNS=str(runs))
    log = ROOT / "artifacts" / "soak-server.log"
    with serve("app.py", log=log) as url:
        pid = server_pid(int(url.rsplit(":", 1)[1]))
        warmed = wait_for_preload(log)
        print(f"  server warmed (default model, its data set and latents loaded): {warmed}", flush=True)
        watch = MemoryWatch(pid)
        watch.start()
        time.sleep(1)
        t0 = time.monotonic()
        stats = asyncio.run(soak(url, args.contexts, args.minutes, folder))
        t1 = time.monotonic()
        time.sleep(args.settle)
        watch.stop.set()
        watch.join()
    mem = np.array([m for _, m in watch.samples])
    ts = np.array([t for t, _ in watch.samples])
    during = mem[(ts >= t0) & (ts <= t1)]
    half = t0 + (t1 - t0) / 2
    first = mem[(ts >= t0) & (ts < half)]
    second = mem[(ts >= half) & (ts <= t1)]
    waits = [w for s in stats for w in s.waits]
    during_scan = [w for w, scan, _ in waits if scan]
    other = [w for w, scan, _ in waits if not scan]
    print(f"users done after {t1 - t0:.0f} s; load average at end {os.getloadavg()}")
    print(f"  actions: {sum(s.actions for s in stats)}; steps that timed out: {sum(s.timeouts for s in stats)}")
    print(f"  dropped connections: {sum(s.drops for s in stats)}")
    exc = [e for s in stats for e in s.exceptions]
    print(f"  exceptions shown: {len(exc)}" + "".join(f"\n    {e}" for e in exc[:5]))
    print(f"  server resident memory (MB): start {mem[0]:.0f}, peak {mem.max():.0f}, end of users {during[-1]:.0f}, "
          f"after {args.settle:.0f} s idle {mem[-1]:.0f}")
    print(f"  growth: first half max {first.max():.0f} MB, second half max {second.max():.0f} MB, "
          f"second half {second[0]:.0f} -> {second[-1]:.0f} MB")
    print(f"  scan of {args.scan_files} files: {stats[0].scan_seconds if stats[0].scan_seconds is not None else 'n/a'} s")
    if during_scan:
        print(f"  built-in data set while the scan ran: worst wait {max(during_scan):.1f} s "
              f"(n={len(during_scan)}, median {np.median(during_scan):.1f} s)")
    if other:
        print(f"  built-in data set otherwise: worst wait {max(other):.1f} s (n={len(other)})")
    for s in stats:
        for r in s.refused:
            print(f"  refused: {r}")


if __name__ == "__main__":
    main()
