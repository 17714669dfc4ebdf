"""What the model learned: likelihood bounds, active units, linear probes on latent means, MIG."""
from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np
import torch

from vae.explore import encode
from vae.losses import iwae_nll
from vae.model import VAE

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: a unit is active if Cov_x(E_q[z_u]) > 0.01
COLLAPSE_NATS = 0.01  # a latent dimension carrying less KL than this is "collapsed": the decoder ignores it


def iwae_estimate(model: VAE, x: torch.Tensor, k: int = 1000, batch_size: int = 50, seed: int = 0,
                  progress: Callable[[float], None] | None = None) -> float:
    """Mean importance-weighted -log p(x) over x, in nats; `progress` gets the fraction done."""
    from vae.semi import is_m2, iwae_nll_m2

    bound = iwae_nll_m2 if is_m2(model) else iwae_nll  # M2: y summed out by sampling it from q(y|x)
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(seed)
    total = 0.0
    for i in range(0, len(x), batch_size):
        total += float(bound(model, x[i: i + batch_size].to(dev), k, generator=g).sum())
        if progress is not None:
            progress(min(1.0, (i + batch_size) / len(x)))
    return total / max(1, len(x))


def active_units(mu: torch.Tensor | np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> tuple[int, np.ndarray]:
    """Number of latent dimensions whose posterior mean varies across the data, and each dimension's variance."""
    var = np.asarray(mu, dtype=np.float64).var(axis=0)
    return int((var > threshold).sum()), var


def _logistic_accuracy(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(f_train, y_train)
    return float(clf.score(f_test, y_test))


def linear_probe(model: VAE, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                 labels_per_class: int | None = None, seed: int = 0) -> dict[str, float]:
    """Logistic regression on latent means versus on raw pixels: held-out accuracy of each.

    With labels_per_class, only that many labelled training examples per class are used: the article's
    semi-supervised use, where the VAE learned from everything and the classifier sees a few labels.
    """
    y_tr, y_te = np.asarray(y_train), np.asarray(y_test)
    idx = np.arange(len(y_tr))
    if labels_per_class is not None:
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.permutation(np.flatnonzero(y_tr == c))[:labels_per_class] for c in np.unique(y_tr)])
    mu_tr, _ = encode(model, x_train[idx])
    mu_te, _ = encode(model, x_test)
    px_tr, px_te = x_train[idx].flatten(1).numpy(), x_test.flatten(1).numpy()
    return {
        "latent": _logistic_accuracy(mu_tr.numpy(), y_tr[idx], mu_te.numpy(), y_te),
        "pixels": _logistic_accuracy(px_tr, y_tr[idx], px_te, y_te),
        "n_labels": int(len(idx)),
    }


def _discrete_mi(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information (nats) between two integer arrays."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def _entropy(a: np.ndarray) -> float:
    p = np.bincount(a) / len(a)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mig(mu: torch.Tensor | np.ndarray, factors: torch.Tensor | np.ndarray, bins: int = 20) -> dict[str, object]:
    """Mutual Information Gap (Chen et al. 2018): per factor, the gap between the two latents most informative
    about it, over the factor's entropy; averaged over factors. Latents are discretised into `bins` bins."""
    mu = np.asarray(mu, dtype=np.float64)
    factors = np.asarray(factors, dtype=np.int64)
    codes = np.stack([np.digitize(m, np.histogram_bin_edges(m, bins)[1:-1]) for m in mu.T])  # (L, N)
    mi = np.array([[_discrete_mi(c, f) for f in factors.T] for c in codes])  # (L, F)
    gaps = []
    for j in range(factors.shape[1]):
        h = _entropy(factors[:, j])
        top = np.sort(mi[:, j])[::-1]
        second = top[1] if len(top) > 1 else 0.0
        gaps.append((top[0] - second) / h if h > 0 else 0.0)
    return {"mig": float(np.mean(gaps)), "per_factor": [float(g) for g in gaps], "mutual_information": mi.tolist()}


def collapsed_dims(kl_per_dim: list[float] | np.ndarray, threshold: float = COLLAPSE_NATS) -> list[int]:
    """Indices of latent dimensions whose mean KL is below `threshold` nats (posterior collapse)."""
    return [i for i, v in enumerate(np.asarray(kl_per_dim, dtype=np.float64)) if v < threshold]

class PixelReader:
    """A multinomial logistic regression on raw pixels (L2-penalised, full-batch L-BFGS): reads which class an image
    shows. Plain PyTorch so that it fits in about a second on one core."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, classes: np.ndarray):
        self.weight, self.bias, self.classes = weight, bias, classes  # (D, K), (K,), (K,)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Class of each image (N, ...) -> (N,)."""
        logits = x.flatten(1).float() @ self.weight + self.bias
        return self.classes[logits.argmax(1).numpy()]

    def score(self, x: torch.Tensor, y: torch.Tensor | np.ndarray) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())


