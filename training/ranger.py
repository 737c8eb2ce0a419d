"""Ranger: RAdam + Lookahead + gradient centralization, pSp's optimizer.

RAdam (Liu et al. 2020) rectifies Adam's variance in the first steps (plain momentum SGD while the
variance estimate has fewer than ``n_sma_threshold`` degrees of freedom); Lookahead (Zhang et al.
2019) keeps slow weights and every ``k`` steps moves them by ``alpha`` towards the fast weights and
resets the fast ones; gradient centralization (Yong et al. 2020) removes the mean over the fan-in of
every weight with more than one dimension. Defaults are those of pSp's copy of Ranger 20.4.11.
All state lives in ``self.state`` (``step``, ``exp_avg``, ``exp_avg_sq``, ``slow_buffer``), so
``state_dict`` / ``load_state_dict`` round trips exactly.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Callable

import torch
from torch.optim.optimizer import Optimizer


class Ranger(Optimizer):
    def __init__(self, params: Iterable, lr: float = 1e-3, alpha: float = 0.5, k: int = 6,
                 n_sma_threshold: float = 5.0, betas: tuple[float, float] = (0.95, 0.999),
                 eps: float = 6.1e-5, weight_decay: float = 0.0, use_gc: bool = True,
                 gc_conv_only: bool = False) -> None:
        if not lr > 0:
            raise ValueError(f"Ranger: lr must be > 0, got {lr}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Ranger: alpha must be in [0, 1], got {alpha}")
        if not k >= 1:
            raise ValueError(f"Ranger: k must be >= 1, got {k}")
        if not eps > 0:
            raise ValueError(f"Ranger: eps must be > 0, got {eps}")
        defaults = dict(lr=lr, alpha=alpha, k=k, n_sma_threshold=n_sma_threshold, betas=tuple(betas),
                        eps=eps, weight_decay=weight_decay, use_gc=use_gc,
                        gc_min_dim=4 if gc_conv_only else 2)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict) -> None:
        if p.grad.is_sparse:
            raise RuntimeError("Ranger does not support sparse gradients")
        grad = p.grad.float()
        if group["use_gc"] and grad.dim() >= group["gc_min_dim"]:
            grad = grad - grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True)

        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
            state["slow_buffer"] = p.detach().float().clone()
        state["step"] += 1
        t = state["step"]
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

        # RAdam: length of the approximated simple moving average and the rectification term.
        beta2_t = beta2 ** t
        n_sma_max = 2 / (1 - beta2) - 1
        n_sma = n_sma_max - 2 * t * beta2_t / (1 - beta2_t)
        lr = group["lr"]
        p32 = p.float()  # the parameter itself when it is float32
        if group["weight_decay"] != 0:
            p32.mul_(1 - group["weight_decay"] * lr)
        if n_sma > group["n_sma_threshold"]:
            rect = math.sqrt((1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma
                             * n_sma_max / (n_sma_max - 2))
            p32.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-lr * rect / (1 - beta1 ** t))
        else:
            p32.add_(exp_avg, alpha=-lr / (1 - beta1 ** t))

        # Lookahead: every k steps the slow weights move towards the fast ones, which restart there.
        if t % group["k"] == 0:
            slow = state["slow_buffer"]
            slow.add_(p32 - slow, alpha=group["alpha"])
            p32.copy_(slow)
        if p32 is not p:
            p.copy_(p32)
