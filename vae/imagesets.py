"""Collections of the user's images (a folder, a .zip, uploaded files) read under limits, and uploaded data sets.

Everything a collection could make us allocate is judged before it is allocated: an archive by its central
directory (member count, declared sizes summed) before any member is read, an image by its header before its
pixels are decoded, the decoded data set by N x C x H x W before the array exists. Images are then decoded one at a
time into one preallocated uint8 array, so the memory a load takes is fixed by the limits, not by the files.
Scans have a time budget and a stop callable. Server paths named by a browser are checked against a data root.
"""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
import zipfile
from struct import error as struct_error
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np

from vae.data import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, DataError, image_to_array, load_image

ARCHIVE_SUFFIXES = {".zip", ".jar", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".lz", ".lzma", ".cab"}
DATA_ROOT_ENV = "VAE_EXPLORER_DATA_ROOT"
UPLOAD_DIR_ENV = "VAE_EXPLORER_UPLOAD_DIR"
MIN_IMAGES = 10


@dataclass(frozen=True)
class Limits:
    """What one collection may make the server hold or do."""

    max_members: int = 20_000  # entries in an archive's directory, or image files in a folder or an upload
    max_member_bytes: int = MAX_IMAGE_BYTES  # one image file, as declared (zip) or stat'ed (folder)
    max_total_bytes: int = 512 * 2**20  # the image files' sizes, summed, before any is read
    max_pixels: int = MAX_IMAGE_PIXELS  # one image, from its header
    max_values: int = 32_000_000  # N x C x H x W of the decoded data set (128 MB as float32)
    max_seconds: float = 120.0  # wall clock for scanning and decoding
    max_scan_entries: int = 200_000  # directory entries a folder scan may visit


DEFAULT_LIMITS = Limits()


class Cancelled(DataError):
    """The load was stopped by its stop callable (its session ended, say)."""


@dataclass
class Member:
    """One image file of a collection: its name, the label its folder gives, its size, and how to read it."""

    name: str
    label: str
    size: int
    read: Callable[[], bytes]


@dataclass
class Report:
    """What a load kept, skipped and ignored, by reason, for one line in the page or on the CLI."""

    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # image files that were not used, by reason

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def summary(self) -> str:
        parts = [f"{n} {reason}" for reason, n in sorted(self.skipped.items())]
        return f"{self.kept} images" + (f" ({'; '.join(parts)})" if parts else "")


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n:,} bytes"


class _Budget:
    """The time budget and the stop callable of one load, checked between files."""

    def __init__(self, limits: Limits, should_stop: Callable[[], bool] | None):
        self.deadline = time.monotonic() + limits.max_seconds
        self.limits, self.should_stop = limits, should_stop

    def check(self, what: str) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled(f"{what} was cancelled")
        if time.monotonic() > self.deadline:
            raise DataError(f"{what} took longer than its budget of {self.limits.max_seconds:.0f} s; "
                            "use a smaller folder or archive")


# ---------------------------------------------------------------- names
def safe_member_name(name: str) -> PurePosixPath | None:
    """A member name as a relative path, or None for names that climb out (`..`) or are absolute."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _is_junk(path: PurePosixPath) -> bool:
    """macOS resource forks and hidden files, which zips made on a Mac carry beside every image."""
    return any(p.startswith(".") or p == "__MACOSX" for p in path.parts)


def _labels(paths: list[PurePosixPath]) -> list[str]:
    """Each image's folder below the folders all images share: `data/cats/1.png`, `data/dogs/2.png` -> cats, dogs."""
    parents = [p.parent.parts for p in paths]
    common = 0
    if parents:
        shortest = min(len(p) for p in parents)
        while common < shortest and len({p[common] for p in parents}) == 1:
            common += 1
    return ["/".join(p[common:]) for p in parents]


