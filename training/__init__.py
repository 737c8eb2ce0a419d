"""The encoder trainer (DDP, AMP, exact resume) and the Ranger optimizer."""
from render2style.training.ranger import Ranger
from render2style.training.trainer import NonFiniteLossError, Trainer

__all__ = ["Trainer", "Ranger", "NonFiniteLossError"]
