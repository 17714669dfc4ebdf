"""The model registry, shapes, the reparameterization trick, the log-variance clamp, and config validation."""
from __future__ import annotations

import json

import pytest
import torch

from vae.config import ARCH_NAMES, MAX_HIDDEN, MAX_LATENT, ConfigError, ModelConfig, TrainConfig
from vae.losses import elbo_terms, kl_divergence
from vae.model import ARCHS, LOGVAR_MAX, LOGVAR_MIN, VAE, build_model, count_parameters


def test_the_config_knows_every_architecture_by_name():
    assert tuple(ARCHS) == ARCH_NAMES  # config.py validates arch without importing model.py
    with pytest.raises(ConfigError, match="unknown architecture"):
        ModelConfig(arch="resnet")


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("input_shape", [(1, 8, 8), (3, 12, 16)])
def test_every_architecture_has_the_right_shapes(arch, input_shape):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, input_shape=input_shape, latent_dim=3, hidden=16))
    assert isinstance(model, VAE) and count_parameters(model) > 0
    x = torch.rand(5, *input_shape)
    logits, mu, logvar, z = model(x)
    assert logits.shape == (5, *input_shape)
    assert mu.shape == logvar.shape == z.shape == (5, 3)
    image = model.decode(z)
    assert image.shape == (5, *input_shape) and 0 <= image.min() and image.max() <= 1


def test_mlp_is_the_articles_network():
    model = build_model(ModelConfig())  # 784 -> 512 -> 2L, L -> 512 -> 784
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 512), (512, 32), (16, 512), (512, 784)]


def test_reparameterization_carries_gradients_to_mu_and_logvar():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g).requires_grad_()
    logvar = torch.randn(4, 3, generator=g).requires_grad_()
    z = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    z.sum().backward()
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z, (mu + torch.exp(0.5 * logvar) * eps).detach())
    # dz/dmu = 1 and dz/dlogvar = sigma * eps / 2: both reach the encoder
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)
    assert (mu.grad != 0).all() and (logvar.grad != 0).all()


def test_the_elbo_trains_both_halves_of_the_encoder(tiny_model, digits):
    model = tiny_model()
    elbo_terms(model, digits.x_train[:32], generator=torch.Generator().manual_seed(0))["loss"].mean().backward()
    head = model.encoder[-1]  # Linear(hidden, 2L): rows [:L] give mu, rows [L:] give logvar
    L = model.cfg.latent_dim
    assert head.weight.grad[:L].abs().sum() > 0
    assert head.weight.grad[L:].abs().sum() > 0


def test_reparameterized_samples_have_the_posterior_moments():
    mu, logvar = torch.tensor([[2.0, -1.0, 0.0]]), torch.tensor([[0.0, -2.0, 1.0]])
    z = VAE.reparameterize(mu.expand(200_000, 3), logvar.expand(200_000, 3), torch.Generator().manual_seed(2))
    torch.testing.assert_close(z.mean(0), mu[0], atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.exp(0.5 * logvar[0]), atol=0.02, rtol=0)


@pytest.mark.parametrize("bias, expected", [(1e4, LOGVAR_MAX), (-1e4, LOGVAR_MIN)])
def test_logvar_is_clamped(tiny_model, bias, expected):
    model = tiny_model()
    L = model.cfg.latent_dim
    with torch.no_grad():
        model.encoder[-1].bias[L:] = bias  # the logvar half
    mu, logvar = model.encode(torch.rand(3, 1, 8, 8))
    assert torch.equal(logvar, torch.full_like(logvar, expected))
    assert torch.isfinite(kl_divergence(mu, logvar)).all()
    assert torch.isfinite(model.reparameterize(mu, logvar)).all()


def test_reparameterization_is_seeded_by_its_generator(tiny_model):
    model = tiny_model()
    x = torch.rand(4, 1, 8, 8)
    a = model(x, torch.Generator().manual_seed(3))[3]
    b = model(x, torch.Generator().manual_seed(3))[3]
    c = model(x, torch.Generator().manual_seed(4))[3]
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("kwargs", [
    {"arch": "resnet"},
    {"input_shape": (2, 8, 8)},
    {"input_shape": (1.0, 8, 8)},
    {"input_shape": (1, 8)},
    {"input_shape": (1, 2, 8)},
    {"input_shape": (1, 8, 10**6)},
    {"latent_dim": 0},
    {"latent_dim": MAX_LATENT + 1},
    {"latent_dim": 10**9},
    {"latent_dim": 2.0},
    {"latent_dim": True},
    {"hidden": 4},
    {"hidden": MAX_HIDDEN + 1},
    {"likelihood": "poisson"},
    {"obs_std": 0.0},
    {"obs_std": float("nan")},
    {"obs_std": 10**400},
    {"arch": "conv", "input_shape": (1, 10, 10)},
], ids=repr)
def test_model_config_refuses_bad_values(kwargs):
    with pytest.raises(ConfigError):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"epochs": 0},
    {"batch_size": 1.5},
    {"lr": 0.0},
    {"lr": 1e6},
    {"lr": float("nan")},
    {"lr": float("inf")},
    {"lr": 10**400},
    {"beta": -1.0},
    {"warmup_epochs": -1},
    {"seed": -1},
    {"threads": -1},
    {"device": "tpu"},
    {"device": 5},
], ids=repr)
def test_train_config_refuses_bad_values(kwargs):
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("cfg", [
    ModelConfig(),
    ModelConfig(arch="conv", input_shape=(3, 32, 32), latent_dim=2, hidden=64, likelihood="gaussian", obs_std=0.2),
    TrainConfig(),
    TrainConfig(dataset="shapes", epochs=3, beta=4.0, warmup_epochs=1.5, extra={"note": "x"}),
], ids=lambda c: type(c).__name__)
def test_configs_round_trip_through_json(cfg):
    again = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize("cls", [ModelConfig, TrainConfig])
def test_unknown_config_fields_are_refused(cls):
    with pytest.raises(ConfigError, match="unknown"):
        cls.from_dict({"nonsense": 1})
    with pytest.raises(ConfigError):
        cls.from_dict(["not", "a", "dict"])
