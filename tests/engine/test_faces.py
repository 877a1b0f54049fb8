"""Face detection: MTCNN against the astronaut photo's known landmarks, no faces in blank or noise images, several
faces sorted, and landmarks that follow flips and rotations of the photo."""
from __future__ import annotations

import importlib.metadata
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import DetectorUnavailable, ModelFormatError
from engine.photos.faces import Face, available_detectors, detect_faces, dlib68, mtcnn

DATA = Path(__file__).resolve().parents[1] / "data"
OFFSET = np.array([96.0, 0.0])  # astronaut_face.png is the full photo's crop from column 96
# known answer in the full 512 x 512 photo: eyes, then mouth corners; face box
EYES = np.array([[204.0, 102.0], [247.0, 104.0]]) - OFFSET
MOUTH = np.array([[202.0, 140.0], [246.0, 142.0]]) - OFFSET
BOX = np.array([175.0, 76.0, 265.0, 166.0]) - np.tile(OFFSET, 2)

try:
    mtcnn.weight_files()
except DetectorUnavailable as exc:
    pytest.skip(f"MTCNN weights missing ({exc}); run scripts/setup.sh", allow_module_level=True)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.asarray(Image.open(DATA / "astronaut_face.png").convert("RGB"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _points(face: Face) -> np.ndarray:
    """Eyes and mouth corners [4, 2]."""
    return face.landmarks[[0, 1, 3, 4]]


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_available_detectors_lists_mtcnn_first():
    names = available_detectors()
    assert next(iter(names)) == "mtcnn" and "MIT" in names["mtcnn"]
    if "dlib68" in names:
        assert "commercial" in names["dlib68"]


def test_astronaut_known_answer(astronaut):
    faces = detect_faces(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99
    np.testing.assert_allclose(face.landmarks[:2], EYES, atol=3.0)
    np.testing.assert_allclose(face.landmarks[3:], MOUTH, atol=3.0)
    nose = face.landmarks[2]
    assert EYES[:, 0].min() < nose[0] < EYES[:, 0].max() and EYES[:, 1].max() < nose[1] < MOUTH[:, 1].min()
    assert _iou(face.box, BOX) > 0.6
    assert not face.landmarks.flags.writeable


def test_no_face_in_blank_or_noise():
    assert detect_faces(np.full((240, 320, 3), 128, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert detect_faces(noise) == []


def test_two_faces_best_first(astronaut):
    photo = np.full((256, 512, 3), 255, np.uint8)
    photo[:, :256] = astronaut
    photo[32:224, 288:480] = np.asarray(Image.fromarray(astronaut).resize((192, 192), Image.LANCZOS))
    faces = detect_faces(photo)
    assert len(faces) == 2
    big, small = faces
    assert big.score * big.area >= small.score * small.area
    np.testing.assert_allclose(_points(big), np.concatenate([EYES, MOUTH]), atol=3.0)
    expected_small = np.concatenate([EYES, MOUTH]) * 0.75 + [288.0, 32.0]
    np.testing.assert_allclose(_points(small), expected_small, atol=3.0)


def test_mirrored_photo_mirrors_landmarks(astronaut):
    ref = detect_faces(astronaut)[0].landmarks
    mirrored = detect_faces(np.ascontiguousarray(astronaut[:, ::-1]))[0].landmarks
    width = astronaut.shape[1]
    expected = np.stack([width - ref[:, 0], ref[:, 1]], 1)[[1, 0, 2, 4, 3]]  # left and right swap places
    np.testing.assert_allclose(mirrored, expected, atol=3.0)


def test_rotated_photo_rotates_landmarks(astronaut):
    ref = detect_faces(astronaut)[0].landmarks
    angle = 20.0  # PIL turns counter-clockwise about the image centre
    turned = np.asarray(Image.fromarray(astronaut).rotate(angle, resample=Image.BICUBIC, fillcolor=(128, 128, 128)))
    found = detect_faces(turned)[0].landmarks
    c = np.array(astronaut.shape[1::-1]) / 2
    a = math.radians(angle)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # y points down
    expected = (ref - c) @ rot.T + c
    np.testing.assert_allclose(found[[0, 1, 3, 4]], expected[[0, 1, 3, 4]], atol=4.0)


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_sideways_photo_is_searched_turned(astronaut, turns):
    ref = detect_faces(astronaut)[0]
    faces = detect_faces(np.ascontiguousarray(np.rot90(astronaut, turns)))
    assert len(faces) == 1
    p, box = ref.landmarks, np.array(ref.box).reshape(2, 2)
    width, height = astronaut.shape[1], astronaut.shape[0]
    for _ in range(turns):  # one counter-clockwise quarter turn: (x, y) -> (y, width - x)
        p, box = (np.stack([q[:, 1], width - q[:, 0]], 1) for q in (p, box))
        width, height = height, width
    np.testing.assert_allclose(faces[0].landmarks, p, atol=1e-6)  # the same pixels, found the same way
    np.testing.assert_allclose(faces[0].box, np.concatenate([box.min(0), box.max(0)]), atol=1e-6)


def test_large_photo_within_budget(astronaut):
    scale = 6.25  # 1600 x 1600: searched in a reduced copy, the pyramid starting from a larger minimum face
    big = np.asarray(Image.fromarray(astronaut).resize((1600, 1600), Image.BICUBIC))
    assert big.shape[0] * big.shape[1] > mtcnn.WORK_PIXELS
    start = time.perf_counter()
    faces = detect_faces(big)
    elapsed = time.perf_counter() - start
    assert len(faces) == 1
    np.testing.assert_allclose(_points(faces[0]), np.concatenate([EYES, MOUTH]) * scale, atol=3.0 * scale)
    assert elapsed < 3.0  # about 0.3 s on one core; a pyramid without the budget takes several times longer
    assert mtcnn.pyramid_scales(1500, 1500, min_face=20)[0] ** 2 * 1500 ** 2 <= mtcnn.PYRAMID_BUDGET * 1.0001


def test_min_face_skips_smaller_faces(astronaut):
    assert len(detect_faces(astronaut, min_face=20)) == 1
    assert detect_faces(astronaut, min_face=200) == []


def test_faces_smaller_than_the_window_by_upsampling(astronaut):
    tiny = np.asarray(Image.fromarray(astronaut).resize((32, 32), Image.LANCZOS))  # the face is about 12 px
    assert mtcnn.pyramid_scales(32, 32, min_face=8)[0] == pytest.approx(1.5)
    faces = detect_faces(tiny, min_face=8)  # the pyramid starts above 1:1
    assert len(faces) == 1
    np.testing.assert_allclose(_points(faces[0]), np.concatenate([EYES, MOUTH]) / 8, atol=1.5)


def test_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], dtype=float)
    scores = np.array([0.9, 0.95, 0.5, 0.8])
    assert mtcnn.nms(boxes, scores, 0.5).tolist() == [1, 3, 2]  # box 0 overlaps box 1 by IoU 0.68
    assert mtcnn.nms(boxes, scores, 0.5, mode="min").tolist() == [1, 2]  # box 3 lies inside box 1


def test_bad_arguments(astronaut):
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(astronaut.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        detect_faces(astronaut[:, :, 0])
    with pytest.raises(ValueError, match="unknown face detector 'haar'"):
        detect_faces(astronaut, detector="haar")
    with pytest.raises(ValueError, match="min_face"):
        detect_faces(astronaut, min_face=0)


def test_missing_package_says_what_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mtcnn.importlib.metadata, "distribution", missing)
    with pytest.raises(DetectorUnavailable, match="pip install --no-deps facenet-pytorch==2.6.0"):
        mtcnn.weight_files()
    assert "mtcnn" not in available_detectors()
    with pytest.raises(DetectorUnavailable, match="pip install"):
        dlib68.model_file()


def test_bad_weight_files(tmp_path):
    files = mtcnn.weight_files()
    sd = torch.load(files["rnet"], weights_only=True)
    del sd["dense5_2.bias"]
    torch.save(sd, tmp_path / "rnet.pt")
    with pytest.raises(ModelFormatError, match="rnet.*dense5_2.bias"):
        mtcnn.load_mtcnn({**files, "rnet": tmp_path / "rnet.pt"})
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ModelFormatError, match="onet.*list"):
        mtcnn.load_mtcnn({**files, "onet": tmp_path / "list.pt"})
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelFormatError, match="pnet: cannot read"):
        mtcnn.load_mtcnn({**files, "pnet": tmp_path / "junk.pt"})


def test_widths_read_from_the_weights():
    """The networks are built from the state dict's shapes, so a narrower P-Net loads and runs."""
    sd = {"conv1.weight": torch.zeros(4, 3, 3, 3), "conv1.bias": torch.zeros(4), "prelu1.weight": torch.zeros(4),
          "conv2.weight": torch.zeros(6, 4, 3, 3), "conv2.bias": torch.zeros(6), "prelu2.weight": torch.zeros(6),
          "conv3.weight": torch.zeros(8, 6, 3, 3), "conv3.bias": torch.zeros(8), "prelu3.weight": torch.zeros(8),
          "conv4_1.weight": torch.zeros(2, 8, 1, 1), "conv4_1.bias": torch.tensor([0.0, 1.0]),
          "conv4_2.weight": torch.zeros(4, 8, 1, 1), "conv4_2.bias": torch.zeros(4)}
    net = mtcnn._build("pnet", sd)
    prob, reg = net(torch.zeros(1, 3, 16, 20))
    assert prob.shape == (1, 3, 5) and reg.shape == (1, 4, 3, 5)  # 12x12 windows at stride 2
    torch.testing.assert_close(prob, torch.full_like(prob, 1 / (1 + math.exp(-1.0))))


@pytest.mark.skipif("dlib68" not in available_detectors(), reason="dlib-bin and face_recognition_models not installed")
def test_dlib68_known_answer(astronaut):
    faces = detect_faces(astronaut, detector="dlib68")
    face = max(faces, key=lambda f: f.score)
    assert face.points68.shape == (68, 2)
    np.testing.assert_allclose(face.landmarks[:2], EYES, atol=3.0)
    np.testing.assert_allclose(face.landmarks[3:], MOUTH, atol=3.0)
    np.testing.assert_allclose(face.landmarks[0], face.points68[36:42].mean(0))


@pytest.mark.skipif("dlib68" in available_detectors(), reason="dlib is installed")
def test_dlib68_unavailable_says_what_to_install(astronaut):
    with pytest.raises(DetectorUnavailable, match="dlib-bin"):
        detect_faces(astronaut, detector="dlib68")
