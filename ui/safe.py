"""Text that a user or a file supplied (file names, checkpoint fields, data-set names, labels, error messages), made
safe to show where Streamlit renders markdown: st.error/info/warning/success, captions, st.markdown, widget labels.

md() backslash-escapes every markdown character, so `[click here](https://…)` shows as those characters and never
as a link, `**x**` is not bold, `$x$` is not maths and `:red[x]` is not coloured; line breaks become spaces.
error() also cuts the server's own folders out of a message, so that no path of the server reaches a browser.
"""
from __future__ import annotations

import html
import os
import re
import tempfile
from pathlib import Path

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones markdown, GitHub's extensions and
# Streamlit's directives (:material/…:, :red[…], $…$) give a meaning to.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:=^&\"'])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_ROOT = Path(__file__).resolve().parent.parent


def md(value: object) -> str:
    """`value` as text that markdown shows literally, on one line."""
    return _SPECIAL.sub(r"\\\1", _CONTROL.sub(" ", str(value)))


def _server_dirs() -> list[str]:
    dirs = {str(_ROOT), str(Path.home()), tempfile.gettempdir(), os.getcwd(), str(Path(os.sep, "root"))}
    ckpt = os.environ.get("VAE_EXPLORER_CHECKPOINTS")
    if ckpt:
        dirs.add(str(Path(ckpt).resolve()))
    return sorted((d for d in dirs if d and d != os.sep), key=len, reverse=True)  # longest first: /a/b before /a


def redact(text: str) -> str:
    """`text` with the server's own folders (the app's, home, temp, checkpoints) replaced by '…'."""
    for d in _server_dirs():
        text = re.sub(re.escape(d) + r"(?=$|[/\\\s'\":,)])", "…", text)
    return text


def error(exc: BaseException | str) -> str:
    """An exception's message for the page: no server path, escaped for markdown; an OSError says only what failed."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror  # "File name too long", without the file's name and folder
    else:
        text = str(exc) or type(exc).__name__
    return md(redact(text))


def plotly_text(value: object) -> str:
    """`value` for a Plotly legend, title or hover template, which read a subset of HTML (links included) and
    %{…} placeholders: tags and entities escaped, and '%' as its entity."""
    return html.escape(_CONTROL.sub(" ", str(value))).replace("%", "&#37;")
