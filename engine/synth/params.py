"""The synthetic face's parameter vector, its seeded sampler and the StyleFlow-style attributes it implies.

A face is one float vector of ``len(PARAM_NAMES)`` entries (named below, ranges in ``PARAM_RANGES``). The first
twelve entries are the attributes and the lighting; the rest is identity (shape, colours, hair, clothes,
background) and ``texture_seed``, the integer seed of the face's smooth noise fields, so the vector alone
determines the picture.

Sample ``i`` of dataset seed ``s`` is drawn from ``numpy.random.default_rng(SeedSequence([s, i]))``: any
sample can be regenerated alone and batches do not depend on the batch size. There is no global RNG.

Attribute units follow StyleFlow: gender 0 female .. 1 male, glasses 0/1, yaw and pitch in degrees (positive
yaw turns the face towards the image's right, positive pitch looks up), baldness, beard and smile 0..1, age in
years. Lighting is an ambient term plus one distant light; ``sh_coefficients`` gives its 9 order-2 real
spherical-harmonic coefficients (DC first, then y, z, x, xy, yz, 3z^2-1, xz, x^2-y^2) in camera space: x to
the image's right, y up, z towards the viewer.
"""
from __future__ import annotations

import math

import numpy as np

PARAM_RANGES: dict[str, tuple[float, float]] = {
    # attributes (StyleFlow units)
    "gender": (0.0, 1.0), "glasses": (0.0, 1.0), "yaw": (-30.0, 30.0), "pitch": (-20.0, 20.0),
    "baldness": (0.0, 1.0), "beard": (0.0, 1.0), "age": (18.0, 80.0), "smile": (0.0, 1.0),
    # lighting: direction in degrees (azimuth > 0 lights from the image's right, elevation > 0 from above)
    "light_azimuth": (-90.0, 90.0), "light_elevation": (-30.0, 75.0),
    "light_intensity": (0.0, 1.2), "ambient": (0.15, 1.0),
    # identity
    "face_width": (0.0, 1.0), "face_length": (0.0, 1.0), "jaw": (0.0, 1.0),
    "skin_tone": (0.0, 1.0), "skin_warmth": (0.0, 1.0), "blush": (0.0, 1.0),
    "hair_color": (0.0, 1.0), "hair_length": (0.0, 1.0), "hair_volume": (0.0, 1.0), "hair_curl": (0.0, 1.0),
    "hair_part": (-1.0, 1.0), "bangs": (0.0, 1.0), "ears_covered": (0.0, 1.0), "greying": (0.0, 1.0),
    "eye_color": (0.0, 1.0), "eye_size": (0.0, 1.0), "eye_spacing": (0.0, 1.0),
    "brow_thickness": (0.0, 1.0), "brow_arch": (0.0, 1.0), "brow_height": (0.0, 1.0),
    "nose_length": (0.0, 1.0), "nose_width": (0.0, 1.0),
    "mouth_width": (0.0, 1.0), "lip_fullness": (0.0, 1.0), "lipstick": (0.0, 1.0),
    "glasses_shape": (0.0, 1.0), "glasses_color": (0.0, 1.0), "lens_tint": (0.0, 1.0),
    "bg_hue": (0.0, 1.0), "bg_saturation": (0.0, 1.0), "bg_value": (0.0, 1.0), "bg_hue2": (0.0, 1.0),
    "bg_gradient": (0.0, 1.0), "bg_blobs": (0.0, 1.0),
    "shirt_hue": (0.0, 1.0), "shirt_saturation": (0.0, 1.0), "shirt_value": (0.0, 1.0), "neckline": (0.0, 1.0),
    "texture_seed": (0.0, float(2**24 - 1)),
}
PARAM_NAMES: tuple[str, ...] = tuple(PARAM_RANGES)
PARAM_INDEX: dict[str, int] = {name: i for i, name in enumerate(PARAM_NAMES)}
NUM_PARAMS = len(PARAM_NAMES)

ATTRIBUTE_NAMES: tuple[str, ...] = ("gender", "glasses", "yaw", "pitch", "baldness", "beard", "age", "smile")
SH_NAMES: tuple[str, ...] = tuple(f"sh{i}" for i in range(9))
CONDITION_NAMES: tuple[str, ...] = ATTRIBUTE_NAMES + SH_NAMES  # StyleFlow's 8 attributes + 9 lighting

