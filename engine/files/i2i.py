"""Image-to-image back-ends for the editor: BicycleGAN (one input, many outputs from codes z) and TUNIT (the style
of a reference image or of a discovered cluster), behind one loader and one input preparation.

``load_i2i(path)`` reads any file or folder the two converters read (released ``latest_net_G.pth`` /
``latest_net_E.pth`` folders or a lone ``latest_net_G.pth``, with the ``opt.txt`` their training wrote beside them;
TUNIT ``model_<epoch>.ckpt`` or training folders; the project's own files) and tells which method it is.
``fit_input`` brings an image to the size the model takes (centre square, resampled) and says so when it had to;
``line_drawing`` turns a face into dark lines on white (XDoG) for a model whose inputs are line
drawings (the embedded BicycleGAN translates ``edges`` -> ``photo``). Sampling is seeded: sample ``i`` of a strip
that starts at seed ``s`` uses ``code_for_seed(nz, s + i)``, so any sample is reproduced from its seed alone.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.convert.bicyclegan import FORMAT as BICYCLEGAN_FORMAT
from engine.convert.bicyclegan import RELEASED_FILES, load_bicyclegan, load_bicyclegan_generator, options_beside
from engine.convert.i2i_common import read_source
from engine.convert.tunit import CHECKPOINT_LIST, NETWORK_KEYS, load_tunit
from engine.errors import ModelFormatError
from engine.files.guard import refuse_broken_files
from engine.models import bicyclegan, tunit
from engine.models.ops import gaussian_blur
from engine.models.tunit import FORMAT as TUNIT_FORMAT

METHODS = ("bicyclegan", "tunit")
METHOD_NAMES = {"bicyclegan": "BicycleGAN", "tunit": "TUNIT"}
LINE_DOMAINS = ("edges",)  # source domains whose inputs are line drawings
RELEASED_SIZE = 256  # the released BicycleGAN models (edges2shoes, facades, …) work at 256 px
# XDoG (Winnemoeller et al. 2012) tuned so a 64 px face looks like the synthetic `edges` domain; sigma in widths
LINE_SIGMA, LINE_K, LINE_P, LINE_EPS, LINE_PHI = 0.6 / 64, 1.6, 0.99, -0.01, 50.0
_LUMA = (0.299, 0.587, 0.114)

log = logging.getLogger(__name__)


@dataclass
class I2IModel:
    """A loaded image-to-image model (networks in eval mode, float32).

    ``method``: ``bicyclegan`` or ``tunit``; ``size``: the square side its inputs are brought to; ``source_domain``
    / ``target_domain``: what it translates from and to when the file says (None otherwise); ``styles``: TUNIT's
    mean style code per cluster ``{k: [sty_dim]}`` (empty when the file has none: reference images only);
    ``cluster_names``: the domain each cluster mostly holds, when the file says; ``recipe``: the face alignment
    of its training images (``engine.photos.align.face_transform``)."""

    method: str
    networks: dict
    size: int
    label: str
    source_domain: str | None = None
    target_domain: str | None = None
    styles: dict[int, torch.Tensor] = field(default_factory=dict)
    cluster_names: dict[int, str] = field(default_factory=dict)
    recipe: str = "ffhq"  # how faces are cut out of photos for it: "synthetic" for the editor's own models

    @property
    def name(self) -> str:
        return METHOD_NAMES[self.method]

    @property
    def nz(self) -> int:
        """BicycleGAN's code size (0 for TUNIT and for a code-less BicycleGAN)."""
        return self.networks["G"].cfg.nz if self.method == "bicyclegan" else 0

    @property
    def has_encoder(self) -> bool:
        """Whether a reference image can give the code (BicycleGAN E) or style (TUNIT C)."""
        return "E" in self.networks if self.method == "bicyclegan" else True

    @property
    def wants_lines(self) -> bool:
        """Whether face images should be turned into line drawings first (the model translates from ``edges``)."""
        return self.source_domain in LINE_DOMAINS

    def cluster_label(self, k: int) -> str:
        name = self.cluster_names.get(k)
        return f"cluster {k} ({name})" if name else f"cluster {k}"

    def to(self, device) -> I2IModel:
        for net in self.networks.values():
            net.to(device)
        self.styles = {k: s.to(device) for k, s in self.styles.items()}
        return self


