"""r2s-export-onnx: both graphs run in onnxruntime with batch sizes other than the traced one and match
PyTorch, including the per-sample (fused) modulated convolution the export does not trace."""
import functools
import json

import numpy as np
import pytest
import torch

from render2style.encoders.psp import pSp
from render2style.scripts import export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # torch.onnx.export(dynamo=True)

ATOL = 1e-4  # float32: W+ codes and images are O(1); measured errors are about 1e-6


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny 4-channel pSp (32² input, demo 64² generator, 10 styles) with a non-zero noise strength,
    saved as a checkpoint and exported."""
    torch.manual_seed(0)
    net = pSp({"stylegan_weights": "demo-random", "ir_se50_weights": "none", "resolution": 32, "input_nc": 4,
               "latent_avg_samples": 64}).eval()
    with torch.no_grad():
        for m in net.decoder.modules():
            if type(m).__name__ == "NoiseInjection":
                m.weight.fill_(0.3)  # so that a graph that dropped the stored noise would differ
    folder = tmp_path_factory.mktemp("onnx")
    torch.save(net.checkpoint_dict(), folder / "tiny.pt")
    record = export_onnx.main([str(folder / "tiny.pt"), str(folder / "out"), "--check_batch", "3"])
    return net, folder / "out", record


@functools.cache
def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_ort(path, x):
    s = session(path)
    return s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("batch", [1, 5])
def test_encoder_graph_matches_pytorch_at_any_batch(exported, batch):
    net, out, _ = exported
    x = torch.rand(batch, 4, 32, 32, generator=torch.Generator().manual_seed(batch)) * 2 - 1
    with torch.no_grad():
        expected = net.encode(x).numpy()
    found = run_ort(out / "encoder.onnx", x)
    assert found.shape == (batch, 10, 512)
    assert np.abs(found - expected).max() < ATOL


@pytest.mark.parametrize("batch", [1, 4])
def test_synthesis_graph_matches_the_fused_reference_with_stored_noise(exported, batch):
    net, out, _ = exported
    w = net.latent_avg + 0.5 * torch.randn(batch, 10, 512, generator=torch.Generator().manual_seed(batch))
    convs = [m for m in net.decoder.modules() if type(m).__name__ == "ModulatedConv2d"]
    with torch.no_grad():
        for m in convs:
            m.fused = True  # the reference's per-sample grouped convolution, not the traced path
        expected = net.decoder.synthesis(w, noise_mode="const").numpy()
        without_noise = net.decoder.synthesis(w, noise_mode="none").numpy()
        for m in convs:
            m.fused = None
    found = run_ort(out / "synthesis.onnx", w)
    assert found.shape == (batch, 3, 64, 64)
    assert np.abs(found - expected).max() < ATOL
    assert np.abs(found - without_noise).max() > 100 * ATOL  # the stored noise is in the graph


def test_export_record(exported):
    _, out, record = exported
    saved = json.loads((out / "export.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert (saved["input_nc"], saved["resolution"], saved["n_styles"], saved["output_size"]) == (4, 32, 10, 64)
    for name in ("encoder", "synthesis"):
        assert saved["graphs"][name]["max_abs_error"] < ATOL
    assert sorted(p.name for p in out.iterdir()) == ["encoder.onnx", "export.json", "synthesis.onnx"]


def test_a_bad_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "nope.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="nope.pt: expected an encoder checkpoint"):
        export_onnx.main([str(bad), str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_the_traced_path_is_chosen_for_the_block_only(exported):
    net = exported[0]
    convs = [m for m in net.decoder.modules() if type(m).__name__ == "ModulatedConv2d"]
    convs[0].fused = True
    with export_onnx.activation_modulation(net.decoder):
        assert all(m.fused is False for m in convs)
    assert convs[0].fused is True and all(m.fused is None for m in convs[1:])
    convs[0].fused = None
