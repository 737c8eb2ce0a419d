"""encode.py's library: input streaming, inference runtime, style mixing, latent operations, outputs."""
from render2style.inference.engine import InferenceModel, pick_device
from render2style.inference.latent_ops import crossover, interpolate
from render2style.inference.mixing import default_latent_mask, mix_styles, parse_latent_mask

__all__ = ["InferenceModel", "pick_device", "mix_styles", "default_latent_mask", "parse_latent_mask",
           "interpolate", "crossover"]
