"""Face alignment as an exact, storable transform: photo -> oriented square crop -> back into the photo.

An ``AlignTransform`` is the crop's quad in photo pixels (corners top-left, bottom-left, bottom-right, top-right
of the aligned square, as in FFHQ's script) and the aligned image's side. ``align_image`` resamples the quad to
a square; ``paste_back`` puts an (edited) square face back into the photo at its full resolution with a
feathered mask, leaving every pixel outside the quad untouched.

Recipes (``face_transform``):

* ``"ffhq"``: the FFHQ dataset's alignment (Karras et al. 2019, ``ffhq-dataset`` README and script) from the eye
  centres and mouth corners: ``x = eye_to_eye - flipud(eye_to_mouth) * [-1, 1]``, normalised, times
  ``max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)``; ``y = flipud(x) * [-1, 1]``; centre
  ``eye_avg + 0.1 eye_to_mouth``. With 68 points the eyes are the means of points 36-41 and 42-47 and the mouth
  corners points 48 and 54, exactly as FFHQ; with 5 points, the detector's eye centres and mouth corners.
* ``"synthetic"``: the framing of the embedded default generator's training data (``engine/synth``): the FFHQ
  square scaled by ``SYNTHETIC_SCALE`` and moved by ``SYNTHETIC_SHIFT`` (in FFHQ half-sides along the square's
  own axes). ``derive_synthetic_recipe`` measures both by running the MTCNN detector on rendered synthetic faces
  (upscaled to 256 px; MTCNN finds every one) and expressing each render's full frame in its FFHQ square; the
  constants are the medians over 400 faces of seed 0 (``derive_synthetic_recipe(count=400)``), so a detected
  real face lands where detected synthetic faces sit in their frame: the synthetic frame is about 9% larger than
  FFHQ's square and 3% of a half-side lower. (The renderer's own geometry, eyes at (0.38, 0.47) and (0.62, 0.47)
  and the mouth at 0.72 of the frame, gives 1.04 and 1%; MTCNN puts the drawn eyes 0.22 apart instead of 0.24.)

Resampling: bilinear, antialiased when shrinking (an integer box reduction of the source, then 2 x 2 supersampling
per output pixel); outside the photo ``align_image`` mirrors the photo at its edges (FFHQ pads with a reflection
too, then blurs it; the blur is not reproduced). Coordinates are continuous pixels: pixel (row i, column j)
covers [j, j+1) x [i, i+1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.files.configs import DictForm
from engine.photos.faces import Face

__all__ = ["AlignTransform", "RECIPES", "face_transform", "box_transform", "whole_image_transform", "align_image",
           "paste_back", "face_region", "warp_face", "SYNTHETIC_SCALE", "SYNTHETIC_SHIFT", "derive_synthetic_recipe"]

RECIPES = ("ffhq", "synthetic")
# derive_synthetic_recipe(count=400, seed=0): scale 1.0884, shift (-0.0026, 0.0296), 400 of 400 faces detected
# (seed 1: 1.0906, (-0.0027, 0.0289)); across faces the scale's interquartile range is 0.054, the shift's 0.011/0.014
SYNTHETIC_SCALE = 1.088  # synthetic frame half-side / FFHQ half-side
SYNTHETIC_SHIFT = (-0.003, 0.030)  # synthetic frame centre - FFHQ centre, in FFHQ half-sides along its (x, y) axes


@dataclass(frozen=True)
class AlignTransform(DictForm, what="the alignment"):
    """A square crop of a photo: ``quad`` corners (top-left, bottom-left, bottom-right, top-right of the aligned
    image) in photo pixels, and the aligned image's side ``size``. The quad is any non-degenerate parallelogram
    (a square for every recipe here). Written as ``{"quad": [[x, y] * 4], "size": int}`` (``to_dict``)."""

    quad: tuple[tuple[float, float], ...]
    size: int

    def __post_init__(self):
        try:
            q = np.array(self.quad, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"the alignment's quad must be 4 (x, y) corners, got {self.quad!r}") from None
        if q.shape != (4, 2) or not np.isfinite(q).all():
            raise ValueError(f"the alignment's quad must be 4 finite (x, y) corners, got {self.quad!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise ValueError(f"the aligned size must be a positive integer, got {self.size!r}")
        tl, bl, br, tr = q
        side = max(np.hypot(*(tr - tl)), np.hypot(*(bl - tl)))
        (ax, ay), (bx, by) = tr - tl, bl - tl
        if abs(ax * by - ay * bx) <= 1e-9 * max(side, 1.0) ** 2:
            raise ValueError(f"the alignment's quad is degenerate (no area): {q.tolist()}")
        if np.abs(tl + br - bl - tr).max() > 1e-6 * max(side, 1.0):
            raise ValueError(f"the alignment's quad is not a parallelogram: {q.tolist()}")
        object.__setattr__(self, "quad", tuple((float(x), float(y)) for x, y in q))
        object.__setattr__(self, "size", int(self.size))

    def matrix(self) -> np.ndarray:
        """[3, 3] affine taking photo pixel coordinates to aligned pixel coordinates: top-left -> (0, 0),
        bottom-left -> (0, size), bottom-right -> (size, size), top-right -> (size, 0)."""
        tl, bl, _, tr = np.array(self.quad)
        basis = np.stack([tr - tl, bl - tl], axis=1)  # columns: photo vectors of the aligned x and y edges
        linear = self.size * np.linalg.inv(basis)
        m = np.eye(3)
        m[:2, :2] = linear
        m[:2, 2] = -linear @ tl
        return m

    @property
    def side(self) -> float:
        """The quad's longer edge in photo pixels."""
        tl, bl, _, tr = np.array(self.quad)
        return float(max(np.hypot(*(tr - tl)), np.hypot(*(bl - tl))))


