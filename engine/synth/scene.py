"""Procedural face scenes: parameter vectors -> per-pixel layers (albedo, normals, contours) for a whole batch.

Everything is evaluated on the pixel grid at once with PyTorch (no per-pixel Python). Coordinates are in image
widths: ``x = u - 0.5`` to the right, ``y = 0.5 - v`` up, so the picture is the same face at any resolution.

The head is 3-D-ish: a proxy ellipsoid turned by yaw and pitch is ray-cast per pixel, which gives each pixel
head-frame coordinates (X, Y, Z) and a surface normal. Face features (eyes, brows, nose, mouth, beard,
wrinkles, glasses) are 2-D signed distances in the head-frame (X, Y) plane, so turning the head shifts and
squashes them as a real head would. The head is then translated so eyes and mouth keep FFHQ-like positions
(eyes near (0.38, 0.47) and (0.62, 0.47), mouth near (0.5, 0.72) of the crop), as FFHQ's alignment does.
Layers are composited back to front: background, shoulders, back hair, neck, ears, face, front hair, beard,
glasses. ``styles.py`` turns the resulting ``Scene`` into each domain's picture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.synth.params import PARAM_INDEX, clip_params, light_direction, lighting_sh

FAR = 10.0  # "no contour nearby", in image widths
EYE_Y, MOUTH_Y, EYE_X = 0.03, -0.22, 0.12  # FFHQ-like canonical positions
NOISE_CELLS = 20  # smooth noise fields are drawn on a 20x20 grid and upsampled: resolution independent

_SKIN = np.array([[0.98, 0.85, 0.76], [0.94, 0.77, 0.64], [0.86, 0.65, 0.50], [0.74, 0.51, 0.37],
                  [0.56, 0.37, 0.26], [0.36, 0.23, 0.16]])
_HAIR = np.array([[0.07, 0.06, 0.06], [0.20, 0.13, 0.09], [0.38, 0.24, 0.14], [0.55, 0.26, 0.12],
                  [0.72, 0.55, 0.33], [0.90, 0.78, 0.52]])
_EYES = np.array([[0.16, 0.09, 0.05], [0.33, 0.19, 0.08], [0.45, 0.36, 0.16], [0.30, 0.46, 0.26],
                  [0.30, 0.50, 0.76], [0.50, 0.56, 0.62]])
_FRAMES = np.array([[0.05, 0.05, 0.06], [0.30, 0.17, 0.08], [0.75, 0.62, 0.30], [0.70, 0.72, 0.75]])
_GREY_HAIR = np.array([0.80, 0.79, 0.77])


@dataclass
class Scene:
    """Per-pixel layers of a batch of faces; every style is computed from these alone."""

    albedo: torch.Tensor  # [B,3,H,W] flat surface colour in [0,1]
    tex: torch.Tensor  # [B,1,H,W] multiplicative texture around 1 (skin grain, hair strands, cloth)
    normal: torch.Tensor  # [B,3,H,W] unit camera-space normals
    lit: torch.Tensor  # [B,1,H,W] 1 on lit surfaces, 0 on the background
    shine: torch.Tensor  # [B,1,H,W] specular strength
    edge: torch.Tensor  # [B,1,H,W] distance to the nearest visible contour, image widths
    crease: torch.Tensor  # [B,1,H,W] wrinkle / fold line strength in [0,1]
    noise: torch.Tensor  # [B,4,H,W] smooth per-face noise, about N(0,1): 3 isotropic, 1 vertical streaks
    sh: torch.Tensor  # [B,9] lighting SH coefficients
    light: torch.Tensor  # [B,3] unit direction towards the light
    x: torch.Tensor  # [1,1,1,W] pixel x in image widths
    y: torch.Tensor  # [1,1,H,1] pixel y in image widths
    hue: torch.Tensor  # [B] the face's background hue, for styles that pick their own palette

    @property
    def size(self) -> int:
        return self.albedo.shape[-1]


class _Canvas:
    """Back-to-front compositing of albedo, normal, lit, shine and contour distance."""

    def __init__(self, background: torch.Tensor, shape: tuple[int, int, int]):
        b, h, w = shape
        self.albedo = background  # [B,3,H,W] flat colours
        self.tex = torch.ones(b, 1, h, w)  # [B,1,H,W] multiplicative texture (skin grain, hair strands)
        self.normal = torch.zeros(b, 3, h, w)
        self.normal[:, 2] = 1.0
        self.lit = torch.zeros(b, 1, h, w)
        self.shine = torch.zeros(b, 1, h, w)
        self.edge = torch.full((b, 1, h, w), FAR)

    def put(self, alpha, color, *, tex=1.0, normal=None, lit=1.0, shine=0.0, sdf=None, support=None):
        """Paint ``color`` (times ``tex``) with coverage ``alpha`` [B,1,H,W]; ``sdf`` adds its zero level as a
        contour."""
        self.albedo = torch.lerp(self.albedo, color.expand_as(self.albedo), alpha)
        self.tex = self.tex + alpha * (tex - self.tex)
        if normal is not None:
            self.normal = torch.lerp(self.normal, normal, alpha)
        self.lit = torch.lerp(self.lit, torch.full_like(self.lit, lit), alpha)
        if isinstance(shine, torch.Tensor) or shine:
            self.shine = self.shine + alpha * (shine - self.shine)
        else:
            self.shine = self.shine * (1 - alpha)
        self.edge = torch.where(alpha > 0.5, FAR, self.edge)
        if sdf is not None:
            dist = _screen_distance(sdf.expand_as(self.lit))
            line = dist if support is None else torch.where(support > 0.5, dist, FAR)
            self.edge = torch.minimum(self.edge, line)


def _screen_distance(sdf: torch.Tensor) -> torch.Tensor:
    """|sdf| divided by its per-pixel gradient length: head-frame distances become image-width distances. [B,1,H,W]"""
    px = 1.0 / sdf.shape[-1]
    dx = F.pad((sdf[..., :, 1:] - sdf[..., :, :-1]).abs(), (1, 1, 0, 0), mode="replicate")
    dy = F.pad((sdf[..., 1:, :] - sdf[..., :-1, :]).abs(), (0, 0, 1, 1), mode="replicate")
    gx = torch.maximum(dx[..., :, 1:], dx[..., :, :-1])  # one-sided differences keep |.|-shaped strokes intact
    gy = torch.maximum(dy[..., 1:, :], dy[..., :-1, :])
    grad = torch.sqrt(gx * gx + gy * gy) / px
    return sdf.abs() / grad.clamp(min=0.25)


def _t(values: np.ndarray) -> torch.Tensor:
    """Per-sample scalars [B] -> [B,1,1,1]; colours [B,3] -> [B,3,1,1]."""
    v = torch.as_tensor(np.asarray(values), dtype=torch.float32)
    return v.reshape(v.shape[0], -1, 1, 1)


def _palette(colors: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp. t [B] in [0,1] -> [B,3]"""
    pos = np.linspace(0.0, 1.0, len(colors))
    return np.stack([np.interp(t, pos, colors[:, c]) for c in range(3)], axis=1)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV in [0,1] -> RGB. [B] each -> [B,3]"""
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6.0) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def coverage(sdf: torch.Tensor, px: float) -> torch.Tensor:
    """Anti-aliased coverage of ``sdf < 0`` with a one-pixel ramp."""
    return (0.5 - sdf / px).clamp(0.0, 1.0)


def _ellipse(dx, dy, rx, ry):
    """Approximate signed distance to an axis-aligned ellipse."""
    return (torch.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) - 1.0) * torch.minimum(torch.as_tensor(rx),
                                                                                torch.as_tensor(ry))


def _round_box(dx, dy, hw, hh, r):
    """Signed distance to a rounded rectangle of half sizes (hw, hh) and corner radius r."""
    qx = dx.abs() - hw + r
    qy = dy.abs() - hh + r
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp(max=0) - r


def line_profile(d, width):
    """Smooth line profile: 1 on the curve, 0 beyond ``width``."""
    t = (1.0 - d.abs() / width).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def smoothstep(e0, e1, x):
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _noise_fields(seeds: np.ndarray, size: int) -> torch.Tensor:
    """Smooth per-face noise from each ``texture_seed``: 3 isotropic fields and 1 of vertical streaks. [B,4,S,S]"""
    iso, streak = [], []
    for seed in seeds:
        rng = np.random.default_rng(int(seed))
        iso.append(rng.standard_normal((3, NOISE_CELLS, NOISE_CELLS), dtype=np.float32))
        streak.append(rng.standard_normal((1, 6, 3 * NOISE_CELLS), dtype=np.float32))
    up = dict(size=(size, size), mode="bicubic", align_corners=False)
    fields = torch.cat([F.interpolate(torch.from_numpy(np.stack(iso)), **up),
                        F.interpolate(torch.from_numpy(np.stack(streak)), **up)], dim=1)
    return fields * torch.tensor([1.6, 1.6, 1.6, 1.8]).view(1, 4, 1, 1)  # bicubic smoothing shrinks the spread


def _rotation(yaw_deg: np.ndarray, pitch_deg: np.ndarray) -> np.ndarray:
    """Head-to-camera rotations Rx(pitch) @ Ry(yaw). [B,3,3]"""
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.zeros((len(a), 3, 3))
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 1, 1], ry[:, 2, 0], ry[:, 2, 2] = np.cos(a), np.sin(a), 1, -np.sin(a), np.cos(a)
    rx = np.zeros((len(b), 3, 3))
    rx[:, 0, 0], rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = 1, np.cos(b), np.sin(b), -np.sin(b), np.cos(b)
    return rx @ ry


def _surface_z(x, y, radii):
    """Front depth of an ellipsoid at head-frame (x, y). numpy [B]"""
    rx, ry, rz = radii
    return rz * np.sqrt(np.clip(1.0 - (x / rx) ** 2 - (y / ry) ** 2, 0.0, None))


def build_scene(params: np.ndarray, *, size: int) -> Scene:
    """Lay out every face of ``params`` [B, NUM_PARAMS] on a ``size`` x ``size`` grid."""
    p = clip_params(params)
    b = p.shape[0]
    g = {name: p[:, i] for name, i in PARAM_INDEX.items()}
    s = {name: _t(v) for name, v in g.items()}
    px = 1.0 / size
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    x, y = coords.view(1, 1, 1, size), -coords.view(1, 1, size, 1)
    noise = _noise_fields(g["texture_seed"], size)
    age01 = (s["age"] - 18.0) / 62.0
    male = s["gender"]

    # ---- head geometry (numpy per sample, then per pixel) ----
    rx = 0.232 + 0.035 * g["face_width"] + 0.022 * g["gender"]
    ry = 0.345 + 0.035 * g["face_length"]
    radii = (rx * 1.1, ry * 1.07, np.full(b, 0.30))
    rot = _rotation(g["yaw"], g["pitch"])
    anchor = np.stack([np.zeros(b), np.full(b, (EYE_Y + MOUTH_Y) / 2), np.zeros(b)], axis=1)
    anchor[:, 2] = _surface_z(anchor[:, 0], anchor[:, 1], radii) * 0.9
    moved = np.einsum("bij,bj->bi", rot, anchor)
    cx, cy = anchor[:, 0] - moved[:, 0], anchor[:, 1] - moved[:, 1]  # head centre on screen
    R = torch.as_tensor(rot, dtype=torch.float32)
    r2 = torch.as_tensor(np.stack(radii, axis=1), dtype=torch.float32).pow(2).view(b, 3, 1, 1)
    xs, ys = x - _t(cx), y - _t(cy)
    o = R[:, 0, :].view(b, 3, 1, 1) * xs + R[:, 1, :].view(b, 3, 1, 1) * ys  # [B,3,H,W] ray origins, head frame
    d = R[:, 2, :].view(b, 3, 1, 1)  # [B,3,1,1] ray direction (towards the viewer), head frame
    qa = (d * d / r2).sum(1, keepdim=True)
    qb = 2 * (o * d / r2).sum(1, keepdim=True)
    qc = (o * o / r2).sum(1, keepdim=True) - 1.0
    inside = qc - qb * qb / (4 * qa)  # [B,1,H,W] <0 inside the projected silhouette, -1 at its centre
    t_hit = (-qb + torch.sqrt((-4 * qa * inside).clamp(min=0))) / (2 * qa)
    P = o + t_hit * d  # [B,3,H,W] head-frame surface point
    X, Y, Z = P[:, 0:1], P[:, 1:2], P[:, 2:3]
    proxy_sdf = (torch.sqrt((inside + 1).clamp(min=0)) - 1) * _t(radii[0])
    proxy = coverage(proxy_sdf, px)
    n_head = P / r2  # [B,3,H,W] unnormalised ellipsoid normal, head frame

    # ---- feature layout (head frame) ----
    ex = EYE_X + 0.014 * (s["eye_spacing"] - 0.5)
    ew = 0.045 + 0.01 * s["eye_size"] - 0.003 * male
    smile = s["smile"]
    eye_open = (1.0 - 0.35 * smile - 0.12 * age01) * (0.42 + 0.1 * s["eye_size"])
    nose_tip = EYE_Y - 0.115 - 0.04 * s["nose_length"]
    nose_w = 0.025 + 0.014 * s["nose_width"] + 0.008 * male
    mouth_hw = 0.064 + 0.022 * s["mouth_width"] - 0.004 * male + 0.014 * smile
    X_abs = X.abs()
    dx_eye = X_abs - ex  # mirrored: both eyes at once

    # nose and cheeks are small height bumps h(X, Y) (image widths) that bend the normal by -grad h
    ridge_w, tip_s, cheek_s = nose_w * 0.6, nose_w * 0.9, 0.055
    ridge = 0.012 * torch.exp(-(X / ridge_w) ** 2) * smoothstep(EYE_Y + 0.02, EYE_Y - 0.03, Y) * (Y > nose_tip)
    tip_dy = Y - (nose_tip + 0.012)
    tip = 0.018 * torch.exp(-(X ** 2 + tip_dy ** 2) / tip_s ** 2)
    cheek_dx, cheek_dy = X_abs - 0.11, Y - (MOUTH_Y + 0.1 + 0.02 * smile)
    cheek = (0.004 + 0.01 * smile) * torch.exp(-(cheek_dx ** 2 + cheek_dy ** 2) / cheek_s ** 2)
    gx = -2 * X / ridge_w ** 2 * ridge - 2 * X / tip_s ** 2 * tip - 2 * cheek_dx * torch.sign(X) / cheek_s ** 2 * cheek
    gy = -2 * tip_dy / tip_s ** 2 * tip - 2 * cheek_dy / cheek_s ** 2 * cheek
    n_len = torch.sqrt((n_head * n_head).sum(1, keepdim=True))
    n_skin = n_head / n_len - torch.cat([gx, gy, torch.zeros_like(gx)], 1)
    normal = _to_camera(R, n_skin)
    n_plain = _to_camera(R, n_head)

    # ---- colours (numpy [B,3]) ----
    skin_rgb = _palette(_SKIN, g["skin_tone"])
    warm = (g["skin_warmth"] - 0.5)[:, None] * np.array([0.04, -0.01, -0.05])
    skin_rgb = np.clip(skin_rgb + warm - 0.05 * ((g["age"] - 18) / 62)[:, None] * np.array([0.2, 0.4, 0.5]), 0, 1)
    grey = np.clip((g["age"] - 38.0) / 36.0 + (g["greying"] - 0.5) * 0.5, 0.0, 1.0)[:, None] ** 1.2
    hair_rgb = _palette(_HAIR, g["hair_color"]) * (1 - grey) + _GREY_HAIR * grey
    brow_rgb = np.clip(_palette(_HAIR, g["hair_color"] * 0.75) * (1 - 0.6 * grey) + _GREY_HAIR * 0.6 * grey, 0, 1)
    skin, hair, brow = _t(skin_rgb), _t(hair_rgb), _t(brow_rgb)
    lips = torch.lerp(skin * torch.tensor([0.86, 0.56, 0.55]).view(1, 3, 1, 1),
                      torch.tensor([0.72, 0.10, 0.18]).view(1, 3, 1, 1), s["lipstick"] * 0.85)

    canvas = _Canvas(_background(g, x, y, noise), (b, size, size))
    hair_shape = _back_hair_shape(s, x, y, noise, _t(cx), _t(cy), radii)
    hair_alpha, hair_rgb_px, hair_normal, hair_sdf = hair_shape
    canvas.put(hair_alpha, hair * 0.8, tex=hair_rgb_px, normal=hair_normal, sdf=hair_sdf, support=hair_alpha,
               shine=0.25)

    # neck: a shaded cylinder below the head, its top in the jaw's shadow
    neck_x = _t(cx) * 0.6
    neck_hw = 0.088 + 0.022 * male
    ndx = x - neck_x
    neck_sdf = torch.maximum(ndx.abs() - neck_hw, y - (_t(cy) - 0.05))
    neck_shadow = 1.0 - 0.4 * smoothstep(-0.47, -0.33, y)
    nn = torch.cat([(ndx / neck_hw).clamp(-0.9, 0.9).expand_as(neck_sdf), torch.full_like(neck_sdf, -0.25),
                    torch.ones_like(neck_sdf)], 1)
    canvas.put(coverage(neck_sdf, px), skin * neck_shadow, normal=_unit(nn), sdf=neck_sdf, shine=0.05)
    _torso(canvas, g, s, x, y, px, noise, skin * 0.92, _t(cx))
    over_shoulders = smoothstep(0.0, 0.03, (x - neck_x).abs() - neck_hw) * (y < _t(cy) - 0.25)
    canvas.put(hair_alpha * over_shoulders, hair * 0.8, tex=hair_rgb_px, normal=hair_normal, sdf=hair_sdf,
               support=hair_alpha * over_shoulders, shine=0.25)

    # ears stick out of the silhouette; the one turned towards the camera shows wider
    sil_w = np.sqrt((radii[0] * np.cos(np.radians(g["yaw"]))) ** 2 + (radii[2] * np.sin(np.radians(g["yaw"]))) ** 2)
    ear_y = cy + (EYE_Y - 0.035) * np.cos(np.radians(g["pitch"]))
    for side in (-1.0, 1.0):
        facing = np.clip(-side * np.sin(np.radians(g["yaw"])) * 2.0 + 0.75, 0.2, 1.4)
        edx, edy = x - _t(cx + side * sil_w * 0.96), y - _t(ear_y)
        ear_sdf = _ellipse(edx, edy, _t(0.034 * facing), 0.062)
        ear_alpha = coverage(ear_sdf, px) * (1.0 - s["ears_covered"])
        inner = line_profile(_ellipse(edx, edy, _t(0.018 * facing), 0.04), 0.01)
        canvas.put(ear_alpha, skin * (1.0 - 0.25 * inner), normal=n_plain, sdf=ear_sdf, support=ear_alpha, shine=0.05)

    # face skin: proxy ellipsoid cut by a superellipse jaw in the head frame
    hx, hy = rx, ry
    lower = Y < 0
    p_jaw = torch.where(lower, 2.3 + 0.6 * s["jaw"] + 1.0 * male, torch.full_like(Y, 2.4))
    hy_px = torch.where(lower, _t(hy), _t(hy * 0.95))
    jaw_t = (X_abs / _t(hx)).pow(p_jaw) + (Y.abs() / hy_px).pow(p_jaw)
    skin_sdf = (jaw_t.pow(1.0 / p_jaw) - 1.0) * _t(hx)
    skin_sdf = torch.minimum(skin_sdf, torch.maximum(Z - 0.05, MOUTH_Y + 0.03 - Y))  # the head's sides
    skin_sdf = torch.maximum(skin_sdf, proxy_sdf)
    skin_alpha = coverage(skin_sdf, px)
    face_tex = 1.0 + 0.015 * noise[:, 0:1] - 0.04 * age01 * noise[:, 1:2].clamp(min=0)
    face_rgb = skin
    blush = (0.08 + 0.12 * s["blush"] * (1 - 0.6 * male)) * torch.exp(-(cheek_dx ** 2 + cheek_dy ** 2) / 0.05 ** 2)
    face_rgb = face_rgb * (1 - blush * torch.tensor([0.0, 0.35, 0.3]).view(1, 3, 1, 1))
    canvas.put(skin_alpha, face_rgb, tex=face_tex, normal=normal, sdf=skin_sdf, shine=0.12)
    on_face = skin_alpha

    eye_rgb = _t(_palette(_EYES, g["eye_color"]))
    crease = _eyes(canvas, s, X, Y, dx_eye, ex, ew, eye_open, px, on_face, skin, brow, eye_rgb, age01)
    crease = crease + _nose(canvas, X, Y, nose_tip, nose_w, px, on_face, skin, smile, age01, mouth_hw)
    crease = crease + _mouth(canvas, s, X, Y, mouth_hw, px, on_face, lips, male)
    wr = smoothstep(0.3, 0.95, age01) * on_face
    forehead = sum(line_profile(Y - (EYE_Y + 0.13 + 0.03 * k) + 0.04 * (X / 0.12) ** 2, 0.0045) for k in range(3))
    crease = crease + wr * forehead * (X_abs < 0.11) * 0.8

    _front_hair(canvas, s, X, Y, Z, X_abs, px, proxy, proxy_sdf, hair, noise, normal, hx, hy)
    _beard(canvas, s, X, Y, X_abs, px, proxy, skin_sdf, hair * 0.85, noise, normal, mouth_hw, hx)
    _glasses(canvas, s, g, X, Y, X_abs, ex, ew, px, proxy, n_plain, hx)

    light = torch.as_tensor(light_direction(g["light_azimuth"], g["light_elevation"]), dtype=torch.float32)
    return Scene(albedo=canvas.albedo.clamp(0, 1), tex=canvas.tex, normal=_unit(canvas.normal), lit=canvas.lit,
                 shine=canvas.shine, edge=canvas.edge, crease=crease.clamp(0, 1), noise=noise,
                 sh=torch.as_tensor(lighting_sh(p), dtype=torch.float32), light=light, x=x, y=y,
                 hue=torch.as_tensor(g["bg_hue"], dtype=torch.float32))


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt((v * v).sum(1, keepdim=True)).clamp(min=1e-6)


def _to_camera(R: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Rotate head-frame vectors [B,3,H,W] into camera space and normalise."""
    return _unit(torch.einsum("bij,bjhw->bihw", R, n))


