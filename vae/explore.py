"""Looking into a trained VAE: encode, decode, sample, reconstruct, interpolate, traverse, project to 2-D, and the
map's geometry (posterior ellipses, a clickable grid, decoding a map position)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vae.model import VAE


def _device(model: VAE) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def encode(model: VAE, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, C, H, W) -> mu (N, L), sigma (N, L) on the CPU."""
    dev = _device(model)
    mus, sigmas = [], []
    for i in range(0, len(x), batch_size):
        mu, logvar = model.encode(x[i: i + batch_size].to(dev))
        mus.append(mu.cpu())
        sigmas.append(torch.exp(0.5 * logvar).cpu())
    L = model.cfg.latent_dim
    return (torch.cat(mus) if mus else torch.empty(0, L)), (torch.cat(sigmas) if sigmas else torch.empty(0, L))


@torch.inference_mode()
def decode(model: VAE, z: torch.Tensor | np.ndarray, batch_size: int = 1000) -> torch.Tensor:
    """z (N, L) -> images (N, C, H, W) in [0, 1] on the CPU."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z, dtype=torch.float32)
    if z.ndim == 1:
        z = z[None]
    dev = _device(model)
    return torch.cat([model.decode(z[i: i + batch_size].to(dev)).cpu() for i in range(0, len(z), batch_size)])


@torch.inference_mode()
def sample(model: VAE, n: int, temperature: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n draws z ~ N(0, temperature^2 I), decoded. Seeded locally: the shared model's global RNG is never touched."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.cfg.latent_dim, generator=g) * temperature
    return z, decode(model, z)


@dataclass
class Reconstruction:
    x_hat: torch.Tensor  # (N, C, H, W): decoded posterior means
    mu: torch.Tensor  # (N, L)
    sigma: torch.Tensor  # (N, L)
    recon: torch.Tensor  # (N,) -log p(x|z=mu) in nats
    kl: torch.Tensor  # (N,)
    neg_elbo: torch.Tensor  # (N,) recon + kl (recon at the mean, a deterministic figure for display)


@torch.inference_mode()
def reconstruct(model: VAE, x: torch.Tensor) -> Reconstruction:
    """Encode, decode the posterior mean, and score each input."""
    from vae.losses import kl_divergence, reconstruction_nll

    dev = _device(model)
    x = x.to(dev)
    if x.ndim == 3:
        x = x[None]
    mu, logvar = model.encode(x)
    logits = model.decode_logits(mu)
    recon = reconstruction_nll(logits, x, model.cfg.likelihood, model.cfg.obs_std)
    kl = kl_divergence(mu, logvar)
    return Reconstruction(torch.sigmoid(logits).cpu(), mu.cpu(), torch.exp(0.5 * logvar).cpu(), recon.cpu(), kl.cpu(), (recon + kl).cpu())


@torch.inference_mode()
def posterior_samples(model: VAE, mu: torch.Tensor, sigma: torch.Tensor, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The reparameterization made visible: z = mu + sigma * eps for n draws of eps, decoded. mu, sigma: (L,)."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(n, mu.shape[-1], generator=g)
    z = mu.reshape(1, -1) + sigma.reshape(1, -1) * eps
    return z, decode(model, z)


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int, method: str = "lerp") -> torch.Tensor:
    """Path of `steps` points from z0 to z1, (steps, L). slerp follows the great circle, keeping norms typical of the prior."""
    if steps < 2:
        raise ValueError("an interpolation needs at least 2 steps")
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    z0, z1 = z0.reshape(1, -1).float(), z1.reshape(1, -1).float()
    if method == "lerp":
        return (1 - t) * z0 + t * z1
    if method != "slerp":
        raise ValueError(f"unknown interpolation {method!r}; use lerp or slerp")
    n0, n1 = z0.norm(), z1.norm()
    if n0 < 1e-8 or n1 < 1e-8:
        return (1 - t) * z0 + t * z1
    cos = ((z0 / n0) * (z1 / n1)).sum().clamp(-1, 1)
    omega = torch.arccos(cos)
    if torch.sin(omega).abs() < 1e-4:  # (anti)parallel vectors: slerp degenerates to lerp
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def traversal(model: VAE, z: torch.Tensor, dims: list[int] | None = None, lo: float = -3.0, hi: float = 3.0,
              steps: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """For each chosen dimension, vary it from lo to hi around z, others fixed: images (D, steps, C, H, W), values (steps,)."""
    dims = list(range(model.cfg.latent_dim)) if dims is None else list(dims)
    values = torch.linspace(lo, hi, steps)
    zs = z.reshape(1, 1, -1).float().repeat(len(dims), steps, 1)  # (D, steps, L)
    for row, d in enumerate(dims):
        zs[row, :, d] = values
    images = decode(model, zs.flatten(0, 1))
    return images.view(len(dims), steps, *images.shape[1:]), values


def manifold_grid(model: VAE, n: int = 15, span: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2-D latent manifold: an n x n grid through the prior's inverse CDF (Kingma & Welling, fig. 4).

    Returns images (n, n, C, H, W), rows top->bottom = z2 high->low, and the grid's z (n, n, 2).
    """
    if model.cfg.latent_dim != 2:
        raise ValueError("the manifold grid needs a 2-D latent space")
    p = torch.linspace(1 - span, span, n)
    q = torch.distributions.Normal(0.0, 1.0).icdf(p)  # evenly spaced in probability, not in z
    zy, zx = torch.meshgrid(q.flip(0), q, indexing="ij")
    z = torch.stack([zx, zy], dim=-1)  # (n, n, 2)
    images = decode(model, z.reshape(-1, 2))
    return images.view(n, n, *images.shape[1:]), z


