"""MTCNN (Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks").

A cascade of three small networks: P-Net slides over an image pyramid and proposes 12x12 windows, R-Net rescores
and refines them on 24x24 crops, O-Net does the same on 48x48 crops and adds five landmarks (eye centres, nose
tip, mouth corners). Every stage ends with non-maximum suppression (NMS).

The weights are the MIT-licensed port of the authors' Caffe models that ships inside the PyPI wheel
``facenet-pytorch==2.6.0`` (``facenet_pytorch/data/{pnet,rnet,onet}.pt``, plain state dicts). That package
itself is never imported (it needs torchvision); only its data files are read, with ``weights_only=True``.

Conventions of those weights, established by probing them on scikit-image's astronaut photo (a face crop
scores 0.999 at R-Net and 1.000 at O-Net, a background crop 0.012 and 0.000, only with these choices):
RGB input normalised as ``(x - 127.5) / 128``, laid out [B, 3, H, W] with no transposition; P-Net's first max
pool has kernel 2, stride 2; the dense layers read the last feature map flattened in (W, H, C) order; O-Net's
landmarks come as x1..x5 then y1..y5, relative to the box; box regressions are (dx0, dy0, dx1, dy1) in box
widths/heights. Thresholds 0.6 / 0.7 / 0.7 and the pyramid factor 0.709 are the paper's.

Coordinates are continuous photo pixels: pixel (row i, column j) covers [j, j+1) x [i, i+1).
"""
from __future__ import annotations

import functools
import importlib.metadata
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from engine.errors import DetectorUnavailable, ModelFormatError, describe

PACKAGE = "facenet-pytorch"
INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"
THRESHOLDS = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net face probability
PYRAMID_FACTOR = 0.709  # successive pyramid scales (about 1/sqrt(2))
CELL, STRIDE = 12, 2  # P-Net's window and step in pyramid pixels
PYRAMID_BUDGET = 600_000  # pixels of the pyramid's largest level; bigger photos search from a larger minimum face
WORK_PIXELS = 4 * PYRAMID_BUDGET  # larger photos are searched at this size (smallest face searched >= 24 px there)


def _flatten_whc(t: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, W*H*C] in the (W, H, C) order the dense layers were trained on."""
    return t.permute(0, 3, 2, 1).reshape(t.shape[0], -1)


class PNet(nn.Module):
    """Proposal network: fully convolutional, one 12x12 window per output cell, stride 2."""

    def __init__(self, channels: tuple[int, int, int]):
        super().__init__()
        c1, c2, c3 = channels
        self.conv1, self.prelu1 = nn.Conv2d(3, c1, 3), nn.PReLU(c1)
        self.conv2, self.prelu2 = nn.Conv2d(c1, c2, 3), nn.PReLU(c2)
        self.conv3, self.prelu3 = nn.Conv2d(c2, c3, 3), nn.PReLU(c3)
        self.conv4_1 = nn.Conv2d(c3, 2, 1)
        self.conv4_2 = nn.Conv2d(c3, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] normalised -> face probability [B, H', W'], box regression [B, 4, H', W']."""
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return F.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network on 24x24 crops."""

    size = 24

    def __init__(self, channels: tuple[int, int, int], hidden: int):
        super().__init__()
        c1, c2, c3 = channels
        self.conv1, self.prelu1 = nn.Conv2d(3, c1, 3), nn.PReLU(c1)
        self.conv2, self.prelu2 = nn.Conv2d(c1, c2, 3), nn.PReLU(c2)
        self.conv3, self.prelu3 = nn.Conv2d(c2, c3, 2), nn.PReLU(c3)
        self.dense4, self.prelu4 = nn.Linear(c3 * 3 * 3, hidden), nn.PReLU(hidden)  # 24 -> 22 -> 11 -> 9 -> 4 -> 3
        self.dense5_1 = nn.Linear(hidden, 2)
        self.dense5_2 = nn.Linear(hidden, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, 24, 24] -> probability [B], box regression [B, 4]."""
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return F.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output network on 48x48 crops: probability, box regression and five landmarks."""

    size = 48

    def __init__(self, channels: tuple[int, int, int, int], hidden: int):
        super().__init__()
        c1, c2, c3, c4 = channels
        self.conv1, self.prelu1 = nn.Conv2d(3, c1, 3), nn.PReLU(c1)
        self.conv2, self.prelu2 = nn.Conv2d(c1, c2, 3), nn.PReLU(c2)
        self.conv3, self.prelu3 = nn.Conv2d(c2, c3, 3), nn.PReLU(c3)
        self.conv4, self.prelu4 = nn.Conv2d(c3, c4, 2), nn.PReLU(c4)
        self.dense5, self.prelu5 = nn.Linear(c4 * 3 * 3, hidden), nn.PReLU(hidden)  # 48->46->23->21->10->8->4->3
        self.dense6_1 = nn.Linear(hidden, 2)
        self.dense6_2 = nn.Linear(hidden, 4)
        self.dense6_3 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, 3, 48, 48] -> probability [B], box regression [B, 4], landmarks [B, 10] (x1..x5, y1..y5)."""
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return F.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


