"""The dual-generator teacher (teacher/dual.py, --method dual): the search runs in G_rendering, the target image is
G_real(w*), the projection gains on a closed loop with a known answer, and both generators are recorded."""
import copy
import json

import numpy as np
import pytest
import test_teacher
import torch
from PIL import Image

from render2style.scripts import generate_targets
from render2style.stylegan2 import Generator
from render2style.teacher import TeacherInput, resolve_priors
from render2style.teacher.dual import run_dual_teacher
from render2style.utils.io import file_sha256


@pytest.fixture(scope="module")
def g_real():
    torch.manual_seed(0)
    return Generator(size=32, style_dim=64, n_mlp=2, channel_max=32).eval()


@pytest.fixture(scope="module")
def g_rendering(g_real):
    """G_real with its synthesis convolutions moved (a stand-in for fine-tuning: same mapping, another look)."""
    G = copy.deepcopy(g_real)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.startswith("convs.") and name.endswith("conv.weight"):
                p.add_(0.3 * p.std() * torch.randn(p.shape, generator=gen))
    return G.eval()


def tiny_cfg():
    return test_teacher.tiny_cfg(csanns_outer=2, proj_steps=20, n_seeds=1, seed_batch=1, dual_steps=150,
                                 lambda_landm=0.0)


@pytest.fixture(scope="module")
def closed_loop(g_real, g_rendering):
    """A render made by G_rendering from a known code w_true (whole image as the face region)."""
    with torch.no_grad():
        w = g_rendering.mapping(torch.randn(1, 64, generator=torch.Generator().manual_seed(3)))
        w_avg = g_rendering.mean_latent(2000, seed=4)
        w_true = (w_avg + 0.6 * (w - w_avg))[:, None].expand(-1, g_rendering.n_latent, -1)
        render = g_rendering.synthesis(w_true).clamp(-1, 1)
    return TeacherInput(render, torch.ones(1, 1, 32, 32)), w_true[0]


@pytest.fixture(scope="module")
def dual_fit(g_real, g_rendering, closed_loop):
    cfg = resolve_priors(g_rendering, tiny_cfg())
    return run_dual_teacher(g_rendering, g_real, closed_loop[0], cfg, False, search="projector", render_id="r"), cfg


def test_target_image_is_g_real_of_the_fitted_code(dual_fit, g_real, g_rendering):
    result, _ = dual_fit
    with torch.no_grad():
        real = g_real.synthesis(result.w_plus[None]).clamp(-1, 1)[0]
        rendering = g_rendering.synthesis(result.w_plus[None]).clamp(-1, 1)[0]
    assert torch.allclose(result.image, real, atol=1e-6)
    assert (result.image - rendering).abs().mean() > 0.05   # not G_rendering's image
    assert result.noise is None and result.metrics["method"] == "dual"


def test_dual_projection_gains_on_a_render_of_g_rendering(dual_fit, closed_loop, g_real):
    """The answer is known: G_real(w_true) is the face the render's code means in G_real."""
    result, cfg = dual_fit
    m = result.metrics
    w_true, w_avg = closed_loop[1], cfg.w_avg.reshape(1, -1).expand(g_real.n_latent, -1)
    with torch.no_grad():
        answer, start = (g_real.synthesis(w[None]).clamp(-1, 1)[0] for w in (w_true, w_avg))
    error, error_start = ((result.image - answer) ** 2).mean(), ((start - answer) ** 2).mean()
    print(f"dual projection: loss in G_rendering {m['loss_projector_first']:.4f} -> {m['loss_projector_last']:.4f}; "
          f"MSE of G_real(w*) to G_real(w_true) {float(error_start):.4f} (w̄) -> {float(error):.4f}")
    assert m["loss_projector_last"] < 0.3 * m["loss_projector_first"]
    assert error < 0.75 * error_start                  # measured: 0.119 -> 0.072 (0.61×)
    assert m["target_loss_total"] > m["loss_total"]    # the render is G_rendering's, not G_real's


