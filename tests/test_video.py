"""Video in r2s-encode: W+ smoothing filters, the written mp4's frames and timing, the flicker figure, bad files."""
import json
import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from test_encode import SIZE, checkpoint, net, run  # noqa: F401  (the tiny pSp fixtures and the encode helper)

from render2style.inference.smoothing import CodeSmoother, SmoothSpec, parse_smooth
from render2style.inference.video import FlickerMeter, VideoWriter
from render2style.options.encode_options import EncodeOptions

pytest.importorskip("av")


# --- filters against hand computations ---------------------------------------------------------------
def test_ema_matches_the_recurrence_by_hand():
    smoother = CodeSmoother(parse_smooth("ema:0.25"))
    x = torch.tensor([0.0, 1.0, 1.0, 4.0])[:, None]
    y = torch.cat([smoother(x[:2], [0, 1]), smoother(x[2:], [2, 3])])          # state kept across batches
    # y0 = x0; y_t = 0.25 x_t + 0.75 y_{t-1}
    y2 = 0.25 * 1 + 0.75 * 0.25
    assert y[:, 0].tolist() == pytest.approx([0.0, 0.25, y2, 0.25 * 4 + 0.75 * y2])


def test_one_euro_matches_casiez_et_al_by_hand():
    spec = parse_smooth("oneeuro:1.0,0.5")
    assert (spec.min_cutoff, spec.beta, spec.d_cutoff) == (1.0, 0.5, 1.0)
    y = CodeSmoother(spec)(torch.tensor([[0.0], [1.0], [1.0]]), [0.0, 0.1, 0.2])[:, 0].tolist()

    def alpha(cutoff, dt):                  # the paper's smoothing factor: 1 / (1 + tau / Te), tau = 1 / (2 pi fc)
        tau = 1 / (2 * math.pi * cutoff)
        return 1 / (1 + tau / dt)
    dx1 = alpha(1.0, 0.1) * (1.0 - 0.0) / 0.1                            # filtered derivative, dx0 = 0
    y1 = alpha(1.0 + 0.5 * dx1, 0.1) * 1.0                               # x1 = 1, y0 = 0
    dx2 = alpha(1.0, 0.1) * 0.0 + (1 - alpha(1.0, 0.1)) * dx1           # x2 - x1 = 0
    a2 = alpha(1.0 + 0.5 * dx2, 0.1)
    assert y == pytest.approx([0.0, y1, a2 * 1.0 + (1 - a2) * y1], rel=1e-6)


def test_one_euro_uses_the_frame_times():
    x = torch.tensor([[0.0], [1.0]])
    fast = CodeSmoother(parse_smooth("oneeuro:1.0,0"))(x, [0.0, 0.01])[1, 0]
    slow = CodeSmoother(parse_smooth("oneeuro:1.0,0"))(x, [0.0, 1.0])[1, 0]
    assert fast < slow                      # 10 ms after the last frame the filter has moved less than after 1 s


@pytest.mark.parametrize("spec", ["ema:0.3", "oneeuro:0.5,0.2"])
def test_a_constant_sequence_stays_constant(spec):
    code = torch.randn(10, 512, generator=torch.Generator().manual_seed(0))
    out = CodeSmoother(parse_smooth(spec))(code.expand(6, -1, -1), [i / 25 for i in range(6)])
    assert torch.allclose(out, code.expand(6, -1, -1), atol=1e-6)


@pytest.mark.parametrize("text", ["ema", "ema:0", "ema:1.5", "ema:a", "oneeuro:1", "oneeuro:0,1", "oneeuro:1,-1",
                                  "gauss:3", "oneeuro:1,2,3,4"])
def test_bad_smoothing_specs_stop_at_parse_time(text, capsys):
    with pytest.raises(SystemExit):
        EncodeOptions().parse(["--checkpoint", "c.pt", "--input", "clip.mp4", "--out", "o", "--smooth", text])
    assert "--smooth" in capsys.readouterr().err


def test_smoothing_needs_a_sequence(capsys):
    base = ["--checkpoint", "c.pt", "--out", "o", "--smooth", "ema:0.5"]
    with pytest.raises(SystemExit):
        EncodeOptions().parse(base + ["--input", "renders/"])
    assert "--sequence" in capsys.readouterr().err
    assert EncodeOptions().parse(base + ["--input", "renders/", "--sequence"]).smooth == SmoothSpec("ema", alpha=0.5)
    assert EncodeOptions().parse(base[:-2] + ["--input", "clip.mp4"]).smooth is None     # none by default


