"""A measurement process for ``r2s-benchmark --baseline``: one source tree's pSp model, timed on request.

Run as a file (``python scripts/benchmark_worker.py --tree DIR ...``), so that ``render2style`` is imported
from ``DIR`` (the folder holding a ``render2style`` package, e.g. an older checkout), or without ``--tree``
from where this Python finds it. Only
the standard library is imported at the top; the model comes from that tree's own ``scripts.benchmark.random_psp``
and ``inference.engine.InferenceModel``, whose interfaces have been stable since the first release.

Protocol (one line each way): after building the model the worker prints ``ready``; each ``run B`` line is
answered with the wall-clock and the process CPU seconds of one synchronized ``InferenceModel(x)`` call on a
batch of B images (256² in, the generator's size out); ``save B PATH`` also writes that call's images to PATH
(for the outputs check); ``macs`` is answered with the multiply-adds per image of the encoder and of the generator
(``scripts.benchmark.model_multiply_adds``: only for trees that have it); ``quit`` ends it.
"""
from __future__ import annotations

import argparse
import sys
import time


def serve(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", default=None, help="folder holding the render2style package to measure")
    p.add_argument("--config", default="full", help="demo or full (scripts.benchmark.random_psp)")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--state", required=True, help="weights file: written when absent, else loaded (same weights)")
    args = p.parse_args(argv)
    if args.tree:
        sys.path.insert(0, args.tree)
    from pathlib import Path

    import torch

    from render2style.inference.engine import InferenceModel, synchronize
    from render2style.scripts.benchmark import random_psp
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    torch.manual_seed(0)
    net = random_psp(args.config, device)
    state = Path(args.state)
    if state.is_file():
        net.load_state_dict(torch.load(state, map_location=device, weights_only=True), strict=True)
    else:
        torch.save(net.state_dict(), state)
    model = InferenceModel(net, device, args.dtype)
    size = getattr(net.opts, "resolution", 256)
    inputs = {}
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *rest = line.split()
        if cmd == "quit":
            break
        if cmd == "macs":
            from render2style.scripts.benchmark import model_multiply_adds
            macs = model_multiply_adds(model, size)
            print(f"{macs['encoder']} {macs['generator']}", flush=True)
            continue
        batch = int(rest[0])
        if batch not in inputs:
            inputs[batch] = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        images, _ = model(inputs[batch])
        synchronize(device)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        if cmd == "save":
            torch.save(images, rest[1])
        print(f"{seconds:.6f} {cpu:.6f}", flush=True)


if __name__ == "__main__":
    serve()