def test_dual_search_takes_its_step_count_and_eq4s_loss(dual_fit):
    from render2style.teacher.dual import dual_search_config
    _, cfg = dual_fit
    wang = dual_search_config(cfg, "projector", use_lpips=True)
    assert wang.proj_steps == cfg.dual_steps and wang.lambda_lum == 0 and wang.lambda_col == 0
    assert dual_search_config(cfg, "projector", use_lpips=False).lambda_lum == cfg.lambda_lum  # demo: YUV stays
    assert dual_search_config(cfg, "garbin", use_lpips=True) is cfg
    with pytest.raises(ValueError, match="unknown dual search 'ii2s'"):
        dual_search_config(cfg, "ii2s", use_lpips=True)


def test_garbin_search_in_g_rendering_also_decodes_with_g_real(g_real, g_rendering, closed_loop):
    cfg = resolve_priors(g_rendering, tiny_cfg())
    result = run_dual_teacher(g_rendering, g_real, closed_loop[0], cfg, False, search="garbin", render_id="r")
    with torch.no_grad():
        real = g_real.synthesis(result.w_plus[None]).clamp(-1, 1)[0]
    assert torch.allclose(result.image, real, atol=1e-6)
    assert result.metrics["dual_search"] == "garbin" and result.candidates       # Garbin's proposals, ranked


# --- the command line ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weight_files(g_real, g_rendering, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dual_weights")
    paths = {}
    for name, G in (("g_real", g_real), ("g_rendering", g_rendering)):
        paths[name] = folder / f"{name}.pt"
        torch.save({"g_ema": G.state_dict()}, paths[name])
    return paths


def dual_args(out, files, *extra):
    return ["--out", str(out), "--method", "dual", "--render_generator", str(files["g_rendering"]),
            "--stylegan_weights", str(files["g_real"]), "--no_perceptual", "--preset", "demo", "--limit", "1",
            "--steps", "10", "--set", "prior_samples=300", "--set", "lambda_landm=0", "--no_progress",
            "--device", "cpu", *extra]


def test_cli_targets_are_g_real_images_and_name_both_generators(tmp_path, weight_files, g_real):
    stats = generate_targets.main(dual_args(tmp_path, weight_files))
    assert stats["done"] == 1
    meta = json.loads(next((tmp_path / "meta").glob("*.json")).read_text())
    assert meta["method"] == "dual" and meta["dual_search"] == "projector"
    assert meta["generator"] == str(weight_files["g_real"].resolve())
    assert meta["render_generator"] == str(weight_files["g_rendering"].resolve())
    assert meta["generator_sha256"] == file_sha256(weight_files["g_real"])
    assert meta["render_generator_sha256"] == file_sha256(weight_files["g_rendering"])
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["render_generator"] == meta["render_generator"] and run["teacher"]["dual_steps"] == 10
    assert run["weights"]["render_generator"]["sha256"] == meta["render_generator_sha256"]
    w = torch.from_numpy(np.load(tmp_path / "latents" / f"{meta['id']}.npy"))
    png = np.asarray(Image.open(tmp_path / "images" / f"{meta['id']}.png"), dtype=np.float32) / 127.5 - 1
    with torch.no_grad():
        real = g_real.synthesis(w[None]).clamp(-1, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(png - real).max() <= 1 / 127.5 + 1e-6     # the teacher image is G_real(w*), up to 8-bit rounding
    with pytest.raises(ValueError, match=r"render_generator.*--render_generator"):
        generate_targets.main(dual_args(tmp_path, {**weight_files, "g_rendering": weight_files["g_real"]}))


def test_cli_dual_needs_a_matching_rendering_generator(tmp_path, weight_files):
    with pytest.raises(SystemExit):
        generate_targets.main(["--out", str(tmp_path), "--method", "dual", "--no_perceptual"])
    with pytest.raises(SystemExit):
        generate_targets.main(["--out", str(tmp_path), "--render_generator", str(weight_files["g_rendering"])])
    torch.manual_seed(2)
    other = tmp_path / "g_64.pt"
    torch.save({"g_ema": Generator(size=64, style_dim=64, n_mlp=2, channel_max=32).state_dict()}, other)
    with pytest.raises(ValueError, match=r"g_64\.pt: the rendering generator is .*\(64, 10, 64\).*g_real\.pt"):
        generate_targets.main(dual_args(tmp_path / "t", {**weight_files, "g_rendering": other}))
