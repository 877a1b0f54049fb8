"""Face detection with landmarks, fully offline.

Detectors (``available_detectors()`` lists the installed ones, the default first):

* ``mtcnn`` (default): MTCNN in pure PyTorch (``mtcnn.py``) with the MIT-licensed weights inside the PyPI wheel
  ``facenet-pytorch==2.6.0`` (installed with ``--no-deps``; the package itself is never imported).
  Five landmarks.
* ``dlib68`` (optional): dlib's HOG detector and 68-point shape predictor (``dlib68.py``), used only when
  ``dlib`` (PyPI ``dlib-bin``) and ``face_recognition_models==0.1.3`` are installed. The 68-point model is
  trained on iBUG 300-W, whose terms exclude commercial use.

Coordinates are continuous photo pixels: pixel (row i, column j) covers [j, j+1) x [i, i+1), so its centre is
(j + 0.5, i + 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import DetectorUnavailable
from engine.photos.faces import dlib68, mtcnn

__all__ = ["Face", "DetectorUnavailable", "available_detectors", "detect_faces", "DETECTORS"]

DETECTORS = {
    "mtcnn": "MTCNN (Zhang et al. 2016), 5 landmarks; weights from facenet-pytorch 2.6.0, MIT licence",
    "dlib68": "dlib HOG detector + 68-point shape predictor; model licence (iBUG 300-W) excludes commercial use",
}


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face. ``landmarks`` are, in this order, the left eye centre, right eye centre, nose tip,
    left and right mouth corners, where "left" is the one on the image's left when the face is upright (the
    person's right). Arrays are read-only."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in photo pixels
    score: float  # detector confidence: MTCNN's O-Net probability, dlib's HOG detection margin
    landmarks: np.ndarray  # [5, 2] (x, y)
    points68: np.ndarray | None = None  # [68, 2] (x, y) when the dlib detector was used

    def __post_init__(self):
        marks = np.array(self.landmarks, dtype=np.float64)
        if marks.shape != (5, 2):
            raise ValueError(f"Face.landmarks must be [5, 2], got {marks.shape}")
        marks.setflags(write=False)
        object.__setattr__(self, "landmarks", marks)
        if self.points68 is not None:
            points = np.array(self.points68, dtype=np.float64)
            if points.shape != (68, 2):
                raise ValueError(f"Face.points68 must be [68, 2], got {points.shape}")
            points.setflags(write=False)
            object.__setattr__(self, "points68", points)
        box = tuple(float(v) for v in self.box)
        if len(box) != 4:
            raise ValueError(f"Face.box must be (x0, y0, x1, y1), got {self.box!r}")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


def _check_pixels(pixels: np.ndarray) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        shape = getattr(pixels, "shape", None)
        raise ValueError(f"expected a uint8 photo [H, W, 3], got {getattr(pixels, 'dtype', type(pixels))} {shape}")
    if min(pixels.shape[:2]) < 1:
        raise ValueError(f"the photo is empty: {pixels.shape}")


def _installed(name: str) -> bool:
    try:
        mtcnn.weight_files() if name == "mtcnn" else dlib68.model_file()
    except DetectorUnavailable:
        return False
    return True


def available_detectors() -> dict[str, str]:
    """Installed detectors, name -> one-line description with the model's licence; "mtcnn" first."""
    return {name: text for name, text in DETECTORS.items() if _installed(name)}


def detect_faces(pixels: np.ndarray, *, detector: str = "auto", min_face: int = 20) -> list[Face]:
    """All faces in a uint8 photo [H, W, 3], best first (score times box area); an empty list when there is none.

    ``detector`` is "auto" (the first installed of ``DETECTORS``), "mtcnn" or "dlib68". ``min_face`` is the
    smallest face side searched for, in photo pixels (large photos search from a proportionally larger size,
    see ``mtcnn.PYRAMID_BUDGET``). Raises DetectorUnavailable when the chosen detector is not installed.
    """
    _check_pixels(pixels)
    if min_face < 1:
        raise ValueError(f"min_face must be at least 1 pixel, got {min_face}")
    if detector == "auto":
        names = [n for n in DETECTORS if _installed(n)]
        if not names:
            raise DetectorUnavailable(f"no face detector is installed: {mtcnn.INSTALL_HINT}")
        detector = names[0]
    if detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r}; choose 'auto' or one of {', '.join(DETECTORS)}")
    if detector == "mtcnn":  # both raise DetectorUnavailable, saying what to install
        mtcnn.weight_files()
    else:
        dlib68.model_file()
    for turns in range(4):  # both detectors want upright faces: a sideways photo is searched turned, if need be
        faces = _detect_upright(np.rot90(pixels, turns), detector, min_face)
        if faces:
            break
    height, width = pixels.shape[:2]
    faces = [_unturn(f, turns, width, height) for f in faces]
    return sorted(faces, key=lambda f: -f.score * f.area)


def _detect_upright(pixels: np.ndarray, detector: str, min_face: int) -> list[Face]:
    pixels = np.ascontiguousarray(pixels)
    if detector == "mtcnn":
        boxes, scores, marks = mtcnn.detect(mtcnn.default_mtcnn(), pixels, min_face=min_face)
        return [Face(tuple(b), s, m) for b, s, m in zip(boxes, scores, marks)]
    return [Face(box, score, dlib68.five_points(points), points68=points)
            for box, score, points in dlib68.detect(pixels, min_face=min_face)]


def _unturn(face: Face, turns: int, width: int, height: int) -> Face:
    """A face found in ``np.rot90(photo, turns)`` in the coordinates of ``photo`` (width x height).

    One counter-clockwise quarter turn takes photo point (x, y) to (y, width - x); undoing it maps (x', y') back
    to (width - y', x'). Landmark order stays the face's own (left eye = the person's right eye), so the
    landmarks of a sideways face say which way it is turned.
    """
    if turns == 0:
        return face

    def back(points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        w, h = (width, height) if turns % 2 == 0 else (height, width)  # size of the turned image
        for _ in range(turns):  # undo one quarter turn at a time: (x', y') -> (w_prev - y', x')
            w, h = h, w
            p = np.stack([w - p[..., 1], p[..., 0]], axis=-1)
        return p

    x0, y0, x1, y1 = face.box
    corners = back(np.array([[x0, y0], [x1, y1]]))
    box = (*corners.min(0), *corners.max(0))
    points = None if face.points68 is None else back(face.points68)
    return Face(box, face.score, back(face.landmarks), points68=points)
