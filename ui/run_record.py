"""A training run that outlives its server in one small way: the tab is told that it was lost.

A run lives in its session's memory; a server restart ends both, and the browser reconnects with a new, empty
session. What survives is the tab's URL and the disk. So a run gets a random token, kept in the URL as `?run=TOKEN`
(set again on every script run, since a page switch drops query parameters), and a small JSON record under RUNS_DIR
saying which server process ran it, its settings and how it ended. A session without a run that finds a token in its
URL whose record names another server process was cut off by a restart: the sidebar says so (and whether the
weights were lost or had been saved), and the Train form gets the run's settings back.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import streamlit as st

from ui.safe import md

RUNS_DIR = Path(os.environ.get("VAE_EXPLORER_RUNS", Path.home() / ".cache" / "vae-explorer" / "runs"))
BOOT = uuid.uuid4().hex  # this server process
PARAM = "run"
KEEP_SECONDS = 7 * 24 * 3600  # records older than a week are removed
MAX_RECORDS = 500
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _path(token: str) -> Path | None:
    return RUNS_DIR / f"{token}.json" if _TOKEN.fullmatch(token or "") else None  # a URL never names another file


def _write(token: str, record: dict[str, Any]) -> None:
    path = _path(token)
    if path is None:
        return
    try:
        RUNS_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only disk costs only the notice after a restart


def read(token: str) -> dict[str, Any] | None:
    """The record of a run token, or None (unknown, malformed or unreadable)."""
    path = _path(token)
    try:
        record = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _prune() -> None:
    try:
        files = sorted(RUNS_DIR.glob("*.json"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return
    cutoff = time.time() - KEEP_SECONDS
    for i, p in enumerate(files):
        try:
            if i < len(files) - MAX_RECORDS or p.stat().st_mtime < cutoff:
                p.unlink(missing_ok=True)
        except OSError:
            pass


def started(label: str, settings: dict[str, Any]) -> str:
    """Record a run that this session has just started; its token goes into the tab's URL."""
    _prune()
    token = secrets.token_urlsafe(16)
    _write(token, {"boot": BOOT, "label": label, "created": time.time(), "status": "running", "settings": settings,
                   "saved": None})
    st.session_state["run_token"] = token
    st.session_state["lost_run"] = None  # a new run: the notice about the old one has been read
    st.query_params[PARAM] = token
    return token


def update(**fields: Any) -> None:
    """Change this session's run record (status when it ends, the file name when it is saved)."""
    token = st.session_state.get("run_token")
    record = read(token) if token else None
    if record is not None and record.get("boot") == BOOT:
        record.update(fields)
        _write(token, record)


def lost_message(record: dict[str, Any]) -> str:
    """What the tab is told about a run that a server restart cut off."""
    when = time.strftime("%H:%M", time.localtime(record.get("created") or 0))
    what = f"Your training run {md(record.get('label', ''))} (started {when})"
    if record.get("saved"):
        return f"{what} was saved as {md(record['saved'])} before the server restarted: pick it in the model picker."
    if record.get("status") == "running":
        return (f"{what} was lost: the server restarted while it was training. Its settings are back in the Train "
                "form: start it again.")
    return (f"{what} finished, but the server restarted before its model was saved, so the model was lost. Its "
            "settings are back in the Train form.")


def check() -> None:
    """Once per script run: keep the run's token in the URL, and tell a tab whose run a server restart cut off (the
    sidebar keeps saying it for this session)."""
    ss = st.session_state
    token = ss.get("run_token")
    if token is not None:
        if st.query_params.get(PARAM) != token:
            st.query_params[PARAM] = token  # a page switch dropped it
    elif "lost_run" not in ss:
        found = st.query_params.get(PARAM)
        record = read(found) if found else None
        ss["lost_run"] = record if record is not None and record.get("boot") != BOOT else None
        if ss["lost_run"] is not None:
            settings = record.get("settings")
            if isinstance(settings, dict) and "tr_last" not in ss:
                ss["tr_last"] = {k: v for k, v in settings.items() if isinstance(v, (str, int, float, bool))}
            del st.query_params[PARAM]
    if ss.get("lost_run"):
        st.sidebar.warning(lost_message(ss["lost_run"]), icon=":material/history:")