# ---------------------------------------------------------------- sources: zip, folder, uploaded files
def zip_members(source, limits: Limits = DEFAULT_LIMITS, report: Report | None = None) -> tuple[zipfile.ZipFile, list[Member]]:
    """Open a zip (path, bytes or file object) and list its image members, judged from the directory alone.

    Refused before any member is read: more entries than the limit (counted from the end record, before the
    directory is parsed), a nested archive, image members whose declared sizes exceed the limits in total.
    Ignored: directories, names with `..` or absolute names, non-images, encrypted members.
    """
    report = report if report is not None else Report()
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    _check_entry_count(fp, limits)
    fp.seek(0)
    try:
        zf = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:  # includes "not a zip" and truncated
        raise DataError(f"this is not a readable .zip archive ({exc})") from None
    try:
        members = _zip_members(zf, limits, report)
    except BaseException:
        zf.close()
        raise
    return zf, members


def _check_entry_count(fp, limits: Limits) -> None:
    """Count the archive's entries from its end record before zipfile parses (and allocates) the whole directory."""
    try:
        end = zipfile._EndRecData(fp)  # noqa: SLF001 - the stdlib's own end-record reader (zip64 aware)
    except (OSError, ValueError, struct_error):
        return  # zipfile itself will say what is wrong
    if end and end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_members:  # noqa: SLF001
        raise DataError(f"the archive has {end[zipfile._ECD_ENTRIES_TOTAL]:,} entries; the limit is "  # noqa: SLF001
                        f"{limits.max_members:,}")


def _zip_members(zf: zipfile.ZipFile, limits: Limits, report: Report) -> list[Member]:
    if len(zf.filelist) > limits.max_members:
        raise DataError(f"the archive has {len(zf.filelist):,} entries; the limit is {limits.max_members:,}")
    images: list[tuple[PurePosixPath, zipfile.ZipInfo]] = []
    total = 0
    for info in zf.filelist:
        if info.is_dir():
            continue
        path = safe_member_name(info.filename)
        if path is None:
            report.skip("ignored: unsafe names (.. or absolute)")
            continue
        if _is_junk(path):
            continue
        suffix = path.suffix.lower()
        if suffix in ARCHIVE_SUFFIXES:
            raise DataError(f"the archive holds another archive ({path.name}); archives inside archives are refused")
        if suffix not in IMAGE_SUFFIXES:
            report.skip("ignored: not images")
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            report.skip("ignored: links")
            continue
        if info.flag_bits & 0x1:
            report.skip("ignored: encrypted")
            continue
        if info.file_size > limits.max_member_bytes:
            report.skip(f"skipped: larger than {limits.max_member_bytes // 2**20} MB")
            continue
        total += info.file_size
        images.append((path, info))
    if total > limits.max_total_bytes:  # judged from the declared sizes: nothing has been decompressed
        raise DataError(f"the archive's images would unpack to {total / 2**20:,.0f} MB; the limit is "
                        f"{limits.max_total_bytes // 2**20} MB")
    images.sort(key=lambda t: str(t[0]))
    labels = _labels([p for p, _ in images])
    return [Member(str(p), lab, info.file_size, _zip_reader(zf, info, limits)) for (p, info), lab in zip(images, labels)]


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> Callable[[], bytes]:
    def read() -> bytes:
        # zipfile stops at the declared size and checks the CRC; the bounded read is a second fence.
        with zf.open(info) as f:
            data = f.read(min(info.file_size, limits.max_member_bytes) + 1)
        if len(data) > info.file_size:
            raise DataError("the member is larger than its declared size")
        return data
    return read


