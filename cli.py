"""What every render2style command-line tool shares: ``--version`` and a ``--help`` that ends in examples.

Each tool is a console script ``r2s-<name>`` (``[project.scripts]`` in ``pyproject.toml``) and a module
(``python -m render2style.<module>``, which ``torchrun -m`` needs); both build the same parser, and the
parser calls :func:`add_tool_info`. The version is ``render2style.__version__``: the installed
distribution's, written once in ``pyproject.toml``.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from render2style import __version__


class RawDescriptionDefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter,
                                          argparse.ArgumentDefaultsHelpFormatter):
    """Shows option defaults and keeps the description and the epilog's line breaks as written."""


def _keeping_line_breaks(formatter: type) -> type:
    if issubclass(formatter, argparse.RawDescriptionHelpFormatter):
        return formatter
    if issubclass(formatter, argparse.ArgumentDefaultsHelpFormatter):
        return RawDescriptionDefaultsHelpFormatter
    if formatter is argparse.HelpFormatter:
        return argparse.RawDescriptionHelpFormatter
    raise TypeError(f"add_tool_info: cannot keep the epilog's line breaks with {formatter.__name__}")


def tool_epilog(tool: str, module: str, examples: Sequence[str]) -> str:
    """The examples block of a tool's ``--help`` (one command each; a command may continue on more lines),
    then the tool's module form."""
    if not examples:
        raise ValueError(f"{tool}: a tool's help needs at least one usage example")
    lines = "\n".join("  " + e.replace("\n", "\n      ") for e in examples)
    return f"examples:\n{lines}\n\nThe same tool runs as `python -m {module}`. Version: {tool} --version"


def add_tool_info(parser: argparse.ArgumentParser, tool: str, module: str,
                  examples: Sequence[str]) -> argparse.ArgumentParser:
    """Give a tool's parser ``--version`` and an epilog of usage examples; returns the parser.

    ``tool`` is the console-script name (``r2s-encode``), ``module`` the ``python -m`` name
    (``render2style.encode``). The parser's formatter becomes its raw-description variant so that the
    examples keep their lines (option defaults are still shown where they were). Calling it twice is harmless.
    """
    parser.formatter_class = _keeping_line_breaks(parser.formatter_class)
    parser.epilog = tool_epilog(tool, module, examples)
    if "--version" not in parser._option_string_actions:
        parser.add_argument("--version", action="version", version=f"{tool} (render2style {__version__})")
    return parser


def exit_status(result: Any) -> int:
    """A tool's ``main()`` result as a process exit status: ints as they are, anything else (a summary
    dict, a list of rows, None) is success; console scripts pass the return value to ``sys.exit``."""
    return result if isinstance(result, int) else 0


def generate_targets(argv: Sequence[str] | None = None) -> int:
    """``r2s-generate-targets``: ``main()`` returns its summary (tests and callers use it); exit 0."""
    from render2style.scripts.generate_targets import main

    return exit_status(main(argv))


def fit_control_vectors(argv: Sequence[str] | None = None) -> int:
    """``r2s-fit-control-vectors``: ``main()`` returns what it fitted; exit 0."""
    from render2style.scripts.fit_control_vectors import main

    return exit_status(main(argv))


def benchmark_teacher_quality(argv: Sequence[str] | None = None) -> int:
    """``r2s-benchmark-teacher-quality``: ``main()`` returns its rows; exit 0."""
    from render2style.scripts.benchmark_teacher_quality import main

    return exit_status(main(argv))


BENCHMARK_TEACHER_EXAMPLES = (
    "r2s-benchmark-teacher                                   # demo (+ paper when CUDA exists)",
    "r2s-benchmark-teacher --configs demo --cpu_threads 2",
    "r2s-benchmark-teacher --configs paper --lpips_weights vgg16-397923af.pth --out docs/BENCHMARKS.md",
)


def benchmark_teacher(argv: Sequence[str] | None = None) -> int:
    """``r2s-benchmark-teacher``: its module's parser with ``--version`` and examples added here (the module
    returns its rows and does not add them itself yet); the module parses ``argv`` again and runs."""
    from render2style.scripts import benchmark_teacher as tool

    parser = add_tool_info(tool.build_parser(), "r2s-benchmark-teacher", "render2style.scripts.benchmark_teacher",
                           BENCHMARK_TEACHER_EXAMPLES)
    parser.parse_args(argv)  # --help, --version and usage errors end here
    return exit_status(tool.main(argv))
