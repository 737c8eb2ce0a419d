"""scripts/make_figures.py: the README's figures rebuilt from pipeline outputs given on the command line."""
import json

import numpy as np
import pytest
from PIL import Image

from render2style.datasets.demo_renders import make_demo_renders
from render2style.scripts import align_faces, make_figures
from render2style.scripts.make_figures import GAP, TITLE_HEIGHT

TILE = 32


def _save(path, value, size=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    root = tmp_path_factory.mktemp("renders")
    make_demo_renders(root, 2, seed=0, size=64)
    return root


def _size(cols, rows):
    return cols * TILE + (cols - 1) * GAP, TITLE_HEIGHT + rows * (TILE + GAP) - GAP


def test_masks_figure_shows_the_render_and_its_three_masks(renders, tmp_path):
    out = tmp_path / "masks.png"
    assert make_figures.main(["masks", "--dataset", "renders", "--renders", str(renders), "--ids",
                              "demo_00000,demo_00001", "--out", str(out), "--tile", str(TILE)]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (*_size(4, 2)[::-1], 3)
    tile = lambda r, c: img[TITLE_HEIGHT + r * (TILE + GAP):][:TILE, c * (TILE + GAP):][:, :TILE]  # noqa: E731
    face, ia = tile(0, 1).astype(int), tile(0, 2).astype(int)
    assert (ia >= face - 2).all() and ia.sum() > face.sum()      # Ia is 1 on the face and falls off outside


def test_pipeline_figure_needs_teacher_encoder_and_variant_images(renders, tmp_path):
    targets, encoded = tmp_path / "targets", tmp_path / "encoded"
    _save(targets / "images" / "demo_00000.png", 10)
    _save(encoded / "images" / "demo_00000.png", 20)
    for k in range(2):
        _save(encoded / "variants" / f"demo_00000_v{k}.png", 30 + k)
    args = ["pipeline", "--renders", str(renders), "--targets", str(targets), "--encoded", str(encoded),
            "--n_variants", "2", "--tile", str(TILE), "--out", str(tmp_path / "p.png")]
    assert make_figures.main(args + ["--ids", "demo_00000"]) == 0
    img = np.asarray(Image.open(tmp_path / "p.png"))
    assert img.shape == (*_size(5, 1)[::-1], 3)
    assert (img[TITLE_HEIGHT + 5, 2 * (TILE + GAP) + 5] == 20).all()   # the encoder column
    with pytest.raises(FileNotFoundError, match="demo_00001.png"):
        make_figures.main(args + ["--ids", "demo_00001"])


def test_alignment_figure_rows_from_aligned_and_encoded_folders(renders, tmp_path):
    aligned, encoded = tmp_path / "aligned", tmp_path / "encoded"
    assert align_faces.main(["--input", str(renders), "--out", str(aligned), "--output_size", "32"]) == 0
    assert json.loads((aligned / "annotations.json").read_text()).keys() == {"demo_00000", "demo_00001"}
    _save(encoded / "images" / "demo_00000.png", 200)
    _save(encoded / "paste_back" / "demo_00000.png", 100, size=64)
    out = tmp_path / "a.png"
    assert make_figures.main(["alignment", "--row", str(aligned), str(encoded), "demo_00000", "--row", str(aligned),
                              str(encoded), "demo_00000", "--tile", str(TILE), "--out", str(out)]) == 0
    assert Image.open(out).size == _size(4, 2)