def lbfgs(loss_and_grad: Callable[[torch.Tensor], tuple[float, torch.Tensor]], x0: torch.Tensor,
          iterations: int = 100, history: int = 20, gtol: float = 1e-5, ftol: float = 2.2e-9) -> torch.Tensor:
    """Minimise a smooth function of a vector by L-BFGS (Nocedal & Wright, algorithm 7.4: the two-loop recursion)
    with a backtracking line search (Armijo's condition); float64 throughout. For the pixel reader's convex loss.
    Stops as scipy's L-BFGS-B does by default: after `iterations`, at a gradient entry no larger than gtol, or when
    a step lowers f by no more than ftol relative.

    Written here because scipy.optimize costs the server ~40 MB resident that stays and torch.optim.LBFGS imports
    torch._dynamo (1.9 s, 160 MB)."""
    x = x0.double().clone()
    f, g = loss_and_grad(x)
    pairs: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=history)  # (s, y): the newest `history` steps
    for _ in range(iterations):
        if float(g.abs().max()) <= gtol:
            break
        q = g.clone()
        alphas = []
        for s_i, y_i in reversed(pairs):
            a = float(s_i @ q) / float(y_i @ s_i)
            alphas.append(a)
            q -= a * y_i
        if pairs:
            s_last, y_last = pairs[-1]
            q *= float(s_last @ y_last) / float(y_last @ y_last)
        else:
            q /= max(float(g.norm()), 1e-12)
        for (s_i, y_i), a in zip(pairs, reversed(alphas)):
            q += (a - float(y_i @ q) / float(y_i @ s_i)) * s_i
        d = -q
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction (lost curvature): start over from the gradient
            pairs.clear()
            d, slope = -g / max(float(g.norm()), 1e-12), -float(g.norm())
        step = 1.0
        for _ in range(30):
            x_new = x + step * d
            f_new, g_new = loss_and_grad(x_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break  # no decrease along d: as good as this line gets
        s_k, y_k = x_new - x, g_new - g
        if float(s_k @ y_k) > 1e-10:  # keep the pair only where it says the function curves upward
            pairs.append((s_k, y_k))
        converged = f - f_new <= ftol * max(1.0, abs(f), abs(f_new))
        x, f, g = x_new, f_new, g_new
        if converged:
            break
    return x


def pixel_classifier(x_train: torch.Tensor, y_train: torch.Tensor | np.ndarray, l2: float = 1e-3,
                     iterations: int = 100) -> PixelReader:
    """Fit the pixel reader on the training split: softmax regression, mean cross-entropy + l2 * |W|^2, minimised by
    lbfgs() on PyTorch's loss and gradient."""
    y_np = np.asarray(y_train)
    classes, y_idx = np.unique(y_np, return_inverse=True)
    x = x_train.flatten(1).float()
    y = torch.as_tensor(y_idx, dtype=torch.long)
    d, k = x.shape[1], len(classes)

    def loss_and_grad(theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        t = theta.float().requires_grad_(True)
        w, b = t[: d * k].view(d, k), t[d * k:]
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return float(loss.detach()), t.grad.double()

    with torch.enable_grad():
        theta = lbfgs(loss_and_grad, torch.zeros(d * k + k, dtype=torch.float64), iterations=iterations).float()
    return PixelReader(theta[: d * k].view(d, k).clone(), theta[d * k:].clone(), classes)


def recon_agreement(model: VAE, x_test: torch.Tensor, reader: PixelReader, batch_size: int = 1000) -> float:
    """The fraction of held-out images that the pixel reader reads as the same class as their reconstruction
    (the decoded posterior mean): does the model give back the digit it was shown?"""
    from vae.explore import reconstruct

    same = 0
    for i in range(0, len(x_test), batch_size):
        x = x_test[i: i + batch_size]
        same += int((reader.predict(x) == reader.predict(reconstruct(model, x).x_hat)).sum())
    return same / max(1, len(x_test))


_READERS: dict[tuple[str, int, tuple[int, ...]], PixelReader] = {}


def data_reader(data) -> PixelReader:
    """The data set's pixel reader (pixel_classifier on its training split), fitted once per process."""
    key = (data.name, len(data.x_train), tuple(data.shape))
    if key not in _READERS:
        _READERS.clear()  # one data set at a time: a reader is D x K floats, but the app may see many data sets
        _READERS[key] = pixel_classifier(data.x_train, data.y_train)
    return _READERS[key]


def data_agreement(model: VAE, data) -> float | None:
    """recon_agreement on a data set's held-out split, with its pixel reader fitted once per process; None without
    labels or when the model's input is not the data set's image shape."""
    if data.y_train is None or data.y_test is None or tuple(data.shape) != tuple(model.cfg.input_shape):
        return None
    return recon_agreement(model, data.x_test, data_reader(data))
