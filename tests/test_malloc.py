"""utils/malloc.py: with freed memory retained, a second large allocation is served without page faults.

Each case runs in its own interpreter (the setting is per process). Page faults are counted with getrusage
(minor faults): each 64 MiB temporary costs 16384 faults of 4 KiB pages when its block comes fresh from mmap;
a later run of the same work reuses the first run's freed blocks (the fewest faults of three later runs count:
the virtual machine's host may reclaim idle pages, as DAMON does here, and fault some back in).
"""
import os
import subprocess
import sys

import pytest

CHILD = """
import resource, torch
from render2style.utils.malloc import retain_freed_memory
print(retain_freed_memory())
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def work():                         # a chain of 64 MiB temporaries, as a layer's activations
    x = torch.ones(2 ** 24)
    for _ in range(4):
        x = x * 2 + 1
    return float(x[0])
work()
deltas = []
for _ in range(3):                  # the fewest of three runs: the host may reclaim idle pages between them
    before = faults()
    work()
    deltas.append(faults() - before)
print(min(deltas))
"""


def run_child(env_value: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "R2S_MALLOC_RETAIN"}
    if env_value is not None:
        env["R2S_MALLOC_RETAIN"] = env_value
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    flag, faults = out.stdout.split()
    return flag, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_retained_memory_is_reused_without_page_faults():
    flag, faults = run_child(None)
    off_flag, off_faults = run_child("0")
    assert (flag, off_flag) == ("True", "False")
    assert off_faults > 8 * 16384       # the default: each of the 9 temporaries is mapped afresh
    assert faults < 0.25 * off_faults   # retained: the first run's freed blocks are reused (at most one grows)


def test_run_tool_switches_it_on(monkeypatch):
    from render2style import cli
    calls = []
    monkeypatch.setattr(cli, "retain_freed_memory", lambda: calls.append(1))
    assert cli.run_tool(lambda argv: 0, []) == 0
    assert calls == [1]
