"""r2s-flywheel --rounds on a tiny DEMO world: round 1's targets from the full teacher, an encoder trained on
them, round 2's targets from the teacher started from that encoder (cheaper), the encoder fine-tuned on all."""
import csv
import json

import pytest

from render2style.scripts import flywheel

TEACHER = ["n_samples=8", "csanns_outer=1", "csanns_proposals=8", "csanns_inner=2", "proj_steps=24", "n_seeds=1",
           "seed_batch=1", "prior_samples=200", "n_centroids=2", "n_control=2", "lambda_landm=0", "interp_layers=1",
           "interp_alphas=0.9"]
TRAIN = ["--batch_size=2", "--test_batch_size=2", "--val_interval=2", "--save_interval=2", "--board_interval=1",
         "--image_interval=100", "--resolution=32"]


def rounds(out, counts="4,6"):
    argv = ["--rounds", counts, "--out", str(out), "--demo_seed", "3", "--train_steps", "2", "--init_steps", "2",
            "--init_batch", "2", "--device", "cpu", "--threads", "1"]
    argv += [a for item in TEACHER for a in ("--set", item)] + [f"--train_arg={a}" for a in TRAIN]
    return flywheel.main(argv)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("fw")
    return out, rounds(out)


def test_round_two_starts_from_round_ones_encoder_and_skips_the_search(done):
    out, result = done
    assert [(r["round"], r["renders"], r["targets"], r["teacher"]) for r in result] == \
        [(1, 4, 4, "full"), (2, 6, 2, "replace")]
    first, second = result
    assert first["seconds_per_target"] > 0 and second["seconds_per_target"] > 0   # reported (speed: BENCHMARKS)
    assert first["eq1"] > 0 and second["eq1"] > 0 and 0 < second["ssim"] <= 1
    rows = {r["id"]: r for r in csv.DictReader(open(out / "targets" / "metadata.csv"))}
    # what makes round 2 cheaper: steps 1-2 (sampling, CS-ANNS) skipped, E(x) refined instead
    assert all(float(rows[f"demo_{i:05d}"]["seconds_sampling"]) > 0 for i in range(4))
    assert not any(rows[i].get("seconds_sampling") for i in ("demo_00004", "demo_00005"))
    assert sorted(rows) == [f"demo_{i:05d}" for i in range(6)]
    assert {rows[i].get("init_encoder") for i in ("demo_00004", "demo_00005")} == {first["encoder"]}
    assert not any(rows[f"demo_{i:05d}"].get("init_encoder") for i in range(4))
    assert (out / "round2" / "checkpoints" / "best_model.pt").is_file()
    assert json.loads((out / "rounds.json").read_text()) == result
    assert "| 2 | 6 (2) | replace |" in (out / "rounds.md").read_text()


def test_an_interrupted_round_resumes_without_recomputing(done):
    """Round 2 forgotten (as if killed before it was recorded): the rerun computes no target again and records
    the same round; a different --rounds for a recorded round is refused."""
    out, result = done
    meta = {p.name: p.stat().st_mtime_ns for p in (out / "targets" / "meta").glob("*.json")}
    (out / "rounds.json").write_text(json.dumps(result[:1]))
    again = rounds(out)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "targets" / "meta").glob("*.json")} == meta
    assert again[1] == result[1]
    with pytest.raises(ValueError, match="round 1 had 4 renders, --rounds asks for 3"):
        rounds(out, "3,6")
