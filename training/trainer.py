"""The training loop of the amortized encoder: pSp's Coach, plus DDP, AMP and exact resume.

One process, or one per GPU/CPU rank under ``torchrun`` (``--batch_size`` is per rank: the effective
batch is ``batch_size × world_size``). Rank 0 alone writes logs, image grids and checkpoints;
validation runs on every rank over a disjoint shard of the test split and is summed over ranks.

Exact resume: the data order is a function of ``(seed, epoch)``, each item's augmentation of
``(seed, epoch, index)`` (``training.data``), and the checkpoint holds the model, optimizer, scaler,
RNG states and the position in the epoch. A run stopped after a saved step and resumed produces the
same per-step losses as the uninterrupted run, with any number of workers — for the same world size,
batch size and device (the RNG states saved are rank 0's; every rank draws the same numbers).
"""
from __future__ import annotations

import argparse
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from render2style.options.train_options import opts_to_dict
from render2style.training import checkpointing as ckpt_io
from render2style.training.data import EpochSampler, SeededItems, ShardSampler, make_loader
from render2style.training.distributed import DistEnv, all_reduce_sum, broadcast_flag, setup_distributed, sum_over_ranks
from render2style.training.objective import EncoderObjective
from render2style.training.ranger import Ranger
from render2style.training.visuals import comparison_grid, save_grid
from render2style.utils.io import sweep_temp_files

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Options whose change between a run and its resume breaks the exactness of the continued loss trace.
RESUME_CRITICAL = ("seed", "batch_size", "learning_rate", "optim_name", "amp", "encoder_type", "input_nc",
                   "resolution", "l2_lambda", "lpips_lambda", "id_lambda", "latent_lambda", "w_norm_lambda",
                   "mask_losses", "flip_p", "train_decoder")
# Options that define the network's shape (a resumed checkpoint must match them).
ARCHITECTURE_OPTS = ("encoder_type", "encoder_num_layers", "input_nc", "resolution", "style_channels",
                     "output_size", "learn_in_w")


#: steps in a row with non-finite gradients (and a finite loss) after which training stops; fp16's
#: GradScaler needs a few such steps to lower its scale, many mean the model or the data is broken
MAX_SKIPPED_STEPS = 20


class NonFiniteLossError(FloatingPointError):
    """The loss, the gradients or the weights became NaN or Inf; the trainer stopped without saving the bad state."""


def all_finite(tensors) -> torch.Tensor:
    """Device bool: every floating-point tensor is finite (one fused norm per tensor, no host sync)."""
    tensors = [t for t in tensors if t is not None and t.is_floating_point()]
    if not tensors:
        return torch.tensor(True)
    return torch.stack([n.float() for n in torch._foreach_norm(tensors)]).isfinite().all()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(opts: argparse.Namespace) -> nn.Module:
    from render2style.encoders.psp import pSp
    return pSp(opts)


def build_datasets(opts: argparse.Namespace, n_latent: int) -> tuple[Dataset, Dataset]:
    """Train and test splits of ``opts.dataset_type`` read from ``opts.renders`` (+ ``opts.targets``); every
    render is checked first (``screen_renders``): bad ones stop here, or are left out with ``--skip_corrupt``."""
    from render2style.datasets import EncoderDataset, build_render_source
    from render2style.datasets.screening import screen_renders
    source = build_render_source(opts.dataset_type, opts.renders, skip_corrupt=opts.skip_corrupt)
    usable = set(screen_renders(source, skip_corrupt=opts.skip_corrupt))  # before any compute
    common = dict(resolution=opts.resolution, input_nc=opts.input_nc, skip_corrupt=opts.skip_corrupt,
                  n_latent=n_latent, exclude={r for r in source.ids if r not in usable})
    train = EncoderDataset(source, opts.targets, "train", flip_p=opts.flip_p, **common)
    test = EncoderDataset(source, opts.targets, "test", flip_p=0.0, **common)
    return train, test


