"""Identity distance (engine.photos.identity): dlib's 128-d face embedding, optional. The tests that need it skip
when dlib-bin and face_recognition_models are not installed; the refusal is tested always."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import DetectorUnavailable
from engine.photos import identity
from engine.photos.align import align_image, face_transform
from engine.photos.faces import detect_faces, dlib68
from engine.synth import sample_batch

DATA = Path(__file__).resolve().parents[1] / "data"
needs_dlib = pytest.mark.skipif(not identity.identity_available(),
                                reason="dlib-bin and face_recognition_models==0.1.3 are not installed (pip install "
                                       "-e .[faces])")


@pytest.fixture(scope="module")
def astronaut():
    return np.asarray(Image.open(DATA / "astronaut_face.png").convert("RGB"))


@needs_dlib
def test_the_same_person_is_close_and_another_is_far(astronaut):
    aligned = align_image(astronaut, face_transform(detect_faces(astronaut)[0], size=64, recipe="synthetic"))
    assert identity.face_distance(astronaut, astronaut) == 0.0
    assert identity.face_distance(astronaut, aligned) < identity.SAME_PERSON  # 64 px and upscaled: still her
    images, _, _ = sample_batch(3, size=64, domain="photo", rng_or_seed=0)
    others = ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for other in others:  # synthetic people of the same size: one frame, one box, other faces
        assert identity.face_distance(aligned, other) > identity.SAME_PERSON


@needs_dlib
def test_embedding_is_128_numbers_and_a_faceless_image_is_refused(astronaut):
    e = identity.face_embedding(astronaut)
    assert e.shape == (128,) and np.isfinite(e).all() and 0.1 < np.linalg.norm(e) < 2
    grey = np.full((96, 96, 3), 128, np.uint8)
    with pytest.raises(ValueError, match="no face"):
        identity.face_distance(grey, grey)
    with pytest.raises(ValueError, match="uint8"):
        identity.face_distance(astronaut.astype(np.float32), astronaut)


def test_without_dlib_it_says_what_to_install(monkeypatch, astronaut):
    def missing():
        raise DetectorUnavailable(f"the dlib face detector is not installed: {dlib68.INSTALL_HINT}")

    monkeypatch.setattr(dlib68, "model_file", missing)
    identity._recogniser.cache_clear()
    try:
        assert not identity.identity_available()
        with pytest.raises(DetectorUnavailable, match="dlib-bin face_recognition_models==0.1.3"):
            identity.face_distance(astronaut, astronaut)
    finally:
        identity._recogniser.cache_clear()
