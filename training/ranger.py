"""Ranger: RAdam + Lookahead + gradient centralization, pSp's optimizer.

RAdam (Liu et al. 2020) rectifies Adam's variance in the first steps (plain momentum SGD while the
variance estimate has fewer than ``n_sma_threshold`` degrees of freedom); Lookahead (Zhang et al.
2019) keeps slow weights and every ``k`` steps moves them by ``alpha`` towards the fast weights and
resets the fast ones; gradient centralization (Yong et al. 2020) removes the mean over the fan-in of
every weight with more than one dimension. Defaults are those of pSp's copy of Ranger 20.4.11.
All state lives in ``self.state`` (``step``, ``exp_avg``, ``exp_avg_sq``, ``slow_buffer``), so
``state_dict`` / ``load_state_dict`` round trips exactly.

``foreach=True`` updates all parameters that share a step count with one ``torch._foreach_*`` call per
operation (multi-tensor kernels on CUDA, no Python loop over parameters); ``foreach=False`` is the
per-parameter loop, the same arithmetic. The default (None), as torch.optim's: foreach when every parameter
is on CUDA (on the CPU the foreach ops run the same per-tensor kernels and measured no faster).
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
                 gc_conv_only: bool = False, foreach: bool | None = None) -> None:
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
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not (self.foreach if self.foreach is not None else all(p.is_cuda for p in params)):
                for p in params:
                    self._update(p, group)
                continue
            by_step: dict[tuple, list[torch.Tensor]] = {}
            for p in params:
                state = self._state(p)
                by_step.setdefault((state["step"] + 1, p.device, p.dtype), []).append(p)
            for (t, _, _), ps in by_step.items():
                self._update_foreach(ps, group, t)
        return loss

    def _state(self, p: torch.Tensor) -> dict:
        if p.grad.is_sparse:
            raise RuntimeError("Ranger does not support sparse gradients")
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
            state["slow_buffer"] = p.detach().float().clone()
        return state

    @staticmethod
    def _centralized(grad: torch.Tensor, group: dict) -> torch.Tensor:
        grad = grad.float()
        if group["use_gc"] and grad.dim() >= group["gc_min_dim"]:
            grad = grad - grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True)
        return grad

    @staticmethod
    def _step_size(t: int, group: dict) -> tuple[bool, float]:
        """RAdam at step ``t``: (rectified Adam step, else momentum SGD; the step size)."""
        beta1, beta2 = group["betas"]
        beta2_t = beta2 ** t
        n_sma_max = 2 / (1 - beta2) - 1
        n_sma = n_sma_max - 2 * t * beta2_t / (1 - beta2_t)       # length of the approximated simple moving avg.
        if n_sma > group["n_sma_threshold"]:
            rect = math.sqrt((1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma
                             * n_sma_max / (n_sma_max - 2))
            return True, group["lr"] * rect / (1 - beta1 ** t)
        return False, group["lr"] / (1 - beta1 ** t)

    def _update_foreach(self, params: list[torch.Tensor], group: dict, t: int) -> None:
        """``_update`` of every parameter in ``params`` (all at step ``t``, one device and dtype) at once."""
        grads = [self._centralized(p.grad, group) for p in params]
        states = [self.state[p] for p in params]
        for state in states:
            state["step"] = t
        beta1, beta2 = group["betas"]
        exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        p32s = [p.float() for p in params]
        if group["weight_decay"] != 0:
            torch._foreach_mul_(p32s, 1 - group["weight_decay"] * group["lr"])
        adam, step = self._step_size(t, group)
        if adam:
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(p32s, exp_avgs, denom, value=-step)
        else:
            torch._foreach_add_(p32s, exp_avgs, alpha=-step)
        if t % group["k"] == 0:
            slows = [s["slow_buffer"] for s in states]
            torch._foreach_add_(slows, torch._foreach_sub(p32s, slows), alpha=group["alpha"])
            torch._foreach_copy_(p32s, slows)
        for p, p32 in zip(params, p32s):
            if p32 is not p:
                p.copy_(p32)

    def _update(self, p: torch.Tensor, group: dict) -> None:
        state = self._state(p)
        grad = self._centralized(p.grad, group)
        state["step"] += 1
        t = state["step"]
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        p32 = p.float()  # the parameter itself when it is float32
        if group["weight_decay"] != 0:
            p32.mul_(1 - group["weight_decay"] * group["lr"])
        adam, step = self._step_size(t, group)
        if adam:
            p32.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-step)
        else:
            p32.add_(exp_avg, alpha=-step)

        # Lookahead: every k steps the slow weights move towards the fast ones, which restart there.
        if t % group["k"] == 0:
            slow = state["slow_buffer"]
            slow.add_(p32 - slow, alpha=group["alpha"])
            p32.copy_(slow)
        if p32 is not p:
            p.copy_(p32)