# --- flicker -----------------------------------------------------------------------------------------
def test_flicker_meter_matches_numpy_across_batches():
    g = torch.Generator().manual_seed(1)
    inputs, outputs = torch.rand(7, 4, 8, 8, generator=g) * 2 - 1, torch.rand(7, 3, 16, 16, generator=g) * 2 - 1
    meter = FlickerMeter()
    for part in ((0, 3), (3, 4), (4, 7)):
        meter.update(inputs[slice(*part)], outputs[slice(*part)])
    i, o = inputs[:, :3].numpy(), outputs.numpy()
    change_in = np.mean([np.abs(i[t] - i[t - 1]).mean() for t in range(1, 7)])
    change_out = np.mean([np.abs(o[t] - o[t - 1]).mean() for t in range(1, 7)])
    r = meter.result()
    assert r["input_change"] == pytest.approx(change_in) and r["output_change"] == pytest.approx(change_out)
    assert r["flicker"] == pytest.approx(change_out / change_in)


# --- end to end --------------------------------------------------------------------------------------
def moving_frames(n, size=64, jitter=0.0, seed=0):
    """A square moving right over a gradient, plus per-frame noise of ``jitter`` (uint8 [n, size, size, 3])."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        f = np.tile(np.linspace(40, 200, size, dtype=np.float32)[None, :, None], (size, 1, 3))
        f[20:44, 8 + 2 * i:32 + 2 * i] = (220, 120, 60)
        frames.append(np.clip(f + jitter * rng.standard_normal(f.shape), 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_cv2_video(path, frames, fps):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames.shape[1:3][::-1])
    assert writer.isOpened()
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()


def frame_times(path):
    import av
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(c.streams.video[0])]


def test_video_output_keeps_frame_count_fps_and_timing(net, tmp_path):  # noqa: F811
    src = tmp_path / "clip.mp4"
    write_cv2_video(src, moving_frames(9), fps=12)
    assert run(net, "--input", src, "--out", tmp_path / "out", "--batch_size", "4", "--smooth", "ema:0.5") == 0
    video = tmp_path / "out" / "video" / "clip.mp4"
    cap = cv2.VideoCapture(str(video))                                  # read back with another library
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 9 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == net.decoder.size
    assert frame_times(video) == pytest.approx(frame_times(src), abs=1e-3)
    s = json.loads((tmp_path / "out" / "summary.json").read_text())["video"]
    assert s["frames"] == 9 and s["fps"] == pytest.approx(12.0) and s["smooth"] == "ema:0.5"
    assert not list((tmp_path / "out" / "video").glob(".*.tmp"))

    # every 2nd frame: the kept frames keep their own times (a 6 fps picture of the same 0.75 s)
    assert run(net, "--input", src, "--out", tmp_path / "every2", "--video_every", "2") == 0
    assert frame_times(tmp_path / "every2" / "video" / "clip.mp4") == pytest.approx(frame_times(src)[::2], abs=1e-3)


def test_sequence_flicker_is_the_change_of_the_decoded_codes_over_that_of_the_inputs(net, tmp_path):  # noqa: F811
    src = tmp_path / "frames"
    src.mkdir()
    frames = moving_frames(6, SIZE, jitter=12)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(src / f"f_{i:03d}.png")
    assert run(net, "--input", src, "--out", tmp_path / "out", "--sequence", "--fps", "5", "--batch_size", "4") == 0
    out = tmp_path / "out"
    codes = torch.stack([torch.from_numpy(np.load(out / "latents" / f"f_{i:03d}.npy")) for i in range(6)])
    with torch.no_grad():
        decoded = net.decoder.synthesis(codes, noise_mode="const").numpy()
    inputs = frames.astype(np.float64) / 127.5 - 1                  # 64² frames: the encoder input unresized
    change_in = np.mean([np.abs(inputs[t] - inputs[t - 1]).mean() for t in range(1, 6)])
    change_out = np.mean([np.abs(decoded[t] - decoded[t - 1]).mean() for t in range(1, 6)])
    flicker = json.loads((out / "summary.json").read_text())["video"]["flicker"]
    assert flicker["flicker"] == pytest.approx(change_out / change_in, rel=1e-4)
    assert frame_times(out / "video" / "frames.mp4") == pytest.approx([i / 5 for i in range(6)], abs=1e-3)


def test_smoothing_lowers_flicker_on_a_jittery_sequence(net, tmp_path):  # noqa: F811
    src = tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(moving_frames(10, SIZE, jitter=25, seed=3)):
        Image.fromarray(f).save(src / f"f_{i:03d}.png")
    figures = {}
    for spec in ("none", "ema:0.3", "oneeuro:0.5,0.0"):
        out = tmp_path / spec.replace(":", "_")
        assert run(net, "--input", src, "--out", out, "--sequence", "--fps", "10", "--smooth", spec) == 0
        figures[spec] = json.loads((out / "summary.json").read_text())["video"]["flicker"]["flicker"]
    assert figures["ema:0.3"] < 0.7 * figures["none"] and figures["oneeuro:0.5,0.0"] < 0.7 * figures["none"]


def test_missing_or_invalid_video_files_are_named(net, tmp_path):  # noqa: F811
    with pytest.raises(FileNotFoundError, match=r"missing\.mp4: no such video file"):
        run(net, "--input", tmp_path / "missing.mp4", "--out", tmp_path / "o1")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all" * 10)
    with pytest.raises(ValueError, match=r"broken\.mp4: (not a readable video|cannot decode)"):
        run(net, "--input", tmp_path / "broken.mp4", "--out", tmp_path / "o2")
    (tmp_path / "sound.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match=r"sound\.mp4"):
        run(net, "--input", tmp_path / "sound.mp4", "--out", tmp_path / "o3")


def test_an_interrupted_video_leaves_no_partial_file(tmp_path):
    with pytest.raises(RuntimeError, match="stop"):
        with VideoWriter(tmp_path / "v.mp4", 10) as writer:
            writer.write(moving_frames(3), [0.0, 0.1, 0.2])
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with VideoWriter(tmp_path / "v.mp4", 10) as writer:
        writer.write(moving_frames(3), [0.0, 0.1, 0.2])
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]



# --- the benchmark's lag estimate ---------------------------------------------------------------------
def test_lag_estimator_finds_known_delays():
    from render2style.scripts.benchmark_video import lag_frames
    t = np.arange(80, dtype=np.float64)
    ref = np.sin(2 * np.pi * t / 40)
    assert lag_frames(ref, np.sin(2 * np.pi * (t - 3) / 40)) == pytest.approx(3, abs=0.02)
    assert lag_frames(ref, np.sin(2 * np.pi * (t - 2.5) / 40)) == pytest.approx(2.5, abs=0.05)   # sub-frame
    assert lag_frames(ref, np.sin(2 * np.pi * (t + 2) / 40)) == pytest.approx(-2, abs=0.02)      # ahead
    # an EMA of weight a on a slow motion lags by about (1 - a) / a frames
    slow = np.sin(2 * np.pi * t / 80)
    ema = CodeSmoother(parse_smooth("ema:0.5"))(torch.from_numpy(slow)[:, None], list(t))[:, 0].numpy()
    assert lag_frames(slow, ema) == pytest.approx(1.0, abs=0.1)


def test_benchmark_reports_flicker_and_lag_per_setting(checkpoint, tmp_path):  # noqa: F811
    from render2style.scripts import benchmark_video
    md = tmp_path / "bench.md"
    assert benchmark_video.main(["--checkpoint", str(checkpoint), "--frames", "12", "--size", "64", "--smooth",
                                 "ema:0.3", "--work_dir", str(tmp_path / "work"), "--markdown", str(md)]) == 0
    rows = [line.split("|")[1:-1] for line in md.read_text().splitlines() if line.startswith("| ")][1:]
    assert [r[0].strip() for r in rows] == ["none", "ema:0.3"]
    none, ema = ([float(v) if v.strip() != "—" else None for v in r[1:]] for r in rows)
    assert none[1] == 1.0 and none[2] == 0.0 and none[5] == 0.0        # the reference against itself
    tool = json.loads((tmp_path / "work" / "encoded" / "summary.json").read_text())["video"]["flicker"]["flicker"]
    assert none[0] == pytest.approx(tool, abs=6e-4)                     # the table's "none" is the tool's figure
    assert ema[0] < none[0] and ema[2] > 0.5 and ema[4] == pytest.approx(7 / 3, abs=0.01)
