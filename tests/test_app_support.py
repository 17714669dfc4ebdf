"""Checkpoint names (vae.checkpoint), collapsed dimensions (vae.metrics), posterior ellipses, click grids and map
positions (vae.explore), image analysis (vae.reconstruction), and ui.training_job."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import vae
from ui.training_job import TrainingJob, preview_indices
from vae.checkpoint import SHIPPED_CHECKPOINTS, CheckpointError, checkpoint_target
from vae.explore import Projection, click_grid, decode_map_position, posterior_ellipse
from vae.metrics import collapsed_dims
from vae.reconstruction import analyse_image, reparameterization_example, uses_digit_style


# ---------------------------------------------------------------- checkpoint names


@pytest.mark.parametrize("name, stem", [("my model", "my model"), ("run-3_b.v2", "run-3_b.v2"),
                                        ("  padded  ", "padded"), ("z16.safetensors", "z16"), ("Модель", "Модель")])
def test_checkpoint_target_accepts_plain_names(tmp_path, name, stem):
    target = checkpoint_target(tmp_path, name)
    assert target.path == tmp_path / f"{stem}.safetensors"
    assert not target.exists and not target.shipped


@pytest.mark.parametrize("name, why", [("", "give the checkpoint a name"), ("   ", "give"), ("../evil", "path separators"),
                                       ("a/b", "path separators"), ("a\\b", "path separators"), (".hidden", "starting"),
                                       ("x" * 81, "at most 80"), ("bad*name", "letters, digits"), ("dot.", "letters"),
                                       ("nul\x00byte", "path separators")])
def test_checkpoint_target_rejects_unsafe_names(tmp_path, name, why):
    with pytest.raises(CheckpointError, match=why):
        checkpoint_target(tmp_path, name)


def test_checkpoint_target_flags_existing_and_shipped_files(tmp_path):
    (tmp_path / "mine.safetensors").write_bytes(b"x")
    (tmp_path / f"{SHIPPED_CHECKPOINTS[0]}.safetensors").write_bytes(b"x")
    mine = checkpoint_target(tmp_path, "mine")
    assert mine.exists and not mine.shipped
    shipped = checkpoint_target(tmp_path, SHIPPED_CHECKPOINTS[0])
    assert shipped.exists and shipped.shipped


def test_collapsed_dims_uses_the_threshold():
    assert collapsed_dims([2.0, 0.005, 0.01, 0.0]) == [1, 3]
    assert collapsed_dims([0.5, 0.2], threshold=0.3) == [1]


# ---------------------------------------------------------------- the map


def test_posterior_ellipse_on_raw_axes_has_radii_two_sigma():
    proj = vae.fit_projection(np.random.default_rng(0).normal(size=(50, 2)))  # identity for 2-D latents
    e = posterior_ellipse(np.array([1.0, -2.0]), np.array([0.5, 0.1]), proj, n_std=2.0, n=400)
    assert np.allclose(e.mean(axis=0), [1.0, -2.0], atol=1e-2)
    assert np.allclose(e[:, 0].max() - 1.0, 1.0, atol=1e-3) and np.allclose(e[:, 1].max() + 2.0, 0.2, atol=1e-3)


def test_posterior_ellipse_matches_the_projected_covariance():
    """Under a rotated 3-D -> 2-D projection every ellipse point p satisfies (p - c)^T (W S W^T)^-1 (p - c) = n^2."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    proj = Projection(mean=np.array([0.3, -0.1, 0.2]), components=q[:2], explained=np.array([0.5, 0.3]))
    mu, sigma = np.array([1.0, 2.0, -1.0]), np.array([0.3, 0.8, 0.5])
    e = posterior_ellipse(mu, sigma, proj, n_std=2.0)
    cov = q[:2] @ np.diag(sigma**2) @ q[:2].T
    d = e - proj.transform(mu[None])[0]
    assert np.allclose(np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d), 4.0)
    # ... and the same covariance as Monte-Carlo samples of q(z|x) pushed through the projection
    z = mu + sigma * rng.normal(size=(200_000, 3))
    assert np.allclose(np.cov(proj.transform(z).T), cov, atol=5e-3)


