"""The user's own data in the web UI: images uploaded into this browser tab, and server paths under a data root.

Uploads: a .zip (sub-folders become labels) or several image files, read by vae.imagesets under its limits, stored
as `upload:TOKEN` in a temporary folder owned by this tab. The folder goes when the tab's session ends: a finalizer
on an object in the session's state (when Streamlit drops the session), a sweep every SWEEP_S seconds (a session
that has had no connection for longer than Streamlit keeps it for reconnecting), and at server exit. Disk used by
uploads is capped per tab and per server.

Server paths (`folder:PATH` typed into Train, or named in a checkpoint's metadata) are read only under the data
root the person running the server set: VAE_EXPLORER_DATA_ROOT, or `streamlit run app.py -- --data-root PATH`.
None by default.
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import weakref
from pathlib import Path

import streamlit as st

import vae
from ui import safe
from vae import imagesets

SESSION_CAP_MB = int(os.environ.get("VAE_EXPLORER_UPLOAD_SESSION_MB", 256))  # disk per browser tab
SERVER_CAP_MB = int(os.environ.get("VAE_EXPLORER_UPLOAD_SERVER_MB", 2048))  # disk for all tabs of this server
MAX_UPLOADS_PER_SESSION = 8
SWEEP_S = float(os.environ.get("VAE_EXPLORER_UPLOAD_SWEEP_S", 30))
# Streamlit keeps a disconnected session 120 s for a reconnect; after that it is gone. (Tests shorten both.)
GRACE_S = float(os.environ.get("VAE_EXPLORER_UPLOAD_GRACE_S", 150))
SIZES = [8, 16, 28, 32, 48, 64]
UPLOAD_TYPES = ["zip", "png", "jpg", "jpeg", "bmp", "webp", "gif"]


# ---------------------------------------------------------------- the data root
def data_root() -> Path | None:
    """The folder under which browsers may name server paths: --data-root after `--`, else the environment, else None."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--data-root=") else (
            argv[i + 1] if arg == "--data-root" and i + 1 < len(argv) else None)
        if value:
            return imagesets.data_root({imagesets.DATA_ROOT_ENV: value})
    return imagesets.data_root()


def check_access(name: str) -> None:
    """Raise vae.DataError unless this browser tab may make the server load the data set `name`."""
    if name.startswith("folder:"):
        imagesets.check_server_path(name[len("folder:"):], data_root())
    elif name.startswith("upload:"):
        if name[len("upload:"):] not in _space().tokens:
            raise vae.DataError("this model was trained on images uploaded in another browser tab, or in one that has "
                                "closed: uploads stay private to their tab; upload the images again on Train")


def allowed(name: str) -> bool:
    try:
        check_access(name)
    except vae.DataError:
        return False
    return True


def load_options(name: str) -> dict:
    """Options for vae.load_dataset when the web UI loads `name`: folders are read with links confined to the root."""
    root = data_root()
    return {"confine_to": root} if name.startswith("folder:") and root is not None else {}


# ---------------------------------------------------------------- this tab's uploads
class _Space:
    """This session's upload tokens; when Streamlit drops the session, the finalizer removes their folders."""

    def __init__(self, owner: str):
        self.owner = owner
        self.tokens: dict[str, dict] = {}  # token -> meta (title, n, shape, classes, bytes)
        weakref.finalize(self, _remove_all, self.tokens)  # runs at collection and at interpreter exit


def _remove_all(tokens: dict) -> None:
    for token in list(tokens):
        _remove(token)


def _remove(token: str) -> None:
    """Delete an upload's folder and drop its loaded copy from the server's data-set cache."""
    imagesets.remove_upload(token)
    try:
        from ui import state  # imported here: ui.state imports this module

        with state._DATA_LOCK:  # noqa: SLF001 - the loaded tensors (up to 128 MB) go with the folder
            state._DATA.pop(f"upload:{token}", None)  # noqa: SLF001
    except Exception:  # noqa: BLE001 - at interpreter exit the module may be gone; the folder is what matters
        pass


def _session_id() -> str:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def _space() -> _Space:
    space = st.session_state.get("_user_uploads")
    if space is None:
        space = st.session_state["_user_uploads"] = _Space(_session_id())
        _start_sweeper()
    return space


def session_datasets() -> dict[str, str]:
    """`upload:TOKEN` -> a label for the data-set picker, for this tab's uploads."""
    return {f"upload:{t}": describe(m) for t, m in _space().tokens.items()}