def _background(g, x, y, noise) -> torch.Tensor:
    """Two-colour gradient with soft blotches. [B,3,H,W]"""
    c1 = _t(hsv_to_rgb(g["bg_hue"], g["bg_saturation"], g["bg_value"]))
    c2 = _t(hsv_to_rgb(g["bg_hue2"], g["bg_saturation"] * 0.8, np.clip(g["bg_value"] * 0.75 + 0.1, 0, 1)))
    angle = _t(g["bg_gradient"] * 2 * math.pi)
    t = (0.5 + 1.2 * (x * torch.cos(angle) + y * torch.sin(angle)) * _t(g["bg_gradient"])).clamp(0, 1)
    blot = torch.sigmoid(2.5 * noise[:, 2:3]) * _t(g["bg_blobs"]) * 0.6
    return torch.lerp(torch.lerp(c1, c2, t), c2 * 0.6 + 0.4 * c1.flip(1), blot)


def _torso(canvas, g, s, x, y, px, noise, skin, cx):
    """Shoulders in a shirt with a round or V neckline."""
    tx = cx * 0.3
    shirt = _t(hsv_to_rgb(g["shirt_hue"], g["shirt_saturation"] * 0.8, 0.15 + 0.75 * g["shirt_value"]))
    dx, dy = x - tx, y + 0.8
    wx = 0.44 + 0.06 * s["gender"]
    body = _ellipse(dx, dy, wx, 0.42)
    nrm = _unit(torch.cat([(dx / wx).clamp(-0.95, 0.95).expand_as(body), (dy / 0.42).clamp(-0.3, 0.95).expand_as(body),
                           torch.full_like(body, 0.8)], 1))
    canvas.put(coverage(body, px), shirt, tex=1.0 + 0.06 * noise[:, 3:4], normal=nrm, sdf=body, shine=0.03)
    cut_round = _ellipse(dx, y + 0.38, 0.085, 0.07)
    cut_v = (dx.abs() * 1.3 - (y + 0.5)) * 0.6
    cut_sdf = torch.maximum(torch.where(s["neckline"] > 0.5, cut_v, cut_round), body)
    canvas.put(coverage(cut_sdf, px), skin, normal=nrm, sdf=cut_sdf, shine=0.03)


