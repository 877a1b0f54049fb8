"""The synthetic face world: determinism, attributes acting on the pixels, domains, sizes, errors, dataset files,
SH lighting coefficients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine import synth
from engine.files.images import to_uint8

SIZE = 64
EYES = (slice(24, 37), slice(18, 46))  # rows, cols around both eyes at 64 px (eyes near v=0.47, u=0.38/0.62)
MOUTH = (slice(41, 52), slice(22, 42))  # around the mouth (v=0.72)
CHIN = (slice(50, 58), slice(20, 44))
FOREHEAD = (slice(14, 22), slice(22, 42))


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    """A frontal, neutral, clean-shaven, glasses-free face lit from the front."""
    p = synth.sample_params(1, seed=7)[0]
    return synth.with_params(p, yaw=0, pitch=0, glasses=0, beard=0, baldness=0, smile=0.05, age=25,
                             light_azimuth=0, light_elevation=20, hair_length=0.3, bangs=0.0, gender=0.9)


def _img(params, domain="photo", size=SIZE) -> np.ndarray:
    return synth.render_faces(np.atleast_2d(params), size=size, domain=domain)[0].numpy()


def _diff(a, b, region) -> float:
    return float(np.abs(a - b)[(slice(None), *region)].mean())


def test_same_seed_same_pixels_and_samples_regenerate_alone():
    a = synth.sample_params(6, seed=11)
    assert np.array_equal(a, synth.sample_params(6, seed=11))
    assert np.array_equal(a[4], synth.sample_params(1, seed=11, start_index=4)[0])
    assert not np.array_equal(a, synth.sample_params(6, seed=12))
    batch, params, cond = synth.sample_batch(6, size=SIZE, domain="photo", rng_or_seed=11)
    alone, params4, _ = synth.sample_batch(1, size=SIZE, domain="photo", rng_or_seed=11, start_index=4)
    assert np.array_equal(params4[0], params[4])
    assert np.array_equal(to_uint8(alone), to_uint8(batch[4:5]))
    assert torch.equal(synth.render_faces(a, size=SIZE), synth.render_faces(a, size=SIZE))


def test_generator_source_draws_fresh_faces():
    x1, p1, _ = synth.sample_batch(3, size=32, rng_or_seed=np.random.default_rng(1))
    _, p2, _ = synth.sample_batch(3, size=32, rng_or_seed=np.random.default_rng(1))
    assert np.array_equal(p1, p2) and x1.shape == (3, 3, 32, 32)


@pytest.mark.parametrize("size", [32, 64, 100, 128])
def test_any_resolution_shapes_and_ranges(size):
    imgs = synth.render_faces(synth.sample_params(2, seed=0), size=size, domain="photo")
    assert imgs.shape == (2, 3, size, size) and imgs.dtype == torch.float32
    assert 0.0 <= float(imgs.min()) and float(imgs.max()) <= 1.0
    x, params, cond = synth.sample_batch(2, size=size, domain="toon", rng_or_seed=0)
    assert -1.0 <= float(x.min()) < 0 < float(x.max()) <= 1.0
    assert params.shape == (2, synth.NUM_PARAMS) and cond.shape == (2, 17)


def test_resolutions_agree_on_the_face():
    p = synth.sample_params(1, seed=3)
    small = synth.render_faces(p, size=32)
    big = torch.nn.functional.avg_pool2d(synth.render_faces(p, size=128), 4)
    assert float((small - big).abs().mean()) < 0.05


def test_glasses_change_eyes_not_mouth(base):
    a, b = _img(base), _img(synth.with_params(base, glasses=1, lens_tint=0.1))
    assert _diff(a, b, EYES) > 0.04
    assert _diff(a, b, EYES) > 5 * _diff(a, b, MOUTH)


def test_smile_changes_mouth_most(base):
    a, b = _img(base), _img(synth.with_params(base, smile=1.0))
    assert _diff(a, b, MOUTH) > 0.04
    assert _diff(a, b, MOUTH) > 2 * _diff(a, b, FOREHEAD)


def test_beard_covers_chin_not_forehead(base):
    a, b = _img(base), _img(synth.with_params(base, beard=1.0))
    assert _diff(a, b, CHIN) > 0.08
    assert _diff(a, b, CHIN) > 5 * _diff(a, b, FOREHEAD)


def test_age_greys_hair_and_yaw_turns_face(base):
    young, old = _img(base), _img(synth.with_params(base, age=80))
    assert np.abs(young - old).mean() > 0.01
    left, right = _img(synth.with_params(base, yaw=-30)), _img(synth.with_params(base, yaw=30))
    assert np.abs(left - right).mean() > 0.05
    # turning the face moves the whole head outline: the hair/face mass shifts sideways
    assert np.abs(left - right).mean() > 2 * np.abs(left - np.flip(right, axis=2)).mean() or \
        np.abs(left - right)[:, :20].mean() > 0.05


def test_baldness_and_gender_change_the_picture(base):
    a = _img(base)
    assert _diff(a, _img(synth.with_params(base, baldness=1.0)), (slice(2, 20), slice(16, 48))) > 0.05
    assert np.abs(a - _img(synth.with_params(base, gender=0.0))).mean() > 0.005


def test_light_direction_shades_the_face(base):
    lum = lambda img: img.mean(0)  # noqa: E731
    from_right = lum(_img(synth.with_params(base, light_azimuth=70, light_elevation=0)))
    from_left = lum(_img(synth.with_params(base, light_azimuth=-70, light_elevation=0)))
    cheeks = slice(30, 44)
    assert from_right[cheeks, 34:42].mean() > from_right[cheeks, 22:30].mean() + 0.05
    assert from_left[cheeks, 22:30].mean() > from_left[cheeks, 34:42].mean() + 0.05


def test_domains_differ_for_the_same_face():
    p = synth.sample_params(4, seed=2)
    images = {d: synth.render_faces(p, size=SIZE, domain=d) for d in synth.DOMAINS}
    assert len(images) >= 5 and {"photo", "toon", "edges"} <= set(images)
    for i, a in enumerate(synth.DOMAINS):
        for b in synth.DOMAINS[i + 1:]:
            assert float((images[a] - images[b]).abs().mean()) > 0.05, (a, b)
    edges = images["edges"]
    assert float(edges.mean()) > 0.75 and float(edges.min()) < 0.3  # dark lines on white
    assert torch.equal(edges[:, 0], edges[:, 2])  # grey


def test_bad_inputs_raise_clear_errors():
    p = synth.sample_params(1, seed=0)
    with pytest.raises(ValueError, match="unknown synthetic domain 'oil'.*photo"):
        synth.render_faces(p, size=32, domain="oil")
    for size in (8, 0, 64.0, True, 10_000):
        with pytest.raises(ValueError, match="image size"):
            synth.render_faces(p, size=size)
    with pytest.raises(ValueError, match="shape"):
        synth.render_faces(np.zeros((1, 5)), size=32)
    with pytest.raises(ValueError, match="NaN"):
        synth.render_faces(np.full_like(p, np.nan), size=32)
    with pytest.raises(ValueError, match="unknown face parameter"):
        synth.with_params(p, moustache=1)
    with pytest.raises(ValueError):
        synth.sample_batch(0, size=32)
    with pytest.raises(ValueError, match="unknown synthetic domain"):
        synth.write_dataset("unused", domain="nope", n=1)


def test_dataset_writer_round_trips(tmp_path):
    calls = []
    path = synth.write_dataset(tmp_path / "ds", domain="sketch", n=5, size=32, seed=4, batch=2,
                               progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (5, 5) and len(calls) == 3
    labels = synth.read_labels(path.parent)
    assert labels["files"] == [f"{i:05d}.png" for i in range(5)]
    assert np.array_equal(labels["params"], synth.sample_params(5, seed=4))
    assert np.allclose(labels["attributes"], synth.attributes(labels["params"])[:, :8])
    assert np.allclose(labels["lighting_sh"], synth.lighting_sh(labels["params"]), atol=1e-6)
    png = np.asarray(Image.open(path.parent / "00003.png"))
    assert png.shape == (32, 32, 3) and png.dtype == np.uint8
    again = to_uint8(synth.render_faces(labels["params"][3:4], size=32, domain="sketch"), value_range=(0, 1))[0]
    assert np.array_equal(png, again)


def test_sh_coefficients_follow_the_light():
    sh = synth.sh_coefficients(np.array([60.0, -60.0, 0.0, 0.0, 0.0]), np.array([0.0, 0.0, 60.0, -60.0, 0.0]),
                               intensity=1.0, ambient=0.5)
    y, z, x = sh[:, 1], sh[:, 2], sh[:, 3]
    assert x[0] > 0 > x[1] and y[2] > 0 > y[3] and z[4] > 0
    assert np.allclose(sh[:, 0], sh[0, 0])  # DC depends on ambient + intensity only
    brighter = synth.sh_coefficients(0.0, 0.0, intensity=1.0, ambient=0.9)
    assert brighter[0] > sh[4, 0] and np.allclose(brighter[1:], sh[4, 1:])
    # irradiance of a normal facing the light beats one facing away
    d = synth.light_direction(60.0, 0.0)
    weights = np.array([1, 2 / 3, 2 / 3, 2 / 3, 0.25, 0.25, 0.25, 0.25, 0.25])
    facing, away = (float((sh[0] * weights * synth.sh_basis(n)).sum()) for n in (d, -d))
    assert facing > 1.2 and 0.3 < away < 0.7
    cond = synth.attributes(synth.sample_params(3, seed=0))
    assert cond.shape == (3, len(synth.CONDITION_NAMES))


def test_attribute_correlations():
    p = synth.sample_params(400, seed=0)
    a = dict(zip(synth.ATTRIBUTE_NAMES, synth.attributes(p)[:, :8].T))
    male = a["gender"] > 0.5
    assert 0.35 < male.mean() < 0.65
    assert (a["beard"][~male] == 0).all() and (a["beard"][male] > 0.2).mean() > 0.25
    assert (a["baldness"][~male] == 0).all()
    old = a["age"] > 50
    assert a["baldness"][male & old].mean() > a["baldness"][male & ~old].mean()
    assert set(np.unique(a["glasses"])) == {0.0, 1.0}
    assert 18 <= a["age"].min() and a["age"].max() <= 80
    assert np.abs(a["yaw"]).max() <= 30 and np.abs(a["pitch"]).max() <= 20
