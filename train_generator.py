"""Train or fine-tune a StyleGAN2 generator: ``r2s-train-generator --data IMAGES --size 256 --exp_dir runs/g``.

From scratch (``--size`` and the architecture options) or from a rosinality checkpoint (``--ckpt``; one
without ``d`` gets a fresh discriminator). ``--preset stylegan2`` is StyleGAN2-ADA's stylegan2 config;
``--preset wang`` Wang et al. 2023's identity-consistent fine-tuning into the render domain. Checkpoints
(``<exp_dir>/checkpoints/latest.pt``) are rosinality training checkpoints that ``load_generator``,
``--stylegan_weights`` and pSp-family tools read; an existing ``--exp_dir`` is resumed exactly.
Multi-GPU: ``torchrun --nproc_per_node N -m render2style.train_generator ...`` (``--batch`` is the total).
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from render2style.options.generator_options import GeneratorTrainOptions

log = logging.getLogger("render2style.train_generator")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts = GeneratorTrainOptions().parse(argv)
    from render2style.generator_training.trainer import GeneratorTrainer
    from render2style.training.distributed import cleanup_distributed, setup_distributed

    env = setup_distributed(opts.device)
    if not env.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    trainer = None
    try:
        trainer = GeneratorTrainer(opts, env=env)
        trainer.train()
    finally:
        if trainer is not None:
            trainer.close()
        cleanup_distributed()
    if env.is_main:
        log.info("done: %s/checkpoints/latest.pt (use it as --stylegan_weights, or with load_generator)",
                 opts.exp_dir)
    return 0


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
