"""The user's image collections under limits: crafted archives, folder scans with budgets, the data root, uploads."""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vae
from tests.fixtures import make_fixtures
from tests.zipcraft import bomb_zip, lying_zip
from vae import imagesets
from vae.imagesets import Cancelled, Limits, check_server_path, read_collection, read_upload, safe_member_name

FIXTURES = Path(__file__).parent / "fixtures"


def _png(label: int = 0, i: int = 0, size: int = 16) -> bytes:
    a = np.zeros((size, size), np.uint8)
    if label == 0:
        a[4 + i % 6: 7 + i % 6, 2:14] = 255
    else:
        a[2:14, 4 + i % 6: 7 + i % 6] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name exactly as given, `..` and all
    return buf.getvalue()


def _labelled(n: int = 6) -> dict[str, bytes]:
    return {f"mine/{cls}/{i}.png": _png(label, i) for label, cls in enumerate(["bars", "columns"]) for i in range(n)}


@pytest.fixture
def no_member_reads(monkeypatch):
    """Fail the test if any archive member is opened: the limits must be judged from the directory alone."""
    real = zipfile.ZipFile.open

    def refuse(self, name, mode="r", *a, **k):
        if mode == "r":
            raise AssertionError("a member was read")
        return real(self, name, mode, *a, **k)
    monkeypatch.setattr(zipfile.ZipFile, "open", refuse)


@pytest.fixture
def decoded_sizes(monkeypatch):
    """The (width, height) of every image whose pixels were decoded."""
    seen: list[tuple[int, int]] = []
    real = imagesets.load_image

    def spy(data: bytes):
        im = real(data)
        seen.append(im.size)
        return im
    monkeypatch.setattr(imagesets, "load_image", spy)
    return seen


# ---------------------------------------------------------------- archive limits, judged before anything is read
def test_a_labelled_zip_loads_with_the_folder_names_as_labels():
    x, labels, report = read_upload([("data.zip", _zip(_labelled()))], channels=1, size=8)
    assert x.shape == (12, 1, 8, 8) and x.dtype == np.uint8
    assert sorted(set(labels)) == ["bars", "columns"]  # the shared top folder `mine/` is not part of the label
    assert report.kept == 12 and report.skipped == {}


def test_too_many_members_are_refused_from_the_end_record(no_member_reads, monkeypatch):
    parsed = []
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", lambda self: parsed.append(1))
    with pytest.raises(vae.DataError, match="12 entries; the limit is 5"):
        read_upload([("data.zip", _zip(_labelled()))], 1, 8, Limits(max_members=5))
    assert not parsed, "the directory must not even be parsed when the end record says it is too long"


def test_issue_15_bomb_is_refused_from_the_declared_sizes_without_reading_a_member(no_member_reads):
    bomb = bomb_zip()  # 2.9 MB: 120 members x 24 MB of zeros, each under the 25 MB per-member limit
    assert len(bomb) < 3.1e6
    with pytest.raises(vae.DataError, match=r"would unpack to 2,880 MB; the limit is 512 MB"):
        read_upload([("bomb.zip", bomb)], 1, 28)


def test_refusing_the_bomb_allocates_nothing_lasting():
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    bomb = bomb_zip()
    before = rss()
    for _ in range(5):
        with pytest.raises(vae.DataError):
            read_upload([("bomb.zip", bomb)], 1, 28)
    assert rss() - before < 32 * 2**20  # the old loader went from 1.35 GB to 4.2 GB on this file


def test_a_member_over_the_per_member_limit_is_skipped_unread():
    entries = {**_labelled(), "mine/bars/huge.png": bytes(3 * 2**20)}
    x, _, report = read_upload([("d.zip", _zip(entries))], 1, 8, Limits(max_member_bytes=2**20))
    assert len(x) == 12 and report.skipped == {"skipped: larger than 1 MB": 1}


def test_a_member_that_inflates_past_its_declared_size_is_not_used():
    real = _png(0, 0, size=64)
    data = lying_zip("liar.png", real, declared=40)  # the directory says 40 bytes
    zf, members = imagesets.zip_members(data)
    with zf, pytest.raises(zipfile.BadZipFile):
        members[0].read()  # stops at the declared size; the CRC of the cut stream fails
    _, _, report = read_upload([("d.zip", data)], 1, 8)
    assert report.kept == 0 and report.skipped == {"skipped: unreadable": 1}