def _back_hair_shape(s, x, y, noise, cx, cy, radii):
    """Hair volume behind the head: a dome around the skull plus a curtain whose length is ``hair_length``.

    Returns coverage, texture shading, normals and the outline's signed distance.
    """
    vol, length, curl, bald = s["hair_volume"], s["hair_length"], s["hair_curl"], s["baldness"]
    hx = _t(radii[0]) + 0.012 + 0.07 * vol
    hy = _t(radii[1]) + 0.01 + 0.06 * vol
    dx, dy = x - cx, y - cy - 0.02
    dome = _ellipse(dx, dy, hx, hy)
    dome = torch.maximum(dome, dy - hy * (1.0 - 0.85 * bald * bald))  # baldness removes the top
    bottom = -0.12 - 0.5 * length
    curtain_hw = hx * (0.95 + 0.1 * length) + 0.05 * length * (-dy).clamp(min=0)
    curtain = _round_box(dx, dy - bottom / 2, curtain_hw, (-bottom / 2) + 0.01, 0.06)
    shape = torch.minimum(dome, torch.maximum(curtain, dy))
    theta = torch.atan2(dy, dx)
    shape = shape + curl * 0.018 * torch.sin(theta * 22.0 + 3.0 * noise[:, 1:2]) + 0.006 * noise[:, 0:1]
    alpha = coverage(shape, 1.0 / x.shape[-1])
    shade = 0.9 + 0.15 * torch.tanh(torch.lerp(noise[:, 3:4], noise[:, 1:2] * 1.6, curl))
    nrm = _unit(torch.cat([(dx / hx).clamp(-0.9, 0.9).expand_as(shape), (dy / hy).clamp(-0.9, 0.9).expand_as(shape),
                           torch.full_like(shape, 0.6)], 1))
    return alpha, shade, nrm, shape


