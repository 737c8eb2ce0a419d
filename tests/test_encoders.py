"""Encoders: IR-SE backbone layout, pSp encoder shapes, pSp checkpoint compatibility, latent_avg sources."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from render2style.encoders import (
    Backbone,
    BackboneEncoderUsingLastLayerIntoW,
    BackboneEncoderUsingLastLayerIntoWPlus,
    GradualStyleEncoder,
    get_units,
    pSp,
    stage_ends,
    style_split,
)
from render2style.encoders.psp import load_ir_se50_weights
from render2style.encoders.psp_encoders import pyramid_sizes
from render2style.pretrained import MissingWeightsError
from render2style.stylegan2 import Generator

TINY_G = dict(size=32, channel_multiplier=1, channel_max=16)  # n_latent 8: coarse, medium and fine styles


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights and BatchNorm statistics, so a wrong layer order cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif t.ndim == 1:  # BN / PReLU weights
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t[0].numel()))
    return module


# --- an independent functional pSp encoder, written from the paper + pSp's layout --------------------
def _bn(sd, p, x):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        training=False, eps=1e-5)


def _unit(sd, p, x, stride):
    if f"{p}.shortcut_layer.0.weight" in sd:
        short = _bn(sd, f"{p}.shortcut_layer.1", F.conv2d(x, sd[f"{p}.shortcut_layer.0.weight"], stride=stride))
    else:
        short = x[:, :, ::stride, ::stride]  # MaxPool2d(kernel 1, stride)
    r = _bn(sd, f"{p}.res_layer.0", x)
    r = F.prelu(F.conv2d(r, sd[f"{p}.res_layer.1.weight"], padding=1), sd[f"{p}.res_layer.2.weight"])
    r = _bn(sd, f"{p}.res_layer.4", F.conv2d(r, sd[f"{p}.res_layer.3.weight"], stride=stride, padding=1))
    gate = r.mean((2, 3), keepdim=True)
    gate = torch.sigmoid(F.conv2d(F.relu(F.conv2d(gate, sd[f"{p}.res_layer.5.fc1.weight"])),
                                  sd[f"{p}.res_layer.5.fc2.weight"]))
    return r * gate + short


def reference_psp_codes(sd: dict, x: torch.Tensor, n_styles: int) -> torch.Tensor:
    """pSp GradualStyleEncoder (IR-SE50) from its state dict: taps after units 6, 20, 23."""
    x = _bn(sd, "input_layer.1", F.conv2d(x, sd["input_layer.0.weight"], padding=1))
    x = F.prelu(x, sd["input_layer.2.weight"])
    feats = {}
    for i in range(24):
        x = _unit(sd, f"body.{i}", x, 2 if i in (0, 3, 7, 21) else 1)
        feats[i] = x
    c1, c2, c3 = feats[6], feats[20], feats[23]
    up = lambda a, b: F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=True) + b  # noqa: E731
    p2 = up(c3, F.conv2d(c2, sd["latlayer1.weight"], sd["latlayer1.bias"]))
    p1 = up(p2, F.conv2d(c1, sd["latlayer2.weight"], sd["latlayer2.bias"]))
    codes = []
    for i in range(n_styles):
        h = c3 if i < 3 else p2 if i < 7 else p1
        j = 0
        while f"styles.{i}.convs.{j}.weight" in sd:
            h = F.leaky_relu(F.conv2d(h, sd[f"styles.{i}.convs.{j}.weight"], sd[f"styles.{i}.convs.{j}.bias"],
                                      stride=2, padding=1), 0.01)
            j += 2
        w = sd[f"styles.{i}.linear.weight"] / math.sqrt(512)  # EqualLinear, lr_mul 1
        codes.append(h.flatten(1) @ w.t() + sd[f"styles.{i}.linear.bias"])
    return torch.stack(codes, 1)


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory):
    """A checkpoint in the official pSp layout, built without render2style's pSp class."""
    torch.manual_seed(0)
    encoder = randomize_(GradualStyleEncoder(50, "ir_se", n_styles=8, input_nc=3), seed=1)
    decoder = Generator(**TINY_G)
    state = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
             **{f"decoder.{k}": v for k, v in decoder.state_dict().items()}}
    opts = dict(exp_dir="experiments/ffhq_encode", dataset_type="ffhq_encode", encoder_type="GradualStyleEncoder",
                input_nc=3, label_nc=0, output_size=32, batch_size=8, learning_rate=1e-4, optim_name="ranger",
                start_from_latent_avg=True, learn_in_w=False, lpips_lambda=0.8, id_lambda=0.1, l2_lambda=1.0,
                stylegan_weights="pretrained_models/stylegan2-ffhq-config-f.pt", checkpoint_path=None,
                device="cuda:0")
    latent_avg = torch.randn(8, 512)
    path = tmp_path_factory.mktemp("psp") / "psp_official_layout.pt"
    torch.save({"state_dict": state, "opts": opts, "latent_avg": latent_avg}, path)
    return path, state, latent_avg


