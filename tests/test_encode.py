"""encode.py: inputs (folder, video, bad files), outputs, precision, variants, interpolation, paste-back."""
import json
import logging

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import render2style.encode as encode
from render2style.datasets.demo_renders import make_demo_renders
from render2style.encoders.psp import pSp
from render2style.inference.engine import InferenceModel
from render2style.inference.inputs import read_image, to_input_tensor
from render2style.options.encode_options import EncodeOptions
from render2style.scripts import align_faces

SIZE = 64   # encoder input of the tiny test model (pSp uses 256)


@pytest.fixture(scope="module")
def net():
    """pSp with the demo generator (64², 10 styles) and a randomly initialised encoder whose weights are
    rounded to fp16 values, so the test checkpoint can store them in half the space without changing them."""
    torch.manual_seed(0)
    model = pSp({"stylegan_weights": "demo-random", "ir_se50_weights": "none", "resolution": SIZE}).eval()
    with torch.no_grad():
        for t in model.encoder.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    return model


@pytest.fixture(scope="module")
def checkpoint(net, tmp_path_factory):
    ckpt = net.checkpoint_dict()
    ckpt["state_dict"] = {k: v.half() if k.startswith("encoder.") and v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    path = tmp_path_factory.mktemp("ckpt") / "tiny_psp.pt"
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    folder = tmp_path_factory.mktemp("renders")
    make_demo_renders(folder, 3, seed=0, size=128)
    return folder


def run(net, *args):
    return encode.run(EncodeOptions().parse(["--checkpoint", "unused.pt", "--workers", "0", *map(str, args)]), net)


def expected_codes(net, path):
    rgb, alpha = read_image(path)
    with torch.no_grad():
        return net.encode(to_input_tensor(rgb, alpha, SIZE, 3)[None])[0].numpy()


def test_encode_folder_from_a_checkpoint_writes_images_codes_and_summary(checkpoint, net, renders, tmp_path):
    out = tmp_path / "out"
    assert encode.main(["--checkpoint", str(checkpoint), "--input", str(renders), "--out", str(out),
                        "--batch_size", "2", "--workers", "1"]) == 0
    names = sorted(p.stem for p in (out / "latents").glob("*.npy"))
    assert names == ["demo_00000", "demo_00001", "demo_00002"]          # *_hair.png masks are not inputs
    code = np.load(out / "latents" / "demo_00001.npy")
    assert code.shape == (10, 512) and code.dtype == np.float32
    np.testing.assert_allclose(code, expected_codes(net, renders / "demo_00001.png"), rtol=1e-4, atol=1e-4)
    assert Image.open(out / "images" / "demo_00001.png").size == (64, 64)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3 and summary["failed"] == [] and summary["throughput_img_s"] > 0


def test_generated_image_is_the_decoder_output_of_the_code(net, renders, tmp_path):
    assert run(net, "--input", renders / "demo_00000.png", "--out", tmp_path) == 0
    code = torch.from_numpy(np.load(tmp_path / "latents" / "demo_00000.npy"))[None]
    with torch.no_grad():
        ref = ((net.decoder.synthesis(code).clamp(-1, 1) + 1) * 127.5).round()[0].permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(Image.open(tmp_path / "images" / "demo_00000.png")) - ref).max() <= 1


def test_encode_streams_a_video_frame_by_frame(net, tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 80))
    assert writer.isOpened()
    for i in range(5):
        frame = np.zeros((80, 96, 3), np.uint8)
        frame[20:60, 10 + 10 * i: 40 + 10 * i] = (40 * i, 200, 100)
        writer.write(frame)
    writer.release()
    assert run(net, "--input", path, "--out", tmp_path / "out", "--batch_size", "2", "--codes_per_batch") == 0
    batches = sorted((tmp_path / "out" / "latents").glob("codes_*.npy"))
    assert [np.load(b).shape[0] for b in batches] == [2, 2, 1]
    names = json.loads(batches[0].with_suffix(".json").read_text())["names"]
    assert names == ["clip_000000", "clip_000001"]
    assert len(list((tmp_path / "out" / "images").glob("clip_*.png"))) == 5


