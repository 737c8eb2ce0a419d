"""Reading renders, photos and teacher targets; the procedural demo renders.

Named render sources (``build_render_source(name, root)``): ``renders``, ``facesynthetics``, ``images``,
or ``package.module:Class`` for your own. ``EncoderDataset`` turns a source (+ targets) into training items.
"""
from render2style.datasets.demo_renders import make_demo_renders
from render2style.datasets.facesynthetics import FaceSynthetics
from render2style.datasets.image_folder import ImageFolder
from render2style.datasets.registry import (
    build_dataset,
    build_render_source,
    dataset_names,
    register_dataset,
    resolve_dataset,
)
from render2style.datasets.renders import Render, RenderFolder, RenderSource
from render2style.datasets.targets import TargetFolder
from render2style.datasets.training_dataset import EncoderDataset, encoder_input, split_ids

RendersDataset = EncoderDataset  # the name docs/ARCHITECTURE.md lists

__all__ = [
    "build_dataset", "build_render_source", "dataset_names", "register_dataset", "resolve_dataset",
    "Render", "RenderSource", "RenderFolder", "FaceSynthetics", "ImageFolder", "TargetFolder",
    "EncoderDataset", "RendersDataset", "encoder_input", "split_ids", "make_demo_renders",
]
