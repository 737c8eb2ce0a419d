"""FFHQ alignment, saved transforms, annotation landmarks and paste-back (render2style.alignment)."""
import json

import numpy as np
import pytest
from PIL import Image

from render2style.alignment.ffhq import AlignTransform, align_face, ffhq_quad, points_from_5, points_from_68
from render2style.alignment.landmarks import annotation_landmarks
from render2style.alignment.paste import paste_back, paste_mask
from render2style.datasets import build_render_source
from render2style.datasets.masks import side_masks
from render2style.scripts import align_faces


def face_landmarks(cx=120.0, cy=110.0, s=1.0, angle=0.0) -> np.ndarray:
    """68 iBUG-ordered points where only the ones FFHQ uses matter: eyes around (cx∓20, cy), mouth at cy+40."""
    lm = np.zeros((68, 2))
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 6, endpoint=False)),
                     np.sin(np.linspace(0, 2 * np.pi, 6, endpoint=False))], 1) * 4
    lm[36:42] = np.array([-20, 0]) + ring
    lm[42:48] = np.array([20, 0]) + ring
    lm[48], lm[54] = [-15, 40], [15, 40]
    c, si = np.cos(angle), np.sin(angle)
    return (lm * s) @ np.array([[c, si], [-si, c]]) + [cx, cy]


def smooth_image(h=240, w=260) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 80 * np.sin(x / 17.0), 128 + 80 * np.cos(y / 13.0), 128 + 60 * np.sin((x + y) / 23.0)], 2)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_quad_of_an_upright_face_is_an_axis_aligned_square_below_the_eyes():
    quad = ffhq_quad(points_from_68(face_landmarks()))
    # eye_to_eye 40, eye_to_mouth 40: half side max(40*2, 40*1.8) = 80, centre = eye_avg + 0.1 * (0, 40)
    np.testing.assert_allclose(quad, [[40, 34], [40, 194], [200, 194], [200, 34]], atol=1e-9)


def test_quad_rotates_with_the_face():
    a = np.deg2rad(20)
    quad = ffhq_quad(points_from_68(face_landmarks(angle=a)))
    ref = ffhq_quad(points_from_68(face_landmarks()))
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    np.testing.assert_allclose(quad, (ref - [120, 110]) @ rot + [120, 110], atol=1e-9)


def test_five_point_and_68_point_recipes_agree():
    lm = face_landmarks(angle=0.3)
    five = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
    np.testing.assert_allclose(ffhq_quad(points_from_5(five)), ffhq_quad(points_from_68(lm)))


def test_align_maps_the_eyes_to_fixed_positions_of_the_crop():
    img = smooth_image()
    lm = face_landmarks(angle=0.2)
    _, t = align_face(img, points_from_68(lm), output_size=160)
    m = np.asarray(t.matrix)
    eyes = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])
    mapped = eyes @ m[:, :2].T + m[:, 2]
    # crop side 160 = quad side: unit scale; eyes 20 px either side of the centre line and 4 px
    # (0.1 * eye_to_mouth) above the crop centre 80; pixel centres sit at index + 0.5
    np.testing.assert_allclose(mapped, [[60 - 0.5, 76 - 0.5], [100 - 0.5, 76 - 0.5]], atol=1e-5)


@pytest.mark.parametrize("blend", ["mask", "laplacian"])
def test_paste_back_of_the_unchanged_crop_reproduces_the_original_inside_the_face(blend):
    img = smooth_image()
    aligned, t = align_face(img, points_from_68(face_landmarks(angle=0.25)), output_size=160)
    out = paste_back(img, aligned, t, blend=blend)
    inside = paste_mask(t) > 0.999
    assert inside.sum() > 0.3 * inside.size * (160 * 160) / (240 * 260)
    diff = np.abs(out.astype(int) - img.astype(int))[inside]
    assert diff.mean() < 1.5 and np.percentile(diff, 99) < 8
    far = paste_mask(t) == 0                                   # outside the crop nothing changes
    assert np.array_equal(out[far], img[far])


def test_paste_back_of_a_larger_generated_face_uses_the_scaled_transform():
    img = smooth_image()
    _, t = align_face(img, points_from_68(face_landmarks()), output_size=80)
    big, _ = align_face(img, points_from_68(face_landmarks()), output_size=160)   # a 2x "generator output"
    out = paste_back(img, big, t)
    inside = paste_mask(t) > 0.999
    assert np.abs(out.astype(int) - img.astype(int))[inside].mean() < 1.5


def test_face_mask_limits_the_paste_to_the_face():
    img = smooth_image()
    aligned, t = align_face(img, points_from_68(face_landmarks()), output_size=160)
    face = np.zeros(img.shape[:2], np.uint8)
    face[60:160, 70:170] = 255
    out = paste_back(img, 255 - aligned, t, face_mask=face, erode=0, blur=0)
    assert np.array_equal(out[:50], img[:50])                   # outside the face mask: untouched
    assert np.abs(out[100:120, 100:140].astype(int) - img[100:120, 100:140]).mean() > 50


def test_transform_json_round_trip(tmp_path):
    _, t = align_face(smooth_image(), points_from_68(face_landmarks()), output_size=64, source="x.png")
    t.save(tmp_path / "t.json")
    assert AlignTransform.load(tmp_path / "t.json") == t
    (tmp_path / "bad.json").write_text(json.dumps({"foo": 1}))
    with pytest.raises(ValueError, match="bad.json"):
        AlignTransform.load(tmp_path / "bad.json")


