"""Where the app's time goes: a sampling profile (py-spy) of a real `streamlit run app.py` driven by headless Chromium.

    python bench/profile_app.py [--rate 100] [--pages explore,map,reconstruct,home] [--no-train]

Needs py-spy (`pip install py-spy`; a profiling tool, not a dependency of the app). The server runs under
`py-spy record --format chrometrace` (timestamped samples of every thread); the browser marks the windows:

1. cold start: launching the server -> /_stcore/health answers -> the home page interactive;
2. page switches: a click on a sidebar link -> the page's title shown and the script run finished;
3. the same switches while this tab trains with the Train page's defaults (unless --no-train).

For each window it prints what ran, in which order and for how long: thread seconds sampled per activity (imports
by package, model load, data set load, encoding, figures, PNGs, Streamlit's own work, training), the thread kind
it ran in and when it was first seen. Figures are thread time: a thread counts while it runs or waits for the
CPU or the GIL, not while it blocks (select, wait, sleep), so a window's rows can add up to less than its wall time
(the server waited for the browser) or more (several threads busy at once, e.g. a training run beside a page).
The machine is shared: the load average is printed with every window; read ratios and order, not absolutes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e.server import free_port  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"
TITLES = {"": "VAE latent-space explorer", "train": "Train a VAE", "explore": "Explore the latent space",
          "map": "Latent map", "reconstruct": "Reconstruct an image", "interpolate": "Interpolate",
          "generate": "Generate", "denoise": "Denoise and complete", "evaluate": "Evaluate"}
OURS = ("app.py", "pages/", "ui/", "vae/", "bench/", "tests/")

# Activities, first match wins; each rule: (label, filename part, function name or None).
CONTEXT_RULES = [  # looked for from the outermost frame in: the whole stack belongs to them
    ("training (vae.fit)", "vae/training.py", "fit"),
    ("training snapshots (preview, map)", "ui/training_job.py", "_snapshot"),
]
WORK_RULES = [  # looked for from the innermost frame out
    ("figures (plotly)", "plotly/", None),
    ("figures (plotly)", "ui/plots.py", None),
    ("images (PNG)", "PIL/", None),
    ("images (PNG)", "ui/widgets.py", "png_bytes"),
    ("decoder weights for the browser", "vae/export.py", None),
    ("model load (checkpoint)", "vae/checkpoint.py", None),
    ("data set load", "vae/data.py", None),
    ("encode (held-out latents)", "vae/explore.py", "encode"),
    ("projection (PCA / t-SNE)", "vae/explore.py", "fit_projection"),
    ("projection (PCA / t-SNE)", "vae/explore.py", "tsne"),
    ("other vae work", "vae/", None),
    ("page and ui code", "pages/", None),
    ("page and ui code", "ui/", None),
    ("page and ui code", "app.py", None),
    ("streamlit: script runner, widgets, messages", "streamlit/runtime/", None),
    ("streamlit: script runner, widgets, messages", "streamlit/elements/", None),
    ("streamlit: script runner, widgets, messages", "streamlit/delta_generator", None),
    ("streamlit: script runner, widgets, messages", "streamlit/proto", None),
    ("streamlit: server, websocket", "streamlit/web/", None),
    ("streamlit: server, websocket", "starlette/", None),
    ("streamlit: server, websocket", "uvicorn/", None),
    ("streamlit: server, websocket", "tornado/", None),
    ("streamlit: server, websocket", "asyncio/", None),
    ("streamlit: other", "streamlit/", None),
]


def classify(stack: list[tuple[str, str]]) -> tuple[str, str]:
    """(activity, thread kind) of one sample; stack is [(function, file)] from the outermost frame in."""
    files = [f for _, f in stack]
    if any("scriptrunner" in f for f in files):
        kind = "script run"
    elif any("ui/training_job.py" in f for f in files):
        kind = "training thread"
    elif any("concurrent/futures" in f or "threading.py" in f for f in files) and not any("streamlit/web" in f for f in files):
        kind = "background thread"
    else:
        kind = "server (main)"
    for label, part, fn in CONTEXT_RULES:
        if any(part in f and (fn is None or fn == name) for name, f in stack):
            return label, kind
    for i, (name, f) in enumerate(stack):  # an import: the outermost module being imported that is not ours
        if name == "<module>" and i > 0 and "importlib" in stack[i - 1][1] and not f.startswith(OURS):
            if "<frozen" in f:
                continue
            return f"import {f.split('/')[0].removesuffix('.py')}", kind
    if any(name == "_find_and_load" for name, _ in stack):
        return "import (the app's own modules)", kind
    for name, f in reversed(stack):
        for label, part, fn in WORK_RULES:
            if part in f and (fn is None or fn == name):
                return label, kind
    return "other (python)", kind


IDLE = {"EpollSelector.select", "Condition.wait", "Event.wait", "Queue.get", "Thread.join", "_worker", "sleep"}


BOOTSTRAP = {"Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run"}


def short(filename: str) -> str:
    """A frame's file relative to the repository, site-packages or the standard library."""
    for prefix in (f"{ROOT}/", "site-packages/", "/lib/python3.11/"):
        if prefix in filename:
            return filename.split(prefix, 1)[1]
    return filename