@dataclass(frozen=True)
class MTCNN:
    """The three networks, in eval mode, on the CPU."""

    pnet: PNet
    rnet: RNet
    onet: ONet


def _shape(sd: dict, key: str, name: str) -> tuple[int, ...]:
    if key not in sd or not isinstance(sd[key], torch.Tensor):
        raise ModelFormatError(f"{name}: no tensor {key!r} in the state dict (keys: {sorted(sd)[:8]}...)")
    return tuple(sd[key].shape)


def _build(name: str, sd: dict) -> nn.Module:
    """One network with its widths read from the state dict; strict loading names any missing or extra key."""
    if name == "pnet":
        net = PNet(tuple(_shape(sd, f"conv{i}.weight", name)[0] for i in (1, 2, 3)))
    elif name == "rnet":
        net = RNet(tuple(_shape(sd, f"conv{i}.weight", name)[0] for i in (1, 2, 3)),
                   _shape(sd, "dense4.weight", name)[0])
    else:
        net = ONet(tuple(_shape(sd, f"conv{i}.weight", name)[0] for i in (1, 2, 3, 4)),
                   _shape(sd, "dense5.weight", name)[0])
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:2]
        raise ModelFormatError(f"{name}: the state dict does not fit MTCNN's {name}: {' '.join(first)}") from exc
    return net.eval()


def weight_files() -> dict[str, Path]:
    """The three weight files inside the installed facenet-pytorch wheel; DetectorUnavailable if it is missing."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise DetectorUnavailable(f"the MTCNN face detector needs its weights from {PACKAGE}: {INSTALL_HINT}") from None
    files = {n: Path(dist.locate_file(f"facenet_pytorch/data/{n}.pt")) for n in ("pnet", "rnet", "onet")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DetectorUnavailable(f"{PACKAGE} is installed but lacks {', '.join(missing)}; reinstall: {INSTALL_HINT}")
    return files


def load_mtcnn(files: dict[str, Path] | None = None) -> MTCNN:
    """Load the cascade from ``files`` (name -> path; default ``weight_files()``)."""
    files = weight_files() if files is None else files
    nets = {}
    for name in ("pnet", "rnet", "onet"):
        try:
            sd = torch.load(files[name], map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
            raise ModelFormatError(f"{name}: cannot read {files[name]}: {exc}") from exc
        if not isinstance(sd, dict):
            raise ModelFormatError(f"{name}: {files[name]} holds {describe(sd)}, expected a state dict")
        nets[name] = _build(name, sd)
    return MTCNN(**nets)


@functools.lru_cache(maxsize=1)
def default_mtcnn() -> MTCNN:
    """The cascade from the installed wheel, loaded once per process."""
    return load_mtcnn()


# ---- boxes ----

def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, *, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression. boxes [N, 4] (x0, y0, x1, y1), scores [N] -> kept indices, best first.

    ``mode="union"`` compares intersection over union; ``"min"`` intersection over the smaller box, which also
    removes a small box lying inside a bigger one (used after the last stage).
    """
    order = np.argsort(-scores, kind="stable")
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter <= threshold * np.maximum(denom, 1e-12)]
    return np.asarray(keep, dtype=np.int64)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Move each edge by its regression times the box's size. [N, 4], [N, 4] -> [N, 4]"""
    wh = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    return boxes + reg * wh


