"""The pSp model: encoder -> W+ codes (+ latent_avg) -> fixed StyleGAN2 decoder, and its checkpoint IO.

Checkpoint layout (official pSp, also written by render2style):
``{'state_dict': {'encoder.*', 'decoder.*'}, 'opts': dict, 'latent_avg': [n_styles or 1, 512]}``;
our trainer adds its own keys (optimizer, step, ...), which loading ignores.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

import torch
from torch import nn

from render2style.encoders.psp_encoders import build_encoder
from render2style.options.demo_names import DEMO_KINDS, demo_kind
from render2style.pretrained import KNOWN_WEIGHTS, MissingWeightsError, require_known_weights
from render2style.stylegan2 import Generator, infer_config, load_demo, load_generator, read_checkpoint
from render2style.stylegan2.checkpoint import WEIGHTS_HELP

log = logging.getLogger(__name__)

IR_SE50_HELP = f"the ArcFace IR-SE50 backbone '{KNOWN_WEIGHTS['ir_se50'].file}' ({KNOWN_WEIGHTS['ir_se50'].source})"

#: pSp option names and their defaults, plus ours (demo_generator, demo_seed, ir_se50_weights,
#: encoder_num_layers, resolution, style_channels, latent_avg_samples). start_from_latent_avg defaults
#: to True as in pSp's released models. ``resolution`` (encoder input side) and ``style_channels``
#: (map2style width) size the encoder; their defaults, 256 and 512, are pSp's architecture, so an
#: official checkpoint (which stores neither) rebuilds exactly.
DEFAULT_OPTS: dict[str, Any] = dict(
    encoder_type="GradualStyleEncoder",
    encoder_num_layers=50,
    resolution=256,
    style_channels=512,
    input_nc=3,
    output_size=1024,
    start_from_latent_avg=True,
    learn_in_w=False,
    stylegan_weights=None,
    checkpoint_path=None,
    ir_se50_weights=None,
    demo_generator=None,
    demo_seed=0,
    latent_avg_samples=100_000,
)

OptsLike = Union[argparse.Namespace, Mapping[str, Any]]


def resolve_opts(opts: OptsLike) -> argparse.Namespace:
    """Namespace with every option of ``DEFAULT_OPTS`` (missing ones filled in; extra ones kept).

    ``demo_generator`` is None (a generator file), 'faces' (the shipped demo face generator) or 'random' (the
    seeded one); ``stylegan_weights`` 'demo' / 'demo-random' select them, and ``True`` (checkpoints written
    before the face generator shipped) means 'random'.
    """
    d = dict(vars(opts) if isinstance(opts, argparse.Namespace) else opts)
    for k, v in DEFAULT_OPTS.items():
        if d.get(k) is None:
            d[k] = v
    kind = demo_kind(d["stylegan_weights"])
    if kind is not None:
        d["demo_generator"] = kind
    elif d["demo_generator"] is True:
        d["demo_generator"] = "random"
    elif d["demo_generator"] is False:
        d["demo_generator"] = None
    if d["demo_generator"] not in (None, *DEMO_KINDS):
        raise ValueError(f"demo_generator must be one of {DEMO_KINDS} or None, got {d['demo_generator']!r}")
    return argparse.Namespace(**d)


PSP_CHECKPOINT_HELP = ("an encoder checkpoint in the pSp layout: one written by train_encoder.py "
                       "(<exp_dir>/checkpoints/best_model.pt) or an official pSp model such as psp_ffhq_encode.pt "
                       "(github.com/eladrich/pixel2style2pixel, 'Pretrained Models')")


def read_psp_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A pSp-layout checkpoint (weights_only load) with its layout checked."""
    ckpt = read_checkpoint(path, PSP_CHECKPOINT_HELP)
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping) or not any(k.startswith("encoder.") for k in state):
        raise ValueError(f"{path}: not a pSp checkpoint (expected a 'state_dict' with 'encoder.*' and "
                         f"'decoder.*' keys; top-level keys: {sorted(ckpt)[:8]})")
    return ckpt