def _eyes(canvas, s, X, Y, dx_eye, ex, ew, eye_open, px, on_face, skin, brow, eye_rgb, age01):
    """Eye whites, irises, lids and brows (both sides at once via |X|); returns wrinkle creases."""
    eh = ew * eye_open
    u = (dx_eye / ew).clamp(-1, 1)
    top = EYE_Y + eh * (1 - u * u) + 0.004 * u
    low = EYE_Y - 0.75 * eh * (1 - u * u)
    eye_sdf = torch.maximum(torch.maximum(dx_eye.abs() - ew, Y - top), low - Y)
    eye_alpha = coverage(eye_sdf, px) * on_face
    canvas.put(eye_alpha, torch.tensor([0.93, 0.91, 0.88]).view(1, 3, 1, 1), sdf=eye_sdf, support=on_face,
               shine=0.3)
    iris_r = ew * 0.5
    iris = torch.sqrt(dx_eye ** 2 + (Y - EYE_Y - 0.1 * eh) ** 2)
    iris_alpha = coverage(iris - iris_r, px) * eye_alpha
    ring = 1.0 - 0.5 * smoothstep(iris_r * 0.55, iris_r, iris)
    pupil = coverage(iris - iris_r * 0.42, px)
    canvas.put(iris_alpha, eye_rgb * ring * (1 - pupil) + 0.03 * pupil, shine=0.8)
    # upper lid and lashes: a dark band along the top curve, longer and bolder on female faces
    female = 1.0 - s["gender"]
    lash_w = 0.006 + 0.004 * female
    lash = line_profile(Y - top - lash_w * 0.5, lash_w) * (dx_eye.abs() < ew * (1.0 + 0.15 * female))
    canvas.put(lash * on_face, torch.tensor([0.08, 0.05, 0.05]).view(1, 3, 1, 1) * 0.5 + skin * 0.1)
    lid_crease = line_profile(Y - top - 0.022 - 0.004 * (1 - u * u), 0.004) * (dx_eye.abs() < ew * 0.9)
    # brows: curved tapered bars
    bh = EYE_Y + 0.06 + 0.018 * s["brow_height"] - 0.01 * s["gender"] + 0.008 * s["smile"]
    bw = 0.056
    bdx = dx_eye + 0.006
    v = (bdx / bw).clamp(-1, 1)
    arch = (0.006 + 0.02 * s["brow_arch"] * (1 - 0.5 * s["gender"])) * (1 - (v - 0.25) ** 2)
    thick = (0.005 + 0.007 * s["brow_thickness"] + 0.007 * s["gender"]) * (1.0 - 0.45 * v.clamp(min=0))
    brow_sdf = torch.maximum((Y - bh - arch).abs() - thick, bdx.abs() - bw)
    brow_alpha = coverage(brow_sdf, px) * on_face * (0.92 - 0.25 * age01)
    canvas.put(brow_alpha, brow, sdf=brow_sdf, support=on_face)
    # age: bags under the eyes and crow's feet
    bags = line_profile(Y - (low - 0.014) + 0.01 * u * u, 0.004) * (dx_eye.abs() < ew * 0.8)
    crow = line_profile((Y - EYE_Y) - 0.5 * (dx_eye - ew - 0.012), 0.004) * ((dx_eye - ew - 0.018).abs() < 0.012)
    crow = crow + line_profile((Y - EYE_Y) + 0.5 * (dx_eye - ew - 0.012), 0.004) * ((dx_eye - ew - 0.018).abs() < 0.012)
    aged = smoothstep(0.25, 0.9, age01)
    return on_face * (0.5 * lid_crease + aged * (0.8 * bags + 0.8 * crow)) + pupil * iris_alpha