def _square(boxes: np.ndarray) -> np.ndarray:
    """The square of side max(w, h) around each box's centre. [N, 4] -> [N, 4]"""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = np.max(boxes[:, 2:] - boxes[:, :2], axis=1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


# ---- image sampling ----

def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * (1.0 / 128.0)


def _mipmap(image: torch.Tensor, smallest: int) -> list[torch.Tensor]:
    """[1, 3, H, W] then 2x2 box-filtered halvings until a side would drop below ``smallest``."""
    levels = [image]
    while min(levels[-1].shape[-2:]) >= 2 * smallest:
        levels.append(F.avg_pool2d(levels[-1], 2, 2, ceil_mode=True, count_include_pad=False))
    return levels


def _crops(levels: list[torch.Tensor], boxes: np.ndarray, size: int) -> torch.Tensor:
    """Resample each square box to size x size (black outside the photo). -> [N, 3, size, size] normalised.

    Each box is read from the mipmap level where it spans at most about 2 pixels per output pixel, so shrinking
    a large box does not alias.
    """
    out = torch.empty(len(boxes), 3, size, size)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    level = np.clip(np.floor(np.log2(np.maximum(side / size, 1.0))).astype(int), 0, len(levels) - 1)
    steps = (torch.arange(size, dtype=torch.float64) + 0.5) / size  # [size] sample positions inside a box
    for lv in np.unique(level):
        idx = np.nonzero(level == lv)[0]
        b = torch.from_numpy(boxes[idx])
        gx = b[:, 0:1] + steps[None] * (b[:, 2:3] - b[:, 0:1])  # [n, size] photo x of sample columns
        gy = b[:, 1:2] + steps[None] * (b[:, 3:4] - b[:, 1:2])  # [n, size] photo y of sample rows
        src = levels[lv]
        # photo coordinate u lies at u / 2**lv on this level; grid_sample wants [-1, 1] across its real size
        nx = (gx / 2 ** lv) * (2.0 / src.shape[-1]) - 1.0
        ny = (gy / 2 ** lv) * (2.0 / src.shape[-2]) - 1.0
        grid = torch.stack([nx[:, None, :].expand(-1, size, -1), ny[:, :, None].expand(-1, -1, size)], dim=-1)
        out[torch.from_numpy(idx)] = F.grid_sample(src.expand(len(idx), -1, -1, -1), grid.float(), mode="bilinear",
                                                   padding_mode="zeros", align_corners=False)
    return _normalise(out)


# ---- the cascade ----

def pyramid_scales(height: int, width: int, *, min_face: float, budget: int = PYRAMID_BUDGET) -> list[float]:
    """Scales (pyramid pixels per photo pixel) at which P-Net's 12-pixel window covers faces from ``min_face``
    up to the photo's shorter side. The largest level is kept within ``budget`` pixels, which raises the smallest
    face searched for in very large photos."""
    first = min(CELL / max(float(min_face), 1.0), math.sqrt(budget / (height * width)))
    scales, s = [], first
    while min(height, width) * s >= CELL:
        scales.append(s)
        s *= PYRAMID_FACTOR
    return scales


@torch.no_grad()
def detect(model: MTCNN, pixels: np.ndarray, *, min_face: float = 20.0,
           thresholds: tuple[float, float, float] = THRESHOLDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the cascade on a uint8 photo [H, W, 3].

    Returns boxes [N, 4] (x0, y0, x1, y1), scores [N] and landmarks [N, 5, 2] (x, y) in photo pixels, in no
    particular order. Faces smaller than ``min_face`` pixels (and, in photos above ``PYRAMID_BUDGET`` pixels, a
    proportionally larger size) are not searched for. Photos above ``WORK_PIXELS`` are searched in a reduced copy.
    """
    height, width = pixels.shape[:2]
    if height * width > WORK_PIXELS:  # a smaller copy (in uint8) keeps memory flat; coordinates are scaled back
        shrink = math.sqrt(WORK_PIXELS / (height * width))
        size = (max(CELL, round(width * shrink)), max(CELL, round(height * shrink)))
        small = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize(size, Image.Resampling.BOX))
        boxes, scores, points = detect(model, small, min_face=min_face * shrink, thresholds=thresholds)
        sx, sy = width / size[0], height / size[1]
        return boxes * [sx, sy, sx, sy], scores, points * [sx, sy]
    empty = np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
    image = torch.from_numpy(np.array(pixels, dtype=np.float32)).permute(2, 0, 1)[None]  # [1, 3, H, W] 0..255

    levels = _mipmap(image, CELL)

    # stage 1: P-Net over the pyramid, each level resized from the smallest mipmap level still larger than it
    found = []
    for s in pyramid_scales(height, width, min_face=min_face):
        h, w = max(CELL, round(height * s)), max(CELL, round(width * s))
        src = ([lv for lv in levels if lv.shape[-2] >= h and lv.shape[-1] >= w] or levels[:1])[-1]
        level = F.interpolate(src, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        prob, reg = model.pnet(_normalise(level))
        iy, ix = torch.nonzero(prob[0] >= thresholds[0], as_tuple=True)
        if len(iy) == 0:
            continue
        sy, sx = h / height, w / width  # exact per-axis scale after rounding
        cells = torch.stack([ix * STRIDE / sx, iy * STRIDE / sy, (ix * STRIDE + CELL) / sx,
                             (iy * STRIDE + CELL) / sy], dim=1).double().numpy()
        score = prob[0, iy, ix].double().numpy()
        offsets = reg[0][:, iy, ix].T.double().numpy()
        keep = nms(cells, score, 0.5)
        found.append((cells[keep], score[keep], offsets[keep]))
    if not found:
        return empty
    boxes, scores, offsets = (np.concatenate(parts) for parts in zip(*found))
    keep = nms(boxes, scores, 0.7)
    boxes = _square(_regress(boxes[keep], offsets[keep]))

    # stage 2: R-Net
    prob, reg = model.rnet(_crops(levels, boxes, RNet.size))
    mask = (prob >= thresholds[1]).numpy()
    if not mask.any():
        return empty
    boxes, scores, offsets = boxes[mask], prob.numpy()[mask].astype(np.float64), reg.numpy()[mask].astype(np.float64)
    keep = nms(boxes, scores, 0.7)
    boxes = _square(_regress(boxes[keep], offsets[keep]))

    # stage 3: O-Net
    prob, reg, marks = model.onet(_crops(levels, boxes, ONet.size))
    mask = (prob >= thresholds[2]).numpy()
    if not mask.any():
        return empty
    boxes, scores = boxes[mask], prob.numpy()[mask].astype(np.float64)
    offsets, marks = reg.numpy()[mask].astype(np.float64), marks.numpy()[mask].astype(np.float64)
    wh = boxes[:, 2:] - boxes[:, :2]  # [N, 2]
    points = np.stack([boxes[:, None, 0] + marks[:, :5] * wh[:, None, 0],
                       boxes[:, None, 1] + marks[:, 5:] * wh[:, None, 1]], axis=2)  # [N, 5, 2]
    boxes = _regress(boxes, offsets)
    keep = nms(boxes, scores, 0.7, mode="min")
    return boxes[keep], scores[keep], points[keep]