@pytest.mark.parametrize("inner", ["inner.zip", "deep/other.ZIP", "x.tar.gz", "y.7z"])
def test_nested_archives_are_refused(inner, no_member_reads):
    with pytest.raises(vae.DataError, match="archives inside archives are refused"):
        read_upload([("d.zip", _zip({**_labelled(), inner: b"PK\x03\x04"}))], 1, 8)


@pytest.mark.parametrize("bad", ["../escape.png", "mine/../../up.png", "/etc/abs.png", "C:\\windows\\c.png",
                                 "..\\back.png"])
def test_names_that_climb_out_or_are_absolute_are_ignored(bad, decoded_sizes):
    entries = {**_labelled(), bad: _png(0, 0, size=24)}  # 24x24: recognisable if it were decoded
    x, labels, report = read_upload([("d.zip", _zip(entries))], 1, 8)
    assert len(x) == 12 and report.skipped == {"ignored: unsafe names (.. or absolute)": 1}
    assert (24, 24) not in decoded_sizes
    assert set(labels) == {"bars", "columns"}


def test_pixel_bomb_inside_a_zip_is_skipped_from_its_header(decoded_sizes):
    bomb = make_fixtures.bomb_png()  # 20000 x 20000 in 50 KB
    large = make_fixtures.large_png()  # 5000 x 5000: over our 16 Mpixel limit too
    entries = {**_labelled(), "mine/bars/bomb.png": bomb, "mine/columns/large.png": large}
    x, _, report = read_upload([("d.zip", _zip(entries))], 1, 8)
    assert len(x) == 12 and report.skipped == {"skipped: more than 16 megapixels": 2}
    assert max(w * h for w, h in decoded_sizes) == 16 * 16  # only the small images were ever decoded


def test_the_decoded_size_is_judged_before_the_array_exists(decoded_sizes):
    with pytest.raises(vae.DataError, match=r"12 images at 3x64x64 make 0.1 M values; the limit is 0 M"):
        read_upload([("d.zip", _zip(_labelled()))], 3, 64, Limits(max_values=100_000))
    assert decoded_sizes == []


def test_non_images_junk_and_directories_are_ignored():
    entries = {**_labelled(), "mine/readme.txt": b"hi", "__MACOSX/mine/bars/._0.png": b"\x00\x05\x16\x07",
               "mine/.DS_Store": b"x", "mine/empty/": b""}
    x, labels, report = read_upload([("d.zip", _zip(entries))], 1, 8)
    assert len(x) == 12 and report.skipped == {"ignored: not images": 1}


def test_a_file_that_is_not_a_zip_is_one_line():
    with pytest.raises(vae.DataError, match="not a readable .zip"):
        read_upload([("d.zip", b"PK\x03\x04 truncated")], 1, 8)


def test_uploaded_image_files_have_no_labels_and_archives_cannot_join_them():
    files = [(f"{i}.png", _png(i % 2, i)) for i in range(10)] + [("notes.txt", b"x")]
    x, labels, report = read_upload(files, 3, 8)
    assert x.shape == (10, 3, 8, 8) and set(labels) == {""} and report.skipped == {"ignored: not images": 1}
    with pytest.raises(vae.DataError, match="one .zip on its own"):
        read_upload(files + [("more.zip", _zip(_labelled()))], 1, 8)


def test_safe_member_name():
    assert str(safe_member_name("a/./b\\c.png")) == "a/b/c.png"
    assert safe_member_name("a/../b.png") is None and safe_member_name("/a.png") is None
    assert safe_member_name("D:/a.png") is None and safe_member_name("") is None


# ---------------------------------------------------------------- folder scans: budgets and cancelling
@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    for name, data in _labelled().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_folder_scan_can_be_cancelled(folder):
    with pytest.raises(Cancelled, match="cancelled"):
        read_collection(folder, 1, 8, should_stop=lambda: True)


def test_a_folder_scan_has_a_time_budget(folder):
    with pytest.raises(vae.DataError, match="longer than its budget of 0 s"):
        read_collection(folder, 1, 8, Limits(max_seconds=0))


def test_a_folder_scan_has_an_entry_budget(folder):
    for i in range(50):
        (folder / f"note{i}.txt").write_text("x")
    with pytest.raises(vae.DataError, match="more than 40 entries"):
        read_collection(folder, 1, 8, Limits(max_scan_entries=40))


def test_a_folder_scan_has_a_size_budget(folder):
    with pytest.raises(vae.DataError, match="add up to more than 500 bytes"):
        read_collection(folder, 1, 8, Limits(max_total_bytes=500))


def test_a_folder_scan_stops_counting_images_at_the_limit(folder):
    with pytest.raises(vae.DataError, match="more than 5 images"):
        read_collection(folder, 1, 8, Limits(max_members=5))