@pytest.fixture(scope="module")
def official_model(official_ckpt):
    return pSp.from_checkpoint(official_ckpt[0])


# --- IR-SE backbone ---------------------------------------------------------------------------------
def test_irse50_backbone_has_official_key_names_and_shapes():
    sd = Backbone(112, 50, "ir_se").state_dict()
    expected = {
        "input_layer.0.weight": (64, 3, 3, 3),
        "input_layer.2.weight": (64,),
        "body.0.res_layer.0.running_var": (64,),
        "body.0.res_layer.5.fc1.weight": (4, 64, 1, 1),
        "body.0.res_layer.5.fc2.weight": (64, 4, 1, 1),
        "body.3.shortcut_layer.0.weight": (128, 64, 1, 1),
        "body.3.shortcut_layer.1.weight": (128,),
        "body.23.res_layer.3.weight": (512, 512, 3, 3),
        "output_layer.0.weight": (512,),
        "output_layer.3.weight": (512, 25088),
        "output_layer.4.weight": (512,),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any(k.startswith("body.0.shortcut_layer") for k in sd)  # MaxPool shortcut, no parameters
    assert max(int(k.split(".")[1]) for k in sd if k.startswith("body.")) == 23


def test_irse_unit_counts_and_pyramid_taps():
    assert [len(get_units(n)) for n in (18, 34, 50, 100, 152)] == [8, 16, 24, 49, 50]
    assert stage_ends(18) == (1, 3, 5, 7)
    assert stage_ends(34) == (2, 6, 12, 15)
    assert stage_ends(50) == (2, 6, 20, 23)
    assert stage_ends(100) == (2, 15, 45, 48)
    assert stage_ends(152) == (2, 10, 46, 49)


def test_irse50_strict_load_from_file_gives_same_unit_embeddings(tmp_path):
    src = randomize_(Backbone(112, 50, "ir_se"), seed=3).eval()
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}  # pre-0.4.1 file
    torch.save(state, tmp_path / "model_ir_se50.pth")
    dst = Backbone(112, 50, "ir_se")
    dst.load_state_dict(torch.load(tmp_path / "model_ir_se50.pth", weights_only=True), strict=True)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        a, b = src(x), dst.eval()(x)
    assert torch.equal(a, b)
    assert torch.allclose(a.norm(dim=1), torch.ones(2), atol=1e-5)


# --- encoders ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_styles,input_nc", [(18, 3), (14, 4)])
def test_gradual_style_encoder_output_shape(n_styles, input_nc):
    enc = GradualStyleEncoder(50, "ir_se", n_styles=n_styles, input_nc=input_nc).eval()
    with torch.no_grad():
        out = enc(torch.randn(1, input_nc, 256, 256))
    assert out.shape == (1, n_styles, 512)
    assert torch.isfinite(out).all()


