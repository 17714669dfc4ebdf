"""Model and training configurations: plain dataclasses, validated on creation, JSON round-trippable."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

ARCH_NAMES = ("mlp", "conv")  # the keys of vae.model.ARCHS: the MLP of the article, and a small conv net
LIKELIHOODS = ("bernoulli", "gaussian")  # BCE with logits / Gaussian NLL with a fixed std (MSE up to scale)
SCHEDULES = ("onecycle", "constant")  # learning-rate schedules

# Bounds checked before anything is allocated: a hostile checkpoint cannot ask for a 10^12-parameter model.
MAX_LATENT = 512
MAX_HIDDEN = 4096
MAX_SIDE = 128


class ConfigError(ValueError):
    """A configuration value is out of range or of the wrong type."""


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def _check_float(name: str, value: Any, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "mlp"  # one of ARCH_NAMES
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W)
    latent_dim: int = 16
    hidden: int = 512  # the article's width; conv uses it for the dense layer
    likelihood: str = "bernoulli"
    obs_std: float = 0.1  # std of the Gaussian likelihood; unused for Bernoulli

    def __post_init__(self) -> None:
        if self.arch not in ARCH_NAMES:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCH_NAMES)}")
        shape = tuple(self.input_shape)
        if len(shape) != 3:
            raise ConfigError(f"input_shape must be (C, H, W), got {self.input_shape!r}")
        object.__setattr__(self, "input_shape", shape)
        c, h, w = shape
        if type(c) is not int or c not in (1, 3):
            raise ConfigError(f"input channels must be 1 or 3, got {c!r}")
        _check_int("image height", h, 4, MAX_SIDE)
        _check_int("image width", w, 4, MAX_SIDE)
        _check_int("latent_dim", self.latent_dim, 1, MAX_LATENT)
        _check_int("hidden", self.hidden, 8, MAX_HIDDEN)
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {self.likelihood!r}")
        _check_float("obs_std", self.obs_std, 1e-3, 10.0)
        if self.arch == "conv" and (h % 4 or w % 4):
            raise ConfigError(f"the conv architecture needs height and width divisible by 4, got {h}x{w}")

    @property
    def input_dim(self) -> int:
        c, h, w = self.input_shape
        return c * h * w

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return cls(**_known_fields(cls, d))


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist5k"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 5e-3  # the peak lr of the one-cycle schedule; 1e-2 is faster still for the MLP on mnist5k
    beta: float = 1.0  # weight of the KL term; 1 is the article's ELBO, >1 is beta-VAE
    warmup_epochs: float = 0.0  # KL weight grows linearly 0 -> beta over this many epochs
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = leave PyTorch's choice
    device: str = "auto"  # "auto" picks CUDA when present
    eval_every: int = 1  # held-out evaluation every N epochs (the last epoch is always evaluated)
    schedule: str = "onecycle"  # "onecycle": lr warms up over 10% of the steps then anneals; "constant"
    init_output_bias: bool = True  # start the decoder's output at the mean image (set False when resuming)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept in the checkpoint

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str):
            raise ConfigError(f"dataset must be a name, got {self.dataset!r}")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a JSON object, got {type(self.extra).__name__}")
        _check_int("epochs", self.epochs, 1, 100_000)
        _check_int("batch_size", self.batch_size, 1, 65_536)
        _check_float("lr", self.lr, 1e-7, 1.0)
        _check_float("beta", self.beta, 0.0, 1000.0)
        _check_float("warmup_epochs", self.warmup_epochs, 0.0, 100_000.0)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("threads", self.threads, 0, 1024)
        _check_int("eval_every", self.eval_every, 1, 100_000)
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not isinstance(self.init_output_bias, bool):
            raise ConfigError(f"init_output_bias must be true or false, got {self.init_output_bias!r}")
        if not isinstance(self.device, str) or (self.device not in ("auto", "cpu") and not self.device.startswith("cuda")):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return cls(**_known_fields(cls, d))


def _known_fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    return dict(d)
