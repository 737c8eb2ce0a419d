"""Paste-back: put a generated (aligned) face into the original image by inverting the alignment.

The face is warped back with the inverse affine and composited with a soft mask: the aligned square
(optionally intersected with a face mask in the original, e.g. a render's alpha), eroded and blurred so
the seam fades out; or, with ``blend="laplacian"``, blended band by band over a Laplacian pyramid.
"""
from __future__ import annotations

import cv2
import numpy as np

from render2style.alignment.ffhq import AlignTransform


def warp_back(face: np.ndarray, transform: AlignTransform) -> np.ndarray:
    """Aligned crop (any square size) -> original frame [H, W, C], zeros outside the crop."""
    w, h = transform.source_size
    matrix = transform.matrix_for(face.shape[0])
    return cv2.warpAffine(face, matrix, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def paste_mask(transform: AlignTransform, face_mask: np.ndarray | None = None,
               erode: float = 0.02, blur: float = 0.02) -> np.ndarray:
    """Soft float32 mask [H, W] in [0, 1] of where the face goes.

    ``erode`` and ``blur`` are fractions of the crop's side in the original (its quad's size);
    ``face_mask`` ([H, W], 0-1 or 0-255) limits the paste to the face (renders: alpha).
    """
    w, h = transform.source_size
    square = np.ones((transform.output_size, transform.output_size), np.float32)
    mask = cv2.warpAffine(square, np.asarray(transform.matrix), (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if face_mask is not None:
        fm = face_mask.astype(np.float32)
        mask = mask * (fm / 255.0 if fm.max() > 1.0 else fm)
    quad = np.asarray(transform.quad)
    side = float(np.hypot(*(quad[3] - quad[0])))
    r = int(round(erode * side))
    if r > 0:
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    sigma = blur * side
    if sigma > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    return np.clip(mask, 0.0, 1.0)


def laplacian_blend(a: np.ndarray, b: np.ndarray, mask: np.ndarray, levels: int = 5) -> np.ndarray:
    """Blend float32 images a (where mask = 1) and b (mask = 0), [H, W, 3] with mask [H, W], band by band
    over Laplacian pyramids (Burt & Adelson): coarse bands blend over wide seams, fine bands over narrow ones."""
    ga, gb, gm = [a], [b], [mask]
    for _ in range(levels):
        ga.append(cv2.pyrDown(ga[-1]))
        gb.append(cv2.pyrDown(gb[-1]))
        gm.append(cv2.pyrDown(gm[-1]))
    out = ga[-1] * gm[-1][..., None] + gb[-1] * (1 - gm[-1][..., None])
    for i in range(levels - 1, -1, -1):
        size = ga[i].shape[1::-1]
        la = ga[i] - cv2.pyrUp(ga[i + 1], dstsize=size)
        lb = gb[i] - cv2.pyrUp(gb[i + 1], dstsize=size)
        m = gm[i][..., None]
        out = cv2.pyrUp(out, dstsize=size) + la * m + lb * (1 - m)
    return out


def paste_back(original: np.ndarray, face: np.ndarray, transform: AlignTransform,
               face_mask: np.ndarray | None = None, blend: str = "mask",
               erode: float = 0.02, blur: float = 0.02) -> np.ndarray:
    """Composite ``face`` (aligned crop, uint8 [S, S, 3]) into ``original`` (uint8 [H, W, 3]).

    Returns uint8 [H, W, 3]. ``blend``: "mask" (soft eroded+blurred mask) or "laplacian".
    """
    h, w = original.shape[:2]
    if [w, h] != list(transform.source_size):
        raise ValueError(f"{transform.source}: original is {w}x{h} but the transform was made for "
                         f"{transform.source_size[0]}x{transform.source_size[1]}")
    orig = original[..., :3].astype(np.float32)
    warped = warp_back(face[..., :3], transform).astype(np.float32)
    mask = paste_mask(transform, face_mask, erode, blur)
    if blend == "mask":
        out = warped * mask[..., None] + orig * (1.0 - mask[..., None])
    elif blend == "laplacian":
        inside = paste_mask(transform, erode=0.0, blur=0.0)[..., None] > 0.5   # keep black borders out
        out = laplacian_blend(np.where(inside, warped, orig), orig, mask)
    else:
        raise ValueError(f"blend must be 'mask' or 'laplacian', got {blend!r}")
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
