"""Export a pSp checkpoint to ONNX: the encoder and the synthesis network, each with a dynamic batch.

Writes to OUT_DIR:

- ``encoder.onnx``: ``image`` [B, input_nc, S, S] (RGB, plus the mask channel for 4-channel encoders, in
  [-1, 1], S the encoder's resolution) -> ``wplus`` [B, n_styles, 512] (latent_avg added; a W encoder's
  code repeated over the layers);
- ``synthesis.onnx``: ``wplus`` [B, n_styles, 512] -> ``image`` [B, 3, size, size] in about [-1, 1], with
  the generator's stored noise (deterministic, as ``noise_mode="const"``);
- ``export.json``: shapes, opset, the checkpoint's SHA-256 and each graph's max |onnxruntime - PyTorch|.

The graphs are captured in eval mode with torch.export (PyTorch's ONNX exporter with ``dynamo=True``; it
needs onnxscript) through the modulated convolutions' activation path (one shared-weight convolution for the
whole batch; the per-sample grouped path would fix the batch in the graph). The TorchScript exporter is not
used: it cannot export the FIR filters' depthwise kernels once the batch axis is dynamic. With
onnxruntime installed (the ``onnx`` extra) each graph is run on a batch of another size than the one it
was traced with and compared with PyTorch; an error above ``--atol`` stops the export. ``--benchmark N``
times both runtimes on the CPU (median of N runs).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from render2style.cli import add_tool_info

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

GRAPHS = {"encoder": ("image", "wplus"), "synthesis": ("wplus", "image")}  # name -> (input, output)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    add_tool_info(p, "r2s-export-onnx", "render2style.scripts.export_onnx", [
        "r2s-export-onnx runs/enc/checkpoints/best_model.pt onnx/",
        "r2s-export-onnx psp_ffhq_encode onnx_psp/ --benchmark 10   # a registry name, downloaded once"])
    p.add_argument("checkpoint", help="pSp-layout checkpoint (ours or official pSp), or a registry name such as "
                                      "psp_ffhq_encode")
    p.add_argument("out_dir", help="output folder (encoder.onnx, synthesis.onnx, export.json)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset version (torch.export's exporter: 18 or later)")
    p.add_argument("--trace_batch", type=int, default=2, help="batch size of the example the graphs are traced with")
    p.add_argument("--check_batch", type=int, default=3,
                   help="batch size of the onnxruntime-vs-PyTorch check (another size than --trace_batch, so "
                        "the check also proves the batch axis dynamic)")
    p.add_argument("--atol", type=float, default=1e-3,
                   help="largest max |onnxruntime - PyTorch| accepted (W+ codes and images are O(1) in float32)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of both runtimes in the check and benchmark")
    p.add_argument("--benchmark", type=int, default=0, metavar="RUNS",
                   help="also time PyTorch and onnxruntime on the CPU: median seconds of RUNS runs at --check_batch")
    return p


@contextlib.contextmanager
def activation_modulation(module: nn.Module) -> Iterator[None]:
    """Every modulated convolution in ``module`` on its activation path (traceable with a dynamic batch)
    for the block; their previous setting restored afterwards."""
    from render2style.stylegan2.model import ModulatedConv2d
    convs = [m for m in module.modules() if isinstance(m, ModulatedConv2d)]
    before = [m.fused for m in convs]
    for m in convs:
        m.fused = False
    try:
        yield
    finally:
        for m, fused in zip(convs, before):
            m.fused = fused


def graph_modules(net: Any) -> dict[str, nn.Module]:
    """The two exported functions of a pSp model as modules: ``encoder`` (image -> W+) and ``synthesis``
    (W+ -> image, stored noise)."""
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, image):
            codes = self.net.encode(image)
            return codes[:, None].expand(-1, self.net.n_styles, -1) if codes.ndim == 2 else codes

    class Synthesis(nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = net.decoder

        def forward(self, wplus):
            return self.decoder.synthesis(wplus, noise_mode="const")

    return {"encoder": Encoder().eval(), "synthesis": Synthesis().eval()}


def example_inputs(net: Any, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch for each graph: images in [-1, 1] for the encoder, W+ codes near the model's latent_avg
    (what the encoder produces) for the synthesis."""
    import torch
    g = torch.Generator().manual_seed(seed)
    size = net.opts.resolution
    image = torch.rand(batch, net.opts.input_nc, size, size, generator=g) * 2 - 1
    avg = net.latent_avg if net.latent_avg.shape[0] == net.n_styles else net.latent_avg.expand(net.n_styles, -1)
    wplus = avg + 0.5 * torch.randn(batch, net.n_styles, net.decoder.style_dim, generator=g)
    return {"encoder": image, "synthesis": wplus}


def export_graph(module: nn.Module, example: torch.Tensor, names: tuple[str, str], path: Path, opset: int) -> None:
    """Export ``module`` traced on ``example`` (torch.export, the batch axis symbolic) and write the ONNX
    file atomically."""
    import torch

    from render2style.utils.io import atomic_file
    with warnings.catch_warnings(), torch.no_grad(), activation_modulation(module):
        warnings.simplefilter("ignore")  # torch.export's notices on the shape checks it folds into the graph
        program = torch.onnx.export(module, (example,), input_names=[names[0]], output_names=[names[1]],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset,
                                    dynamo=True, verbose=False)
    with atomic_file(path) as f:
        f.write(program.model_proto.SerializeToString())