def test_click_grid_covers_the_points_with_a_margin():
    xy = np.array([[0.0, 0.0], [2.0, 1.0], [1.0, -1.0]])
    g = click_grid(xy, n=10, margin=0.1)
    assert g.shape == (100, 2)
    assert g[:, 0].min() < 0 and g[:, 0].max() > 2 and g[:, 1].min() < -1 and g[:, 1].max() > 1


def test_decode_map_position_decodes_the_inverse_projection(trained_digits, digits):
    mu, _ = vae.encode(trained_digits, digits.x_test)
    proj = vae.fit_projection(mu)  # PCA: 8 -> 2
    z, image = decode_map_position(trained_digits, proj, (0.5, -0.25))
    assert np.allclose(proj.transform(z[None])[0], [0.5, -0.25], atol=1e-5)  # z lies on the map's plane
    assert torch.allclose(image, vae.decode(trained_digits, torch.as_tensor(z, dtype=torch.float32))[0])


@pytest.mark.parametrize("shape, dataset, expected", [((1, 28, 28), "mnist5k", True), ((1, 8, 8), "digits", True),
                                                      ((1, 28, 28), "folder:/x", True), ((1, 28, 28), "shapes", False),
                                                      ((1, 28, 28), "fashion-mnist", False), ((3, 32, 32), "cifar10", False),
                                                      ((1, 16, 16), "folder:/x", False)])
def test_uses_digit_style(shape, dataset, expected):
    assert uses_digit_style(shape, dataset) is expected


# ---------------------------------------------------------------- one image, analysed


def stroke_png(size=(60, 80)) -> bytes:
    a = np.full((size[1], size[0]), 255, np.uint8)
    a[10:-10, size[0] // 2 - 4: size[0] // 2 + 4] = 0
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_analyse_image_scores_and_samples_the_posterior(trained_digits):
    a = analyse_image(trained_digits, stroke_png(), digit_style=True, n_samples=5, seed=3)
    assert [cap for cap, _ in a.pre.steps][0] == "uploaded" and a.pre.x.shape == (1, 8, 8)
    rec = vae.reconstruct(trained_digits, a.pre.x[None])
    assert torch.allclose(a.mu, rec.mu[0]) and torch.allclose(a.x_hat, rec.x_hat[0])
    assert a.neg_elbo == pytest.approx(a.recon + a.kl, rel=1e-5) and a.kl > 0
    # z = mu + sigma * eps, with the eps of a local generator seeded 3
    eps = torch.randn(5, trained_digits.cfg.latent_dim, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a.z_samples, a.mu + a.sigma * eps, atol=1e-6)
    assert torch.allclose(a.x_samples, vae.decode(trained_digits, a.z_samples))


@pytest.mark.parametrize("data, match", [(b"not an image", "not an image"), (b"", "not an image")])
def test_analyse_image_rejects_bad_files(trained_digits, data, match):
    with pytest.raises(vae.DataError, match=match):
        analyse_image(trained_digits, data, digit_style=True)


def test_analyse_image_rejects_a_blank_page(trained_digits):
    buf = io.BytesIO()
    Image.new("L", (40, 40), 255).save(buf, format="PNG")
    with pytest.raises(vae.DataError, match="blank"):
        analyse_image(trained_digits, buf.getvalue(), digit_style=True)


def test_reparameterization_example_is_mu_plus_sigma_eps(trained_digits, digits):
    ex = reparameterization_example(trained_digits, digits.x_test[0], seed=5)
    assert torch.allclose(ex["z"], ex["mu"] + ex["sigma"] * ex["eps"])
    assert torch.allclose(ex["eps"], torch.randn(ex["mu"].shape, generator=torch.Generator().manual_seed(5)))
    assert torch.allclose(ex["x_hat"], vae.decode(trained_digits, ex["z"])[0])


# ---------------------------------------------------------------- the background training job


def tiny_job(digits, **train) -> TrainingJob:
    mc = vae.ModelConfig(input_shape=digits.shape, latent_dim=3, hidden=32)
    tc = vae.TrainConfig(**{"dataset": "digits", "epochs": 2, "batch_size": 128, "threads": 1, "device": "cpu", **train})
    return TrainingJob(mc, tc, digits)


def test_training_job_reports_progress_and_yields_a_checkpoint(digits, tmp_path):
    job = tiny_job(digits).start()
    assert job.join(120)
    p = job.progress()
    assert p.status == "finished" and p.done and p.epoch == 2 and p.fraction == 1.0
    assert [h["epoch"] for h in p.history] == [1, 2] and all("test_neg_elbo" in h for h in p.history)
    n_prev = len(preview_indices(digits))
    assert p.preview.dtype == np.uint8 and p.preview.shape == (2 * 8 + 1, n_prev * 9 - 1)  # inputs over reconstructions
    assert p.map_xy.shape == (len(digits.x_test), 2) and p.map_axes == ("PC 1", "PC 2")
    assert len(p.kl_per_dim) == 3
    ck = job.checkpoint()
    assert ck.metrics["status"] == "finished" and len(ck.history) == 2
    path = vae.save_checkpoint(tmp_path / "job.safetensors", ck.model, ck.train_config, ck.dataset, ck.history, ck.metrics)
    loaded = vae.load_checkpoint(path)
    for k, v in ck.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)


