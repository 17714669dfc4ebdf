"""The ELBO's two terms, per sample and in nats, and the importance-weighted bound."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vae.model import VAE

LOG_2PI = math.log(2 * math.pi)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per dimension, (B, L): -1/2 (1 + log sigma^2 - mu^2 - sigma^2) (article, 3.2)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Analytic KL to the standard normal prior, summed over dimensions: (B,)."""
    return kl_per_dim(mu, logvar).sum(dim=-1)


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor, likelihood: str, obs_std: float = 0.1) -> torch.Tensor:
    """-log p(x|z) summed over pixels, (B,). Bernoulli: BCE with logits; Gaussian: NLL with a fixed std."""
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif likelihood == "gaussian":
        # -log N(x; sigmoid(logits), obs_std^2) = (x - x_hat)^2 / (2 s^2) + log s + log(2 pi) / 2: MSE up to scale.
        x_hat = torch.sigmoid(logits)
        nll = 0.5 * (x - x_hat).pow(2) / obs_std**2 + math.log(obs_std) + 0.5 * LOG_2PI
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    return nll.flatten(1).sum(dim=1)


def elbo_terms(model: VAE, x: torch.Tensor, beta: float = 1.0, generator: torch.Generator | None = None,
               eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One-sample estimate, per sample (B,): recon, kl, kl_dims (B, L), neg_elbo = recon + kl, loss = recon + beta * kl.

    The noise eps (B, L) is drawn from `generator` unless given (a training loop that draws it for several ranks).
    """
    logits, mu, logvar, _ = model(x, generator, eps)
    recon = reconstruction_nll(logits, x, model.cfg.likelihood, model.cfg.obs_std)
    kl_dims = kl_per_dim(mu, logvar)
    kl = kl_dims.sum(dim=-1)
    return {"recon": recon, "kl": kl, "kl_dims": kl_dims, "neg_elbo": recon + kl, "loss": recon + beta * kl}


def log_normal(z: torch.Tensor, mu: torch.Tensor | float = 0.0, logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


@torch.inference_mode()
def iwae_nll(model: VAE, x: torch.Tensor, k: int = 100, chunk: int = 250, generator: torch.Generator | None = None) -> torch.Tensor:
    """-log p(x) estimated with k importance samples from q(z|x) (Burda et al. 2016), per sample (B,).

    k = 1 is the ELBO in expectation; the bound tightens as k grows.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    mu, logvar = model.encode(x)
    log_ws = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        # (n, B, L): n samples of z for every input
        eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = model.decode_logits(z.flatten(0, 1))  # (n*B, C, H, W)
        x_rep = x.unsqueeze(0).expand(n, *x.shape).flatten(0, 1)
        log_px_z = -reconstruction_nll(logits, x_rep, model.cfg.likelihood, model.cfg.obs_std).view(n, -1)
        log_w = log_px_z + log_normal(z) - log_normal(z, mu, logvar)  # (n, B)
        log_ws.append(log_w)
    log_w = torch.cat(log_ws, dim=0)
    return -(torch.logsumexp(log_w, dim=0) - math.log(k))
