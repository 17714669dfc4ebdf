"""The article's applications (section 7) and caveats (section 6), as computations a page can show:
interpolation, generation with each sample's nearest training image, corruption then denoising / completion,
error figures, PNG and GIF export, held-out evaluation, and two models compared on the same points."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from vae.data import Dataset, grid, to_uint8
from vae.explore import decode, encode, interpolate, reconstruct, sample
from vae.metrics import active_units, iwae_estimate, linear_probe, mig
from vae.model import VAE
from vae.training import evaluate

Progress = Callable[[float], None]

# ---------------------------------------------------------------- error figures


def mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean squared error over all pixels, or over those where `mask` is True (broadcast over channels)."""
    d = (a.float() - b.float()).pow(2)
    if mask is None:
        return float(d.mean())
    m = torch.broadcast_to(mask.bool(), d.shape)
    if not m.any():
        return 0.0
    return float(d[m].mean())


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(peak^2 / MSE); +inf for identical images."""
    e = mse(a, b, mask)
    return math.inf if e == 0 else 10 * math.log10(peak**2 / e)


GREY_LO, GREY_HI = 0.1, 0.9  # a pixel in between is "grey": neither ink nor background


def grey_fraction(x: torch.Tensor) -> float:
    """Share of pixels strictly between near-black and near-white: the article's 'blurry outputs', as a number."""
    return float(((x > GREY_LO) & (x < GREY_HI)).float().mean())


# ---------------------------------------------------------------- corruption

NOISES = ("gaussian", "salt_pepper")
MASKS = ("box", "half", "pixels")
CORRUPTIONS = NOISES + MASKS
SIDES = ("bottom", "top", "left", "right")


@dataclass
class Corruption:
    x: torch.Tensor  # (N, C, H, W) the corrupted input in [0, 1]; hidden pixels hold `fill`
    known: torch.Tensor | None  # (N, 1, H, W) bool, True where the pixel is kept; None for noise
    kind: str
    strength: float