@dataclass
class Projection:
    """A linear 2-D view of the latent space: PCA (or identity for 2-D latents), invertible onto the plane."""

    mean: np.ndarray  # (L,)
    components: np.ndarray  # (2, L), orthonormal rows
    explained: np.ndarray  # (2,) fraction of variance on each axis
    method: str = "pca"

    def transform(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        return (z - self.mean) @ self.components.T

    def inverse(self, p: np.ndarray | list[float]) -> np.ndarray:
        """A point (or points) on the 2-D map -> latent vector(s) on the plane through the mean."""
        p = np.asarray(p, dtype=np.float64)
        return p @ self.components + self.mean


def fit_projection(mu: np.ndarray | torch.Tensor) -> Projection:
    """PCA of latent means; a 2-D latent space is shown as it is."""
    mu = np.asarray(mu, dtype=np.float64)
    L = mu.shape[1]
    if L == 1:
        return Projection(np.zeros(1), np.array([[1.0], [0.0]]), np.array([1.0, 0.0]), "identity")
    if L == 2:
        var = mu.var(axis=0)
        return Projection(np.zeros(2), np.eye(2), var / max(var.sum(), 1e-12), "identity")
    mean = mu.mean(axis=0)
    # Eigenvectors of the (L, L) covariance rather than an SVD of the (N, L) data: one pass over 100,000 points.
    c = mu - mean
    var, vecs = np.linalg.eigh(c.T @ c)
    order = np.argsort(var)[::-1]
    var, vt = np.clip(var[order], 0, None), vecs[:, order].T
    vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])[:, None]  # a fixed sign: largest loading > 0
    return Projection(mean, vt[:2].copy(), var[:2] / max(var.sum(), 1e-12), "pca")


def nearest(points: np.ndarray | torch.Tensor, query: np.ndarray | torch.Tensor, k: int = 8, exclude_self: bool = True) -> np.ndarray:
    """Indices of the k rows of `points` nearest to `query` (Euclidean); the query itself is skipped if present."""
    points = np.asarray(points, dtype=np.float64)
    d = np.linalg.norm(points - np.asarray(query, dtype=np.float64).reshape(1, -1), axis=1)
    order = np.argsort(d, kind="stable")
    if exclude_self:
        order = order[d[order] > 1e-12]
    return order[:k]


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
