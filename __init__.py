"""render2style: amortized StyleGAN2 inversion of synthetic face renders.

Data flow: renders -> optimization teacher (``render2style.teacher``) -> W+ targets ->
encoder training (``render2style.training``) -> ``r2s-encode`` (``render2style.inference``).
"""
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version


def _installed_version() -> str:
    """The installed distribution's version (``pyproject.toml``'s, the one place it is written);
    ``0+unknown`` when the code runs without being installed."""
    try:
        return _distribution_version("render2style")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _installed_version()
