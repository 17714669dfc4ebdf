"""M2 (Kingma et al. 2014, section 3.1.2): its bounds against explicit loops, gradients, labels, training, checkpoints."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vae.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vae.config import ModelConfig
from vae.semi import (M2, LabelError, build_m2, check_labels, choose_labelled, evaluate_m2, iwae_nll_m2, labelled_bound,
                      m2_loss, shift, unlabelled_bound, affine)


def tiny_m2(arch: str = "mlp", shape=(1, 8, 8), k: int = 10, seed: int = 0, classifier: str = "arch") -> M2:
    torch.manual_seed(seed)
    # eval mode: the classifier's dropout off, so that two calls see the same q(y|x)
    return build_m2(ModelConfig(arch=arch, input_shape=shape, latent_dim=4, hidden=32), k, classifier).eval()


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_unlabelled_bound_is_the_labelled_one_averaged_under_q_plus_entropy(arch):
    model = tiny_m2(arch)
    x = torch.rand(5, 1, 8, 8)
    eps = torch.randn(5, 10, 4)
    u = unlabelled_bound(model, x, eps=eps)
    q = F.softmax(model.classify_logits(x), dim=-1)  # (B, K)
    expected = torch.zeros(5)
    for y in range(10):  # eq. (7) written out: sum_y q(y|x) L(x, y) ...
        ly = labelled_bound(model, x, torch.full((5,), y), eps=eps[:, y])["neg_elbo"]
        expected += q[:, y] * ly
    expected -= -(q * q.log()).sum(dim=-1)  # ... - H(q(y|x))
    torch.testing.assert_close(u["neg_elbo"], expected, rtol=1e-5, atol=1e-4)
    assert torch.all(u["entropy"] > 0) and torch.all(u["entropy"] <= math.log(10) + 1e-5)


def test_labelled_bound_is_recon_plus_kl_plus_log_k():
    model = tiny_m2()
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([0, 4, 9])
    eps = torch.randn(3, 4)
    t = labelled_bound(model, x, y, eps=eps)
    mu, logvar = model.encode(x, y)
    z = mu + (0.5 * logvar).exp() * eps
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    recon = F.binary_cross_entropy_with_logits(model.decode_logits(z, y), x, reduction="none").flatten(1).sum(1)
    torch.testing.assert_close(t["neg_elbo"], recon + kl + math.log(10))


def test_gradients_reach_the_classifier_through_the_unlabelled_term_alone():
    model = tiny_m2()
    unlabelled_bound(model, torch.rand(6, 1, 8, 8))["loss"].mean().backward()
    for name, p in model.classifier.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_the_loss_is_eq_9_and_alpha_weights_the_cross_entropy():
    model = tiny_m2()
    xu, xl, yl = torch.rand(4, 1, 8, 8), torch.rand(3, 1, 8, 8), torch.tensor([1, 2, 3])
    eu, el = torch.randn(4, 10, 4), torch.randn(3, 4)
    a = m2_loss(model, xu, xl, yl, alpha=0.0, eps_unl=eu, eps_lab=el)
    b = m2_loss(model, xu, xl, yl, alpha=2.5, eps_unl=eu, eps_lab=el)
    ce = F.cross_entropy(model.classify_logits(xl), yl)
    torch.testing.assert_close(b["loss"] - a["loss"], 2.5 * ce)
    lab = labelled_bound(model, xl, yl, eps=el)["loss"].mean()
    unl = unlabelled_bound(model, xu, eps=eu)["loss"].mean()
    torch.testing.assert_close(a["loss"], lab + unl)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_as_vae_is_the_model_for_one_class(arch):
    model = tiny_m2(arch)
    x, z = torch.rand(2, 1, 8, 8), torch.randn(2, 4)
    for y in (0, 7):
        v = model.as_vae(y)
        yy = torch.full((2,), y)
        torch.testing.assert_close(v.decode(z), model.decode(z, yy))
        for a, b in zip(v.encode(x), model.encode(x, yy)):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError):
        model.as_vae(10)


def test_iwae_with_y_sampled_is_at_most_the_bound_on_average():
    model = tiny_m2()
    x = torch.rand(20, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        nll = iwae_nll_m2(model, x, k=200, generator=g).mean()
    bound = evaluate_m2(model, x)["neg_elbo"]
    assert math.isfinite(float(nll)) and float(nll) <= bound + 0.5


# ---------------------------------------------------------------- labels
def test_labelled_subset_is_balanced_seeded_and_exact():
    y = np.repeat(np.arange(10), 50)
    a, b, c = choose_labelled(y, 100, seed=1), choose_labelled(y, 100, seed=1), choose_labelled(y, 100, seed=2)
    assert len(a) == 100 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(y[a]).tolist() == [10] * 10
    assert np.bincount(y[choose_labelled(y, 13)]).tolist() == [2, 2, 2] + [1] * 7
    assert np.array_equal(choose_labelled(y, None), np.arange(500))


@pytest.mark.parametrize("budget, match", [(501, "more than the 500"), (9, "below one label per class"), (0, "below one")])
def test_impossible_budgets_are_refused(budget, match):
    with pytest.raises(LabelError, match=match):
        choose_labelled(np.repeat(np.arange(10), 50), budget)


def test_a_data_set_without_labels_is_refused(digits):
    from dataclasses import replace

    with pytest.raises(LabelError, match="no class labels"):
        check_labels(replace(digits, y_train=None, y_test=None), 100)
    assert check_labels(digits, 10) == 10


def test_shift_moves_whole_pixels_and_lets_zeros_in():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1
    moved = shift(x.repeat(50, 1, 1, 1), 1, torch.Generator().manual_seed(0))
    assert torch.all(moved.sum(dim=(1, 2, 3)) == 1)  # one pixel, moved by at most one step per axis
    rows, cols = moved[:, 0].nonzero()[:, 1], moved[:, 0].nonzero()[:, 2]
    assert set(rows.tolist()) == {1, 2, 3} and set(cols.tolist()) == {1, 2, 3}


def test_affine_rotates_scales_and_shifts_within_its_bounds():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 6:22, 12:16] = 1  # an upright bar
    assert torch.equal(affine(x.repeat(8, 1, 1, 1), 1, 0.0, 0.0, torch.Generator().manual_seed(1)),
                       shift(x.repeat(8, 1, 1, 1), 1, torch.Generator().manual_seed(1)))  # no rotation/scale: shift()
    moved = affine(x.repeat(200, 1, 1, 1), 2, 30.0, 0.2, g)
    assert moved.shape == (200, 1, 28, 28) and moved.min() >= 0 and moved.max() <= 1
    mass = moved.sum(dim=(1, 2, 3)) / x.sum()
    assert mass.min() > 0.6 and mass.max() < 1.6  # scaled by at most 1.2 per axis, nothing cut off at the border
    assert not torch.allclose(moved[0], moved[1])  # each image its own draw
    still = affine(x.repeat(4, 1, 1, 1), 0, 1e-9, 1e-9, g)  # a vanishing map is (nearly) the identity
    assert torch.allclose(still, x.expand(4, -1, -1, -1), atol=1e-4)


# ---------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("arch, classifier", [("mlp", "arch"), ("conv", "arch"), ("mlp", "conv")])
def test_m2_checkpoint_round_trip(tmp_path, arch, classifier):
    model = tiny_m2(arch, classifier=classifier)
    semi = {"labels": 10, "label_seed": 3, "labelled": [1, 5, 9], "alpha": 1.5, "classifier": classifier}
    path = save_checkpoint(tmp_path / "m2.safetensors", model, None, "digits", [], {"accuracy": 0.5}, semi=semi)
    ck = load_checkpoint(path)
    assert ck.kind == "m2" and isinstance(ck.model, M2) and ck.model.n_classes == 10
    assert ck.semi == {**semi, "n_classes": 10} and ck.metrics == {"accuracy": 0.5}
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v), k
    assert not ck.model.training


def test_m2_checkpoint_with_a_hostile_class_count_is_refused(tmp_path):
    import json

    from safetensors.torch import load_file, safe_open, save_file

    path = save_checkpoint(tmp_path / "m2.safetensors", tiny_m2(), None, "digits")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    tensors = load_file(path)
    for bad in (10**9, "ten", None):
        save_file(tensors, tmp_path / "bad.safetensors", metadata={**meta, "semi": json.dumps({"n_classes": bad})})
        with pytest.raises(CheckpointError, match="n_classes"):
            load_checkpoint(tmp_path / "bad.safetensors")
    save_file(tensors, tmp_path / "bad.safetensors", metadata={**meta, "model_kind": json.dumps("gan")})
    with pytest.raises(CheckpointError, match="unknown model kind"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_a_small_m2_beats_chance_on_digits_with_10_labels(digits):
    """Through vae.training.fit with J^alpha as the objective: one label per class, a few epochs."""
    from vae.config import TrainConfig
    from vae.semi import SemiConfig, train_m2

    model = tiny_m2(seed=1).train()
    cfg = TrainConfig(dataset="digits", epochs=6, batch_size=100, lr=3e-3, threads=1, device="cpu")
    result, meta = train_m2(model, digits, cfg, SemiConfig(labels=10, label_seed=0))
    assert result.status == "finished" and len(result.history) == 6
    assert meta["labels"] == 10 and np.bincount(digits.y_train.numpy()[meta["labelled"]]).tolist() == [1] * 10
    assert all("test_accuracy" in row for row in result.history)
    assert result.final["accuracy"] > 0.3  # chance is 0.1
    assert math.isfinite(result.final["neg_elbo"])


def test_the_shipped_m2_draws_the_class_it_is_asked_for(mnist5k):
    """Conditional generation (the style grid): the shipped M2's decoder uses y. With y's columns of the decoder's
    first layer zeroed, the same measure falls to what the styles alone give."""
    from pathlib import Path

    from vae.semi import style_agreement

    ck = load_checkpoint(Path(__file__).resolve().parents[1] / "checkpoints" / "mnist5k-m2-100.safetensors")
    model = ck.model
    assert style_agreement(model, mnist5k) > 0.5  # 10 % if the decoder ignored y
    first = model.decoder[0]
    with torch.no_grad():
        first.weight[:, model.cfg.latent_dim:] = 0  # z first, then the one-hot y (M2.decode_logits)
    assert style_agreement(model, mnist5k) < 0.3


# ---------------------------------------------------------------- the command line
def test_cli_trains_an_m2_and_reports_its_accuracy(tmp_path, capsys):
    import json

    from vae.__main__ import main

    out = tmp_path / "m2.safetensors"
    rc = main(["train", "--dataset", "digits", "--semi-supervised", "--labels", "20", "--epochs", "1", "--hidden", "32",
               "--latent-dim", "4", "--threads", "1", "--device", "cpu", "--out", str(out), "--json"])
    assert rc == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["labels"] == 20 and 0 <= last["test_accuracy"] <= 1 and last["model"] == "m2"
    ck = load_checkpoint(out)
    assert ck.kind == "m2" and len(ck.semi["labelled"]) == 20 and ck.semi["classifier"] == "conv"  # 8x8 fits conv
    assert ck.semi["rotate"] == 30 and ck.semi["scale"] == 0.2  # the default augmentation, kept in the metadata
    assert main(["evaluate", str(out), "--iwae-k", "5", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["model"] == "m2" and ev["accuracy"] == pytest.approx(last["test_accuracy"]) and math.isfinite(ev["iwae_nll"])
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["model"] == "m2"


@pytest.mark.parametrize("argv, match", [
    (["--dataset", "digits", "--labels", "1501"], "more than the 1500 training images"),
    (["--dataset", "digits", "--labels", "9"], "below one label per class"),
    (["--dataset", "digits", "--labels", "0"], "at least one label"),
    (["--dataset", "FOLDER"], "no class labels"),
])
def test_cli_bad_label_budgets_and_unlabelled_data_exit_2(tmp_path, capsys, argv, match):
    from PIL import Image

    from vae.__main__ import main

    folder = tmp_path / "flat"  # images without sub-folders: no labels
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((28, 28), i * 20, np.uint8)).save(folder / f"{i}.png")
    argv = [a.replace("FOLDER", f"folder:{folder}") for a in argv]
    rc = main(["train", "--semi-supervised", *argv, "--epochs", "1", "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.safetensors").exists()
