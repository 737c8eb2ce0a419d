"""The demo generators' names on the command line (torch-free, for the option parsers).

``--stylegan_weights demo`` (or ``demo-faces``) is the shipped 64² face generator, ``demo-random`` the seeded
random one; ``--demo_generator faces|random`` names the same two by kind.
"""
from __future__ import annotations

DEMO_KINDS = ("faces", "random")
#: ``--stylegan_weights`` values that select a demo generator, and its kind.
DEMO_WEIGHTS_NAMES = {"demo": "faces", "demo-faces": "faces", "demo-random": "random"}
#: The canonical ``--stylegan_weights`` value of each kind.
DEMO_WEIGHTS_NAME = {"faces": "demo", "random": "demo-random"}


def demo_kind(weights: object) -> str | None:
    """The demo kind a ``--stylegan_weights`` value names ('demo' -> 'faces', 'demo-random' -> 'random'), or None."""
    return DEMO_WEIGHTS_NAMES.get(weights) if isinstance(weights, str) else None
