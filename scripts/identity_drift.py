"""Identity drift between two generators on the same codes: ``r2s-identity-drift --a G_REAL.pt --b G_RENDERING.pt
--out drift.json`` (``evaluation.identity_drift``; dlib's face recogniser).

Wang et al.'s fine-tuning should keep one code one person: the same-code distance should stay well under the
distance between different codes, and under dlib's same-person threshold 0.6.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from render2style.cli import add_tool_info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tool_info(p, "r2s-identity-drift", "render2style.scripts.identity_drift", [
        "r2s-identity-drift --a stylegan2/weights/demo_faces64.pt --b runs/g_rendering/checkpoints/latest.pt "
        "--out drift.json"])
    p.add_argument("--a", required=True, help="first generator (rosinality checkpoint, or 'demo' for the face one)")
    p.add_argument("--b", required=True, help="second generator, same mapping network (e.g. fine-tuned from --a)")
    p.add_argument("--n", type=int, default=200, help="codes (default: 200)")
    p.add_argument("--truncation", type=float, default=0.7, help="ψ toward each generator's latent_avg")
    p.add_argument("--seed", type=int, default=0, help="seed of z")
    p.add_argument("--out", required=True, help="JSON file to write")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    from render2style.evaluation.dlib_face import DlibFace
    from render2style.evaluation.identity_drift import identity_drift
    from render2style.scripts.generate_targets import load_generator_arg
    from render2style.utils.io import atomic_write_json

    g_a, g_b = (load_generator_arg(path, "cpu")[0] for path in (args.a, args.b))
    report = identity_drift(g_a, g_b, DlibFace().descriptor, n=args.n, truncation=args.truncation, seed=args.seed)
    report.update(a=args.a, b=args.b)
    atomic_write_json(report, args.out)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    from render2style.cli import run_tool

    raise SystemExit(run_tool(main))