def test_style_split_rule():
    assert style_split(18) == (3, 4, 11)
    assert style_split(14) == (3, 4, 7)
    assert style_split(10) == (3, 4, 3)
    assert style_split(5) == (3, 2, 0)


def official_psp_encoder_shapes(n_styles: int) -> dict[str, tuple[int, ...]]:
    """pSp's GradualStyleEncoder (IR-SE50, 256 input) state-dict shapes, written out from pSp's code:
    the ArcFace body without its output layer, map2style blocks of 4 / 5 / 6 convs (coarse / medium /
    fine) 512 wide with a 512 -> 512 EqualLinear, and the two 1x1 lateral layers."""
    shapes = {k: tuple(v.shape) for k, v in Backbone(112, 50, "ir_se").state_dict().items()
              if not k.startswith("output_layer.")}
    for i in range(n_styles):
        for j in range(4 if i < 3 else 5 if i < 7 else 6):
            shapes[f"styles.{i}.convs.{2 * j}.weight"] = (512, 512, 3, 3)
            shapes[f"styles.{i}.convs.{2 * j}.bias"] = (512,)
        shapes[f"styles.{i}.linear.weight"] = (512, 512)
        shapes[f"styles.{i}.linear.bias"] = (512,)
    shapes.update({"latlayer1.weight": (512, 256, 1, 1), "latlayer1.bias": (512,),
                   "latlayer2.weight": (512, 128, 1, 1), "latlayer2.bias": (512,)})
    return shapes


def test_pyramid_sizes_follow_the_backbone_strides():
    assert pyramid_sizes(256) == (16, 32, 64)
    assert pyramid_sizes(64) == (4, 8, 16)
    assert pyramid_sizes(224) == (14, 28, 56)
    with pytest.raises(ValueError, match="resolution"):
        pyramid_sizes(8)


def test_256_input_encoder_has_exactly_the_official_keys_and_shapes():
    with torch.device("meta"):  # shapes only: no memory, no time
        enc = GradualStyleEncoder(50, "ir_se", n_styles=18, input_nc=3, resolution=256, style_channels=512)
    assert {k: tuple(v.shape) for k, v in enc.state_dict().items()} == official_psp_encoder_shapes(18)