def _batch(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected images (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    return x.float()


def corrupt(x: torch.Tensor, kind: str, strength: float, seed: int = 0, side: str = "bottom",
            fill: float = 0.0) -> Corruption:
    """Damage images: Gaussian noise (strength = std), salt-and-pepper (share of pixels), or hide pixels with a
    mask: a box (share of the area, at a seeded place), a side (share of rows/columns), random pixels (share).
    Seeded with a local generator."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; choose one of {', '.join(CORRUPTIONS)}")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 1:
        raise ValueError(f"strength must be a number in [0, 1], got {strength!r}")
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    x = _batch(x)
    n, _, h, w = x.shape
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        noisy = x + strength * torch.randn(x.shape, generator=g)
        return Corruption(noisy.clamp(0, 1), None, kind, strength)
    if kind == "salt_pepper":
        hit = torch.rand((n, 1, h, w), generator=g) < strength
        salt = (torch.rand((n, 1, h, w), generator=g) < 0.5).float()
        return Corruption(torch.where(hit, salt, x), None, kind, strength)
    known = torch.ones((n, 1, h, w), dtype=torch.bool)
    if kind == "pixels":
        known = torch.rand((n, 1, h, w), generator=g) >= strength
    elif kind == "box":
        bh, bw = round(math.sqrt(strength) * h), round(math.sqrt(strength) * w)
        for i in range(n):
            top = int(torch.randint(0, h - bh + 1, (1,), generator=g))
            left = int(torch.randint(0, w - bw + 1, (1,), generator=g))
            known[i, :, top: top + bh, left: left + bw] = False
    else:  # a side: the bottom half at strength 0.5
        rows, cols = round(strength * h), round(strength * w)
        if side == "bottom":
            known[:, :, h - rows:] = False
        elif side == "top":
            known[:, :, :rows] = False
        elif side == "right":
            known[:, :, :, w - cols:] = False
        elif side == "left":
            known[:, :, :, :cols] = False
    return Corruption(torch.where(known, x, torch.full_like(x, fill)), known, kind, strength)


def mask_overlay(x: torch.Tensor, known: torch.Tensor | None, tint: tuple[int, int, int] = (214, 39, 40)) -> np.ndarray:
    """An image (C, H, W) as uint8 RGB with its hidden pixels painted `tint`, so a black-on-black mask shows."""
    a = to_uint8(x)
    rgb = np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a.copy()
    if known is not None:
        rgb[~known.reshape(a.shape[:2]).numpy()] = tint
    return rgb


# ---------------------------------------------------------------- denoising and completion


@dataclass
class Completion:
    images: torch.Tensor  # (T + 1, N, C, H, W): the input after 0..T refills; known pixels never change
    error: list[float]  # per iteration 0..T: MSE on the hidden pixels against the truth (empty without truth)
    change: list[float]  # per iteration 1..T: mean |change| of the hidden pixels since the previous iteration


@torch.inference_mode()
def complete(model: VAE, x: torch.Tensor, known: torch.Tensor, iterations: int = 10,
             x_true: torch.Tensor | None = None) -> Completion:
    """Iterative completion: keep the known pixels, refill the hidden ones from the reconstruction, repeat."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= 1000:
        raise ValueError(f"iterations must be an integer in [1, 1000], got {iterations!r}")
    x = _batch(x)
    known = known.bool().reshape(len(x), 1, *x.shape[2:]).expand_as(x)  # (N, 1, H, W) mask -> every channel
    hidden = ~known
    x_true = None if x_true is None else _batch(x_true)
    images, error, change = [x.clone()], [], []
    if x_true is not None:
        error.append(mse(x, x_true, hidden))
    cur = x
    for _ in range(iterations):
        x_hat = reconstruct(model, cur).x_hat
        nxt = torch.where(known, x, x_hat)
        change.append(float((nxt - cur)[hidden].abs().mean()) if hidden.any() else 0.0)
        cur = nxt
        images.append(cur.clone())
        if x_true is not None:
            error.append(mse(cur, x_true, hidden))
    return Completion(torch.stack(images), error, change)


@dataclass
class Restoration:
    original: torch.Tensor  # (C, H, W)
    corrupted: torch.Tensor  # (C, H, W)
    reconstruction: torch.Tensor  # (C, H, W): one pass through the VAE (posterior mean decoded)
    known: torch.Tensor | None  # (1, H, W) bool for masks
    figures: dict[str, float]  # mse/psnr of the corrupted input and of the reconstruction against the original
    completion: Completion | None = None


def restore(model: VAE, x: torch.Tensor, kind: str, strength: float, seed: int = 0, side: str = "bottom",
            iterations: int = 10) -> Restoration:
    """Corrupt one image, reconstruct it, and for masks complete it iteratively; error figures against the original."""
    x = _batch(x)[:1]
    if tuple(x.shape[1:]) != tuple(model.cfg.input_shape):
        raise ValueError(f"the image is {tuple(x.shape[1:])}; the model expects {tuple(model.cfg.input_shape)}")
    c = corrupt(x, kind, strength, seed, side)
    x_hat = reconstruct(model, c.x).x_hat
    figures = {"mse_corrupted": mse(c.x, x), "psnr_corrupted": psnr(c.x, x),
               "mse_reconstruction": mse(x_hat, x), "psnr_reconstruction": psnr(x_hat, x),
               "mse_clean": mse(reconstruct(model, x).x_hat, x)}  # the model's floor: the clean input reconstructed
    completion = None
    if c.known is not None:
        completion = complete(model, c.x, c.known, iterations, x_true=x)
        final = completion.images[-1]
        figures.update({"mse_completed": mse(final, x), "psnr_completed": psnr(final, x),
                        "mse_hidden_corrupted": completion.error[0], "mse_hidden_completed": completion.error[-1],
                        "hidden_fraction": float((~c.known).float().mean())})
    return Restoration(x[0], c.x[0], x_hat[0], None if c.known is None else c.known[0], figures, completion)


# ---------------------------------------------------------------- interpolation


@dataclass
class Interpolation:
    z: torch.Tensor  # (steps, L)
    images: torch.Tensor  # (steps, C, H, W)
    step_change: np.ndarray  # (steps - 1,) mean |pixel change| between consecutive frames
    endpoint_change: float  # mean |pixel change| between the first and the last frame
    z_norm: np.ndarray  # (steps,) |z| along the path; the prior's typical norm is about sqrt(L)


def _latent(model: VAE, a: torch.Tensor) -> torch.Tensor:
    """An endpoint given as a latent vector (L,) or as an image (C, H, W), which is encoded to its mean."""
    a = torch.as_tensor(a, dtype=torch.float32)
    L = model.cfg.latent_dim
    if a.ndim == 1:
        if a.shape[0] != L:
            raise ValueError(f"a latent endpoint needs {L} values, got {a.shape[0]}")
        if not torch.isfinite(a).all():
            raise ValueError("a latent endpoint holds NaN or infinite values")
        return a
    if tuple(a.shape) != tuple(model.cfg.input_shape):
        raise ValueError(f"an image endpoint must be {tuple(model.cfg.input_shape)}, got {tuple(a.shape)}")
    mu, _ = encode(model, a[None])
    return mu[0]


def interpolate_endpoints(model: VAE, a: torch.Tensor, b: torch.Tensor, steps: int = 10,
                          method: str = "lerp") -> Interpolation:
    """Decode the path between two endpoints (images or latent vectors), with how smooth the transition is."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= 200:
        raise ValueError(f"steps must be an integer in [2, 200], got {steps!r}")
    z = interpolate(_latent(model, a), _latent(model, b), steps, method)
    images = decode(model, z)
    step_change = (images[1:] - images[:-1]).abs().flatten(1).mean(1).numpy()
    return Interpolation(z, images, step_change, float((images[-1] - images[0]).abs().mean()), z.norm(dim=1).numpy())


# ---------------------------------------------------------------- generation


@torch.inference_mode()
def nearest_training(images: torch.Tensor, x_train: torch.Tensor, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each image, the index of the nearest training image and the Euclidean pixel distance to it."""
    q = _batch(images).flatten(1)
    best_d = torch.full((len(q),), math.inf)
    best_i = torch.zeros(len(q), dtype=torch.long)
    for start in range(0, len(x_train), batch_size):
        d = torch.cdist(q, x_train[start: start + batch_size].flatten(1).float())  # (N, B)
        d_min, i_min = d.min(dim=1)
        better = d_min < best_d
        best_d = torch.where(better, d_min, best_d)
        best_i = torch.where(better, i_min + start, best_i)
    return best_i.numpy(), best_d.numpy()


@dataclass
class Generation:
    z: torch.Tensor  # (N, L)
    images: torch.Tensor  # (N, C, H, W)
    nearest_index: np.ndarray  # (N,) row of the training set nearest to each sample
    nearest_distance: np.ndarray  # (N,) pixel L2 distance to it
    reference_distance: float  # median distance of held-out real images to their nearest training image
    grey_samples: float  # grey_fraction of the samples
    grey_data: float  # grey_fraction of the training images


def generate(model: VAE, data: Dataset, n: int = 16, temperature: float = 1.0, seed: int = 0,
             reference: int = 200) -> Generation:
    """Samples from the prior (std scaled by `temperature`), each with its nearest training image, and the figures
    that say whether they copy (distance versus real held-out images) and how blurry they are (grey pixels)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1024:
        raise ValueError(f"the number of samples must be an integer in [1, 1024], got {n!r}")
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 10 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a number in [0, 10], got {temperature!r}")
    if data.shape != tuple(model.cfg.input_shape):
        raise ValueError(f"the data set's images are {data.shape}; the model expects {tuple(model.cfg.input_shape)}")
    z, images = sample(model, n, temperature, seed)
    idx, dist = nearest_training(images, data.x_train)
    _, ref = nearest_training(data.x_test[:reference], data.x_train)
    return Generation(z, images, idx, dist, float(np.median(ref)) if len(ref) else math.nan,
                      grey_fraction(images), grey_fraction(data.x_train[:2000]))


# ---------------------------------------------------------------- export


def upscale(a: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of an (H, W) or (H, W, 3) image: pixels stay crisp squares."""
    return a if factor <= 1 else np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)


def png_bytes(image: torch.Tensor | np.ndarray, compress_level: int = 1) -> bytes:
    """An image as PNG file bytes: (C, H, W) tensors/arrays or (H, W[, 3]) arrays, floats in [0, 1] or uint8.

    Level 1 compression: pages inline many small images and the encoding time is on the slider's latency path.
    """
    from PIL import Image

    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (3, 4):
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)  # (C, H, W) -> (H, W[, 3])
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def strip_png(images: torch.Tensor, scale: int = 4, nrow: int | None = None) -> bytes:
    """Images (N, C, H, W) side by side (or nrow per row) as one PNG."""
    images = _batch(images)
    return png_bytes(upscale(grid(images, nrow or len(images)), scale))


