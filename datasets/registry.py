"""Named datasets: ``--dataset renders`` or ``--dataset package.module:Class`` (no code edits needed).

A name maps to a render-source class (``RenderSource`` subclass or anything with the same interface:
``Class(root, skip_corrupt=...)`` with ``ids``, ``__len__`` and ``__getitem__ -> Render``).
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_dataset(name: str) -> Callable:
    """Class decorator: make ``cls`` available as ``build_dataset(name, ...)``."""
    def decorate(cls):
        if _REGISTRY.get(name, cls) is not cls:
            raise ValueError(f"dataset name {name!r} is already registered to {_REGISTRY[name]!r}")
        _REGISTRY[name] = cls
        return cls
    return decorate


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def resolve_dataset(name: str) -> Callable[..., Any]:
    """The class registered under ``name``, or imported from a ``package.module:Class`` string."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"dataset {name!r}: cannot import module {module_name!r} ({e})") from e
        try:
            return getattr(module, attr)
        except AttributeError:
            raise ValueError(f"dataset {name!r}: module {module_name!r} has no attribute {attr!r}") from None
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(dataset_names())}, "
                         f"or 'package.module:Class' for your own class")
    return _REGISTRY[name]


def build_dataset(name: str, *args: Any, **kwargs: Any) -> Any:
    """Instantiate the dataset ``name`` (registered name or ``package.module:Class``)."""
    return resolve_dataset(name)(*args, **kwargs)


def build_render_source(name: str, root: str | os.PathLike, skip_corrupt: bool = False):
    """The render source ``name`` over folder ``root``: indexable, ``len``, ``.ids``, items are ``Render``."""
    source = build_dataset(name, root, skip_corrupt=skip_corrupt)
    missing = [a for a in ("ids", "__len__", "__getitem__") if not hasattr(source, a)]
    if missing:
        raise TypeError(f"dataset {name!r} built {type(source).__name__}, which lacks {missing}; "
                        f"a render source needs ids, __len__ and __getitem__ -> Render")
    return source