def _nose(canvas, X, Y, tip, nose_w, px, on_face, skin, smile, age01, mouth_hw):
    """Nostrils and the folds from the nose wings to the mouth corners (creases)."""
    X_abs = X.abs()
    nostril = _ellipse(X_abs - nose_w * 0.55, Y - tip + 0.003, nose_w * 0.4, 0.0075)
    canvas.put(coverage(nostril, px) * on_face * 0.85, skin * 0.35)
    wing_dist = torch.sqrt((X_abs - nose_w * 0.75) ** 2 + ((Y - tip - 0.008) * 1.3) ** 2)
    wing = line_profile(wing_dist - nose_w * 0.45, 0.004)
    wing = wing * (Y < tip + 0.012) * (X_abs > nose_w * 0.6)
    fold_t = ((tip - 0.005 - Y) / 0.1).clamp(0, 1)
    fold_x = nose_w + 0.015 + (mouth_hw - nose_w + 0.002) * fold_t
    fold = line_profile(X_abs - fold_x, 0.005) * (Y < tip - 0.005) * (Y > MOUTH_Y - 0.02)
    return on_face * (0.7 * wing + (0.5 * smile + 0.6 * smoothstep(0.2, 0.8, age01)) * fold)


def _mouth(canvas, s, X, Y, hw, px, on_face, lips, male):
    """Lips whose corners rise with ``smile``; a broad smile opens the mouth and shows teeth."""
    smile = s["smile"]
    u = (X / hw).clamp(-1, 1)
    line = MOUTH_Y + (0.03 * smile - 0.004) * u * u
    opening = (0.034 * ((smile - 0.45) / 0.55).clamp(min=0)) * (1 - u * u)
    upper_t = (0.011 + 0.006 * (1 - male) + 0.008 * s["lip_fullness"]) * (1 - 0.35 * smile)
    lower_t = (0.014 + 0.008 * (1 - male) + 0.01 * s["lip_fullness"]) * (1 - 0.3 * smile)
    bow = 1.0 - 0.35 * torch.exp(-(X / (hw * 0.15)) ** 2)
    upper = line + upper_t * (1 - u.abs() ** 1.6) ** 0.6 * bow
    lower = line - opening - lower_t * (1 - u * u) ** 0.5
    mouth_sdf = torch.maximum(torch.maximum(X.abs() - hw, Y - upper), lower - Y)
    canvas.put(coverage(mouth_sdf, px) * on_face, lips, sdf=mouth_sdf, support=on_face, shine=0.35)
    inner_sdf = torch.maximum(torch.maximum(X.abs() - hw * 0.92, Y - line), line - opening - Y)
    inner_alpha = coverage(inner_sdf, px * 0.7) * on_face * (opening > 0.002)
    teeth = (Y > line - opening * 0.6).float()
    inner_rgb = torch.lerp(torch.tensor([0.25, 0.05, 0.06]).view(1, 3, 1, 1),
                           torch.tensor([0.93, 0.91, 0.85]).view(1, 3, 1, 1), teeth)
    canvas.put(inner_alpha, inner_rgb, sdf=inner_sdf, support=inner_alpha)
    lip_line = line_profile(Y - line, 0.005) * (X.abs() < hw * 0.98)
    return on_face * 0.9 * lip_line


