"""Named data sets, their fixed splits, user folders and zips, and single-image preprocessing (friendly and hostile)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vae.data as data
from vae.data import DataError, load_dataset, preprocess_image

ROOT = Path(__file__).resolve().parent.parent

# name -> (train size, test size, image shape, number of classes)
OFFLINE = {
    "mnist5k": (4000, 1000, (1, 28, 28), 10),
    "digits": (1500, 297, (1, 8, 8), 10),
    "shapes": (5000, 1000, (1, 28, 28), 3),
}


@pytest.fixture(scope="module")
def offline(request):
    """The session fixture of the same name, looked up lazily so one parametrized test can take any of them."""
    return lambda name: request.getfixturevalue(name)


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_data_sets_load_with_the_right_shapes(offline, name):
    n_train, n_test, shape, n_classes = OFFLINE[name]
    ds = offline(name)
    assert ds.name == name and ds.shape == shape
    assert ds.x_train.shape == (n_train, *shape) and ds.x_test.shape == (n_test, *shape)
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1 and x.max() > 0.9
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert y.dtype == torch.int64 and y.shape == (len(x),)
        assert set(y.tolist()) == set(range(n_classes))  # every class on both sides of the split
    assert len(ds.classes) == n_classes


@pytest.mark.parametrize("name, options", [("mnist5k", {}), ("digits", {}), ("shapes", {"n": 1500})])
def test_offline_splits_are_deterministic(cached_mnist5k_source, name, options):
    with cached_mnist5k_source():  # the same source file, parsed once: what is compared is the split
        a, b = load_dataset(name, **options), load_dataset(name, **options)
    for field in ("x_train", "x_test", "y_train", "y_test", "factors_train", "factors_test"):
        u, v = getattr(a, field), getattr(b, field)
        assert (u is None and v is None) or torch.equal(u, v), field


def _rows(x: torch.Tensor) -> list[bytes]:
    return [r.numpy().tobytes() for r in x.flatten(1)]


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_split_is_a_disjoint_partition_of_the_source(offline, mnist5k_source, name):
    if name == "mnist5k":
        source = (mnist5k_source[0] / 255.0).astype(np.float32)
    else:
        from sklearn.datasets import load_digits

        source = (load_digits().images / 16.0).astype(np.float32)
    ds = offline(name)
    train, test = _rows(ds.x_train), _rows(ds.x_test)
    assert not set(train) & set(test)  # the source has no duplicate images, so disjoint rows = disjoint examples
    assert sorted(train + test) == sorted(_rows(torch.from_numpy(source)))


def test_split_partitions_by_a_fixed_permutation():
    x = np.arange(50, dtype=np.float32).reshape(50, 1, 1, 1)
    y = np.arange(50) % 5
    a = data._split("t", x, y, 10)
    b = data._split("t", x, y, 10)
    ids_train, ids_test = a.x_train.flatten().long().tolist(), a.x_test.flatten().long().tolist()
    assert len(ids_test) == 10 and sorted(ids_train + ids_test) == list(range(50))
    assert ids_train != sorted(ids_train)  # shuffled, not the first 40
    assert torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.y_train, torch.tensor(ids_train) % 5)  # labels travel with their images


def test_shapes_returns_its_generative_factors(shapes):
    sizes = [len(data.SHAPE_NAMES), len(data.SHAPE_SCALES), len(data.SHAPE_ROTATIONS), len(data.SHAPE_POSITIONS),
             len(data.SHAPE_POSITIONS)]
    assert shapes.factor_names == data.SHAPE_FACTORS
    for f, y, x in ((shapes.factors_train, shapes.y_train, shapes.x_train), (shapes.factors_test, shapes.y_test, shapes.x_test)):
        assert f.shape == (len(x), 5) and f.dtype == torch.int64
        assert (f.min(0).values == 0).all() and (f.max(0).values == torch.tensor(sizes) - 1).all()
        assert torch.equal(f[:, 0], y)
    # the factors really generated the images
    again = data.render_shapes(shapes.factors_test[:20].numpy())
    assert np.array_equal(again, shapes.x_test[:20].numpy())


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist", "cifar10"])
def test_torchvision_data_sets_offline_give_a_clear_error(tmp_path, name):
    with pytest.raises(DataError, match=rf"{name}.*not available.*download") as info:
        load_dataset(name, root=tmp_path, download=False)
    assert str(tmp_path) in str(info.value)
    assert not any(tmp_path.rglob("*.gz")), "nothing may be downloaded"


def test_unknown_data_set_is_refused():
    with pytest.raises(DataError, match="unknown data set"):
        load_dataset("imagenet")


# ---------------------------------------------------------------- folders and zips of the user's images
def _png_bytes(a: np.ndarray, mode: str | None = None, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(a) if mode is None else Image.fromarray(a).convert(mode)
    im.save(buf, fmt, **save)
    return buf.getvalue()


def _class_image(label: int, i: int) -> np.ndarray:
    """Class 0: a horizontal bar; class 1: a vertical bar; moved a little per image."""
    a = np.zeros((32, 32), np.uint8)
    if label == 0:
        a[10 + i: 14 + i, 4:28] = 255
    else:
        a[4:28, 10 + i: 14 + i] = 255
    return a


def _image_files(n_per_class: int = 8) -> dict[str, bytes]:
    files = {f"{cls}/{i}.png": _png_bytes(_class_image(label, i)) for label, cls in enumerate(["bars", "columns"])
             for i in range(n_per_class)}
    files["bars/broken.png"] = b"\x89PNG\r\n\x1a\n not really"  # skipped, not fatal
    files["notes.txt"] = b"ignored: not an image suffix"
    return files


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "images"
    for name, blob in _image_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(blob)
    return root


@pytest.fixture
def image_zip(tmp_path):
    path = tmp_path / "images.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in _image_files().items():
            zf.writestr(name, blob)
    return path


@pytest.mark.parametrize("source", ["image_folder", "image_zip"])
@pytest.mark.parametrize("size, grey, channels", [(28, True, 1), (16, False, 3)])
def test_folder_and_zip_load_with_labels_from_subfolders(request, source, size, grey, channels):
    path = request.getfixturevalue(source)
    ds = load_dataset(f"folder:{path}", image_size=size, grey=grey)
    assert ds.classes == ["bars", "columns"]
    assert len(ds.x_train) + len(ds.x_test) == 16 and len(ds.x_test) == 16 // 5  # the broken PNG was skipped
    assert ds.x_train.shape[1:] == (channels, size, size)
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    x, y = torch.cat([ds.x_train, ds.x_test]), torch.cat([ds.y_train, ds.y_test])
    # labels match content: bars are wider than tall, columns taller than wide
    ink = x.mean(1) > 0.5  # (N, H, W)
    wide = ink.any(1).sum(1) > ink.any(2).sum(1)
    assert torch.equal(wide, y == 0)


def test_folder_with_too_few_images_is_refused(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(_png_bytes(_class_image(0, i)))
    with pytest.raises(DataError, match="at least 10"):
        load_dataset(f"folder:{tmp_path}")


@pytest.mark.parametrize("name", ["missing", "file.txt"])
def test_folder_that_is_not_a_folder_or_zip_is_refused(tmp_path, name):
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(DataError, match="neither a folder nor a .zip"):
        load_dataset(f"folder:{tmp_path / name}")


# ---------------------------------------------------------------- preprocess_image: every accepted kind of file
def _ink_on_paper() -> np.ndarray:
    """40x40: black strokes (a thick L) on white paper, uint8."""
    a = np.full((40, 40), 255, np.uint8)
    a[6:34, 8:16] = 0
    a[26:34, 8:32] = 0
    return a


def _encode(kind: str) -> bytes:
    a = _ink_on_paper()
    if kind == "png-grey":
        return _png_bytes(a)
    if kind == "jpeg":
        return _png_bytes(np.stack([a] * 3, -1), fmt="JPEG", quality=95)
    if kind == "bmp":
        return _png_bytes(np.stack([a] * 3, -1), fmt="BMP")
    if kind == "webp":
        return _png_bytes(np.stack([a] * 3, -1), fmt="WEBP", lossless=True)
    if kind == "gif-first-frame":
        frames = [Image.fromarray(a).convert("P"), Image.fromarray(255 - a).convert("P")]
        buf = io.BytesIO()
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
        return buf.getvalue()
    if kind == "png-rgba":
        # the paper is transparent black: only compositing onto white turns it back into paper
        rgba = np.zeros((40, 40, 4), np.uint8)
        rgba[..., 3] = np.where(a == 0, 255, 0)
        return _png_bytes(rgba)
    if kind == "png-16bit":
        return _png_bytes(a.astype(np.uint16) * 257)
    if kind == "png-palette":
        return _png_bytes(a, mode="P")
    if kind == "png-1bit":
        return _png_bytes(a, mode="1")
    if kind == "png-grey-alpha":
        return _png_bytes(np.stack([a, np.full_like(a, 255)], -1), mode="LA")
    raise ValueError(kind)


KINDS = ["png-grey", "jpeg", "bmp", "webp", "gif-first-frame", "png-rgba", "png-16bit", "png-palette", "png-1bit",
         "png-grey-alpha"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("channels", [1, 3])
def test_preprocess_accepts_every_allowed_kind_of_image(kind, channels):
    blob = _encode(kind)
    if kind == "png-16bit":
        assert Image.open(io.BytesIO(blob)).mode.startswith("I"), "the fixture must really be 16-bit"
    out = preprocess_image(blob, (channels, 20, 20))
    assert out.x.shape == (channels, 20, 20) and out.x.dtype == torch.float32
    expected = torch.from_numpy(np.asarray(Image.fromarray(_ink_on_paper()).resize((20, 20), Image.Resampling.LANCZOS),
                                           np.float32) / 255)
    assert (out.x - expected).abs().mean() < 0.03, "content differs from the reference (alpha, frame or bit depth)"
    assert out.steps[0][0] == "uploaded"


@pytest.mark.parametrize("input_shape", [(1, 28, 28), (1, 8, 8)])
def test_mnist_style_makes_dark_on_light_into_centred_white_on_black(input_shape):
    paper = np.full((120, 90), 230, np.uint8)  # light grey paper, digit off-centre in the top-left
    paper[15:60, 10:18] = 20
    paper[15:22, 10:40] = 20
    out = preprocess_image(_png_bytes(paper), input_shape, digit_style=True)
    captions = [c for c, _ in out.steps]
    assert "inverted (light background)" in captions
    x = out.x[0]
    assert x.shape == input_shape[1:]
    assert x.max() > 0.9 and x[:2, :2].max() < 0.05 and x[-2:, -2:].max() < 0.05  # white ink, black background
    if input_shape == (1, 28, 28):
        yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        cy, cx = float((yy * x).sum() / x.sum()), float((xx * x).sum() / x.sum())
        assert abs(cy - 13.5) < 1 and abs(cx - 13.5) < 1, (cy, cx)
        ys, xs = torch.nonzero(x > 0.2, as_tuple=True)
        assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 <= 21  # fitted into the 20x20 box


def test_mnist_style_keeps_light_on_dark_as_it_is():
    a = np.zeros((50, 50), np.uint8)
    a[10:40, 22:28] = 255
    out = preprocess_image(_png_bytes(a), (1, 28, 28), digit_style=True)
    assert "inverted (light background)" not in [c for c, _ in out.steps]
    assert out.x[0, 14, 13:15].max() > 0.9 and out.x[0, 0, 0] < 0.05


# ---------------------------------------------------------------- hostile inputs
def _hostile(kind: str, fixtures_dir) -> bytes:
    if kind == "random-bytes":
        return np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    if kind == "empty":
        return b""
    if kind == "too-many-bytes":
        return b"\x89PNG\r\n\x1a\n" + bytes(data.MAX_IMAGE_BYTES)
    if kind == "ppm":
        return _png_bytes(np.zeros((8, 8), np.uint8), fmt="PPM")
    if kind == "ico":
        return _png_bytes(np.zeros((16, 16, 3), np.uint8), fmt="ICO")
    return (fixtures_dir / kind).read_bytes()


HOSTILE = {
    "random-bytes": "not an image",
    "empty": "not an image",
    "too-many-bytes": "MB",
    "corrupt.png": "not an image",
    "truncated.png": "corrupt or truncated",
    "bomb_20000x20000.png": "pixels",
    "large_5000x5000.png": "5000x5000 pixels",
    "image.tiff": "not an image in an accepted format",
    "ppm": "not an image in an accepted format",
    "ico": "not an image in an accepted format",
    "not_an_image.txt": "not an image",
}


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("digit_style", [False, True])
def test_hostile_images_raise_data_error(fixtures_dir, kind, digit_style):
    with pytest.raises(DataError, match=HOSTILE[kind]):
        preprocess_image(_hostile(kind, fixtures_dir), (1, 28, 28), digit_style=digit_style)


def test_hostile_fixtures_are_what_they_claim(fixtures_dir, monkeypatch):
    """Guards the fixtures themselves: the bomb and TIFF are valid files that Pillow alone would open."""
    with Image.open(fixtures_dir / "image.tiff") as im:
        assert im.format == "TIFF"
    with Image.open(fixtures_dir / "large_5000x5000.png") as im:
        assert im.size == (5000, 5000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own bomb check off: the header is read as is
    with Image.open(fixtures_dir / "bomb_20000x20000.png") as im:
        assert im.size == (20000, 20000) and im.format == "PNG"
    monkeypatch.undo()
    with Image.open(fixtures_dir / "truncated.png") as im:
        assert im.size == (64, 64)  # the header is fine; the pixel data is cut short


@pytest.mark.parametrize("value", [0, 255, 128])
def test_blank_image_is_refused_in_digit_style(value):
    with pytest.raises(DataError, match="blank"):
        preprocess_image(_png_bytes(np.full((30, 30), value, np.uint8)), (1, 28, 28), digit_style=True)


def test_digits_are_sklearns_without_importing_it():
    """digits is read from scikit-learn's file without importing sklearn (~112 MB in the app's server); the images
    and labels are load_digits()'s."""
    from sklearn.datasets import load_digits

    from tests.fresh import fresh_python

    assert fresh_python("import sys, vae.data as d; d.load_dataset('digits'); print('sklearn' in sys.modules)",
                        timeout=120) == "False"
    ref = load_digits()
    ds = load_dataset("digits")
    both = np.concatenate([ds.x_train.numpy(), ds.x_test.numpy()]).reshape(-1, 64)
    labels = np.concatenate([np.asarray(ds.y_train), np.asarray(ds.y_test)])
    theirs = {(tuple(row), int(t)) for row, t in zip((ref.images / 16.0).reshape(-1, 64).astype(np.float32), ref.target)}
    assert len(both) == len(ref.target) and {(tuple(r), int(t)) for r, t in zip(both, labels)} == theirs
