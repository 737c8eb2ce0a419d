"""Metrics of generated faces against references (pixel, perceptual, identity, landmarks, latent distance)."""
from render2style.evaluation.metrics import Evaluator, Pair, evaluate_pairs

__all__ = ["Evaluator", "Pair", "evaluate_pairs"]
