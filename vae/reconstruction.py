"""One image through the model: which preprocessing a user's image gets, its reconstruction, posterior, scores and
reparameterized samples, and the reparameterization trick in numbers."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vae.data import Preprocessed, preprocess_image
from vae.explore import decode, posterior_samples, reconstruct
from vae.model import VAE

DIGIT_DATASETS = ("mnist5k", "mnist", "digits", "kmnist")  # trained on MNIST-style white-on-black digits
NOT_DIGIT_STYLE = ("shapes", "fashion-mnist", "cifar10")  # grey or not, their images are not centred strokes


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
    return analyse_input(model, preprocess_image(data, model.cfg.input_shape, digit_style=digit_style), n_samples, seed)


def analyse_input(model: VAE, pre: Preprocessed, n_samples: int = 6, seed: int = 0) -> ImageAnalysis:
    """A prepared input (vae.data.preprocess_image, vae.adapt.adapt) -> reconstruction, posterior, scores, samples."""
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
