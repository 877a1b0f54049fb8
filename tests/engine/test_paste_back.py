"""Seamless paste-back (engine.photos.blend): the mask follows the face outline, the colours are matched to the
photo, and an unedited face goes back exactly where it came from at the photo's full resolution."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine.photos.align import AlignTransform, align_image, face_transform, paste_back
from engine.photos.blend import blend_back, canonical_face, face_outline, outline_mask
from engine.photos.faces import Face


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 image [h, w, 3]: smooth shading plus fine random texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([120 + 60 * np.sin(x / 37.0) * np.cos(y / 29.0), 110 + 50 * np.cos((x - y) / 45.0),
                     90 + 70 * y / h], -1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).round().astype(np.uint8)


def _tilted_face(centre=(150.0, 130.0), e2e=44.0, e2m=40.0, degrees=17.0) -> Face:
    """A face with eyes ``e2e`` apart, the mouth ``e2m`` below them, turned ``degrees``."""
    a = math.radians(degrees)
    ux, uy = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    c = np.array(centre)
    pts = [c - ux * e2e / 2, c + ux * e2e / 2, c + uy * e2m * 0.6, c + uy * e2m - ux * e2e * 0.45,
           c + uy * e2m + ux * e2e * 0.45]
    return Face((0, 0, 1, 1), 1.0, np.array(pts))


def _hull_distance(points: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """Euclidean distance [N] of points [N, 2] outside a convex polygon (0 inside)."""
    d = np.full(len(points), np.inf)
    inside = np.ones(len(points), bool)
    for a, b in zip(hull, np.roll(hull, -1, axis=0)):
        e = b - a
        t = np.clip(((points - a) @ e) / (e @ e), 0, 1)
        d = np.minimum(d, np.hypot(*(points - (a + t[:, None] * e)).T))
        inside &= (e[0] * (points[:, 1] - a[1]) - e[1] * (points[:, 0] - a[0])) > 0
    return np.where(inside, 0.0, d)


def test_outline_of_five_points_surrounds_the_features_below_the_brows_and_above_the_chin():
    face = _tilted_face()
    hull = face_outline(face)
    for p in face.landmarks:  # every landmark lies well inside
        assert _hull_distance(p[None], hull)[0] == 0
    eyes = face.landmarks[:2].mean(0)
    mouth = face.landmarks[3:].mean(0)
    down = (mouth - eyes) / np.hypot(*(mouth - eyes))
    reach = (hull - eyes) @ down
    assert -1.0 * 40 < reach.min() < -0.3 * 40 and 1.6 * 40 < reach.max() < 2.3 * 40  # brows above, chin below


def test_outline_of_68_points_is_the_jaw_and_raised_brows():
    t = np.linspace(0, math.pi, 17)
    jaw = np.stack([100 - 50 * np.cos(t), 100 + 60 * np.sin(t)], 1)  # a U from (50, 100) down to (100, 160)
    brows = np.stack([np.linspace(60, 140, 10), np.full(10, 80.0)], 1)
    eyes = np.array([[80, 95.0]] * 6 + [[120, 95.0]] * 6)
    rest = np.array([[100, 120.0]] * 17 + [[85, 135.0]] + [[100, 135.0]] * 5 + [[115, 135.0]] + [[100, 135.0]] * 7)
    points = np.concatenate([jaw, brows, rest[:9], eyes, rest[9:]])[:68]
    points[48], points[54], points[36:48] = (85, 135), (115, 135), eyes
    face = Face((0, 0, 1, 1), 1.0, np.stack([eyes[:6].mean(0), eyes[6:].mean(0), (100, 120), (85, 135), (115, 135)]),
                points68=points)
    hull = face_outline(face)
    assert hull[:, 1].max() == pytest.approx(160.0)  # the chin
    assert hull[:, 1].min() == pytest.approx(80 - 0.25 * 40)  # brows raised by a quarter of eye-to-mouth
    assert hull[:, 0].min() == pytest.approx(50.0) and hull[:, 0].max() == pytest.approx(150.0)


def test_mask_is_zero_outside_the_grown_hull_one_deep_inside_and_smooth():
    hull = face_outline(_tilted_face())
    grow, feather = 4.0, 14.0
    mask = outline_mask(hull, (0, 0), (300, 320), grow=grow, feather=feather)
    ys, xs = np.mgrid[0:300, 0:320]
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)
    outside = _hull_distance(centres, hull).reshape(300, 320)
    assert (mask[outside > grow * 1.1] == 0).all()  # the mitred growth of a 64-gon stays within 10%
    # inside distance of each pixel centre (min over edges), and 1 from feather - grow inwards
    depth = np.min([((b[0] - a[0]) * (centres[:, 1] - a[1]) - (b[1] - a[1]) * (centres[:, 0] - a[0]))
                    / np.hypot(*(b - a)) for a, b in zip(hull, np.roll(hull, -1, axis=0))], axis=0).reshape(300, 320)
    assert (mask[depth >= feather - grow] == 1).all() and (mask[depth >= feather - grow]).size > 2000
    assert 0 < mask.mean() < 0.5  # a face, not the frame
    step = max(np.abs(np.diff(mask, axis=0)).max(), np.abs(np.diff(mask, axis=1)).max())
    assert step <= 1.5 / feather * math.sqrt(2) + 1e-6  # the smoothstep's steepest slope: no hard edge


def test_blend_leaves_the_crop_square_outside_the_face_untouched():
    photo = _texture(260, 300)
    face = _tilted_face()
    t = face_transform(face, size=64)
    aligned = align_image(photo, t)
    edited = 255 - aligned  # as different an edit of the reconstruction ``aligned`` as there can be
    out = blend_back(photo, edited, t, outline=face_outline(face), reference=aligned)
    mask = outline_mask(face_outline(face), (0, 0), photo.shape[:2], grow=0.02 * t.side, feather=0.08 * t.side)
    np.testing.assert_array_equal(out[mask == 0], photo[mask == 0])
    corner = np.array(t.quad).mean(0) * 0.1 + np.array(t.quad[0]) * 0.9  # inside the quad, outside the oval
    x, y = (int(v) for v in corner)
    np.testing.assert_array_equal(out[y - 2:y + 3, x - 2:x + 3], photo[y - 2:y + 3, x - 2:x + 3])
    square = paste_back(photo, edited, t)
    assert (square[y - 2:y + 3, x - 2:x + 3] != photo[y - 2:y + 3, x - 2:x + 3]).any()  # the square did change it
    assert np.abs(out[mask == 1].astype(int) - photo[mask == 1]).mean() > 20  # and the face itself did change


@pytest.mark.parametrize("cast", [(40, -10, -30), (-35, 25, 10)])
def test_a_colour_cast_is_matched_to_the_photo_at_the_border(cast):
    photo = _texture(260, 300, seed=1)
    face = _tilted_face()
    t = face_transform(face, size=64)
    outline = face_outline(face)
    aligned = align_image(photo, t)
    tinted = np.clip(aligned.astype(int) + np.array(cast), 0, 255).astype(np.uint8)
    mask = outline_mask(outline, (0, 0), photo.shape[:2], grow=0.02 * t.side, feather=0.08 * t.side)
    border = (mask > 0.2) & (mask < 1)

    def offset(image):  # mean colour difference to the photo on the border band, per channel
        return (image[border].astype(float) - photo[border]).mean(0)

    matched = blend_back(photo, tinted, t, outline=outline)
    plain = blend_back(photo, tinted, t, outline=outline, colour_sigma=0.0)
    assert np.abs(offset(matched)).max() < 1.5
    assert np.abs(offset(plain)).max() > 0.4 * np.abs(cast).max()  # without the match the cast shows
    # an edit on top of the reconstruction survives the match: the reference carries the cast, the face a change
    brighter = np.clip(tinted.astype(int) + 20, 0, 255).astype(np.uint8)
    edited = blend_back(photo, brighter, t, outline=outline, reference=tinted)
    deep = mask == 1
    gain = (edited[deep].astype(float) - photo[deep]).mean()
    assert 12 < gain < 22


@pytest.mark.parametrize("degrees", [0.0, 17.0, -31.0])
def test_an_unedited_face_goes_back_exactly(degrees):
    """A generated face placed in a photo at a tilt, aligned out again and pasted back unedited: the photo within
    1/255 outside the face and within a small error inside (the upsampled face alone) or 1/255 (with the photo's
    detail)."""
    rng = np.random.default_rng(3)
    generated = np.clip(_texture(64, 64, seed=4).astype(float) + rng.normal(0, 4, (64, 64, 3)), 0, 255)
    face = _tilted_face(degrees=degrees)
    t = face_transform(face, size=64)
    photo = paste_back(_texture(260, 300, seed=2), generated.round().astype(np.uint8), t, feather=0.0)
    again = align_image(photo, t)
    outline = face_outline(face)
    mask = outline_mask(outline, (0, 0), photo.shape[:2], grow=0.02 * t.side, feather=0.08 * t.side)
    exact = blend_back(photo, again, t, outline=outline)
    assert np.abs(exact.astype(int) - photo).max() <= 1
    upsampled = blend_back(photo, again, t, outline=outline, detail=0.0)
    diff = np.abs(upsampled.astype(int) - photo)
    assert diff[mask == 0].max() == 0
    assert diff[mask > 0].mean() < 6  # the 64 px face resampled to ~190 px: texture lost, geometry kept
    shifted = AlignTransform(tuple((x + 3.0, y) for x, y in t.quad), t.size)  # a misplaced paste is caught
    wrong = blend_back(photo, again, shifted, outline=outline, detail=0.0)
    assert np.abs(wrong.astype(int) - photo)[mask > 0].mean() > diff[mask > 0].mean() + 2


def test_canonical_face_sits_where_the_alignment_puts_eyes_and_mouth():
    face = _tilted_face(degrees=12.0)
    t = face_transform(face, size=64)
    guess = canonical_face(t)
    e2e = np.hypot(*(face.landmarks[1] - face.landmarks[0]))
    assert np.abs(guess.landmarks[:2] - face.landmarks[:2]).max() < 0.15 * e2e
    assert np.abs(guess.landmarks[3:] - face.landmarks[3:]).max() < 0.25 * e2e


def test_blend_refuses_bad_arguments():
    photo = _texture(100, 100)
    face = _tilted_face(centre=(50.0, 45.0), e2e=20, e2m=18)
    t = face_transform(face, size=32)
    aligned = align_image(photo, t)
    with pytest.raises(ValueError, match="feather"):
        blend_back(photo, aligned, t, outline=face_outline(face), feather=0.0)
    with pytest.raises(ValueError, match="detail"):
        blend_back(photo, aligned, t, outline=face_outline(face), detail=1.5)
    with pytest.raises(ValueError, match="square uint8"):
        blend_back(photo, aligned[:, :20], t, outline=face_outline(face))
    with pytest.raises(ValueError, match="reference"):
        blend_back(photo, aligned, t, outline=face_outline(face), reference=aligned[:16, :16])
