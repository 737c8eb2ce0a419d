"""Installs the repository root as the ``render2style`` package (``pip install -e .``).

Every top-level folder is a subpackage (``render2style.encoders``, ``render2style.datasets``, ...),
so nothing is installed as a top-level ``datasets`` module that would shadow Hugging Face's package.
"""
from setuptools import setup

SUBPACKAGES = [
    "stylegan2", "teacher", "encoders", "criteria", "datasets", "training", "options",
    "inference", "alignment", "evaluation", "scripts", "utils",
]

setup(
    name="render2style",
    version="0.1.0",
    description="Amortized StyleGAN2 inversion of synthetic face renders (pSp encoder trained on optimizer targets)",
    python_requires=">=3.9",
    package_dir={"render2style": "."},
    packages=["render2style"] + [f"render2style.{p}" for p in SUBPACKAGES],
    py_modules=[],
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "lpips>=0.1.4",
        "facenet-pytorch>=2.5.3,<2.6",
        "tensorboard",
        "albumentations>=2.0",
        "opencv-python-headless",
        "numpy",
        "pillow",
        "tqdm",
        "scipy",
    ],
    extras_require={
        "test": ["pytest"],
        "align": ["dlib-bin", "face_recognition_models"],
        "onnx": ["onnx", "onnx2torch"],
    },
    entry_points={
        "console_scripts": [
            "r2s-train-encoder=render2style.train_encoder:main",
            "r2s-encode=render2style.encode:main",
        ],
    },
)