def test_map2style_blocks_reduce_the_map_they_receive_to_1x1_at_64_px():
    enc = GradualStyleEncoder(18, "ir_se", n_styles=10, input_nc=3, resolution=64, style_channels=32).eval()
    seen = {}
    for i, block in enumerate(enc.styles):
        block.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0].shape[-1]))
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10, 512)
    assert [seen[i] for i in range(10)] == [4] * 3 + [8] * 4 + [16] * 3
    assert [len(b.convs) // 2 for b in enc.styles] == [2] * 3 + [3] * 4 + [4] * 3  # log2 of each side
    assert enc.styles[0].convs[0].weight.shape == (32, 512, 3, 3)
    assert enc.styles[9].convs[6].weight.shape == (32, 32, 3, 3)
    assert enc.styles[0].linear.weight.shape == (512, 32)
    with pytest.raises(ValueError, match="larger than the encoder's resolution"):
        with torch.no_grad():
            enc(torch.randn(1, 3, 128, 128))


def test_demo_encoder_is_small():
    with torch.device("meta"):
        demo = GradualStyleEncoder(18, "ir_se", n_styles=10, resolution=64, style_channels=128)
        full = GradualStyleEncoder(50, "ir_se", n_styles=10, resolution=64)
    n_demo, n_full = (sum(p.numel() for p in e.parameters()) for e in (demo, full))
    assert n_demo < 25e6 and n_full > 3 * n_demo


def test_ablation_encoders_output_shapes():
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        w = BackboneEncoderUsingLastLayerIntoW(50, "ir_se", input_nc=4).eval()(x)
        wp = BackboneEncoderUsingLastLayerIntoWPlus(50, "ir_se", n_styles=10, input_nc=4).eval()(x)
    assert w.shape == (2, 512)
    assert wp.shape == (2, 10, 512)


# --- pSp checkpoints --------------------------------------------------------------------------------
def test_official_checkpoint_has_pSp_key_names(official_ckpt, official_model):
    keys = set(official_model.state_dict())
    assert keys == set(official_ckpt[1])
    for k in ("encoder.styles.0.convs.0.weight", "encoder.styles.7.linear.weight", "encoder.latlayer1.weight",
              "encoder.latlayer2.weight", "encoder.input_layer.0.weight", "encoder.body.0.res_layer.5.fc1.weight",
              "decoder.style.1.weight", "decoder.convs.0.conv.weight", "decoder.noises.noise_0"):
        assert k in keys, k


def test_official_checkpoint_gives_pSp_codes_and_images(official_ckpt, official_model):
    _, state, latent_avg = official_ckpt
    model = official_model
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        images, codes = model(x, return_latents=True)
        enc_sd = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        expected = reference_psp_codes(enc_sd, x, 8) + latent_avg
        ref_images, _ = model.decoder([expected], input_is_latent=True, randomize_noise=False)
    assert torch.allclose(codes, expected, rtol=1e-4, atol=1e-5)
    assert torch.allclose(images, ref_images, atol=1e-4)
    assert torch.equal(model.latent_avg, latent_avg)


def test_checkpoint_dict_round_trip_with_trainer_keys(official_model, tmp_path):
    model = official_model
    ckpt = model.checkpoint_dict()
    assert set(ckpt) == {"state_dict", "opts", "latent_avg"}
    assert isinstance(ckpt["opts"], dict) and ckpt["opts"]["encoder_type"] == "GradualStyleEncoder"
    ckpt.update(step=7, optimizer={"state": {}})
    torch.save(ckpt, tmp_path / "ours.pt")
    again = pSp.from_checkpoint(tmp_path / "ours.pt")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.encode(x), again.encode(x))


def test_official_checkpoint_without_new_opts_builds_psp_architecture(official_model):
    o = official_model.opts
    assert (o.resolution, o.style_channels, o.encoder_num_layers) == (256, 512, 50)
    assert official_model.encoder.styles[7].linear.weight.shape == (512, 512)
    assert len(official_model.encoder.styles[7].convs) == 12  # 6 convs + 6 LeakyReLU: the 64x64 fine map


def test_resolution_and_style_channels_are_stored_in_and_restored_from_opts(tmp_path):
    opts = dict(stylegan_weights="demo-random", ir_se50_weights="none", latent_avg_samples=10, encoder_num_layers=18,
                resolution=64, style_channels=16)
    model = randomize_(pSp(opts), seed=4).eval()
    ckpt = model.checkpoint_dict()
    assert (ckpt["opts"]["resolution"], ckpt["opts"]["style_channels"], ckpt["opts"]["encoder_num_layers"]) == \
        (64, 16, 18)
    torch.save(ckpt, tmp_path / "small.pt")
    again = pSp.from_checkpoint(tmp_path / "small.pt")
    assert again.encoder.styles[0].convs[0].out_channels == 16 and len(again.encoder.body) == 8
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.encode(x), again.encode(x))
    # options that contradict the weights are refused with the file and the architecture named
    ckpt["opts"]["style_channels"] = 32
    torch.save(ckpt, tmp_path / "contradicting.pt")
    with pytest.raises(ValueError, match="contradicting.pt.*style_channels=32"):
        pSp.from_checkpoint(tmp_path / "contradicting.pt")


def test_checkpoint_with_wrong_keys_is_rejected_naming_the_file(official_ckpt, tmp_path):
    path, state, latent_avg = official_ckpt
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_dict"]["encoder.latlayer1.weight"]
    bad = tmp_path / "broken_psp.pt"
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match="broken_psp.pt"):
        pSp.from_checkpoint(bad)