def test_bad_inputs_are_reported_by_name_and_skipped_or_fatal(net, tmp_path, caplog):
    src = tmp_path / "in"
    src.mkdir()
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    depth = (np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 40).astype(np.uint16)
    Image.fromarray(depth).save(src / "depth16.png")
    Image.fromarray(np.full((32, 50), 128, np.uint8), "L").save(src / "gray.png")
    Image.fromarray(np.full((36, 36, 3), 50, np.uint8)).convert("P", palette=Image.ADAPTIVE).save(src / "pal.png")
    with caplog.at_level(logging.ERROR):  # --on_error skip (the default) encodes the rest, and exits 1
        assert run(net, "--input", src, "--out", tmp_path / "skip") == 1
    assert any("broken.png" in r.getMessage() for r in caplog.records)
    assert sorted(p.stem for p in (tmp_path / "skip" / "latents").glob("*.npy")) == ["depth16", "gray", "pal"]
    failed = json.loads((tmp_path / "skip" / "summary.json").read_text())["failed"]
    assert [f["name"] for f in failed] == ["broken"] and "broken.png" in failed[0]["error"]
    assert run(net, "--input", src, "--out", tmp_path / "fail", "--on_error", "fail") == 1


def test_bf16_output_is_close_to_fp32(net, renders):
    x = torch.stack([to_input_tensor(*read_image(renders / f"demo_0000{i}.png"), SIZE, 3) for i in range(2)])
    img32, codes32 = InferenceModel(net, torch.device("cpu"), "fp32")(x)
    img16, codes16 = InferenceModel(net, torch.device("cpu"), "bf16")(x)
    assert codes16.dtype == torch.float32 and img16.dtype == torch.float32
    assert (codes16 - codes32).norm() / codes32.norm() < 0.05
    assert (img16 - img32).abs().mean() < 0.05


def test_compile_failure_falls_back_to_eager_with_a_warning(net, renders, monkeypatch, caplog):
    def broken_compile(fn, **kwargs):
        def call(*a, **k):
            raise RuntimeError("no C compiler")
        return call
    monkeypatch.setattr(torch, "compile", broken_compile)
    x = to_input_tensor(*read_image(renders / "demo_00000.png"), SIZE, 3)[None]
    with caplog.at_level(logging.WARNING):
        img, codes = InferenceModel(net, torch.device("cpu"), compile=True)(x)
    assert any("torch.compile" in r.getMessage() for r in caplog.records)
    assert torch.allclose(codes, InferenceModel(net, torch.device("cpu")).encode(x))


def test_variants_grid_and_interpolation(net, renders, tmp_path):
    assert run(net, "--input", renders, "--out", tmp_path, "--n_variants", "2", "--latent_mask", "6-9",
               "--save_grid", "--interpolate", "--interp_steps", "4", "--interp_video", "gif") == 0
    assert len(list((tmp_path / "variants").glob("demo_00000_v*.png"))) == 2
    v0 = np.asarray(Image.open(tmp_path / "variants" / "demo_00000_v0.png"))
    assert not np.array_equal(v0, np.asarray(Image.open(tmp_path / "images" / "demo_00000.png")))
    assert Image.open(tmp_path / "grids" / "demo_00000.png").size == (64 * 4, 64)   # input | output | 2 variants
    frames = tmp_path / "interpolation" / "demo_00000_to_demo_00001"
    assert len(list(frames.glob("frame_*.png"))) == 4 and (frames / "morph.gif").is_file()
    first = np.asarray(Image.open(frames / "frame_0000.png")).astype(int)
    assert np.abs(first - np.asarray(Image.open(tmp_path / "images" / "demo_00000.png"))).max() <= 1


