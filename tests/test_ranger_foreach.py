"""Ranger's foreach update (the default on CUDA) against its per-parameter loop: the same parameters and state after
steps that cross RAdam's switch to rectified Adam and two Lookahead syncs, with weight decay, a bf16
parameter and a parameter that skips steps (so the parameters' step counts differ)."""
import torch
from torch import nn

from render2style.training import Ranger


def run(foreach: bool, steps: int = 14):
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(4, 3, 3, 3)), nn.Parameter(torch.randn(7)), nn.Parameter(torch.randn(5, 6)),
              nn.Parameter(torch.randn(3, 2).bfloat16())]
    opt = Ranger(params, lr=0.05, k=5, weight_decay=0.01, foreach=foreach)
    gen = torch.Generator().manual_seed(1)
    for i in range(steps):
        for j, p in enumerate(params):
            skip = j == 2 and i % 3 == 1
            p.grad = None if skip else torch.randn(p.shape, generator=gen).to(p.dtype)
        opt.step()
    return params, opt


def test_foreach_update_equals_the_loop():
    loop_params, loop_opt = run(False)
    fe_params, fe_opt = run(True)
    assert fe_opt.foreach and loop_opt.foreach is False
    assert [fe_opt.state[p]["step"] for p in fe_params] == [14, 14, 9, 14]
    for a, b in zip(fe_params, loop_params):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)
        for key in ("exp_avg", "exp_avg_sq", "slow_buffer"):
            torch.testing.assert_close(fe_opt.state[a][key], loop_opt.state[b][key], rtol=1e-6, atol=1e-7)


def test_foreach_steps_move_the_parameters():
    params, _ = run(True)
    start, _ = run(True, steps=0)
    assert all((a - b).abs().max() > 1e-3 for a, b in zip(params, start))
