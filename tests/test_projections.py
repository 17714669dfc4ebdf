"""vae/projections.py: the neighbour inverse of nonlinear maps (round-trip error bounds on held-out points),
t-SNE on a small set, attribute directions and their bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from vae.explore import fit_projection
from vae.projections import (BRUTE_FORCE_QUERIES, LinearMap, NeighbourMap, ProjectionError, class_counts, direction,
                             direction_name, fit_map, fit_map_arrays, relative_error, selection_mean, umap)


def manifold(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points on a curved 2-D sheet in 8-D (mu) and the sheet's own coordinates (a perfect 2-D map of them)."""
    rng = np.random.default_rng(seed)
    uv = rng.uniform(-2, 2, size=(n, 2))
    u, v = uv[:, 0], uv[:, 1]
    mu = np.stack([u, v, np.sin(2 * u), np.cos(2 * v), u * v / 2, np.sin(u + v), u**2 / 4, np.cos(u - v)], axis=1)
    return mu.astype(np.float32), uv.astype(np.float32)


def test_neighbour_inverse_round_trip_on_held_out_points_is_small_and_beats_pca():
    mu, uv = manifold(3000, seed=0)
    new_mu, _ = manifold(300, seed=1)  # held out: never seen by the map
    m = NeighbourMap(mu, uv, "tsne")
    err = m.roundtrip_error(new_mu)
    assert err < 0.05, err  # z -> map -> z stays within 5 % of the spread
    loo = m.roundtrip_error()  # each data point decoded from its own place, itself excluded
    assert loo < 0.05, loo
    pca = LinearMap(fit_projection(mu), mu)
    assert pca.roundtrip_error(new_mu) > 5 * err  # the sheet is curved: a plane loses most of it


def test_inverse_at_a_data_point_returns_its_mu_and_transform_of_its_mu_its_place():
    mu, uv = manifold(500, seed=2)
    m = NeighbourMap(mu, uv, "umap")
    assert np.allclose(m.inverse(uv[7]), mu[7], atol=1e-4)
    assert np.allclose(m.transform(mu[7]), uv[7], atol=1e-4)
    z = m.inverse(np.array([[0.3, -0.4], [10.0, 10.0]]))  # anywhere, even off the data: a blend of real mu
    assert z.shape == (2, 8) and np.isfinite(z).all()
    assert (z.min(axis=0) >= mu.min(axis=0) - 1e-6).all() and (z.max(axis=0) <= mu.max(axis=0) + 1e-6).all()


@pytest.mark.parametrize("space", ["map", "latent"])
def test_few_queries_by_brute_force_find_the_tree_s_neighbours(space):
    """The server's few queries skip scipy's tree: same neighbours, same distances, nearest first."""
    mu, uv = manifold(2000, seed=3)
    m = NeighbourMap(mu + 50.0, uv * 1000.0 + 1e4, "tsne")  # far from the origin: the expansion loses digits there
    pts = m.xy if space == "map" else m.mu
    rng = np.random.default_rng(4)
    q = np.concatenate([pts[:5].astype(np.float64), pts[5:20] + rng.normal(0, pts.std() / 30, (15, pts.shape[1]))])
    assert len(q) <= BRUTE_FORCE_QUERIES
    dist, idx = m._query(space, q, 8)
    t_dist, t_idx = m._tree(space).query(q, k=list(range(1, 9)))
    assert np.array_equal(idx, t_idx) and np.allclose(dist, t_dist, rtol=1e-9, atol=1e-9)
    assert (np.diff(dist, axis=1) >= 0).all() and np.array_equal(idx[:5, 0], np.arange(5))


def test_a_map_fitted_in_the_worker_brings_its_round_trip_error():
    mu, uv = manifold(300, seed=5)
    xy, seconds, fitted, loo = fit_map_arrays(mu, "tsne")
    assert fitted == 300 and xy.shape == (300, 2)
    m = NeighbourMap(mu, xy, "tsne", loo_error=loo)
    assert m.roundtrip_error() == loo == NeighbourMap(mu, xy, "tsne").roundtrip_error()


