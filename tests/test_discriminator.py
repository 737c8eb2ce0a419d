"""StyleGAN2 discriminator: the rosinality key layout, an independent per-sample computation, loading."""
import math
import pickle
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from render2style.stylegan2.discriminator import Discriminator, load_discriminator, minibatch_stddev

TINY = dict(channel_multiplier=1, channel_max=16)


def test_config_f_keys_and_shapes_are_the_rosinality_layout():
    sd = {k: tuple(v.shape) for k, v in Discriminator(1024).state_dict().items()}
    assert sd["convs.0.0.weight"] == (32, 3, 1, 1) and sd["convs.0.1.bias"] == (32,)
    assert sd["convs.1.conv1.0.weight"] == (32, 32, 3, 3) and sd["convs.1.conv1.1.bias"] == (32,)
    assert sd["convs.1.conv2.0.kernel"] == (4, 4) and sd["convs.1.conv2.1.weight"] == (64, 32, 3, 3)
    assert sd["convs.1.conv2.2.bias"] == (64,) and sd["convs.1.skip.0.kernel"] == (4, 4)
    assert sd["convs.1.skip.1.weight"] == (64, 32, 1, 1) and "convs.1.skip.1.bias" not in sd
    assert sd["convs.8.conv2.1.weight"] == (512, 512, 3, 3) and "convs.9.conv1.0.weight" not in sd
    assert sd["final_conv.0.weight"] == (512, 513, 3, 3) and sd["final_conv.1.bias"] == (512,)
    assert sd["final_linear.0.weight"] == (512, 8192) and sd["final_linear.1.weight"] == (1, 512)


def _fir_down_conv(x, kernel, weight, pad):
    """Blur (true convolution with the normalised 4×4 kernel, padded), then a stride-2 convolution."""
    c = x.shape[1]
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    x = F.conv2d(x, kernel.flip(0, 1)[None, None].expand(c, 1, -1, -1), groups=c)
    return F.conv2d(x, weight / math.sqrt(weight[0].numel()), stride=2)


def _lrelu(x, bias):
    return F.leaky_relu(x + bias[None, :, None, None], 0.2) * math.sqrt(2)


