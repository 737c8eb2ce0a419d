"""Every command-line tool is a console script with ``--version`` and a ``--help`` that shows examples.

The console scripts are read from ``pyproject.toml`` (their one definition) and called in this process
(``main(["--help"])`` ends in ``SystemExit``), so the whole file imports torch once.
"""
import importlib
import importlib.metadata
from pathlib import Path

import pytest

from render2style import __version__
from render2style.cli import exit_status

tomllib = pytest.importorskip("tomllib" if __import__("sys").version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SCRIPTS = PROJECT["scripts"]


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _run(name: str, argv: list, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _load(SCRIPTS[name])(argv)
    assert exit_info.value.code == 0, f"{name} {' '.join(argv)} exited with {exit_info.value.code}"
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_resolves_to_a_callable(name):
    assert callable(_load(SCRIPTS[name]))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_version_names_the_tool_and_the_package_version(name, capsys):
    assert _run(name, ["--version"], capsys).strip() == f"{name} (render2style {__version__})"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_ends_with_usage_examples_of_the_tool(name, capsys):
    out = _run(name, ["--help"], capsys)
    examples = out.split("\nexamples:\n", 1)[1].splitlines()
    assert any(line.startswith(f"  {name} ") or line == f"  {name}" for line in examples), out


def test_every_tool_under_scripts_has_a_console_script_named_for_it():
    tools = [p.stem for p in (ROOT / "scripts").glob("*.py") if "\ndef main(" in p.read_text()]
    assert tools, "no tools found under scripts/"
    missing = [t for t in tools if "r2s-" + t.replace("_", "-") not in SCRIPTS]
    assert not missing, (f"scripts without a console script: {missing}; add r2s-<name> to [project.scripts] in "
                         "pyproject.toml (a main() that returns no exit code goes through cli.exit_status)")


def test_installed_metadata_matches_pyproject():
    """A stale install (pyproject changed since ``pip install -e .``) shows up here, not as a missing command."""
    dist = importlib.metadata.distribution("render2style")
    installed = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert installed == SCRIPTS, "reinstall: pip install -e ."
    assert dist.version == PROJECT["version"] == __version__, "reinstall: pip install -e ."


def test_exit_status_keeps_int_codes_and_turns_returned_summaries_into_success():
    assert [exit_status(2), exit_status(0), exit_status({"done": 3}), exit_status([{"row": 1}]), exit_status(None)] \
        == [2, 0, 0, 0, 0]


def test_an_error_ends_a_command_in_one_line_and_status_1(capsys, monkeypatch):
    from render2style.cli import run_tool
    monkeypatch.delenv("R2S_DEBUG", raising=False)

    def main(argv):
        raise ValueError("w.pt: not a generator\n(found a dict); pass --stylegan_weights FILE")

    assert run_tool(main, ["--out", "x"]) == 1
    assert capsys.readouterr().err == "error: w.pt: not a generator (found a dict); pass --stylegan_weights FILE\n"

    def missing(argv):
        open("/nonexistent/dir/f.pth")

    assert run_tool(missing, []) == 1
    assert capsys.readouterr().err == "error: /nonexistent/dir/f.pth: No such file or directory\n"

    def in_worker(argv):  # torch re-raises a DataLoader worker's error with the worker's traceback in its text
        raise ValueError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                         "last):\n  File \"x.py\", line 1\nValueError: r.png: no face mask; pass --dataset images")

    assert run_tool(in_worker, []) == 1
    assert capsys.readouterr().err == "error: ValueError: r.png: no face mask; pass --dataset images\n"


def test_an_unexpected_error_names_its_type_and_how_to_see_the_traceback(capsys, monkeypatch):
    from render2style.cli import run_tool
    monkeypatch.delenv("R2S_DEBUG", raising=False)
    assert run_tool(lambda argv: [][1], []) == 1
    assert capsys.readouterr().err == \
        "error: IndexError: list index out of range (traceback: --debug or R2S_DEBUG=1)\n"


def test_debug_flag_or_environment_shows_the_traceback(monkeypatch):
    from render2style.cli import run_tool
    seen = []

    def main(argv):
        seen.append(list(argv))
        raise ValueError("boom")

    monkeypatch.delenv("R2S_DEBUG", raising=False)
    with pytest.raises(ValueError, match="boom"):
        run_tool(main, ["--out", "x", "--debug"])
    assert seen == [["--out", "x"]]  # taken out before the tool parses its options
    monkeypatch.setenv("R2S_DEBUG", "1")
    with pytest.raises(ValueError, match="boom"):
        run_tool(main, [])


def test_console_scripts_report_errors_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("R2S_DEBUG", raising=False)
    status = _load(SCRIPTS["r2s-encode"])(["--checkpoint", str(tmp_path / "absent.pt"), "--input", str(tmp_path),
                                           "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith(f"error: {tmp_path / 'absent.pt'}: ") and err.count("\n") == 1, err


LIGHT_HELP = sorted(SCRIPTS)      # every tool: a new one joins this check by being a console script


def test_help_of_the_main_tools_is_printed_before_torch_is_imported():
    """``--help`` (and any parse error) comes back in a fraction of a second: parsing imports no torch, dlib or
    OpenCV; they load after the options are parsed."""
    import subprocess
    import sys
    code = ("import sys, importlib\n"
            f"for target in {[SCRIPTS[n] for n in LIGHT_HELP]!r}:\n"
            "    module, _, attr = target.partition(':')\n"
            "    try:\n"
            "        getattr(importlib.import_module(module), attr)(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in ('torch', 'dlib', 'cv2') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_generate_targets_offers_the_teacher_methods():
    from render2style.scripts import generate_targets
    from render2style.teacher.methods import METHODS, TARGET_METHODS
    action = next(a for a in generate_targets.build_parser()._actions if a.dest == "method")
    assert METHODS == ("garbin", "image2stylegan", "projector")
    assert tuple(action.choices) == TARGET_METHODS == (*METHODS, "dual")


def _parsers(monkeypatch) -> dict:
    """Each console script's parser, caught when ``--help`` prints it."""
    import argparse
    import contextlib
    import io
    caught = {}
    for name in sorted(SCRIPTS):
        monkeypatch.setattr(argparse.ArgumentParser, "print_help",
                            lambda self, file=None, name=name: caught.setdefault(name, self))
        with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit):
            _load(SCRIPTS[name])(["--help"])
    return caught




def test_every_option_has_help_and_shows_its_default_once(monkeypatch):
    problems = []
    for name, parser in _parsers(monkeypatch).items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            text = formatter._expand_help(action) if action.help else ""
            if not text.strip():
                problems.append(f"{name} {action.option_strings or action.dest}: no help text")
            if text.lower().count("default") > 1:
                problems.append(f"{name} {action.option_strings}: default shown twice: {text!r}")
    assert not problems, "\n".join(problems)


def test_worker_defaults_follow_the_cpus_this_process_may_use(monkeypatch):
    import os

    from render2style.options import EncodeOptions, TrainOptions
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert EncodeOptions().parse(["--checkpoint", "c", "--input", "i", "--out", "o"]).workers == 2
    train = TrainOptions().parse(["--dataset", "renders", "--renders", "r", "--exp_dir", "e"])
    assert (train.workers, train.test_workers) == (2, 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert EncodeOptions().parse(["--checkpoint", "c", "--input", "i", "--out", "o"]).workers == 2
    assert TrainOptions().parse(["--dataset", "renders", "--renders", "r", "--exp_dir", "e"]).workers == 4