def test_variant_codes_are_saved_next_to_their_images_with_the_mixing_settings(net, renders, tmp_path, caplog):
    from render2style.inference.mixing import mix_styles
    with caplog.at_level(logging.WARNING):
        assert run(net, "--input", renders, "--out", tmp_path, "--n_variants", "2", "--mix_alpha", "0.6",
                   "--truncation", "0.8", "--seed", "3") == 0
    code = np.load(tmp_path / "latents" / "demo_00001.npy")
    expected = mix_styles(torch.from_numpy(code)[None], net.decoder, 2, None, 0.6, 0.8, 3,
                          mean_latent=net.latent_avg)[0]
    for k in range(2):
        assert np.allclose(np.load(tmp_path / "variants" / f"demo_00001_v{k}.npy"), expected[k].numpy(), atol=1e-6)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mixing"] == {"latent_mask": [5, 6, 7, 8, 9], "mix_alpha": 0.6, "truncation": 0.8, "seed": 3}
    assert summary["demo"] is True and any("DEMO checkpoint" in r.getMessage() for r in caplog.records)


def test_compiled_model_sees_one_batch_shape_and_the_last_batch_is_cut_back(net, renders, tmp_path, monkeypatch):
    shapes = []

    def recording_compile(fn, **kwargs):
        return lambda x: shapes.append(tuple(x.shape)) or fn(x)
    monkeypatch.setattr(torch, "compile", recording_compile)
    assert run(net, "--input", renders, "--out", tmp_path, "--batch_size", "2", "--compile", "--n_variants", "2") == 0
    assert {s[0] for s in shapes} == {2, 4}                # encoder: 2 rows; generator: 2 inputs x 2 variants
    assert len(list((tmp_path / "images").glob("*.png"))) == 3
    assert len(list((tmp_path / "variants").glob("*_v1.npy"))) == 3
    expected = expected_codes(net, renders / "demo_00002.png")
    assert np.allclose(np.load(tmp_path / "latents" / "demo_00002.npy"), expected, atol=1e-4)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["images"] == 3 and summary["steady_seconds_per_image"] > 0


def test_paste_back_puts_faces_into_the_original_renders(net, renders, tmp_path):
    aligned = tmp_path / "aligned"
    assert align_faces.main(["--input", str(renders), "--out", str(aligned), "--output_size", "64"]) == 0
    assert run(net, "--input", aligned, "--out", tmp_path / "out", "--paste_back",
               "--transforms", aligned / "transforms") == 0
    pasted = np.asarray(Image.open(tmp_path / "out" / "paste_back" / "demo_00000.png"))
    original, mask = read_image(renders / "demo_00000.png")
    alpha = np.round(mask * 255).astype(np.uint8)
    assert pasted.shape == original.shape
    near_face = cv2.dilate(alpha, np.ones((31, 31), np.uint8)) > 0        # the soft seam spreads a few pixels
    assert np.array_equal(pasted[~near_face], original[~near_face])      # only the face (alpha) is replaced
    assert np.abs(pasted[alpha == 255].astype(int) - original[alpha == 255]).mean() > 5


def test_rgba_alpha_becomes_the_fourth_channel():
    rgb = np.full((8, 8, 3), 255, np.uint8)
    alpha = np.zeros((8, 8), np.uint8)
    alpha[:4] = 255
    x = to_input_tensor(rgb, alpha / 255.0, 8, 4)
    assert x.shape == (4, 8, 8) and (x[:3] == 1).all()
    assert (x[3, :4] == 1).all() and (x[3, 4:] == -1).all()
    assert (to_input_tensor(rgb, None, 8, 4)[3] == 1).all()            # no mask at all: a photo, all face
    assert to_input_tensor(rgb, alpha / 255.0, 4, 3).shape == (3, 4, 4)


def test_boolean_options_parse_their_value():
    base = ["--checkpoint", "c.pt", "--input", "in", "--out", "out"]
    o = EncodeOptions().parse(base + ["--save_grid", "false", "--compile", "--no-save_images"])
    assert (o.save_grid, o.compile, o.save_images, o.codes_per_batch) == (False, True, False, False)
    with pytest.raises(SystemExit):
        EncodeOptions().parse(base + ["--paste_back"])                  # needs --transforms
