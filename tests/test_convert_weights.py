"""stylegan2-ada-pytorch .pkl -> rosinality conversion through the restricted unpickler."""
import collections
import math
import pickle
import sys
import types

import pytest
import torch

from render2style.scripts import convert_weights
from render2style.stylegan2 import Generator, convert_ada_pkl, load_generator

CFG = dict(style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=16)


def _nvidia_state(G: Generator) -> dict:
    """The generator's weights under stylegan2-ada-pytorch names and shapes (the inverse of the conversion)."""
    sd = G.state_dict()
    out = {f"mapping.fc{i}.{p}": sd[f"style.{i + 1}.{p}"] for i in range(CFG["n_mlp"]) for p in ("weight", "bias")}
    out["mapping.w_avg"] = torch.randn(CFG["style_dim"])
    out["synthesis.b4.const"] = sd["input.input"][0]

    def layer(dst, src, noise_idx):
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"][0]
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.noise_const"] = sd[f"noises.noise_{noise_idx}"][0, 0]
        out[f"{dst}.resample_filter"] = torch.ones(4, 4)

    def rgb(dst, src):
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].flatten()

    layer("synthesis.b4.conv1", "conv1", 0)
    rgb("synthesis.b4.torgb", "to_rgb1")
    for i in range(int(math.log2(G.size)) - 2):
        res = 2 ** (i + 3)
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * i}", 2 * i + 1)
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * i + 1}", 2 * i + 2)
        rgb(f"synthesis.b{res}.torgb", f"to_rgbs.{i}")
    return out


def _persistence_module():
    """A stand-in for NVIDIA's torch_utils.persistence so the pickle has the official structure."""
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called by the converter
        raise AssertionError("pickled code must not run")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    return mod


class _Persistent:
    """Pickles like a @persistent_class module: (_reconstruct_persistent_obj, (meta,))."""

    def __init__(self, class_name, params, children, kwargs=None):
        self.meta = dict(type="class", version=6, module_src="import os\nos.system('echo pwned')",
                         class_name=class_name, state=dict(
                             _parameters=collections.OrderedDict(params), _buffers=collections.OrderedDict(),
                             _modules=collections.OrderedDict(children), training=False,
                             init_kwargs=kwargs or {}))

    def __reduce__(self):
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,)


class _Exploit:
    def __reduce__(self):
        import os
        return os.system, ("touch /tmp/render2style_pwned",)


def _tree(flat: dict) -> _Persistent:
    """Nest a flat state dict into persistent modules (mapping.fc0.weight -> mapping / fc0 / weight)."""
    def build(name, items):
        params = {k: torch.nn.Parameter(v, requires_grad=False) for k, v in items.items() if "." not in k}
        groups = collections.defaultdict(dict)
        for k, v in items.items():
            if "." in k:
                head, rest = k.split(".", 1)
                groups[head][rest] = v
        return _Persistent(name, params, {h: build(h, g) for h, g in groups.items()})
    return build("Generator", flat)


@pytest.fixture
def ada_pickle(tmp_path, monkeypatch):
    torch.manual_seed(0)
    G = Generator(32, **CFG).eval()
    with torch.no_grad():
        for k, v in G.state_dict().items():
            if k.endswith(("bias", "noise.weight")):
                v.add_(torch.randn_like(v) * 0.3)
    nv = _nvidia_state(G)
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", _persistence_module())
    path = tmp_path / "network-snapshot.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G": _tree(nv), "D": None, "G_ema": _tree(nv), "augment_pipe": _Exploit(),
                     "training_set_kwargs": {"resolution": 32}}, f)
    monkeypatch.delitem(sys.modules, "torch_utils.persistence")
    return path, G, nv["mapping.w_avg"]


def test_pkl_round_trip_gives_the_same_images(ada_pickle, tmp_path):
    path, G, w_avg = ada_pickle
    out = tmp_path / "converted.pt"
    assert convert_weights.main([str(path), str(out)]) == 0
    G2, latent_avg = load_generator(out, size=32)
    assert torch.equal(latent_avg, w_avg[None])
    w = G.mapping(torch.randn(2, 32)).unsqueeze(1).repeat(1, G.n_latent, 1)
    with torch.no_grad():
        assert torch.allclose(G2.synthesis(w), G.synthesis(w), atol=1e-6)


def test_restricted_unpickler_runs_no_pickled_code(ada_pickle, tmp_path):
    import os
    marker = "/tmp/render2style_pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    convert_ada_pkl(ada_pickle[0])
    assert not os.path.exists(marker)


def test_conversion_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        convert_ada_pkl(tmp_path / "missing.pkl")
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(ValueError, match="junk.pkl"):
        convert_ada_pkl(junk)
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps({"D": 1}))
    with pytest.raises(ValueError, match="wrong.pkl: expected a dict with 'G_ema'"):
        convert_ada_pkl(wrong)
