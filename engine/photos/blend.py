"""Seamless paste-back: an edited aligned face blended into its photo along the face's outline, in the photo's colours.

``blend_back`` puts a generated face (an aligned square, any side) back into ``transform.quad`` at the photo's full
resolution, through the exact warp of ``engine.photos.align`` (the same one ``paste_back`` uses), and differs from
``paste_back``'s square feather in three ways:

* **The mask follows the face** (``outline_mask``): the convex hull of the face outline (``face_outline``: dlib's jaw
  line and eyebrows when the face has 68 points, raised to take in the brow ridge; else an oval built from the eyes
  and mouth with average head proportions), grown by ``grow`` and feathered inwards over ``feather`` (both in
  quad sides) with a smoothstep; exactly 0 outside the grown hull, 1 deeper inside, and never beyond the quad.
* **Colour and light come from the photo**: the low frequencies (a Gaussian of ``colour_sigma`` quad sides) of
  ``aligned - reference`` are added to the face, where ``aligned`` is the photo's own aligned face and ``reference``
  the unedited reconstruction (default: the face itself). The generator's colour cast and lighting error go, and an
  attribute edit (the face minus the reconstruction) is kept whole.
* **Detail above the generator's resolution is the photo's** (``detail``): the face replaces the photo's content in
  the band the aligned square can hold, so pores, hair strands and sharp edges of the full-resolution photo stay
  (two-band blending: the target is ``up(face') + d * (photo - up(aligned))``); ``detail=0`` pastes the upsampled
  face as it is. Where an edit changes the face by more than ``edit_tolerance`` (8-bit levels, ``|face -
  reference|`` blurred by a pixel) the photo's detail no longer belongs there (a mouth that moved would show the
  old teeth's edges), so ``d`` falls linearly from ``detail`` to 0 at twice the tolerance.

Pixels where the mask is 0 (outside the grown hull, or outside the quad) are returned bit for bit.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from engine.models.ops import gaussian_blur
from engine.photos.align import AlignTransform, align_image, face_region, warp_face
from engine.photos.faces import Face

__all__ = ["face_outline", "canonical_face", "outline_mask", "blend_back", "BLEND_DEFAULTS"]

# the 5-point oval in the face's own frame (x along the eyes, y down; eye centre at 0, mouth at y = 1 in units of the
# eye-to-mouth distance, widths in eye-to-eye distances): average head proportions (the widest point a little below
# the eyes, the brow ridge about 0.55 above the eye line, the chin about 0.95 below the mouth)
OVAL_WIDEST_Y = 0.25  # y of the widest point, in eye-to-mouth distances
OVAL_TOP = 0.8  # from the widest point up to the top of the brows, in eye-to-mouth distances
OVAL_BOTTOM = 1.7  # from the widest point down to the chin, in eye-to-mouth distances
OVAL_HALF_WIDTH = 1.0  # at the widest point, in eye-to-eye distances
OVAL_POWER = (2.4, 2.0)  # superellipse exponents of the upper and lower halves (a broad forehead, a rounder chin)
BROW_RAISE = 0.25  # 68 points: eyebrows raised by this many eye-to-mouth distances (the brow ridge above the hairs)
BLEND_DEFAULTS = {"grow": 0.02, "feather": 0.08, "colour_sigma": 0.06, "detail": 1.0, "edit_tolerance": 16.0}


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull [K, 2] of points [N, 2], counter-clockwise in the (x, y) cross product (monotone chain)."""
    pts = sorted(set(map(tuple, np.asarray(points, dtype=np.float64).tolist())))
    if len(pts) < 3:
        raise ValueError("a face outline needs at least 3 distinct points")

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = np.array(lower[:-1] + upper[:-1])
    if len(hull) < 3:
        raise ValueError("the face outline points are collinear")
    return hull