def _kind_of(obj, where: Path | None) -> str:
    """``bicyclegan`` or ``tunit`` from a loaded file's content (or a folder's listing)."""
    if where is not None and where.is_dir():
        if (where / RELEASED_FILES["G"]).is_file():
            return "bicyclegan"
        if (where / CHECKPOINT_LIST).is_file() or any(where.glob("model_*.ckpt")):
            return "tunit"
        raise ModelFormatError(f"{where}: neither a BicycleGAN folder ({RELEASED_FILES['G']}) nor a TUNIT one "
                               f"({CHECKPOINT_LIST} or model_<epoch>.ckpt)")
    if isinstance(obj, dict):
        fmt = obj.get("format")
        if fmt == BICYCLEGAN_FORMAT:
            return "bicyclegan"
        if fmt == TUNIT_FORMAT:
            return "tunit"
        if any(k in obj for k in NETWORK_KEYS):
            return "tunit"
        keys = [k for k in obj if isinstance(k, str)]
        if keys and all(isinstance(obj[k], torch.Tensor) for k in keys) and \
                any(k.removeprefix("module.").startswith("model.") for k in keys):
            return "bicyclegan"
    raise ModelFormatError("not a BicycleGAN or TUNIT model: expected latest_net_G.pth (or its folder), a TUNIT "
                           "model_<epoch>.ckpt (or its folder), or a bicyclegan.pt / tunit.pt made by this editor")


@refuse_broken_files
def load_i2i(path: str | os.PathLike) -> I2IModel:
    """The BicycleGAN or TUNIT model at ``path`` (file or folder), ready to translate on the CPU."""
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"{path} does not exist")
    obj = None if path.is_dir() else read_source(path, what="image-to-image model")[0]
    kind = _kind_of(obj, path)
    log.info("loading %s: a %s model (%s)", path.name, METHOD_NAMES[kind], "folder" if path.is_dir() else "file")
    extras = (obj.get("extras") or {}) if isinstance(obj, dict) and "format" in obj else {}
    config = extras.get("train_config") or {}
    recipe = "synthetic" if "data_seed" in extras else "ffhq"  # the editor's own trainers draw synthetic faces
    if kind == "bicyclegan":
        if path.is_dir():
            nets = load_bicyclegan(path)
        elif isinstance(obj, dict) and "format" in obj:
            nets = load_bicyclegan(obj)
        else:  # a lone latest_net_G.pth (with the training's opt.txt beside it): codes from seeds only
            nets = {"G": load_bicyclegan_generator(obj, options=options_beside(path), what=path.name)}
        nets = {k: v.float().eval() for k, v in nets.items() if k in ("G", "E")}
        size = int(config.get("size") or 0) or _bicyclegan_size(nets)
        return I2IModel("bicyclegan", nets, size, path.name, extras.get("source_domain"),
                        extras.get("target_domain"), recipe=recipe)
    model = load_tunit(path if path.is_dir() else obj)
    nets = {"G": model.generator.float().eval(), "C": model.style_encoder.float().eval(),
            "C_cluster": model.cluster_net.float().eval()}
    size = int(config.get("size") or 0) or nets["G"].cfg.img_size
    styles = {int(k): torch.as_tensor(v, dtype=torch.float32) for k, v in (extras.get("cluster_styles") or {}).items()}
    names = {int(k): str(v) for k, v in (extras.get("cluster_domain") or {}).items()}
    return I2IModel("tunit", nets, size, path.name, styles=styles, cluster_names=names, recipe=recipe)


def _bicyclegan_size(nets: dict) -> int:
    """A released file does not say its size: the encoder's design size, else the released models' 256 px (on a
    multiple of the U-Net's size)."""
    m = nets["G"].cfg.size_multiple
    size = nets["E"].cfg.image_size if "E" in nets else RELEASED_SIZE
    return max(m, math.ceil(size / m) * m)