def gif_bytes(images: torch.Tensor, scale: int = 4, frame_ms: int = 120, bounce: bool = True) -> bytes:
    """Images (N, C, H, W) as an animated GIF that loops forever; `bounce` plays it forwards then backwards."""
    from PIL import Image

    images = _batch(images)
    frames = [upscale(to_uint8(im), scale) for im in images]
    if bounce and len(frames) > 2:
        frames = frames + frames[-2:0:-1]
    pil = [Image.fromarray(f) for f in frames]
    if pil[0].mode == "RGB":
        pil = [p.quantize(colors=256) for p in pil]
    buf = io.BytesIO()
    pil[0].save(buf, format="GIF", save_all=True, append_images=pil[1:], duration=frame_ms, loop=0, optimize=False)
    return buf.getvalue()


# ---------------------------------------------------------------- evaluation and comparison


@dataclass
class Summary:
    neg_elbo: float  # held-out means, nats per image
    recon: float
    kl: float
    kl_per_dim: list[float]  # (L,)
    active: int  # active units (Burda et al. 2016)
    mu_variance: list[float]  # (L,) variance of each posterior mean across the held-out set
    mse: float  # pixel MSE of the reconstructions (posterior mean decoded)
    n: int  # held-out images used
    mig: dict | None = None  # for data sets with generative factors (shapes)