def _frame(face: Face) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Eye centre, unit x (towards the image-right eye) and unit y (down the face) [2] each, eye-to-eye and
    eye-to-mouth distances."""
    eye_l, eye_r, _, mouth_l, mouth_r = face.landmarks
    eyes = (eye_l + eye_r) * 0.5
    across = eye_r - eye_l
    e2e = float(np.hypot(*across))
    if e2e < 1e-9:
        raise ValueError("the face's eyes coincide: no outline")
    ux = across / e2e
    uy = np.array([-ux[1], ux[0]])  # x turned a quarter towards +y: down the face in image coordinates
    e2m = float(((mouth_l + mouth_r) * 0.5 - eyes) @ uy)
    if e2m <= 1e-9:
        raise ValueError("the face's mouth is not below its eyes: no outline")
    return eyes, ux, uy, e2e, e2m


def face_outline(face: Face, *, samples: int = 64) -> np.ndarray:
    """The face's outline in photo pixels: a convex polygon [K, 2], counter-clockwise in the cross product.

    With 68 points: the hull of the jaw line (0-16) and the eyebrows (17-26), the brows raised by ``BROW_RAISE``
    eye-to-mouth distances. With 5 points: an oval of average proportions around the eyes and mouth (``OVAL_*``),
    ``samples`` points."""
    eyes, ux, uy, e2e, e2m = _frame(face)
    if face.points68 is not None:
        p = np.asarray(face.points68, dtype=np.float64)
        brows = p[17:27] - uy * (BROW_RAISE * e2m)
        return _hull(np.concatenate([p[0:17], brows]))
    t = np.linspace(0.0, 2 * math.pi, samples, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    upper = s < 0
    power = np.where(upper, OVAL_POWER[0], OVAL_POWER[1])
    x = np.sign(c) * np.abs(c) ** (2 / power) * OVAL_HALF_WIDTH * e2e
    y = OVAL_WIDEST_Y * e2m + np.sign(s) * np.abs(s) ** (2 / power) * np.where(upper, OVAL_TOP, OVAL_BOTTOM) * e2m
    return _hull(eyes + x[:, None] * ux + y[:, None] * uy)


def canonical_face(transform: AlignTransform) -> Face:
    """A face of average proportions where an FFHQ-style alignment puts one in ``transform``'s square (eyes at
    (0.375, 0.475) and (0.625, 0.475) of the side, mouth corners at (0.41, 0.725) and (0.59, 0.725)): the outline
    used when no detected face matches the crop (a manual box, or a photo whose face is no longer found)."""
    unit = np.array([[0.375, 0.475], [0.625, 0.475], [0.5, 0.6], [0.41, 0.725], [0.59, 0.725]])
    to_photo = np.linalg.inv(transform.matrix())
    pts = (to_photo[:2, :2] @ (unit.T * transform.size) + to_photo[:2, 2:]).T
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    return Face((x0, y0, x1, y1), 0.0, pts)


def outline_mask(outline: np.ndarray, origin: tuple[int, int], shape: tuple[int, int], *, grow: float,
                 feather: float) -> np.ndarray:
    """The blend mask float32 [rows, cols] on the photo pixels whose top-left is ``origin`` (x, y): 0 outside the
    convex ``outline`` [K, 2] grown by ``grow`` pixels (each edge moved out), rising with a smoothstep over
    ``feather`` pixels inwards from there to 1. Pixel centres are sampled."""
    hull = _hull(outline)
    if feather <= 0:
        raise ValueError(f"the mask's feather must be positive, got {feather}")
    rows, cols = shape
    px = origin[0] + np.arange(cols, dtype=np.float64)[None] + 0.5  # [1, cols]
    py = origin[1] + np.arange(rows, dtype=np.float64)[:, None] + 0.5  # [rows, 1]
    inside = np.full(shape, np.inf)
    for a, b in zip(hull, np.roll(hull, -1, axis=0)):
        edge = b - a
        length = float(np.hypot(*edge))
        if length < 1e-12:
            continue
        inside = np.minimum(inside, (edge[0] * (py - a[1]) - edge[1] * (px - a[0])) / length)  # > 0 inside
    t = np.clip((inside + grow) / feather, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _low_pass(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of float32 [R, R, 3] (``sigma`` in pixels; the border pixels repeated)."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    return gaussian_blur(x, sigma, padding="replicate")[0].permute(1, 2, 0).numpy()


def blend_back(photo: np.ndarray, face: np.ndarray, transform: AlignTransform, *, outline: np.ndarray,
               reference: np.ndarray | None = None, grow: float = BLEND_DEFAULTS["grow"],
               feather: float = BLEND_DEFAULTS["feather"], colour_sigma: float = BLEND_DEFAULTS["colour_sigma"],
               detail: float = BLEND_DEFAULTS["detail"],
               edit_tolerance: float = BLEND_DEFAULTS["edit_tolerance"]) -> np.ndarray:
    """``photo`` uint8 [H, W, 3] with ``face`` (uint8 [S, S, 3], the edited aligned face) blended back into
    ``transform.quad`` along ``outline`` (photo pixels, ``face_outline``): a new uint8 array of the photo's size.

    ``reference`` uint8 [S, S, 3]: the unedited reconstruction the colour match measures against (default: ``face``).
    ``grow``, ``feather`` (quad sides): the mask (``outline_mask``); ``colour_sigma`` (quad sides, 0 = no colour
    match): the low-pass of the colour correction; ``detail`` in [0, 1]: how much of the photo's detail above the
    aligned square's resolution is kept, less where the edit changed the face by more than ``edit_tolerance``
    levels (see the module docstring). Pixels the mask leaves at 0 are unchanged.
    """
    for name, value, top in (("grow", grow, 0.5), ("feather", feather, 0.5), ("colour_sigma", colour_sigma, 1.0),
                             ("detail", detail, 1.0)):
        if not (0.0 <= value <= top) or (name == "feather" and value == 0):
            raise ValueError(f"{name} must be between 0 and {top:g}{' (not 0)' if name == 'feather' else ''}, "
                             f"got {value}")
    if not isinstance(face, np.ndarray) or face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3 \
            or face.shape[0] != face.shape[1] or face.shape[0] < 1:
        raise ValueError(f"the face must be a square uint8 image [S, S, 3], got {getattr(face, 'dtype', type(face))} "
                         f"{getattr(face, 'shape', None)}")
    if not edit_tolerance > 0:
        raise ValueError(f"edit_tolerance must be positive, got {edit_tolerance}")
    if reference is not None and reference.shape != face.shape:
        raise ValueError(f"the reference must be the face's size {face.shape}, got {reference.shape}")
    out = photo.copy()
    region = face_region(photo, transform)
    if region is None:
        return out  # the quad lies entirely outside the photo
    (x0, y0), (rows, cols) = region
    side = transform.side
    mask = outline_mask(outline, (x0, y0), (rows, cols), grow=grow * side, feather=feather * side)
    mask *= face_region_mask(transform, (x0, y0), (rows, cols))
    if not mask.any():
        return out
    size = face.shape[0]
    aligned = align_image(photo, AlignTransform(transform.quad, size)).astype(np.float32)  # the photo's face
    edited = face.astype(np.float32)
    ref = edited if reference is None else reference.astype(np.float32)
    if colour_sigma > 0:
        edited = edited + _low_pass(aligned - ref, colour_sigma * size)
    change = np.abs(face.astype(np.float32) - ref).mean(-1, keepdims=True)  # [S, S, 1] how far the edit went
    keep = detail * np.clip(2.0 - _low_pass(change, 1.0) / edit_tolerance, 0.0, 1.0)  # [S, S, 1]
    origin, shape = (x0, y0), (rows, cols)
    base = out[y0:y0 + rows, x0:x0 + cols].astype(np.float32)
    up_face, up_photo = warp_face(edited, transform, origin, shape), warp_face(aligned, transform, origin, shape)
    up_keep = warp_face(keep, transform, origin, shape)  # [rows, cols, 1]
    blended = base + mask[..., None] * (up_face - base + up_keep * (base - up_photo))
    pasted = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    inside = mask[..., None] > 0
    out[y0:y0 + rows, x0:x0 + cols] = np.where(inside, pasted, out[y0:y0 + rows, x0:x0 + cols])
    return out


def face_region_mask(transform: AlignTransform, origin: tuple[int, int], shape: tuple[int, int], *,
                     margin: float = 0.01) -> np.ndarray:
    """float32 [rows, cols]: 1 at pixel centres more than ``margin`` sides inside the quad, 0 outside it, a linear
    ramp between (the face image exists only inside the quad)."""
    rows, cols = shape
    m = transform.matrix()[:2] / transform.size
    px = origin[0] + np.arange(cols, dtype=np.float64)[None] + 0.5
    py = origin[1] + np.arange(rows, dtype=np.float64)[:, None] + 0.5
    u = m[0, 0] * px + m[0, 1] * py + m[0, 2]
    v = m[1, 0] * px + m[1, 1] * py + m[1, 2]
    edge = np.minimum(np.minimum(u, 1.0 - u), np.minimum(v, 1.0 - v))
    return np.clip(edge / margin, 0.0, 1.0).astype(np.float32)
