"""The encoder-initialised teacher on closed-loop renders (the answer w_true known): an encoder whose weights
are zero outputs exactly its latent_avg, so E(x) is set to w_true or to a perturbed w_true at will."""
import pytest
import torch

from render2style.encoders.psp import pSp
from render2style.stylegan2 import Generator
from render2style.teacher import TeacherConfig, TeacherInput, resolve_priors, run_teacher
from render2style.teacher.encoder_init import EncoderInit, run_encoder_init_batch, run_encoder_init_teacher


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(size=32, style_dim=512, n_mlp=2, channel_max=32).eval()


@pytest.fixture(scope="module")
def net(G, tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "g.pt"
    torch.save({"g_ema": G.state_dict()}, path)
    model = pSp({"stylegan_weights": str(path), "ir_se50_weights": "none", "resolution": 32, "input_nc": 4,
                 "output_size": 32, "latent_avg_samples": 64}).eval().requires_grad_(False)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.zero_()
    return model


@pytest.fixture(scope="module")
def case(G):
    with torch.no_grad():
        w = G.style(torch.randn(1, 512, generator=torch.Generator().manual_seed(3)))
        w_true = w[:, None].expand(-1, G.n_latent, -1).contiguous()
        image = G.synthesis(w_true).clamp(-1, 1)
    yy, xx = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    mask = ((((xx - 16) / 10) ** 2 + ((yy - 17) / 12) ** 2) <= 1).float()[None, None]
    return TeacherInput(image, mask), w_true


@pytest.fixture(scope="module")
def cfg(G):
    return resolve_priors(G, TeacherConfig.demo(loss_size=32, select_size=32, n_samples=16, csanns_outer=3,
                                                csanns_proposals=16, csanns_inner=4, proj_steps=40, n_seeds=2,
                                                seed_batch=2, prior_samples=400, n_centroids=3, n_control=4,
                                                chunk=16, lambda_landm=0.0))


@pytest.fixture(scope="module")
def plain(G, case, cfg):
    """The full teacher (steps 1-4 from the prior) on the same render and seeds."""
    return run_teacher("garbin", G, case[0], cfg, perceptual=False, seed=0)


def with_code(net, w):
    net.latent_avg.copy_(w[0])
    return net


def test_exact_code_is_kept(G, net, case, cfg):
    inp, w_true = case
    res = run_encoder_init_teacher(G, EncoderInit(with_code(net, w_true), proj_steps=0), inp, cfg, False)
    assert res.metrics["selected_step"] == "encoder"
    assert torch.allclose(res.w_plus, w_true[0], atol=1e-6)
    assert res.metrics["loss_total"] == pytest.approx(res.metrics["loss_encoder"], rel=1e-4)


def test_replace_refines_a_perturbed_code(G, net, case, cfg):
    inp, w_true = case
    g = torch.Generator().manual_seed(1)
    start = w_true + 0.6 * cfg.w_std * torch.randn(w_true.shape, generator=g)
    res = run_encoder_init_teacher(G, EncoderInit(with_code(net, start), proj_steps=40), inp, cfg, False)
    m = res.metrics
    assert m["loss_projector"][0] < 0.7 * m["loss_encoder"]  # the projector's gain from E(x)
    assert m["loss_total"] < 0.7 * m["loss_encoder"]
    assert "sampling" not in m["seconds"] and "csanns" not in m["seconds"]  # steps 1-2 skipped
    assert m["selected_step"] != "encoder"


def test_warm_schedule_gains_more_than_step_3s_in_as_many_steps(G, net, case, cfg):
    """From a code near the answer, the warm schedule (no ramp-up, no latent noise, lr 0.05) lowers eq. 1 more
    in 20 steps than step 3's own (lr 0.01 ramped up, latent noise): the reason it is the default."""
    inp, w_true = case
    start = w_true + 0.3 * cfg.w_std * torch.randn(w_true.shape, generator=torch.Generator().manual_seed(2))
    losses = {}
    for schedule in ("warm", "garbin"):
        init = EncoderInit(with_code(net, start), proj_steps=20, schedule=schedule)
        res = run_encoder_init_teacher(G, init, inp, cfg, False)
        losses[schedule] = res.metrics["loss_projector"][0]
        assert losses[schedule] < res.metrics["loss_encoder"]
    assert losses["warm"] < 0.7 * losses["garbin"]
    warm, garbin = EncoderInit(net).settings(cfg), EncoderInit(net, schedule="garbin").settings(cfg)
    assert (warm.lr, warm.lr_rampup, warm.noise) == (0.05, 0.0, 0.0)
    assert (garbin.lr, garbin.lr_rampup, garbin.noise) == (cfg.proj_lr, cfg.proj_lr_rampup, cfg.proj_noise)


def test_replace_blends_by_its_own_alphas(G, net, case, cfg):
    """replace's eq. 4 candidates use EncoderInit.interp_alphas (default α = 1: the layer splits), not step 3's
    grid: w_f on the first k layers, E(x) on the rest."""
    inp, w_true = case
    start = w_true + 0.3 * cfg.w_std * torch.randn(w_true.shape, generator=torch.Generator().manual_seed(4))
    res = run_encoder_init_teacher(G, EncoderInit(with_code(net, start), proj_steps=3), inp, cfg, False)
    assert [c["step"] for c in res.candidates] == ["encoder", "projector"] + [f"interp_k{k}_a1"
                                                                            for k in cfg.interp_layers]
    code = {c["step"]: c["w_plus"] for c in res.candidates}
    k = cfg.interp_layers[-1]
    torch.testing.assert_close(code[f"interp_k{k}_a1"][:k], code["projector"][:k])
    torch.testing.assert_close(code[f"interp_k{k}_a1"][k:], start[0, k:])
    two = run_encoder_init_teacher(G, EncoderInit(net, proj_steps=3, interp_alphas=(1.0, 0.5)), inp, cfg, False)
    assert len(two.candidates) == 2 + 2 * len(cfg.interp_layers)
    for bad in ((), (0.0,), (1.5,)):
        with pytest.raises(ValueError, match="interpolation weights"):
            EncoderInit(net, interp_alphas=bad)


def test_a_batch_gives_each_render_what_it_gets_alone(G, net, case, cfg):
    """One projector run over three renders (step 3's schedule: its latent noise drawn per render) equals three
    runs of one: each render has its own loss, mask, Adam state and noise stream."""
    _, w_true = case
    inps = []
    for k in (4, 5, 6):
        with torch.no_grad():
            w = G.style(torch.randn(1, 512, generator=torch.Generator().manual_seed(k)))
            image = G.synthesis(w[:, None].expand(-1, G.n_latent, -1).contiguous()).clamp(-1, 1)
        mask = torch.zeros(1, 1, 32, 32)
        mask[..., 4 + k:28, 6:26] = 1  # a different mask per render
        inps.append(TeacherInput(image, mask))
    init = EncoderInit(with_code(net, w_true), proj_steps=12, schedule="garbin")
    ids = ["r4", "r5", "r6"]
    batched = run_encoder_init_batch(G, init, inps, cfg, False, seed=1, render_ids=ids)
    for inp, rid, res in zip(inps, ids, batched):
        alone = run_encoder_init_teacher(G, init, inp, cfg, False, seed=1, render_id=rid)
        torch.testing.assert_close(res.w_plus, alone.w_plus, rtol=1e-4, atol=1e-4)
        assert res.metrics["loss_total"] == pytest.approx(alone.metrics["loss_total"], rel=1e-4)
        assert res.metrics["selected_step"] == alone.metrics["selected_step"]
        assert res.metrics["batch"] == 3 and alone.metrics["batch"] == 1
    assert len({round(r.metrics["loss_projector"][0], 7) for r in batched}) == 3  # three different problems


def test_candidate_mode_continues_from_a_better_encoder_code(G, net, case, cfg, plain):
    inp, w_true = case
    res = run_encoder_init_teacher(G, EncoderInit(with_code(net, w_true), mode="candidate"), inp, cfg, False)
    sampled = [c for c in res.candidates if c["step"] == "sampling"]
    assert len(sampled) == cfg.n_seeds
    assert all(torch.equal(c["w_plus"], w_true[0]) for c in sampled)  # E(x) won step 1 on every seed
    assert res.metrics["loss_sampling"][0] < min(plain.metrics["loss_sampling"])  # a better step 1 than its own


def test_candidate_mode_keeps_a_better_sample(G, net, case, cfg, plain):
    """E(x) far off (w̄ + 3 w_std): step 1's own samples win, the run equals the plain teacher's."""
    inp, _ = case
    far = cfg.w_avg.reshape(1, 1, -1).expand(1, G.n_latent, -1) + 3 * cfg.w_std
    res = run_encoder_init_teacher(G, EncoderInit(with_code(net, far), mode="candidate"), inp, cfg, False)
    assert res.metrics["loss_sampling"] == pytest.approx(plain.metrics["loss_sampling"])


def test_an_encoder_for_another_generator_is_refused(net, case, cfg):
    other = Generator(size=64, style_dim=512, n_mlp=2, channel_max=32)
    with pytest.raises(ValueError, match=r"enc.pt: its codes are W\+ \[8, 512\].*\[10, 512\]"):
        run_encoder_init_teacher(other, EncoderInit(net, name="enc.pt"), case[0], cfg, False)
    with pytest.raises(ValueError, match="init mode"):
        EncoderInit(net, mode="sometimes")


def test_flywheel_measures_each_teacher_on_the_same_renders(tmp_path):
    """r2s-flywheel end to end (demo-random generator, tiny counts): three rows per render, written to the CSV; the
    "encoder" row is E(x) measured independently; an --init_set interp_alphas that replace would ignore is refused."""
    import csv

    from render2style.datasets import build_render_source
    from render2style.scripts import flywheel
    from render2style.stylegan2 import load_demo
    from render2style.teacher.job import teacher_input
    from render2style.teacher.quality import measure
    from render2style.teacher.run import build_problem, frozen
    torch.manual_seed(0)
    enc = pSp({"stylegan_weights": "demo-random", "ir_se50_weights": "none", "resolution": 32,
               "latent_avg_samples": 64}).eval()
    torch.save(enc.checkpoint_dict(), tmp_path / "enc.pt")
    tiny = ["n_samples=16", "csanns_outer=2", "csanns_proposals=16", "csanns_inner=2", "proj_steps=4", "n_seeds=1",
            "prior_samples=200", "n_centroids=2", "n_control=2", "interp_layers=1", "lambda_landm=0"]
    argv = ["--checkpoint", str(tmp_path / "enc.pt"), "--stylegan_weights", "demo-random", "--limit", "3",
            "--init_batch", "2", "--init_steps", "3", "--work_dir", str(tmp_path), "--no_landmarks", "--threads", "1",
            "--out_csv", str(tmp_path / "fly.csv"), "--out_md", str(tmp_path / "fly.md")]
    rows = flywheel.main(argv + [f"--set={t}" for t in tiny])
    assert sorted((r["render"], r["teacher"]) for r in rows) == sorted(
        (f"demo_0000{i}", t) for i in range(3) for t in flywheel.TEACHERS)
    assert len(list(csv.DictReader(open(tmp_path / "fly.csv")))) == 9
    assert "speed-up" in (tmp_path / "fly.md").read_text()
    assert all(r["seconds"] > 0 for r in rows)
    G, _, _ = load_demo("random")
    cfg = resolve_priors(G, TeacherConfig.demo().replace(**TeacherConfig.parse_overrides(tiny)), "cpu", 0)
    source = build_render_source("renders", tmp_path / "demo_renders_seed7")
    init = EncoderInit.load(tmp_path / "enc.pt", "cpu")
    for rid in ("demo_00000", "demo_00002"):
        inp = teacher_input(source[source.ids.index(rid)], "cpu")
        with frozen(G):
            expected = measure(G, build_problem(G, inp, cfg, None, torch.device("cpu")), init.encode([inp]), cfg,
                               inp.image, None, None)[0]["loss"]
        got = next(r["loss"] for r in rows if (r["render"], r["teacher"]) == (rid, "encoder"))
        assert got == pytest.approx(expected, rel=1e-4)
    with pytest.raises(SystemExit):
        flywheel.main(argv + ["--init_set", "interp_alphas=0.9"])


def test_flywheel_table_pairs_renders():
    """Medians per teacher; speed-up = median full seconds / median seconds; eq. 1 ratio per render."""
    from render2style.scripts.flywheel import markdown_table
    rows = []
    for rid, (lf, sf, li, si) in {"a": (1.0, 10.0, 0.5, 1.0), "b": (2.0, 30.0, 3.0, 2.0),
                                  "c": (4.0, 20.0, 4.0, 4.0)}.items():
        rows += [{"render": rid, "teacher": "full", "loss": lf, "ssim": 0.5, "landm_err": None, "seconds": sf},
                 {"render": rid, "teacher": "encoder_init", "loss": li, "ssim": 0.6, "landm_err": 1.0,
                  "seconds": si}]
    table = markdown_table(rows, "T")
    line = next(r for r in table.splitlines() if r.startswith("| encoder-initialised"))
    # losses 0.5, 3, 4 -> median 3; seconds 1, 2, 4 -> 2; full seconds median 20 -> 10x; ratios .5, 1.5, 1 -> 1
    assert line == "| encoder-initialised teacher | 3 | 0.6 | 1 (3/3) | 2 | 10× | 1 | 2/3 |"


def test_generate_targets_with_an_init_encoder(tmp_path):
    """r2s-generate-targets --init_encoder: every target starts from E(x); run.json records the encoder, the
    metadata rows the mode and E(x)'s loss."""
    import csv
    import json

    from render2style.scripts import generate_targets
    torch.manual_seed(0)
    enc = pSp({"stylegan_weights": "demo-random", "ir_se50_weights": "none", "resolution": 32,
               "latent_avg_samples": 64}).eval()
    torch.save(enc.checkpoint_dict(), tmp_path / "enc.pt")
    out = tmp_path / "targets"
    generate_targets.main(["--out", str(out), "--no_perceptual", "--limit", "1", "--device", "cpu", "--no_progress",
                           "--init_encoder", str(tmp_path / "enc.pt"), "--init_steps", "3", "--init_alphas", "0.9",
                           "--set", "lambda_landm=0", "--set", "prior_samples=200", "--set", "n_centroids=2",
                           "--set", "n_control=2", "--set", "interp_layers=1"])
    run = json.loads((out / "run.json").read_text())
    assert (run["init_encoder"], run["init_mode"], run["init_steps"]) == (str(tmp_path / "enc.pt"), "replace", 3)
    assert (run["init_alphas"], run["init_schedule"], run["init_lr"]) == ([0.9], "warm", 0.05)  # what ran
    assert run["weights"]["init_encoder"]["path"] == str(tmp_path / "enc.pt")
    rows = list(csv.DictReader(open(out / "metadata.csv")))
    assert len(rows) == 1 and rows[0]["init_mode"] == "replace" and float(rows[0]["loss_encoder"]) > 0
    with pytest.raises(SystemExit):
        generate_targets.main(["--out", str(out), "--method", "projector", "--init_encoder", "enc.pt"])
    for bad in ("0", "0.5,x", "1.2"):
        with pytest.raises(SystemExit):
            generate_targets.main(["--out", str(out), "--init_encoder", "enc.pt", "--init_alphas", bad])


def test_generate_targets_in_batches_equals_one_at_a_time(tmp_path):
    """--init_batch 2 over three renders (batches of 2 and 1) writes the targets --init_batch 1 writes."""
    import csv

    import numpy as np

    from render2style.scripts import generate_targets
    torch.manual_seed(0)
    enc = pSp({"stylegan_weights": "demo-random", "ir_se50_weights": "none", "resolution": 32,
               "encoder_num_layers": 18, "style_channels": 32, "latent_avg_samples": 64}).eval()
    torch.save(enc.checkpoint_dict(), tmp_path / "enc.pt")
    common = ["--stylegan_weights", "demo-random", "--no_perceptual", "--limit", "3", "--device", "cpu",
              "--no_progress", "--init_encoder", str(tmp_path / "enc.pt"), "--init_steps", "4", "--init_schedule",
              "garbin", "--set", "lambda_landm=0",
              "--set", "prior_samples=200", "--set", "n_centroids=2", "--set", "n_control=2",
              "--set", "interp_layers=1", "--init_alphas", "0.9"]
    for batch in ("1", "2"):
        generate_targets.main(["--out", str(tmp_path / f"b{batch}"), "--init_batch", batch, *common])
    rows = {b: {r["id"]: r for r in csv.DictReader(open(tmp_path / f"b{b}" / "metadata.csv"))} for b in ("1", "2")}
    assert sorted(rows["2"]) == ["demo_00000", "demo_00001", "demo_00002"]
    assert [rows["2"][i]["batch"] for i in sorted(rows["2"])] == ["2", "2", "1"]
    for rid in rows["1"]:
        np.testing.assert_allclose(np.load(tmp_path / "b2" / "latents" / f"{rid}.npy"),
                                   np.load(tmp_path / "b1" / "latents" / f"{rid}.npy"), rtol=1e-4, atol=1e-4)
        assert float(rows["2"][rid]["loss_total"]) == pytest.approx(float(rows["1"][rid]["loss_total"]), rel=1e-4)
