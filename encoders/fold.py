"""Inference copies of encoders: BatchNorm folded into the convolution before it, channels_last weights.

A BatchNorm in eval mode is an affine map per channel, so one that directly follows a convolution folds
exactly into that convolution's weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``). In the IR-SE
units these are the second convolution of ``res_layer`` and the shortcut's 1x1 convolution, and the input
layer's convolution. A BatchNorm *before* a zero-padded convolution (``res_layer.0``) does not fold exactly
(the padding would see the shifted zeros) and stays.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An eval-mode, gradient-free copy of ``module`` in which every ``BatchNorm2d`` (with running statistics)
    that directly follows a ``Conv2d`` inside an ``nn.Sequential`` is folded into it and replaced by
    ``nn.Identity``. ``module`` itself is unchanged. Returns the copy (its state dict has other keys: it is for
    inference, not for saving)."""
    folded = copy.deepcopy(module).eval().requires_grad_(False)
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = seq._modules[first], seq._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                seq._modules[first] = fuse_conv_bn_eval(conv, bn)
                seq._modules[second] = nn.Identity()
    return folded


def inference_encoder(encoder: nn.Module, autocast_dtype: torch.dtype | None = None) -> nn.Module:
    """``fold_batchnorm(encoder)`` with its weights in the channels_last memory format (faster convolutions on
    CPUs and tensor-core GPUs); feed it channels_last inputs.

    ``autocast_dtype``: for a copy run under autocast to that dtype, the weights and biases of its convolutions
    and linear layers are stored in it: the cast autocast would make on every call (a full pass over each
    weight, about a GB a call for pSp's encoder in fp32), made once, to the same values. The other parameters
    (BatchNorm, PReLU) stay as they are, as autocast leaves them."""
    folded = fold_batchnorm(encoder).to(memory_format=torch.channels_last)
    if autocast_dtype is not None:
        for m in folded.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.to(autocast_dtype)
    return folded
