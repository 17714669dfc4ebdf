"""Names of checkpoint files that users give in the browser: what is valid, and a valid default for any run.

A name is checked by its UTF-8 length too: a file name on Linux (and most file systems) is at most 255 bytes, and the
saver writes a temporary `.NAME.safetensors.XXXXXXXX.tmp` first, which must fit as well.
"""
from __future__ import annotations

import re
import unicodedata

SUFFIX = ".safetensors"
MAX_FILE_NAME_BYTES = 255  # NAME_MAX of Linux, ext4, APFS, NTFS (in UTF-16 units there, which UTF-8 bytes bound)
TEMP_EXTRA = len(".") + len(".XXXXXXXX.tmp")  # what tempfile.mkstemp(prefix=".NAME.safetensors.", suffix=".tmp") adds
MAX_NAME_BYTES = MAX_FILE_NAME_BYTES - len(SUFFIX) - TEMP_EXTRA  # 229
MAX_NAME_CHARS = 80
_NAME_RE = re.compile(r"[\w][\w.\- ]*")
_NOT_NAME = re.compile(r"[^\w.\- ]+")


def normalize_name(name: str | None) -> str:
    """NFC, stripped, without a trailing .safetensors."""
    name = unicodedata.normalize("NFC", (name or "").strip())
    if name.lower().endswith(SUFFIX):
        name = name[: -len(SUFFIX)].rstrip()
    return name


def name_problem(name: str) -> str | None:
    """What is wrong with a normalized checkpoint name, in one line for the user; None when it is valid."""
    if not name:
        return "give the checkpoint a name"
    if "/" in name or "\\" in name or "\x00" in name:
        return "a checkpoint name cannot contain path separators (/ or \\)"
    if len(name) > MAX_NAME_CHARS:
        return f"a checkpoint name has at most {MAX_NAME_CHARS} characters"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return (f"this name is {size} bytes in UTF-8 and file names hold at most {MAX_NAME_BYTES} here "
                "(letters outside ASCII take 2-4 bytes each): shorten it")
    if not _NAME_RE.fullmatch(name) or name.endswith("."):
        return "use letters, digits, spaces, '-', '_' and '.', starting with a letter or digit"
    return None


def safe_name(text: str, fallback: str = "model") -> str:
    """A valid checkpoint name made from any text (a run's label, say): other characters become '-', and it is cut
    to fit the length limits. `folder:/data/my images` -> `folder-data-my images`."""
    name = _NOT_NAME.sub("-", unicodedata.normalize("NFC", text or ""))
    name = re.sub(r"-{2,}", "-", name).strip(" .-_")
    name = name[:MAX_NAME_CHARS]
    while len(name.encode("utf-8")) > MAX_NAME_BYTES:
        name = name[:-1]
    name = name.rstrip(" .-")
    return name if name and name_problem(name) is None else fallback


def dataset_stem(dataset: str) -> str:
    """A data set's name as it may appear in a file name: `folder:/data/photos.zip` -> `photos` (no folders)."""
    if ":" in dataset:
        kind, _, rest = dataset.partition(":")
        tail = re.split(r"[/\\]", rest.rstrip("/\\"))[-1]
        stem = tail.rsplit(".", 1)[0] if tail.lower().endswith(".zip") else tail
        return stem or kind
    return dataset


def default_name(dataset: str, arch: str, latent_dim: int, stamp: str) -> str:
    """The name the Save form proposes for a run: always valid, whatever the data set is called."""
    return safe_name(f"{dataset_stem(dataset)}-{arch}-z{latent_dim}-{stamp}")