def folder_members(path: Path, limits: Limits = DEFAULT_LIMITS, report: Report | None = None,
                   should_stop: Callable[[], bool] | None = None, confine_to: Path | None = None,
                   budget: "_Budget | None" = None) -> list[Member]:
    """The image files under a folder, found by a bounded walk (entries, time, stop callable); links to folders are not
    followed, and with confine_to, a linked file is used only when it resolves inside that folder."""
    report = report if report is not None else Report()
    budget = budget or _Budget(limits, should_stop)
    root = path
    found: list[tuple[PurePosixPath, Path, int]] = []
    total, visited = 0, 0
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            report.skip("skipped: unreadable folders")
            continue
        for e in entries:
            visited += 1
            if visited % 256 == 0:
                budget.check("the folder scan")
            if visited > limits.max_scan_entries:
                raise DataError(f"the folder holds more than {limits.max_scan_entries:,} entries; use a smaller folder")
            rel = PurePosixPath(Path(e.path).relative_to(root).as_posix())
            if _is_junk(rel):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                    continue
                if Path(e.name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if e.is_symlink():
                    target = Path(e.path).resolve()
                    if confine_to is not None and not target.is_relative_to(confine_to):
                        report.skip("skipped: links out of the data root")
                        continue
                st = os.stat(e.path)  # follows a link to a file
            except OSError:
                report.skip("skipped: unreadable")
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_size > limits.max_member_bytes:
                report.skip(f"skipped: larger than {limits.max_member_bytes // 2**20} MB")
                continue
            found.append((rel, Path(e.path), st.st_size))
            total += st.st_size
            if len(found) > limits.max_members:
                raise DataError(f"the folder holds more than {limits.max_members:,} images; the limit is "
                                f"{limits.max_members:,}")
            if total > limits.max_total_bytes:
                raise DataError(f"the folder's images add up to more than {_size(limits.max_total_bytes)}; "
                                "use a smaller folder")
    found.sort(key=lambda t: str(t[0]))
    labels = _labels([rel for rel, _, _ in found])
    return [Member(str(rel), lab, size, _file_reader(f, limits)) for (rel, f, size), lab in zip(found, labels)]


def _file_reader(f: Path, limits: Limits) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(f, "rb") as fh:  # bounded: a file that grew since the scan is not read whole
            return fh.read(limits.max_member_bytes + 1)
    return read


def file_members(files: list[tuple[str, bytes]], limits: Limits = DEFAULT_LIMITS, report: Report | None = None) -> list[Member]:
    """Uploaded image files (name, bytes), flat: no labels. Archives among them are refused."""
    report = report if report is not None else Report()
    if len(files) > limits.max_members:
        raise DataError(f"{len(files):,} files were sent; the limit is {limits.max_members:,}")
    out: list[Member] = []
    total = 0
    for name, data in files:
        suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
        if suffix in ARCHIVE_SUFFIXES:
            raise DataError("send one .zip on its own, or image files without archives")
        if suffix not in IMAGE_SUFFIXES:
            report.skip("ignored: not images")
            continue
        if len(data) > limits.max_member_bytes:
            report.skip(f"skipped: larger than {limits.max_member_bytes // 2**20} MB")
            continue
        total += len(data)
        out.append(Member(name, "", len(data), (lambda d: lambda: d)(data)))
    if total > limits.max_total_bytes:
        raise DataError(f"the images add up to {total / 2**20:,.0f} MB; the limit is {limits.max_total_bytes // 2**20} MB")
    return out


# ---------------------------------------------------------------- decoding, streamed into one preallocated array
def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from an image's header, without decoding its pixels; DataError if it is not an image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
            return im.size
    except Image.DecompressionBombError:  # Pillow's own limit (178 Mpixel) struck first: far over ours
        return (2**31 - 1, 1)
    except Exception:  # noqa: BLE001 - Pillow raises many kinds on hostile headers
        raise DataError("not a readable image") from None


def decode_members(members: list[Member], channels: int, size: int, limits: Limits = DEFAULT_LIMITS,
                   report: Report | None = None, should_stop: Callable[[], bool] | None = None,
                   budget: "_Budget | None" = None) -> tuple[np.ndarray, list[str]]:
    """Images -> (N, C, size, size) uint8 and their labels; unreadable or oversized images are skipped and counted."""
    report = report if report is not None else Report()
    budget = budget or _Budget(limits, should_stop)
    values = len(members) * channels * size * size
    if values > limits.max_values:  # judged before the array exists
        raise DataError(f"{len(members):,} images at {channels}x{size}x{size} make {values / 1e6:,.1f} M values; the "
                        f"limit is {limits.max_values / 1e6:,.0f} M: pick a smaller size, grey, or fewer images")
    x = np.empty((len(members), channels, size, size), np.uint8)
    labels: list[str] = []
    n = 0
    for m in members:
        budget.check("decoding the images")
        try:
            data = m.read()
            if len(data) > limits.max_member_bytes:
                raise _Skip(f"skipped: larger than {limits.max_member_bytes // 2**20} MB")
            w, h = header_size(data)
            if w * h > limits.max_pixels:  # from the header: the pixels are never decoded
                raise _Skip(f"skipped: more than {limits.max_pixels / 1e6:.0f} megapixels")
            a = image_to_array(load_image(data), channels, size)
        except _Skip as skip:
            report.skip(str(skip))
            continue
        except (DataError, zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError):
            report.skip("skipped: unreadable")
            continue
        finally:
            data = None  # noqa: F841 - one file's bytes at a time
        x[n] = np.round(a * 255)
        labels.append(m.label)
        n += 1
    report.kept = n
    if n < len(members):
        x = x[:n].copy()  # release the unused rows
    return x, labels


class _Skip(Exception):
    pass


def read_collection(path: str | Path, channels: int, size: int, limits: Limits = DEFAULT_LIMITS,
                    should_stop: Callable[[], bool] | None = None, confine_to: Path | None = None,
                    ) -> tuple[np.ndarray, list[str], Report]:
    """A folder or a .zip on this machine -> (N, C, size, size) uint8, labels, report; all under the limits."""
    p = Path(path).expanduser()
    report = Report()
    budget = _Budget(limits, should_stop)
    if p.is_dir():
        members = folder_members(p, limits, report, confine_to=confine_to, budget=budget)
        x, labels = decode_members(members, channels, size, limits, report, budget=budget)
        return x, labels, report
    if p.is_file() and zipfile.is_zipfile(p):
        with open(p, "rb") as fp:
            zf, members = zip_members(fp, limits, report)
            with zf:
                x, labels = decode_members(members, channels, size, limits, report, budget=budget)
        return x, labels, report
    raise DataError(f"{str(path)!r} is neither a folder nor a .zip of images")


def read_upload(files: list[tuple[str, bytes]], channels: int, size: int, limits: Limits = DEFAULT_LIMITS,
                should_stop: Callable[[], bool] | None = None, before_decode: Callable[[int], None] | None = None,
                ) -> tuple[np.ndarray, list[str], Report]:
    """Uploaded files: one .zip, or image files -> (N, C, size, size) uint8, labels, report; all under the limits.

    before_decode(number of images) may refuse (raise DataError) once the images are counted, before any is decoded.
    """
    report = Report()
    budget = _Budget(limits, should_stop)
    zips = [(n, d) for n, d in files if n.lower().endswith(".zip")]
    if zips and len(files) > 1:
        raise DataError("send one .zip on its own, or image files without archives")
    zf, members = zip_members(zips[0][1], limits, report) if zips else (None, file_members(files, limits, report))
    try:
        if before_decode is not None:
            before_decode(len(members))
        x, labels = decode_members(members, channels, size, limits, report, budget=budget)
    finally:
        if zf is not None:
            zf.close()
    return x, labels, report


def classes_of(labels: list[str]) -> tuple[np.ndarray | None, list[str] | None]:
    """Labels as class indices when there are at least two folders, else (None, None)."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        return None, None
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[lab] for lab in labels], np.int64), classes


# ---------------------------------------------------------------- server paths a browser names
def data_root(env: dict | None = None) -> Path | None:
    """The folder under which the web UI may read server paths (VAE_EXPLORER_DATA_ROOT), or None: no paths at all."""
    value = (env if env is not None else os.environ).get(DATA_ROOT_ENV, "").strip()
    if not value:
        return None
    try:
        return Path(value).expanduser().resolve(strict=True)
    except OSError:
        return None


def check_server_path(path: str, root: Path | None) -> Path:
    """A path a browser named -> its resolved form, if it lies under root (links resolved); else DataError in one line."""
    if root is None:
        raise DataError(f"this server reads no folders named from the web page: start it with {DATA_ROOT_ENV}=/a/folder "
                        "(or `streamlit run app.py -- --data-root /a/folder`) to allow folders and zips under that folder")
    outside = DataError(f"that path is outside the server's data root: start the server with a {DATA_ROOT_ENV} (or "
                        "--data-root) that contains it to allow it")
    try:
        resolved = Path(path).expanduser().resolve(strict=False)  # links that exist are followed
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte
        raise outside from None
    if not resolved.is_relative_to(root):  # said before looking further: no probing what exists outside the root
        raise outside
    if not resolved.exists():
        raise DataError("that path does not exist under the server's data root")
    return resolved


# ---------------------------------------------------------------- uploaded data sets, one folder each
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")


def upload_root() -> Path:
    """Where uploaded data sets live while their browser tab does (VAE_EXPLORER_UPLOAD_DIR, or the temp folder)."""
    return Path(os.environ.get(UPLOAD_DIR_ENV) or Path(tempfile.gettempdir()) / "vae-explorer-uploads")


def upload_dir(token: str) -> Path:
    if not TOKEN_RE.match(token):
        raise DataError("not an uploaded data set's name")
    return upload_root() / token


def save_upload(x: np.ndarray, labels: list[str], title: str, owner: str, root: Path | None = None) -> str:
    """Store an uploaded data set (uint8 images, labels) in a new folder; returns its token (`upload:TOKEN` names it)."""
    token = secrets.token_hex(16)
    root = root or upload_root()
    root.mkdir(parents=True, mode=0o700, exist_ok=True)
    st = os.lstat(root)
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid():  # a shared temp folder: someone may have planted it
        raise DataError("the server's upload folder is not safe to use (a link, or owned by another user)")
    folder = root / token
    folder.mkdir(mode=0o700)
    y, classes = classes_of(labels)
    meta = {"title": title, "owner": owner, "pid": os.getpid(), "classes": classes, "shape": list(x.shape[1:]),
            "n": len(x), "created": time.time()}
    (folder / "meta.json").write_text(json.dumps(meta))  # first: the sweep knows the owner of a half-written folder
    tmp = folder / "data.npz.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, x=x, y=np.zeros(0, np.int64) if y is None else y)
    os.replace(tmp, folder / "data.npz")
    return token


def upload_meta(token: str) -> dict:
    try:
        return json.loads((upload_dir(token) / "meta.json").read_text())
    except (OSError, ValueError):
        raise DataError("this uploaded data set is gone: uploads live only as long as the browser tab that sent "
                        "them; upload the images again") from None


def load_upload(token: str):
    """The data set of an upload folder, split like every other data set."""
    from vae.data import _split

    meta = upload_meta(token)
    try:
        with np.load(upload_dir(token) / "data.npz", allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    except (OSError, ValueError, KeyError):
        raise DataError("this uploaded data set is gone or damaged; upload the images again") from None
    classes = meta.get("classes")
    y = y if classes and len(y) == len(x) else None
    return _split(f"upload:{token}", x, y, max(1, len(x) // 5), classes=classes if y is not None else None)


def folder_bytes(folder: Path) -> int:
    total = 0
    for f in folder.rglob("*"):
        try:
            total += f.lstat().st_size
        except OSError:
            pass
    return total


def remove_upload(token: str) -> None:
    shutil.rmtree(upload_dir(token), ignore_errors=True)


def upload_folders(root: Path | None = None) -> Iterator[tuple[str, dict, int]]:
    """(token, meta, bytes on disk) of every upload folder under the root; folders without a readable meta too."""
    root = root or upload_root()
    if not root.is_dir():
        return
    for d in root.iterdir():
        if not TOKEN_RE.match(d.name) or not d.is_dir():
            continue
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        yield d.name, meta, folder_bytes(d)
