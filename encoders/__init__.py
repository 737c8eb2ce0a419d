"""IR-SE backbones, pSp encoders and the pSp model with its checkpoint IO."""
from render2style.encoders.irse import Backbone, SEModule, bottleneck_IR, bottleneck_IR_SE, get_units, stage_ends
from render2style.encoders.psp import DEFAULT_OPTS, load_ir_se50_weights, pSp, read_psp_checkpoint, resolve_opts
from render2style.encoders.psp_encoders import (
    BackboneEncoderUsingLastLayerIntoW,
    BackboneEncoderUsingLastLayerIntoWPlus,
    GradualStyleBlock,
    GradualStyleEncoder,
    build_encoder,
    pyramid_sizes,
    style_split,
)

__all__ = [
    "Backbone", "SEModule", "bottleneck_IR", "bottleneck_IR_SE", "get_units", "stage_ends",
    "GradualStyleEncoder", "GradualStyleBlock", "BackboneEncoderUsingLastLayerIntoW",
    "BackboneEncoderUsingLastLayerIntoWPlus", "build_encoder", "pyramid_sizes", "style_split",
    "pSp", "DEFAULT_OPTS", "resolve_opts", "read_psp_checkpoint", "load_ir_se50_weights",
]
