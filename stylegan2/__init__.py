"""Pure-PyTorch StyleGAN2 generator and discriminator, their weight formats and the demo generators."""
from render2style.stylegan2.ada_pkl import convert_ada_pkl, load_ada_pkl_state
from render2style.stylegan2.checkpoint import infer_config, load_generator, read_checkpoint
from render2style.stylegan2.demo import DEMO_CONFIG, demo_generator, load_demo
from render2style.stylegan2.discriminator import Discriminator, load_discriminator
from render2style.stylegan2.model import EqualLinear, Generator, truncate

__all__ = ["Generator", "EqualLinear", "truncate", "load_generator", "read_checkpoint", "infer_config",
           "demo_generator", "load_demo", "DEMO_CONFIG", "convert_ada_pkl", "load_ada_pkl_state", "Discriminator",
           "load_discriminator"]