_LOW = np.array([r[0] for r in PARAM_RANGES.values()])
_HIGH = np.array([r[1] for r in PARAM_RANGES.values()])


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of dataset seed ``seed``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and sample index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def sample_params(n: int, *, seed: int, start_index: int = 0) -> np.ndarray:
    """Parameter vectors of samples ``start_index .. start_index+n-1`` of dataset ``seed``. [n, NUM_PARAMS]"""
    if n < 0:
        raise ValueError(f"the number of samples must be non-negative, got {n}")
    return np.stack([draw_params(sample_rng(seed, start_index + i)) for i in range(n)]).reshape(n, NUM_PARAMS)


def draw_params(rng: np.random.Generator) -> np.ndarray:
    """One face drawn from ``rng`` with realistic correlations. [NUM_PARAMS] float64"""
    p = dict.fromkeys(PARAM_NAMES, 0.5)
    male = rng.random() < 0.5
    p["gender"] = 0.75 + 0.25 * rng.beta(2, 1.5) if male else 0.25 * rng.beta(1.5, 2)
    age = 18.0 + 62.0 * rng.beta(1.3, 2.8)
    age01 = (age - 18.0) / 62.0
    p["age"] = age
    p["glasses"] = float(rng.random() < 0.12 + 0.3 * age01)
    p["yaw"] = float(np.clip(rng.normal(0.0, 13.0), -30, 30))
    p["pitch"] = float(np.clip(rng.normal(0.0, 7.0), -20, 20))
    p["smile"] = rng.uniform(0.0, 0.15) if rng.random() < 0.35 else rng.uniform(0.15, 1.0)
    if male:
        p["baldness"] = float(np.clip(rng.beta(0.7, 2.2) * (0.3 + 1.3 * age01) - 0.05, 0.0, 1.0))
        p["beard"] = rng.uniform(0.2, 1.0) if rng.random() < 0.4 else rng.uniform(0.0, 0.12) * (rng.random() < 0.5)
    else:
        p["baldness"] = 0.0
        p["beard"] = 0.0
    p["light_azimuth"] = rng.uniform(-75.0, 75.0)
    p["light_elevation"] = rng.uniform(-10.0, 60.0)
    p["light_intensity"] = rng.uniform(0.3, 0.9)
    p["ambient"] = rng.uniform(0.45, 0.75)

    for name in ("face_width", "face_length", "jaw", "skin_warmth", "blush", "eye_size", "eye_spacing",
                 "brow_thickness", "brow_arch", "brow_height", "nose_length", "nose_width", "mouth_width",
                 "lip_fullness", "glasses_shape", "glasses_color", "bg_hue", "bg_hue2", "bg_gradient",
                 "bg_blobs", "shirt_hue", "shirt_saturation", "shirt_value", "neckline", "greying"):
        p[name] = rng.random()
    p["skin_tone"] = rng.beta(1.1, 1.4)
    p["hair_color"] = np.clip(rng.beta(1.2, 1.6) * (1.15 - 0.9 * p["skin_tone"]), 0, 1)
    p["eye_color"] = rng.random() * (1.0 - 0.85 * p["skin_tone"]) ** 1.5
    p["lens_tint"] = rng.uniform(0.6, 1.0) if rng.random() < 0.12 else rng.uniform(0.0, 0.2)
    p["lipstick"] = rng.random() * (rng.random() < 0.5) if not male else 0.0
    p["bg_saturation"] = rng.beta(1.5, 2.5)
    p["bg_value"] = rng.uniform(0.25, 0.95)
    _draw_hair_style(rng, p, male)
    p["texture_seed"] = float(rng.integers(0, 2**24))
    return np.array([p[name] for name in PARAM_NAMES], dtype=np.float64)


