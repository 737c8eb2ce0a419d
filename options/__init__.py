"""Command-line options (pSp's names, saved into checkpoints as a plain dict)."""
from render2style.options.encode_options import EncodeOptions
from render2style.options.train_options import TrainOptions, opts_to_dict, str2bool

__all__ = ["TrainOptions", "EncodeOptions", "opts_to_dict", "str2bool"]