def describe(meta: dict) -> str:
    c, h, w = meta["shape"]
    classes = meta.get("classes")
    return (f"upload: {meta['title']} · {meta['n']:,} images, {h}×{w} {'grey' if c == 1 else 'RGB'}"
            + (f", {len(classes)} labels" if classes else ""))


def display_name(name: str) -> str:
    """A data set's name as the user knows it: an upload by its file name, not its token."""
    if not name.startswith("upload:"):
        return name
    meta = _space().tokens.get(name[len("upload:"):])
    return f"upload: {meta['title']}" if meta else "an upload of another tab"


def run_label(name: str, model_config: vae.ModelConfig) -> str:
    """A run's label (and default save name) for an upload: its file name, not the token."""
    if not name.startswith("upload:"):
        return ""
    meta = _space().tokens.get(name[len("upload:"):], {})
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in Path(meta.get("title", "upload")).stem)[:40]
    return f"{stem or 'upload'}-{model_config.arch}-z{model_config.latent_dim}"


def _server_bytes() -> int:
    return sum(size for _, meta, size in imagesets.upload_folders() if meta.get("pid") == os.getpid())


def _cap_check(space: _Space, n_images: int, values: int) -> None:
    """Refuse, before decoding, an upload that would put this tab or this server over its disk cap."""
    new = values + 1024  # the .npz holds the uint8 images and a small header
    mine = sum(m["bytes"] for m in space.tokens.values())
    if len(space.tokens) >= MAX_UPLOADS_PER_SESSION:
        raise vae.DataError(f"this tab already holds {len(space.tokens)} uploaded data sets, the most it may; remove "
                            "one first")
    if mine + new > SESSION_CAP_MB * 2**20:
        raise vae.DataError(f"refused: {n_images:,} images would take {new / 2**20:,.1f} MB and this tab's uploads "
                            f"already take {mine / 2**20:,.1f} MB; the limit per tab is {SESSION_CAP_MB} MB: remove "
                            "an upload, or pick grey or a smaller size")
    total = _server_bytes()
    if total + new > SERVER_CAP_MB * 2**20:
        raise vae.DataError(f"refused: the server holds {total / 2**20:,.0f} MB of uploads from all tabs and its limit "
                            f"is {SERVER_CAP_MB} MB; try again later, or upload fewer or smaller images")


def add_upload(files: list[tuple[str, bytes]], grey: bool, size: int) -> tuple[str, imagesets.Report]:
    """Read uploaded files under the limits, store them for this tab; returns the data set's name and the report."""
    space = _space()
    channels = 1 if grey else 3
    sid = _session_id()
    x, labels, report = imagesets.read_upload(
        files, channels, size, before_decode=lambda n: _cap_check(space, n, n * channels * size * size),
        should_stop=lambda: _session_alive(sid) is False)  # the tab has gone: stop decoding for it
    if len(x) < imagesets.MIN_IMAGES:
        raise vae.DataError(f"{report.summary()}: at least {imagesets.MIN_IMAGES} readable images are needed")
    title = files[0][0] if len(files) == 1 else f"{len(files)} files"
    token = imagesets.save_upload(x, labels, title, owner=space.owner)
    meta = imagesets.upload_meta(token)
    meta["bytes"] = imagesets.folder_bytes(imagesets.upload_dir(token))
    space.tokens[token] = meta
    return f"upload:{token}", report


def remove(name: str) -> None:
    token = name[len("upload:"):]
    space = _space()
    if token in space.tokens:
        del space.tokens[token]
        _remove(token)


# ---------------------------------------------------------------- the sweep: folders whose session has ended
_SWEEPER: threading.Thread | None = None
_SWEEP_LOCK = threading.Lock()
_LAST_SEEN: dict[str, float] = {}


def _start_sweeper() -> None:
    global _SWEEPER
    with _SWEEP_LOCK:
        if _SWEEPER is None:
            _SWEEPER = threading.Thread(target=_sweep_forever, daemon=True, name="vae-upload-sweep")
            _SWEEPER.start()


def _sweep_forever() -> None:
    while True:
        try:
            sweep()
        except Exception:  # noqa: BLE001 - a sweep that failed once must not stop the next
            pass
        time.sleep(SWEEP_S)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _session_alive(session_id: str) -> bool | None:
    """Whether Streamlit has this session connected now; None when there is no runtime to ask."""
    from streamlit import runtime

    if not runtime.exists():
        return None
    return runtime.get_instance().is_active_session(session_id)


