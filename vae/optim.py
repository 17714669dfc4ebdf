"""Adam with a one-cycle schedule, computed as torch.optim.Adam(fused=True) and torch.optim.lr_scheduler.OneCycleLR
compute them, without torch.optim.

torch.optim's Optimizer wraps __init__, zero_grad and step in torch._disable_dynamo, which imports torch._dynamo (and
with it sympy, triton's bindings, torch.onnx and torch.distributed) the first time any optimizer is built: measured
here 1.9 s and +160 MB resident that a server never gives back, for a compiler this package never uses. This module
calls the same fused kernel (torch._fused_adam_) on the same state, so the weights it produces are those of
torch.optim's Adam; tests/test_optim.py holds them equal step by step. Where the fused kernel is missing it falls back
to the textbook update (Kingma & Ba 2015, algorithm 1, eps outside the square root as torch has it).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch

__all__ = ["Adam", "OneCycle"]


class Adam:
    """Adam over one group of parameters. `lr` and `beta1` are plain attributes that a schedule sets between steps."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("Adam got no parameters to optimise")
        self.lr, (self.beta1, self.beta2), self.eps = float(lr), betas, float(eps)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # one float32 step counter per parameter, on its device: the fused kernel reads them for the bias corrections
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self._fused = hasattr(torch, "_fused_adam_") and all(p.dtype in (torch.float32, torch.float64) for p in self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [self.params[i].grad for i in live]
        avgs, sqs, steps = ([xs[i] for i in live] for xs in (self.exp_avg, self.exp_avg_sq, self.steps))
        torch._foreach_add_(steps, 1)
        if self._fused:
            torch._fused_adam_(params, grads, avgs, sqs, [], steps, amsgrad=False, lr=self.lr, beta1=self.beta1,
                               beta2=self.beta2, weight_decay=0.0, eps=self.eps, maximize=False)
            return
        for p, g, m, v, t in zip(params, grads, avgs, sqs, steps):
            n = float(t)
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / math.sqrt(1 - self.beta2 ** n)).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / (1 - self.beta1 ** n))


class OneCycle:
    """The one-cycle policy (Smith & Topin 2019) with torch's OneCycleLR defaults: lr rises from max_lr/25 to max_lr over
    the first pct_start of the steps and falls to max_lr/25/1e4 by the last, both on half cosines, while Adam's beta1
    goes 0.95 -> 0.85 -> 0.95 against it. Construction sets step 0's values; each step() moves to the next."""

    def __init__(self, opt: Adam, max_lr: float, total_steps: int, pct_start: float = 0.1, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, base_momentum: float = 0.85, max_momentum: float = 0.95):
        if total_steps < 1:
            raise ValueError(f"a one-cycle schedule needs at least one step, got {total_steps}")
        start = max_lr / div_factor
        self.opt, self.count = opt, 0
        # (last step of the phase, lr from, lr to, beta1 from, beta1 to)
        self.phases = [(float(pct_start * total_steps) - 1, start, max_lr, max_momentum, base_momentum),
                       (float(total_steps - 1), max_lr, start / final_div_factor, base_momentum, max_momentum)]
        self._apply()

    @staticmethod
    def _cos(a: float, b: float, pct: float) -> float:
        return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)

    def _apply(self) -> None:
        begin = 0.0
        for i, (end, lr0, lr1, m0, m1) in enumerate(self.phases):
            if self.count <= end or i == len(self.phases) - 1:
                pct = (self.count - begin) / (end - begin) if end > begin else 1.0
                self.opt.lr, self.opt.beta1 = self._cos(lr0, lr1, pct), self._cos(m0, m1, pct)
                return
            begin = end

    def step(self) -> None:
        self.count += 1
        self._apply()
