"""Server-start work: what every first page needs, done once per server in a background thread.

`streamlit run app.py` finds app.py's `app = st.App(...)` (Streamlit 1.67's ASGI mode) and enters `lifespan` when
the server starts, before any browser connects. The lifespan starts `warm()` in a daemon thread and returns at
once, so the server answers while the thread imports torch and the page modules, loads the default model, its data
set and held-out latents into the same caches the pages read, and builds one figure of each kind (Plotly loads
its validators on first use). Until the default model is loaded (`warming()`), a browser that connects gets the
torch-free intro and the navigation (ui/intro.py) and then its page by itself; a page that needs what is still
under way after that blocks on the cache entry being computed (Streamlit computes each entry once), never does the
work twice.

Imports here stay light: this module is imported by the server process before anything else of the app.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import sys
import threading
import time
from typing import Any, AsyncIterator

_LOG = logging.getLogger("ui.preload")
_LOCK = threading.Lock()
_THREAD: threading.Thread | None = None
_SERVED = False  # set by the server's lifespan: a real `streamlit run`, not AppTest (whose runtime also "exists")
STEPS: list[tuple[str, float]] = []  # (step, seconds it took), in order; the log prints them too
# Set once torch, vae and ui are imported and the default model is loaded, or once warming has given up: until then
# app.py shows the torch-free intro (ui/intro.py) instead of making a first visitor's run wait for the imports.
_READY = threading.Event()
# Set when a fresh server's first visitor has been shown the intro. The preload waits for it (up to FIRST_VISIT_WAIT
# seconds) before importing torch: on two cores the import (2-3 s, with the GIL held for up to 0.37 s at a time)
# slowed the serving of the frontend and the first run, so that the intro came at 3.1-3.6 s instead of 2.3-2.9 s
# (bench/app_latency.py --cold-only). The price: the model's page comes ~0.5-1 s later than when the import starts
# at once, since the import takes as long either way.
_FIRST_VISIT = threading.Event()
FIRST_VISIT_WAIT = 2.0
# The GIL's switch interval in the server, 1 ms instead of Python's 5. A page's torch call releases and re-takes the
# GIL at every op; while another thread runs Python (the event loop serialising the run's earlier messages), each
# re-take waits up to the interval. Measured: decoding one z beside a busy Python thread took p50 106 ms at 5 ms and
# 0.35 ms at 1 ms (0.6 ms alone); on Explore the release's server decode took 8-100 ms in the server.
SWITCH_INTERVAL = 0.001
# torch's intra-op threads in the server: 1. Pages run small batches (one z, a traversal, 1,000 held-out images), where a
# second OpenMP thread mostly waits for a core that Chromium or another session holds: decoding one z beside one busy
# process took p95 18 ms with 2 threads, 1.1 ms with 1 (p50 0.8 ms both). Training runs set 1 thread already.
TORCH_THREADS = 1


class _NoContextWarning(logging.Filter):
    """Streamlit warns that a thread without a script run uses its caches; this one does so on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName == "vae-preload" and "missing ScriptRunContext" in record.getMessage())


def start() -> threading.Thread:
    """Start warming the server once (later calls return the same thread)."""
    global _THREAD
    with _LOCK:
        if _THREAD is None:
            sys.setswitchinterval(SWITCH_INTERVAL)
            from streamlit.logger import get_logger

            get_logger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(_NoContextWarning())
            globals()["_LOG"] = get_logger(__name__)  # Streamlit's handler and level: the steps show in its log
            _THREAD = threading.Thread(target=warm, name="vae-preload", daemon=True)
            _THREAD.start()
        return _THREAD


@contextlib.asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """st.App's lifespan: runs as the server starts, before the first browser session."""
    # The app navigates with st.navigation: tell Streamlit before any session that pages/ is not a v1 multipage
    # folder, so that a direct link (say /generate) on a fresh server runs app.py, not the bare page script.
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
    global _SERVED
    _SERVED = True
    start()
    yield


def visited() -> None:
    """The first visitor has the intro: the preload may take the CPU now."""
    _FIRST_VISIT.set()


def warming() -> bool:
    """A server still importing what the pages need: a page's run would wait seconds for it."""
    return _SERVED and not _READY.is_set()


def ready() -> bool:
    """Whether a page's run would find what it imports and the default model already loaded."""
    return _READY.is_set()


def _step(name: str, t0: float) -> float:
    t1 = time.perf_counter()
    STEPS.append((name, t1 - t0))
    _LOG.info("preload: %s %.2f s", name, t1 - t0)
    return t1


def warm() -> None:
    """Imports, the default model, its data set, held-out latents and projection, the browser's decoder, figures."""
    try:
        t = time.perf_counter()
        _FIRST_VISIT.wait(FIRST_VISIT_WAIT)
        t = _step("wait for a first visitor", t)
        import torch  # the largest import: 2-3 s here

        torch.set_num_threads(TORCH_THREADS)
        t = _step("import torch", t)
        from ui import plots, state, widgets  # noqa: F401 - vae, numpy, plotly.graph_objects, PIL's users

        t = _step("import vae and ui", t)
        path = state.CHECKPOINT_DIR / state.DEFAULT_CHECKPOINT
        if not path.exists():
            return
        active = state.file_model(path)
        t = _step("load the default model", t)
        _READY.set()
        state.prefetch_dataset(active.ck.dataset).result()
        t = _step(f"load the data set {active.ck.dataset}", t)
        mu, _ = state.latents(active)
        state.projection(active)
        t = _step("encode the held-out set, fit its projection", t)
        from ui import latent_control

        latent_control.model_payload(active.key, active)
        t = _step("the decoder's weights for the browser", t)
        if active.ck.history:
            plots.curves_figure(active.ck.history).to_json()
        xy = mu[:, :2].numpy() if mu.shape[1] >= 2 else mu.numpy().repeat(2, 1)
        plots.latent_map_figure(xy, None).to_json()
        widgets.png_bytes(torch.zeros(1, 28, 28))
        _step("first figures and images (Plotly's validators, PIL)", t)
    except Exception:  # noqa: BLE001 - warming is an optimisation: the pages do the same work and show any error
        _LOG.exception("preload failed; the pages will load what they need themselves")
    finally:
        _READY.set()
        freeze_heap()


def freeze_heap() -> None:
    """Move every object alive now (the imports, the default model and its data: ~260,000 objects the cyclic garbage
    collector would otherwise walk) out of the collector's sight. Python's automatic full collection walked them all:
    57-117 ms each, on the script thread of whichever run triggered it, three times in 30 slider releases on Explore
    (a gc callback's log). After gc.freeze() a full collection walks only what came later. Frozen objects are still
    freed by reference counting; only cycles among them would stay."""
    t = time.perf_counter()
    gc.freeze()  # no gc.collect() first: it holds the GIL for ~140 ms (a page running meanwhile would wait), to free
    # the few hundred objects the warm-up left in cycles
    _step(f"gc.freeze ({gc.get_freeze_count():,} objects)", t)
