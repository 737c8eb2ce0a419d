"""The former import path of :mod:`render2style.pretrained` (weight files now live outside ``criteria``)."""
from render2style.pretrained import (
    KNOWN_WEIGHTS,
    MissingWeightsError,
    load_numpy_pickle,
    require_known_weights,
    require_weights,
)

__all__ = ["KNOWN_WEIGHTS", "MissingWeightsError", "load_numpy_pickle", "require_known_weights", "require_weights"]