def ort_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_abs_error(session: Any, module: nn.Module, example: torch.Tensor) -> float:
    """max |onnxruntime(example) - PyTorch(example)| (PyTorch on its own automatic path)."""
    import numpy as np
    import torch
    with torch.no_grad():
        expected = module(example).numpy()
    found = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    if found.shape != expected.shape:
        raise ValueError(f"onnxruntime returned shape {found.shape}, PyTorch {expected.shape}")
    return float(np.abs(found - expected).max())


def median_seconds(call: Any, runs: int) -> float:
    """Median wall time of ``runs`` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def export_onnx(checkpoint: str, out_dir: str | Path, opset: int = 18, trace_batch: int = 2, check_batch: int = 3,
                atol: float = 1e-3, threads: int = 2, benchmark_runs: int = 0) -> dict[str, Any]:
    """Export, check and (optionally) time both graphs; returns the ``export.json`` record."""
    import torch

    from render2style.encoders.psp import pSp
    from render2style.pretrained import resolve_weights
    from render2style.utils.io import atomic_write_json, file_sha256
    for name, value in (("trace_batch", trace_batch), ("check_batch", check_batch), ("threads", threads)):
        if value < 1:
            raise ValueError(f"--{name} must be at least 1, got {value}")
    ckpt_path = resolve_weights(checkpoint)
    net = pSp.from_checkpoint(ckpt_path, device="cpu")
    for p in net.parameters():
        p.requires_grad_(False)
    out_dir = Path(out_dir)
    modules, traced = graph_modules(net), example_inputs(net, trace_batch)
    record: dict[str, Any] = {
        "checkpoint": str(ckpt_path), "checkpoint_sha256": file_sha256(ckpt_path), "opset": opset,
        "torch": torch.__version__, "input_nc": net.opts.input_nc, "resolution": net.opts.resolution,
        "n_styles": net.n_styles, "style_dim": net.decoder.style_dim, "output_size": net.decoder.size,
        "input_range": [-1, 1], "noise": "stored (const)", "graphs": {}}
    for name, module in modules.items():
        path = out_dir / f"{name}.onnx"
        export_graph(module, traced[name], GRAPHS[name], path, opset)
        record["graphs"][name] = {"file": path.name, "input": GRAPHS[name][0], "output": GRAPHS[name][1],
                                  "bytes": path.stat().st_size}
        log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.warning("onnxruntime is not installed (pip install \"render2style[onnx]\"): the graphs are not checked")
        atomic_write_json(record, out_dir / "export.json")
        return record
    torch.set_num_threads(threads)
    checked = example_inputs(net, check_batch, seed=1)
    record["check_batch"], record["threads"] = check_batch, threads
    for name, module in modules.items():
        session = ort_session(out_dir / f"{name}.onnx", threads)
        error = max_abs_error(session, module, checked[name])
        entry = record["graphs"][name]
        entry["max_abs_error"] = error
        if benchmark_runs:
            feed = {GRAPHS[name][0]: checked[name].numpy()}
            with torch.no_grad():
                entry["torch_s"] = median_seconds(functools.partial(module, checked[name]), benchmark_runs)
            entry["onnxruntime_s"] = median_seconds(functools.partial(session.run, None, feed), benchmark_runs)
            entry["speedup"] = entry["torch_s"] / entry["onnxruntime_s"]
        if error > atol:
            atomic_write_json(record, out_dir / "export.json")
            raise ValueError(f"{out_dir / (name + '.onnx')}: onnxruntime and PyTorch differ by up to {error:.3g} "
                             f"(more than --atol {atol:g}) on a batch of {check_batch}")
    atomic_write_json(record, out_dir / "export.json")
    return record


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("onnxscript", "onnx_ir"):  # their optimizer passes log every folded node
        logging.getLogger(name).setLevel(logging.WARNING)
    record = export_onnx(args.checkpoint, args.out_dir, opset=args.opset, trace_batch=args.trace_batch,
                         check_batch=args.check_batch, atol=args.atol, threads=args.threads,
                         benchmark_runs=args.benchmark)
    for name, g in record["graphs"].items():
        line = f"{name}.onnx: {g['input']} -> {g['output']}, {g['bytes'] / 1e6:.1f} MB"
        if "max_abs_error" in g:
            line += f", max |onnxruntime - PyTorch| = {g['max_abs_error']:.2e} (batch {record['check_batch']})"
        if "speedup" in g:
            line += (f"; median {g['torch_s'] * 1e3:.1f} ms PyTorch, {g['onnxruntime_s'] * 1e3:.1f} ms onnxruntime "
                     f"({g['speedup']:.2f}x, {record['threads']} threads)")
        print(line)
    return record


if __name__ == "__main__":
    from render2style.cli import run_tool

    sys.exit(run_tool(main))
