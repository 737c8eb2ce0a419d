"""StyleGAN2 generator: shapes, noise, mixing, truncation, the rosinality format and the reference computation."""
import math

import pytest
import torch
import torch.nn.functional as F

from render2style.stylegan2 import Generator, demo_generator, load_generator
from render2style.stylegan2.model import Blur, ModulatedConv2d, generator_channels

TINY = dict(style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=16)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    G = Generator(32, **TINY).eval()
    _randomize_state(G)
    return G


@pytest.mark.parametrize("size,kw,n_latent", [
    (32, TINY, 8),
    (64, dict(style_dim=64, n_mlp=3, channel_multiplier=2, channel_max=16), 10),
    (256, dict(style_dim=32, n_mlp=1, channel_multiplier=1, channel_max=8), 14),
])
def test_generator_shapes_for_three_configs(size, kw, n_latent):
    G = Generator(size, **kw).eval()
    assert G.n_latent == n_latent == 2 * int(math.log2(size)) - 2
    z = torch.randn(3, kw["style_dim"])
    w = G.mapping(z)
    assert w.shape == (3, kw["style_dim"])
    with torch.no_grad():
        img, latents = G([w], input_is_latent=True, randomize_noise=False, return_latents=True)
    assert img.shape == (3, 3, size, size)
    assert latents.shape == (3, n_latent, kw["style_dim"])


def test_config_f_channels_and_key_shapes():
    assert generator_channels(2) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128,
                                     512: 64, 1024: 32}
    G = Generator(1024)
    shapes = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    assert G.n_latent == 18 and G.num_layers == 17
    assert shapes["style.8.weight"] == (512, 512)
    assert shapes["input.input"] == (1, 512, 4, 4)
    assert shapes["conv1.conv.weight"] == (1, 512, 512, 3, 3)
    assert shapes["convs.0.conv.blur.kernel"] == (4, 4)
    assert shapes["convs.15.conv.weight"] == (1, 32, 32, 3, 3)
    assert shapes["to_rgbs.7.conv.weight"] == (1, 3, 32, 1, 1)
    assert shapes["to_rgbs.7.upsample.kernel"] == (4, 4)
    assert shapes["noises.noise_16"] == (1, 1, 1024, 1024)
    assert shapes["convs.0.activate.bias"] == (512,)
    assert shapes["to_rgb1.bias"] == (1, 3, 1, 1)


def test_stored_noise_is_deterministic_and_random_noise_is_not(tiny):
    w = tiny.mapping(torch.randn(2, 32)).unsqueeze(1).repeat(1, tiny.n_latent, 1)
    with torch.no_grad():
        a, b = tiny.synthesis(w), tiny.synthesis(w)
        c = tiny.synthesis(w, noise_mode="random")
        d, _ = tiny([w], input_is_latent=True, randomize_noise=False)
    assert torch.equal(a, b) and torch.equal(a, d)
    assert not torch.allclose(a, c)


def test_style_mixing_equals_manual_crossover(tiny):
    z1, z2 = torch.randn(2, 32), torch.randn(2, 32)
    with torch.no_grad():
        img, lat = tiny([z1, z2], inject_index=3, randomize_noise=False, return_latents=True)
        w1, w2 = tiny.style(z1), tiny.style(z2)
        manual = torch.cat([w1[:, None].repeat(1, 3, 1), w2[:, None].repeat(1, tiny.n_latent - 3, 1)], 1)
        assert torch.equal(lat, manual)
        assert torch.allclose(img, tiny.synthesis(manual), atol=1e-6)
        assert torch.equal(tiny.style_mix(w1, w2, 3), manual)


def test_truncation_moves_toward_the_mean(tiny):
    mean = tiny.mean_latent(2000, seed=0)
    z = torch.randn(8, 32)
    with torch.no_grad():
        w = tiny.mapping(z)
        dists = [(tiny.mapping(z, psi, mean) - mean).norm(dim=1) for psi in (1.0, 0.7, 0.3, 0.0)]
    assert torch.allclose(dists[0], (w - mean).norm(dim=1))
    assert torch.allclose(dists[1], 0.7 * dists[0], atol=1e-5)
    assert (dists[2] < dists[1]).all() and torch.allclose(dists[3], torch.zeros(8), atol=1e-5)


def test_demo_generator_is_the_same_for_a_seed():
    a, b, c = demo_generator(0), demo_generator(0), demo_generator(1)
    assert a.size == 64 and a.n_latent == 10
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.style[1].weight, c.style[1].weight)


