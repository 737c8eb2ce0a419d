"""Procedural demo face renders: the offline stand-in for a graphics pipeline's output.

They show the mechanics (an RGBA render whose alpha is the face mask, a hair mask, pose, lighting,
68 landmarks), not photorealism. The head is an ellipsoid ray-cast under an orthographic camera;
eyes, brows, nose, mouth and hairline are drawn in the head's own surface coordinates, so they move,
turn and foreshorten with the pose, and the landmarks are the same shapes projected with the same
camera. Image ``i`` is drawn from ``np.random.default_rng([seed, i])`` only: byte-identical across
runs and independent of how many images are made.

Camera space: x right, y up, z toward the viewer (pixels, origin at the head centre). Pose angles in
degrees: yaw > 0 turns the face toward the image's right, pitch > 0 tilts it up, roll > 0 rotates it
counter-clockwise in the image. Landmarks are pixel coordinates (pixel centres at integers), iBUG-68
order, projected "x-ray" style (points on the far side of the head are still given).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from render2style.utils.io import atomic_save_image, atomic_write_json

log = logging.getLogger(__name__)

SUPERSAMPLE = 2  # rendered at 2x and box-filtered: soft, anti-aliased edges and masks

# Face layout on the unit sphere seen from the front (u_x right, u_y up).
EYE_X, EYE_Y, EYE_W = 0.31, 0.13, 0.13
BROW_Y, BROW_IN, BROW_LEN = 0.27, 0.10, 0.36
MOUTH_Y, MOUTH_W = -0.47, 0.19
# Height bumps (x, y, sigma_x, sigma_y, height) that shade the nose, eye sockets and chin.
BUMPS = np.array([
    [0.0, 0.02, 0.045, 0.13, 0.05],     # nose bridge
    [0.0, -0.16, 0.06, 0.055, 0.07],    # nose tip
    [-0.075, -0.2, 0.035, 0.03, 0.035],  # nostril wings
    [0.075, -0.2, 0.035, 0.03, 0.035],
    [-EYE_X, EYE_Y, 0.12, 0.08, -0.03],  # eye sockets
    [EYE_X, EYE_Y, 0.12, 0.08, -0.03],
    [0.0, -0.78, 0.14, 0.08, 0.025],    # chin
])


@dataclass(frozen=True)
class FaceParams:
    """Everything that varies between demo renders (sizes are fractions of the image size)."""

    yaw: float
    pitch: float
    roll: float
    light: np.ndarray        # unit vector in camera space
    skin: np.ndarray         # RGB albedo in [0, 1]
    hair_color: np.ndarray
    iris_color: np.ndarray
    clothes: np.ndarray
    bg_top: np.ndarray
    bg_bottom: np.ndarray
    center: tuple[float, float]
    axes: tuple[float, float, float]
    eye_open: float          # upper-lid height on the unit sphere
    gaze: tuple[float, float]
    brow_raise: float
    mouth_open: float        # lip gap; 0 = closed
    hairline: float          # u_y of the hairline at the front
    hair_length: float       # length of the hair behind the head, in head half-heights

    def rotation(self) -> np.ndarray:
        """Head-to-camera rotation ``Rz(roll) @ Ry(yaw) @ Rx(pitch)``."""
        y, p, r = np.radians([self.yaw, self.pitch, self.roll])
        ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
        rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
        rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
        return rz @ ry @ rx


def sample_params(rng: np.random.Generator) -> FaceParams:
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.2, 0.8), 1.0])
    tone = rng.uniform()
    skin = (1 - tone) * np.array([0.95, 0.80, 0.69]) + tone * np.array([0.45, 0.29, 0.19])
    hair_palette = np.array([[0.08, 0.06, 0.05], [0.30, 0.18, 0.09], [0.62, 0.45, 0.25],
                             [0.55, 0.22, 0.10], [0.55, 0.55, 0.55]])
    iris_palette = np.array([[0.35, 0.20, 0.10], [0.25, 0.45, 0.65], [0.30, 0.45, 0.25], [0.2, 0.15, 0.1]])
    scale = rng.uniform(0.94, 1.06)
    return FaceParams(
        yaw=float(rng.uniform(-25, 25)), pitch=float(rng.uniform(-12, 12)), roll=float(rng.uniform(-10, 10)),
        light=light / np.linalg.norm(light),
        skin=np.clip(skin * rng.uniform(0.95, 1.05, 3), 0, 1),
        hair_color=hair_palette[rng.integers(len(hair_palette))] * rng.uniform(0.85, 1.15),
        iris_color=iris_palette[rng.integers(len(iris_palette))],
        clothes=rng.uniform(0.1, 0.8, 3),
        bg_top=rng.uniform(0.3, 0.9, 3), bg_bottom=rng.uniform(0.1, 0.6, 3),
        center=(0.5 + rng.uniform(-0.03, 0.03), 0.47 + rng.uniform(-0.03, 0.03)),
        axes=(0.22 * scale * rng.uniform(0.95, 1.05), 0.3 * scale, 0.26 * scale),
        eye_open=float(rng.uniform(0.045, 0.07)),
        gaze=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.01, 0.01))),
        brow_raise=float(rng.uniform(-0.02, 0.03)),
        mouth_open=float(rng.choice([0.0, rng.uniform(0.03, 0.11)])),
        hairline=float(rng.uniform(0.42, 0.55)),
        hair_length=float(rng.choice([0.0, rng.uniform(0.5, 1.6)])),
    )


# ---- landmarks: the parametric feature curves, sampled -------------------------------------------

def _eye_lids(p: FaceParams, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid heights at ``t`` in [-1, 1] across an eye (same for both eyes)."""
    c = np.cos(np.pi / 2 * np.clip(t, -1, 1))
    return EYE_Y + p.eye_open * c, EYE_Y - 0.04 * c