def sweep(now: float | None = None) -> list[str]:
    """Remove upload folders whose session has ended (or whose server process has); returns their tokens."""
    now = time.time() if now is None else now
    removed = []
    for token, meta, _ in imagesets.upload_folders():
        pid, owner = meta.get("pid"), meta.get("owner")
        if pid is None:  # no readable meta: a half-written folder, or not ours
            folder = imagesets.upload_dir(token)
            if now - folder.stat().st_mtime > GRACE_S:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(token)
            continue
        if pid != os.getpid():
            if not _pid_alive(pid):  # its server was killed: nobody can reach it any more
                _remove(token)
                removed.append(token)
            continue
        alive = _session_alive(owner)
        if alive is None or alive:
            _LAST_SEEN[token] = now
            continue
        if now - _LAST_SEEN.get(token, meta.get("created", now)) > GRACE_S:
            _remove(token)
            _LAST_SEEN.pop(token, None)
            removed.append(token)
    return removed


# ---------------------------------------------------------------- the Train page's upload panel
def _release(files) -> None:
    """Drop the uploaded files' bytes from Streamlit's upload store: the data set has been made from them."""
    from streamlit import runtime

    if not runtime.exists():
        return
    mgr = runtime.get_instance().uploaded_file_mgr
    for f in files:
        mgr.remove_file(_session_id(), f.file_id)


def upload_panel() -> None:
    """Upload images into this tab, list and remove its uploads; a new upload is preselected in Train's form."""
    with st.expander("Your own images: upload a .zip or image files", expanded=bool(st.session_state.get("ud_open"))):
        st.caption("A .zip whose sub-folders name the classes (`cats/…`, `dogs/…`) gives a labelled data set; image "
                   "files (PNG, JPEG, BMP, WebP, GIF) give an unlabelled one. The images stay in this browser tab only "
                   "and are deleted when it closes. Limits: "
                   f"{imagesets.DEFAULT_LIMITS.max_members:,} files, {imagesets.DEFAULT_LIMITS.max_member_bytes // 2**20} MB "
                   f"per image, {imagesets.DEFAULT_LIMITS.max_total_bytes // 2**20} MB unpacked, "
                   f"{imagesets.DEFAULT_LIMITS.max_pixels / 1e6:.0f} megapixels per image, {SESSION_CAP_MB} MB per tab.")
        version = st.session_state.get("ud_version", 0)
        with st.form("ud_form", border=False):
            files = st.file_uploader("Images or one .zip", type=UPLOAD_TYPES, accept_multiple_files=True,
                                     key=f"ud_files_{version}")
            c1, c2 = st.columns(2)
            colour = c1.radio("Colour", ["grey", "RGB"], horizontal=True, key="ud_colour")
            size = c2.select_slider("Size (pixels per side)", SIZES, value=28, key="ud_size")
            go = st.form_submit_button("Make a data set", icon=":material/upload:")
        if go:
            st.session_state["ud_open"] = True
            if not files:
                st.error("Choose a .zip or some image files first.")
            else:
                try:
                    with st.spinner("Reading the images…"):
                        made, report = add_upload([(f.name, f.getvalue()) for f in files], colour == "grey", int(size))
                except vae.DataError as exc:
                    st.session_state["ud_message"] = ("error", f"Not used: {exc}")
                else:
                    st.session_state["ud_message"] = ("success", f"Made a data set of {report.summary()}: it is "
                                                                 "selected below.")
                    # preselect it in Train's form: set through session state, so the browser's picker follows
                    st.session_state["tr_dataset"] = made
                finally:
                    _release(files)
                    st.session_state["ud_version"] = version + 1  # a fresh uploader: the browser forgets the files
                st.rerun()  # drawn again: the fresh uploader, the message, the form with the new data set
        kind, message = st.session_state.pop("ud_message", (None, None))
        message = safe.md(message or "")  # messages quote names from the user's files
        if kind == "error":
            st.error(message, icon=":material/block:")
        elif kind == "success":
            st.success(message, icon=":material/check:")
        for name, label in session_datasets().items():
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            c1.text(label)  # a file name is user text: shown as text, never as markdown
            if c2.button("Remove", key=f"ud_rm_{name}", icon=":material/delete:"):
                remove(name)
                st.rerun()