# --- reference computation --------------------------------------------------------------------
def _ref_linear(x, w, b, lr_mul, act):
    y = x @ (w * lr_mul / math.sqrt(w.shape[1])).t() + b * lr_mul
    return F.leaky_relu(y, 0.2) * math.sqrt(2) if act else y


def _ref_fir(x, kernel, pad, up=1):
    """Zero-insertion up-sampling then per-channel FIR filtering, written channel by channel."""
    if up > 1:
        z = x.new_zeros(x.shape[0], x.shape[1] * up, x.shape[2] * up)
        z[:, ::up, ::up] = x
        x = z
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = kernel.flip(0, 1)[None, None]
    return torch.cat([F.conv2d(x[c][None, None], k)[0] for c in range(x.shape[0])])


def _ref_modconv(sd, name, x, s, demod, up=False):
    """One sample: modulate, demodulate, convolve (or transposed-convolve and blur)."""
    w = sd[f"{name}.weight"][0]
    style = _ref_linear(s, sd[f"{name}.modulation.weight"], sd[f"{name}.modulation.bias"], 1.0, False)
    w = w * style[None, :, None, None] / math.sqrt(w.shape[1] * w.shape[2] * w.shape[3])
    if demod:
        w = w / torch.sqrt((w ** 2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
    if up:
        out = F.conv_transpose2d(x[None], w.transpose(0, 1), stride=2)[0]
        return _ref_fir(out, sd[f"{name}.blur.kernel"], (1, 1))
    return F.conv2d(x[None], w, padding=w.shape[-1] // 2)[0]


def _ref_synthesis(sd, wplus, n_layers):
    """Per-sample synthesis straight from the rosinality state dict."""
    images = []
    for w in wplus:
        noise = [sd[f"noises.noise_{i}"][0] for i in range(n_layers)]

        def styled(name, x, s, n, up=False):
            x = _ref_modconv(sd, f"{name}.conv", x, s, True, up)
            x = x + sd[f"{name}.noise.weight"] * n
            return F.leaky_relu(x + sd[f"{name}.activate.bias"][:, None, None], 0.2) * math.sqrt(2)

        def rgb(name, x, s):
            return _ref_modconv(sd, f"{name}.conv", x, s, False) + sd[f"{name}.bias"][0]

        x = styled("conv1", sd["input.input"][0], w[0], noise[0])
        skip = rgb("to_rgb1", x, w[1])
        for j in range((n_layers - 1) // 2):
            x = styled(f"convs.{2 * j}", x, w[1 + 2 * j], noise[1 + 2 * j], up=True)
            x = styled(f"convs.{2 * j + 1}", x, w[2 + 2 * j], noise[2 + 2 * j])
            skip = rgb(f"to_rgbs.{j}", x, w[3 + 2 * j]) + _ref_fir(skip, sd[f"to_rgbs.{j}.upsample.kernel"], (2, 1), 2)
        images.append(skip)
    return torch.stack(images)


def _ref_mapping(sd, z, n_mlp, lr_mul=0.01):
    x = z * torch.rsqrt((z ** 2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        x = _ref_linear(x, sd[f"style.{i}.weight"], sd[f"style.{i}.bias"], lr_mul, True)
    return x


def _randomize_state(G):
    """Non-trivial values for the zero-initialised biases and noise strengths."""
    with torch.no_grad():
        for k, v in G.state_dict().items():
            if k.endswith(("bias", "noise.weight")):
                v.copy_(torch.randn_like(v) * 0.2 + (1.0 if "modulation" in k else 0.0))


def test_rosinality_checkpoint_loads_strictly_and_matches_the_reference(tmp_path):
    torch.manual_seed(1)
    src = Generator(32, **TINY)
    _randomize_state(src)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    latent_avg = torch.randn(32)
    path = tmp_path / "stylegan2-tiny.pt"
    torch.save({"g_ema": sd, "g": sd, "latent_avg": latent_avg}, path)

    G, avg = load_generator(path, size=32)
    assert G.n_latent == 8 and torch.equal(avg, latent_avg[None])
    z = torch.randn(2, 32)
    with torch.no_grad():
        w = G.mapping(z)
        assert torch.allclose(w, _ref_mapping(sd, z, 2), atol=1e-5)
        wplus = w[:, None].repeat(1, 8, 1) + 0.1 * torch.randn(2, 8, 32)
        img = G.synthesis(wplus)
    ref = _ref_synthesis(sd, wplus, G.num_layers)
    assert torch.allclose(img, ref, atol=1e-4), (img - ref).abs().max()


def test_load_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_generator(tmp_path / "nope.pt")

    G = Generator(32, **TINY)
    good = tmp_path / "g.pt"
    torch.save({"g_ema": G.state_dict()}, good)
    with pytest.raises(ValueError, match=r"32x32 generator but the configuration asks for 1024x1024"):
        load_generator(good, size=1024)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.pt.*truncated or corrupt"):
        load_generator(truncated)

    no_gema = tmp_path / "d_only.pt"
    torch.save({"d": G.state_dict()}, no_gema)
    with pytest.raises(ValueError, match="d_only.pt: no 'g_ema'"):
        load_generator(no_gema)

    bad_keys = tmp_path / "bad_keys.pt"
    sd = dict(G.state_dict())
    sd["extra.weight"] = torch.zeros(1)
    torch.save({"g_ema": sd}, bad_keys)
    with pytest.raises(ValueError, match="bad_keys.pt: state dict does not match"):
        load_generator(bad_keys)


@pytest.mark.parametrize("fused", [True, False])
def test_both_modulation_paths_match_the_reference_and_each_other(fused):
    """Fused (per-sample weights) and activation modulation: the same images (rel. L2 < 1e-5 in fp32)
    and the same latent gradients."""
    from render2style.stylegan2.model import ModulatedConv2d
    torch.manual_seed(2)
    G = Generator(32, **TINY)
    _randomize_state(G)
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    wplus = torch.randn(3, G.n_latent, 32, requires_grad=True)
    grads = {}
    for mode in (fused, not fused):
        for m in G.modules():
            if isinstance(m, ModulatedConv2d):
                m.fused = mode
        img = G.synthesis(wplus)
        (grads[mode],) = torch.autograd.grad(img.square().sum(), wplus)
        if mode == fused:
            ref = _ref_synthesis(sd, wplus.detach(), G.num_layers)
            assert ((img - ref).norm() / ref.norm()).item() < 1e-5
    assert ((grads[True] - grads[False]).norm() / grads[True].norm()).item() < 1e-5


def test_modulation_path_is_chosen_by_batch_and_gradients(monkeypatch):
    from render2style.stylegan2.model import ModulatedConv2d
    used = []
    for name in ("_fused", "_activations"):
        real = getattr(ModulatedConv2d, name)
        monkeypatch.setattr(ModulatedConv2d, name, lambda self, x, s, real=real, name=name: used.append(name) or
                            real(self, x, s))
    G = Generator(32, **TINY)
    w = torch.randn(2, G.n_latent, 32)
    for batch, frozen, grad, expected in ((2, False, True, "_activations"), (1, False, True, "_fused"),
                                          (1, True, True, "_activations"), (1, True, False, "_fused"),
                                          (2, True, False, "_activations")):
        used.clear()
        G.requires_grad_(not frozen)
        with torch.set_grad_enabled(grad):
            G.synthesis(w[:batch])
        assert set(used) == {expected}, (batch, frozen, grad, used)


# --- fast paths against the reference computations ----------------------------------------------
@pytest.mark.parametrize("k,up,pad", [(4, 2, (2, 1)), (4, 2, (1, 2)), (4, 2, (-1, 0)), (3, 2, (1, 1)), (6, 3, (3, 2)),
                                      (2, 4, (3, 2)), (5, 2, (1, 3))])
def test_polyphase_upsampling_equals_zero_insertion(k, up, pad):
    """The polyphase up-sampler against zero insertion + dense filtering written channel by channel
    (random non-separable kernels, odd pads and crops, kernels shorter and longer than the factor)."""
    from render2style.stylegan2.ops import polyphase_plan, upfirdn2d
    torch.manual_seed(k * 10 + up)
    x, kernel = torch.randn(3, 7, 7, dtype=torch.float64), torch.rand(k, k, dtype=torch.float64)
    ref = _ref_fir(x, kernel, pad, up)
    assert ref.shape[-1] % up == 0          # the polyphase path's domain
    out = upfirdn2d(x[None], kernel, up=up, pad=pad)[0]
    assert out.shape == ref.shape
    assert ((out - ref).norm() / ref.norm()).item() < 1e-12
    if (k, up) == (4, 2):        # StyleGAN2's [1,3,3,1] up-sampler: 2x2 taps per output phase, no zeros
        assert polyphase_plan(k, up, pad[0])[2] == 2


def test_fused_leaky_relu_equals_the_plain_formula_and_its_gradient():
    from render2style.stylegan2.ops import fused_leaky_relu
    torch.manual_seed(3)
    x, b = torch.randn(2, 5, 4, 4, requires_grad=True), torch.randn(5, requires_grad=True)
    out = fused_leaky_relu(x, b)
    ref = F.leaky_relu(x + b[None, :, None, None], 0.2) * math.sqrt(2)
    assert torch.allclose(out, ref, rtol=1e-6, atol=1e-6)
    g = torch.randn_like(ref)
    assert all(torch.allclose(u, v, rtol=1e-6, atol=1e-6) for u, v in zip(torch.autograd.grad(out, (x, b), g),
                                                                         torch.autograd.grad(ref, (x, b), g)))
    assert torch.allclose(fused_leaky_relu(x, b, scale=-1.0), -F.leaky_relu(x + b[None, :, None, None], 0.2))


@pytest.mark.parametrize("batch", [1, 3])
def test_channels_last_synthesis_equals_nchw_with_gradients(batch):
    """The channels_last generator against the NCHW one: images and latent gradients within rel. L2 1e-5,
    and the images come back in the default memory format."""
    torch.manual_seed(4)
    G = Generator(32, **TINY)
    _randomize_state(G)
    G.requires_grad_(False)
    w = torch.randn(batch, G.n_latent, 32, requires_grad=True)
    results = {}
    for channels_last in (False, True):
        G.channels_last = channels_last
        img = G.synthesis(w)
        results[channels_last] = img, torch.autograd.grad(img.square().sum(), w)[0]
    (a, ga), (b, gb) = results[False], results[True]
    assert b.is_contiguous()
    assert ((a - b).norm() / a.norm()).item() < 1e-5 and ((ga - gb).norm() / ga.norm()).item() < 1e-5


@pytest.mark.parametrize("batch", [1, 3])
def test_channels_last_synthesis_keeps_every_convolution_channels_last(batch):
    """Every modulated convolution and Blur of a channels_last synthesis (no autograd, as the encode path runs
    it: the fused path at batch 1) returns channels_last maps: a batch-1 reshape or view restrides the batch
    axis, after which the convolutions fall back to NCHW (slower on the CPU, with the same values)."""
    G = Generator(32, **TINY)
    formats = []
    for m in G.modules():
        if isinstance(m, (ModulatedConv2d, Blur)):
            m.register_forward_hook(lambda mod, args, out: formats.append(
                (type(mod).__name__, out.is_contiguous(memory_format=torch.channels_last))))
    with torch.inference_mode():
        G.synthesis(torch.randn(batch, G.n_latent, 32))
    assert len(formats) == G.num_layers + 2 * G.log_size - 3 and all(cl for _, cl in formats), formats


def test_fast_paths_match_the_reference_synthesis_without_gradients():
    """Inference as the encode path runs it (no autograd, batch 1 and 2, channels_last, polyphase skip
    up-sampling): the per-sample reference computation from the state dict, rel. L2 < 1e-5."""
    torch.manual_seed(5)
    G = Generator(64, **TINY)
    _randomize_state(G)
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    w = torch.randn(2, G.n_latent, 32)
    ref = _ref_synthesis(sd, w, G.num_layers)
    with torch.inference_mode():
        for batch in (1, 2):
            img = G.synthesis(w[:batch])
            assert ((img - ref[:batch]).norm() / ref[:batch].norm()).item() < 1e-5, batch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_synthesis_matches_the_reference_without_host_syncs():
    """On CUDA (TF32 off): the fast paths equal the per-sample reference (rel. L2 1e-5) with no host-device
    synchronisation in synthesis; bf16 autocast stays within 3e-2 of fp32."""
    torch.manual_seed(6)
    G = Generator(64, **TINY)
    _randomize_state(G)
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    w = torch.randn(2, G.n_latent, 32)
    ref = _ref_synthesis(sd, w, G.num_layers)
    G, wc = G.cuda(), w.cuda()
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode():
            G.synthesis(wc)                                  # lazy initialisation outside the sync check
            torch.cuda.set_sync_debug_mode("error")
            try:
                img = G.synthesis(wc)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    img16 = G.synthesis(wc)
            finally:
                torch.cuda.set_sync_debug_mode("default")
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    img, img16 = img.cpu(), img16.float().cpu()
    assert ((img - ref).norm() / ref.norm()).item() < 1e-5
    assert ((img16 - img).norm() / img.norm()).item() < 3e-2