def _front_hair(canvas, s, X, Y, Z, X_abs, px, proxy, proxy_sdf, hair, noise, normal, hx, hy):
    """Hair on the skull: above a hairline (lowered by bangs, raised by baldness) and along the temples."""
    bald, bangs, part, length = s["baldness"], s["bangs"], s["hair_part"], s["hair_length"]
    hairline = EYE_Y + 0.18 + 0.035 * (X / 0.14) ** 2 - 0.02 * (X * part * 8).clamp(-1, 1)
    hairline = torch.lerp(hairline, EYE_Y + 0.095 + 0.012 * torch.sin(X * 70 + 3 * part), bangs)
    hairline = hairline + bald * (0.1 + 0.15 * (X_abs / 0.12)) + 0.3 * smoothstep(0.5, 1.0, bald)
    top = Y - hairline  # > 0 is hair
    side_x = _t(hx) * (0.9 + 0.03 * bald)
    side = torch.minimum(X_abs - side_x, (EYE_Y + 0.22 - 0.1 * bald) - Y)
    side = torch.minimum(side, Y - (EYE_Y + 0.01 - 0.05 * length * (1 - bald)))
    back = torch.minimum(torch.minimum(0.01 - Z, Y - (EYE_Y - 0.02)), 0.05 * (0.6 - bald))
    hair_sdf = -torch.maximum(torch.maximum(top, side), back)
    hair_sdf = hair_sdf + 0.004 * noise[:, 0:1] * (1 + 2 * s["hair_curl"])
    alpha = coverage(hair_sdf, px) * coverage(proxy_sdf - 1.5 * px, px)  # just past the rim: hides the skin contour
    tex = 1.0 + 0.16 * torch.tanh(torch.lerp(noise[:, 3:4], 1.6 * noise[:, 1:2], s["hair_curl"]))
    canvas.put(alpha, hair, tex=tex, normal=normal, sdf=hair_sdf, support=proxy, shine=0.3)