def _sub_state(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def load_ir_se50_weights(encoder: nn.Module, path: str | os.PathLike) -> None:
    """Initialize ``encoder.input_layer`` / ``encoder.body`` from an ArcFace backbone state dict.

    A 4-channel input layer gets the RGB filters on channels 0..2 and zeros on the mask channel,
    so at the start of training the encoder sees exactly what the ArcFace network sees. An input
    layer with fewer than 3 channels keeps its random initialization (as pSp does for label maps).
    """
    path = require_known_weights(path, "ir_se50")
    n_units = len(encoder.body)
    if n_units != 24:
        raise ValueError(f"{path}: IR-SE50 weights initialize a 50-layer backbone, but this encoder's body has "
                         f"{n_units} units (encoder_num_layers != 50); use ir_se50_weights='none' for random init")
    src = read_checkpoint(path, IR_SE50_HELP)
    target = {k: v for k, v in encoder.state_dict().items() if k.startswith(("input_layer.", "body."))}
    # Files saved before PyTorch 0.4.1 have no BatchNorm ``num_batches_tracked`` (a counter, unused in eval).
    missing = sorted(k for k in set(target) - set(src) if not k.endswith("num_batches_tracked"))
    if missing:
        raise ValueError(f"{path}: not an IR-SE backbone matching the encoder: {len(missing)} keys missing, "
                         f"e.g. {missing[:3]}. Expected {IR_SE50_HELP}.")
    loaded = {}
    for k, t in target.items():
        if k not in src:
            continue
        v = src[k]
        if k == "input_layer.0.weight" and v.shape[1] == 3 and t.shape[1] != 3:
            if t.shape[1] < 3:
                log.info("encoder input layer (%d channels) left randomly initialized", t.shape[1])
                continue
            v = torch.cat([v, v.new_zeros(v.shape[0], t.shape[1] - 3, *v.shape[2:])], dim=1)
        if v.shape != t.shape:
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, the encoder expects {tuple(t.shape)}")
        loaded[k] = v
    encoder.load_state_dict(loaded, strict=False)
    log.info("encoder backbone initialized from %s (%d tensors)", path, len(loaded))


def build_decoder(opts: argparse.Namespace, checkpoint: Mapping[str, Any] | None = None
                  ) -> tuple[Generator, torch.Tensor | None]:
    """The StyleGAN2 decoder and the generator file's ``latent_avg`` (None unless read from a file).

    From a checkpoint the architecture is read from its decoder weights (loaded later, strictly).
    """
    if checkpoint is not None:
        decoder_state = _sub_state(checkpoint["state_dict"], "decoder")
        return Generator(**infer_config(decoder_state, f"{opts.checkpoint_path} (decoder)")), None
    if opts.demo_generator:
        G, latent_avg, _ = load_demo(opts.demo_generator, seed=opts.demo_seed)
        return G, latent_avg
    if opts.stylegan_weights is not None:
        return load_generator(opts.stylegan_weights, size=opts.output_size)
    raise MissingWeightsError(f"pSp needs a StyleGAN2 generator: pass stylegan_weights ({WEIGHTS_HELP}), "
                              "a checkpoint_path, or a demo generator (stylegan_weights='demo' or 'demo-random')")


class pSp(nn.Module):  # noqa: N801  (pSp's name)
    """pixel2style2pixel: ``images = decoder(encoder(x) + latent_avg)``.

    Build from options (pSp names; see ``DEFAULT_OPTS``), or with ``pSp.from_checkpoint(path)``.
    Weights come from, in order: ``opts.checkpoint_path`` (a pSp checkpoint), else the pretrained
    pieces: the decoder from ``opts.stylegan_weights`` or the demo generator, the encoder backbone
    from ``opts.ir_se50_weights`` (``"none"`` = random initialization, on purpose).
    ``checkpoint`` passes checkpoint contents already read from ``opts.checkpoint_path``.
    """

    def __init__(self, opts: OptsLike, checkpoint: Mapping[str, Any] | None = None):
        super().__init__()
        self.opts = opts = resolve_opts(opts)
        if checkpoint is None and opts.checkpoint_path is not None:
            checkpoint = read_psp_checkpoint(opts.checkpoint_path)
        self.decoder, file_latent_avg = build_decoder(opts, checkpoint)
        if opts.output_size != self.decoder.size:
            log.info("output_size set to %d, the decoder's resolution (was %s)", self.decoder.size, opts.output_size)
            opts.output_size = self.decoder.size
        self.n_styles = opts.n_styles = self.decoder.n_latent
        if (opts.encoder_type == "BackboneEncoderUsingLastLayerIntoW") != bool(opts.learn_in_w):
            raise ValueError("learn_in_w must be set exactly when encoder_type is BackboneEncoderUsingLastLayerIntoW "
                             f"(got encoder_type={opts.encoder_type}, learn_in_w={opts.learn_in_w})")
        self.encoder = build_encoder(opts.encoder_type, opts.encoder_num_layers, "ir_se", self.n_styles, opts.input_nc,
                                     opts.resolution, opts.style_channels)
        self.face_pool = nn.AdaptiveAvgPool2d((256, 256))

        if checkpoint is not None:
            self._load_state(checkpoint["state_dict"], opts.checkpoint_path)
            latent_avg, source = checkpoint.get("latent_avg"), opts.checkpoint_path or "the checkpoint"
        else:
            self._init_encoder()
            latent_avg, source = file_latent_avg, opts.stylegan_weights
        if latent_avg is None:
            log.info("latent_avg: none stored; computing the mean of %d mapped z with the decoder's mapping network",
                     opts.latent_avg_samples)
            latent_avg = self.decoder.mean_latent(opts.latent_avg_samples, seed=0)
        self.register_buffer("latent_avg", self._shape_latent_avg(latent_avg, source), persistent=False)

    # --- construction helpers --------------------------------------------------------------------
    def _load_state(self, state: Mapping[str, torch.Tensor], source: Any) -> None:
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{source}: checkpoint does not match the model built from its opts "
                             f"(encoder_type={self.opts.encoder_type}, encoder_num_layers="
                             f"{self.opts.encoder_num_layers}, input_nc={self.opts.input_nc}, resolution="
                             f"{self.opts.resolution}, style_channels={self.opts.style_channels}, output_size="
                             f"{self.opts.output_size}): {e}") from e

    def _init_encoder(self) -> None:
        path = self.opts.ir_se50_weights
        if isinstance(path, str) and path.lower() == "none":
            log.warning("encoder backbone randomly initialized (ir_se50_weights='none')")
        elif path is None and self.opts.demo_generator:
            log.warning("DEMO: encoder backbone randomly initialized (no ir_se50_weights given)")
        elif path is None:
            raise MissingWeightsError(f"the encoder backbone needs {IR_SE50_HELP}: pass ir_se50_weights=PATH "
                                      "(or 'none' to start from random weights on purpose)")
        else:
            load_ir_se50_weights(self.encoder, path)

    def _shape_latent_avg(self, latent_avg: torch.Tensor, source: Any) -> torch.Tensor:
        """[1, 512] for learn_in_w, else [n_styles, 512] (a single W is repeated, as pSp does); ``source``
        (the file it came from) is named in errors."""
        dim = self.decoder.style_dim
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() % dim:
            found = tuple(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
            raise ValueError(f"{source}: latent_avg must be [1 or {self.n_styles}, {dim}], found {found}")
        latent_avg = latent_avg.detach().float().reshape(-1, dim)
        rows = 1 if self.opts.learn_in_w else self.n_styles
        if latent_avg.shape[0] == 1:
            return latent_avg.repeat(rows, 1)
        if latent_avg.shape[0] != self.n_styles:
            raise ValueError(f"{source}: latent_avg has {latent_avg.shape[0]} rows, expected 1 or {self.n_styles} "
                             f"(the generator's n_styles)")
        return latent_avg[:rows].clone()

    # --- forward ---------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, encoder: nn.Module | None = None) -> torch.Tensor:
        """Codes for images x [B, input_nc, H, W] in [-1, 1]: W+ [B, n_styles, 512] (W [B, 512] if learn_in_w).

        ``encoder``: a module computing what ``self.encoder`` does (e.g. its ``encoders.fold.inference_encoder``).
        """
        codes = (encoder or self.encoder)(x)
        if self.opts.start_from_latent_avg:
            codes = codes + self.latent_avg
        return codes

    def forward(self, x: torch.Tensor, resize: bool = True, latent_mask: Sequence[int] | None = None,
                inject_latent: torch.Tensor | None = None, return_latents: bool = False,
                alpha: float | None = None, randomize_noise: bool = False, input_code: bool = False):
        """pSp's forward: images [B, 3, S, S] (and the W+ latents when ``return_latents``).

        ``latent_mask``: W+ layers replaced by ``inject_latent`` (blended by ``alpha`` when given) or
        zeroed. ``input_code``: x are Z codes for the decoder's mapping, as in pSp. ``resize``: outputs
        larger than 256 are average-pooled to 256x256.
        """
        codes = x if input_code else self.encode(x)
        if latent_mask is not None:
            if codes.ndim == 2:
                codes = codes.unsqueeze(1).repeat(1, self.n_styles, 1)
            codes = codes.clone()
            for i in latent_mask:
                if inject_latent is None:
                    codes[:, i] = 0
                elif alpha is None:
                    codes[:, i] = inject_latent[:, i]
                else:
                    codes[:, i] = alpha * inject_latent[:, i] + (1 - alpha) * codes[:, i]
        images, latents = self.decoder([codes], input_is_latent=not input_code,
                                       randomize_noise=randomize_noise, return_latents=return_latents)
        if resize and images.shape[-1] > 256:
            images = self.face_pool(images)
        return (images, latents) if return_latents else images

    # --- checkpoints -----------------------------------------------------------------------------
    def checkpoint_dict(self) -> dict[str, Any]:
        """``{'state_dict', 'opts', 'latent_avg'}``: the pSp layout (opts as a plain dict)."""
        plain = (str, int, float, bool, type(None), list, tuple, dict)
        opts = {k: (v if isinstance(v, plain) else str(v)) for k, v in vars(self.opts).items()}  # weights_only-safe
        return {"state_dict": self.state_dict(), "opts": opts, "latent_avg": self.latent_avg.detach().cpu().clone()}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu", **overrides: Any) -> pSp:
        """Load an official pSp checkpoint or one of ours (strict keys), in eval mode.

        The architecture comes from the checkpoint's ``opts`` (missing pSp options get pSp's defaults)
        and its decoder weights; ``overrides`` replace options (e.g. ``start_from_latent_avg``).
        """
        ckpt = read_psp_checkpoint(path)
        saved = ckpt.get("opts") or {}
        opts = dict(vars(saved) if isinstance(saved, argparse.Namespace) else saved)
        opts.update(overrides)
        opts["checkpoint_path"] = str(path)
        return cls(opts, checkpoint=ckpt).to(device).eval()
