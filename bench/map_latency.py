"""Latent map figures: encode / project / first paint for 5,000 and 70,000 points, ui/scatter against Plotly,
hover -> thumbnail, pan frames, t-SNE and UMAP seconds, the inverse's round-trip error, and switching the app's map
between cached models.

    python bench/map_latency.py [--parts fits inverse browser app] [--sizes 5000 70000] [--repeats 5] [--sklearn]

1. Fits (no browser): t-SNE (openTSNE, FFT) and UMAP of the 5,000 mnist5k latents of the shipped 16-D model, wall and
   CPU seconds (CPU seconds are the robust figure on a shared machine); scikit-learn's t-SNE with --sklearn.
2. Inverse (no browser): a t-SNE map fitted on the 4,000 training latents; the 1,000 held-out latents go z -> map
   (neighbours) -> z. Neighbour interpolation for k = 4, 8, 16 against a small network fitted to invert the map
   (2 -> 256 -> 256 -> L, Adam, 300 epochs) and against PCA's plane. Median error relative to the points' spread.
3. Browser (tests/e2e/scatter_demo.py): a click on "Re-encode" -> encode + PCA + payload + first paint of the new
   points, for ui/scatter and for Plotly's Scattergl; hover -> thumbnail painted (ui/scatter, measured in the page);
   frames painted while panning for 1 s (30 pointer moves).
4. App: on /map, switching the sidebar's model between two models whose maps are cached: click -> new map painted.
Every figure is printed with the load average; none is asserted anywhere.
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
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"


def load() -> str:
    return "load average %.1f %.1f %.1f" % os.getloadavg()


def pct(ms: list[float]) -> str:
    a = np.asarray(ms, np.float64)
    return f"n={len(a)} p50={np.percentile(a, 50):.0f} ms p95={np.percentile(a, 95):.0f} ms max={a.max():.0f} ms"


def latents():
    import torch

    import vae

    torch.set_num_threads(1)
    d = vae.load_dataset("mnist5k")
    model = vae.load_checkpoint(ROOT / "checkpoints" / "mnist5k-mlp-z16.safetensors").model
    mu_tr, _ = vae.encode(model, d.x_train)
    mu_te, _ = vae.encode(model, d.x_test)
    return mu_tr.numpy(), mu_te.numpy()


def timed(f):
    w, c = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - w, time.process_time() - c


def fits(mu: np.ndarray, sklearn: bool) -> None:
    from vae.projections import tsne, umap

    print(f"\n1. Nonlinear maps of {len(mu):,} latents (16-D), one thread", flush=True)
    _, w, c = timed(lambda: tsne(mu))
    print(f"  t-SNE (openTSNE, FFT, vae.projections.TSNE_SCHEDULE), first call in this process: {w:.1f} s wall, "
          f"{c:.1f} s CPU   {load()}", flush=True)
    _, w, c = timed(lambda: tsne(mu))
    print(f"  t-SNE, second call: {w:.1f} s wall, {c:.1f} s CPU   {load()}", flush=True)
    if sklearn:
        from sklearn.manifold import TSNE

        _, w, c = timed(lambda: TSNE(init="pca", random_state=0).fit_transform(mu))
        print(f"  t-SNE (scikit-learn, Barnes-Hut): {w:.1f} s wall, {c:.1f} s CPU   {load()}", flush=True)
    _, w, c = timed(lambda: umap(mu))
    print(f"  UMAP, first call in this process (numba compiles): {w:.1f} s wall, {c:.1f} s CPU   {load()}", flush=True)
    _, w, c = timed(lambda: umap(mu))
    print(f"  UMAP, compiled: {w:.1f} s wall, {c:.1f} s CPU   {load()}", flush=True)


def inverse_errors(mu_tr: np.ndarray, mu_te: np.ndarray) -> None:
    import torch

    from vae.explore import fit_projection
    from vae.projections import LinearMap, NeighbourMap, relative_error, tsne

    print(f"\n2. Inverse round trip z -> map -> z on {len(mu_te):,} held-out latents (map fitted on {len(mu_tr):,})",
          flush=True)
    xy = tsne(mu_tr)
    for k in (4, 8, 16):
        m = NeighbourMap(mu_tr, xy, "tsne", k=k)
        print(f"  neighbours k={k:2d}: held-out {m.roundtrip_error(mu_te):.3f}, data points leave-one-out "
              f"{m.roundtrip_error():.3f}", flush=True)
    m = NeighbourMap(mu_tr, xy, "tsne")
    p_te = m.transform(mu_te)
    # A small network fitted to invert the map: (x, y) -> mu.
    torch.manual_seed(0)
    L = mu_tr.shape[1]
    net = torch.nn.Sequential(torch.nn.Linear(2, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, L))
    s = float(np.abs(xy).max())
    X, Y = torch.as_tensor(xy / s, dtype=torch.float32), torch.as_tensor(mu_tr, dtype=torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    t0 = time.perf_counter()
    for _ in range(300):
        for idx in torch.randperm(len(X)).split(256):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(X[idx]), Y[idx]).backward()
            opt.step()
    fit_s = time.perf_counter() - t0
    with torch.no_grad():
        z_net = net(torch.as_tensor(p_te / s, dtype=torch.float32)).numpy()
        z_net_tr = net(X).numpy()
    print(f"  network 2-256-256-{L}: held-out {relative_error(mu_te, z_net, mu_tr):.3f}, data points (seen in "
          f"training) {relative_error(mu_tr, z_net_tr, mu_tr):.3f}; fitted in {fit_s:.1f} s", flush=True)
    pca = LinearMap(fit_projection(mu_tr), mu_tr)
    print(f"  PCA plane: held-out {pca.roundtrip_error(mu_te):.3f}, data points {pca.roundtrip_error():.3f}   {load()}",
          flush=True)


def browser_measures(sizes: list[int], repeats: int) -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.e2e.server import serve

    print("\n3. Browser: tests/e2e/scatter_demo.py (mnist5k + seeded noisy copies, 16-D model, PCA)", flush=True)
    with serve("tests/e2e/scatter_demo.py", timeout=180) as url, sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1200, "height": 900})
        for n in sizes:
            for kind in ("scatter", "plotly"):
                page.goto(f"{url}/?n={n}&kind={kind}")
                page.wait_for_selector(READY, timeout=600_000)
                page.wait_for_timeout(500)
                first, steps = [], []
                for r in range(repeats + 1):
                    if kind == "scatter":
                        page.wait_for_function("() => window.__mapScatter?.stats?.paints?.length", timeout=600_000)
                        # the first paint of the *new* layer (its id carries the seed): a rerun may repaint the
                        # old one first, which must not count
                        before = page.evaluate("() => window.__mapScatter.stats.paints.at(-1).layer")
                        t0 = page.evaluate("() => performance.now()")
                        page.get_by_role("button", name="Re-encode").click()
                        new = "(a) => window.__mapScatter.stats.paints.find(p => p.t >= a[1] && p.layer !== a[0])"
                        page.wait_for_function(f"(a) => !!({new})(a)", arg=[before, t0], timeout=600_000)
                        t1 = page.evaluate(f"(a) => ({new})(a).t", [before, t0])
                    else:
                        seed = page.evaluate("() => document.querySelector('.gtitle')?.textContent")
                        t0 = page.evaluate("() => performance.now()")
                        page.get_by_role("button", name="Re-encode").click()
                        page.wait_for_function(
                            "(s) => { const t = document.querySelector('.gtitle'); return t && t.textContent !== s; }",
                            arg=seed, timeout=600_000)
                        t1 = page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(performance.now())))")
                    page.wait_for_selector(READY, timeout=600_000)
                    server = page.get_by_text("timing:").inner_text()
                    if r:  # the first click warms the process (page code, first encode)
                        first.append(t1 - t0)
                        steps.append(server)
                print(f"  {kind:7s} {n:6,} points, click -> encode + PCA + first paint: {pct(first)}   {load()}",
                      flush=True)
                print(f"          server side (last run): {steps[-1]}", flush=True)
                frames = pan_frames(page, kind)
                print(f"          panning 1 s (30 moves): {frames}", flush=True)
                if kind == "scatter":
                    hover(page, n)
        b.close()


PAN_PROBE = """() => { window.__frames = 0; const f = () => { window.__frames++; if (window.__counting) requestAnimationFrame(f); };
                       window.__counting = true; requestAnimationFrame(f); }"""


def pan_frames(page, kind: str) -> str:
    sel = ".js-plotly-plot .nsewdrag" if kind == "plotly" else None
    if kind == "scatter":
        box = page.evaluate("""() => { const c = window.__mapScatter.instances.demo_scatter.el.canvas.getBoundingClientRect();
                                       return {x: c.left, y: c.top, width: c.width, height: c.height}; }""")
        page.evaluate("() => window.__mapScatter.resetStats()")
    else:
        box = page.locator(sel).first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.evaluate(PAN_PROBE)
    t0 = time.perf_counter()
    for i in range(30):
        page.mouse.move(cx + 3 * i, cy + 2 * i)
        time.sleep(max(0.0, t0 + (i + 1) / 30 - time.perf_counter()))
    page.mouse.up()
    page.evaluate("() => { window.__counting = false; }")
    secs = time.perf_counter() - t0
    if kind == "scatter":
        ms = page.evaluate("() => window.__mapScatter.stats.frames.map(f => f.ms)")
        return (f"{len(ms)} frames drawn in {secs:.2f} s ({len(ms) / secs:.0f} per s); draw time "
                f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms")
    n = page.evaluate("() => window.__frames")
    return f"{n} animation frames in {secs:.2f} s ({n / secs:.0f} per s) while Plotly pans"


def hover(page, n: int) -> None:
    page.wait_for_function("() => { const a = window.__mapScatter.instances.demo_scatter.atlas; return a && a.ready; }",
                           timeout=600_000)
    page.evaluate("() => window.__mapScatter.resetStats()")
    rng = np.random.default_rng(0)
    hits = 0
    for i in rng.choice(n, 40, replace=False):
        pos = page.evaluate(f"() => window.__mapScatter.instances.demo_scatter.screenOf({int(i)})")
        page.mouse.move(pos["x"], pos["y"])
        hits += 1
    hv = page.evaluate("() => window.__mapScatter.stats.hovers.filter(h => h.thumb)")
    ms = [h["ms"] for h in hv]
    print(f"          hover -> thumbnail painted (pointermove to drawn, in the page): {pct(ms) if ms else 'none'} "
          f"over {hits} moves", flush=True)


def app_switch(repeats: int) -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.e2e.server import serve

    print("\n4. App: /map, switching between two 16-D models whose maps are cached (held-out set, Auto)", flush=True)
    models = ["mnist5k-mlp-z16", "mnist5k-mlp-z16-beta4"]
    with serve("app.py", timeout=180) as url, sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        page.wait_for_selector(READY, timeout=600_000)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Latent map").click(timeout=600_000)
        page.wait_for_function("() => window.__mapScatter?.stats?.paints?.length", timeout=600_000)
        out = []
        for r in range(2 * repeats + 4):
            name = models[r % 2]
            # until both t-SNE maps are ready, a switch shows PCA and then t-SNE: wait for the final map
            before = page.evaluate("() => window.__mapScatter.stats.paints.length")
            page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").click(timeout=600_000)
            t0 = page.evaluate("() => performance.now()")
            page.get_by_role("option", name=name, exact=True).click(timeout=600_000)
            page.wait_for_function(f"() => window.__mapScatter.stats.paints.length > {before}", timeout=600_000)
            t1 = page.evaluate("() => window.__mapScatter.stats.paints.at(-1).t")
            page.wait_for_selector(READY, timeout=600_000)
            shown = page.locator("[data-testid='stApp']").inner_text()
            if r >= 4 and "Computing" not in shown:
                out.append(t1 - t0)
            elif "Computing" in shown:
                page.wait_for_function("() => !document.body.innerText.includes('Computing t-SNE')", timeout=600_000)
        print(f"  click -> the other model's map painted: {pct(out) if out else 'no cached switches'}   {load()}",
              flush=True)
        b.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 70000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--parts", nargs="+", default=["fits", "inverse", "browser", "app"],
                    choices=["fits", "inverse", "browser", "app"])
    ap.add_argument("--sklearn", action="store_true", help="also time scikit-learn's t-SNE")
    args = ap.parse_args()
    print(f"bench/map_latency.py on {os.cpu_count()} CPUs, {load()}", flush=True)
    if "fits" in args.parts or "inverse" in args.parts:
        mu_tr, mu_te = latents()
        if "fits" in args.parts:
            fits(np.concatenate([mu_tr, mu_te]), args.sklearn)
        if "inverse" in args.parts:
            inverse_errors(mu_tr, mu_te)
    if "browser" in args.parts:
        browser_measures(args.sizes, args.repeats)
    if "app" in args.parts:
        app_switch(args.repeats)


if __name__ == "__main__":
    main()
