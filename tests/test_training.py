"""fit(): it learns, it is reproducible, it stops when asked, it survives NaN, and the KL warm-up is linear."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import vae.training as training
from vae.model import init_output_bias
from vae.training import StopFlag, evaluate, fit, kl_weight

NOISY = {"seconds"}  # wall-clock time: the only field of a history row allowed to differ between identical runs


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _all_finite(model) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def test_training_lowers_held_out_neg_elbo(tiny_model, tiny_train, mnist5k):
    model = tiny_model(input_shape=(1, 28, 28))
    before = evaluate(model, mnist5k.x_test)["neg_elbo"]
    result = fit(model, mnist5k, tiny_train("mnist5k", epochs=3, batch_size=128))
    after = evaluate(model, mnist5k.x_test)["neg_elbo"]
    assert result.status == "finished" and result.epochs == 3 and len(result.history) == 3
    # untrained: ~550 nats (every pixel a coin flip); three epochs of this tiny MLP reach ~210
    assert after < 0.5 * before, (before, after)
    assert result.history[-1]["test_neg_elbo"] < result.history[0]["test_neg_elbo"]
    assert result.final["neg_elbo"] == pytest.approx(after)
    assert result.history[-1]["test_neg_elbo"] == pytest.approx(after)
    row = result.history[-1]
    assert row["train_neg_elbo"] == pytest.approx(row["train_recon"] + row["train_kl"])
    assert len(row["kl_per_dim"]) == model.cfg.latent_dim
    assert not model.training  # handed back ready for inference


def _run(tiny_model, tiny_train, digits, seed):
    model = tiny_model(seed=0)  # same initial weights; only the training seed varies
    result = fit(model, digits, tiny_train(epochs=2, seed=seed))
    return [{k: v for k, v in row.items() if k not in NOISY} for row in result.history], _weights(model)


def test_same_seed_gives_identical_history_and_weights(tiny_model, tiny_train, digits):
    history_a, weights_a = _run(tiny_model, tiny_train, digits, seed=5)
    history_b, weights_b = _run(tiny_model, tiny_train, digits, seed=5)
    history_c, _ = _run(tiny_model, tiny_train, digits, seed=6)
    assert history_a == history_b
    _assert_same_weights(weights_a, weights_b)
    assert history_a != history_c  # the seed really drives shuffling and noise


@pytest.mark.parametrize("stop_after_steps", [1, 7, 24])  # digits: 24 steps per epoch at batch size 64
def test_stop_flag_stops_and_keeps_the_weights(tiny_model, tiny_train, digits, stop_after_steps):
    model = tiny_model()
    initial = _weights(model)
    stop, seen = StopFlag(), {}

    def on_step(info):
        if info["step"] == stop_after_steps:
            seen["weights"] = _weights(model)
            stop.set()

    result = fit(model, digits, tiny_train(epochs=5), on_step=on_step, stop=stop)
    assert result.status == "stopped" and "stopped" in result.message
    _assert_same_weights(_weights(model), seen["weights"])  # not rolled back, not trained further
    assert any(not torch.equal(initial[k], seen["weights"][k]) for k in initial)
    assert result.epochs == len(result.history) == 1  # the epoch it stopped in (or just finished) has a row
    assert result.history[-1]["step"] == stop_after_steps


def test_stop_before_the_first_step_changes_nothing(tiny_model, tiny_train, digits):
    model = tiny_model()
    initial = _weights(model)
    stop = StopFlag()
    stop.set()
    # init_output_bias sets the decoder's output bias before the first step, by design: leave it out here
    result = fit(model, digits, tiny_train(epochs=3, init_output_bias=False), stop=stop)
    assert result.status == "stopped" and result.history == [] and result.epochs == 0
    _assert_same_weights(_weights(model), initial)


def _nan_loss(monkeypatch, model, data, at_step: int):
    real = training.elbo_terms
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= at_step:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(training, "elbo_terms", poisoned)
    return data, None


def _nan_weights(monkeypatch, model, data, at_step: int):
    def on_step(info):
        if info["step"] == at_step:
            with torch.no_grad():
                next(model.parameters())[0, 0] = float("nan")

    return data, on_step


def _nan_pixel(monkeypatch, model, data, at_step: int):
    # one NaN pixel in the training set: the loss of whichever batch holds it is NaN
    x_train = data.x_train.clone()
    x_train[0, 0, 0, 0] = float("nan")
    return dataclasses.replace(data, x_train=x_train), None


@pytest.mark.parametrize("poison", [_nan_loss, _nan_weights, _nan_pixel], ids=["loss", "weights", "data"])
def test_nan_guard_keeps_the_last_good_weights(monkeypatch, tiny_model, tiny_train, digits, poison):
    model = tiny_model()
    data, on_step = poison(monkeypatch, model, digits, at_step=30)  # in epoch 2 (24 steps per epoch)
    cfg = tiny_train(epochs=4)
    start = copy.deepcopy(model)  # the weights fit() starts from: the initial ones, output bias set from the data
    if cfg.init_output_bias:
        init_output_bias(start, data.x_train.mean(dim=0))
    epoch_ends = [_weights(start)]  # then the weights after every completed epoch
    result = fit(model, data, cfg, on_step=on_step, on_epoch=lambda row, m: epoch_ends.append(_weights(m)))
    assert result.status == "nan"
    assert result.message and "last good weights were kept" in result.message
    assert _all_finite(model)
    _assert_same_weights(_weights(model), epoch_ends[-1])  # rolled back to the end of the last finished epoch
    assert result.epochs == len(result.history) == len(epoch_ends) - 1
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)


@pytest.mark.parametrize("beta, warmup, step, steps_per_epoch, expected", [
    (1.0, 0.0, 0, 10, 1.0),  # no warm-up: beta from the first step
    (4.0, 0.0, 7, 10, 4.0),
    (1.0, 2.0, 0, 10, 0.0),  # warm-up starts at zero
    (1.0, 2.0, 5, 10, 0.25),
    (1.0, 2.0, 10, 10, 0.5),
    (4.0, 2.0, 15, 10, 3.0),
    (4.0, 2.0, 20, 10, 4.0),  # reaches beta after warmup_epochs
    (4.0, 2.0, 500, 10, 4.0),  # and stays there
    (2.0, 0.5, 3, 12, 1.0),  # fractional warm-up epochs
])
def test_kl_weight_schedule(tiny_train, beta, warmup, step, steps_per_epoch, expected):
    cfg = tiny_train(beta=beta, warmup_epochs=warmup)
    assert kl_weight(cfg, step, steps_per_epoch) == pytest.approx(expected)


def test_fit_uses_the_warm_up_schedule(tiny_model, tiny_train, digits):
    betas = []
    result = fit(tiny_model(), digits, tiny_train(epochs=3, beta=2.0, warmup_epochs=2.0),
                 on_step=lambda info: betas.append(info["beta"]))
    spe = result.history[0]["step"]
    assert len(betas) == 3 * spe
    expected = [2.0 * min(1.0, s / (2 * spe)) for s in range(3 * spe)]
    assert betas == pytest.approx(expected)
    assert [row["beta"] for row in result.history] == pytest.approx([expected[spe - 1], expected[2 * spe - 1], 2.0])


def test_callbacks_and_eval_every(tiny_model, tiny_train, digits):
    steps, epochs = [], []

    def on_epoch(row, model):
        epochs.append((row["epoch"], model.training))

    result = fit(tiny_model(), digits, tiny_train(epochs=3, eval_every=2), on_step=steps.append, on_epoch=on_epoch,
                 step_every=5)
    assert epochs == [(1, False), (2, False), (3, False)]  # the model is in eval mode inside on_epoch
    assert [s["step"] for s in steps] == list(range(5, 3 * 24 + 1, 5))
    evaluated = ["test_neg_elbo" in row for row in result.history]
    assert evaluated == [False, True, True]  # every 2nd epoch, and always the last


def test_evaluate_is_seeded_and_restores_the_mode(tiny_model, digits):
    model = tiny_model().train()
    a, b = evaluate(model, digits.x_test, seed=1), evaluate(model, digits.x_test, seed=1)
    assert a == b and model.training
    assert evaluate(model, digits.x_test, seed=2) != a
    assert a["neg_elbo"] == pytest.approx(a["recon"] + a["kl"])
    assert sum(a["kl_per_dim"]) == pytest.approx(a["kl"], rel=1e-5)


def test_fit_refuses_an_empty_training_set(tiny_model, tiny_train, digits):
    empty = copy.copy(digits)
    empty.x_train = digits.x_train[:0]
    with pytest.raises(ValueError, match="empty"):
        fit(tiny_model(), empty, tiny_train())


@pytest.mark.parametrize("arch, likelihood", [("mlp", "gaussian"), ("conv", "bernoulli"), ("conv", "gaussian")])
def test_every_architecture_and_likelihood_trains(tiny_model, tiny_train, digits, arch, likelihood):
    model = tiny_model(arch=arch, likelihood=likelihood, hidden=32)
    before = evaluate(model, digits.x_test)["neg_elbo"]
    result = fit(model, digits, tiny_train(epochs=2))
    assert result.status == "finished" and _all_finite(model)
    assert result.final["neg_elbo"] < before
