"""vae.applications: corruption, completion, error figures, interpolation, generation, export, evaluation, comparison."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

import vae
from vae import applications as apps


@pytest.fixture
def batch(digits) -> torch.Tensor:
    return digits.x_test[:40]


# ---------------------------------------------------------------- error figures


def test_mse_and_psnr_closed_forms():
    a, b = torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.1)
    assert apps.mse(a, b) == pytest.approx(0.01)
    assert apps.psnr(a, b) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert apps.psnr(a, a) == math.inf
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, 0] = True
    c = a.clone()
    c[0, 0, 0] = 0.5
    assert apps.mse(c, a, mask) == pytest.approx(0.25)  # only the masked pixel counts
    assert apps.mse(c, a) == pytest.approx(0.25 / 16)
    assert apps.mse(c, a, torch.zeros_like(mask)) == 0.0  # nothing selected


def test_mse_mask_broadcasts_over_channels():
    a, b = torch.zeros(2, 3, 2, 2), torch.ones(2, 3, 2, 2)
    known = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    known[:, :, 0] = True
    b[:, :, 1] = 0.0
    assert apps.mse(a, b, known) == pytest.approx(1.0)
    assert apps.mse(a, b, ~known) == pytest.approx(0.0)


def test_grey_fraction():
    x = torch.tensor([0.0, 0.05, 0.5, 0.95, 1.0, 0.3, 0.1, 0.9])
    assert apps.grey_fraction(x) == pytest.approx(2 / 8)  # 0.5 and 0.3; the bounds themselves are not grey


# ---------------------------------------------------------------- corruption


@pytest.mark.parametrize("kind", apps.CORRUPTIONS)
def test_corrupt_keeps_shape_range_and_is_seeded(kind, batch):
    c1 = apps.corrupt(batch, kind, 0.4, seed=3)
    c2 = apps.corrupt(batch, kind, 0.4, seed=3)
    assert c1.x.shape == batch.shape and c1.x.min() >= 0 and c1.x.max() <= 1
    assert torch.equal(c1.x, c2.x)
    assert (c1.known is None) == (kind in apps.NOISES)
    assert not torch.equal(c1.x, batch)
    if kind != "half":  # a side mask does not depend on the seed
        assert not torch.equal(c1.x, apps.corrupt(batch, kind, 0.4, seed=4).x)


@pytest.mark.parametrize("kind", apps.CORRUPTIONS)
def test_strength_zero_changes_nothing(kind, batch):
    c = apps.corrupt(batch, kind, 0.0, seed=1)
    assert torch.equal(c.x, batch)
    if c.known is not None:
        assert c.known.all()


def test_corrupt_does_not_touch_the_global_rng(batch):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    apps.corrupt(batch, "pixels", 0.5, seed=9)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kind, strength", [("pixels", 0.3), ("box", 0.25), ("half", 0.5)])
def test_mask_hides_the_requested_share(kind, strength, digits):
    x = digits.x_test[:50]
    c = apps.corrupt(x, kind, strength, seed=0)
    hidden = (~c.known).float().mean().item()
    assert hidden == pytest.approx(strength, abs=0.03)
    assert torch.all(c.x[~c.known.expand_as(c.x)] == 0)  # hidden pixels hold the fill value
    assert torch.equal(c.x[c.known.expand_as(c.x)], x[c.known.expand_as(c.x)])


@pytest.mark.parametrize("side, region", [("bottom", (slice(4, 8), slice(None))), ("top", (slice(0, 4), slice(None))),
                                          ("left", (slice(None), slice(0, 4))), ("right", (slice(None), slice(4, 8)))])
def test_half_mask_hides_that_side(side, region):
    c = apps.corrupt(torch.ones(1, 8, 8), "half", 0.5, side=side)
    expected = torch.ones(8, 8, dtype=torch.bool)
    expected[region] = False
    assert torch.equal(c.known[0, 0], expected)


def test_salt_and_pepper_sets_pixels_to_black_or_white():
    x = torch.full((1, 1, 30, 30), 0.5)
    c = apps.corrupt(x, "salt_pepper", 0.4, seed=0)
    changed = c.x != 0.5
    assert set(c.x[changed].unique().tolist()) == {0.0, 1.0}
    assert changed.float().mean().item() == pytest.approx(0.4, abs=0.05)


@pytest.mark.parametrize("args, match", [(("blur", 0.5), "unknown corruption"), (("gaussian", 1.5), "strength"),
                                         (("gaussian", float("nan")), "strength"), (("box", -0.1), "strength"),
                                         (("gaussian", True), "strength")])
def test_corrupt_rejects_bad_settings(args, match, batch):
    with pytest.raises(ValueError, match=match):
        apps.corrupt(batch, *args)


def test_corrupt_rejects_bad_side_and_shape(batch):
    with pytest.raises(ValueError, match="side"):
        apps.corrupt(batch, "half", 0.5, side="middle")
    with pytest.raises(ValueError, match="expected images"):
        apps.corrupt(torch.zeros(8, 8), "gaussian", 0.1)


def test_mask_overlay_paints_hidden_pixels():
    x = torch.full((1, 4, 4), 0.5)
    known = torch.ones(1, 4, 4, dtype=torch.bool)
    known[0, 1, 2] = False
    rgb = apps.mask_overlay(x, known, tint=(255, 0, 0))
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[1, 2]) == (255, 0, 0)
    assert tuple(rgb[0, 0]) == (128, 128, 128)
    assert np.array_equal(apps.mask_overlay(x, None), np.full((4, 4, 3), 128, np.uint8))


# ---------------------------------------------------------------- completion and restoration


def test_completion_keeps_known_pixels_and_lowers_the_error(trained_digits, digits):
    x = digits.x_test[:60]
    c = apps.corrupt(x, "pixels", 0.3, seed=0)
    comp = apps.complete(trained_digits, c.x, c.known, iterations=8, x_true=x)
    assert comp.images.shape == (9, *x.shape)
    assert len(comp.error) == 9 and len(comp.change) == 8
    keep = c.known.expand_as(x)
    for step in comp.images:
        assert torch.equal(step[keep], c.x[keep])
    assert comp.error[0] == pytest.approx(apps.mse(c.x, x, ~c.known))
    assert comp.error[-1] < 0.6 * comp.error[0]  # the reconstruction is far closer than the black fill


def test_completion_with_nothing_hidden_is_a_fixed_point(trained_digits, batch):
    known = torch.ones(len(batch), 1, 8, 8, dtype=torch.bool)
    comp = apps.complete(trained_digits, batch, known, iterations=3, x_true=batch)
    assert comp.error == [0.0] * 4 and comp.change == [0.0] * 3
    assert torch.equal(comp.images[-1], batch)


def test_completion_without_truth_reports_no_error(trained_digits, batch):
    c = apps.corrupt(batch, "box", 0.3, seed=0)
    comp = apps.complete(trained_digits, c.x, c.known, iterations=2)
    assert comp.error == [] and len(comp.change) == 2


@pytest.mark.parametrize("iterations", [0, 1001, 2.5, True])
def test_completion_rejects_bad_iteration_counts(iterations, trained_digits, batch):
    c = apps.corrupt(batch, "box", 0.3)
    with pytest.raises(ValueError, match="iterations"):
        apps.complete(trained_digits, c.x, c.known, iterations)


@pytest.mark.parametrize("kind", apps.CORRUPTIONS)
def test_restore_reports_consistent_figures(kind, trained_digits, digits):
    x = digits.x_test[5]
    r = apps.restore(trained_digits, x, kind, 0.4, seed=2, iterations=4)
    assert r.original.shape == r.corrupted.shape == r.reconstruction.shape == x.shape
    assert torch.equal(r.original, x)
    f = r.figures
    assert f["mse_corrupted"] == pytest.approx(apps.mse(r.corrupted, x))
    assert f["mse_clean"] == pytest.approx(apps.mse(vae.reconstruct(trained_digits, x).x_hat, x))
    assert f["psnr_reconstruction"] == pytest.approx(10 * math.log10(1 / f["mse_reconstruction"]))
    if kind in apps.MASKS:
        assert r.completion is not None and len(r.completion.error) == 5
        assert f["mse_hidden_completed"] == r.completion.error[-1]
        assert f["mse_completed"] == pytest.approx(apps.mse(r.completion.images[-1, 0], x))
    else:
        assert r.completion is None and r.known is None


def test_restore_rejects_an_image_of_the_wrong_shape(trained_digits):
    with pytest.raises(ValueError, match="expects"):
        apps.restore(trained_digits, torch.zeros(1, 28, 28), "gaussian", 0.1)


# ---------------------------------------------------------------- interpolation


@pytest.mark.parametrize("method", ["lerp", "slerp"])
def test_interpolation_between_images_starts_and_ends_at_their_codes(method, trained_digits, digits):
    a, b = digits.x_test[0], digits.x_test[1]
    ip = apps.interpolate_endpoints(trained_digits, a, b, 7, method)
    mu, _ = vae.encode(trained_digits, torch.stack([a, b]))
    assert ip.z.shape == (7, 8) and ip.images.shape == (7, 1, 8, 8)
    assert torch.allclose(ip.z[0], mu[0], atol=1e-5) and torch.allclose(ip.z[-1], mu[1], atol=1e-5)
    assert torch.allclose(ip.images[0], vae.decode(trained_digits, mu[0])[0], atol=1e-6)
    assert ip.step_change.shape == (6,) and (ip.step_change >= 0).all()
    assert ip.endpoint_change == pytest.approx(float((ip.images[-1] - ip.images[0]).abs().mean()))
    assert np.allclose(ip.z_norm, ip.z.norm(dim=1).numpy())


def test_interpolation_accepts_latent_endpoints_and_mixes(trained_digits, digits):
    z0 = torch.zeros(8)
    ip = apps.interpolate_endpoints(trained_digits, z0, digits.x_test[0], 3)
    assert torch.equal(ip.z[0], z0)
    same = apps.interpolate_endpoints(trained_digits, z0, z0, 4)
    assert np.all(same.step_change == 0) and same.endpoint_change == 0


@pytest.mark.parametrize("a, steps, match", [(torch.zeros(5), 4, "needs 8 values"), (torch.zeros(1, 28, 28), 4, "image endpoint"),
                                             (torch.full((8,), float("nan")), 4, "NaN"), (torch.zeros(8), 1, "steps"),
                                             (torch.zeros(8), 201, "steps")])
def test_interpolation_rejects_bad_endpoints(a, steps, match, trained_digits):
    with pytest.raises(ValueError, match=match):
        apps.interpolate_endpoints(trained_digits, a, torch.zeros(8), steps)


# ---------------------------------------------------------------- generation


def test_nearest_training_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(37, 1, 5, 5, generator=g)
    queries = torch.cat([torch.rand(6, 1, 5, 5, generator=g), train[[11, 30]]])
    idx, dist = apps.nearest_training(queries, train, batch_size=8)  # several chunks
    d = np.linalg.norm(queries.flatten(1).numpy()[:, None] - train.flatten(1).numpy()[None], axis=2)
    assert np.array_equal(idx, d.argmin(1))
    assert np.allclose(dist, d.min(1), atol=1e-4)
    assert list(idx[-2:]) == [11, 30] and np.allclose(dist[-2:], 0, atol=1e-3)


def test_generate_is_seeded_and_finds_each_samples_neighbour(trained_digits, digits):
    g1 = apps.generate(trained_digits, digits, 6, 1.0, seed=5)
    g2 = apps.generate(trained_digits, digits, 6, 1.0, seed=5)
    assert torch.equal(g1.images, g2.images) and g1.images.shape == (6, 1, 8, 8)
    assert not torch.equal(g1.images, apps.generate(trained_digits, digits, 6, 1.0, seed=6).images)
    idx, dist = apps.nearest_training(g1.images, digits.x_train)
    assert np.array_equal(g1.nearest_index, idx) and np.allclose(g1.nearest_distance, dist)
    assert g1.reference_distance > 0 and 0 <= g1.grey_samples <= 1 and 0 <= g1.grey_data <= 1
    cold = apps.generate(trained_digits, digits, 3, 0.0, seed=1)  # T = 0: every sample is the decoded origin
    assert torch.allclose(cold.images[0], cold.images[2])


@pytest.mark.parametrize("n, temperature, match", [(0, 1.0, "number of samples"), (2000, 1.0, "number of samples"),
                                                   (4, -1.0, "temperature"), (4, float("inf"), "temperature")])
def test_generate_rejects_bad_settings(n, temperature, match, trained_digits, digits):
    with pytest.raises(ValueError, match=match):
        apps.generate(trained_digits, digits, n, temperature)


def test_generate_rejects_another_data_set(trained_digits, shapes):
    with pytest.raises(ValueError, match="expects"):
        apps.generate(trained_digits, shapes, 4)


# ---------------------------------------------------------------- export


def test_upscale_repeats_pixels():
    a = np.array([[0, 255], [10, 20]], np.uint8)
    big = apps.upscale(a, 3)
    assert big.shape == (6, 6) and big[2, 2] == 0 and big[0, 5] == 255 and big[5, 0] == 10
    assert apps.upscale(a, 1) is a


def test_strip_png_round_trips(digits):
    images = digits.x_test[:5]
    data = apps.strip_png(images, scale=3)
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG" and im.size == ((5 * 9 - 1) * 3, 8 * 3)
    a = np.asarray(im)
    assert np.array_equal(a[::3, ::3][:, :8], vae.data.to_uint8(images[0]))


@pytest.mark.parametrize("channels", [1, 3])
def test_gif_is_an_animation_that_loops(channels):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, channels, 6, 6, generator=g)
    im = Image.open(io.BytesIO(apps.gif_bytes(images, scale=2, frame_ms=80, bounce=True)))
    assert im.format == "GIF" and im.is_animated and im.n_frames == 6  # 4 forwards + 2 back
    assert im.size == (12, 12) and im.info.get("loop") == 0 and im.info.get("duration") == 80
    if channels == 1:
        im.seek(0)
        assert np.array_equal(np.asarray(im.convert("L"))[::2, ::2], vae.data.to_uint8(images[0]))
    once = Image.open(io.BytesIO(apps.gif_bytes(images, bounce=False)))
    assert once.n_frames == 4


# ---------------------------------------------------------------- evaluation and comparison


def test_summarize_adds_up(trained_digits, digits):
    s = apps.summarize(trained_digits, digits)
    assert s.n == len(digits.x_test)
    assert s.neg_elbo == pytest.approx(s.recon + s.kl, rel=1e-5)
    assert sum(s.kl_per_dim) == pytest.approx(s.kl, rel=1e-4)
    assert s.active == vae.active_units(vae.encode(trained_digits, digits.x_test)[0])[0]
    assert 0 < s.mse < 0.1 and s.mig is None
    assert apps.summarize(trained_digits, digits, limit=50).n == 50


def test_summarize_gives_mig_for_data_with_factors(tiny_model, shapes):
    s = apps.summarize(tiny_model((1, 28, 28)), shapes, limit=300)
    assert s.mig is not None and 0 <= s.mig["mig"] <= 1 and len(s.mig["per_factor"]) == len(shapes.factor_names)


def test_summarize_rejects_another_data_set(trained_digits, shapes):
    with pytest.raises(ValueError, match="expects"):
        apps.summarize(trained_digits, shapes)


def test_likelihood_bound_is_tighter_than_the_elbo(trained_digits, digits):
    seen = []
    r = apps.likelihood(trained_digits, digits, k=20, limit=60, progress=seen.append)
    assert r["n"] == 60 and r["k"] == 20
    assert r["iwae"] < r["neg_elbo"]
    assert seen and seen[-1] == 1.0
    with pytest.raises(ValueError, match="k must"):
        apps.likelihood(trained_digits, digits, k=0)


def test_probes_report_each_budget(trained_digits, digits):
    seen = []
    rows = apps.probes(trained_digits, digits, budgets=(5, 30), progress=seen.append)
    assert [r["labels_per_class"] for r in rows] == [5, 30]
    assert rows[0]["n_labels"] == 50 and rows[1]["n_labels"] == 300
    assert all(0 <= r[k] <= 1 for r in rows for k in ("latent", "pixels"))
    assert rows[1]["latent"] > 0.5  # ten classes: chance is 0.1
    assert seen == [0.5, 1.0]


def test_probes_need_labels(trained_digits, digits):
    unlabelled = vae.Dataset("none", digits.x_train, digits.x_test)
    with pytest.raises(ValueError, match="no labels"):
        apps.probes(trained_digits, unlabelled)


def test_comparing_a_model_with_itself_gives_equal_columns(trained_digits, digits):
    cmp = apps.compare(trained_digits, trained_digits, digits, n_show=4, iwae_k=5, limit=40)
    assert all(a == b for a, b in cmp.metrics.values())
    assert any(name.startswith("IWAE") for name in cmp.metrics)
    assert cmp.inputs.shape == (4, 1, 8, 8) and torch.equal(cmp.reconstructions[0], cmp.reconstructions[1])


def test_compare_shows_the_difference_between_two_models(trained_digits, tiny_model, digits):
    untrained = tiny_model((1, 8, 8))
    seen = []
    cmp = apps.compare(trained_digits, untrained, digits, progress=seen.append)
    (ra, rb) = cmp.metrics["reconstruction (nats)"]
    assert ra < rb  # training lowered the reconstruction term
    assert seen[-1] == 1.0
    assert cmp.summaries[0].neg_elbo == cmp.metrics["held-out −ELBO (nats)"][0]


def test_compare_rejects_models_of_another_shape(trained_digits, tiny_model, digits):
    with pytest.raises(ValueError, match="second model expects"):
        apps.compare(trained_digits, tiny_model((1, 28, 28)), digits)
