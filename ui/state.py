"""Cached loading and the current model of each browser session.

Models loaded from files or uploads are cached with st.cache_resource and shared between sessions: they are
read-only (eval mode; every use goes through vae's inference-mode functions). A model trained in this browser
session lives only in st.session_state.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

import vae
from ui import memory, run_record, safe, user_data
from ui.safe import md
from vae.checkpoint import Checkpoint, CheckpointError, from_bytes, to_bytes
from ui.semi_ui import class_view, m2_note

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = Path(os.environ.get("VAE_EXPLORER_CHECKPOINTS", ROOT / "checkpoints"))  # tests point it elsewhere
DEFAULT_CHECKPOINT = "mnist5k-mlp-z32.safetensors"  # gives back the digit it was shown for 95.7 % of held-out images
# What each shipped model is good for, shown beside its name in the picker.
SHIPPED_NOTES = {"mnist5k-mlp-z32": "default", "mnist5k-mlp-z2": "2-D map & manifold"}
MAX_UPLOAD_MB = 200

# Decoding for the UI is small and latency-bound: one thread avoids fighting the server and a training thread.
torch.set_num_threads(1)
memory.configure()  # few malloc arenas, freed pages handed back: memory that a finished job freed comes back


@dataclass(frozen=True)
class ActiveModel:
    key: str  # stable id for caches: file path + mtime, upload digest, or session run id
    label: str
    ck: Checkpoint

    @property
    def model(self) -> vae.VAE:
        return self.ck.model

    @property
    def config(self) -> vae.ModelConfig:
        return self.ck.model_config


@st.cache_resource(max_entries=16, show_spinner=False)
def _load_file(path: str, mtime_ns: int) -> Checkpoint:
    return vae.load_checkpoint(path)


@st.cache_resource(max_entries=8, show_spinner=False)
def _load_upload(digest: str, _data: bytes) -> Checkpoint:
    return from_bytes(_data)


# Data sets are loaded once per server in a background thread and shared read-only. A thread, not
# st.cache_resource, so that the app can start loading the current model's data set while the first page is
# still being drawn (mnist5k takes seconds to parse), and every page that needs it later just waits for it.
# Each data set loads on a thread of its own, so a user's slow folder scan never holds up another user's data set;
# two requests for the same data set share one load. Folder scans (user-supplied, possibly huge) take turns
# MAX_FOLDER_LOADS at a time; built-in data sets never wait for them.
_DATA: "OrderedDict[str, Future]" = OrderedDict()
_DATA_LOCK = threading.Lock()
MAX_DATASETS = 6
MAX_DATASET_MB = 512  # one full MNIST is 215 MB as float32, CIFAR-10 700 MB: keep the server near a gigabyte
MAX_FOLDER_LOADS = 2
_FOLDER_SLOTS = threading.BoundedSemaphore(MAX_FOLDER_LOADS)


def _load_into(fut: Future, name: str, options: dict) -> None:
    """Load one data set into its future (run on the data set's own thread)."""
    if not fut.set_running_or_notify_cancel():
        return
    slots = _FOLDER_SLOTS if ":" in name else contextlib.nullcontext()
    try:
        with slots:
            fut.set_result(vae.load_dataset(name, **options))
    except BaseException as exc:  # noqa: BLE001 - the page that waits for it shows the error
        fut.set_exception(exc)


def prefetch_dataset(name: str) -> Future:
    """Start loading a data set in the background (once per server); returns its future.

    Raises vae.DataError when this browser tab may not make the server read it (ui.user_data: data root, uploads).
    """
    user_data.check_access(name)
    return _submit(name)


def _submit(name: str) -> Future:
    with _DATA_LOCK:
        fut = _DATA.get(name)
        if fut is None or (fut.done() and fut.exception() is not None):  # failed loads are retried
            fut = Future()
            threading.Thread(target=_load_into, args=(fut, name, user_data.load_options(name)), daemon=True,
                             name=f"vae-data-{name[:40]}").start()
            _DATA[name] = fut
        _DATA.move_to_end(name)
        while len(_DATA) > MAX_DATASETS or (len(_DATA) > 1 and _held_mb() > MAX_DATASET_MB):
            _DATA.popitem(last=False)  # the least recently asked for; sessions that hold it keep their reference
        return fut


def _held_mb() -> float:
    """Megabytes of the loaded data sets' tensors (call with _DATA_LOCK held)."""
    total = 0
    for fut in _DATA.values():
        if fut.done() and fut.exception() is None:
            data = fut.result()
            total += sum(t.nbytes for t in (getattr(data, "x_train", None), getattr(data, "x_test", None))
                         if isinstance(t, torch.Tensor))
    return total / 2**20


PREFETCH_DELAY_S = 1.5  # parsing mnist5k holds the GIL for seconds: let the page that asked finish drawing first
_LATER: set[str] = set()


def prefetch_dataset_later(name: str, delay: float = PREFETCH_DELAY_S) -> None:
    """Start loading a data set after `delay` seconds, unless something needed it sooner (then it is under way)."""
    if not user_data.allowed(name):  # checked here, in the session's thread: the timer's thread has no session
        return
    with _DATA_LOCK:
        if name in _DATA or name in _LATER:
            return
        _LATER.add(name)

    def go() -> None:
        with _DATA_LOCK:
            _LATER.discard(name)
        _submit(name)

    timer = threading.Timer(delay, go)
    timer.daemon = True
    timer.start()


def dataset_ready(name: str) -> bool:
    """True when dataset(name) answers at once: loaded, or refused to this tab (it then raises vae.DataError)."""
    if not user_data.allowed(name):
        return True
    with _DATA_LOCK:
        fut = _DATA.get(name)
    return fut is not None and fut.done()  # a failed load answers at once too: dataset() raises its DataError


def dataset(name: str) -> vae.Dataset:
    """A data set, loaded once per server and shared read-only. Raises vae.DataError if it cannot be loaded."""
    fut = prefetch_dataset(name)
    if not fut.done():
        with st.spinner(f"Loading the data set {name}…"):
            return fut.result()
    return fut.result()


@st.cache_resource(max_entries=16, show_spinner=False)
def checkpoint_bytes(key: str, _ck: Checkpoint) -> bytes:
    _ck = _ck.source or _ck  # an M2 seen for one class downloads as the M2 it is
    return to_bytes(_ck.model, _ck.train_config, _ck.dataset, _ck.history, _ck.metrics, _ck.semi)


def dataset_for(active: ActiveModel) -> vae.Dataset:
    """The data set the model was trained on; vae.DataError says in one line why it cannot be used with the model."""
    data = dataset(active.ck.dataset)
    if (reason := vae.dataset_fits(active.ck, data)) is not None:
        raise vae.DataError(reason)
    return data


_LISTING: dict[str, tuple[int, list[Path]]] = {}  # folder -> (its mtime_ns, its listing)


def checkpoint_files() -> list[Path]:
    """The folder's checkpoints, newest first; listed again only when the folder changes (a save, a delete).

    Every rerun asks several times (sidebar, current model, pages): one stat of the folder instead of a glob and a
    stat per file. Saves replace files by os.replace, which changes the folder's mtime too.
    """
    try:
        mtime = CHECKPOINT_DIR.stat().st_mtime_ns
    except OSError:
        return []
    hit = _LISTING.get(str(CHECKPOINT_DIR))
    if hit is None or hit[0] != mtime:
        hit = (mtime, vae.list_checkpoints(CHECKPOINT_DIR))
        _LISTING[str(CHECKPOINT_DIR)] = hit
    return list(hit[1])


def add_session_model(ck: Checkpoint, label: str) -> ActiveModel:
    """Make a model trained (or otherwise made) in this browser session its current model."""
    active = ActiveModel(f"session:{uuid.uuid4().hex}", label, ck)
    st.session_state.setdefault("session_models", {})[active.key] = active
    st.session_state["model_key"] = active.key
    return active


def file_model(path: Path) -> ActiveModel:
    """A checkpoint file as an ActiveModel, loaded once per (path, mtime) and shared read-only."""
    mtime = path.stat().st_mtime_ns
    return ActiveModel(f"file:{path}:{mtime}", path.stem, _load_file(str(path), mtime))


def _choices() -> dict[str, tuple[str, object]]:
    """key -> (label, loader) for every model this session can pick."""
    out: dict[str, tuple[str, object]] = {}
    for key, active in st.session_state.get("session_models", {}).items():
        out[key] = (f"{active.label} · this tab", active)
    for key, active in st.session_state.get("uploaded_models", {}).items():
        out[key] = (f"{active.label} · uploaded", active)
    for path in checkpoint_files():
        note = SHIPPED_NOTES.get(path.stem)
        out[f"path:{path}"] = (f"{path.stem} · {note}" if note else path.stem, path)
    return out


def current() -> ActiveModel | None:
    """This session's current model, or None when there is none to pick."""
    choices = _choices()
    if not choices:
        return None
    key = st.session_state.get("model_key")
    if key not in choices:
        default = f"path:{CHECKPOINT_DIR / DEFAULT_CHECKPOINT}"
        key = default if default in choices else next(iter(choices))
        st.session_state["model_key"] = key
    _, target = choices[key]
    if isinstance(target, ActiveModel):
        return class_view(target)
    try:
        return class_view(file_model(target))  # M2: the plain VAE of this tab's class (ui/semi_ui.py)
    except CheckpointError as exc:
        st.sidebar.error(safe.error(exc))
        return None


def require_model() -> ActiveModel:
    """The current model, or a message and a stop of this page's run."""
    active = current()
    if active is None:
        st.info("No model yet: train one on the **Train** page, or upload a `.safetensors` checkpoint in the sidebar.")
        st.stop()
    return active


def _upload_ui() -> None:
    up = st.file_uploader("Open a checkpoint (.safetensors)", type=["safetensors"], key="ckpt_upload")
    if up is None:
        return
    data = up.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:16]
    key = f"upload:{digest}"
    if key in st.session_state.get("uploaded_models", {}):
        return
    if len(data) > MAX_UPLOAD_MB * 2**20:
        st.error(f"{md(up.name)}: {len(data) / 2**20:.0f} MB is larger than any checkpoint of ours.")
        return
    try:
        ck = _load_upload(digest, data)
    except CheckpointError as exc:
        st.error(f"{md(up.name)}: {safe.error(exc)}")
        return
    st.session_state.setdefault("uploaded_models", {})[key] = ActiveModel(key, Path(up.name).stem, ck)
    st.session_state["model_key"] = key


