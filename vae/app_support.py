"""Computations behind the explorer's pages that are not a VAE operation of their own: checkpoint names,
posterior ellipses on the map, clickable grids, and one-call analyses of a user's image. Never imports streamlit."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vae.checkpoint import CheckpointError
from vae.data import Preprocessed, preprocess_image
from vae.explore import Projection, decode, posterior_samples, reconstruct
from vae.model import VAE

# The models shipped with the app: overwriting them needs an explicit confirmation.
SHIPPED_CHECKPOINTS = ("mnist5k-mlp-z2", "mnist5k-mlp-z16", "mnist5k-mlp-z32")
COLLAPSE_NATS = 0.01  # a latent dimension carrying less KL than this is "collapsed": the decoder ignores it
MAX_NAME_CHARS = 80
_NAME_RE = re.compile(r"[\w][\w.\- ]*")
DIGIT_DATASETS = ("mnist5k", "mnist", "digits", "kmnist")  # trained on MNIST-style white-on-black digits
NOT_DIGIT_STYLE = ("shapes", "fashion-mnist", "cifar10")  # grey or not, their images are not centred strokes


@dataclass(frozen=True)
class SaveTarget:
    path: Path
    exists: bool  # a file of that name is already there: saving replaces it
    shipped: bool  # ... and it is one of the shipped models


def checkpoint_target(folder: str | Path, name: str) -> SaveTarget:
    """Validate a user's checkpoint name and say where it would be written; CheckpointError says what is wrong."""
    name = unicodedata.normalize("NFC", (name or "").strip())
    if name.lower().endswith(".safetensors"):
        name = name[: -len(".safetensors")].rstrip()
    if not name:
        raise CheckpointError("give the checkpoint a name")
    if "/" in name or "\\" in name or "\x00" in name:
        raise CheckpointError("a checkpoint name cannot contain path separators (/ or \\)")
    if len(name) > MAX_NAME_CHARS:
        raise CheckpointError(f"a checkpoint name has at most {MAX_NAME_CHARS} characters")
    if not _NAME_RE.fullmatch(name) or name.endswith("."):
        raise CheckpointError("use letters, digits, spaces, '-', '_' and '.', starting with a letter or digit")
    path = Path(folder) / f"{name}.safetensors"
    return SaveTarget(path, path.exists(), name in SHIPPED_CHECKPOINTS)


def collapsed_dims(kl_per_dim: list[float] | np.ndarray, threshold: float = COLLAPSE_NATS) -> list[int]:
    """Indices of latent dimensions whose mean KL is below `threshold` nats (posterior collapse)."""
    return [i for i, v in enumerate(np.asarray(kl_per_dim, dtype=np.float64)) if v < threshold]


def posterior_ellipse(mu: np.ndarray | torch.Tensor, sigma: np.ndarray | torch.Tensor, projection: Projection,
                      n_std: float = 2.0, n: int = 72) -> np.ndarray:
    """The n_std-sigma ellipse of q(z|x) = N(mu, diag sigma^2) projected onto the map plane: (n, 2) points.

    A linear map W sends N(mu, S) to N(W mu, W S W^T); the ellipse is centre + n_std * V sqrt(Lambda) (cos t, sin t).
    """
    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    var = np.asarray(sigma, dtype=np.float64).reshape(-1) ** 2
    w = projection.components  # (2, L)
    cov = (w * var) @ w.T  # (2, 2)
    evals, evecs = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)])  # (2, n)
    pts = evecs @ (np.sqrt(np.clip(evals, 0, None))[:, None] * circle) * n_std
    return projection.transform(mu[None])[0] + pts.T


def click_grid(xy: np.ndarray, n: int = 48, margin: float = 0.08) -> np.ndarray:
    """An n x n grid of (x, y) positions covering the points' extent plus a margin: (n*n, 2).

    Plotly reports clicks only on points, so the map lays this grid under the data to make empty space clickable.
    """
    xy = np.asarray(xy, dtype=np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = (hi - lo) * margin + 1e-6
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], n)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], n)
    xx, yy = np.meshgrid(gx, gy)
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def decode_map_position(model: VAE, projection: Projection, xy: tuple[float, float] | np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """A position on the 2-D map -> the latent vector on the map's plane (inverse PCA) and its decoded image (C, H, W)."""
    z = projection.inverse(np.asarray(xy, dtype=np.float64).reshape(1, 2))[0]
    return z, decode(model, torch.as_tensor(z, dtype=torch.float32))[0]


def uses_digit_style(input_shape: tuple[int, int, int], dataset: str) -> bool:
    """Whether a user's image should go through the MNIST recipe (invert, crop, centre) before this model sees it:
    grey digit models, and other 28x28 grey models unless their data are known not to be centred strokes."""
    c, h, w = input_shape
    if c != 1 or dataset in NOT_DIGIT_STYLE:
        return False
    return dataset in DIGIT_DATASETS or (h, w) == (28, 28)


@dataclass
class ImageAnalysis:
    pre: Preprocessed  # the model's input and every step that led to it
    x_hat: torch.Tensor  # (C, H, W) decoded posterior mean
    mu: torch.Tensor  # (L,)
    sigma: torch.Tensor  # (L,)
    recon: float  # -log p(x|z=mu), nats
    kl: float  # KL(q(z|x) || p(z)), nats
    neg_elbo: float
    z_samples: torch.Tensor  # (n, L): mu + sigma * eps
    x_samples: torch.Tensor  # (n, C, H, W)


def analyse_image(model: VAE, data: bytes, digit_style: bool, n_samples: int = 6, seed: int = 0) -> ImageAnalysis:
    """An image file's bytes -> preprocessing steps, reconstruction, posterior, scores and reparameterized samples.

    Raises vae.DataError for anything that is not a usable image.
    """
    pre = preprocess_image(data, model.cfg.input_shape, digit_style=digit_style)
    rec = reconstruct(model, pre.x[None])
    z, xs = posterior_samples(model, rec.mu[0], rec.sigma[0], n_samples, seed=seed)
    return ImageAnalysis(pre, rec.x_hat[0], rec.mu[0], rec.sigma[0], float(rec.recon[0]), float(rec.kl[0]),
                         float(rec.neg_elbo[0]), z, xs)


def reparameterization_example(model: VAE, x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """One input's mu, sigma, a draw of eps, z = mu + sigma * eps and its decoded image: the article's trick, in numbers."""
    rec = reconstruct(model, x[None] if x.ndim == 3 else x)
    mu, sigma = rec.mu[0], rec.sigma[0]
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(mu.shape, generator=g)
    z = mu + sigma * eps
    return {"mu": mu, "sigma": sigma, "eps": eps, "z": z, "x_hat": decode(model, z)[0], "recon": rec.recon[0], "kl": rec.kl[0]}
