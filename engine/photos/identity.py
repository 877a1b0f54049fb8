"""Identity: whether two images show the same person, by dlib's face-recognition embedding (offline, optional).

dlib's ResNet (``dlib_face_recognition_resnet_model_v1.dat``, 128-d, trained on about 3 million faces; 99.38% on
LFW) ships in ``face_recognition_models==0.1.3`` and runs with ``dlib-bin``: ``pip install -e .[faces]``. Faces
are found by dlib's HOG detector and fitted with its 68-point predictor (``engine.photos.faces.dlib68``); dlib's own
rule is that two faces closer than ``SAME_PERSON`` (Euclidean distance of the embeddings) are the same person.
Without the packages every function raises ``DetectorUnavailable`` saying what to install.

Small images (an aligned 64 px face) are upscaled (bicubic) to ``MIN_SIDE`` before detection, since the HOG
window needs faces of about 80 px.
"""
from __future__ import annotations

import functools
import importlib.metadata
import math
from pathlib import Path

import numpy as np

from engine.errors import DetectorUnavailable
from engine.photos.faces import dlib68

__all__ = ["SAME_PERSON", "face_embedding", "face_distance", "identity_available", "MIN_SIDE"]

SAME_PERSON = 0.6  # dlib's threshold: embeddings closer than this are the same person
MIN_SIDE = 256  # images with a shorter side are upscaled to at least this before detection
MODEL = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"


def _model_file() -> Path:
    dlib68.model_file()  # dlib and the package: DetectorUnavailable with the install line when missing
    path = Path(importlib.metadata.distribution(dlib68.PACKAGE).locate_file(MODEL))
    if not path.is_file():
        raise DetectorUnavailable(f"{dlib68.PACKAGE} is installed but lacks {path}: {dlib68.INSTALL_HINT}")
    return path


def identity_available() -> bool:
    """Whether dlib and the recognition model are installed."""
    try:
        _model_file()
    except DetectorUnavailable:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _recogniser():
    model = _model_file()  # refuses with the install line before dlib is imported
    import dlib

    return dlib.face_recognition_model_v1(str(model))


def _check(pixels: np.ndarray, what: str) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 \
            or min(pixels.shape[:2]) < 1:
        raise ValueError(f"{what} must be a uint8 image [H, W, 3], got {getattr(pixels, 'dtype', type(pixels))} "
                         f"{getattr(pixels, 'shape', None)}")


def _upscaled(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """The image upscaled by an integer factor so that its shorter side reaches ``MIN_SIDE`` (and the factor)."""
    factor = max(1, math.ceil(MIN_SIDE / min(pixels.shape[:2])))
    if factor == 1:
        return np.ascontiguousarray(pixels), 1
    from PIL import Image

    h, w = pixels.shape[:2]
    big = Image.fromarray(np.ascontiguousarray(pixels)).resize((w * factor, h * factor), Image.Resampling.BICUBIC)
    return np.asarray(big), factor


def _box(pixels: np.ndarray) -> tuple[float, float, float, float] | None:
    """The best face's box (x0, y0, x1, y1) in the image's pixels, or None."""
    big, factor = _upscaled(pixels)
    found = dlib68.detect(big, min_face=20.0 * factor)
    if not found:
        return None
    box = max(found, key=lambda f: f[1] * (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))[0]
    return tuple(v / factor for v in box)


def face_embedding(pixels: np.ndarray, *, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """dlib's 128-d embedding float64 [128] of the face in a uint8 image [H, W, 3]: the best detected face, or
    the face in ``box`` (x0, y0, x1, y1, image pixels). ValueError when there is no face."""
    _check(pixels, "the image")
    _recogniser()  # refuses first when the model is not installed
    import dlib
    if box is None:
        box = _box(pixels)
        if box is None:
            raise ValueError("no face was found in the image")
    big, factor = _upscaled(pixels)
    _, predictor = dlib68._models()
    x0, y0, x1, y1 = (v * factor for v in box)
    shape = predictor(big, dlib.rectangle(round(x0), round(y0), round(x1) - 1, round(y1) - 1))
    return np.array(_recogniser().compute_face_descriptor(big, shape))


def face_distance(img_a: np.ndarray, img_b: np.ndarray) -> float:
    """Euclidean distance of the two images' face embeddings (below ``SAME_PERSON``: the same person).

    Images of the same size are taken as the same frame (a photo and its edit, an aligned face and its
    reconstruction): the face is found in ``img_a`` (else in ``img_b``) and that box is used for both, the landmarks
    fitted in each. Images of different sizes are searched separately."""
    _check(img_a, "the first image")
    _check(img_b, "the second image")
    _recogniser()
    if img_a.shape == img_b.shape:
        box = _box(img_a) or _box(img_b)
        if box is None:
            raise ValueError("no face was found in either image")
        a, b = face_embedding(img_a, box=box), face_embedding(img_b, box=box)
    else:
        a, b = face_embedding(img_a), face_embedding(img_b)
    return float(np.linalg.norm(a - b))