def adopt_finished_training() -> bool:
    """If this session's training run has ended with a model, make it the current model (once). True if it did."""
    job = st.session_state.get("train_job")
    if job is None or job.running or job.adopted:
        return False
    job.adopted = True
    run_record.update(status=job.result.status if job.result is not None else "error")
    ck = job.checkpoint()
    if ck is None:
        return False
    status = "" if job.result.status == "finished" else f" ({job.result.status})"
    # short: the sidebar's picker shows about 30 characters ("run #2 mnist5k-z16 · this tab")
    cfg = job.model_config
    active = add_session_model(ck, f"run #{job.id} {job.data.name}-{'' if cfg.arch == 'mlp' else cfg.arch + '-'}"
                                   f"z{cfg.latent_dim}{status}")
    from ui import runs  # late: ui.runs imports this module

    runs.record(job, active)  # the tab's run history: curves, settings, metrics, weights under a cap
    return True


def model_sidebar() -> None:
    """The model picker shared by every page: shipped/saved checkpoints, this session's models, uploads, download."""
    adopt_finished_training()
    run_record.check()  # keeps ?run= in the URL; tells a tab that a server restart lost its run
    with st.sidebar:
        st.subheader("Model")
        picker = st.container()  # drawn after the uploader has had its say, shown above it
        _upload_ui()
        choices = _choices()
        if not choices:
            picker.caption("No checkpoints yet: train one, or open a checkpoint file.")
            return
        current()  # settles model_key on a valid choice
        ss = st.session_state
        # model_key is the truth; code may switch it (training, upload, save). When it has, the picker is drawn as a
        # new widget: a stale value of the old one, sent by the browser before it saw the switch (a polling
        # fragment's request, say), cannot switch the model back.
        if ss.get("model_shown") != ss["model_key"]:
            ss["model_select_version"] = ss.get("model_select_version", 0) + 1
            ss["model_shown"] = ss["model_key"]
        wkey = f"model_select_{ss['model_select_version']}"
        options = list(choices)

        def picked(wkey: str = wkey) -> None:
            # Only the picker drawn last may switch the model: the browser can still send a change of an older one
            # (drawn before a run was adopted), and that stale value would switch the model back behind the picker.
            if wkey == f"model_select_{ss.get('model_select_version', 0)}" and wkey in ss:
                ss["model_key"] = ss["model_shown"] = ss[wkey]

        picker.selectbox("Current model", options, index=options.index(ss["model_key"]), key=wkey,
                         format_func=lambda k: choices[k][0], on_change=picked,
                         help="Shipped and saved checkpoints (checkpoints/), models trained or opened in this tab. "
                              "Your choice belongs to this browser tab only.")
        active = current()
        if active is None:
            return
        prefetch_dataset_later(active.ck.dataset)  # the pages that need it will find it loaded (or under way)
        from ui import projections  # here, not at the top: ui.projections imports this module

        projections.prefetch(active)  # the latent map's t-SNE starts computing now, in a worker process
        cfg = active.config
        neg_elbo = active.ck.metrics.get("neg_elbo")
        picker.caption(f"{md(user_data.display_name(active.ck.dataset))} · {cfg.arch} · latent {cfg.latent_dim} · {cfg.likelihood}"
                       + (f" · held-out −ELBO {neg_elbo:.1f} nats" if isinstance(neg_elbo, (int, float)) else ""))
        m2_note(active, picker)  # an M2 model: which class the pages show, and where its own figures are
        # A callable: the file (MBs) is made when clicked, not registered with the media store on every rerun.
        picker.download_button("Download checkpoint", data=lambda: checkpoint_bytes(active.key, active.ck),
                               file_name=f"{active.label}.safetensors", mime="application/octet-stream",
                               icon=":material/download:", on_click="ignore")


