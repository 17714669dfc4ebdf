"""The ELBO's terms against torch.distributions as the oracle, and the IWAE bound's two defining properties."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence as torch_kl

from vae.losses import elbo_terms, iwae_nll, kl_divergence, kl_per_dim, log_normal, reconstruction_nll


def _gaussian_params(seed: int, shape: tuple[int, ...], scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    logvar = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    return mu, logvar


@pytest.mark.parametrize("seed, shape, scale", [(0, (64, 8), 1.0), (1, (5, 2), 3.0), (2, (1, 32), 0.1)])
def test_kl_matches_torch_distributions(seed, shape, scale):
    mu, logvar = _gaussian_params(seed, shape, scale)
    expected = torch_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))  # (B, L)
    torch.testing.assert_close(kl_per_dim(mu, logvar), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(kl_divergence(mu, logvar), expected.sum(-1), rtol=1e-10, atol=1e-10)


def test_kl_gradients_match_torch_distributions():
    mu, logvar = _gaussian_params(3, (16, 4), 1.0)
    grads = []
    for kl_fn in (lambda m, lv: kl_divergence(m, lv), lambda m, lv: torch_kl(Normal(m, torch.exp(0.5 * lv)), Normal(0.0, 1.0)).sum(-1)):
        m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        kl_fn(m, lv).sum().backward()
        grads.append((m.grad, lv.grad))
    torch.testing.assert_close(grads[0], grads[1])


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(3, 5)
    assert torch.equal(kl_divergence(zeros, zeros), torch.zeros(3))
    mu, logvar = _gaussian_params(4, (100, 5), 2.0)
    assert (kl_divergence(mu, logvar) > 0).all()


@pytest.mark.parametrize("shape", [(7, 1, 8, 8), (3, 3, 4, 4)])
@pytest.mark.parametrize("obs_std", [0.05, 0.1, 1.0])
def test_gaussian_nll_matches_normal_log_prob(shape, obs_std):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    expected = -Normal(torch.sigmoid(logits), obs_std).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nll(logits, x, "gaussian", obs_std), expected)


@pytest.mark.parametrize("shape", [(7, 1, 8, 8), (3, 3, 4, 4)])
def test_bernoulli_nll_matches_bernoulli_log_prob(shape):
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 5
    x = (torch.rand(shape, generator=g, dtype=torch.float64) > 0.5).double()  # binary pixels
    expected = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nll(logits, x, "bernoulli"), expected)


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="likelihood"):
        reconstruction_nll(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), "poisson")


def test_log_normal_matches_normal_log_prob():
    mu, logvar = _gaussian_params(7, (6, 3), 1.0)
    z = torch.randn(6, 3, dtype=torch.float64)
    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(log_normal(z, mu, logvar), expected)
    torch.testing.assert_close(log_normal(z), Normal(0.0, 1.0).log_prob(z).sum(-1))


@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_elbo_terms_are_recon_plus_kl(tiny_model, digits, beta):
    model = tiny_model()
    x = digits.x_test[:16]
    terms = elbo_terms(model, x, beta, torch.Generator().manual_seed(0))
    # the same draw of eps, by hand
    logits, mu, logvar, _ = model(x, torch.Generator().manual_seed(0))
    recon = reconstruction_nll(logits, x, "bernoulli")
    kl = kl_divergence(mu, logvar)
    torch.testing.assert_close(terms["recon"], recon)
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(terms["kl_dims"].sum(-1), kl)
    torch.testing.assert_close(terms["neg_elbo"], recon + kl)
    torch.testing.assert_close(terms["loss"], recon + beta * kl)


def test_iwae_with_one_sample_is_the_elbo_in_expectation(trained_digits, digits):
    """E[iwae_nll(k=1)] = -ELBO. Both are averaged over 297 images x 40 seeds; the tolerance is 4 standard errors
    of the difference (about 0.1 nat here), against an ELBO of ~25 nats and a k=1 -> k=100 gap of ~0.5 nat."""
    x = digits.x_test
    iwae, elbo = [], []
    for seed in range(40):
        iwae.append(iwae_nll(trained_digits, x, k=1, generator=torch.Generator().manual_seed(seed)))
        with torch.no_grad():
            elbo.append(elbo_terms(trained_digits, x, generator=torch.Generator().manual_seed(1000 + seed))["neg_elbo"])
    iwae, elbo = torch.cat(iwae).double(), torch.cat(elbo).double()
    se = math.sqrt(iwae.var() / len(iwae) + elbo.var() / len(elbo))
    assert abs(float(iwae.mean() - elbo.mean())) < 4 * se, (float(iwae.mean()), float(elbo.mean()), se)


def test_iwae_bound_tightens_with_more_samples(trained_digits, digits):
    """Averaged over 10 seeds: the k=10 -> k=100 gap (~0.04 nat) is ~7 standard errors wide."""
    x = digits.x_test
    means = {}
    for k in (1, 10, 100):
        per_seed = [iwae_nll(trained_digits, x, k=k, generator=torch.Generator().manual_seed(s)).mean() for s in range(10)]
        means[k] = float(torch.stack(per_seed).mean())
    assert means[1] > means[10] > means[100], means
    assert means[100] > 0  # -log p(x) of continuous-valued pixels under a Bernoulli is still positive


def test_iwae_is_seeded_and_refuses_k_below_one(trained_digits, digits):
    x = digits.x_test[:20]
    a = iwae_nll(trained_digits, x, k=5, generator=torch.Generator().manual_seed(1))
    b = iwae_nll(trained_digits, x, k=5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (20,) and torch.equal(a, b)
    with pytest.raises(ValueError):
        iwae_nll(trained_digits, x, k=0)
