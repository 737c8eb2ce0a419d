"""render2style: amortized StyleGAN2 inversion of synthetic face renders.

Data flow: renders -> optimization teacher (``render2style.teacher``) -> W+ targets ->
encoder training (``render2style.training``) -> ``encode.py`` (``render2style.inference``).
"""

__version__ = "0.1.0"
