"""Check every render before spending compute on any: a bad file found at start-up, not after hours.

Each item is loaded once (in threads; image decoding releases the GIL) and checked like every later
read (``check_render``: readable, mode with a face mask or a mask file, mask size matches the render,
at least ``MIN_SIZE`` px, face mask not empty). Bad items stop the run with one error listing them,
or with ``skip_corrupt`` are left out with a summary.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from render2style.datasets.renders import check_render

log = logging.getLogger(__name__)

#: bad items quoted in full in the error / the summary (the rest are counted)
SHOWN = 5


def render_problem(source, index: int) -> str | None:
    """Why item ``index`` of ``source`` is unusable (a message naming its file), or None when it is fine."""
    try:
        check_render(source[index])
    except (ValueError, OSError) as e:
        return str(e)
    return None


def screen_renders(source, ids: Sequence[str] | None = None, skip_corrupt: bool = False,
                   what: str = "renders") -> list[str]:
    """The usable ids among ``ids`` (default: all of ``source.ids``), in order. Unusable ones raise one
    ``ValueError`` listing them, or with ``skip_corrupt`` are dropped and summarized in the log."""
    ids = list(source.ids if ids is None else ids)
    position = {rid: i for i, rid in enumerate(source.ids)}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        problems = list(pool.map(lambda rid: render_problem(source, position[rid]), ids))
    bad = [(rid, p) for rid, p in zip(ids, problems) if p is not None]
    if not bad:
        return ids
    root = getattr(source, "root", type(source).__name__)
    detail = "; ".join(f"{rid}: {p}" for rid, p in bad[:SHOWN])
    if len(bad) > SHOWN:
        detail += f"; and {len(bad) - SHOWN} more"
    if not skip_corrupt:
        raise ValueError(f"{root}: {len(bad)} of {len(ids)} {what} are unusable ({detail}); fix or remove them, "
                         "or pass --skip_corrupt to leave them out")
    log.warning("%s: skipping %d of %d %s (--skip_corrupt): %s", root, len(bad), len(ids), what, detail)
    skipped = {rid for rid, _ in bad}
    return [rid for rid in ids if rid not in skipped]
