"""Run a snippet in a fresh Python interpreter at the repository root: what a module imports can only be seen in a
process that has imported nothing else (this test process already holds torch, sklearn, pandas, …)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fresh_python(code: str, timeout: float = 300) -> str:
    """The last line the snippet prints; fails the test with the snippet's stderr if it exits non-zero."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines else ""
