"""vae.optim against torch.optim: the same weights step by step, and a training run that never imports torch._dynamo."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fresh import fresh_python
from vae.optim import Adam, OneCycle


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("total", [7, 40])
def test_adam_one_cycle_matches_torch_optim(fused, total):
    ours, ref = _net(0), _net(0)
    opt = Adam(ours.parameters(), lr=1e-2)
    opt._fused = fused
    sched = OneCycle(opt, max_lr=1e-2, total_steps=total, pct_start=0.1)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2, fused=True)
    ref_sched = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=1e-2, total_steps=total, pct_start=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(total):
        x, y = torch.randn(32, 12, generator=g), torch.randint(0, 3, (32,), generator=g)
        assert opt.lr == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12)
        assert opt.beta1 == pytest.approx(ref_opt.param_groups[0]["betas"][0], rel=1e-12)
        for net, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            o.step()
        sched.step()
        ref_sched.step()
        for a, b in zip(ours.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 if fused else 1e-5)
    assert any((a != b0).any() for a, b0 in zip(ours.parameters(), _net(0).parameters()))  # it did train


def test_adam_skips_parameters_without_gradients():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = Adam([a, b], lr=0.1)
    (a * 2).sum().backward()
    opt.step()
    assert (a < 1).all() and (b == 1).all()
    assert float(opt.steps[0]) == 1 and float(opt.steps[1]) == 0


def test_lbfgs_finds_the_minimum_of_a_quadratic_and_of_rosenbrock():
    from vae.metrics import lbfgs

    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(size=(30, 30)))
    h = a @ a.T + 0.1 * torch.eye(30, dtype=torch.float64)  # positive definite, condition number ~10^4
    b = torch.from_numpy(rng.normal(size=30))
    x = lbfgs(lambda x: (float(0.5 * x @ h @ x - b @ x), h @ x - b), torch.zeros(30), iterations=500, gtol=1e-10, ftol=0.0)
    assert torch.allclose(x, torch.linalg.solve(h, b), atol=1e-6)

    def rosenbrock(v):
        x, y = float(v[0]), float(v[1])
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2, torch.tensor([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)],
                                                                    dtype=torch.float64)

    assert torch.allclose(lbfgs(rosenbrock, torch.tensor([-1.2, 1.0]), iterations=200), torch.ones(2, dtype=torch.float64),
                          atol=1e-4)


def test_adam_refuses_no_parameters():
    with pytest.raises(ValueError):
        Adam([], lr=0.1)


def test_training_and_reader_never_import_dynamo_or_scipy():
    """torch.optim's first use imports torch._dynamo (+1.9 s, +160 MB in the server) and scipy.optimize costs ~40 MB
    that stay: fit() and the pixel reader use neither."""
    code = """
        import sys
        import torch
        from vae import ModelConfig, TrainConfig, build_model, load_dataset
        from vae.metrics import pixel_classifier
        from vae.training import fit
        data = load_dataset("digits")
        model = build_model(ModelConfig(arch="mlp", input_shape=data.shape, latent_dim=2, hidden=32))
        fit(model, data, TrainConfig(dataset="digits", epochs=1, batch_size=256, threads=1))
        reader = pixel_classifier(data.x_train, data.y_train, iterations=20)
        assert reader.score(data.x_test, data.y_test) > 0.5
        print(sorted(m for m in sys.modules if m.startswith(("torch._dynamo", "sympy", "scipy"))))
    """
    assert fresh_python(code) == "[]"