def _reference(sd, images, n_blocks, group=4):
    """The discriminator written from its state dict, the minibatch stddev with explicit group loops."""
    scaled = lambda w: w / math.sqrt(w[0].numel())  # noqa: E731
    x = _lrelu(F.conv2d(images, scaled(sd["convs.0.0.weight"])), sd["convs.0.1.bias"])
    for i in range(1, n_blocks + 1):
        p = f"convs.{i}"
        h = _lrelu(F.conv2d(x, scaled(sd[f"{p}.conv1.0.weight"]), padding=1), sd[f"{p}.conv1.1.bias"])
        h = _lrelu(_fir_down_conv(h, sd[f"{p}.conv2.0.kernel"], sd[f"{p}.conv2.1.weight"], (2, 2)),
                   sd[f"{p}.conv2.2.bias"])
        s = _fir_down_conv(x, sd[f"{p}.skip.0.kernel"], sd[f"{p}.skip.1.weight"], (1, 1))
        x = (h + s) / math.sqrt(2)
    b = x.shape[0]
    g = min(group, b)
    std = torch.empty(b)
    for j in range(b // g):                        # sample i belongs to group i mod (b / g)
        members = x[j::b // g]
        std[j::b // g] = (members.var(0, unbiased=False) + 1e-8).sqrt().mean()
    x = torch.cat([x, std.view(b, 1, 1, 1).expand(b, 1, *x.shape[2:])], 1)
    x = _lrelu(F.conv2d(x, scaled(sd["final_conv.0.weight"]), padding=1), sd["final_conv.1.bias"])
    w0, w1 = sd["final_linear.0.weight"], sd["final_linear.1.weight"]
    x = F.leaky_relu(x.flatten(1) @ (w0 / math.sqrt(w0.shape[1])).t() + sd["final_linear.0.bias"], 0.2)
    x = x * math.sqrt(2)
    return x @ (w1 / math.sqrt(w1.shape[1])).t() + sd["final_linear.1.bias"]


def test_discriminator_equals_the_reference_computation():
    torch.manual_seed(0)
    D = Discriminator(16, **TINY)
    with torch.no_grad():
        for k, v in D.state_dict().items():
            if k.endswith("bias"):
                v.copy_(torch.randn_like(v) * 0.3)
    images = torch.rand(8, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out = D(images)
    ref = _reference(D.state_dict(), images, n_blocks=2)
    assert out.shape == (8, 1)
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


def test_minibatch_stddev_sees_the_spread_of_the_batch():
    same = torch.randn(1, 2, 4, 4).expand(4, -1, -1, -1)
    assert minibatch_stddev(same)[:, -1].max() < 1e-3
    spread = torch.randn(4, 2, 4, 4) * 3
    assert minibatch_stddev(spread)[:, -1].min() > 1.0
    with pytest.raises(ValueError, match="multiple of the group size"):
        minibatch_stddev(torch.randn(6, 2, 4, 4))


def test_rosinality_d_entry_loads_strictly_and_errors_name_the_file(tmp_path):
    torch.manual_seed(1)
    src = Discriminator(64, channel_multiplier=0.125, channel_max=64)   # 32 maps at 64², 64 below
    path = tmp_path / "050000.pt"
    torch.save({"g_ema": {}, "d": src.state_dict()}, path)
    D = load_discriminator(path)
    assert D.config == src.config
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(D(x), src(x))
    broken = dict(src.state_dict())
    broken["final_conv.0.weight"] = broken["final_conv.0.weight"][:, :-1]
    torch.save({"d": broken}, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"broken\.pt: the 'd' entry does not match"):
        load_discriminator(tmp_path / "broken.pt")
    torch.save({"g_ema": {}}, tmp_path / "g_only.pt")
    with pytest.raises(ValueError, match=r"g_only\.pt: no 'd'"):
        load_discriminator(tmp_path / "g_only.pt")


# --- NVIDIA stylegan2-ada-pytorch D -> rosinality 'd' ------------------------------------------------------
def _nvidia_d_state(size, channel_base, channel_max, seed=0):
    """A resnet D under stylegan2-ada-pytorch's names and shapes (channels min(channel_base // res, channel_max)),
    with its FIR buffers, random weights and biases."""
    g = torch.Generator().manual_seed(seed)
    ch = {2 ** i: min(channel_base // 2 ** i, channel_max) for i in range(2, int(math.log2(size)) + 1)}
    fir = torch.tensor([1.0, 3, 3, 1])
    fir = torch.outer(fir, fir) / 64
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd = {f"b{size}.fromrgb.weight": r(ch[size], 3, 1, 1), f"b{size}.fromrgb.bias": r(ch[size]) * 0.3,
          f"b{size}.fromrgb.resample_filter": fir}
    res = size
    while res > 4:
        tmp, out = ch[res], ch[res // 2]
        sd.update({f"b{res}.conv0.weight": r(tmp, tmp, 3, 3), f"b{res}.conv0.bias": r(tmp) * 0.3,
                   f"b{res}.conv0.resample_filter": fir, f"b{res}.conv1.weight": r(out, tmp, 3, 3),
                   f"b{res}.conv1.bias": r(out) * 0.3, f"b{res}.conv1.resample_filter": fir,
                   f"b{res}.skip.weight": r(out, tmp, 1, 1), f"b{res}.skip.resample_filter": fir,
                   f"b{res}.resample_filter": fir})
        res //= 2
    c = ch[4]
    sd.update({"b4.conv.weight": r(c, c + 1, 3, 3), "b4.conv.bias": r(c) * 0.3, "b4.conv.resample_filter": fir,
               "b4.fc.weight": r(c, c * 16), "b4.fc.bias": r(c) * 0.3, "b4.out.weight": r(1, c),
               "b4.out.bias": r(1)})
    return sd


def _nvidia_forward(sd, images, size, group=4):
    """stylegan2-ada-pytorch's resnet D written from its own names: from-RGB, blocks (skip·√½ + conv1(conv0)·√½),
    minibatch stddev (groups of samples i, i + B/G, ...), conv, fc, out."""
    gain = lambda w: w / math.sqrt(w[0].numel())  # noqa: E731
    x = _lrelu(F.conv2d(images, gain(sd[f"b{size}.fromrgb.weight"])), sd[f"b{size}.fromrgb.bias"])
    res = size
    while res > 4:
        b = f"b{res}"
        y = _fir_down_conv(x, sd[f"{b}.resample_filter"], sd[f"{b}.skip.weight"], (1, 1)) * math.sqrt(0.5)
        h = _lrelu(F.conv2d(x, gain(sd[f"{b}.conv0.weight"]), padding=1), sd[f"{b}.conv0.bias"])
        h = _lrelu(_fir_down_conv(h, sd[f"{b}.resample_filter"], sd[f"{b}.conv1.weight"], (2, 2)),
                   sd[f"{b}.conv1.bias"]) * math.sqrt(0.5)
        x = y + h
        res //= 2
    n = x.shape[0]
    grp = min(group, n)
    y = x.reshape(grp, -1, 1, x.shape[1], 4, 4)
    y = ((y - y.mean(0)).square().mean(0) + 1e-8).sqrt().mean([2, 3, 4]).reshape(-1, 1, 1, 1)
    x = torch.cat([x, y.repeat(grp, 1, 4, 4)], 1)
    x = _lrelu(F.conv2d(x, gain(sd["b4.conv.weight"]), padding=1), sd["b4.conv.bias"])
    x = F.leaky_relu(x.flatten(1) @ gain(sd["b4.fc.weight"]).t() + sd["b4.fc.bias"], 0.2) * math.sqrt(2)
    return x @ gain(sd["b4.out.weight"]).t() + sd["b4.out.bias"]


@pytest.fixture
def d_pickle(tmp_path, monkeypatch):
    from test_convert_weights import _nvidia_state, _persistence_module, _tree

    from render2style.stylegan2 import Generator

    def write(d_state, kwargs=None, name="snapshot.pkl"):
        torch.manual_seed(0)
        G = Generator(64, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=16)
        monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
        monkeypatch.setitem(sys.modules, "torch_utils.persistence", _persistence_module())
        d = _tree(d_state)
        d.meta["state"]["init_kwargs"] = kwargs or {"c_dim": 0, "img_resolution": 64, "architecture": "resnet",
                                                    "mbstd_group_size": 4}
        path = tmp_path / name
        with open(path, "wb") as f:
            pickle.dump({"G": _tree(_nvidia_state(G)), "D": d, "G_ema": _tree(_nvidia_state(G))}, f)
        monkeypatch.delitem(sys.modules, "torch_utils.persistence")
        return path
    return write


@pytest.mark.parametrize("size, channel_base, channel_max", [(64, 2048, 64), (32, 512, 16)])
def test_nvidia_pkl_discriminator_converts_to_the_d_entry(d_pickle, tmp_path, size, channel_base, channel_max):
    from render2style.stylegan2.ada_pkl import ada_d_to_rosinality, convert_ada_pkl
    nv = _nvidia_d_state(size, channel_base, channel_max)
    state, cfg = ada_d_to_rosinality(nv, "mem", {"architecture": "resnet"})
    D = Discriminator(**{k: v for k, v in cfg.items() if k != "stddev_group"})
    D.load_state_dict(state, strict=True)
    images = torch.rand(8, 3, size, size) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(D(images), _nvidia_forward(nv, images, size), atol=1e-4)
    if size == 64:   # through the pickle and the converter, then the strict loader
        out = tmp_path / "converted.pt"
        ckpt = convert_ada_pkl(d_pickle(nv), out)
        assert {"g", "g_ema", "d"} <= set(ckpt)
        with torch.no_grad():
            assert torch.allclose(load_discriminator(out)(images), _nvidia_forward(nv, images, size), atol=1e-4)


def test_unsupported_nvidia_discriminators_are_refused_with_the_file_named(d_pickle):
    from render2style.stylegan2.ada_pkl import convert_ada_pkl
    nv = _nvidia_d_state(64, 2048, 64)
    with pytest.raises(ValueError, match=r"skip\.pkl: only the 'resnet' discriminator"):
        convert_ada_pkl(d_pickle(nv, {"architecture": "skip"}, "skip.pkl"))
    with pytest.raises(ValueError, match=r"cond\.pkl: conditional"):
        convert_ada_pkl(d_pickle(nv, {"architecture": "resnet", "c_dim": 10}, "cond.pkl"))
    odd = _nvidia_d_state(64, 8192, 512)          # 256 maps at 32², 512 at 16² (rosinality: one value up to 32²)
    with pytest.raises(ValueError, match=r"odd\.pkl: the discriminator's channels"):
        convert_ada_pkl(d_pickle(odd, None, "odd.pkl"))
