"""The optimization teacher (Garbin et al. steps 1-4, baselines), its masks, losses and SSIM."""
import math

import lpips
import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from render2style.criteria.pretrained import MissingWeightsError
from render2style.criteria.ssim import ms_scales, ms_ssim, ssim
from render2style.stylegan2 import Generator
from render2style.teacher import PerceptualNets, TeacherConfig, TeacherInput, resolve_priors, run_teacher
from render2style.teacher.csanns import convex_combination
from render2style.teacher.landmarks import LandmarkDetector, face_box
from render2style.teacher.losses import TeacherLoss, rgb_to_yuv
from render2style.teacher.masks import falloff_mask, loss_mask, preprocess
from render2style.teacher.select import interpolation_candidates, select_best


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(size=32, style_dim=64, n_mlp=2, channel_max=32).eval()


def tiny_cfg(**kw):
    base = dict(loss_size=32, select_size=32, n_samples=16, csanns_outer=3, csanns_proposals=16, csanns_inner=4,
                proj_steps=40, n_seeds=2, seed_batch=2, i2s_steps=40, i2s_size=32, prior_samples=400,
                n_centroids=3, n_control=4, chunk=16)
    base.update(kw)
    return TeacherConfig.demo(**base)


def ellipse(size, cx, cy, rx, ry):
    yy, xx = np.mgrid[:size, :size]
    return ((((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) <= 1).astype(np.float32)


@pytest.fixture(scope="module")
def render(G):
    """A render that G can reproduce exactly (w_true), given at twice the generator's resolution."""
    with torch.no_grad():
        w_true = G.style(torch.randn(1, 64, generator=torch.Generator().manual_seed(3)))
        img = G.synthesis(w_true[:, None].expand(-1, G.n_latent, -1)).clamp(-1, 1)
    img = torch.nn.functional.interpolate(img, size=64, mode="bilinear", align_corners=False)
    mask = torch.from_numpy(ellipse(64, 32, 34, 18, 22))[None, None]
    return TeacherInput(img, mask)


@pytest.fixture(scope="module")
def garbin_result(G, render):
    cfg = resolve_priors(G, tiny_cfg())
    return run_teacher("garbin", G, render, cfg, perceptual=False, seed=0), cfg


# --- SSIM -------------------------------------------------------------------------------------

def reference_ssim(x: np.ndarray, y: np.ndarray, data_range=2.0, size=11, sigma=1.5) -> float:
    """Wang et al. SSIM written directly: 2-D Gaussian window, valid convolution, per-channel mean."""
    t = np.arange(size) - (size - 1) / 2
    g = np.exp(-t ** 2 / (2 * sigma ** 2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for a, b in zip(x, y):
        f = lambda z: convolve2d(z, win, mode="valid")  # noqa: E731
        mx, my = f(a), f(b)
        sxx, syy, sxy = f(a * a) - mx ** 2, f(b * b) - my ** 2, f(a * b) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
        vals.append(m.mean())
    return float(np.mean(vals))


def test_ssim_of_identical_images_is_one():
    x = torch.rand(3, 3, 40, 40) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    assert torch.allclose(ms_ssim(x, x), torch.ones(3), atol=1e-5)


def test_ssim_equals_reference_computation():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 36, generator=gen) * 2 - 1
    y = (x + 0.3 * torch.randn(2, 3, 32, 36, generator=gen)).clamp(-1, 1)
    ours = ssim(x.double(), y.double())
    ref = [reference_ssim(x[b].double().numpy(), y[b].double().numpy()) for b in range(2)]
    assert ours.shape == (2,)
    assert np.allclose(ours.numpy(), ref, atol=1e-5)


def test_ssim_mask_weights_the_map():
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = x.clone()
    y[..., :, 16:] = torch.rand(1, 3, 32, 16) * 2 - 1   # right half differs
    left = torch.zeros(1, 1, 32, 32)
    left[..., :, :6] = 1                               # window centres whose windows stay in the left half
    assert ssim(x, y, mask=torch.ones(1, 1, 32, 32)).item() == pytest.approx(ssim(x, y).item(), abs=1e-6)
    assert ssim(x, y, mask=left).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(x, y).item() < 0.9


def test_ms_ssim_uses_fewer_scales_on_small_images():
    assert ms_scales(256) == 5 and ms_scales(64) == 3 and ms_scales(11) == 1
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(-1, 1)
    noisier = (x + 0.6 * torch.randn_like(x)).clamp(-1, 1)
    assert (ms_ssim(x, noisy) > ms_ssim(x, noisier)).all()


def test_select_best_returns_the_argmax():
    scores = torch.tensor([0.2, 0.9, 0.5, 0.9])
    assert select_best(scores) == 1


# --- masks and eq. 1 -----------------------------------------------------------------------------

def test_falloff_mask_is_one_inside_monotone_outside_and_near_zero_far_away():
    face = ellipse(128, 40, 64, 20, 25)
    m = falloff_mask(face)
    assert (m[face > 0] == 1).all()
    ray = m[64, 60:]                                   # from the face edge to the right border
    assert (np.diff(ray) <= 1e-7).all() and ray[0] > 0.5
    assert m[64, -1] < 1e-3 and m[0, -1] == pytest.approx(0.0, abs=1e-7)


def test_loss_mask_includes_hair_when_asked():
    face, hair = ellipse(64, 32, 36, 12, 14), ellipse(64, 32, 16, 14, 8)
    assert (loss_mask(face, hair, include_hair=True)[hair > 0] == 1).all()
    assert loss_mask(face, hair, include_hair=False)[16, 32] < 1


def test_preprocess_masks_blurs_and_resamples():
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    out = preprocess(x, torch.zeros(1, 1, 64, 64), size=32)
    assert out.shape == (4, 3, 32, 32) and out.abs().max() == 0


def test_yuv_conversion():
    white, grey = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    assert torch.allclose(rgb_to_yuv(white)[:, 0], torch.ones(1, 2, 2), atol=1e-4)
    assert torch.allclose(rgb_to_yuv(grey)[:, 1:], torch.zeros(1, 2, 2, 2), atol=1e-4)


def test_eq1_is_per_sample_and_zero_for_the_target():
    cfg = tiny_cfg()
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    loss = TeacherLoss(target, torch.ones(1, 1, 32, 32), cfg, nets=None)
    batch = torch.cat([target, target.flip(-1), -target])
    terms = loss(batch)
    assert terms["total"].shape == (3,) and "lpips" not in terms
    assert terms["total"][0] == 0 and (terms["total"][1:] > 0).all()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cached_lpips_equals_the_lpips_module():
    """The target's LPIPS features are cached; distances equal lpips.LPIPS's own forward."""
    net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()  # explicit random stand-in
    cfg = tiny_cfg(lambda_lum=0, lambda_col=0)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    loss = TeacherLoss(target, torch.ones(1, 1, 32, 32), cfg, PerceptualNets(net))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = net(loss.prep(x), loss.prep(target).expand(2, -1, -1, -1)).flatten()
        assert torch.allclose(loss(x)["lpips"], expected, atol=1e-5)


def test_landmark_term_uses_dlib_inside_the_face_box():
    box = face_box(64, mask=ellipse(64, 32, 34, 18, 22))
    det = LandmarkDetector(box)
    pts = det(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert pts.shape == (2, 68, 2)
    assert (pts[..., 0] >= box[0] - 8).all() and (pts[..., 0] <= box[2] + 8).all()
    cfg = tiny_cfg(loss_size=64)
    target = torch.rand(1, 3, 64, 64) * 2 - 1
    terms = TeacherLoss(target, torch.ones(1, 1, 64, 64), cfg, None, det)(target, with_landmarks=True)
    assert terms["landm"].item() == 0


def test_missing_perceptual_weights_name_the_file():
    with pytest.raises(MissingWeightsError, match="nowhere/vgg16.ckpt.*vgg16"):
        PerceptualNets.load("/nowhere/vgg16.ckpt")


def test_set_parses_values_as_the_fields_declared_type(tmp_path):
    from render2style.teacher.control_vectors import save_vectors
    save_vectors(tmp_path / "c.npy", torch.ones(3, 8))
    parsed = TeacherConfig.parse_overrides(["csanns_outer=4", "proj_lr=0.1", "amp=false", "interp_layers=1,3",
                                            "w_std=2.5", f"centroids={tmp_path / 'c.npy'}", "control_vectors=none"])
    centroids = parsed.pop("centroids")
    assert parsed == {"csanns_outer": 4, "proj_lr": 0.1, "amp": False, "interp_layers": (1, 3), "w_std": 2.5,
                      "control_vectors": None}
    assert isinstance(parsed["w_std"], float) and torch.equal(centroids, torch.ones(3, 8))
    for bad, message in (("no_such_field=1", "no_such_field"), ("n_samples=abc", "integer"),
                         ("w_std=abc", "number"), ("amp=maybe", "true or false")):
        with pytest.raises(ValueError, match=message):
            TeacherConfig.parse_overrides([bad])
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        TeacherConfig(**TeacherConfig.parse_overrides(["n_samples=0"]))


def test_perceptual_terms_are_only_dropped_explicitly(G, render):
    with pytest.raises(TypeError, match="perceptual=False|False"):
        run_teacher("projector", G, render, tiny_cfg(), perceptual=None)


# --- steps ---------------------------------------------------------------------------------------

def test_convex_combination_equals_the_weighted_sum():
    S, P, L, D = 2, 5, 4, 3
    cands, logits, ctrl = torch.randn(S, P, L, D), torch.randn(S, P, L), torch.randn(2, D)
    beta = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    w = convex_combination(logits, cands, beta, ctrl)
    e = logits.exp()
    manual = ((e / e.sum(1, keepdim=True))[..., None] * cands).sum(1) + (beta @ ctrl)[:, None]
    assert torch.allclose(w, manual, atol=1e-6)


def test_interpolation_candidates_follow_eq4():
    w_f, w_n = torch.randn(1, 6, 4), torch.randn(1, 6, 4)
    cands, names = interpolation_candidates(w_f, w_n, (1, 3), (1.0, 0.9))
    assert cands.shape == (1, 4, 6, 4) and names[1] == "interp_k1_a0.9"
    k3a1 = cands[0, 2]
    assert torch.equal(k3a1[:3], w_f[0, :3]) and torch.equal(k3a1[3:], w_n[0, 3:])
    expected = w_f[0, 0] * math.sqrt(0.9) + w_n[0, 0] * math.sqrt(0.1)
    assert torch.allclose(cands[0, 1, 0], expected) and torch.equal(cands[0, 1, 1:], w_n[0, 1:])


# --- closed loop: renders = G(w_true) ------------------------------------------------------------

def test_garbin_selects_the_best_ssim(garbin_result):
    res, cfg = garbin_result
    assert len(res.candidates) == cfg.n_seeds * (3 + len(cfg.interp_layers) * len(cfg.interp_alphas))
    ssims = [c["ssim"] for c in res.candidates]
    best = res.candidates[int(np.argmax(ssims))]
    assert res.metrics["ssim"] == pytest.approx(max(ssims))
    assert torch.equal(res.w_plus, best["w_plus"])


def test_garbin_result_shapes_and_metrics(G, garbin_result):
    res, cfg = garbin_result
    assert res.w_plus.shape == (G.n_latent, 64) and res.w_plus.dtype == torch.float32
    assert res.image.shape == (3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(res.image, G.synthesis(res.w_plus[None])[0].clamp(-1, 1), atol=1e-5)
    m = res.metrics
    assert m["perceptual"] is False and m["method"] == "garbin"
    assert {"sampling", "csanns", "projector", "selection", "total"} <= set(m["seconds"])
    assert 0 < m["csanns_max_abs_beta"] <= cfg.beta_max and 0 < m["csanns_max_proposal_weight"] < 1
    assert len(m["loss_sampling"]) == len(m["loss_csanns"]) == len(m["loss_projector"]) == cfg.n_seeds
    assert "loss_landm" in m and "loss_lpips" not in m


@pytest.mark.parametrize("method", ["image2stylegan", "projector"])
def test_baselines_lower_their_loss(G, render, method):
    cfg = resolve_priors(G, tiny_cfg())
    res = run_teacher(method, G, render, cfg, perceptual=False)
    m = res.metrics
    assert m[f"loss_{method}_last"] < m[f"loss_{method}_first"]
    assert m["perceptual"] is False and m["selected_step"] == method
    assert res.w_plus.shape == (G.n_latent, 64)