@st.cache_resource(max_entries=16, show_spinner="Encoding the held-out set…")
def heldout_latents(key: str, _active: ActiveModel) -> tuple[torch.Tensor, torch.Tensor]:
    """mu, sigma (N, L) of the model's held-out set, computed once per model and shared read-only."""
    return vae.encode(_active.model, dataset_for(_active).x_test)


@st.cache_resource(max_entries=16, show_spinner=False)
def heldout_projection(key: str, _active: ActiveModel) -> "vae.explore.Projection":
    """The 2-D view of the held-out latents: identity for 2-D latents, PCA otherwise (invertible)."""
    mu, _ = heldout_latents(key, _active)
    return vae.fit_projection(mu)


def latents(active: ActiveModel) -> tuple[torch.Tensor, torch.Tensor]:
    return heldout_latents(active.key, active)


def projection(active: ActiveModel):
    return heldout_projection(active.key, active)


# ---------------------------------------------------------------------------------------------- data-set views
SPLITS = {"test": "held-out set", "all": "training + held-out sets"}


def split_data(active: ActiveModel, split: str = "test") -> tuple[torch.Tensor, np.ndarray | None]:
    """Images (N, C, H, W) and labels (N,) of a split of the model's data set; "all" is training then held-out."""
    data = dataset_for(active)
    if split == "test":
        return data.x_test, None if data.y_test is None else data.y_test.numpy()
    return _joined(data.name, id(data))