# ---- recipes ----

def _eyes_and_mouth(face: Face) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Left eye, right eye, left and right mouth corners [2] each: the 68-point means when present."""
    if face.points68 is not None:
        p = face.points68
        return p[36:42].mean(0), p[42:48].mean(0), p[48], p[54]
    lm = face.landmarks
    return lm[0], lm[1], lm[3], lm[4]


def _ffhq_frame(eye_left, eye_right, mouth_left, mouth_right) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ's oriented square: centre c and half-side vectors x (rightwards) and y (downwards)."""
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) * 0.5 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    norm = np.hypot(*x)
    if norm < 1e-9:
        raise ValueError("the landmarks do not span a face (eyes and mouth coincide)")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    return eye_avg + eye_to_mouth * 0.1, x, y


def _quad(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[tuple[float, float], ...]:
    return tuple(tuple(float(v) for v in p) for p in (c - x - y, c - x + y, c + x + y, c + x - y))


def face_transform(face: Face, *, size: int, recipe: str = "ffhq") -> AlignTransform:
    """The aligned square of ``face`` for a generator trained on ``recipe``'s framing (see the module docstring)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown alignment recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    c, x, y = _ffhq_frame(*_eyes_and_mouth(face))
    if recipe == "synthetic":
        c = c + SYNTHETIC_SHIFT[0] * x + SYNTHETIC_SHIFT[1] * y
        x, y = x * SYNTHETIC_SCALE, y * SYNTHETIC_SCALE
    return AlignTransform(_quad(c, x, y), size)


def box_transform(box: tuple[float, float, float, float], *, size: int) -> AlignTransform:
    """A manual, axis-aligned square crop box (x0, y0, x1, y1) in photo pixels (it may reach outside the photo).
    A box within 1% of square is taken as the square of its mean side around its centre."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        raise ValueError(f"a crop box needs x1 > x0 and y1 > y0, got {tuple(box)}")
    if abs(w - h) > 0.01 * max(w, h):
        raise ValueError(f"a crop box must be square, got {w:g} x {h:g} pixels")
    c, half = np.array([x0 + x1, y0 + y1]) * 0.5, (w + h) * 0.25
    return AlignTransform(_quad(c, np.array([half, 0.0]), np.array([0.0, half])), size)


def whole_image_transform(width: int, height: int, *, size: int) -> AlignTransform:
    """The largest centred square of a width x height photo (its shorter side)."""
    if width < 1 or height < 1:
        raise ValueError(f"a photo needs a positive size, got {width} x {height}")
    half = min(width, height) * 0.5
    c = np.array([width, height]) * 0.5
    return AlignTransform(_quad(c, np.array([half, 0.0]), np.array([0.0, half])), size)


# ---- resampling ----

def _check_image(pixels: np.ndarray, what: str) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"{what} must be a uint8 image [H, W, 3], got {getattr(pixels, 'dtype', type(pixels))} "
                         f"{getattr(pixels, 'shape', None)}")
    if min(pixels.shape[:2]) < 1:
        raise ValueError(f"{what} is empty: {pixels.shape}")


def _mirror(t: torch.Tensor, n: int) -> torch.Tensor:
    """Continuous coordinates reflected into [0, n): the photo mirrored at its edges, repeatedly."""
    t = torch.remainder(t, 2 * n)
    return torch.where(t >= n, 2 * n - t, t)