def test_preview_indices_take_one_image_per_class(digits):
    idx = preview_indices(digits)
    assert sorted(digits.y_test[idx].tolist()) == list(range(10))


def test_training_job_stop_keeps_the_weights_so_far(digits):
    job = tiny_job(digits, epochs=500).start()
    while job.progress().epoch < 1 and job.running:
        job.join(0.05)
    job.stop()
    assert job.join(60)
    p = job.progress()
    assert p.status == "stopped" and "weights so far are kept" in p.message and 1 <= p.epoch < 500
    ck = job.checkpoint()
    assert ck is not None and ck.metrics["status"] == "stopped" and len(ck.history) == p.epoch


def test_training_job_nan_keeps_the_last_good_weights(digits, monkeypatch):
    """The loss turns NaN in epoch 2: the run ends with a clear message and epoch 1's weights."""
    import vae.training

    real, calls = vae.training.elbo_terms, {"n": 0}

    def poisoned(model, x, *args, **kwargs):
        t = real(model, x, *args, **kwargs)
        calls["n"] += model.training  # count training steps only, not evaluations
        if model.training and calls["n"] > 4:  # digits: 1500 images / batch 128 = 12 steps per epoch
            t["loss"] = t["loss"] * float("nan")
        return t

    monkeypatch.setattr(vae.training, "elbo_terms", poisoned)
    job = tiny_job(digits, epochs=3, batch_size=500).start()  # 3 steps per epoch: NaN at epoch 2's 2nd step
    assert job.join(60)
    p = job.progress()
    assert p.status == "nan" and "last good weights were kept" in p.message and p.epoch == 1
    ck = job.checkpoint()
    assert ck is not None and all(torch.isfinite(v).all() for v in ck.model.state_dict().values())


def test_training_job_failure_is_a_message_not_a_crash(digits):
    mc = vae.ModelConfig(input_shape=(1, 28, 28), latent_dim=2, hidden=16)  # the wrong image size for digits
    job = TrainingJob(mc, vae.TrainConfig(dataset="digits", epochs=1, threads=1, device="cpu"), digits).start()
    assert job.join(60)
    p = job.progress()
    assert p.status == "error" and p.message.startswith("training failed:")
    assert job.checkpoint() is None
