"""Optional detector: dlib's HOG face detector and its 68-point shape predictor (the landmarks FFHQ was aligned with).

Used only when importable: ``pip install dlib-bin face_recognition_models==0.1.3``. ``face_recognition_models``
is never imported (it needs ``pkg_resources``); its ``shape_predictor_68_face_landmarks.dat`` is located through
the package metadata. The 68-point model is trained on iBUG 300-W, whose terms exclude commercial use.

Points follow the iBUG 68 layout: 36-41 the eye on the image's left of an upright face, 42-47 the other eye,
30 the nose tip, 48 and 54 the mouth corners.
"""
from __future__ import annotations

import functools
import importlib.metadata
import math
from pathlib import Path

import numpy as np

from engine.errors import DetectorUnavailable

PACKAGE = "face_recognition_models"
INSTALL_HINT = "pip install dlib-bin face_recognition_models==0.1.3 (model licence: non-commercial use only)"
MODEL = "face_recognition_models/models/shape_predictor_68_face_landmarks.dat"
HOG_SMALLEST = 80  # the HOG detector's window: faces below this need an upsampled pass (at most one: ~40 px)
WORK_PIXELS = 1_500_000  # larger photos are searched at a reduced size (the landmarks use the full photo)


def model_file() -> Path:
    """The 68-point model file; DetectorUnavailable when dlib or the model package is missing."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        raise DetectorUnavailable(f"the dlib face detector is not installed: {INSTALL_HINT}") from None
    try:
        path = Path(importlib.metadata.distribution(PACKAGE).locate_file(MODEL))
    except importlib.metadata.PackageNotFoundError:
        raise DetectorUnavailable(f"the 68-point landmark model is not installed: {INSTALL_HINT}") from None
    if not path.is_file():
        raise DetectorUnavailable(f"{PACKAGE} is installed but lacks {path}: {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=1)
def _models():
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_file()))


def five_points(points68: np.ndarray) -> np.ndarray:
    """Eye means (36-41, 42-47), nose tip (30), mouth corners (48, 54). [68, 2] -> [5, 2]"""
    p = np.asarray(points68, dtype=np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def detect(pixels: np.ndarray, *, min_face: float = 20.0) -> list[tuple[tuple[float, ...], float, np.ndarray]]:
    """(box, HOG score, points [68, 2]) for each face in a uint8 photo [H, W, 3], in photo pixels."""
    import dlib

    detector, predictor = _models()
    height, width = pixels.shape[:2]
    scale = min(1.0, math.sqrt(WORK_PIXELS / (height * width)))
    work = np.ascontiguousarray(pixels)
    if scale < 1.0:
        from PIL import Image

        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        work = np.asarray(Image.fromarray(work).resize(size, Image.Resampling.BOX))
    upsample = max(0, min(1, math.ceil(math.log2(HOG_SMALLEST / max(min_face * scale, 1.0)))))
    rects, scores, _ = detector.run(work, upsample, 0.0)
    full = np.ascontiguousarray(pixels)
    found = []
    for rect, score in zip(rects, scores):
        # dlib rectangles are inclusive pixel indices; photo coordinates put the right/bottom edge one further
        box = (rect.left() / scale, rect.top() / scale, (rect.right() + 1) / scale, (rect.bottom() + 1) / scale)
        if min(box[2] - box[0], box[3] - box[1]) < min_face:
            continue
        full_rect = dlib.rectangle(round(box[0]), round(box[1]), round(box[2]) - 1, round(box[3]) - 1)
        shape = predictor(full, full_rect)
        points = np.array([[shape.part(i).x + 0.5, shape.part(i).y + 0.5] for i in range(shape.num_parts)])
        found.append((box, float(score), points))
    return found
