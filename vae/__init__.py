"""A plain-PyTorch variational autoencoder: the model, its ELBO, data, training, checkpoints and exploration.

Never imports streamlit: the app in app.py and pages/ calls into this package.
"""
from vae.checkpoint import (Checkpoint, CheckpointError, dataset_fits, list_checkpoints, load_checkpoint,
                            save_checkpoint)
from vae.config import ConfigError, ModelConfig, TrainConfig
from vae.data import DATASETS, DataError, Dataset, load_dataset, preprocess_image
from vae.explore import (decode, encode, fit_projection, interpolate, manifold_grid, nearest, posterior_samples,
                         reconstruct, sample, traversal)
from vae.losses import elbo_terms, iwae_nll, kl_divergence, kl_per_dim, reconstruction_nll
from vae.metrics import active_units, iwae_estimate, linear_probe, mig
from vae.model import ARCHS, VAE, build_model
from vae.training import FitResult, StopFlag, evaluate, fit

__all__ = [
    "ARCHS", "Checkpoint", "CheckpointError", "ConfigError", "DATASETS", "DataError", "Dataset", "FitResult",
    "ModelConfig", "StopFlag", "TrainConfig", "VAE", "active_units", "build_model", "dataset_fits", "decode", "elbo_terms", "encode",
    "evaluate", "fit", "fit_projection", "interpolate", "iwae_estimate", "iwae_nll", "kl_divergence", "kl_per_dim",
    "linear_probe", "list_checkpoints", "load_checkpoint", "load_dataset", "manifold_grid", "mig", "nearest",
    "posterior_samples", "preprocess_image", "reconstruct", "reconstruction_nll", "sample", "save_checkpoint",
    "traversal",
]
