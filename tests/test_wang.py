"""Wang et al.'s identity-consistent fine-tuning losses (generator_training/wang.py): the colour blur against an
independent Gaussian, exact zeros and growth, the sketch sum, frozen G_real, the XDoG stand-in, sketch files."""
import copy

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from scipy.ndimage import gaussian_filter

from render2style.generator_training.wang import (
    IdentityConsistencyWithDrift,
    WangLossSettings,
    XDoGSketch,
    build_identity_consistency,
)
from render2style.pretrained import MissingWeightsError
from render2style.stylegan2 import Generator
from render2style.utils.io import file_sha256


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """VGG-16 features in torchvision's layout with seeded random values (a stand-in file for the tests only)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save(tvm.vgg16(weights=None).features.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def g_real():
    """A small generator whose noise inputs matter (fresh generators start with zero noise strengths)."""
    torch.manual_seed(1)
    G = Generator(size=32, style_dim=64, n_mlp=2, channel_max=32).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.3)
    return G


@pytest.fixture(scope="module")
def loss(g_real, vgg_file):
    return build_identity_consistency(g_real=g_real, sketch_net=None, lpips_backbone=str(vgg_file),
                                      identity_weights=None, device="cpu")


def codes(G, n=2, seed=0):
    with torch.no_grad():
        w = G.mapping(torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed)))
    return w[:, None].expand(-1, G.n_latent, -1).contiguous()


def perturbed(G, scale, seed=5):
    """G with every synthesis convolution moved by ``scale`` along one fixed random direction."""
    out = copy.deepcopy(G)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.convs.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return out.requires_grad_(True)


def fixed_noise(G, n):
    gen = torch.Generator().manual_seed(9)
    return [torch.randn(n, *m.shape[1:], generator=gen) for m in G.stored_noise()]


def test_colour_blur_is_the_papers_13_tap_sigma_10_gaussian(loss):
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = loss.color_input(x)[0].numpy()
    # scipy: radius int(0.6 * 10 + 0.5) = 6, i.e. 13 taps of σ = 10; 'mirror' is torch's reflect padding
    reference = np.stack([gaussian_filter(c, sigma=10.0, truncate=0.6, mode="mirror") for c in x[0].numpy()])
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert np.abs(reference - x[0].numpy()).mean() > 0.3  # a real blur, not the identity


def test_colour_input_is_resized_to_256_before_the_blur(loss):
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1)) * 2 - 1
    pooled = torch.nn.functional.avg_pool2d(x, 2)[0].numpy()
    reference = np.stack([gaussian_filter(c, sigma=10.0, truncate=0.6, mode="mirror") for c in pooled])
    np.testing.assert_allclose(loss.color_input(x)[0].numpy(), reference, atol=1e-5)


def test_colour_size_option_scales_the_blur_with_the_image(g_real, vgg_file):
    """--color_size 64: 256² images pooled to 64², blurred with σ = 10·64/256 = 2.5 and 3 taps (radius 1)."""
    settings = WangLossSettings.at_color_size(64)
    assert (settings.color_size, settings.blur_kernel, settings.blur_sigma) == (64, 3, 2.5)
    assert WangLossSettings.at_color_size(256) == WangLossSettings()
    small = build_identity_consistency(g_real=g_real, sketch_net=None, lpips_backbone=str(vgg_file),
                                       identity_weights=None, device="cpu", settings=settings)
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 2 - 1
    pooled = torch.nn.functional.avg_pool2d(x, 4)[0].numpy()
    reference = np.stack([gaussian_filter(c, sigma=2.5, truncate=0.4, mode="mirror") for c in pooled])
    np.testing.assert_allclose(small.color_input(x)[0].numpy(), reference, atol=1e-5)
    assert np.abs(reference - pooled).mean() > 0.05


def test_losses_are_zero_for_identical_generators_and_grow_with_the_perturbation(loss, g_real):
    w, noise = codes(g_real), fixed_noise(g_real, 2)
    with torch.no_grad():
        for same in (loss(w, copy.deepcopy(g_real), noise=noise), loss(w, copy.deepcopy(g_real))):
            assert float(same["sketch"]) == 0 and float(same["color"]) < 1e-7   # one noise for both generators
    small, large = (loss(w, perturbed(g_real, s), noise=noise) for s in (0.02, 0.08))
    for k in ("sketch", "color"):
        assert 0 < float(small[k]) < float(large[k]), k
    expected = 5e-6 * large["sketch"] + 3.75e3 * large["color"]
    assert torch.allclose(large["total"], expected)


def test_sketch_loss_is_the_l1_sum_over_a_512_squared_sketch(loss, g_real):
    """‖·‖₁ summed over pixels (λ_s = 5e-6 is for a sum), here on 32² images rescaled to 512² pixels."""
    w, noise, g_rendering = codes(g_real), fixed_noise(g_real, 2), perturbed(g_real, 0.05)
    xdog = XDoGSketch()
    with torch.no_grad():
        a = xdog(g_real.synthesis(w, noise=noise))
        b = xdog(g_rendering.synthesis(w, noise=noise))
        got = loss(w, g_rendering, noise=noise)["sketch"]
    per_image = (a - b).abs().sum(dim=(1, 2, 3)) * (512 * 512) / (32 * 32)
    assert torch.allclose(got, per_image.mean(), rtol=1e-5)


def test_gradients_reach_only_the_rendering_generator(loss, g_real):
    g_rendering = perturbed(g_real, 0.05)
    loss(codes(g_real), g_rendering)["total"].backward()
    assert all(p.grad is None for p in loss.g_real.parameters())
    assert all(p.grad is None for p in g_real.parameters())
    assert all(p.grad is None for p in loss.color_lpips.parameters())
    grads = [p.grad for name, p in g_rendering.convs.named_parameters() if name.endswith("conv.weight")]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_the_loss_keeps_its_own_frozen_copy_of_g_real(loss, g_real):
    assert loss.g_real is not g_real
    for a, b in zip(loss.g_real.state_dict().values(), g_real.state_dict().values()):
        assert torch.equal(a, b)
    loss.train()
    assert not loss.g_real.training and not loss.sketch_net.training


def test_xdog_draws_lines_at_an_edge_and_nothing_on_flat_images():
    xdog = XDoGSketch()
    for level in (-0.9, 0.0, 0.8):
        assert torch.equal(xdog(torch.full((1, 3, 32, 32), level)), torch.ones(1, 1, 32, 32))
    step = torch.full((1, 3, 32, 32), -0.5)
    step[..., 16:] = 0.5                      # a vertical edge of 0.5 in luminance between columns 15 and 16
    step.requires_grad_(True)
    s = xdog(step)[0, 0]
    assert float(s[:, 14:16].min()) < 0.1     # a dark line on the dark side of the edge
    assert torch.equal(s[:, :10], torch.ones(32, 10)) and torch.equal(s[:, 20:], torch.ones(32, 12))
    s.sum().backward()
    assert step.grad.abs().sum() > 0          # differentiable where it draws


def test_xdog_stand_in_is_named_in_the_metadata(loss, vgg_file):
    meta = loss.metadata
    assert meta["sketch"] == "xdog" and meta["sketch_stand_in"] is True and meta["xdog"]["sigma"] == 1.0
    assert meta["lambda_sketch"] == 5e-6 and meta["lambda_color"] == 3.75e3
    assert (meta["blur_kernel"], meta["blur_sigma"]) == (13, 10.0)
    assert meta["weights"]["lpips_backbone"]["sha256"] == file_sha256(vgg_file)


class TinySketch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


def test_torchscript_sketch_network_is_loaded_frozen_and_used(tmp_path, g_real, vgg_file):
    torch.manual_seed(3)
    net = TinySketch()
    path = tmp_path / "sketch.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    loss = build_identity_consistency(g_real=g_real, sketch_net=str(path), lpips_backbone=str(vgg_file),
                                      identity_weights=None, device="cpu")
    assert loss.metadata["sketch"] == "torchscript" and loss.metadata["sketch_stand_in"] is False
    assert loss.metadata["weights"]["sketch_net"]["sha256"] == file_sha256(path)
    assert all(not p.requires_grad for p in loss.sketch_net.parameters())
    w, noise, g_rendering = codes(g_real), fixed_noise(g_real, 2), perturbed(g_real, 0.05)
    with torch.no_grad():
        diff = net(g_real.synthesis(w, noise=noise)) - net(g_rendering.synthesis(w, noise=noise))
        got = loss(w, g_rendering, noise=noise)["sketch"]
    assert torch.allclose(got, diff.abs().sum(dim=(1, 2, 3)).mean() * 256, rtol=1e-5)


def test_onnx_sketch_network_is_converted_and_used(tmp_path, g_real, vgg_file):
    pytest.importorskip("onnx2torch")
    torch.manual_seed(4)
    net = TinySketch().eval()
    path = tmp_path / "sketch.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, input_names=["x"],
                      output_names=["sketch"], dynamic_axes={"x": {0: "batch"}, "sketch": {0: "batch"}})
    loss = build_identity_consistency(g_real=g_real, sketch_net=str(path), lpips_backbone=str(vgg_file),
                                      identity_weights=None, device="cpu")
    assert loss.metadata["sketch"] == "onnx" and loss.metadata["sketch_stand_in"] is False
    w, noise, g_rendering = codes(g_real), fixed_noise(g_real, 2), perturbed(g_real, 0.05)
    with torch.no_grad():
        diff = net(g_real.synthesis(w, noise=noise)) - net(g_rendering.synthesis(w, noise=noise))
        got = loss(w, g_rendering, noise=noise)["sketch"]
    assert torch.allclose(got, diff.abs().sum(dim=(1, 2, 3)).mean() * 256, rtol=1e-4)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match=r"bad\.onnx: expected an ONNX sketch network"):
        build_identity_consistency(g_real=g_real, sketch_net=str(bad), lpips_backbone=str(vgg_file),
                                   identity_weights=None, device="cpu")


def test_sketch_network_files_that_cannot_be_used_are_named(tmp_path, g_real, vgg_file):
    def build(path):
        return build_identity_consistency(g_real=g_real, sketch_net=str(path), lpips_backbone=str(vgg_file),
                                          identity_weights=None, device="cpu")

    with pytest.raises(MissingWeightsError, match=r"absent\.pt.*DeepFaceEditing"):
        build(tmp_path / "absent.pt")
    state_dict = tmp_path / "state_dict.pt"
    torch.save(TinySketch().state_dict(), state_dict)
    with pytest.raises(ValueError, match=r"state_dict\.pt: expected a TorchScript sketch network"):
        build(state_dict)
    flat = tmp_path / "flat.pt"
    torch.jit.save(torch.jit.script(torch.nn.Flatten()), str(flat))
    with pytest.raises(ValueError, match=r"flat\.pt: a sketch network must map .* got \(1, 3072\)"):
        build(flat)


def test_missing_lpips_backbone_is_named(g_real, tmp_path):
    with pytest.raises(MissingWeightsError, match=r"vgg16\.ckpt.*vgg16-397923af\.pth"):
        build_identity_consistency(g_real=g_real, sketch_net=None, lpips_backbone=str(tmp_path / "vgg16.ckpt"),
                                   identity_weights=None, device="cpu")


class UnitFeatures(torch.nn.Module):
    """An identity network stand-in: unit vectors of the mean colour of the image's quadrants."""

    def forward(self, x):
        return torch.nn.functional.normalize(torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1) + 2, dim=1)


def test_identity_drift_is_one_minus_cosine_on_stored_noise(loss, g_real):
    drift_loss = IdentityConsistencyWithDrift(g_real=g_real, sketch=loss.sketch_net, color=loss.color_lpips,
                                              identity=UnitFeatures(), settings=loss.settings, metadata={})
    w, g_rendering = codes(g_real, 3), perturbed(g_real, 0.1)
    assert float(drift_loss.identity_drift(w, copy.deepcopy(g_real))) == pytest.approx(0, abs=1e-6)
    ident = UnitFeatures()
    with torch.no_grad():
        cos = (ident(g_real.synthesis(w)) * ident(g_rendering.synthesis(w))).sum(1)
    assert float(drift_loss.identity_drift(w, g_rendering)) == pytest.approx(float((1 - cos).mean()), rel=1e-5)
    assert float((1 - cos).mean()) > 0
    assert not hasattr(loss, "identity_drift")   # built without identity weights: no drift to log
