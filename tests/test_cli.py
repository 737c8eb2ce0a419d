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