@st.cache_resource(max_entries=4, show_spinner=False)
def _joined(name: str, data_id: int) -> tuple[torch.Tensor, np.ndarray | None]:
    """Training then held-out images and labels of a loaded data set, concatenated once (tens of MB)."""
    data = dataset(name)
    x = torch.cat([data.x_train, data.x_test])
    y = None if data.y_test is None or data.y_train is None else torch.cat([data.y_train, data.y_test]).numpy()
    return x, y


@st.cache_resource(max_entries=16, show_spinner="Encoding…")
def _split_latents(key: str, _active: ActiveModel, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if split == "test":
        return heldout_latents(key, _active)
    return vae.encode(_active.model, split_data(_active, split)[0])


@st.cache_resource(max_entries=16, show_spinner=False)
def _split_projection(key: str, _active: ActiveModel, split: str) -> "vae.explore.Projection":
    if split == "test":
        return heldout_projection(key, _active)
    return vae.fit_projection(_split_latents(key, _active, split)[0])


@st.cache_resource(max_entries=16, show_spinner="Scoring reconstructions…")
def _split_recon_error(key: str, _active: ActiveModel, split: str) -> np.ndarray:
    x, _ = split_data(_active, split)
    return torch.cat([vae.reconstruct(_active.model, x[i: i + 1000]).recon for i in range(0, len(x), 1000)]).numpy()


def split_latents(active: ActiveModel, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """mu, sigma (N, L) of a split, cached per model and shared read-only."""
    return _split_latents(active.key, active, split)


def split_projection(active: ActiveModel, split: str = "test"):
    """The invertible 2-D view (identity or PCA) fitted to a split's latent means."""
    return _split_projection(active.key, active, split)


def split_recon_error(active: ActiveModel, split: str = "test") -> np.ndarray:
    """-log p(x|z=mu) per image of a split, in nats."""
    return _split_recon_error(active.key, active, split)
