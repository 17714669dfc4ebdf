"""Looking into a model: shapes, seeded sampling, interpolation geometry, traversals, the 2-D grid and projections."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vae.explore import (decode, encode, fit_projection, interpolate, manifold_grid, nearest, posterior_samples,
                         reconstruct, sample, traversal)


def test_encode_decode_shapes(trained_digits, digits):
    mu, sigma = encode(trained_digits, digits.x_test[:25], batch_size=10)  # several batches
    assert mu.shape == sigma.shape == (25, 8) and (sigma > 0).all()
    again, _ = encode(trained_digits, digits.x_test[:25])
    assert torch.equal(mu, again)  # posterior means: no noise
    images = decode(trained_digits, mu, batch_size=7)
    assert images.shape == (25, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert decode(trained_digits, np.zeros(8)).shape == (1, 1, 8, 8)  # one vector, as NumPy
    empty_mu, empty_sigma = encode(trained_digits, digits.x_test[:0])
    assert empty_mu.shape == empty_sigma.shape == (0, 8)


def test_reconstruct_scores_each_input(trained_digits, digits):
    r = reconstruct(trained_digits, digits.x_test[:6])
    assert r.x_hat.shape == (6, 1, 8, 8) and r.mu.shape == r.sigma.shape == (6, 8)
    assert r.recon.shape == r.kl.shape == r.neg_elbo.shape == (6,)
    torch.testing.assert_close(r.neg_elbo, r.recon + r.kl)
    assert reconstruct(trained_digits, digits.x_test[0]).x_hat.shape == (1, 1, 8, 8)  # one image without a batch axis
    # a trained model reconstructs its data better than it reconstructs noise
    noise = reconstruct(trained_digits, torch.rand(6, 1, 8, 8))
    assert r.recon.mean() < noise.recon.mean()


def test_sample_is_seeded_and_leaves_the_global_rng_alone(trained_digits):
    state = torch.get_rng_state()
    z_a, x_a = sample(trained_digits, 5, seed=3)
    torch.manual_seed(12345)  # the global seed must not matter either
    z_b, x_b = sample(trained_digits, 5, seed=3)
    z_c, _ = sample(trained_digits, 5, seed=4)
    torch.manual_seed(0)
    assert torch.equal(z_a, z_b) and torch.equal(x_a, x_b) and not torch.equal(z_a, z_c)
    assert z_a.shape == (5, 8) and x_a.shape == (5, 1, 8, 8)
    torch.set_rng_state(state)
    sample(trained_digits, 5, seed=3)
    posterior_samples(trained_digits, torch.zeros(8), torch.ones(8), 4, seed=1)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("temperature", [0.0, 0.5, 2.0])
def test_sample_temperature_scales_z(trained_digits, temperature):
    z, _ = sample(trained_digits, 4, temperature=temperature, seed=1)
    z1, _ = sample(trained_digits, 4, temperature=1.0, seed=1)
    torch.testing.assert_close(z, z1 * temperature)


def test_posterior_samples_are_mu_plus_sigma_eps(trained_digits):
    mu, sigma = torch.arange(8.0), torch.full((8,), 0.5)
    z, images = posterior_samples(trained_digits, mu, sigma, 2000, seed=0)
    assert z.shape == (2000, 8) and images.shape == (2000, 1, 8, 8)
    torch.testing.assert_close(z.mean(0), mu, atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), sigma, atol=0.03, rtol=0)


def _pair(seed: int, dim: int = 8, equal_norms: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z0, z1 = torch.randn(dim, generator=g), torch.randn(dim, generator=g) * 3
    if equal_norms:
        z1 = z1 / z1.norm() * z0.norm()
    return z0, z1


@pytest.mark.parametrize("steps", [2, 3, 10])
def test_lerp_keeps_endpoints_exactly_and_is_evenly_spaced(steps):
    z0, z1 = _pair(0)
    path = interpolate(z0, z1, steps, "lerp")
    assert path.shape == (steps, 8)
    assert torch.equal(path[0], z0) and torch.equal(path[-1], z1)
    gaps = path.diff(dim=0).norm(dim=1)
    torch.testing.assert_close(gaps, torch.full_like(gaps, float((z1 - z0).norm()) / (steps - 1)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slerp_keeps_endpoints_and_follows_the_great_circle(seed):
    z0, z1 = _pair(seed, equal_norms=True)
    path = interpolate(z0, z1, 9, "slerp")
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    # on the circle: constant norm, in the plane of z0 and z1, at evenly spaced angles
    torch.testing.assert_close(path.norm(dim=1), torch.full((9,), float(z0.norm())))
    basis = torch.linalg.qr(torch.stack([z0, z1], 1)).Q  # (8, 2)
    torch.testing.assert_close(path @ basis @ basis.T, path, atol=1e-5, rtol=0)
    unit = path / path.norm(dim=1, keepdim=True)
    angles = torch.arccos((unit[:-1] * unit[1:]).sum(1).clamp(-1, 1))
    total = torch.arccos((unit[0] * unit[-1]).sum().clamp(-1, 1))
    torch.testing.assert_close(angles, torch.full((8,), float(total) / 8), atol=1e-4, rtol=0)


def test_slerp_of_unequal_norms_keeps_endpoints():
    z0, z1 = _pair(3)
    path = interpolate(z0, z1, 5, "slerp")
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)


@pytest.mark.parametrize("case", ["parallel", "anti-parallel", "nearly-anti-parallel", "zero"])
def test_slerp_degenerate_cases_stay_finite_and_bounded(case):
    z0 = torch.randn(16, generator=torch.Generator().manual_seed(4))
    z1 = {"parallel": 2 * z0, "anti-parallel": -z0, "zero": torch.zeros(16),
          "nearly-anti-parallel": -z0 + 1e-4 * torch.randn(16, generator=torch.Generator().manual_seed(5))}[case]
    path = interpolate(z0, z1, 9, "slerp")
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1, atol=1e-4, rtol=0)
    # sin(omega) ~ 0 used to divide rounding noise by ~1e-7: norms 1000x the endpoints'
    assert path.norm(dim=1).max() <= max(z0.norm(), z1.norm()) * 1.001


@pytest.mark.parametrize("steps, method", [(1, "lerp"), (5, "cubic")])
def test_interpolate_refuses_bad_arguments(steps, method):
    with pytest.raises(ValueError):
        interpolate(torch.zeros(3), torch.ones(3), steps, method)


def test_traversal_varies_one_dimension_per_row(trained_digits):
    z = torch.zeros(8)
    images, values = traversal(trained_digits, z, dims=[1, 5], lo=-2, hi=2, steps=5)
    assert images.shape == (2, 5, 1, 8, 8)
    assert torch.equal(values, torch.linspace(-2, 2, 5))
    for row, d in enumerate([1, 5]):
        expected_z = torch.zeros(5, 8)
        expected_z[:, d] = values
        torch.testing.assert_close(images[row], decode(trained_digits, expected_z))
    all_dims, _ = traversal(trained_digits, z, steps=3)
    assert all_dims.shape == (8, 3, 1, 8, 8)


def test_manifold_grid_needs_two_latent_dimensions(trained_digits, tiny_model):
    with pytest.raises(ValueError, match="2-D"):
        manifold_grid(trained_digits)
    model = tiny_model(latent_dim=2)
    images, z = manifold_grid(model, n=5)
    assert images.shape == (5, 5, 1, 8, 8) and z.shape == (5, 5, 2)
    assert (z[0, :, 1] > z[-1, :, 1]).all()  # top row = high z2
    assert (z[:, 0, 0] < z[:, -1, 0]).all()  # left column = low z1
    torch.testing.assert_close(z[2, 2], torch.zeros(2))  # the middle of an odd grid is the prior's mode
    torch.testing.assert_close(images[1, 3], decode(model, z[1, 3])[0])


def test_projection_round_trips_points_in_the_pca_plane():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(200, 6)) * np.array([5, 3, 0.5, 0.2, 0.1, 0.1])
    proj = fit_projection(mu)
    assert proj.method == "pca" and proj.components.shape == (2, 6)
    np.testing.assert_allclose(proj.components @ proj.components.T, np.eye(2), atol=1e-12)  # orthonormal rows
    assert proj.explained[0] >= proj.explained[1] > 0 and proj.explained.sum() <= 1
    p = rng.normal(size=(10, 2))
    z_plane = proj.inverse(p)  # points on the plane through the mean
    np.testing.assert_allclose(proj.inverse(proj.transform(z_plane)), z_plane, atol=1e-10)
    np.testing.assert_allclose(proj.transform(z_plane), p, atol=1e-10)
    # the first axis is the data's widest direction (the first coordinate here)
    assert abs(proj.components[0, 0]) > 0.99


def test_projection_is_the_identity_for_two_latent_dimensions():
    mu = np.random.default_rng(1).normal(size=(50, 2))
    proj = fit_projection(mu)
    assert proj.method == "identity"
    np.testing.assert_array_equal(proj.transform(mu), mu)
    np.testing.assert_array_equal(proj.inverse(mu), mu)


def test_nearest_excludes_the_query_itself():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [0.5, 0.0]])
    assert nearest(points, points[0], k=3).tolist() == [4, 1, 2]
    assert nearest(points, points[0], k=3, exclude_self=False).tolist() == [0, 4, 1]
    assert nearest(points, [0.9, 0.0], k=2).tolist() == [1, 4]  # a query not in the set excludes nothing
    assert len(nearest(points, points[3], k=10)) == 4