def _warp(src: np.ndarray, to_src: np.ndarray, origin: tuple[int, int], shape: tuple[int, int], *,
          mirror: bool) -> np.ndarray:
    """Resample ``src`` [H, W, 3] onto a destination grid of ``shape`` (rows, cols) whose top-left pixel is at
    destination pixel ``origin`` (x, y); ``to_src`` [3, 3] maps destination to source coordinates.

    Antialiased: where one destination pixel spans ``s`` source pixels, the source is box-reduced by floor(s)
    and each destination pixel averages 2 x 2 bilinear samples. Outside the source: mirrored (``mirror``) or the
    edge pixel repeated. Returns float32 [rows, cols, 3] in 0..255.
    """
    height, width = src.shape[:2]
    rows, cols = shape
    linear = to_src[:2, :2]
    footprint = float(np.hypot(linear[0], linear[1]).max())  # source pixels per destination pixel, longer axis
    k = max(1, int(math.floor(footprint)))
    m = 1 if footprint <= 1.0 else 2
    # destination sample positions: m x m per pixel, at sub-pixel centres
    sub = (torch.arange(m, dtype=torch.float32) + 0.5) / m
    xs = (origin[0] + torch.arange(cols, dtype=torch.float32)[:, None] + sub[None]).reshape(-1)  # [cols*m]
    ys = (origin[1] + torch.arange(rows, dtype=torch.float32)[:, None] + sub[None]).reshape(-1)  # [rows*m]
    a = torch.from_numpy(to_src.astype(np.float32))
    sx = a[0, 0] * xs[None] + (a[0, 1] * ys + a[0, 2])[:, None]  # [rows*m, cols*m] source x
    sy = a[1, 0] * xs[None] + (a[1, 1] * ys + a[1, 2])[:, None]
    if mirror:
        sx, sy = _mirror(sx, width), _mirror(sy, height)
    else:
        sx, sy = sx.clamp(0, width), sy.clamp(0, height)
    # only the source region the samples touch is read (and reduced), aligned to the reduction's blocks
    x0 = max(0, (int(math.floor(float(sx.min()))) - 1) // k * k)
    y0 = max(0, (int(math.floor(float(sy.min()))) - 1) // k * k)
    x1 = min(width, int(math.ceil(float(sx.max()))) + k + 1)
    y1 = min(height, int(math.ceil(float(sy.max()))) + k + 1)
    region = torch.from_numpy(np.array(src[y0:y1, x0:x1], dtype=np.float32)).permute(2, 0, 1)[None]
    if k > 1:
        region = F.avg_pool2d(region, k, k, ceil_mode=True, count_include_pad=False)
    rh, rw = region.shape[-2:]
    gx = ((sx - x0) / k) / rw * 2 - 1  # region coordinates, normalised for align_corners=False
    gy = ((sy - y0) / k) / rh * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)[None].float()  # [1, rows*m, cols*m, 2]
    out = F.grid_sample(region, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if m > 1:
        out = F.avg_pool2d(out, m, m)
    return out[0].permute(1, 2, 0).numpy()


def align_image(pixels: np.ndarray, transform: AlignTransform) -> np.ndarray:
    """The aligned square [size, size, 3] uint8: the photo inside ``transform.quad``, resampled (antialiased when
    shrinking) and mirrored at the photo's edges where the quad reaches outside it."""
    _check_image(pixels, "the photo")
    to_photo = np.linalg.inv(transform.matrix())
    out = _warp(pixels, to_photo, (0, 0), (transform.size, transform.size), mirror=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def face_region(photo: np.ndarray, transform: AlignTransform) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The photo pixels ``transform.quad`` touches, as (origin (x, y), shape (rows, cols)) clipped to the photo;
    None when the quad lies entirely outside it."""
    height, width = photo.shape[:2]
    q = np.array(transform.quad)
    x0, y0 = (max(0, int(math.floor(v))) for v in q.min(0))
    x1, y1 = min(width, int(math.ceil(q[:, 0].max()))), min(height, int(math.ceil(q[:, 1].max())))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0), (y1 - y0, x1 - x0)


def warp_face(face: np.ndarray, transform: AlignTransform, origin: tuple[int, int], shape: tuple[int, int]
              ) -> np.ndarray:
    """An aligned square ``face`` [S, S, C] (any side, uint8 or float) resampled onto the photo pixels of ``shape``
    (rows, cols) whose top-left is ``origin`` (x, y): float32 [rows, cols, C], bilinear, edge pixels repeated
    outside the square. Linear in ``face``."""
    to_face = np.diag([face.shape[1] / transform.size, face.shape[0] / transform.size, 1.0]) @ transform.matrix()
    return _warp(face, to_face, origin, shape, mirror=False)


def paste_back(photo: np.ndarray, face: np.ndarray, transform: AlignTransform, *, feather: float = 0.08
               ) -> np.ndarray:
    """``photo`` [H, W, 3] with ``face`` (an aligned square of any side, resampled to fit) put back into
    ``transform.quad``: a new uint8 array at the photo's full resolution.

    The face is blended with a mask that is 0 on the quad's border and rises (smoothstep) to 1 at ``feather``
    times the side inside it; ``feather=0`` replaces exactly the pixels whose centres lie inside the quad. Pixels
    outside the quad are returned unchanged, bit for bit.
    """
    _check_image(photo, "the photo")
    _check_image(face, "the face")
    if face.shape[0] != face.shape[1]:
        raise ValueError(f"the face must be square, got {face.shape[1]} x {face.shape[0]}")
    if not (0.0 <= feather <= 0.5):
        raise ValueError(f"feather must be between 0 and 0.5 of the side, got {feather}")
    out = photo.copy()
    found = face_region(photo, transform)
    if found is None:
        return out  # the quad lies entirely outside the photo
    (x0, y0), (rows, cols) = found
    x1, y1 = x0 + cols, y0 + rows
    to_aligned = transform.matrix()
    # mask from each photo pixel centre's position in the aligned square, [0, 1] across it
    m = torch.from_numpy(to_aligned[:2] / transform.size)
    px = torch.arange(x0, x1, dtype=torch.float64)[None] + 0.5  # [1, w]
    py = torch.arange(y0, y1, dtype=torch.float64)[:, None] + 0.5  # [h, 1]
    u = (m[0, 0] * px + (m[0, 1] * py + m[0, 2])).float()  # [h, w]
    v = (m[1, 0] * px + (m[1, 1] * py + m[1, 2])).float()
    edge = torch.minimum(torch.minimum(u, 1.0 - u), torch.minimum(v, 1.0 - v))  # distance to the border, in sides
    if feather == 0:
        mask = (edge > 0).float()
    else:
        t = (edge / feather).clamp(0.0, 1.0)
        mask = t * t * (3.0 - 2.0 * t)
    if not bool((mask > 0).any()):
        return out
    warped = torch.from_numpy(warp_face(face, transform, (x0, y0), (rows, cols)))  # [h, w, 3]
    region = torch.from_numpy(out[y0:y1, x0:x1])  # a view: writing it writes ``out``
    blended = torch.lerp(region.float(), warped, mask[..., None]).round_().clamp_(0, 255).to(torch.uint8)
    region.copy_(torch.where(mask[..., None] > 0, blended, region))
    return out


# ---- the synthetic recipe's constants ----

def derive_synthetic_recipe(*, count: int = 400, seed: int = 0, upscale: int = 256, domain: str = "photo",
                            start_index: int = 0) -> dict:
    """Measure ``SYNTHETIC_SCALE`` and ``SYNTHETIC_SHIFT``: render ``count`` synthetic faces (64 px, the default
    generator's data), upscale them to ``upscale`` px, detect each with MTCNN and express the full frame in the
    face's FFHQ square (scale = frame half-side / FFHQ half-side; shift = frame centre - FFHQ centre along the
    square's unit axes, in FFHQ half-sides). Returns medians, spreads, the detection rate and the mean landmarks
    (in frame units); takes about 25 ms per face on one thread.
    """
    from PIL import Image

    from engine.photos.faces import detect_faces
    from engine.synth import sample_batch

    images, _, _ = sample_batch(count, size=64, domain=domain, rng_or_seed=seed, start_index=start_index)
    pixels = ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    scales, shifts, marks, rotations = [], [], [], []
    for img in pixels:
        big = np.asarray(Image.fromarray(img).resize((upscale, upscale), Image.Resampling.BICUBIC))
        faces = detect_faces(big, detector="mtcnn")
        if not faces:
            continue
        c, x, y = _ffhq_frame(*_eyes_and_mouth(faces[0]))
        half = np.hypot(*x)
        offset = np.array([upscale, upscale]) * 0.5 - c
        scales.append(upscale * 0.5 / half)
        shifts.append([offset @ x / half ** 2, offset @ y / half ** 2])
        rotations.append(math.degrees(math.atan2(x[1], x[0])))
        marks.append(faces[0].landmarks / upscale)
    if not scales:
        raise RuntimeError("MTCNN found no synthetic face")
    scales, shifts = np.array(scales), np.array(shifts)
    return {"scale": float(np.median(scales)), "shift": tuple(float(v) for v in np.median(shifts, axis=0)),
            "scale_iqr": float(np.subtract(*np.percentile(scales, [75, 25]))),
            "shift_iqr": tuple(float(v) for v in np.subtract(*np.percentile(shifts, [75, 25], axis=0))),
            "rotation_deg_median": float(np.median(rotations)), "detected": len(scales), "count": count,
            "mean_landmarks": np.mean(marks, axis=0).round(4).tolist()}