def _beard(canvas, s, X, Y, X_abs, px, proxy, skin_sdf, color, noise, normal, mouth_hw, hx):
    """Beard: stubble tint at low values, a full beard reaching past the chin at high values."""
    amount = s["beard"]
    rise = smoothstep(0.06, _t(hx) * 0.95, X_abs)
    beard_top = MOUTH_Y + 0.045 + (EYE_Y - 0.05 - MOUTH_Y - 0.045) * rise
    region = torch.maximum(Y - beard_top, skin_sdf - 0.035 * amount * (Y < MOUTH_Y - 0.03))
    region = region + 0.006 * noise[:, 1:2] * amount
    lips_gap = _ellipse(X, Y - (MOUTH_Y - 0.002), mouth_hw * 0.95, 0.018 + 0.01 * s["smile"])
    region = torch.maximum(region, -lips_gap)
    density = smoothstep(0.0, 0.45, amount) * (0.45 + 0.55 * smoothstep(0.3, 0.75, amount))
    alpha = coverage(region, px) * proxy * density
    tex = 1.0 + 0.2 * torch.tanh(noise[:, 1:2] * 1.5)
    canvas.put(alpha, color, tex=tex, normal=normal, sdf=region, support=alpha * (amount > 0.3), shine=0.1)


def _glasses(canvas, s, g, X, Y, X_abs, ex, ew, px, proxy, normal, hx):
    """Round-to-rectangular rims, bridge, temples and lenses (tinted for sunglasses)."""
    on = s["glasses"] * proxy
    gw = ew + 0.022
    gh = 0.038 + 0.006 * s["glasses_shape"]
    r = torch.lerp(gh, torch.full_like(gh, 0.012), s["glasses_shape"])
    dx, dy = X_abs - ex, Y - (EYE_Y - 0.004)
    lens = _round_box(dx, dy, gw, gh, r)
    rim_t = 0.0085
    bridge = torch.maximum((Y - EYE_Y - 0.012).abs() - rim_t * 0.8, X_abs - (ex - gw + 0.004))
    temple = torch.maximum((Y - EYE_Y - 0.012).abs() - rim_t * 0.7, -(X_abs - ex - gw + 0.002))
    frame_sdf = torch.minimum(torch.minimum(lens.abs() - rim_t, bridge), temple)
    tint = 0.12 + 0.8 * s["lens_tint"] ** 2
    canvas.put(coverage(lens, px) * on * tint, torch.tensor([0.1, 0.1, 0.12]).view(1, 3, 1, 1), shine=0.9)
    frame_rgb = _t(_palette(_FRAMES, g["glasses_color"]))
    frame_stroke = torch.minimum(torch.minimum(lens.abs(), bridge + rim_t * 0.8), temple + rim_t * 0.7)
    canvas.put(coverage(frame_sdf, px) * on, frame_rgb, normal=normal, sdf=frame_stroke, support=on, shine=0.6)
