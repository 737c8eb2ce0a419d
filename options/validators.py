"""argparse ``type=`` checks, so that a bad value stops at parse time with a message naming the option."""
from __future__ import annotations

import argparse
import os
from typing import Callable


def available_workers(cap: int) -> int:
    """DataLoader workers by default: the CPUs this process may run on, at most ``cap`` (more only add
    torch's too-many-workers warning and memory)."""
    return max(0, min(cap, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A ``type=`` for integers ``>= minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    parse.__name__ = f"int >= {minimum}"
    return parse


def float_at_least(minimum: float, strict: bool = False) -> Callable[[str], float]:
    """A ``type=`` for floats ``>= minimum`` (``> minimum`` when ``strict``)."""
    relation = ">" if strict else ">="

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {relation} {minimum}, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum) or value != value:
            raise argparse.ArgumentTypeError(f"expected a number {relation} {minimum}, got {text}")
        return value
    parse.__name__ = f"float {relation} {minimum}"
    return parse


def layer_spec(text: str) -> str:
    """A ``--latent_mask`` / ``--interp_layers`` value whose syntax is valid (its range is checked against
    the model's layer count when the model is loaded)."""
    from render2style.inference.mixing import parse_layers
    try:
        parse_layers(text, option="")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).lstrip()) from None
    return text


def unit_fractions(text: str) -> tuple[float, ...]:
    """A ``type=`` for comma-separated numbers in (0, 1] (``--init_alphas``)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in (0, 1], got {text!r}") from None
    if not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in (0, 1], got {text}")
    return values
