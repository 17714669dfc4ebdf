"""Start a real `streamlit run SCRIPT` on a free 127.0.0.1 port; shared by the e2e tests and the bench scripts."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(script: str = "app.py", log: Path | None = None, timeout: float = 60.0, extra_args: tuple[str, ...] = (),
          port: int | None = None) -> Iterator[str]:
    """Yield the base URL once /_stcore/health answers; terminate the server afterwards.

    extra_args are more `streamlit run` options, e.g. ("--runner.postScriptGC", "false"); `port` (default: a free
    one) lets a test restart the server where its browser tabs will reconnect.
    """
    port = port or free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false", *extra_args],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"`streamlit run {script}` did not answer within {timeout:.0f} s"
                                       + (f"; see {log}" if log else "")) from None
                time.sleep(0.05)  # fine-grained: bench/app_latency.py times the cold start through this
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log:
            out.close()