# --- latent_avg: never missing ----------------------------------------------------------------------
def _stylegan_file(tmp_path, latent_avg=None):
    torch.manual_seed(0)
    G = Generator(**TINY_G)
    ckpt = {"g_ema": G.state_dict()}
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    path = tmp_path / "stylegan2.pt"
    torch.save(ckpt, path)
    return path


def test_latent_avg_from_stylegan_file_is_repeated_per_style(tmp_path):
    file_avg = torch.randn(512)
    opts = dict(stylegan_weights=str(_stylegan_file(tmp_path, file_avg)), output_size=32, ir_se50_weights="none")
    model = pSp(opts)
    assert model.latent_avg.shape == (8, 512)
    assert torch.equal(model.latent_avg, file_avg.expand(8, 512))


def test_latent_avg_computed_from_mapping_when_absent(tmp_path):
    opts = dict(stylegan_weights=str(_stylegan_file(tmp_path)), output_size=32, ir_se50_weights="none",
                encoder_type="BackboneEncoderUsingLastLayerIntoW", learn_in_w=True, latent_avg_samples=500)
    model = pSp(opts)
    assert model.latent_avg.shape == (1, 512)
    assert torch.allclose(model.latent_avg, model.decoder.mean_latent(500, seed=0))
    with torch.no_grad():
        codes = model.encode(torch.randn(2, 3, 64, 64))
    assert codes.shape == (2, 512)


def test_demo_pSp_adds_latent_avg_and_mixes_styles():
    model = pSp(dict(stylegan_weights="demo-random", latent_avg_samples=500)).eval()
    assert (model.opts.output_size, model.n_styles) == (64, 10)
    x, inject = torch.randn(1, 3, 64, 64), torch.randn(1, 10, 512)
    with torch.no_grad():
        raw = model.encoder(x)
        images, codes = model(x, return_latents=True)
        _, mixed = model(x, latent_mask=[7, 8, 9], inject_latent=inject, alpha=0.25, return_latents=True)
    assert images.shape == (1, 3, 64, 64)
    assert torch.allclose(codes, raw + model.latent_avg)
    assert torch.allclose(mixed[:, :7], codes[:, :7])
    assert torch.allclose(mixed[:, 7:], 0.25 * inject[:, 7:] + 0.75 * codes[:, 7:], atol=1e-6)


# --- backbone initialization from ArcFace -----------------------------------------------------------
def test_four_channel_input_initialized_from_rgb_arcface_weights(tmp_path):
    arcface = randomize_(Backbone(112, 50, "ir_se"), seed=5).state_dict()
    torch.save(arcface, tmp_path / "model_ir_se50.pth")
    model = pSp(dict(stylegan_weights="demo-random", latent_avg_samples=10, input_nc=4,
                     ir_se50_weights=str(tmp_path / "model_ir_se50.pth")))
    w = model.encoder.input_layer[0].weight
    assert w.shape == (64, 4, 3, 3)
    assert torch.equal(w[:, :3], arcface["input_layer.0.weight"])
    assert torch.count_nonzero(w[:, 3]) == 0
    assert torch.equal(model.encoder.body[20].res_layer[5].fc1.weight, arcface["body.20.res_layer.5.fc1.weight"])
    x = torch.randn(1, 4, 32, 32)
    x_other_mask = torch.cat([x[:, :3], torch.rand(1, 1, 32, 32)], 1)
    with torch.no_grad():
        assert torch.equal(model.encoder.input_layer(x), model.encoder.input_layer(x_other_mask))


def test_arcface_weights_refused_for_a_light_backbone(tmp_path):
    torch.save({}, tmp_path / "model_ir_se50.pth")
    with torch.device("meta"):
        enc = GradualStyleEncoder(18, "ir_se", n_styles=10, resolution=64, style_channels=16)
    with pytest.raises(ValueError, match="model_ir_se50.pth.*50-layer backbone.*8 units"):
        load_ir_se50_weights(enc, tmp_path / "model_ir_se50.pth")


