"""Per-item claims between processes: an exclusive, non-blocking ``flock`` on ``<item>.lock``.

The kernel drops a claim when its holder exits or is killed (kill -9 included), so a dead process's
items are free at once: no heartbeat, nothing to go stale. Works across processes on one machine and
on shared filesystems whose ``flock`` is real (NFSv4 and Lustre map it to POSIX record locks).
The lock file records its owner (host, pid, start time) for ``cat`` when debugging.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path


def _lock(path: Path) -> int | None:
    """An fd holding the lock on ``path``, or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the previous holder may have unlinked the file between our open and our flock
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def claim(path: str | os.PathLike) -> Iterator[bool]:
    """``with claim(p) as mine:`` — ``mine`` is True when this process now owns ``p``, False when a live
    process does. The lock file is removed when the owner leaves the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _lock(path)
    if fd is None:
        yield False
        return
    try:
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(owner).encode())
        yield True
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