def fused_on_cuda(params: list[nn.Parameter]) -> bool | None:
    """torch.optim's ``fused`` flag for Adam: True (one fused kernel per step) when every parameter is on CUDA,
    else None (torch's default: foreach on CUDA, a per-parameter loop on the CPU)."""
    return True if params and all(p.is_cuda for p in params) else None


def build_optimizer(opts: argparse.Namespace, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if opts.optim_name == "adam":
        return torch.optim.Adam(params, lr=opts.learning_rate, fused=fused_on_cuda(params))
    if opts.optim_name == "ranger":
        return Ranger(params, lr=opts.learning_rate)
    raise ValueError(f"--optim_name must be 'ranger' or 'adam', got {opts.optim_name!r}")


class Trainer:
    """``Trainer(opts).train()``. ``net``, ``datasets`` and ``objective`` replace what would be built from
    ``opts`` (tests use tiny models); ``net`` must follow pSp's interface (``encoder``, ``decoder``,
    ``latent_avg``, ``forward(x, resize, return_latents)``, ``checkpoint_dict()``)."""

    def __init__(self, opts: argparse.Namespace, net: nn.Module | None = None,
                 datasets: tuple[Dataset, Dataset] | None = None,
                 objective: nn.Module | None = None, env: DistEnv | None = None):
        self.opts = opts
        if opts.save_interval is None:
            opts.save_interval = opts.val_interval
        self.env = env or setup_distributed(opts.device)
        self.device = self.env.device
        self.exp_dir = Path(opts.exp_dir)
        self.ckpt_dir = self.exp_dir / "checkpoints"

        seed_everything(opts.seed)  # identical model initialization on every rank
        self.net = (net if net is not None else build_model(opts)).to(self.device)
        self.objective = (objective if objective is not None else EncoderObjective(opts, self.device)).to(self.device)
        self.net.decoder.requires_grad_(bool(opts.train_decoder))
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(opts, self.params)
        self.amp_dtype = AMP_DTYPES.get(opts.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=opts.amp == "fp16")
        self.model = self._wrap_ddp(self.net)

        train_set, test_set = datasets if datasets is not None else build_datasets(opts, self.net.decoder.n_latent)
        self._make_loaders(train_set, test_set)

        self.step = self.epoch = self.batch_in_epoch = 0
        self.skipped_steps = self._skipped_in_a_row = 0  # updates skipped for non-finite gradients
        self.best_val_loss: float | None = None
        self.history: list[dict[str, float]] = []  # per-step training logs of this rank
        self._since_board: list[dict[str, float]] = []  # logs of the steps not yet written to the board
        if self.env.is_main:  # temp files of saves a kill interrupted (only rank 0 ever writes here)
            swept = sweep_temp_files(self.ckpt_dir)
            if swept:
                log.info("removed %d temp file(s) of interrupted checkpoint saves in %s", swept, self.ckpt_dir)
        resume = ckpt_io.find_resume(self.exp_dir, opts.resume)
        if resume is not None:
            self._resume(resume)
        # purge_step: after a resume the board drops what the interrupted run logged after this step
        self.writer = SummaryWriter(str(self.exp_dir / "logs"), purge_step=self.step + 1 if self.step else None) \
            if self.env.is_main else None
        self._log_setup()

    # --- construction ----------------------------------------------------------------------------
    def _wrap_ddp(self, net: nn.Module) -> nn.Module:
        if not self.env.distributed:
            return net
        if self.opts.sync_bn:
            if self.device.type == "cuda":
                net.encoder = nn.SyncBatchNorm.convert_sync_batchnorm(net.encoder)
            else:
                log.warning("--sync_bn: SyncBatchNorm needs CUDA; on CPU each rank normalizes with its own "
                            "batch statistics")
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)

    def _make_loaders(self, train_set: Dataset, test_set: Dataset) -> None:
        o, env = self.opts, self.env
        pin = self.device.type == "cuda"
        train_items = SeededItems(train_set, o.seed)
        self.sampler = EpochSampler(train_items, env.world_size, env.rank, o.seed)
        self.batches_per_epoch = len(self.sampler) // o.batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(f"{len(train_set)} training samples cannot fill one batch of {o.batch_size} on each "
                             f"of {env.world_size} ranks; lower --batch_size or add data")
        self.train_loader = make_loader(train_items, self.sampler, o.batch_size, o.workers, True, pin)
        test_items = SeededItems(test_set, o.seed)
        self.test_loader = make_loader(test_items, ShardSampler(test_items, env.world_size, env.rank),
                                       o.test_batch_size, o.test_workers, False, pin)
        self.n_train, self.n_test = len(train_set), len(test_set)

    def _log_setup(self) -> None:
        o, env = self.opts, self.env
        if not env.is_main:
            return
        n_enc = sum(p.numel() for p in self.net.encoder.parameters())
        log.info("experiment %s on %s; world size %d", self.exp_dir, self.device, env.world_size)
        log.info("batch: %d per rank x %d ranks = effective batch %d; %d train / %d test samples; "
                 "%d steps per epoch", o.batch_size, env.world_size, o.batch_size * env.world_size,
                 self.n_train, self.n_test, self.batches_per_epoch)
        log.info("encoder %s (%.1fM parameters), decoder %s; optimizer %s lr %g; amp %s", o.encoder_type,
                 n_enc / 1e6, "trained" if o.train_decoder else "frozen", o.optim_name, o.learning_rate, o.amp)
        log.info("loss terms: %s", ", ".join(self.objective.names[1:]))

    def _resume(self, path: Path) -> None:
        ckpt = ckpt_io.load_checkpoint(path)
        state = ckpt.get("resume")
        if state is None:
            raise ValueError(f"{path}: no resume state (a model-only checkpoint); use --checkpoint_path to start "
                             "from its weights")
        try:
            self.net.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            saved = ckpt.get("opts") or {}
            arch = {k: saved.get(k) for k in ARCHITECTURE_OPTS if k in saved}
            raise ValueError(f"{path}: its model does not match the one built from the current options (saved: "
                             f"{arch}); resume with the same architecture options or use a new --exp_dir "
                             f"(--checkpoint_path starts from its weights): {e}") from e
        if ckpt.get("latent_avg") is not None:
            self.net.latent_avg.copy_(ckpt["latent_avg"].to(self.net.latent_avg))
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.best_val_loss = state.get("best_val_loss")
        self.skipped_steps = state.get("skipped_steps", 0)
        ckpt_io.set_rng_state(state["rng"])
        if self.env.is_main:
            log.info("resumed %s at step %d (epoch %d, batch %d); best val loss %s", path, self.step, self.epoch,
                     self.batch_in_epoch, self.best_val_loss)
            saved = ckpt.get("opts") or {}
            now = opts_to_dict(self.opts)
            changed = [k for k in RESUME_CRITICAL if k in saved and saved[k] != now.get(k)]
            if state.get("world_size", 1) != self.env.world_size:
                changed.append("world size")
            if changed:
                log.warning("options changed since the checkpoint (%s): training continues, but the loss trace "
                            "will differ from an uninterrupted run", ", ".join(changed))

    # --- the loop --------------------------------------------------------------------------------
    def train(self) -> list[dict[str, float]]:
        """Train until ``max_steps``; returns this process's per-step logs (also in ``self.history``)."""
        o = self.opts
        self.net.train()
        if self.step >= o.max_steps and self.env.is_main:
            log.info("nothing to do: step %d >= max_steps %d", self.step, o.max_steps)
        t0 = time.time()
        while self.step < o.max_steps:
            self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * o.batch_size)
            for batch in self.train_loader:
                y_hat, logs = self.train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                if self.batch_in_epoch == self.batches_per_epoch:
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                self.history.append({"step": self.step, **logs})
                self._after_step(batch, y_hat, logs, t0)
                if self.step >= o.max_steps:
                    break
        if self.writer is not None:
            self.writer.flush()
        return self.history

    def _forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["input"].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            y_hat, latents = self.model(x, resize=False, return_latents=True)
        return y_hat.float(), latents.float()

    def train_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """One optimizer update. A non-finite loss raises ``NonFiniteLossError`` (on every rank) before the
        weights change; non-finite gradients with a finite loss skip the update and count it (fp16
        GradScaler semantics), and stop training after ``MAX_SKIPPED_STEPS`` in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        y_hat, latents = self._forward(batch)
        ranks = (lambda t: sum_over_ranks(t, self.env), self.env.world_size) if self.env.distributed else None
        loss, values = self.objective.terms(y_hat, latents, batch, self.net.latent_avg, ranks)
        self.scaler.scale(loss).backward()
        grads_ok = all_finite([p.grad for p in self.params]).to(values)
        *host, grads_ok = torch.cat([values, grads_ok[None]]).tolist()  # the step's one host sync
        logs = dict(zip(self.objective.names, host))
        if broadcast_flag(not math.isfinite(logs["loss"]), self.env):
            self._stop_non_finite(logs)
        if grads_ok or self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # fp16: the scaler itself skips an update with inf/NaN gradients
            self.scaler.update()
        if grads_ok:  # identical on every rank: DDP has averaged the gradients
            self._skipped_in_a_row = 0
        else:
            self._skip_update(logs)
        return y_hat.detach(), logs

    def _skip_update(self, logs: dict[str, float]) -> None:
        self.skipped_steps += 1
        self._skipped_in_a_row += 1
        step = self.step + 1
        if self._skipped_in_a_row >= MAX_SKIPPED_STEPS:
            raise NonFiniteLossError(
                f"non-finite gradients at {MAX_SKIPPED_STEPS} steps in a row (steps "
                f"{step - MAX_SKIPPED_STEPS + 1}-{step}, loss {logs['loss']:.4g}); stopped without saving this state. "
                "Try a lower --learning_rate, --amp bf16 or none, or check the data of these steps.")
        if self.env.is_main:
            log.log(logging.INFO if self.scaler.is_enabled() else logging.WARNING,
                    "step %d: non-finite gradients with a finite loss (%.4g): update skipped (%d skipped so far)",
                    step, logs["loss"], self.skipped_steps)

    def _stop_non_finite(self, logs: dict[str, float]) -> None:
        latest = self.ckpt_dir / ckpt_io.LATEST
        kept = f"last good checkpoint: {latest}" if latest.is_file() else "no checkpoint was written yet"
        terms = ", ".join(f"{k}={v:.4g}" for k, v in logs.items())
        msg = (f"non-finite loss at step {self.step + 1} ({terms}); stopped without saving this state ({kept}). "
               "Try a lower --learning_rate, --amp bf16 or none, or check the data of this step.")
        if self.writer is not None:
            self.writer.flush()
        raise NonFiniteLossError(msg)

    def _after_step(self, batch: dict[str, Any], y_hat: torch.Tensor, logs: dict[str, float], t0: float) -> None:
        o, step = self.opts, self.step
        self._since_board.append(logs)
        if step % o.board_interval == 0 or step == 1:
            # mean over the steps since the last log (and over ranks): a readable trend, not one batch
            window = self._since_board
            mean = self._mean_over_ranks({k: sum(d[k] for d in window) / len(window) for k in logs})
            self._since_board = []
            if self.env.is_main:
                for k, v in mean.items():
                    self.writer.add_scalar(f"train/{k}", v, step)
                terms = "  ".join(f"{k} {v:.4f}" for k, v in mean.items())
                first = step - len(window) + 1
                steps = f"step {step}/{o.max_steps}" if first == step else f"steps {first}-{step}/{o.max_steps}"
                per_step = (time.time() - t0) / max(1, len(self.history))
                log.info("%s  %s  (%.2f s/step, ETA %s)", steps, terms, per_step,
                         tqdm.format_interval(per_step * (o.max_steps - step)))
        if self.env.is_main and (step % o.image_interval == 0 or step == 1):
            self._log_images("train", batch["input"], batch["target"], y_hat)
        final = step >= o.max_steps
        if step % o.val_interval == 0 or final:
            val = self.validate()
            if val is not None and (self.best_val_loss is None or val["loss"] < self.best_val_loss):
                self.best_val_loss = val["loss"]
                self.save(ckpt_io.BEST, with_resume=False)
        if step % o.save_interval == 0 or final:
            self.save(ckpt_io.LATEST)

    def _mean_over_ranks(self, logs: dict[str, float]) -> dict[str, float]:
        keys = sorted(logs)
        summed = all_reduce_sum(torch.tensor([logs[k] for k in keys], dtype=torch.float64), self.env)
        return {k: float(v) / self.env.world_size for k, v in zip(keys, summed)}

    # --- validation, images, checkpoints ---------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Mean of every loss term over the whole test split (all ranks); None when the split is empty."""
        self.net.eval()
        names = self.objective.names
        sums = torch.zeros(len(names) + 1, dtype=torch.float64)
        for i, batch in enumerate(self.test_loader):
            y_hat, latents = self._forward_eval(batch)
            _, logs = self.objective(y_hat, latents, batch, self.net.latent_avg)
            n = batch["input"].shape[0]
            sums += torch.tensor([logs.get(k, 0.0) * n for k in names] + [n], dtype=torch.float64)
            if i == 0 and self.env.is_main:
                self._log_images("test", batch["input"], batch["target"], y_hat)
        self.net.train()
        sums = all_reduce_sum(sums, self.env)
        count = float(sums[-1])
        if count == 0:
            if self.env.is_main:
                log.warning("validation skipped: the test split is empty")
            return None
        val = {k: float(v) / count for k, v in zip(names, sums[:-1])}
        if self.env.is_main:
            for k, v in val.items():
                self.writer.add_scalar(f"test/{k}", v, self.step)
            log.info("validation at step %d on %d samples: %s", self.step, int(count),
                     "  ".join(f"{k} {v:.4f}" for k, v in val.items()))
        return val

    def _forward_eval(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["input"].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            y_hat, latents = self.net(x, resize=False, return_latents=True)
        return y_hat.float(), latents.float()

    def _log_images(self, split: str, x: torch.Tensor, target: torch.Tensor, y_hat: torch.Tensor) -> None:
        grid = comparison_grid(x, target, y_hat)
        self.writer.add_image(f"images/{split}/input_target_output", grid, self.step)
        save_grid(grid, self.exp_dir / "logs" / "images" / f"{split}_{self.step:06d}.png")

    def resume_state(self) -> dict[str, Any]:
        return {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "best_val_loss": self.best_val_loss, "world_size": self.env.world_size,
            "skipped_steps": self.skipped_steps, "rng": ckpt_io.rng_state(),
        }

    def save(self, name: str, with_resume: bool = True) -> Path | None:
        """Rank 0 writes ``checkpoints/<name>`` atomically: pSp layout + ``step`` and ``best_val_loss``,
        + the resume state (optimizer, RNG, ...) when ``with_resume`` (``best_model.pt`` has none).
        Non-finite weights are never written (``NonFiniteLossError``)."""
        if not self.env.is_main:
            return None
        model_dict = self.net.checkpoint_dict()
        if not bool(all_finite(model_dict["state_dict"].values())):
            raise NonFiniteLossError(f"{self.ckpt_dir / name}: not written, the weights are not finite at step "
                                     f"{self.step}")
        model_dict["opts"] = {**opts_to_dict(self.opts), **opts_to_dict(model_dict.get("opts") or {})}
        model_dict.update(step=self.step, best_val_loss=self.best_val_loss)
        path = self.ckpt_dir / name
        ckpt_io.save_checkpoint(path, model_dict, self.resume_state() if with_resume else None)
        log.info("saved %s (step %d)", path, self.step)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