def test_missing_arcface_file_names_it_and_its_source(tmp_path):
    with pytest.raises(MissingWeightsError, match="model_ir_se50.pth.*pixel2style2pixel"):
        pSp(dict(stylegan_weights="demo-random", latent_avg_samples=10,
                 ir_se50_weights=str(tmp_path / "model_ir_se50.pth")))


def test_real_generator_without_arcface_option_is_an_error(tmp_path):
    with pytest.raises(MissingWeightsError, match="model_ir_se50.pth"):
        pSp(dict(stylegan_weights=str(_stylegan_file(tmp_path)), output_size=32))


def test_missing_encoder_checkpoint_says_what_file_is_expected(tmp_path):
    expected = r"nope\.pt: file not found\. Expected an encoder checkpoint in the pSp layout"
    with pytest.raises(FileNotFoundError, match=expected):
        pSp.from_checkpoint(tmp_path / "nope.pt")


def test_folded_channels_last_encoder_equals_the_original_in_eval_mode():
    """BatchNorm folded into the convolutions before it (with non-trivial running statistics) and channels_last
    weights: the same codes within rel. L2 1e-5 in fp32; only the BatchNorms after a convolution are gone."""
    from torch import nn

    from render2style.encoders.fold import inference_encoder
    from render2style.encoders.psp_encoders import build_encoder
    torch.manual_seed(0)
    enc = build_encoder("GradualStyleEncoder", 18, "ir_se", n_styles=10, input_nc=4, resolution=64,
                        style_channels=16).eval()
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
    folded = inference_encoder(enc)
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        ref, out = enc(x), folded(x.contiguous(memory_format=torch.channels_last))
    assert ((out - ref).norm() / ref.norm()).item() < 1e-5
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in enc.modules())
    n_units = len(enc.body)            # each unit: res_layer.4 folded, res_layer.0 (before a padded conv) kept
    n_shortcuts = sum(isinstance(u.shortcut_layer, nn.Sequential) for u in enc.body)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == n_bn - n_units - n_shortcuts - 1
    assert enc.body[0].res_layer[4].__class__ is nn.BatchNorm2d and enc.training is False   # the original kept
    assert folded.body[0].res_layer[3].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inference_encoder_matches_and_runs_without_host_syncs():
    from render2style.encoders.fold import inference_encoder
    from render2style.encoders.psp_encoders import build_encoder
    torch.manual_seed(1)
    enc = build_encoder("GradualStyleEncoder", 18, "ir_se", n_styles=10, resolution=64, style_channels=16).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = enc(x)
        folded = inference_encoder(enc).cuda()
        xc = x.cuda().contiguous(memory_format=torch.channels_last)
        folded(xc)
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = folded(xc)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert ((out.cpu() - ref).norm() / ref.norm()).item() < 1e-2       # cuDNN may use TF32: a loose tolerance


def test_inference_encoder_in_the_autocast_dtype_equals_autocast_of_the_fp32_copy():
    """Weights stored in bf16 once give exactly what autocast computes from the fp32 weights on every call."""
    from torch import nn

    from render2style.encoders.fold import inference_encoder
    from render2style.encoders.psp_encoders import build_encoder
    torch.manual_seed(2)
    enc = build_encoder("GradualStyleEncoder", 18, "ir_se", n_styles=10, resolution=64, style_channels=16).eval()
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    fp32, low = inference_encoder(enc), inference_encoder(enc, torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref, out = fp32(x), low(x)
    assert torch.equal(out, ref)
    convs = [m for m in low.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    assert all(p.dtype == torch.float32 for m in low.modules() if isinstance(m, (nn.BatchNorm2d, nn.PReLU))
               for p in m.parameters())
