"""The StyleGAN2 training loop: from scratch or fine-tuning, lazy regularization, G EMA, ADA, DDP, exact resume.

One iteration (StyleGAN2-ADA's phases, each its own optimizer step): D main (logistic loss on augmented
reals and fakes), D reg every ``r1_every`` iterations (R1 at the reals, weight γ/2·interval), G main
(non-saturating loss, plus the identity-consistency terms when on), G reg every ``pl_every`` iterations
(path length, weight·interval, batch / ``pl_batch_shrink``), then the G EMA. Adam's lr and betas of a
lazily regularized network are corrected by c = k/(k+1). ``--batch`` is the total over the ranks; each
rank draws its own z, noise and augmentation, and the gradients are averaged over the ranks by hand
(one all-reduce per step, as StyleGAN2-ADA; no DDP wrapper, whose hooks do not fit R1's double backward).

Checkpoints (``checkpoints/latest.pt``, atomic, every ``--snapshot_kimg`` and at the end) are rosinality
training checkpoints (``g``, ``g_ema``, ``d``, ``g_optim``, ``d_optim``, ``latent_avg``) that
``load_generator`` and every other tool read, plus ``RESUME_KEY`` with what an exact resume needs: the
counters, the data position, ADA's state, the path-length mean, every rank's RNG states and the options.
A run stopped after a snapshot and resumed logs the same per-iteration losses as the uninterrupted run
(same world size, batch and device).
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from render2style.generator_training.augment import AdaAugment, AdaController, DiffAugment
from render2style.generator_training.ema import ema_beta, update_ema
from render2style.generator_training.losses import (
    d_logistic_loss,
    g_nonsaturating_loss,
    lazy_adam_hyperparameters,
    lazy_weight,
    path_length_penalty,
    path_lengths,
    r1_penalty,
)
from render2style.options.generator_options import default_r1_gamma
from render2style.options.train_options import opts_to_dict
from render2style.stylegan2.checkpoint import infer_config, read_checkpoint
from render2style.stylegan2.discriminator import Discriminator, infer_discriminator_config
from render2style.stylegan2.model import Generator
from render2style.training import checkpointing as ckpt_io
from render2style.training.data import EpochSampler, SeededItems, make_loader
from render2style.training.distributed import DistEnv, setup_distributed, sum_over_ranks
from render2style.training.trainer import NonFiniteLossError, all_finite, fused_on_cuda, seed_everything
from render2style.training.visuals import save_grid
from render2style.utils.io import atomic_torch_save, sweep_temp_files

log = logging.getLogger(__name__)

#: the checkpoint entry holding the training state (the rosinality entries stay as the reference writes them)
RESUME_KEY = "r2s_generator_training"
#: seed of the z behind the sample grids and the identity drift (fixed for a run: the same faces every snapshot)
GRID_SEED = 123
LATENT_AVG_SAMPLES = 4096
# Options whose change between a run and its resume breaks the exactness of the continued loss trace.
RESUME_CRITICAL = ("seed", "batch", "lr", "beta1", "beta2", "r1_gamma", "r1_every", "pl_weight", "pl_every",
                   "pl_decay", "pl_batch_shrink", "ema_kimg", "ema_rampup", "mixing_prob", "amp", "augment",
                   "ada_target", "ada_interval", "ada_kimg", "diffaugment_policy", "mirror", "freeze_mapping",
                   "freeze_torgb", "consistency", "data", "dataset")


def build_dataset(opts: argparse.Namespace, size: int) -> Dataset:
    """``--data`` read as ``--dataset``, every image checked first (bad ones stop the run or, with
    ``--skip_corrupt``, are left out), centre-cropped and resized to ``size``."""
    from render2style.datasets import build_render_source
    from render2style.datasets.screening import screen_renders
    from render2style.generator_training.data import GANImages
    source = build_render_source(opts.dataset, opts.data, skip_corrupt=opts.skip_corrupt)
    usable = set(screen_renders(source, skip_corrupt=opts.skip_corrupt, what="images"))
    return GANImages(source, size, mirror=opts.mirror, exclude={r for r in source.ids if r not in usable})


def _load_state(module: nn.Module, state: dict, what: str, path: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(s.strip() for s in str(e).strip().splitlines()[1:3])
        raise ValueError(f"{path}: the '{what}' entry does not match the architecture ({detail})") from None


class GeneratorTrainer:
    """``GeneratorTrainer(opts).train()`` with ``opts`` from ``GeneratorTrainOptions``. ``dataset`` replaces the
    one built from ``--data`` (items: float ``[3, size, size]`` in [-1, 1]); ``consistency`` replaces the module
    ``generator_training.wang.build_identity_consistency`` builds when ``opts.consistency`` (tests)."""

    def __init__(self, opts: argparse.Namespace, dataset: Dataset | None = None,
                 consistency: nn.Module | None = None, env: DistEnv | None = None):
        self.opts = opts
        self.env = env or setup_distributed(opts.device)
        self.device = self.env.device
        self.exp_dir = Path(opts.exp_dir)
        self.ckpt_dir = self.exp_dir / "checkpoints"
        if opts.batch % self.env.world_size:
            raise ValueError(f"--batch {opts.batch} is not divisible by the {self.env.world_size} ranks")
        self.batch_gpu = opts.batch // self.env.world_size
        if self.batch_gpu % min(self.batch_gpu, opts.mbstd_group):
            raise ValueError(f"the batch per rank ({self.batch_gpu}) must be a multiple of --mbstd_group "
                             f"{opts.mbstd_group}")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        seed_everything(opts.seed)  # the same initialization on every rank
        resume_path = ckpt_io.find_resume(self.exp_dir, opts.resume)
        resume = read_checkpoint(resume_path, "a train_generator checkpoint") if resume_path else None
        start = read_checkpoint(opts.ckpt) if opts.ckpt and resume is None else None
        self._build_networks(resume, start)
        if opts.r1_gamma is None:
            opts.r1_gamma = default_r1_gamma(self.G.size)
            self._info("R1 γ = %.4g (10·(size/1024)² at %d²)", opts.r1_gamma, self.G.size)
        self._freeze()
        self._build_optimizers()
        self._build_augment()
        self.consistency = self._build_consistency(consistency, resume) if opts.consistency else None

        dataset = dataset if dataset is not None else build_dataset(opts, self.G.size)
        self._make_loader(dataset)
        self.step = self.cur_nimg = self.epoch = self.batch_in_epoch = 0
        self.pl_mean = torch.zeros((), device=self.device)
        self.history: list[dict[str, float]] = []        # per-iteration logs of this rank
        self._pending: list[dict[str, torch.Tensor]] = []  # iterations not yet moved to the host
        self._tick: list[dict[str, float]] = []
        gen = torch.Generator().manual_seed(GRID_SEED)
        self.grid_z = torch.randn(opts.n_samples, self.G.style_dim, generator=gen).to(self.device)
        if self.env.is_main:
            swept = sweep_temp_files(self.ckpt_dir)
            if swept:
                log.info("removed %d temp file(s) of interrupted checkpoint saves in %s", swept, self.ckpt_dir)
        if resume is not None:
            self._resume(resume, str(resume_path))
        elif self.env.rank:
            seed_everything(opts.seed + 1009 * self.env.rank)  # each rank its own z, noise and augmentation
        self.writer = SummaryWriter(str(self.exp_dir / "logs"), purge_step=self.step or None) \
            if self.env.is_main else None
        self._log_setup()

    # --- construction ----------------------------------------------------------------------------
    def _info(self, *args: Any) -> None:
        if self.env.is_main:
            log.info(*args)

    def _build_networks(self, resume: dict | None, start: dict | None) -> None:
        o = self.opts
        if resume is not None:
            state = resume.get(RESUME_KEY)
            if state is None:
                raise ValueError(f"{o.resume or self.ckpt_dir / ckpt_io.LATEST}: no '{RESUME_KEY}' entry (not written "
                                 "by r2s-train-generator); use --ckpt to fine-tune from its weights")
            g_cfg, d_cfg = state["g_config"], state["d_config"]
        elif start is not None:
            if "g_ema" not in start:
                raise ValueError(f"{o.ckpt}: no 'g_ema' entry (keys {sorted(start)[:8]}); expected a rosinality "
                                 "StyleGAN2 checkpoint")
            g_cfg = infer_config(start["g_ema"], o.ckpt)
            if "d" in start:
                d_cfg = infer_discriminator_config(start["d"], o.ckpt)
            else:
                d_cfg = dict(size=g_cfg["size"], channel_multiplier=g_cfg["channel_multiplier"],
                             channel_max=g_cfg["channel_max"])
        else:
            # the mapping's lr multiplier stays config-f's 0.01: it is part of the forward pass (weights are stored
            # divided by it) and every loader assumes it
            g_cfg = dict(size=o.size, style_dim=o.style_dim, n_mlp=o.n_mlp, channel_multiplier=o.channel_multiplier,
                         channel_max=o.channel_max)
            d_cfg = dict(size=o.size, channel_multiplier=o.channel_multiplier, channel_max=o.channel_max)
        if o.size is not None and o.size != g_cfg["size"]:
            raise ValueError(f"--size {o.size}, but the checkpoint's generator is {g_cfg['size']}² "
                             "(leave --size out to use it)")
        self.G = Generator(**g_cfg).to(self.device).train()
        self.D = Discriminator(**d_cfg, stddev_group=o.mbstd_group).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.latent_avg: torch.Tensor | None = None
        if start is not None:
            _load_state(self.G, start.get("g", start["g_ema"]), "g" if "g" in start else "g_ema", o.ckpt)
            _load_state(self.G_ema, start["g_ema"], "g_ema", o.ckpt)
            if "d" in start:
                _load_state(self.D, start["d"], "d", o.ckpt)
            else:
                log.warning("%s has no 'd' entry: training a freshly initialized discriminator "
                            "(Discriminator(%s))", o.ckpt, d_cfg)
            if "g" not in start:
                self._info("%s has no 'g' entry: G starts from g_ema", o.ckpt)
            self.latent_avg = start.get("latent_avg")

    def _freeze(self) -> None:
        frozen: list[nn.Module] = []
        if self.opts.freeze_mapping:
            frozen.append(self.G.style)
        if self.opts.freeze_torgb:
            frozen += [self.G.to_rgb1, *self.G.to_rgbs]
        for m in frozen:
            m.requires_grad_(False)
        self.g_params = [p for p in self.G.parameters() if p.requires_grad]
        self.d_params = list(self.D.parameters())
        self.frozen = [n for n, p in self.G.named_parameters() if not p.requires_grad]

    def _build_optimizers(self) -> None:
        o = self.opts
        g_every = o.pl_every if o.pl_weight > 0 else 0
        d_every = o.r1_every if o.r1_gamma > 0 else 0
        g_lr, g_betas = lazy_adam_hyperparameters(o.lr, (o.beta1, o.beta2), g_every)
        d_lr, d_betas = lazy_adam_hyperparameters(o.lr, (o.beta1, o.beta2), d_every)
        self.g_optim = torch.optim.Adam(self.g_params, lr=g_lr, betas=g_betas, eps=1e-8,
                                        fused=fused_on_cuda(self.g_params))
        self.d_optim = torch.optim.Adam(self.d_params, lr=d_lr, betas=d_betas, eps=1e-8,
                                        fused=fused_on_cuda(self.d_params))

    def _build_augment(self) -> None:
        o = self.opts
        self.ada: AdaController | None = None
        if o.augment == "ada":
            self.augment: nn.Module = AdaAugment(o.augment_p).to(self.device)
            self.ada = AdaController(self.augment, o.ada_target, o.ada_interval, o.ada_kimg)
        elif o.augment == "diffaugment":
            self.augment = DiffAugment(o.diffaugment_policy)
        else:
            self.augment = nn.Identity()

    def _build_consistency(self, given: nn.Module | None, resume: dict | None) -> nn.Module:
        """Wang et al.'s sketch/colour terms against ``g_real``, a frozen copy of the starting ``g_ema``."""
        o = self.opts
        if resume is not None:  # the starting generator is the --ckpt file the run began from
            from render2style.stylegan2.checkpoint import load_generator
            g_real = load_generator(o.ckpt, device=self.device)[0]
        else:
            g_real = copy.deepcopy(self.G_ema)
        g_real = g_real.eval().requires_grad_(False)
        if given is None:
            from render2style.generator_training.wang import WangLossSettings, build_identity_consistency
            given = build_identity_consistency(g_real=g_real, sketch_net=o.sketch_net,
                                               lpips_backbone=o.lpips_backbone,
                                               identity_weights=o.identity_weights, device=self.device,
                                               settings=WangLossSettings.at_color_size(o.color_size))
        self.g_real = g_real
        self._info("identity consistency (Wang et al.): %s", getattr(given, "metadata", type(given).__name__))
        return given.to(self.device)

    def _make_loader(self, dataset: Dataset) -> None:
        o, env = self.opts, self.env
        items = SeededItems(dataset, o.seed)
        self.sampler = EpochSampler(items, env.world_size, env.rank, o.seed)
        self.batches_per_epoch = len(self.sampler) // self.batch_gpu
        if self.batches_per_epoch == 0:
            raise ValueError(f"{len(dataset)} training images cannot fill one batch of {self.batch_gpu} on each of "
                             f"{env.world_size} ranks; lower --batch or add images")
        self.loader = make_loader(items, self.sampler, self.batch_gpu, o.workers, True, self.device.type == "cuda")
        self.n_images = len(dataset)

    def _log_setup(self) -> None:
        o = self.opts
        n_g = sum(p.numel() for p in self.G.parameters())
        n_d = sum(p.numel() for p in self.D.parameters())
        self._info("experiment %s on %s, world size %d; %d training images%s", self.exp_dir, self.device,
                   self.env.world_size, self.n_images, " (with x-flips)" if o.mirror else "")
        self._info("G %s: %.2fM parameters (%d frozen tensors); D %s: %.2fM", self.G.config, n_g / 1e6,
                   len(self.frozen), self.D.config, n_d / 1e6)
        self._info("preset %s: batch %d (%d per rank), lr %g, betas (%g, %g), R1 γ %g every %d, path length %g "
                   "every %d, EMA %g kimg (ramp-up %s), mixing %g, augment %s, amp %s, until %g kimg", o.preset,
                   o.batch, self.batch_gpu, o.lr, o.beta1, o.beta2, o.r1_gamma, o.r1_every, o.pl_weight, o.pl_every,
                   o.ema_kimg, o.ema_rampup, o.mixing_prob, o.augment, o.amp, o.kimg)

    # --- one iteration ---------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.opts.amp == "bf16")

    def sample_wplus(self, G: Generator, n: int) -> torch.Tensor:
        """W+ of ``n`` random z, with style mixing (a second z from a random layer on) at ``mixing_prob``."""
        w = G.mapping(torch.randn(n, G.style_dim, device=self.device))
        w = w.unsqueeze(1).repeat(1, G.n_latent, 1)
        if self.opts.mixing_prob > 0:
            cutoff = int(torch.randint(1, G.n_latent, ()))
            if float(torch.rand(())) >= self.opts.mixing_prob:
                cutoff = G.n_latent
            w2 = G.mapping(torch.randn(n, G.style_dim, device=self.device))
            w = G.style_mix(w, w2, cutoff)
        return w

    def _average_gradients(self, params: list[nn.Parameter]) -> None:
        if not self.env.distributed:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
        dist.all_reduce(flat)
        flat /= self.env.world_size
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.view_as(p)

    def _optimize(self, loss: torch.Tensor, optim: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
        optim.zero_grad(set_to_none=True)
        loss.backward()
        self._average_gradients(params)
        optim.step()

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """One iteration on the reals of this rank; returns its loss terms (device tensors) and ADA's p."""
        o, G, D = self.opts, self.G, self.D
        logs: dict[str, torch.Tensor | float] = {}
        # D main
        D.requires_grad_(True)
        with torch.no_grad(), self._autocast():
            fake = G.synthesis(self.sample_wplus(G, self.batch_gpu), noise_mode="random")
        with self._autocast():
            real_logits = D(self.augment(real)).float()
            fake_logits = D(self.augment(fake)).float()
        d_loss = d_logistic_loss(real_logits, fake_logits)
        self._optimize(d_loss, self.d_optim, self.d_params)
        logs.update(d_loss=d_loss.detach(), real_score=real_logits.detach().mean(),
                    fake_score=fake_logits.detach().mean())
        if self.ada is not None:
            logs["augment_p"] = self.augment.p
            self.ada.accumulate(real_logits.detach().sign().sum(), real_logits.shape[0],
                                reduce=lambda t: sum_over_ranks(t, self.env))
        # D reg: lazy R1
        if o.r1_gamma > 0 and self.step % o.r1_every == 0:
            real_in = real.detach().requires_grad_(True)
            with self._autocast():
                logits = D(self.augment(real_in))
            r1 = r1_penalty(logits, real_in)
            self._optimize(lazy_weight(o.r1_gamma / 2, o.r1_every) * r1, self.d_optim, self.d_params)
            logs["r1"] = r1.detach()
        # G main
        D.requires_grad_(False)
        with self._autocast():
            w_plus = self.sample_wplus(G, self.batch_gpu)
            fake_logits = D(self.augment(G.synthesis(w_plus, noise_mode="random"))).float()
        g_loss = g_nonsaturating_loss(fake_logits)
        logs["g_loss"] = g_loss.detach()
        if self.consistency is not None:
            terms = self.consistency(w_plus, G)
            g_loss = g_loss + terms["total"]
            logs.update({f"consistency_{k}": v.detach().float() for k, v in terms.items()})
        self._optimize(g_loss, self.g_optim, self.g_params)
        # G reg: lazy path length
        if o.pl_weight > 0 and self.step % o.pl_every == 0:
            n = max(1, self.batch_gpu // o.pl_batch_shrink)
            with self._autocast():
                w_plus = self.sample_wplus(G, n)
                if not w_plus.requires_grad:  # a frozen mapping network: the lengths are still taken in W+
                    w_plus.requires_grad_(True)
                images = G.synthesis(w_plus, noise_mode="random")
            lengths = path_lengths(images, w_plus)
            penalty, self.pl_mean = path_length_penalty(lengths, self.pl_mean, o.pl_decay)
            self.pl_mean = self.pl_mean.detach()
            self._optimize(lazy_weight(o.pl_weight, o.pl_every) * penalty, self.g_optim, self.g_params)
            logs.update(pl_penalty=penalty.detach(), pl_length=lengths.detach().mean())
        # G EMA
        update_ema(self.G_ema, G, ema_beta(o.batch, o.ema_kimg, self.cur_nimg, o.ema_rampup))
        return logs

    # --- the loop --------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.cur_nimg >= self.opts.kimg * 1000

    def train(self) -> list[dict[str, float]]:
        """Train until ``--kimg``; returns this rank's per-iteration logs (also ``self.history``)."""
        o = self.opts
        if self.done:
            self._info("nothing to do: %d images seen >= --kimg %g", self.cur_nimg, o.kimg)
            return self.history
        if self.step == 0 and self.env.is_main:
            self._save_reals()
            self._save_samples()
        tick_nimg, tick_time = self.cur_nimg, time.perf_counter()
        next_snapshot = self._next_multiple(o.snapshot_kimg)
        while not self.done:
            self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * self.batch_gpu)
            for real in self.loader:
                logs = self.train_step(real.to(self.device, non_blocking=True))
                self.step += 1
                self.cur_nimg += o.batch
                self.batch_in_epoch += 1
                if self.batch_in_epoch == self.batches_per_epoch:
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                self._pending.append(logs)
                if self.cur_nimg >= tick_nimg + o.tick_kimg * 1000 or self.done:
                    self._end_tick(self.cur_nimg - tick_nimg, time.perf_counter() - tick_time)
                    tick_nimg, tick_time = self.cur_nimg, time.perf_counter()
                if self.cur_nimg >= next_snapshot or self.done:
                    snapshot_start = time.perf_counter()
                    self._flush()
                    self.save()
                    if self.env.is_main:
                        self._save_samples()
                    next_snapshot = self._next_multiple(o.snapshot_kimg)
                    tick_time += time.perf_counter() - snapshot_start  # img/s counts training time only
                if self.done:
                    break
        if self.writer is not None:
            self.writer.flush()
        return self.history

    def _next_multiple(self, kimg: float) -> float:
        every = kimg * 1000
        return (math.floor(self.cur_nimg / every) + 1) * every

    def _flush(self) -> None:
        """Move the pending iterations' logs to the host (one sync) and check them."""
        if not self._pending:
            return
        first = self.step - len(self._pending) + 1
        keys = [(i, k) for i, logs in enumerate(self._pending) for k, v in logs.items() if torch.is_tensor(v)]
        values = torch.stack([self._pending[i][k].float() for i, k in keys]).cpu().tolist() if keys else []
        host = dict(zip(keys, values))
        for i, logs in enumerate(self._pending):
            row = {"step": first + i, **{k: host.get((i, k), v) for k, v in logs.items()}}
            if any(not math.isfinite(v) for v in row.values()):
                raise NonFiniteLossError(f"non-finite loss at iteration {row['step']} ({row}); stopped without "
                                         f"saving (last good checkpoint: {self.ckpt_dir / ckpt_io.LATEST}, if any). "
                                         "Try a lower --lr, a larger --r1_gamma, or --amp none")
            self.history.append(row)
            self._tick.append(row)
        self._pending = []

    def _end_tick(self, nimg: int, seconds: float) -> None:
        self._flush()
        rows, self._tick = self._tick, []
        keys = list(dict.fromkeys(k for r in rows for k in r if k != "step"))
        mean = {k: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows) for k in keys}
        mean = self._mean_over_ranks(mean)
        img_s = nimg / max(seconds, 1e-9)
        if self.ada is not None and self.ada.last_rt is not None:
            mean["ada_rt"] = self.ada.last_rt
        if not self.env.is_main:
            return
        kimg = self.cur_nimg / 1000
        for k, v in mean.items():
            self.writer.add_scalar(f"train/{k}", v, self.step)
        self.writer.add_scalar("progress/kimg", kimg, self.step)
        self.writer.add_scalar("timing/img_per_s", img_s, self.step)
        if self.consistency is not None and hasattr(self.consistency, "identity_drift"):
            with torch.no_grad():
                drift = float(self.consistency.identity_drift(self._grid_wplus(), self.G_ema))
            self.writer.add_scalar("train/identity_drift", drift, self.step)
            mean["identity_drift"] = drift
        terms = "  ".join(f"{k} {v:.4g}" for k, v in mean.items())
        log.info("kimg %.1f/%g (iteration %d)  %s  %.1f img/s", kimg, self.opts.kimg, self.step, terms, img_s)

    def _mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        if not self.env.distributed:
            return values
        keys = sorted(values)
        t = sum_over_ranks(torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device),
                           self.env)
        return {k: float(v) / self.env.world_size for k, v in zip(keys, t.cpu())}

    # --- images, checkpoints ---------------------------------------------------------------------
    def _grid_wplus(self) -> torch.Tensor:
        return self.G_ema.mapping(self.grid_z).unsqueeze(1).repeat(1, self.G_ema.n_latent, 1)

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """G_ema's images of the run's fixed z (stored noise): ``[n_samples, 3, size, size]``."""
        return torch.cat([self.G_ema.synthesis(w, noise_mode="const") for w in self._grid_wplus().split(16)])

    def _write_grid(self, images: torch.Tensor, name: str, tag: str) -> None:
        nrow = max(1, int(math.ceil(math.sqrt(images.shape[0]))))
        grid = make_grid(((images.float().cpu().clamp(-1, 1) + 1) / 2), nrow=nrow, padding=2, pad_value=1.0)
        self.writer.add_image(tag, grid, self.step)
        save_grid(grid, self.exp_dir / "logs" / "images" / name)

    def _save_samples(self) -> None:
        self._write_grid(self.samples(), f"fakes_{self.cur_nimg // 1000:06d}kimg.png", "images/fakes_fixed_z")

    def _save_reals(self) -> None:
        dataset = self.loader.dataset.dataset
        n = min(self.opts.n_samples, len(dataset))
        self._write_grid(torch.stack([dataset[i] for i in range(n)]), "reals.png", "images/reals")

    def checkpoint(self) -> dict[str, Any]:
        """The rosinality training checkpoint with this run's resume state (``RESUME_KEY``)."""
        o = self.opts
        rng = ckpt_io.rng_state()
        if self.env.distributed:
            gathered: list[Any] = [None] * self.env.world_size
            dist.all_gather_object(gathered, rng)
            rng_all = gathered
        else:
            rng_all = [rng]
        latent_avg = self.G_ema.mean_latent(LATENT_AVG_SAMPLES, seed=o.seed).cpu()
        return {
            "g": self.G.state_dict(), "g_ema": self.G_ema.state_dict(), "d": self.D.state_dict(),
            "g_optim": self.g_optim.state_dict(), "d_optim": self.d_optim.state_dict(), "latent_avg": latent_avg,
            RESUME_KEY: {
                "step": self.step, "cur_nimg": self.cur_nimg, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "pl_mean": float(self.pl_mean),
                "ada": self.ada.state_dict() if self.ada is not None else None, "rng": rng_all,
                "world_size": self.env.world_size, "opts": opts_to_dict(o), "g_config": dict(self.G.config),
                "d_config": dict(self.D.config), "frozen": self.frozen,
                "consistency": getattr(self.consistency, "metadata", None),
            },
        }

    def save(self) -> Path | None:
        """Write ``checkpoints/latest.pt`` (and ``snapshot-<kimg>.pt`` with ``--keep_snapshots``) on rank 0."""
        ckpt = self.checkpoint()  # every rank: the RNG states are gathered
        if not self.env.is_main:
            return None
        if not bool(all_finite(list(ckpt["g"].values()) + list(ckpt["d"].values()))):
            raise NonFiniteLossError(f"{self.ckpt_dir}: not written, the weights are not finite at iteration "
                                     f"{self.step}")
        path = self.ckpt_dir / ckpt_io.LATEST
        atomic_torch_save(ckpt, path)
        if self.opts.keep_snapshots:
            atomic_torch_save(ckpt, self.ckpt_dir / f"snapshot-{self.cur_nimg // 1000:06d}kimg.pt")
        log.info("saved %s (%.1f kimg, iteration %d)", path, self.cur_nimg / 1000, self.step)
        return path

    def _resume(self, ckpt: dict[str, Any], path: str) -> None:
        state = ckpt[RESUME_KEY]
        for module, key in ((self.G, "g"), (self.G_ema, "g_ema"), (self.D, "d")):
            _load_state(module, ckpt[key], key, path)
        self.g_optim.load_state_dict(ckpt["g_optim"])
        self.d_optim.load_state_dict(ckpt["d_optim"])
        self.latent_avg = ckpt.get("latent_avg")
        self.step, self.cur_nimg = state["step"], state["cur_nimg"]
        self.epoch, self.batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        self.pl_mean = torch.tensor(float(state["pl_mean"]), device=self.device)
        if self.ada is not None and state.get("ada"):
            self.ada.load_state_dict(state["ada"])
        rng = state["rng"]
        same_world = state.get("world_size", 1) == self.env.world_size
        ckpt_io.set_rng_state(rng[self.env.rank] if same_world else rng[0])
        if not same_world and self.env.rank:
            seed_everything(self.opts.seed + 1009 * self.env.rank + self.step)
        saved, now = state.get("opts") or {}, opts_to_dict(self.opts)
        changed = [k for k in RESUME_CRITICAL if k in saved and saved[k] != now.get(k)]
        if not same_world:
            changed.append("world size")
        self._info("resumed %s at %.1f kimg (iteration %d)", path, self.cur_nimg / 1000, self.step)
        if changed and self.env.is_main:
            log.warning("options changed since the checkpoint (%s): training continues, but the loss trace will "
                        "differ from an uninterrupted run", ", ".join(changed))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
