"""NVIDIA stylegan2-ada-pytorch ``.pkl`` -> rosinality layout, without NVIDIA's code and without running pickled code.

The official pickles store modules through ``torch_utils.persistence``, which embeds the source code of every
class. A restricted unpickler rebuilds only tensors and plain containers; every persistent module becomes an
inert ``PickledObject`` holding its ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ``init_kwargs``),
from which the ``G_ema`` (and, in training snapshots, ``G`` and ``D``) state dicts are read and renamed.
"""
from __future__ import annotations

import collections
import io
import logging
import math
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from render2style.stylegan2.discriminator import Discriminator, infer_discriminator_config
from render2style.stylegan2.model import Generator
from render2style.utils.io import atomic_torch_save

log = logging.getLogger(__name__)


class PickledObject:
    """Inert stand-in for any class in the pickle: records the class name, arguments and state, runs nothing."""

    def __init__(self, *args: Any, class_name: str = "?", **kwargs: Any):
        self.class_name, self.args, self.state = class_name, args, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _reconstruct_persistent_obj(meta: dict) -> PickledObject:
    obj = PickledObject(class_name=str(meta.get("class_name", "?")))
    obj.state = meta.get("state")
    return obj


def _load_storage_bytes(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, *args: Any) -> torch.Tensor:
    return data


class _AttrDict(dict):
    """Stand-in for dnnlib.EasyDict: a plain dict that also accepts pickled attribute state."""