def test_linear_map_round_trip_is_exact_for_points_on_its_plane():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(400, 2)) @ rng.normal(size=(2, 6)) + 1.5  # rank-2 data: the PCA plane holds all of it
    m = LinearMap(fit_projection(mu), mu)
    assert m.roundtrip_error() < 1e-9
    assert relative_error(mu, mu + 0, mu) == 0


def test_tsne_map_separates_clusters_and_decodes_back_near_them():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6, size=(4, 10))
    mu = (centres[np.repeat(np.arange(4), 40)] + rng.normal(size=(160, 10))).astype(np.float32)
    m = fit_map(mu, "tsne")
    assert m.xy.shape == (160, 2) and np.isfinite(m.xy).all() and m.seconds > 0
    loo = m.roundtrip_error()
    assert loo < LinearMap(fit_projection(mu), mu).roundtrip_error()  # better than the PCA plane on clusters
    assert loo < 0.5


def test_large_sets_are_fitted_on_a_sample_and_the_rest_placed_by_neighbours(monkeypatch):
    import vae.projections as P

    monkeypatch.setitem(P.FITS, "tsne", lambda mu, seed=0: mu[:, :2].copy())  # a stand-in map: the first two coords
    mu, _ = manifold(1000, seed=3)
    m = fit_map(mu, "tsne", max_fit=200)
    assert m.fitted_on == 200 and m.xy.shape == (1000, 2)
    assert np.abs(m.xy - mu[:, :2]).mean() < 0.2  # the placed points land where the map would have put them


@pytest.mark.parametrize("bad", [np.zeros((0, 4)), np.full((50, 4), np.nan)])
def test_maps_of_bad_points_raise_a_projection_error(bad):
    with pytest.raises(ProjectionError):
        fit_map(bad, "tsne")


def test_umap_with_too_few_points_for_its_neighbours_says_so():
    with pytest.raises(ProjectionError, match="at least 17 points"):
        umap(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(ProjectionError, match="unknown map"):
        fit_map(np.zeros((20, 3)), "isomap")


def test_direction_is_mean_b_minus_mean_a():
    mu = np.array([[0, 0], [2, 0], [0, 4], [2, 4]], dtype=np.float32)
    d = direction(mu, [0, 1], [2, 3])
    assert np.allclose(d.vector, [0, 4]) and np.allclose(d.mean_a, [1, 0]) and d.length == pytest.approx(4)
    assert (d.n_a, d.n_b) == (2, 2)


@pytest.mark.parametrize("a,b,match", [([], [1, 2], "selection A has 0"), ([0], [1, 2], "selection A has 1"),
                                       ([0, 1], [3], "selection B has 1"), ([0, 1], [1, 0], "length zero")])
def test_bad_directions_say_what_is_wrong(a, b, match):
    mu = np.arange(8, dtype=np.float32).reshape(4, 2)
    with pytest.raises(ProjectionError, match=match):
        direction(mu, a, b)


def test_selection_mean_checks_its_ids():
    mu = np.ones((3, 2))
    with pytest.raises(ProjectionError, match="empty"):
        selection_mean(mu, [])
    with pytest.raises(ProjectionError, match="not on this map"):
        selection_mean(mu, [0, 3])


def test_class_counts_and_direction_names():
    labels = np.array([4, 4, 9, 9, 9, 1])
    assert class_counts(labels, [0, 1, 2, 5]) == {"4": 2, "9": 1, "1": 1}
    assert class_counts(None, [0]) == {}
    assert direction_name(labels, [0, 1, 5], [2, 3]) == "4 → 9"
    assert direction_name(None, [0], [1]) == "A → B"
    assert direction_name(labels, [0], [2], class_names=[str(i) for i in range(4)] + ["four"] + [""] * 4 + ["nine"]) \
        == "four → nine"