def fit_input(image: np.ndarray, size: int) -> tuple[torch.Tensor, str | None]:
    """uint8 [H, W, 3] -> ([1, 3, size, size] in [-1, 1], notice or None). A non-square image keeps its centre
    square; an image of another size is resampled (area when shrinking), and the notice says what was done."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    notice = None
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        image = image[top:top + s, left:left + s]
        notice = f"The input is {w}×{h} px: its centre square was cut out and resized to {size}×{size}, the size " \
                 "this model takes."
    if image.shape[0] != size:
        notice = notice or f"The input is {w}×{h} px: it was resized to {size}×{size}, the size this model takes."
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BOX if image.shape[0] > size
                                                         else Image.Resampling.BICUBIC))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1  # copied: may be read-only
    return x, notice


def line_drawing(x: torch.Tensor) -> torch.Tensor:
    """Dark lines on white from images: XDoG on the luma. x [B, 3, H, W] in [-1, 1] -> [B, 3, H, W] in [-1, 1]
    (the three channels equal)."""
    luma = sum(c * x[:, i:i + 1] for i, c in enumerate(_LUMA)) * 0.5 + 0.5  # [B, 1, H, W] in [0, 1]
    sigma = LINE_SIGMA * x.shape[-1]
    d = gaussian_blur(luma, sigma) - LINE_P * gaussian_blur(luma, sigma * LINE_K)
    e = torch.where(d >= LINE_EPS, torch.ones_like(d), 1 + torch.tanh(LINE_PHI * (d - LINE_EPS)))
    return (e.clamp(0, 1) * 2 - 1).expand(-1, 3, -1, -1).contiguous()


def code_for_seed(nz: int, seed: int) -> torch.Tensor:
    """BicycleGAN's code z ~ N(0, I) of one seed. -> [nz]"""
    return bicyclegan.sample_codes(1, nz, seed=seed)[0]


def sweep_code(nz: int, seed_a: int, seed_b: int, t: float) -> torch.Tensor:
    """The code a fraction ``t`` of the way from seed ``seed_a``'s code to ``seed_b``'s (slerp). -> [nz]"""
    return bicyclegan.slerp(code_for_seed(nz, seed_a), code_for_seed(nz, seed_b), float(t))


def reference_code(model: I2IModel, reference: torch.Tensor) -> torch.Tensor:
    """BicycleGAN: the code E reads from a reference output-domain image; TUNIT: the style C reads from it.
    reference [1, 3, S, S] in [-1, 1] (at ``model.size``) -> [nz] or [sty_dim]"""
    if model.method == "bicyclegan":
        if "E" not in model.networks:
            raise ModelFormatError(f"{model.label} has no encoder (latest_net_E.pth): its codes come from seeds only")
        return bicyclegan.encode(model.networks["E"], reference)[0]
    return tunit.reference_style(model.networks["C"], reference)[0]


def translate(model: I2IModel, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """One input x [1, 3, S, S] in [-1, 1] with N codes (BicycleGAN z [N, nz], TUNIT styles [N, sty_dim]) ->
    [N, 3, S, S] in [-1, 1]."""
    if model.method == "bicyclegan":
        if model.nz == 0:
            return bicyclegan.translate(model.networks["G"], x, None).clamp(-1, 1)
        return bicyclegan.translate(model.networks["G"], x, codes).clamp(-1, 1)
    return tunit.translate(model.networks["G"], x, codes).clamp(-1, 1)


def cluster_style(model: I2IModel, k: int) -> torch.Tensor:
    """TUNIT's mean style of cluster ``k`` -> [sty_dim]."""
    if k not in model.styles:
        have = ", ".join(str(c) for c in sorted(model.styles)) or "none"
        raise ValueError(f"{model.label} has no style for cluster {k} (clusters with styles: {have}); use a "
                         "reference image instead")
    return model.styles[k]


__all__ = ["I2IModel", "load_i2i", "fit_input", "line_drawing", "code_for_seed", "sweep_code", "reference_code",
           "translate", "cluster_style", "METHODS", "METHOD_NAMES"]
