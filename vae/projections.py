"""Nonlinear 2-D maps of the latent space (t-SNE, UMAP), a way back from any place on them to z, and attribute
directions from two groups of points. numpy, scipy and PyTorch here, openTSNE and umap-learn for the fits; never
imports streamlit.

The way back is a neighbour interpolation both ways: a map position p -> z is the inverse-distance-weighted mean of
the mu of the k points nearest to p on the map, and a latent vector z -> p the weighted mean of the map positions of
its k nearest neighbours in latent space (how new images are placed on a map that has no formula). Measured against
a small network fitted to invert the map (bench/map_latency.py, t-SNE of mnist5k, 16-D): decoding the place of a data
point gives back its mu with a median error of 0.52 of the spread (neighbours, leave-one-out) against 0.57 (the
network, on points it was fitted to); for held-out points placed on the map the network is a little better (0.62
against 0.66). The neighbours were kept: exact at the data, nothing to fit, and the browser runs the same rule.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from vae.explore import Projection

BRUTE_FORCE_QUERIES = 64  # up to this many queries go without a tree (see NeighbourMap._query)
NEIGHBOURS = 8  # k of the neighbour interpolation: k = 4, 8, 16 differ by under 0.02 in round-trip error (bench/map_latency.py)
MAX_FIT_POINTS = 10_000  # like TensorBoard's projector: larger sets are fitted on a sample, the rest placed by neighbours
METHODS = {"tsne": "t-SNE", "umap": "UMAP"}


class ProjectionError(ValueError):
    """A map cannot be made from these points (too few, not finite)."""


def _check(mu: np.ndarray, min_points: int, what: str) -> np.ndarray:
    mu = np.asarray(mu, dtype=np.float32)
    if mu.ndim != 2 or len(mu) < min_points:
        raise ProjectionError(f"{what} needs at least {min_points} points; there are {len(mu) if mu.ndim == 2 else 0}")
    if not np.isfinite(mu).all():
        raise ProjectionError("the latent means contain NaN or infinite values")
    return mu


def _neighbours(mu: np.ndarray, k: int, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (indices, distances; self excluded) by chunked brute force in PyTorch: 0.5 s for
    5,000 points on one core, where openTSNE's own search (Annoy) took 3.6 s and scikit-learn's brute force 1.2 s."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(mu, dtype=np.float32))
    idx, dist = [], []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i: i + chunk], x)
        d[torch.arange(len(d)), torch.arange(i, i + len(d))] = float("inf")
        v, j = torch.topk(d, k, largest=False)
        idx.append(j)
        dist.append(v)
    return torch.cat(idx).numpy(), torch.cat(dist).numpy().astype(np.float64)


# The optimisation schedule, chosen by measurement on the 5,000 mnist5k latents of the shipped 16-D model (issue 10;
# one core, helpers paused): openTSNE's defaults (250 early-exaggeration + 500 iterations, FFT grid of >= 50
# intervals of 1 unit) took 47 s, most of it in the late iterations, whose FFT grid grows with the embedding. 125 + 200
# iterations, the second phase at exaggeration 1.5 (Boehm, Berens & Kobak 2022: mild exaggeration separates clusters
# sooner), on a grid of >= 20 intervals of 2 units: 2.6 s (neighbours included; the first call in a process adds
# imports), with 10-NN class agreement on the map 0.947 against 0.946 for the defaults (0.952 in the 16-D space).
# 250 iterations at 1.5 gave 4.5 s and 0.948; exaggeration 2 gave 0.945; openTSNE's Annoy neighbours alone 3.6 s.
TSNE_SCHEDULE = {"early_iter": 125, "early_exaggeration": 12.0, "iter": 200, "exaggeration": 1.5,
                 "ints_in_interval": 2, "min_num_intervals": 20}


def tsne(mu: np.ndarray, seed: int = 0, n_jobs: int = 1) -> np.ndarray:
    """t-SNE (N, 2) of latent means: openTSNE's FFT gradients (faster here than scikit-learn's Barnes-Hut) on exact
    neighbours, with TSNE_SCHEDULE."""
    from openTSNE import TSNEEmbedding, affinity, initialization
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    mu = _check(mu, 10, "t-SNE")
    perplexity = float(min(30.0, max(2.0, (len(mu) - 1) / 3)))
    k = min(len(mu) - 1, int(3 * perplexity))
    idx, dist = _neighbours(mu, k)
    P = affinity.PerplexityBasedNN(knn_index=PrecomputedNeighbors(idx, dist), perplexity=perplexity)
    s = TSNE_SCHEDULE
    emb = TSNEEmbedding(initialization.pca(mu, random_state=seed), P, negative_gradient_method="fft", n_jobs=n_jobs,
                        random_state=seed, ints_in_interval=s["ints_in_interval"],
                        min_num_intervals=s["min_num_intervals"])
    emb = emb.optimize(n_iter=s["early_iter"], exaggeration=s["early_exaggeration"], momentum=0.5)
    emb = emb.optimize(n_iter=s["iter"], exaggeration=s["exaggeration"], momentum=0.8)
    return np.asarray(emb, dtype=np.float32)


UMAP_EPOCHS = 200  # umap-learn's default for < 10,000 points is 500: 8.5 s here, 200 gives 3.0-3.5 s (issue 10)


def umap(mu: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """UMAP (N, 2) of latent means (umap-learn) on exact neighbours (`_neighbours`, instead of its NN-descent), with
    UMAP_EPOCHS. Needs more points than neighbours. The first call in a process also compiles umap-learn's numba code
    (about 10 s here, once per worker process)."""
    mu = _check(mu, n_neighbors + 2, f"UMAP with {n_neighbors} neighbours")
    import umap as umap_learn

    idx, dist = _neighbours(mu, n_neighbors - 1)
    # umap-learn's neighbour lists start with the point itself, at distance 0
    idx = np.concatenate([np.arange(len(mu))[:, None], idx], axis=1)
    dist = np.concatenate([np.zeros((len(mu), 1)), dist], axis=1).astype(np.float32)
    fit = umap_learn.UMAP(n_neighbors=n_neighbors, random_state=seed, n_jobs=1, n_epochs=UMAP_EPOCHS,
                          precomputed_knn=(idx, dist, None))
    with warnings.catch_warnings():  # "transform will be unavailable": new points are placed by neighbours anyway
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        return np.asarray(fit.fit_transform(mu), dtype=np.float32)


FITS = {"tsne": tsne, "umap": umap}


@dataclass
class NeighbourMap:
    """A fitted 2-D map with a way back: mu (N, L) and its map positions xy (N, 2), interpolated by neighbours."""

    mu: np.ndarray  # (N, L) float32
    xy: np.ndarray  # (N, 2) float32
    method: str  # "tsne" | "umap"
    k: int = NEIGHBOURS
    seconds: float = 0.0  # time to fit
    fitted_on: int = 0  # points the nonlinear method saw (the rest were placed by neighbours)
    loo_error: float | None = None  # roundtrip_error() on the data points, once measured (where the map was fitted)
    _trees: dict = field(default_factory=dict, repr=False)
    _dense: dict = field(default_factory=dict, repr=False)  # space -> (points as float64, their squared norms)

    def _points(self, space: str) -> np.ndarray:
        return self.xy if space == "map" else self.mu

    def _tree(self, space: str):
        from scipy.spatial import cKDTree

        if space not in self._trees:
            self._trees[space] = cKDTree(self._points(space))
        return self._trees[space]

    def _query(self, space: str, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest points of `space` to each query: distances and indices, both (M, k), nearest first.

        A few queries (a click, the current image, a selection's mean: what the app's server asks) are answered by
        brute force, |p|^2 - 2 p.q + |q|^2 over every point (~1 ms per query at 100,000 points): the server then never
        imports scipy.spatial (~28 MB resident that stays). Many queries (a leave-one-out error, placing the points
        left out of a fit: the worker's jobs) go through scipy's k-d tree."""
        if len(q) > BRUTE_FORCE_QUERIES:
            dist, idx = self._tree(space).query(q, k=list(range(1, k + 1)))  # a list of k: (M, k) even for k = 1
            return dist, idx
        if space not in self._dense:  # once per map: a click does not copy every point
            pts = self._points(space).astype(np.float64)
            self._dense[space] = pts, np.einsum("nd,nd->n", pts, pts)
        pts, sq_norms = self._dense[space]
        d2 = sq_norms[None, :] - 2.0 * (q @ pts.T) + np.einsum("md,md->m", q, q)[:, None]  # (M, N)
        if k < d2.shape[1]:
            part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(d2.shape[1]), (len(q), 1))
        # exact distances of the k found, sorted (the expansion above can lose digits for points far from the origin)
        dist = np.sqrt(((pts[part] - q[:, None, :]) ** 2).sum(-1))
        order = np.argsort(dist, axis=1, kind="stable")
        return np.take_along_axis(dist, order, 1), np.take_along_axis(part, order, 1)

    @staticmethod
    def _blend(values: np.ndarray, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        w = 1.0 / (dist + 1e-9) ** 2  # inverse squared distance: a query on a point returns (almost) that point
        w /= w.sum(axis=1, keepdims=True)
        return np.einsum("mk,mkd->md", w, values[idx].astype(np.float64))  # only the neighbours widened

    def inverse(self, p: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """Map positions (M, 2) -> z (M, L): the weighted mean mu of the k nearest points on the map."""
        p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        k = min(self.k + int(exclude_self), len(self.xy))
        dist, idx = self._query("map", p, k)
        if exclude_self:
            dist, idx = dist[:, 1:], idx[:, 1:]
        return self._blend(self.mu, dist, idx)

    def transform(self, z: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """Latent vectors (M, L) -> map positions (M, 2): the weighted mean place of their k nearest latent means."""
        z = np.asarray(z, dtype=np.float64).reshape(-1, self.mu.shape[1])
        k = min(self.k + int(exclude_self), len(self.mu))
        dist, idx = self._query("latent", z, k)
        if exclude_self:
            dist, idx = dist[:, 1:], idx[:, 1:]
        return self._blend(self.xy, dist, idx)

    def roundtrip_error(self, mu: np.ndarray | None = None) -> float:
        """Median relative error of z -> map -> z: ||z_hat - z|| / RMS distance of the points from their mean.

        With mu None, each data point is taken out of its own neighbourhoods (leave-one-out): an honest figure for a
        place on the map that is not exactly a point. Otherwise mu are new points (held out from the fit).
        """
        loo = mu is None
        if loo and self.loo_error is not None:
            return self.loo_error
        z = self.mu if loo else np.asarray(mu, dtype=np.float64)
        p = self.xy if loo else self.transform(z)
        err = relative_error(z, self.inverse(p, exclude_self=loo), self.mu)
        if loo:
            self.loo_error = err  # the map is shared and its points fixed: measured once
        return err


@dataclass
class LinearMap:
    """PCA (or the identity for 2-D latents) with the same interface as NeighbourMap: its inverse is exact on the plane."""

    projection: Projection
    mu: np.ndarray  # (N, L)
    xy: np.ndarray = field(init=False)
    _error: float | None = field(default=None, init=False, repr=False)  # roundtrip_error() on the data points

    def __post_init__(self) -> None:
        self.xy = self.projection.transform(self.mu).astype(np.float32)

    @property
    def method(self) -> str:
        return self.projection.method

    def inverse(self, p: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        return self.projection.inverse(np.asarray(p, dtype=np.float64).reshape(-1, 2))

    def transform(self, z: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        return self.projection.transform(np.asarray(z, dtype=np.float64).reshape(-1, self.mu.shape[1]))

    def roundtrip_error(self, mu: np.ndarray | None = None) -> float:
        """Median relative error of z -> plane -> z: what the directions off the plane carry."""
        if mu is None and self._error is not None:
            return self._error
        z = self.mu if mu is None else np.asarray(mu, dtype=np.float64)
        err = relative_error(z, self.inverse(self.transform(z)), self.mu)
        if mu is None:
            self._error = err  # the map is shared and its points fixed: measured once
        return err


def relative_error(z: np.ndarray, z_hat: np.ndarray, reference: np.ndarray) -> float:
    """Median ||z_hat - z|| over the RMS distance of `reference` from its mean (0: exact; ~1.4: a random point)."""
    ref = np.asarray(reference, dtype=np.float64)
    spread = float(np.sqrt(((ref - ref.mean(axis=0)) ** 2).sum(axis=1).mean())) or 1.0
    return float(np.median(np.linalg.norm(np.asarray(z_hat, np.float64) - np.asarray(z, np.float64), axis=1)) / spread)


def fit_map(mu: np.ndarray, method: str, seed: int = 0, max_fit: int = MAX_FIT_POINTS) -> NeighbourMap:
    """A nonlinear map of mu: fitted on up to `max_fit` points (a seeded sample), the others placed by neighbours."""
    if method not in FITS:
        raise ProjectionError(f"unknown map {method!r}; use one of {', '.join(FITS)}")
    mu = _check(mu, 3, METHODS[method])
    t0 = time.perf_counter()
    n = len(mu)
    if n > max_fit:
        keep = np.sort(np.random.default_rng(seed).choice(n, max_fit, replace=False))
        sub = NeighbourMap(mu[keep], FITS[method](mu[keep], seed=seed), method)
        rest = np.setdiff1d(np.arange(n), keep)
        xy = np.empty((n, 2), np.float32)
        xy[keep] = sub.xy
        xy[rest] = sub.transform(mu[rest])
    else:
        xy = FITS[method](mu, seed=seed)
    return NeighbourMap(mu, xy, method, seconds=time.perf_counter() - t0, fitted_on=min(n, max_fit))


def fit_map_arrays(mu: np.ndarray, method: str, seed: int = 0) -> tuple[np.ndarray, float, int, float]:
    """fit_map for a worker process: only arrays and numbers travel back (xy (N, 2), seconds, points fitted, and the
    leave-one-out round-trip error, measured here with the k-d trees that the server then never needs)."""
    m = fit_map(mu, method, seed)
    return m.xy, m.seconds, m.fitted_on, m.roundtrip_error()


def exit_with_parent(parent: int) -> None:
    """A worker process's initializer: exit when `parent` is gone, instead of finishing a map nobody will read."""
    import os
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="vae-map-watch", daemon=True).start()


def map_worker_init(parent: int, nice: int = 0) -> None:
    """The map worker's initializer: exit with `parent`, and run `nice` steps below its CPU priority (where the OS has
    niceness), so that a fit yields the cores to the server and the browser while someone is using them."""
    import os

    exit_with_parent(parent)
    if nice and hasattr(os, "nice"):
        os.nice(nice)


# ------------------------------------------------------------------------------------------- selections, directions
@dataclass(frozen=True)
class Direction:
    """An attribute direction: mean mu of group B minus mean mu of group A (latent-space cartography)."""

    vector: np.ndarray  # (L,)
    mean_a: np.ndarray  # (L,)
    mean_b: np.ndarray  # (L,)
    n_a: int
    n_b: int

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.vector))


def selection_mean(mu: np.ndarray, ids: np.ndarray | list[int]) -> np.ndarray:
    """Mean latent of a selection; ProjectionError for an empty one or ids out of range."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) == 0:
        raise ProjectionError("the selection is empty")
    if ids.min() < 0 or ids.max() >= len(mu):
        raise ProjectionError("the selection names points that are not on this map")
    return np.asarray(mu, dtype=np.float64)[ids].mean(axis=0)


def direction(mu: np.ndarray, ids_a: np.ndarray | list[int], ids_b: np.ndarray | list[int], min_points: int = 2,
              min_length: float = 1e-6) -> Direction:
    """mean mu[B] - mean mu[A]; ProjectionError when a group has fewer than min_points or the two means coincide."""
    for name, ids in (("A", ids_a), ("B", ids_b)):
        if len(ids) < min_points:
            raise ProjectionError(f"selection {name} has {len(ids)} point(s); a direction needs at least {min_points} in each")
    a, b = selection_mean(mu, ids_a), selection_mean(mu, ids_b)
    d = Direction(b - a, a, b, len(ids_a), len(ids_b))
    if d.length < min_length:
        raise ProjectionError("A and B have the same mean latent: the direction has length zero")
    return d


def class_counts(labels: np.ndarray | None, ids: np.ndarray | list[int], class_names: list[str] | None = None) -> dict[str, int]:
    """How many points of each class a selection holds, most frequent first."""
    if labels is None:
        return {}
    vals, counts = np.unique(np.asarray(labels)[np.asarray(ids, dtype=np.int64)], return_counts=True)
    name = lambda c: class_names[int(c)] if class_names and int(c) < len(class_names) else str(int(c))  # noqa: E731
    return {name(v): int(c) for v, c in sorted(zip(vals, counts), key=lambda vc: -vc[1])}


def direction_name(labels: np.ndarray | None, ids_a, ids_b, class_names: list[str] | None = None) -> str:
    """"4 → 9": the most frequent class of each group, or "A → B" without labels."""
    ca, cb = class_counts(labels, ids_a, class_names), class_counts(labels, ids_b, class_names)
    return f"{next(iter(ca), 'A')} → {next(iter(cb), 'B')}"