def _draw_hair_style(rng: np.random.Generator, p: dict, male: bool) -> None:
    """Hair style as coherent continuous settings: short, medium, bob, long or curly."""
    weights = [0.45, 0.3, 0.05, 0.08, 0.12] if male else [0.05, 0.12, 0.25, 0.43, 0.15]
    style = rng.choice(5, p=weights)
    length = [(0.0, 0.12), (0.15, 0.35), (0.35, 0.55), (0.6, 1.0), (0.25, 0.75)][style]
    volume = [(0.0, 0.3), (0.2, 0.5), (0.3, 0.6), (0.2, 0.5), (0.7, 1.0)][style]
    curl = [(0.0, 0.4), (0.0, 0.5), (0.0, 0.3), (0.0, 0.4), (0.7, 1.0)][style]
    p["hair_length"] = rng.uniform(*length)
    p["hair_volume"] = rng.uniform(*volume)
    p["hair_curl"] = rng.uniform(*curl)
    p["hair_part"] = rng.uniform(-1.0, 1.0)
    p["bangs"] = rng.uniform(0.5, 1.0) if rng.random() < (0.15 if male else 0.35) else rng.uniform(0.0, 0.3)
    p["ears_covered"] = float(style in (2, 3, 4) and rng.random() < 0.7)


def clip_params(params: np.ndarray) -> np.ndarray:
    """Parameter vectors clipped into ``PARAM_RANGES``; the glasses flag is rounded to 0/1. [B, NUM_PARAMS]"""
    params = np.asarray(params, dtype=np.float64)
    if params.ndim != 2 or params.shape[1] != NUM_PARAMS:
        raise ValueError(f"parameter vectors must have shape [B, {NUM_PARAMS}], got {list(params.shape)}")
    if not np.isfinite(params).all():
        raise ValueError("parameter vectors contain NaN or infinite values")
    out = np.clip(params, _LOW, _HIGH)
    out[:, PARAM_INDEX["glasses"]] = np.round(out[:, PARAM_INDEX["glasses"]])
    return out


def with_params(params: np.ndarray, **values: float) -> np.ndarray:
    """A copy of ``params`` [B, NUM_PARAMS] (or [NUM_PARAMS]) with the named entries replaced."""
    out = np.array(params, dtype=np.float64, copy=True)
    for name, value in values.items():
        if name not in PARAM_INDEX:
            raise ValueError(f"unknown face parameter {name!r}; known: {', '.join(PARAM_NAMES)}")
        out[..., PARAM_INDEX[name]] = value
    return out


def light_direction(azimuth_deg, elevation_deg) -> np.ndarray:
    """Unit vector towards the light in camera space (x right, y up, z to the viewer). [..., 3]"""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], axis=-1)


def sh_basis(direction: np.ndarray) -> np.ndarray:
    """The 9 order-2 real SH basis functions at unit directions. [..., 3] -> [..., 9]"""
    x, y, z = direction[..., 0], direction[..., 1], direction[..., 2]
    return np.stack([
        np.full_like(x, 0.282095), 0.488603 * y, 0.488603 * z, 0.488603 * x,
        1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z,
        0.546274 * (x * x - y * y),
    ], axis=-1)


def sh_coefficients(azimuth_deg, elevation_deg, *, intensity, ambient) -> np.ndarray:
    """SH coefficients of radiance ``ambient + pi * intensity * delta(light direction)``. [..., 9]

    With this scaling the irradiance / pi of a unit normal n is about ``ambient + intensity * max(n . l, 0)``.
    """
    coeffs = math.pi * np.asarray(intensity, dtype=np.float64)[..., None] * sh_basis(
        light_direction(azimuth_deg, elevation_deg))
    coeffs[..., 0] += 2.0 * math.sqrt(math.pi) * np.asarray(ambient, dtype=np.float64)
    return coeffs


def lighting_sh(params: np.ndarray) -> np.ndarray:
    """The 9 lighting SH coefficients of each face. [B, NUM_PARAMS] -> [B, 9]"""
    params = clip_params(params)
    col = lambda name: params[:, PARAM_INDEX[name]]  # noqa: E731
    return sh_coefficients(col("light_azimuth"), col("light_elevation"),
                           intensity=col("light_intensity"), ambient=col("ambient"))


def attributes(params: np.ndarray) -> np.ndarray:
    """StyleFlow's condition per face: the 8 ``ATTRIBUTE_NAMES`` then the 9 SH coefficients. [B, 17] float32"""
    params = clip_params(params)
    attrs = params[:, [PARAM_INDEX[name] for name in ATTRIBUTE_NAMES]]
    return np.concatenate([attrs, lighting_sh(params)], axis=1).astype(np.float32)