def _brow_line(p: FaceParams, t: np.ndarray) -> np.ndarray:
    """Brow centre line at ``t`` in [0, 1] (inner to outer end)."""
    return BROW_Y + p.brow_raise + 0.045 * np.sin(np.pi * np.clip(t, 0, 1) ** 0.8) - 0.02 * t


def _lips(p: FaceParams, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """Outer-upper, inner-upper, inner-lower and outer-lower lip lines at ``t`` in [-1, 1]."""
    w = np.clip(1 - t ** 2, 0, None)
    bow = 1 - 0.35 * np.exp(-(t / 0.15) ** 2)   # cupid's bow
    inner_up = MOUTH_Y + p.mouth_open / 2 * w
    inner_low = MOUTH_Y - p.mouth_open / 2 * w
    return inner_up + 0.055 * w ** 0.6 * bow, inner_up, inner_low, inner_low - 0.07 * w ** 0.6


def landmarks_uv(p: FaceParams) -> np.ndarray:
    """The 68 iBUG landmarks on the unit sphere's front view, ``[68, 2]`` (u_x, u_y)."""
    phi = np.linspace(-np.pi / 2, np.pi / 2, 17)
    jaw = np.stack([0.93 * np.sin(phi), 0.1 - 0.95 * np.cos(phi)], 1)
    tb = np.linspace(0, 1, 5)
    brow_r = np.stack([-(BROW_IN + BROW_LEN * tb[::-1]), _brow_line(p, tb[::-1])], 1)
    brow_l = np.stack([BROW_IN + BROW_LEN * tb, _brow_line(p, tb)], 1)
    bridge = np.stack([np.zeros(4), np.linspace(EYE_Y, -0.17, 4)], 1)
    nostrils = np.stack([np.linspace(-0.09, 0.09, 5), -0.22 - 0.03 * np.cos(np.linspace(-1.2, 1.2, 5))], 1)
    eyes = []
    for ex in (-EYE_X, EYE_X):
        t = np.array([-1, -1 / 3, 1 / 3, 1, 1 / 3, -1 / 3])
        up, low = _eye_lids(p, t)
        eyes.append(np.stack([ex + EYE_W * t, np.r_[up[:4], low[4:]]], 1))
    to = np.array([-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0, -1 / 3, -2 / 3])
    o_up, _, _, o_low = _lips(p, to)
    outer = np.stack([MOUTH_W * to, np.r_[o_up[:7], o_low[7:]]], 1)
    ti = np.array([-0.85, -0.4, 0, 0.4, 0.85, 0.4, 0, -0.4])
    _, i_up, i_low, _ = _lips(p, ti)
    inner = np.stack([MOUTH_W * ti, np.r_[i_up[:5], i_low[5:]]], 1)
    return np.concatenate([jaw, brow_r, brow_l, bridge, nostrils, *eyes, outer, inner]).astype(np.float64)


def project(p: FaceParams, uv: np.ndarray, size: int) -> np.ndarray:
    """Lift front-view unit-sphere points onto the head and project them to pixels, ``[N, 2]``."""
    uz = np.sqrt(np.clip(1 - (uv ** 2).sum(1), 0, None))
    q = np.stack([uv[:, 0], uv[:, 1], uz], 1) * np.array(p.axes) * size
    cam = q @ p.rotation().T
    cx, cy = p.center[0] * size - 0.5, p.center[1] * size - 0.5
    return np.stack([cx + cam[:, 0], cy - cam[:, 1]], 1)


# ---- rendering ----------------------------------------------------------------------------------

def _cast(X, Y, R: np.ndarray, axes: np.ndarray, offset: np.ndarray):
    """Orthographic rays along -z against the ellipsoid ``|R^T (p - offset) / axes| = 1``.

    Returns the hit mask and the unit-sphere coordinates ``(u_x, u_y, u_z)`` of the front and the
    back intersection (meaningless where there is no hit).
    """
    X, Y = X - offset[0], Y - offset[1]
    M = R @ np.diag(1 / axes ** 2) @ R.T
    A = M[2, 2]
    B = 2 * (M[0, 2] * X + M[1, 2] * Y)
    C = M[0, 0] * X ** 2 + 2 * M[0, 1] * X * Y + M[1, 1] * Y ** 2 - 1
    disc = B ** 2 - 4 * A * C
    hit = disc > 0
    root = np.sqrt(np.clip(disc, 0, None))

    def unit(Z):
        return [(R[0, i] * X + R[1, i] * Y + R[2, i] * Z) / axes[i] for i in range(3)]

    return hit, unit((-B + root) / (2 * A)), unit((-B - root) / (2 * A))


def _bump_gradient(ux, uy):
    """Gradient of the summed Gaussian height bumps (nose, eye sockets, chin) in surface coordinates."""
    gx = np.zeros_like(ux)
    gy = np.zeros_like(uy)
    for x0, y0, sx, sy, h in BUMPS:
        dx, dy = (ux - x0) / sx, (uy - y0) / sy
        g = h * np.exp(-0.5 * (dx ** 2 + dy ** 2))
        gx -= g * dx / sx
        gy -= g * dy / sy
    return gx, gy


def _lambert(normal, p: FaceParams, ambient: float, shine: float):
    """Diffuse shading and a Blinn specular highlight for camera-space normals."""
    n = normal / np.sqrt(sum(c ** 2 for c in normal))
    ndl = sum(n[i] * p.light[i] for i in range(3))
    shade = ambient + (1 - ambient) * np.clip(ndl, 0, None)
    h = p.light + np.array([0, 0, 1.0])
    h /= np.linalg.norm(h)
    spec = shine * np.clip(sum(n[i] * h[i] for i in range(3)), 0, None) ** 24
    return shade, spec


def _is_hair(u, p: FaceParams):
    """Hair region on the head's unit sphere: above a hairline that drops from the forehead to the back."""
    front = np.clip(u[2], 0, 1)
    side = -0.15 - 0.25 * min(p.hair_length, 1.0)
    behind = side + (0.4 + 0.4 * min(p.hair_length, 1)) * u[2]
    line = np.where(u[2] >= 0, side + (p.hairline - side) * np.sqrt(front), behind)
    return u[1] > line


def _face_albedo(u, p: FaceParams):
    """Skin and feature colours (eyes, brows, nostrils, lips) at surface points ``u``; ``[..., 3]``."""
    ux, uy = u[0], u[1]
    front = u[2] > 0.05
    col = np.broadcast_to(p.skin, ux.shape + (3,)).copy()
    blush = np.exp(-(((np.abs(ux) - 0.42) / 0.12) ** 2 + ((uy + 0.2) / 0.1) ** 2))
    col *= 1 + 0.12 * blush[..., None] * np.array([0.4, -0.5, -0.5])

    def paint(mask, color):
        col[mask & front] = color

    for ex in (-EYE_X, EYE_X):
        t = (ux - ex) / EYE_W
        up, low = _eye_lids(p, t)
        lash = (np.abs(t) < 1.12) & (uy < up + 0.012) & (uy > low - 0.006)
        paint(lash, p.skin * 0.35)
        eye = (np.abs(t) < 1) & (uy < up) & (uy > low)
        paint(eye, (0.93, 0.91, 0.88))
        r2 = (ux - ex - p.gaze[0]) ** 2 + (uy - EYE_Y - 0.005 - p.gaze[1]) ** 2
        paint(eye & (r2 < 0.048 ** 2), p.iris_color)
        paint(eye & (r2 < 0.02 ** 2), (0.03, 0.03, 0.03))
        paint(eye & ((ux - ex - p.gaze[0] + 0.012) ** 2 + (uy - EYE_Y - 0.02) ** 2 < 0.008 ** 2), (1, 1, 1))
    for side in (-1, 1):
        t = (side * ux - BROW_IN) / BROW_LEN
        brow = (t > 0) & (t < 1) & (np.abs(uy - _brow_line(p, t)) < 0.022 * (1 - 0.55 * t))
        paint(brow, p.hair_color * 0.9)
        paint(((ux - side * 0.05) / 0.028) ** 2 + ((uy + 0.225) / 0.014) ** 2 < 1, p.skin * 0.3)
    t = ux / MOUTH_W
    o_up, i_up, i_low, o_low = _lips(p, t)
    inside = np.abs(t) < 1
    lip_color = 0.55 * p.skin + 0.45 * np.array([0.72, 0.28, 0.32])
    paint(inside & (uy < o_up) & (uy > o_low), lip_color)
    paint(inside & (np.abs(uy - MOUTH_Y) < 0.004 + p.mouth_open / 2 * (1 - t ** 2)), p.skin * 0.35)
    mouth = inside & (uy < i_up) & (uy > i_low)
    paint(mouth, (0.25, 0.05, 0.07))
    paint(mouth & (uy > i_up - 0.02) & (np.abs(t) < 0.7), (0.92, 0.9, 0.85))
    return col


def render_face(p: FaceParams, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one render: RGB ``uint8 [S,S,3]``, face mask and hair mask ``float32 [S,S]`` in [0, 1]."""
    n = size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE - 0.5
    X = coords[None, :] - (p.center[0] * size - 0.5)
    Y = (p.center[1] * size - 0.5) - coords[:, None]
    X, Y = np.broadcast_to(X, (n, n)), np.broadcast_to(Y, (n, n))
    R = p.rotation()
    axes = np.array(p.axes) * size
    a, b = axes[0], axes[1]

    v = (coords[:, None] / size)[..., None]
    img = (1 - v) * p.bg_top + v * p.bg_bottom
    img = np.broadcast_to(img, (n, n, 3)).copy()

    body = (X / (1.9 * a)) ** 2 + ((Y + 1.75 * b) / (0.8 * b)) ** 2 < 1
    img[body] = p.clothes * (0.75 + 0.25 * np.clip(Y[body] / b + 1.75, 0, 1))[:, None]

    # Hair behind the head: the back of a slightly larger shell, plus a curtain for long hair.
    hair_axes = axes * np.array([1.08, 1.06, 1.1])
    hair_offset = R @ np.array([0, 0.04 * b, -0.03 * axes[2]])
    hhit, hfront, hback = _cast(X, Y, R, hair_axes, hair_offset)
    cr, sr = np.cos(np.radians(p.roll)), np.sin(np.radians(p.roll))
    xr = cr * X + sr * Y + np.sin(np.radians(p.yaw)) * 0.2 * a
    yr = -sr * X + cr * Y
    length = p.hair_length * b
    curtain = (length > 0.2 * b) & (
        np.abs(xr / (1.12 * a)) ** 4 + np.abs((yr + length / 2) / (length / 2 + 0.2 * b)) ** 4 < 1)
    back_hair = (hhit & _is_hair(hback, p)) | curtain
    hair_shade = 0.35 + 0.3 * np.clip(-yr / (length + b), 0, 1)
    img[back_hair] = p.hair_color * hair_shade[back_hair][:, None]

    neck = (np.abs(X) < 0.42 * a * (1 + 0.2 * np.clip(-Y / b - 1, 0, None))) & (Y < -0.3 * b) & ~body
    img[neck] = p.skin * (0.55 + 0.25 * np.clip((-Y[neck] / b - 0.6), 0, 1))[:, None]

    # The head: skin and features in surface coordinates, shaded with bump-perturbed normals.
    hit, u, _ = _cast(X, Y, R, axes, np.zeros(3))
    uh = [c[hit] for c in u]
    gx, gy = _bump_gradient(uh[0], uh[1])
    local_n = [uh[0] / axes[0] * a - 1.2 * gx, uh[1] / axes[1] * a - 1.2 * gy, uh[2] / axes[2] * a]
    normal = [sum(R[i, j] * local_n[j] for j in range(3)) for i in range(3)]
    shade, spec = _lambert(normal, p, ambient=0.35, shine=0.12)
    img[hit] = np.clip(_face_albedo(uh, p) * shade[:, None] + spec[:, None], 0, 1)

    # Hair in front: the larger shell wherever it lies above the hairline.
    cap = hhit & _is_hair(hfront, p)
    hf = [c[cap] for c in hfront]
    hn = [sum(R[i, j] * hf[j] / hair_axes[j] * a for j in range(3)) for i in range(3)]
    hshade, hspec = _lambert(hn, p, ambient=0.3, shine=0.15)
    strands = 0.85 + 0.15 * np.sin(60 * np.arctan2(hf[0], hf[1] + 1.3))
    img[cap] = np.clip(p.hair_color * (hshade * strands)[:, None] + hspec[:, None], 0, 1)

    face = hit & ~cap
    hair = cap | (back_hair & ~hit & ~neck)
    return _downsample(img, face, hair, size)


def _downsample(img, face, hair, size):
    s = SUPERSAMPLE

    def box(x):
        return x.reshape(size, s, size, s, *x.shape[2:]).mean(axis=(1, 3))

    rgb = np.clip(box(img) * 255 + 0.5, 0, 255).astype(np.uint8)
    return rgb, box(face.astype(np.float32)), box(hair.astype(np.float32))


def make_demo_renders(out_dir: str | os.PathLike, n: int, seed: int = 0, size: int = 256) -> list[str]:
    """Write ``n`` demo renders (``demo_NNNNN.png`` RGBA, ``demo_NNNNN_hair.png``) and ``annotations.json``.

    Returns the render paths. Deterministic: the same ``(seed, index, size)`` gives the same bytes.
    """
    if n < 0 or size < 16:
        raise ValueError(f"make_demo_renders: need n >= 0 and size >= 16, got n={n}, size={size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log.info("drawing %d demo renders (procedural faces, not photoreal) at %dx%d into %s", n, size, size, out)
    paths, annotations = [], {}
    for i in range(n):
        p = sample_params(np.random.default_rng([seed, i]))
        rgb, face, hair = render_face(p, size)
        rid = f"demo_{i:05d}"
        alpha = np.clip(face * 255 + 0.5, 0, 255).astype(np.uint8)
        atomic_save_image(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), out / f"{rid}.png")
        atomic_save_image(Image.fromarray(np.clip(hair * 255 + 0.5, 0, 255).astype(np.uint8), "L"),
                          out / f"{rid}_hair.png")
        annotations[rid] = {
            "demo": True, "seed": seed, "yaw": round(p.yaw, 3), "pitch": round(p.pitch, 3), "roll": round(p.roll, 3),
            "light": [round(float(x), 4) for x in p.light],
            "skin_tone": [round(float(x), 4) for x in p.skin],
            "mouth_open": p.mouth_open > 0, "hair_length": round(p.hair_length, 3),
            "landmarks": np.round(project(p, landmarks_uv(p), size), 2).tolist(),
        }
        paths.append(str(out / f"{rid}.png"))
    atomic_write_json(annotations, out / "annotations.json")
    return paths