def _opaque(module: str, name: str) -> type:
    """An inert PickledObject subclass for an unknown global (works for REDUCE and NEWOBJ opcodes)."""
    def init(self: PickledObject, *args: Any, **kwargs: Any) -> None:
        PickledObject.__init__(self, *args, class_name=f"{module}.{name}")
    return type(name, (PickledObject,), {"__init__": init})


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals needed to rebuild tensors and containers; everything else is inert."""

    SAFE = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("torch", "device"): torch.device,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): _AttrDict,
    }

    def find_class(self, module: str, name: str) -> Any:
        return self.SAFE.get((module, name)) or _opaque(module, name)


def _flatten_module(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = obj.state if isinstance(obj, PickledObject) else None
    if not isinstance(state, dict):
        return
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if isinstance(t, torch.Tensor):
                out[prefix + name] = t
    for name, child in (state.get("_modules") or {}).items():
        _flatten_module(child, f"{prefix}{name}.", out)


def read_ada_pkl(path: str | os.PathLike) -> dict[str, Any]:
    """The top-level dict of a stylegan2-ada-pytorch pickle (``G``, ``D``, ``G_ema``, ...), read with the
    restricted unpickler: modules are inert ``PickledObject`` records."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (expected a stylegan2-ada-pytorch .pkl, e.g. ffhq.pkl "
                                "from the pretrained networks linked in NVlabs/stylegan2-ada-pytorch's README)")
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: not a readable stylegan2-ada-pytorch pickle (truncated or corrupt?): {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict with 'G_ema', found {type(data).__name__}")
    return data


def module_state(data: dict[str, Any], key: str, source: str = "<pkl>") -> tuple[dict[str, torch.Tensor], dict]:
    """(flat NVIDIA state dict, init_kwargs) of the pickled module ``data[key]``."""
    if key not in data:
        raise ValueError(f"{source}: expected a dict with '{key}', found {sorted(data)}")
    module = data[key]
    state: dict[str, torch.Tensor] = {}
    _flatten_module(module, "", state)
    if not state:
        raise ValueError(f"{source}: '{key}' holds no tensors; is this a stylegan2-ada-pytorch snapshot?")
    kwargs = module.state.get("init_kwargs", {}) if isinstance(module.state, dict) else {}
    return state, dict(kwargs or {})


def load_ada_pkl_state(path: str | os.PathLike, key: str = "G_ema") -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``key`` of a stylegan2-ada-pytorch pickle: (flat NVIDIA state dict, init_kwargs)."""
    return module_state(read_ada_pkl(path), key, str(path))


def ada_to_rosinality(ada: dict[str, torch.Tensor], source: str = "<pkl>") -> tuple[dict[str, torch.Tensor],
                                                                                   torch.Tensor, dict]:
    """Rename an NVIDIA ``G_ema`` state dict to the rosinality layout: (state dict, w_avg [1, D], config)."""
    if any(k.startswith("mapping.embed") for k in ada):
        raise ValueError(f"{source}: conditional generators (c_dim > 0) are not supported")
    fcs = sorted({int(k.split(".")[1][2:]) for k in ada if k.startswith("mapping.fc")})
    blocks = sorted({int(k.split(".")[1][1:]) for k in ada if k.startswith("synthesis.b")})
    if not fcs or not blocks or blocks[0] != 4:
        raise ValueError(f"{source}: no mapping.fc* / synthesis.b4 tensors: not a StyleGAN2-ADA generator")
    style_dim = ada["mapping.fc0.weight"].shape[1]
    if ada[f"mapping.fc{fcs[-1]}.weight"].shape[0] != style_dim:
        raise ValueError(f"{source}: z_dim != w_dim is not supported by the rosinality layout")
    size = blocks[-1]
    c64 = ada["synthesis.b64.conv0.weight"].shape[0] if 64 in blocks else 512
    cfg = dict(size=size, style_dim=style_dim, n_mlp=len(fcs), channel_multiplier=c64 / 256,
               channel_max=ada["synthesis.b4.const"].shape[0])

    out: dict[str, torch.Tensor] = {}
    for i in fcs:
        out[f"style.{i + 1}.weight"] = ada[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = ada[f"mapping.fc{i}.bias"]
    out["input.input"] = ada["synthesis.b4.const"].unsqueeze(0)

    def layer(src: str, dst: str, noise_idx: int) -> None:
        out[f"{dst}.conv.weight"] = ada[f"{src}.weight"].unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = ada[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = ada[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = ada[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = ada[f"{src}.bias"]
        noise = ada[f"{src}.noise_const"]
        out[f"noises.noise_{noise_idx}"] = noise.reshape(1, 1, *noise.shape[-2:])

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.conv.weight"] = ada[f"{src}.weight"].unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = ada[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = ada[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = ada[f"{src}.bias"].reshape(1, 3, 1, 1)

    try:
        layer("synthesis.b4.conv1", "conv1", 0)
        to_rgb("synthesis.b4.torgb", "to_rgb1")
        for res in blocks[1:]:
            i = int(math.log2(res)) - 3
            layer(f"synthesis.b{res}.conv0", f"convs.{2 * i}", 2 * i + 1)
            layer(f"synthesis.b{res}.conv1", f"convs.{2 * i + 1}", 2 * i + 2)
            to_rgb(f"synthesis.b{res}.torgb", f"to_rgbs.{i}")
    except KeyError as e:
        raise ValueError(f"{source}: missing {e}; only the 'skip' generator architecture (config-f) "
                         "is supported") from e
    # The fixed FIR kernels are buffers in the rosinality layout: take them from a reference module.
    for k, v in Generator(**cfg).state_dict().items():
        if k.endswith(".kernel"):
            out[k] = v
    w_avg = ada["mapping.w_avg"].reshape(1, -1) if "mapping.w_avg" in ada else None
    return {k: v.float().contiguous() for k, v in out.items()}, w_avg, cfg


def ada_d_to_rosinality(ada: dict[str, torch.Tensor], source: str = "<pkl>",
                        init_kwargs: dict | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Rename an NVIDIA ``D`` state dict (the ``resnet`` architecture of config-f) to the rosinality ``d``
    layout: (state dict, ``Discriminator`` arguments).

    NVIDIA's blocks ``b<res>`` (``fromrgb`` on the top one, ``conv0``, ``conv1`` down-sampling, ``skip``) are
    rosinality's ``convs.0`` (from-RGB) and ``convs.<i>`` (``conv1``, ``conv2``, ``skip``); the epilogue ``b4``
    (``conv``, ``fc``, ``out``) is ``final_conv`` and ``final_linear``. Both scale weights by 1/√fan-in at run
    time, sum residual branches scaled by 1/√2 and blur with the same normalised [1, 3, 3, 1] filter, so the
    weights carry over unchanged. NVIDIA's ``conv_clamp`` (clamping activations at ±256 in fp16 layers) has no
    counterpart: a network trained with it gives the same logits wherever no activation reached the clamp.
    """
    kwargs = init_kwargs or {}
    if kwargs.get("c_dim", 0) or any(k.startswith("mapping.") for k in ada):
        raise ValueError(f"{source}: conditional discriminators (c_dim > 0) are not supported")
    arch = kwargs.get("architecture", "resnet")
    blocks = sorted({int(k.split(".")[0][1:]) for k in ada if k.startswith("b") and k.split(".")[0][1:].isdigit()})
    tops = [r for r in blocks if f"b{r}.fromrgb.weight" in ada]
    if arch != "resnet" or len(tops) != 1 or not blocks or blocks[0] != 4:
        raise ValueError(f"{source}: only the 'resnet' discriminator architecture (config-f) converts to the "
                         f"rosinality layout (architecture {arch!r}, from-RGB layers at {tops})")
    size = tops[0]
    if blocks != [2 ** i for i in range(2, int(math.log2(size)) + 1)]:
        raise ValueError(f"{source}: discriminator blocks {blocks} are not the power-of-two chain 4..{size}")
    group = int(kwargs.get("mbstd_group_size", 4) or 4)
    if int(kwargs.get("mbstd_num_channels", 1)) != 1:
        raise ValueError(f"{source}: minibatch stddev with {kwargs['mbstd_num_channels']} channels is not supported")

    out: dict[str, torch.Tensor] = {}
    try:
        out["convs.0.0.weight"] = ada[f"b{size}.fromrgb.weight"]
        out["convs.0.1.bias"] = ada[f"b{size}.fromrgb.bias"]
        for i, res in enumerate(range(int(math.log2(size)), 2, -1), start=1):
            b, d = f"b{2 ** res}", f"convs.{i}"
            out[f"{d}.conv1.0.weight"], out[f"{d}.conv1.1.bias"] = ada[f"{b}.conv0.weight"], ada[f"{b}.conv0.bias"]
            out[f"{d}.conv2.1.weight"], out[f"{d}.conv2.2.bias"] = ada[f"{b}.conv1.weight"], ada[f"{b}.conv1.bias"]
            out[f"{d}.skip.1.weight"] = ada[f"{b}.skip.weight"]
        out["final_conv.0.weight"], out["final_conv.1.bias"] = ada["b4.conv.weight"], ada["b4.conv.bias"]
        out["final_linear.0.weight"], out["final_linear.0.bias"] = ada["b4.fc.weight"], ada["b4.fc.bias"]
        out["final_linear.1.weight"], out["final_linear.1.bias"] = ada["b4.out.weight"], ada["b4.out.bias"]
    except KeyError as e:
        raise ValueError(f"{source}: missing discriminator tensor {e}; expected StyleGAN2-ADA's resnet D") from e
    if out["final_linear.1.weight"].shape[0] != 1:
        raise ValueError(f"{source}: a projection discriminator (cmap_dim > 0) is not supported")
    cfg = infer_discriminator_config(out, source)
    reference = Discriminator(**cfg, stddev_group=group).state_dict()
    for k, v in reference.items():
        if k.endswith(".kernel"):
            out[k] = v
    mismatched = [k for k, v in reference.items() if k in out and tuple(out[k].shape) != tuple(v.shape)]
    if mismatched:
        raise ValueError(f"{source}: the discriminator's channels are not a configuration the rosinality layout "
                         f"has (channel_base / channel_max): {mismatched[0]} is {list(out[mismatched[0]].shape)}, "
                         f"expected {list(reference[mismatched[0]].shape)}")
    return {k: v.float().contiguous() for k, v in out.items()}, {**cfg, "stddev_group": group}


def _present(data: dict[str, Any], key: str) -> bool:
    return isinstance(data.get(key), PickledObject)


def convert_ada_pkl(pkl_path: str | os.PathLike, out_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert ``pkl_path`` to ``{'g_ema': state_dict, 'latent_avg': w_avg}``, plus ``g`` and ``d`` when the
    pickle holds ``G`` and ``D`` (a training snapshot: fine-tune it with ``r2s-train-generator --ckpt``);
    saved atomically when ``out_path``."""
    source = str(pkl_path)
    data = read_ada_pkl(pkl_path)
    state, w_avg, cfg = ada_to_rosinality(module_state(data, "G_ema", source)[0], source)
    G = Generator(**cfg)
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{pkl_path}: converted weights do not fit the generator: {e}") from e
    ckpt: dict[str, Any] = {"g_ema": state}
    if w_avg is not None:
        ckpt["latent_avg"] = w_avg.float()
    if _present(data, "G"):
        ckpt["g"] = ada_to_rosinality(module_state(data, "G", source)[0], source)[0]
    if _present(data, "D"):
        d_ada, d_kwargs = module_state(data, "D", source)
        d_state, d_cfg = ada_d_to_rosinality(d_ada, source, d_kwargs)
        Discriminator(**d_cfg).load_state_dict(d_state, strict=True)
        ckpt["d"] = d_state
        if d_cfg["stddev_group"] != 4:
            log.warning("%s: D's minibatch-stddev group is %d (rosinality: 4); pass --mbstd_group %d when training",
                        pkl_path, d_cfg["stddev_group"], d_cfg["stddev_group"])
    if out_path is not None:
        atomic_torch_save(ckpt, out_path)
        log.info("wrote %s (%dx%d, n_latent %d%s)", out_path, cfg["size"], cfg["size"], G.n_latent,
                 ", with g and d" if "d" in ckpt else "")
    return ckpt
