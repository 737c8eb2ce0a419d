"""What every render2style command-line tool shares: ``--version`` and a ``--help`` that ends in examples.

Each tool is a console script ``r2s-<name>`` (``[project.scripts]`` in ``pyproject.toml``) and a module
(``python -m render2style.<module>``, which ``torchrun -m`` needs); both build the same parser, and the
parser calls :func:`add_tool_info`. The version is ``render2style.__version__``: the installed
distribution's, written once in ``pyproject.toml``.

Every console script (and every ``python -m`` form) runs its tool's ``main(argv)`` through
:func:`run_tool`: an error ends the tool with one line on stderr (``error: FILE: what is wrong; what to do``)
and exit status 1; ``--debug`` or ``R2S_DEBUG=1`` shows the traceback instead. Tests call ``main`` directly
and see the exception.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from render2style import __version__
from render2style.utils.malloc import retain_freed_memory


class RawDescriptionDefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter,
                                          argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's and the epilog's line breaks, and shows each option's default once: not when
    its help already speaks of its default, and not when it is None (the help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def _keeping_line_breaks(formatter: type) -> type:
    plain = (argparse.HelpFormatter, argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter)
    if formatter in plain or issubclass(formatter, RawDescriptionDefaultsHelpFormatter):
        return RawDescriptionDefaultsHelpFormatter
    if issubclass(formatter, argparse.RawDescriptionHelpFormatter):
        return formatter
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
    (``render2style.encode``). The parser's formatter becomes :class:`RawDescriptionDefaultsHelpFormatter`:
    the examples keep their lines and every option shows its default once. It also adds ``--debug``
    (:func:`run_tool` acts on it). Calling it twice is harmless.
    """
    parser.formatter_class = _keeping_line_breaks(parser.formatter_class)
    parser.epilog = tool_epilog(tool, module, examples)
    if "--version" not in parser._option_string_actions:
        parser.add_argument("--version", action="version", version=f"{tool} (render2style {__version__})")
    if DEBUG_FLAG not in parser._option_string_actions:
        parser.add_argument(DEBUG_FLAG, action="store_true",
                            help=f"on an error, show the full traceback instead of one line (or set {DEBUG_ENV}=1)")
    return parser


def exit_status(result: Any) -> int:
    """A tool's ``main()`` result as a process exit status: ints as they are, anything else (a summary
    dict, a list of rows, None) is success; console scripts pass the return value to ``sys.exit``."""
    return result if isinstance(result, int) else 0


DEBUG_FLAG, DEBUG_ENV = "--debug", "R2S_DEBUG"


def error_line(error: BaseException) -> str:
    """One line for an error: its message (``FILE: what is wrong; what to do`` for ours), the file first
    for OS errors, the exception's type in front only when its message alone would not say what happened."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error).strip()
        if isinstance(error, KeyError) and text:
            text = f"KeyError: {text}"
        elif not isinstance(error, (OSError, ValueError, RuntimeError)) or not text:
            text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: the original error is the last line
        text = text.strip().splitlines()[-1]
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def run_tool(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> int:
    """Run a tool's ``main(argv)`` as a command: its result as an exit status (:func:`exit_status`), an
    error as ``error: ...`` on stderr and status 1 (130 on Ctrl-C); with ``--debug`` in ``argv`` (taken
    out before ``main`` parses it) or ``R2S_DEBUG=1`` the exception propagates with its traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")
    args = [a for a in args if a != DEBUG_FLAG]
    retain_freed_memory()          # large CPU tensors reused, not page-faulted in again (utils/malloc.py)
    try:
        return exit_status(main(args))
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (every error of a command ends in one line; --debug re-raises)
        if debug:
            raise
        hint = "" if isinstance(e, (OSError, ValueError)) else f" (traceback: {DEBUG_FLAG} or {DEBUG_ENV}=1)"
        print(f"error: {error_line(e)}{hint}", file=sys.stderr, flush=True)
        return 1


def _console_script(module: str) -> Callable[[Sequence[str] | None], int]:
    """The console-script entry of ``module``: its ``main`` through :func:`run_tool`, imported only when
    called."""
    def entry(argv: Sequence[str] | None = None) -> int:
        return run_tool(importlib.import_module(module).main, argv)
    entry.__doc__ = f"``{module}.main`` through :func:`run_tool`."
    return entry


generate_targets = _console_script("render2style.scripts.generate_targets")
fit_control_vectors = _console_script("render2style.scripts.fit_control_vectors")
benchmark_teacher_quality = _console_script("render2style.scripts.benchmark_teacher_quality")
train_encoder = _console_script("render2style.train_encoder")
train_generator = _console_script("render2style.train_generator")
pretrain_generator = _console_script("render2style.scripts.pretrain_generator")
evaluate_generator = _console_script("render2style.scripts.evaluate_generator")
face_figures = _console_script("render2style.scripts.face_figures")
identity_drift = _console_script("render2style.scripts.identity_drift")
encode = _console_script("render2style.encode")
align_faces = _console_script("render2style.scripts.align_faces")
evaluate = _console_script("render2style.scripts.evaluate")
convert_weights = _console_script("render2style.scripts.convert_weights")
convert_lpips_weights = _console_script("render2style.scripts.convert_lpips_weights")
make_demo_renders = _console_script("render2style.scripts.make_demo_renders")
make_figures = _console_script("render2style.scripts.make_figures")
benchmark = _console_script("render2style.scripts.benchmark")
benchmark_training = _console_script("render2style.scripts.benchmark_training")
benchmark_teacher = _console_script("render2style.scripts.benchmark_teacher")
benchmark_video = _console_script("render2style.scripts.benchmark_video")
export_onnx = _console_script("render2style.scripts.export_onnx")
flywheel = _console_script("render2style.scripts.flywheel")
