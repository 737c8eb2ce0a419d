"""Render sources, the dataset registry, targets, splits, flips and unreadable files."""
import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from render2style.datasets import (
    EncoderDataset,
    build_render_source,
    dataset_names,
    encoder_input,
    make_demo_renders,
    split_ids,
)
from render2style.datasets.masks import FACE_CLASSES, HAIR_CLASSES

S = 32


def _rgb(seed, size=S):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _save(arr, path, mode=None):
    Image.fromarray(arr, mode).save(path)


def _to_tensor(rgb):
    return torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1


@pytest.fixture
def renders(tmp_path):
    """Three RGBA renders r0..r2 with a left-half face mask, hair for r0, landmarks for r1."""
    root = tmp_path / "renders"
    root.mkdir()
    alpha = np.zeros((S, S), np.uint8)
    alpha[:, : S // 2] = 255
    for i in range(3):
        _save(np.dstack([_rgb(i), alpha]), root / f"r{i}.png", "RGBA")
    _save(np.full((S, S), 128, np.uint8), root / "r0_hair.png", "L")
    landmarks = (np.arange(136).reshape(68, 2) / 5).tolist()
    (root / "annotations.json").write_text(json.dumps({"r1": {"landmarks": landmarks}}))
    return root


def _targets(tmp_path, ids, n_latent=4, flip_ids=(), meta=True):
    root = tmp_path / "targets"
    for d in ("latents", "images", "meta"):
        (root / d).mkdir(parents=True, exist_ok=True)
    codes = {}
    for rid in list(ids) + [f"{r}_flip" for r in flip_ids]:
        codes[rid] = np.random.default_rng(len(codes)).standard_normal((n_latent, 512)).astype(np.float32)
        np.save(root / "latents" / f"{rid}.npy", codes[rid])
        _save(_rgb(100 + len(codes)), root / "images" / f"{rid}.png")
        if meta:
            (root / "meta" / f"{rid}.json").write_text("{}")
    return root, codes


# ---- render sources ---------------------------------------------------------------------------

def test_renders_source_reads_alpha_hair_and_landmarks(renders):
    src = build_render_source("renders", renders)
    assert src.ids == ["r0", "r1", "r2"] and len(src) == 3
    r0, r1 = src[0], src[1]
    np.testing.assert_array_equal(r0.rgb, _rgb(0))
    assert r0.face_mask.dtype == np.float32
    assert np.all(r0.face_mask[:, : S // 2] == 1) and np.all(r0.face_mask[:, S // 2:] == 0)
    np.testing.assert_allclose(r0.hair_mask, 128 / 255)
    assert r0.landmarks is None and r1.hair_mask is None
    np.testing.assert_allclose(r1.landmarks, np.arange(136).reshape(68, 2) / 5)
    assert r1.landmarks.shape == (68, 2) and r1.path.endswith("r1.png")


def test_renders_source_reads_rgb_with_mask_file_and_rejects_rgb_without(tmp_path):
    _save(_rgb(1), tmp_path / "a.png")
    mask = np.zeros((S, S), np.uint8)
    mask[4:10, 4:10] = 255
    _save(mask, tmp_path / "a_mask.png")
    _save(_rgb(2), tmp_path / "b.jpg")
    src = build_render_source("renders", tmp_path)
    assert src.ids == ["a", "b"]
    np.testing.assert_array_equal(src[0].face_mask, mask / 255.0)
    with pytest.raises(ValueError, match="b.jpg.*no alpha"):
        src[1]


def test_mask_of_another_size_is_an_error_naming_it(tmp_path):
    _save(_rgb(1), tmp_path / "a.png")
    _save(np.zeros((S + 1, S), np.uint8), tmp_path / "a_mask.png")
    with pytest.raises(ValueError, match="a_mask.png"):
        build_render_source("renders", tmp_path)[0]


def test_facesynthetics_masks_equal_the_class_sets(tmp_path):
    seg = np.array(list(range(19)) + [255], np.uint8)[np.random.default_rng(1).integers(0, 20, (S, S))]
    ldmks = np.random.default_rng(2).uniform(0, S, (70, 2))
    _save(_rgb(0), tmp_path / "000007.png")
    _save(seg, tmp_path / "000007_seg.png", "L")
    np.savetxt(tmp_path / "000007_ldmks.txt", ldmks, fmt="%.3f")
    _save(_rgb(1), tmp_path / "notes.png")  # not a frame id: ignored
    src = build_render_source("facesynthetics", tmp_path)
    assert src.ids == ["000007"]
    r = src[0]
    np.testing.assert_array_equal(r.face_mask, np.isin(seg, list(range(1, 12)) + [14, 16, 18]))
    np.testing.assert_array_equal(r.hair_mask, np.isin(seg, [13, 17]))
    assert set(FACE_CLASSES) == set(range(1, 12)) | {14, 16, 18} and set(HAIR_CLASSES) == {13, 17}
    np.testing.assert_allclose(r.landmarks, ldmks[:68], atol=1e-3)
    np.testing.assert_array_equal(r.rgb, _rgb(0))


def test_facesynthetics_missing_segmentation_names_the_file(tmp_path):
    _save(_rgb(0), tmp_path / "000001.png")
    with pytest.raises(FileNotFoundError, match="000001_seg.png"):
        build_render_source("facesynthetics", tmp_path)[0]


def test_image_folder_converts_grayscale_and_16_bit(tmp_path):
    _save(np.full((S, S), 200, np.uint8), tmp_path / "gray.png", "L")
    Image.fromarray(np.full((S, S), 65535, np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    src = build_render_source("images", tmp_path)
    deep, gray = src[0], src[1]
    assert deep.rgb.dtype == np.uint8 and deep.rgb.shape == (S, S, 3) and np.all(deep.rgb == 255)
    assert np.all(gray.rgb == 200)
    assert np.all(gray.face_mask == 1) and gray.hair_mask is None and gray.landmarks is None


def test_demo_renders_read_back_as_renders(tmp_path):
    make_demo_renders(tmp_path, 2, seed=0, size=S)
    r = build_render_source("renders", tmp_path)[1]
    alpha = np.asarray(Image.open(tmp_path / "demo_00001.png"))[..., 3]
    np.testing.assert_allclose(r.face_mask, alpha / 255.0, atol=1e-6)
    assert r.hair_mask is not None and r.landmarks.shape == (68, 2)


# ---- unreadable files -------------------------------------------------------------------------

def _corrupt(renders):
    (renders / "r1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def test_corrupt_png_is_an_error_naming_it(renders):
    _corrupt(renders)
    src = build_render_source("renders", renders)
    assert src.ids == ["r0", "r1", "r2"]  # listing decodes nothing
    with pytest.raises(ValueError, match="r1.png"):
        src[1]
    with pytest.raises(ValueError, match="r1.png"):
        list(src)


def test_corrupt_png_is_skipped_and_counted_when_asked(renders):
    _corrupt(renders)
    src = build_render_source("renders", renders, skip_corrupt=True)
    assert [r.id for r in src] == ["r0", "r2"]
    assert src.n_skipped == 1
    assert src.get(1) is None and src.n_skipped == 2


def test_encoder_dataset_skips_a_corrupt_item_by_option(renders):
    _corrupt(renders)
    src = build_render_source("renders", renders)
    with pytest.raises(ValueError, match="r1.png"):
        EncoderDataset(src, test_fraction=0, n_latent=4, flip_p=0, transform=None)[1]
    ds = EncoderDataset(src, test_fraction=0, n_latent=4, flip_p=0, transform=None, skip_corrupt=True)
    assert ds[1]["id"] == "r2" and ds.n_skipped == 1


# ---- registry ---------------------------------------------------------------------------------

def test_registry_loads_a_user_class_from_a_module_string(tmp_path, monkeypatch):
    (tmp_path / "my_renders.py").write_text(textwrap.dedent("""
        import numpy as np
        from render2style.datasets import Render, RenderSource

        class Flat(RenderSource):
            def _list(self):
                return sorted(self.root.glob("*.raw"))

            def load(self, index):
                rgb = np.zeros((32, 32, 3), np.uint8)
                return Render(self.ids[index], rgb, np.ones((32, 32), np.float32), None, None, str(self.paths[index]))
    """))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.raw").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path))
    src = build_render_source("my_renders:Flat", tmp_path / "data")
    assert src.ids == ["x"] and src[0].rgb.shape == (32, 32, 3)
    with pytest.raises(ValueError, match="no attribute 'Nope'"):
        build_render_source("my_renders:Nope", tmp_path / "data")


def test_unknown_dataset_lists_the_names(tmp_path):
    assert {"renders", "facesynthetics", "images"} <= set(dataset_names())
    with pytest.raises(ValueError, match="facesynthetics.*images.*renders"):
        build_render_source("nope", tmp_path)


# ---- split ------------------------------------------------------------------------------------

def test_split_is_deterministic_disjoint_and_independent_of_the_other_ids():
    ids = [f"{i:06d}" for i in range(400)]
    train, test = split_ids(ids, 0.1)
    assert set(train) | set(test) == set(ids) and not set(train) & set(test)
    assert 20 <= len(test) <= 60
    assert split_ids(ids[::-1], 0.1) == (train[::-1], test[::-1])
    sub_train, sub_test = split_ids(ids[:200], 0.1)
    assert set(sub_test) == set(test) & set(ids[:200])


def test_tiny_dataset_still_gets_one_test_item():
    train, test = split_ids(["a", "b", "c"], 0.1)
    assert len(test) == 1 and len(train) == 2
    assert split_ids(["a", "b", "c"], 0.0) == (["a", "b", "c"], [])


def test_train_and_test_datasets_partition_the_source(renders):
    src = build_render_source("renders", renders)
    train = EncoderDataset(src, split="train", test_fraction=0.5, n_latent=4)
    test = EncoderDataset(src, split="test", test_fraction=0.5, n_latent=4)
    assert sorted(train.ids + test.ids) == src.ids and len(test) >= 1


# ---- items, targets, flips --------------------------------------------------------------------

def _dataset(renders, targets=None, **kw):
    kw = {"test_fraction": 0, "transform": None, "flip_p": 0.0, "resolution": S, **kw}
    if targets is None:
        kw.setdefault("n_latent", 4)
    return EncoderDataset(build_render_source("renders", renders), targets, **kw)


def test_item_shapes_and_the_mask_channel(renders):
    item = _dataset(renders, input_nc=4, resolution=16)[0]
    assert item["input"].shape == (4, 16, 16) and item["target"].shape == (3, 16, 16)
    assert item["mask"].shape == (1, 16, 16) and item["latent"].shape == (4, 512)
    assert item["latent"].dtype == torch.float32 and item["id"] == "r0"
    assert item["has_latent"].dtype == torch.bool and not item["has_latent"] and not item["flipped"]
    assert item["input"].min() >= -1 and item["input"].max() <= 1
    torch.testing.assert_close(item["input"][3:], item["mask"] * 2 - 1)
    torch.testing.assert_close(item["mask"][0, :, :8], torch.ones(16, 8))
    torch.testing.assert_close(item["mask"][0, :, 8:], torch.zeros(16, 8))


def test_encoder_input_matches_the_dataset_convention():
    rgb, mask = _rgb(3), np.ones((S, S), np.float32)
    x = encoder_input(rgb, mask, 4)
    torch.testing.assert_close(x[:3], _to_tensor(rgb))
    assert torch.all(x[3] == 1)
    with pytest.raises(ValueError, match="input_nc"):
        encoder_input(rgb, mask, 5)


def test_teacher_image_and_code_are_the_target_when_finished(renders, tmp_path):
    root, codes = _targets(tmp_path, ["r0"])
    _targets(tmp_path, ["r2"], meta=False)  # written but unfinished: does not count
    ds = _dataset(renders, root)
    assert ds.n_latent == 4
    t0, t1, t2 = ds[0], ds[1], ds[2]
    torch.testing.assert_close(t0["target"], _to_tensor(np.asarray(Image.open(root / "images" / "r0.png"))))
    torch.testing.assert_close(t0["latent"], torch.from_numpy(codes["r0"]))
    assert t0["has_latent"]
    for item, i in ((t1, 1), (t2, 2)):
        torch.testing.assert_close(item["target"], _to_tensor(_rgb(i)))
        torch.testing.assert_close(item["target"], item["input"])
        assert not item["has_latent"] and torch.all(item["latent"] == 0)


def test_flip_without_flipped_targets_turns_the_latent_off(renders, tmp_path):
    root, _ = _targets(tmp_path, ["r0"])
    item = _dataset(renders, root, flip_p=1.0)[0]
    teacher = np.asarray(Image.open(root / "images" / "r0.png"))
    assert item["flipped"] and not item["has_latent"] and torch.all(item["latent"] == 0)
    torch.testing.assert_close(item["target"], _to_tensor(teacher[:, ::-1]))
    torch.testing.assert_close(item["input"], _to_tensor(_rgb(0)[:, ::-1]))
    assert torch.all(item["mask"][0, :, S // 2:] == 1) and torch.all(item["mask"][0, :, : S // 2] == 0)


def test_flip_with_flipped_targets_uses_them(renders, tmp_path):
    root, codes = _targets(tmp_path, ["r0"], flip_ids=["r0"])
    item = _dataset(renders, root, flip_p=1.0)[0]
    assert item["flipped"] and item["has_latent"]
    torch.testing.assert_close(item["latent"], torch.from_numpy(codes["r0_flip"]))
    torch.testing.assert_close(item["target"], _to_tensor(np.asarray(Image.open(root / "images" / "r0_flip.png"))))


def test_flip_of_an_input_without_targets_flips_the_target_too(renders):
    item = _dataset(renders, flip_p=1.0)[2]
    torch.testing.assert_close(item["target"], _to_tensor(_rgb(2)[:, ::-1]))
    torch.testing.assert_close(item["input"], item["target"])


def test_augmentation_changes_only_the_input_and_is_reproducible(renders, tmp_path):
    root, _ = _targets(tmp_path, ["r0"])
    ds = _dataset(renders, root, transform="default", flip_p=0.5)
    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        draws.append([ds[i % 3] for i in range(12)])
    for a, b in zip(*draws):
        for key in ("input", "target", "flipped", "has_latent"):
            torch.testing.assert_close(a[key], b[key])
    items = draws[0]
    assert any(not torch.equal(it["input"], it["target"]) for it in items if it["id"] != "r0")
    assert {bool(it["flipped"]) for it in items} == {True, False}
    for it in items:
        if it["id"] == "r0":
            teacher = np.asarray(Image.open(root / "images" / "r0.png"))
            expected = teacher[:, ::-1] if it["flipped"] else teacher
            torch.testing.assert_close(it["target"], _to_tensor(expected))


def test_test_split_is_never_augmented(renders):
    ds = _dataset(renders, split="test", test_fraction=1.0, transform="default", flip_p=1.0)
    for i in range(len(ds)):
        item = ds[i]
        assert not item["flipped"]
        torch.testing.assert_close(item["input"], item["target"])


def test_targets_of_another_generator_are_rejected(renders, tmp_path):
    root, _ = _targets(tmp_path, ["r0"], n_latent=4)
    with pytest.raises(ValueError, match="n_latent 4, expected 6"):
        _dataset(renders, root, n_latent=6)
    with pytest.raises(ValueError, match="n_latent"):
        EncoderDataset(build_render_source("renders", renders))


# ---- flipped renders (the teacher's flip targets) ---------------------------------------------

def test_flipped_render_mirrors_pixels_masks_and_landmarks(renders):
    r = build_render_source("renders", renders)[1]
    f = r.flipped()
    assert f.id == "r1_flip"
    np.testing.assert_array_equal(f.rgb, r.rgb[:, ::-1])
    np.testing.assert_array_equal(f.face_mask, r.face_mask[:, ::-1])
    back = f.flipped()
    np.testing.assert_array_equal(back.rgb, r.rgb)
    np.testing.assert_allclose(back.landmarks, r.landmarks, atol=1e-5)


def test_mirror_of_a_symmetric_face_keeps_ibug_order():
    import dataclasses

    from render2style.datasets.demo_renders import landmarks_uv, project, sample_params
    from render2style.datasets.renders import IBUG_MIRROR, Render

    p = sample_params(np.random.default_rng([0, 0]))
    p = dataclasses.replace(p, yaw=0.0, pitch=0.0, roll=0.0, center=(0.5, 0.5), gaze=(0.0, 0.0))
    lm = project(p, landmarks_uv(p), 64).astype(np.float32)
    r = Render("x", np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.float32), None, lm, "x.png")
    np.testing.assert_allclose(r.flipped().landmarks, lm, atol=1e-4)
    assert sorted(IBUG_MIRROR) == list(range(68)) and np.all(IBUG_MIRROR[IBUG_MIRROR] == np.arange(68))