def test_links_out_of_a_confined_folder_are_not_followed(tmp_path, folder):
    outside = tmp_path / "private"
    outside.mkdir()
    for i in range(3):
        (outside / f"p{i}.png").write_bytes(_png(0, i, size=20))
    (folder / "mine" / "bars" / "leak.png").symlink_to(outside / "p0.png")
    (folder / "mine" / "linked").symlink_to(outside, target_is_directory=True)
    x, _, report = read_collection(folder, 1, 8, confine_to=folder)
    assert len(x) == 12 and report.skipped == {"skipped: links out of the data root": 1}
    x, _, _ = read_collection(folder, 1, 8)  # the CLI (no confinement) follows a linked file, never a linked folder
    assert len(x) == 13


def test_the_cli_folder_loader_uses_the_same_limits(folder, tmp_path):
    ds = vae.load_dataset(f"folder:{folder}", image_size=8)
    assert ds.classes == ["bars", "columns"] and len(ds.x_train) + len(ds.x_test) == 12
    assert ds.x_train.dtype.is_floating_point and float(ds.x_train.max()) == 1.0
    (tmp_path / "bomb.zip").write_bytes(bomb_zip())
    with pytest.raises(vae.DataError, match="would unpack to"):
        vae.load_dataset(f"folder:{tmp_path / 'bomb.zip'}")


# ---------------------------------------------------------------- server paths named by a browser
def test_no_data_root_means_no_server_path(folder):
    assert imagesets.data_root({}) is None
    with pytest.raises(vae.DataError, match="VAE_EXPLORER_DATA_ROOT=/a/folder"):
        check_server_path(str(folder), None)


def test_paths_under_the_root_pass_and_others_are_refused(tmp_path, folder):
    root = imagesets.data_root({"VAE_EXPLORER_DATA_ROOT": str(tmp_path / "images")})
    assert root == folder.resolve()
    assert check_server_path(str(folder / "mine" / "bars"), root) == (folder / "mine" / "bars").resolve()
    (tmp_path / "secret").mkdir()
    for path in [tmp_path / "secret", folder / ".." / "secret", Path("/etc")]:
        with pytest.raises(vae.DataError, match="outside the server's data root"):
            check_server_path(str(path), root)
    (folder / "escape").symlink_to(tmp_path / "secret")  # a link inside the root that points out of it
    with pytest.raises(vae.DataError, match="outside the server's data root"):
        check_server_path(str(folder / "escape"), root)
    with pytest.raises(vae.DataError, match="does not exist"):
        check_server_path(str(folder / "missing"), root)
    with pytest.raises(vae.DataError, match="outside the server's data root"):  # missing and outside: the same line
        check_server_path(str(tmp_path / "missing"), root)
    with pytest.raises(vae.DataError, match="outside the server's data root"):
        check_server_path("bad\x00name", root)


# ---------------------------------------------------------------- uploaded data sets on disk
def test_an_upload_is_saved_and_loaded_by_its_token(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_EXPLORER_UPLOAD_DIR", str(tmp_path / "uploads"))
    x, labels, _ = read_upload([("d.zip", _zip(_labelled(10)))], 1, 12)
    token = imagesets.save_upload(x, labels, "d.zip", owner="session-1")
    ds = vae.load_dataset(f"upload:{token}")
    assert ds.name == f"upload:{token}" and ds.classes == ["bars", "columns"] and ds.shape == (1, 12, 12)
    assert len(ds.x_train) == 16 and len(ds.x_test) == 4
    assert [(t, m["owner"]) for t, m, _ in imagesets.upload_folders()] == [(token, "session-1")]
    imagesets.remove_upload(token)
    with pytest.raises(vae.DataError, match="uploads live only as long as the browser tab"):
        vae.load_dataset(f"upload:{token}")


@pytest.mark.parametrize("token", ["../../etc", "", "ABC", "0" * 31, "0" * 32 + "/x"])
def test_upload_names_are_tokens_only(token):
    with pytest.raises(vae.DataError):
        vae.load_dataset(f"upload:{token}")


def test_a_planted_upload_folder_is_not_used(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "uploads").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    monkeypatch.setenv("VAE_EXPLORER_UPLOAD_DIR", str(tmp_path / "uploads"))
    with pytest.raises(vae.DataError, match="not safe to use"):
        imagesets.save_upload(np.zeros((10, 1, 4, 4), np.uint8), [""] * 10, "a", owner="s")
    assert list((tmp_path / "elsewhere").iterdir()) == []
