"""Installs the repository root as the ``render2style`` package (``pip install -e .``, ``pip install .``).

The project's metadata, dependencies and console scripts are in ``pyproject.toml``; this file keeps only
what pyproject cannot say as simply: the repository root *is* the package, so every top-level folder with
an ``__init__.py`` is a subpackage (``render2style.encoders``, ``render2style.datasets``, ...) and nothing
is installed as a top-level ``datasets`` module that would shadow Hugging Face's package.
"""
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# Folders that are not part of the installed package (tests/ has no __init__.py; listed for safety).
NOT_PACKAGES = ["tests", "tests.*", "docs", "docs.*", "build", "build.*", "dist", "dist.*"]


class BuildPy(build_py):
    """Every ``*.py`` of the root is a module of ``render2style`` except this file."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "render2style" and m[1] == "setup")]


setup(
    package_dir={"render2style": "."},
    packages=["render2style"] + [f"render2style.{p}" for p in find_packages(".", exclude=NOT_PACKAGES)],
    cmdclass={"build_py": BuildPy},
)
