"""The former import path of :mod:`render2style.pretrained` (weight files now live outside ``criteria``)."""
from render2style.pretrained import (KNOWN_WEIGHTS, MissingWeightsError, load_numpy_pickle,  # noqa: F401
                                     require_known_weights, require_weights)