def test_annotation_landmarks_from_facesynthetics_and_demo_files(tmp_path):
    lm = face_landmarks()
    np.savetxt(tmp_path / "000001_ldmks.txt", np.vstack([lm, [[1, 2], [3, 4]]]), fmt="%.3f")
    np.testing.assert_allclose(annotation_landmarks(tmp_path / "000001.png"), lm, atol=1e-3)
    (tmp_path / "annotations.json").write_text(json.dumps({"demo_00000": {"landmarks": lm.tolist()}}))
    np.testing.assert_allclose(annotation_landmarks(tmp_path / "demo_00000.png"), lm, atol=1e-5)
    assert annotation_landmarks(tmp_path / "other.png") is None


def test_align_faces_script_aligns_annotated_renders_and_skips_faceless_images(tmp_path, caplog):
    src, out = tmp_path / "renders", tmp_path / "aligned"
    src.mkdir()
    rgba = np.dstack([smooth_image(), np.full((240, 260), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(src / "r1.png")
    (src / "annotations.json").write_text(json.dumps({"r1": {"landmarks": face_landmarks().tolist()}}))
    Image.fromarray(np.full((120, 120, 3), 90, np.uint8)).save(src / "blank.png")
    assert align_faces.main(["--input", str(src), "--out", str(out), "--output_size", "64"]) == 0
    aligned = np.asarray(Image.open(out / "r1.png"))
    assert aligned.shape == (64, 64, 4) and (aligned[..., 3] == 200).all()      # alpha warped alike
    t = AlignTransform.load(out / "transforms" / "r1.json")
    assert t.detector == "annotations" and t.source_size == [260, 240]
    assert not (out / "blank.png").exists()
    assert any("blank.png" in r.message and "no face" in r.message for r in caplog.records)


def _facesynthetics_frame(folder, stem="000001"):
    """A Face Synthetics-style frame: smooth RGB, segmentation (face class 1 left of x = 120, hair 13 on
    rows < 60), 70 landmark rows; returns the 68 landmarks."""
    folder.mkdir(exist_ok=True)
    Image.fromarray(smooth_image()).save(folder / f"{stem}.png")
    seg = np.zeros((240, 260), np.uint8)
    seg[:, :120] = 1
    seg[:60] = 13
    Image.fromarray(seg).save(folder / f"{stem}_seg.png")
    lm = face_landmarks()
    np.savetxt(folder / f"{stem}_ldmks.txt", np.vstack([lm, [[1, 2], [3, 4]]]), fmt="%.3f")
    return lm


def test_side_masks_from_facesynthetics_segmentation_and_mask_files(tmp_path):
    _facesynthetics_frame(tmp_path)
    face, hair = side_masks(tmp_path / "000001.png")
    assert face[100, 50] == 1 and face[100, 200] == 0 and face[10, 50] == 0 and hair[10, 200] == 1
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "r_mask.png")
    face, hair = side_masks(tmp_path / "r.png")
    assert face.shape == (8, 8) and (face == 1).all() and hair is None
    assert side_masks(tmp_path / "other.png") == (None, None)


def test_aligned_facesynthetics_renders_read_as_a_renders_folder(tmp_path):
    lm = _facesynthetics_frame(tmp_path / "fs")
    out = tmp_path / "aligned"
    assert align_faces.main(["--input", str(tmp_path / "fs"), "--out", str(out), "--output_size", "64"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000001.png", "000001_hair.png", "annotations.json", "transforms"]
    t = AlignTransform.load(out / "transforms" / "000001.json")
    render = build_render_source("renders", out)[0]
    m = np.asarray(t.matrix)
    np.testing.assert_allclose(render.landmarks, lm @ m[:, :2].T + m[:, 2], atol=1e-3)
    # every aligned pixel's source: face class where x < 120 (rows >= 60), hair on rows < 60
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    y, x = np.mgrid[0:64, 0:64]
    src = np.stack([x, y, np.ones_like(x)], -1) @ inv[:2].T
    face_src = (src[..., 0] < 120) & (src[..., 1] >= 60)
    hair_src = src[..., 1] < 60
    interior = lambda a: np.abs(a) > 3  # noqa: E731  (away from the class borders, in source pixels)
    inside = interior(src[..., 0] - 120) & interior(src[..., 1] - 60)
    np.testing.assert_allclose(render.face_mask[inside], face_src[inside], atol=0.02)
    np.testing.assert_allclose(render.hair_mask[inside], hair_src[inside], atol=0.02)


def test_encode_paste_back_keeps_a_facesynthetics_render_outside_its_face_mask(tmp_path):
    import torch

    import render2style.encode as encode

    _facesynthetics_frame(tmp_path / "fs")
    out = tmp_path / "aligned"
    assert align_faces.main(["--input", str(tmp_path / "fs"), "--out", str(out), "--output_size", "64"]) == 0
    encode._paste_batch(torch.ones(1, 3, 64, 64), ["000001"], out / "transforms", tmp_path / "pasted", "mask")
    img, pasted = smooth_image().astype(int), np.asarray(Image.open(tmp_path / "pasted" / "000001.png")).astype(int)
    assert np.array_equal(pasted[:, 130:], img[:, 130:])        # right of the face mask (+ its blur): untouched
    assert (pasted[100:130, 95:110] > 240).all()                # inside the face and the crop: the white face