def idle(stack: list[tuple[str, str]]) -> bool:
    """A thread that waits (py-spy --idle samples it too): its innermost frame blocks."""
    name, f = stack[-1]
    return name in IDLE or "polling_path_watcher" in f


def samples(trace: list[dict], period: float) -> list[tuple[float, float, str, str]]:
    """(start s, duration s, activity, thread kind) per busy interval, rebuilt from py-spy's B/E events.

    py-spy --idle samples every thread at every tick and writes B/E events where a thread's stack changes, so a
    stack holds from its timestamp to the next; intervals whose innermost frame blocks (select, wait) are idle.
    A thread that ends (Streamlit starts one per script run) has its frames closed only when the profile ends or
    when a new thread gets its id: its last stack counts for one sampling period.
    """
    by_tid: dict[int, list[dict]] = defaultdict(list)
    for ev in trace:
        by_tid[ev["tid"]].append(ev)
    out = []
    for events in by_tid.values():
        events.sort(key=lambda e: e["ts"])  # stable: B/E order within one timestamp is kept
        stack: list[tuple[str, str]] = []
        last_ts, i, final_ts = None, 0, events[-1]["ts"]
        while i < len(events):
            ts = events[i]["ts"]
            group = []
            while i + len(group) < len(events) and events[i + len(group)]["ts"] == ts:
                group.append(events[i + len(group)])
            # the frames close down to the thread's bootstrap: its target returned, the thread ended (py-spy closes
            # a dead thread's frames only when the profile ends or a new thread gets its id, which shares those
            # bootstrap frames), so its last stack counts for one sampling period
            left = stack[:max(0, len(stack) - sum(ev["ph"] == "E" for ev in group))]
            ended = all(name in BOOTSTRAP for name, _ in left)
            if stack and last_ts is not None and len(stack) > 1 and not idle(stack):
                dur = (ts - last_ts) / 1e6 if ts < final_ts and not ended else period
                out.append((last_ts / 1e6, dur, *classify(stack[1:])))
            while i < len(events) and events[i]["ts"] == ts:
                ev = events[i]
                if ev["ph"] == "B":
                    stack.append((ev["name"], short(ev["args"].get("filename", ""))))
                elif ev["ph"] == "E" and stack:
                    stack.pop()
                i += 1
            last_ts = ts
    return out


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def server_pid(parent: int) -> int | None:
    """py-spy's child: the python running streamlit."""
    try:
        kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def wait_ready(page, title: str, timeout: float = 120_000) -> None:
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout)
    page.wait_for_selector(READY, timeout=timeout)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def table(name: str, t0: float, t1: float, load: float, rows: list[tuple[float, float, str, str]]) -> None:
    inside = [r for r in rows if r[0] < t1 and r[0] + r[1] > t0]
    total: dict[tuple[str, str], float] = defaultdict(float)
    first: dict[tuple[str, str], float] = {}
    for start, dur, label, kind in inside:
        d = min(start + dur, t1) - max(start, t0)
        total[(label, kind)] += d
        first.setdefault((label, kind), max(start, t0) - t0)
    print(f"\n{name}: {t1 - t0:.2f} s wall   (load average {load:.2f})")
    print(f"  {'first seen':>10}  {'thread s':>6}  {'% wall':>6}  activity  [thread]")
    for key in sorted(total, key=lambda k: first[k]):
        if total[key] >= 0.02:
            print(f"  {first[key]:>9.2f}s  {total[key]:>6.2f}  {100 * total[key] / (t1 - t0):>5.0f}%  {key[0]}  [{key[1]}]")
    busy = sum(total.values())
    print(f"  {'':>10}  {busy:>6.2f}  {100 * busy / (t1 - t0):>5.0f}%  all busy thread time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument("--pages", default="explore,map,reconstruct,generate,home", help="pages to switch to, in order")
    ap.add_argument("--no-train", action="store_true", help="skip the switches during a training run")
    ap.add_argument("--out", default=str(ROOT / "artifacts" / "profile-app.json"), help="py-spy's chrometrace file")
    ap.add_argument("--report", action="store_true", help="print the tables of the last run's files again")
    args = ap.parse_args()
    out = Path(args.out)
    if args.report:
        report(out, args.rate)
        return
    if shutil.which("py-spy") is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    from playwright.sync_api import sync_playwright

    out.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    cmd = ["py-spy", "record", "--idle", "--format", "chrometrace", "--rate", str(args.rate), "--output", str(out), "--",
           sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
           "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none", "--browser.gatherUsageStats",
           "false"]
    print(f"profile of the app, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (shared machine: noisy)")
    marks: list[tuple[str, float, float, float]] = []  # (name, t0, t1, load) in s since launch
    rss: list[tuple[str, float | None]] = []
    log = open(out.with_suffix(".log"), "w")
    t_launch = time.perf_counter()
    spy = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    now = lambda: time.perf_counter() - t_launch  # noqa: E731
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                    break
            except OSError:
                if spy.poll() is not None or now() > 120:
                    sys.exit(f"the server did not start; see {out.with_suffix('.log')}")
                time.sleep(0.05)
        t_health = now()
        pid = server_pid(spy.pid)
        marks.append(("cold start: launch -> /_stcore/health answers", 0.0, t_health, os.getloadavg()[0]))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(url)
            wait_ready(page, TITLES[""])
            marks.append(("cold start: /_stcore/health -> home page interactive", t_health, now(), os.getloadavg()[0]))
            rss.append(("after the home page", rss_mb(pid) if pid else None))
            page.wait_for_timeout(3000)  # let background work (prefetches) finish: switches are measured on their own

            def switch(path: str, note: str) -> None:
                link = page.locator(f"[data-testid='stSidebarNav'] a[href$='/{path}']").first
                load = os.getloadavg()[0]
                t0 = now()
                link.click()
                wait_ready(page, TITLES[path])
                marks.append((f"page switch -> /{path}{note}", t0, now(), load))

            pages = [p.strip() for p in args.pages.split(",") if p.strip()]
            for path in pages:
                switch("" if path == "home" else path, "")
                page.wait_for_timeout(1500)
            rss.append(("after the page switches", rss_mb(pid) if pid else None))
            if not args.no_train:
                switch("train", "")
                load = os.getloadavg()[0]
                t0 = now()
                page.get_by_role("button", name="Start training").click()
                page.locator("[data-testid='stProgress']").first.wait_for(timeout=60_000)
                marks.append(("Start training -> progress bar shown", t0, now(), load))
                for path in pages:
                    switch("" if path == "home" else path, " (training in this tab)")
                    page.wait_for_timeout(300)
                rss.append(("after training", rss_mb(pid) if pid else None))
            browser.close()
    finally:
        pid = server_pid(spy.pid)
        if pid:
            os.kill(pid, signal.SIGTERM)  # py-spy writes its file when the program it runs exits
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        log.close()
    out.with_suffix(".marks.json").write_text(json.dumps({"marks": marks, "rss": rss}))
    report(out, args.rate)


def report(out: Path, rate: int) -> None:
    """The tables of a recorded run: its trace and the marks the browser left beside it."""
    saved = json.loads(out.with_suffix(".marks.json").read_text())
    rows = samples(json.loads(out.read_text()), 1 / rate)
    # py-spy's clock starts when it has launched the program: close enough to ours (both within a few ms).
    for name, t0, t1, load in saved["marks"]:
        table(name, t0, t1, load, rows)
    print()
    for what, mb in saved["rss"]:
        print(f"server resident memory {what}: " + (f"{mb:.0f} MB" if mb else "n/a") + " (under py-spy)")
    print(f"\ntrace: {out} (open in https://ui.perfetto.dev)")


if __name__ == "__main__":
    main()
