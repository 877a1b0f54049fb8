"""Alignment transforms: the FFHQ and synthetic recipes, exact crops, align/paste-back round trips, untouched
pixels outside the quad, faces reaching outside the photo, and the stored form."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import DetectorUnavailable
from engine.photos.align import (
    SYNTHETIC_SCALE,
    SYNTHETIC_SHIFT,
    AlignTransform,
    align_image,
    box_transform,
    derive_synthetic_recipe,
    face_transform,
    paste_back,
    whole_image_transform,
)
from engine.photos.faces import Face, detect_faces, mtcnn


def _needs_mtcnn():
    try:
        mtcnn.weight_files()
    except DetectorUnavailable as exc:
        pytest.skip(f"MTCNN weights missing ({exc}); run scripts/setup.sh")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _smooth(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 100 * np.sin(x / 23.0) * np.cos(y / 31.0)
    g = 127.5 + 100 * np.cos((x + y) / 40.0)
    b = 40 + 180 * x / w
    return np.stack([r, g, b], -1).round().astype(np.uint8)


def _face(eyes, mouth) -> Face:
    eyes, mouth = np.asarray(eyes, float), np.asarray(mouth, float)
    return Face((0, 0, 1, 1), 1.0, np.stack([eyes[0], eyes[1], (eyes.mean(0) + mouth.mean(0)) / 2, *mouth]))


def _rotate(points, degrees, centre):
    a = math.radians(degrees)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (np.asarray(points, float) - centre) @ r.T + centre


def _inside(transform: AlignTransform, height: int, width: int) -> np.ndarray:
    """[H, W] bool: pixel centres inside the quad, computed from the matrix."""
    px, py = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    m = transform.matrix()
    u = m[0, 0] * px + m[0, 1] * py + m[0, 2]
    v = m[1, 0] * px + m[1, 1] * py + m[1, 2]
    s = transform.size
    return (u > 0) & (u < s) & (v > 0) & (v < s)


def test_ffhq_recipe_by_hand():
    t = face_transform(_face([[40, 50], [60, 50]], [[42, 70], [58, 70]]), size=256)
    # eye_to_eye (20, 0), eye_to_mouth (0, 20): x = (40, 0) scaled to max(40, 36); centre (50, 52)
    np.testing.assert_allclose(t.quad, [[10, 12], [10, 92], [90, 92], [90, 12]], atol=1e-9)
    assert t.size == 256


def test_matrix_maps_corners():
    t = face_transform(_face(_rotate([[40, 50], [60, 50]], 30, (50, 60)), _rotate([[42, 70], [58, 70]], 30, (50, 60))),
                       size=100)
    corners = np.c_[np.array(t.quad), np.ones(4)] @ t.matrix().T
    np.testing.assert_allclose(corners[:, :2], [[0, 0], [0, 100], [100, 100], [100, 0]], atol=1e-9)
    np.testing.assert_allclose(corners[:, 2], 1.0)


def test_rotated_face_gives_rotated_quad():
    eyes, mouth, centre = [[40, 50], [60, 50]], [[42, 70], [58, 70]], np.array([47.0, 61.0])
    upright = np.array(face_transform(_face(eyes, mouth), size=64).quad)
    for degrees in (25.0, -70.0, 180.0):
        turned = face_transform(_face(_rotate(eyes, degrees, centre), _rotate(mouth, degrees, centre)), size=64)
        np.testing.assert_allclose(turned.quad, _rotate(upright, degrees, centre), atol=1e-9)


def test_68_points_take_precedence():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 5, (68, 2))
    points[36:42] += [40, 50]
    points[42:48] += [60, 50]
    points[48], points[54] = [42, 70], [58, 70]
    face = Face((0, 0, 1, 1), 1.0, np.zeros((5, 2)) + [[0, 0], [1, 0], [0, 1], [0, 2], [1, 2]], points68=points)
    expected = face_transform(_face([points[36:42].mean(0), points[42:48].mean(0)], [points[48], points[54]]), size=8)
    np.testing.assert_allclose(face_transform(face, size=8).quad, expected.quad)


def test_synthetic_recipe_is_the_scaled_and_shifted_ffhq_square():
    face = _face(_rotate([[40, 50], [60, 50]], 15, (50, 60)), _rotate([[42, 70], [58, 70]], 15, (50, 60)))
    f = np.array(face_transform(face, size=64).quad)
    s = np.array(face_transform(face, size=64, recipe="synthetic").quad)
    fc, sc = f.mean(0), s.mean(0)
    x, y = (f[3] - f[0]) / 2, (f[1] - f[0]) / 2  # FFHQ half-side vectors
    np.testing.assert_allclose(s - sc, (f - fc) * SYNTHETIC_SCALE, atol=1e-9)
    np.testing.assert_allclose(sc, fc + SYNTHETIC_SHIFT[0] * x + SYNTHETIC_SHIFT[1] * y, atol=1e-9)
    with pytest.raises(ValueError, match="unknown alignment recipe 'stylegan'"):
        face_transform(face, size=64, recipe="stylegan")


def test_round_trip_through_dict_and_json():
    t = face_transform(_face(_rotate([[40, 50], [60, 50]], 12, (0, 0)), _rotate([[42, 70], [58, 70]], 12, (0, 0))),
                       size=1024)
    d = json.loads(json.dumps(t.to_dict()))
    assert AlignTransform.from_dict(d) == t
    np.testing.assert_array_equal(AlignTransform.from_dict(d).matrix(), t.matrix())


@pytest.mark.parametrize("d, message", [
    ({"quad": [[0, 0], [0, 1], [1, 1], [1, 0]]}, "size is missing"),
    ({"quad": [[0, 0], [0, 1], [1, 1], [1, 0]], "size": 8, "angle": 3}, "unknown fields angle"),
    ({"quad": [[0, 0], [0, 1], [1, 1]], "size": 8}, "4 finite"),
    ({"quad": [[0, 0], [0, 1], [1, 1], [1, "0"]], "size": 8}, r"quad\[3\]\[1\] must be a number, got '0'"),
    ({"quad": [[0, 0], [0, 1], [1, 1], [1, float("nan")]], "size": 8}, "finite"),
    ({"quad": [[0, 0], [0, 1], [2, 1], [1, 0]], "size": 8}, "not a parallelogram"),
    ({"quad": [[0, 0], [1, 1], [2, 2], [1, 1]], "size": 8}, "degenerate"),
    ({"quad": [[0, 0], [0, 1], [1, 1], [1, 0]], "size": 0}, "positive integer"),
    ({"quad": [[0, 0], [0, 1], [1, 1], [1, 0]], "size": 2.5}, "size must be a whole number, got 2.5"),
    ({"quad": [[0, 0], [0, 1], [1, 1], [1, 0]], "size": "64"}, "size must be a whole number, got '64'"),
    ([1, 2], "expected a dictionary, got a list"),
])
def test_from_dict_rejects_bad_input(d, message):
    with pytest.raises(ValueError, match=message):
        AlignTransform.from_dict(d)


def test_whole_image_and_box_crops_are_exact():
    photo = _smooth(200, 300)
    t = whole_image_transform(300, 200, size=200)
    np.testing.assert_allclose(t.quad, [[50, 0], [50, 200], [250, 200], [250, 0]])
    np.testing.assert_array_equal(align_image(photo, t), photo[:, 50:250])  # 1:1 at pixel centres: exact
    b = box_transform((20, 30, 84, 94), size=64)
    np.testing.assert_array_equal(align_image(photo, b), photo[30:94, 20:84])
    with pytest.raises(ValueError, match="must be square"):
        box_transform((0, 0, 64, 80), size=64)
    with pytest.raises(ValueError, match="x1 > x0"):
        box_transform((10, 0, 10, 5), size=64)


def test_align_then_paste_back_round_trip():
    photo = _smooth(180, 240)
    centre = np.array([120.0, 90.0])
    quad = _rotate([[88, 58], [88, 122], [152, 122], [152, 58]], 20.0, centre)  # side 64, turned 20 degrees
    t = AlignTransform(tuple(map(tuple, quad)), 64)  # 1:1 scale
    back = paste_back(photo, align_image(photo, t), t, feather=0.0)
    inside = _inside(t, *photo.shape[:2])
    err = np.abs(back.astype(int) - photo.astype(int))[inside]
    assert err.mean() < 1.0 and inside.sum() > 0.9 * 64 * 64  # about 0.05 levels
    np.testing.assert_array_equal(back[~inside], photo[~inside])


@pytest.mark.parametrize("feather", [0.0, 0.08, 0.3])
def test_paste_back_leaves_the_outside_untouched(feather):
    photo = _smooth(120, 160)
    t = AlignTransform(tuple(map(tuple, _rotate([[50, 30], [50, 90], [110, 90], [110, 30]], -35, (80, 60)))), 32)
    face = np.zeros((256, 256, 3), np.uint8)  # any side: resampled
    face[..., 1] = 255
    out = paste_back(photo, face, t, feather=feather)
    assert out.shape == photo.shape and out.dtype == np.uint8 and out is not photo
    inside = _inside(t, 120, 160)
    np.testing.assert_array_equal(out[~inside], photo[~inside])
    centre = out[55:65, 75:85].astype(int)
    assert (np.abs(centre - (0, 255, 0)) <= 1).all()  # the middle of the quad is the face
    if feather == 0:
        assert (np.abs(out[inside].astype(int) - (0, 255, 0)) <= 1).all()
    else:  # pixels just inside the border keep most of the photo
        m = t.matrix()
        px, py = np.meshgrid(np.arange(160) + 0.5, np.arange(120) + 0.5)
        u = (m[0, 0] * px + m[0, 1] * py + m[0, 2]) / t.size
        v = (m[1, 0] * px + m[1, 1] * py + m[1, 2]) / t.size
        rim = inside & (np.minimum(np.minimum(u, 1 - u), np.minimum(v, 1 - v)) < feather * 0.2)
        change = np.abs(out.astype(int) - photo.astype(int)).max(-1)
        assert rim.any() and change[rim].max() < np.abs(photo[rim].astype(int) - (0, 255, 0)).max(-1).max() * 0.2


def test_partly_outside_the_photo():
    photo = _smooth(100, 120)
    t = box_transform((-30, -20, 50, 60), size=80)  # reaches 30 px left of and 20 px above the photo
    aligned = align_image(photo, t)
    assert aligned.shape == (80, 80, 3)
    np.testing.assert_array_equal(aligned[20:, 30:], photo[:60, :50])  # the part inside the photo
    np.testing.assert_array_equal(aligned[20:, :30], photo[:60, :30][:, ::-1])  # mirrored at the left edge
    np.testing.assert_array_equal(aligned[:20, 30:], photo[:20, :50][::-1])  # and at the top edge
    back = paste_back(photo, aligned, t, feather=0.0)
    np.testing.assert_array_equal(back, photo)  # 1:1 and axis-aligned: exact
    edited = paste_back(photo, 255 - aligned, t, feather=0.0)
    np.testing.assert_array_equal(edited[:60, :50], 255 - photo[:60, :50])
    np.testing.assert_array_equal(edited[60:], photo[60:])
    np.testing.assert_array_equal(edited[:, 50:], photo[:, 50:])
    away = box_transform((500, 500, 600, 600), size=16)  # entirely outside
    np.testing.assert_array_equal(paste_back(photo, np.zeros((16, 16, 3), np.uint8), away), photo)


def test_shrinking_is_antialiased():
    checker = ((np.indices((256, 256)).sum(0) % 2) * 255).astype(np.uint8)
    photo = np.repeat(checker[..., None], 3, -1)
    t = AlignTransform(tuple(map(tuple, _rotate([[28, 28], [28, 228], [228, 228], [228, 28]], 10, (128, 128)))), 50)
    out = align_image(photo, t).astype(float)  # 4 photo pixels per aligned pixel
    assert abs(out.mean() - 127.5) < 3 and out.std() < 12  # plain bilinear sampling would give std ~ 100


def test_paste_back_of_a_larger_face_matches_its_downscale():
    photo = _smooth(150, 150)
    t = box_transform((25, 25, 125, 125), size=256)
    face = np.asarray(Image.fromarray(_smooth(400, 400)).resize((1024, 1024), Image.BICUBIC))
    out = paste_back(photo, face, t, feather=0.0)
    expected = np.asarray(Image.fromarray(face).resize((100, 100), Image.BOX)).astype(int)
    assert np.abs(out[25:125, 25:125].astype(int) - expected).mean() < 2.0


def test_bad_images():
    t = box_transform((0, 0, 10, 10), size=10)
    with pytest.raises(ValueError, match="uint8 image"):
        align_image(np.zeros((10, 10, 3), np.float32), t)
    with pytest.raises(ValueError, match="must be square"):
        paste_back(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12, 3), np.uint8), t)
    with pytest.raises(ValueError, match="feather"):
        paste_back(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 3), np.uint8), t, feather=0.7)


def test_synthetic_face_aligned_back_to_its_frame():
    """Synthetic renders placed, enlarged and turned, in a bigger photo come back close to the original renders
    with the synthetic recipe, closer than with FFHQ's framing (turned heads vary from face to face)."""
    _needs_mtcnn()
    from engine.synth import sample_batch

    images, _, _ = sample_batch(8, size=64, domain="photo", rng_or_seed=7)
    renders = ((images + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    errors = {"synthetic": [], "ffhq": []}
    for render in renders:
        big = Image.fromarray(render).resize((256, 256), Image.BICUBIC)
        canvas = Image.new("RGB", (480, 400), (90, 110, 130))
        canvas.paste(big, (120, 60))
        photo = np.asarray(canvas.rotate(12, resample=Image.BICUBIC, center=(248, 188)))
        face = detect_faces(photo, detector="mtcnn")[0]
        for recipe in errors:
            aligned = align_image(photo, face_transform(face, size=64, recipe=recipe)).astype(float)
            errors[recipe].append(np.abs(aligned - render).mean())
    synthetic, ffhq = np.median(errors["synthetic"]), np.median(errors["ffhq"])  # about 11.6 and 17.6 levels
    assert synthetic < 14 and synthetic < 0.8 * ffhq


def test_derive_synthetic_recipe_reproduces_the_constants():
    _needs_mtcnn()
    r = derive_synthetic_recipe(count=12, seed=0, start_index=500)
    assert r["detected"] == 12
    assert abs(r["scale"] - SYNTHETIC_SCALE) < 0.04
    assert abs(r["shift"][0] - SYNTHETIC_SHIFT[0]) < 0.02 and abs(r["shift"][1] - SYNTHETIC_SHIFT[1]) < 0.02