def summarize(model: VAE, data: Dataset, limit: int | None = None, seed: int = 0) -> Summary:
    """The held-out figures that are cheap: -ELBO = reconstruction + KL, per-dimension KL, active units, MIG."""
    x = data.x_test[:limit] if limit else data.x_test
    if len(x) == 0:
        raise ValueError("the held-out set is empty")
    if tuple(x.shape[1:]) != tuple(model.cfg.input_shape):
        raise ValueError(f"the data set's images are {tuple(x.shape[1:])}; the model expects {tuple(model.cfg.input_shape)}")
    ev = evaluate(model, x, seed=seed)
    mu, _ = encode(model, x)
    n_active, var = active_units(mu)
    x_hat = torch.cat([reconstruct(model, x[i: i + 1000]).x_hat for i in range(0, len(x), 1000)])
    factors = data.factors_test[: len(x)] if data.factors_test is not None else None
    return Summary(ev["neg_elbo"], ev["recon"], ev["kl"], ev["kl_per_dim"], n_active, var.tolist(), mse(x_hat, x), len(x),
                   mig(mu, factors) if factors is not None else None)


def likelihood(model: VAE, data: Dataset, k: int = 100, limit: int | None = None, seed: int = 0,
               progress: Progress | None = None) -> dict[str, float]:
    """The importance-weighted estimate of -log p(x) (Burda et al. 2016) beside the -ELBO, on the same held-out images."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100_000:
        raise ValueError(f"k must be an integer in [1, 100000], got {k!r}")
    x = data.x_test[:limit] if limit else data.x_test
    if len(x) == 0:
        raise ValueError("the held-out set is empty")
    if tuple(x.shape[1:]) != tuple(model.cfg.input_shape):
        raise ValueError(f"the data set's images are {tuple(x.shape[1:])}; the model expects {tuple(model.cfg.input_shape)}")
    nll = iwae_estimate(model, x, k, seed=seed, progress=progress)
    return {"iwae": nll, "neg_elbo": float(evaluate(model, x, seed=seed)["neg_elbo"]), "k": k, "n": len(x)}


LABEL_BUDGETS = (10, 100, None)  # labels per class for the probes; None = every training label


def probes(model: VAE, data: Dataset, budgets: tuple[int | None, ...] = LABEL_BUDGETS, seed: int = 0,
           progress: Progress | None = None) -> list[dict]:
    """Linear-probe accuracy on latent means versus raw pixels, for each label budget: the article's
    feature extraction and semi-supervised uses. One row per budget."""
    if data.y_train is None or data.y_test is None:
        raise ValueError(f"the data set {data.name!r} has no labels to probe with")
    rows = []
    for i, per_class in enumerate(budgets):
        r = linear_probe(model, data.x_train, data.y_train, data.x_test, data.y_test, labels_per_class=per_class, seed=seed)
        rows.append({"labels_per_class": per_class, **r})
        if progress is not None:
            progress((i + 1) / len(budgets))
    return rows


@dataclass
class Comparison:
    metrics: dict[str, tuple[float, float]]  # name -> (model a, model b), all on the same held-out images
    inputs: torch.Tensor  # (n_show, C, H, W)
    reconstructions: tuple[torch.Tensor, torch.Tensor]  # each (n_show, C, H, W)
    summaries: tuple[Summary, Summary]


def compare(model_a: VAE, model_b: VAE, data: Dataset, n_show: int = 8, limit: int | None = None, iwae_k: int = 0,
            seed: int = 0, progress: Progress | None = None) -> Comparison:
    """Two models evaluated on the same held-out images: ELBO terms, active units, pixel MSE (and IWAE NLL)."""
    for name, m in (("first", model_a), ("second", model_b)):
        if tuple(m.cfg.input_shape) != data.shape:
            raise ValueError(f"the {name} model expects images {tuple(m.cfg.input_shape)}, but {data.name!r} has {data.shape}")
    sa, sb = summarize(model_a, data, limit, seed), summarize(model_b, data, limit, seed)
    metrics = {
        "held-out −ELBO (nats)": (sa.neg_elbo, sb.neg_elbo),
        "reconstruction (nats)": (sa.recon, sb.recon),
        "KL (nats)": (sa.kl, sb.kl),
        "active units": (float(sa.active), float(sb.active)),
        "latent dimensions": (float(model_a.cfg.latent_dim), float(model_b.cfg.latent_dim)),
        "pixel MSE of reconstructions": (sa.mse, sb.mse),
    }
    if sa.mig is not None and sb.mig is not None:
        metrics["MIG"] = (sa.mig["mig"], sb.mig["mig"])
    if iwae_k:
        x = data.x_test[:limit] if limit else data.x_test
        half = (lambda f: progress(f / 2)) if progress else None
        rest = (lambda f: progress(0.5 + f / 2)) if progress else None
        metrics[f"IWAE −log p(x), k={iwae_k} (nats)"] = (iwae_estimate(model_a, x, iwae_k, seed=seed, progress=half),
                                                          iwae_estimate(model_b, x, iwae_k, seed=seed, progress=rest))
    elif progress is not None:
        progress(1.0)
    x_show = data.x_test[:n_show]
    return Comparison(metrics, x_show, (reconstruct(model_a, x_show).x_hat, reconstruct(model_b, x_show).x_hat), (sa, sb))
