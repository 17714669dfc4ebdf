"""What the model learned: active units, linear probes (full and few-label), MIG, and the IWAE estimate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vae.metrics as metrics
from vae.metrics import active_units, iwae_estimate, linear_probe, mig


def test_active_units_counts_dimensions_whose_mean_varies():
    rng = np.random.default_rng(0)
    stds = np.array([1.0, 0.5, 0.2, 0.05, 0.0, 0.001])  # variances 1, 0.25, 0.04 | 0.0025, 0, 1e-6
    mu = rng.normal(size=(5000, 6)) * stds + rng.normal(size=6) * 3  # offsets do not make a unit active
    n, var = active_units(torch.from_numpy(mu).float())
    assert n == 3
    np.testing.assert_allclose(var, stds**2, rtol=0.1, atol=1e-4)
    assert active_units(mu, threshold=1e-3)[0] == 4


def test_linear_probe_on_a_trained_model(trained_digits, digits):
    out = linear_probe(trained_digits, digits.x_train, digits.y_train, digits.x_test, digits.y_test)
    assert 0 <= out["latent"] <= 1 and 0 <= out["pixels"] <= 1
    assert out["n_labels"] == len(digits.y_train)
    assert out["latent"] > 0.5  # chance is 0.1; 8 latent means of a tiny VAE reach ~0.8


@pytest.mark.parametrize("labels_per_class", [1, 5])
def test_few_label_probe_uses_exactly_that_many_labels_per_class(monkeypatch, trained_digits, digits, labels_per_class):
    seen = []
    real = metrics._logistic_accuracy

    def spy(f_train, y_train, f_test, y_test):
        seen.append((f_train.shape, np.bincount(y_train, minlength=10), len(y_test)))
        return real(f_train, y_train, f_test, y_test)

    monkeypatch.setattr(metrics, "_logistic_accuracy", spy)
    out = linear_probe(trained_digits, digits.x_train, digits.y_train, digits.x_test, digits.y_test,
                       labels_per_class=labels_per_class, seed=0)
    assert out["n_labels"] == labels_per_class * 10
    assert [s[0] for s in seen] == [(labels_per_class * 10, 8), (labels_per_class * 10, 64)]  # latent, then pixels
    for _, counts, n_test in seen:
        assert counts.tolist() == [labels_per_class] * 10 and n_test == len(digits.y_test)
    assert 0 <= out["latent"] <= 1 and 0 <= out["pixels"] <= 1


def test_few_label_probe_is_seeded(trained_digits, digits):
    args = (trained_digits, digits.x_train, digits.y_train, digits.x_test, digits.y_test)
    assert linear_probe(*args, labels_per_class=3, seed=1) == linear_probe(*args, labels_per_class=3, seed=1)


def _factors(n: int = 6000, sizes=(3, 6, 8), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, k, n) for k in sizes], axis=1)


def test_mig_is_one_when_each_latent_is_one_factor():
    factors = _factors()
    mu = factors + np.random.default_rng(1).normal(scale=0.01, size=factors.shape)  # jitter within a bin
    out = mig(mu, factors)
    assert out["mig"] > 0.95, out["per_factor"]
    assert len(out["per_factor"]) == 3 and np.asarray(out["mutual_information"]).shape == (3, 3)


def test_mig_is_zero_for_noise():
    factors = _factors()
    out = mig(np.random.default_rng(2).normal(size=(6000, 5)), factors)
    assert out["mig"] < 0.05, out["per_factor"]


def test_mig_is_zero_for_a_factor_spread_over_two_latents():
    factors = _factors()
    mu = np.concatenate([factors[:, :1], factors[:, :1] + 0.01, factors[:, 1:]], axis=1).astype(float)
    out = mig(mu, factors)
    assert out["per_factor"][0] < 0.05  # two equally informative latents: no gap
    assert min(out["per_factor"][1:]) > 0.95


def test_mig_on_scrambled_axes_is_still_high():
    """MIG looks for the best latent per factor, wherever it is: permuting latents changes nothing."""
    factors = _factors()
    mu = factors[:, [2, 0, 1]].astype(float)
    assert mig(mu, factors)["mig"] == pytest.approx(mig(factors.astype(float), factors)["mig"])


def test_iwae_estimate_reports_progress_and_is_seeded(trained_digits, digits):
    x = digits.x_test[:30]
    progress = []
    a = iwae_estimate(trained_digits, x, k=20, batch_size=10, seed=3, progress=progress.append)
    b = iwae_estimate(trained_digits, x, k=20, batch_size=10, seed=3)
    assert a == b and 0 < a < 100
    assert progress == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_pixel_reader_reads_digits_like_sklearn(digits):
    from sklearn.linear_model import LogisticRegression

    from vae.metrics import pixel_classifier

    reader = pixel_classifier(digits.x_train, digits.y_train)
    ours = reader.score(digits.x_test, digits.y_test)
    ref = LogisticRegression(max_iter=2000).fit(digits.x_train.flatten(1).numpy(), digits.y_train.numpy())
    assert ours > 0.85  # 8x8 digits: a linear reader gets ~0.95
    assert abs(ours - ref.score(digits.x_test.flatten(1).numpy(), digits.y_test.numpy())) < 0.05


class _Echo(torch.nn.Module):
    """A 'VAE' whose decoded mean is its input (perfect reconstruction), or a constant image."""

    def __init__(self, cfg, constant: bool):
        super().__init__()
        self.cfg, self.constant, self.p = cfg, constant, torch.nn.Parameter(torch.zeros(1))

    def encode(self, x):
        return x.flatten(1), torch.zeros_like(x.flatten(1))

    def decode_logits(self, z):
        x = torch.full_like(z, 0.3) if self.constant else z
        return torch.logit(x.clamp(1e-4, 1 - 1e-4)).reshape(len(z), *self.cfg.input_shape)


def test_recon_agreement_is_one_for_a_perfect_reconstruction_and_chance_for_a_constant(digits):
    from vae.config import ModelConfig
    from vae.metrics import pixel_classifier, recon_agreement

    reader = pixel_classifier(digits.x_train, digits.y_train)
    cfg = ModelConfig(input_shape=(1, 8, 8), latent_dim=64)
    assert recon_agreement(_Echo(cfg, False), digits.x_test, reader, batch_size=100) == pytest.approx(1.0, abs=0.005)
    share = recon_agreement(_Echo(cfg, True), digits.x_test, reader)
    c = reader.predict(torch.full((1, 1, 8, 8), 0.3))[0]  # every reconstruction is read as this one class
    assert share == pytest.approx(float((reader.predict(digits.x_test) == c).mean())) and share < 0.3


def test_recon_agreement_of_a_trained_model(trained_digits, tiny_model, digits):
    from vae.metrics import data_agreement

    trained, untrained = data_agreement(trained_digits, digits), data_agreement(tiny_model((1, 8, 8)).eval(), digits)
    assert 0 <= untrained < 0.3 < trained <= 1
