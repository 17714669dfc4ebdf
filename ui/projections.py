"""The latent map's projections, computed off the page: PCA at once, t-SNE and UMAP in a worker process.

t-SNE and UMAP hold the GIL in long native stretches; in a thread they would freeze every page of the server for
seconds. They run in one spawned worker process instead (started on first use, kept for the server's life), one job
at a time, queued per (model, split, method). The results are cached per model and split, shared read-only.

As soon as a model is chosen (the sidebar calls prefetch), its held-out latents are encoded in a background thread
and the default nonlinear map is queued, so the map page usually finds it ready.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import types
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

import vae
from ui import state, user_data
from vae.projections import METHODS, NeighbourMap, ProjectionError, fit_map_arrays, map_worker_init

DEFAULT_METHOD = "tsne"  # measured faster than UMAP here (bench/map_latency.py), and it separates mnist's classes
# The worker's niceness. A t-SNE of 5,000 points keeps one of two cores busy for 3-5 s after a model is first
# chosen (the sidebar queues it); at the server's priority the model switches made meanwhile were the slow tail of
# bench/app_latency.py's cached switch. Training's thread runs at 5 (ui/training_job.py); a map nobody waits on
# can yield more.
WORKER_NICE = 10
MAX_ENTRIES = 24
_LOCK = threading.Lock()
_POOL: ProcessPoolExecutor | None = None
_JOBS: "OrderedDict[tuple[str, str, str], Future]" = OrderedDict()  # (model key, split, method) -> Future[NeighbourMap]
_PREFETCHED: set[str] = set()


def _stop_worker() -> None:
    """At exit, end a running fit now: the pool's own exit hook would wait for it (minutes, on a busy machine)."""
    pool = _POOL
    if pool is None:
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


_POOL_LOCK = threading.RLock()
_ATEXIT_REGISTERED = False
RETRIES = 1  # a job whose worker died is run once more in a fresh worker, then reported


def _pool() -> ProcessPoolExecutor:
    global _POOL, _ATEXIT_REGISTERED
    with _POOL_LOCK:
        if _POOL is None:
            # spawn, not fork: the server has threads (a forked child could inherit a held lock)
            _POOL = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=map_worker_init, initargs=(os.getpid(), WORKER_NICE))
            if not _ATEXIT_REGISTERED:
                # threading's exit hooks run newest first, so this one runs before concurrent.futures' join
                threading._register_atexit(_stop_worker)
                _ATEXIT_REGISTERED = True
        return _POOL


def _discard(pool: ProcessPoolExecutor | None) -> None:
    """Forget a broken pool (the next request starts a fresh worker); a newer pool is kept."""
    global _POOL
    with _POOL_LOCK:
        if pool is not None and _POOL is pool:
            _POOL = None
    if pool is not None:
        try:
            pool.shutdown(wait=False, cancel_futures=True)
        except Exception:  # noqa: BLE001 - it is broken already
            pass


def _spawn_submit(pool: ProcessPoolExecutor, mu: np.ndarray, method: str) -> Future:
    """pool.submit, which starts the worker process when there is none. Streamlit installs the running script (app.py,
    or a page such as pages/map.py) as sys.modules["__main__"], and a spawned child re-runs its parent's __main__ file
    before it unpickles the job: the page would run again in the worker (asking for this map, spawning, and dying).
    So the worker is started with a bare __main__; Streamlit's own one is put back unless a script run replaced it."""
    saved = sys.modules.get("__main__")
    stand_in = types.ModuleType("__main__")  # no __file__, no __spec__: the child runs no main script
    sys.modules["__main__"] = stand_in
    try:
        return pool.submit(fit_map_arrays, mu, method)
    finally:
        if sys.modules.get("__main__") is stand_in and saved is not None:
            sys.modules["__main__"] = saved


def _start(mu: np.ndarray, method: str) -> tuple[ProcessPoolExecutor, Future]:
    """Submit to the worker; a pool that is broken or shut down is replaced by a fresh one, once."""
    with _POOL_LOCK:
        pool = _pool()
        try:
            return pool, _spawn_submit(pool, mu, method)
        except (BrokenProcessPool, RuntimeError):  # a worker that died (killed for memory): start a new one
            _discard(pool)
            pool = _pool()
            return pool, _spawn_submit(pool, mu, method)


def _submit(mu: np.ndarray, method: str) -> Future:
    """Fit in the worker; the future resolves to a NeighbourMap over these mu. A worker that dies under the job
    (BrokenProcessPool) is replaced and the job run once more; a second death is the future's exception."""
    out: Future = Future()

    def run(retries_left: int) -> None:
        try:
            pool, inner = _start(mu, method)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
            out.set_exception(exc)
            return

        def done(f: Future) -> None:
            try:
                xy, seconds, fitted, loo_error = f.result()
            except BrokenProcessPool:
                _discard(pool)
                if retries_left > 0:
                    run(retries_left - 1)
                else:
                    out.set_exception(BrokenProcessPool("the map's worker process stopped (out of memory?); "
                                                        "opening the map again retries"))
                return
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                out.set_exception(exc)
                return
            try:
                out.set_result(NeighbourMap(np.asarray(mu, np.float32), xy, method, seconds=seconds, fitted_on=fitted,
                                            loo_error=loo_error))
            except BaseException as exc:  # noqa: BLE001
                out.set_exception(exc)

        inner.add_done_callback(done)

    run(RETRIES)
    return out


def nonlinear(key: str, split: str, method: str, mu: np.ndarray) -> Future:
    """The (model, split)'s map by `method` ("tsne" | "umap"): queued once, then cached; failed jobs are retried."""
    if method not in METHODS:
        raise ProjectionError(f"unknown map {method!r}")
    with _LOCK:
        k = (key, split, method)
        fut = _JOBS.get(k)
        if fut is None or (fut.done() and fut.exception() is not None and not isinstance(fut.exception(), ProjectionError)):
            fut = _submit(np.asarray(mu, np.float32), method)
            _JOBS[k] = fut
        _JOBS.move_to_end(k)
        while len(_JOBS) > MAX_ENTRIES:
            _JOBS.popitem(last=False)
        return fut


def job(key: str, split: str, method: str) -> Future | None:
    """The job if one was queued (no new work)."""
    with _LOCK:
        return _JOBS.get((key, split, method))


def map_for(active: state.ActiveModel, split: str, method: str) -> Future:
    """nonlinear() for the active model's split, with the latents from ui.state's cache."""
    mu, _ = state.split_latents(active, split)
    return nonlinear(active.key, split, method, mu.numpy())


PREFETCH_DELAY_S = 2.0


def prefetch(active: state.ActiveModel, delay: float = PREFETCH_DELAY_S) -> None:
    """Once per model and server: encode the held-out set in a thread, then queue its default nonlinear map."""
    if active.config.latent_dim <= 2 or not user_data.allowed(active.ck.dataset):  # checked in the session's thread
        return
    with _LOCK:
        if active.key in _PREFETCHED:
            return
        _PREFETCHED.add(active.key)

    def go() -> None:
        try:
            data = state.prefetch_dataset(active.ck.dataset).result()
            mu, _ = vae.encode(active.model, data.x_test)
            nonlinear(active.key, "test", DEFAULT_METHOD, mu.numpy())
        except Exception:  # noqa: BLE001 - the page computes it again when it is opened, and says what failed
            with _LOCK:
                _PREFETCHED.discard(active.key)

    # After the page that asked has been drawn: the worker's start (it imports torch) competes for the same cores.
    timer = threading.Timer(delay, go)
    timer.daemon = True
    timer.start()
