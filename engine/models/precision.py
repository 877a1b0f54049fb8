"""Numeric precisions a generator runs in: the names users choose, what ``auto`` means on a device, and whether a
reduced precision keeps a model's images, measured against float32 on the 8-bit images a user sees.

A reduced precision (float16, bfloat16) is *visible* for a model when, over ``CHECK_SAMPLES`` faces rendered at
both precisions (seeded, no truncation, stored noise, one face per call as the editor renders), the 8-bit images
differ by more than ``MEAN_LEVELS`` levels of 255 on average (a shift of tone over the whole face), or more than
0.1 % of the pixel values differ by more than ``P999_LEVELS`` levels (a patch that could be seen), or any value by
more than ``MAX_LEVELS`` (a speck), or the reduced image holds non-finite values (an overflow). Measured on the
embedded default generator (64 px, CPU): float16 mean 0.04, at most 1 level (PSNR 62 dB); bfloat16 mean 0.33, at
most 7 levels, 3 at the 99.9th percentile (PSNR 52 dB): both faithful; the tests keep these figures.
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from engine.errors import PrecisionError
from engine.files.images import to_uint8
from engine.models.stylegan2 import REDUCED_DTYPES

PRECISIONS = ("auto", "float32", "float16", "bfloat16")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PRECISION_HELP = ("auto, float32, float16 or bfloat16 (default auto: float16 on a CUDA GPU where it keeps the images "
                  "unchanged to the eye, float32 elsewhere; float16 is for GPUs)")
MEAN_LEVELS = 1.0  # mean |difference| of the 8-bit images, in levels of 255
P999_LEVELS = 8.0  # 99.9th percentile of |difference|
MAX_LEVELS = 32.0  # largest |difference|
log = logging.getLogger(__name__)

AUTO = {"cuda": torch.float16}  # device type -> what 'auto' runs generators in there (float32 elsewhere)
CHECK_SAMPLES = 4
CHECK_SEED = 0xF16


def parse_precision(name: str | None) -> str:
    """A checked precision name ('' or None count as 'auto'); ``PrecisionError`` names the choices otherwise."""
    text = (name or "auto").strip().lower()
    if text not in PRECISIONS:
        raise PrecisionError(f"The precision {name!r} is not one this program runs in. Choose one of: "
                             f"{', '.join(PRECISIONS)}.")
    return text


def precision_dtype(name: str | None, device: torch.device | str) -> torch.dtype:
    """The dtype a precision name asks for on ``device``: 'auto' is float16 on CUDA, float32 elsewhere (the
    CPU's half-precision convolutions are slower than its float32 ones)."""
    text = parse_precision(name)
    if text == "auto":
        return AUTO.get(torch.device(device).type, torch.float32)
    return DTYPES[text]


def precision_name(dtype: torch.dtype) -> str:
    """'float32', 'float16', 'bfloat16' or 'float64'."""
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class PrecisionReport:
    """How a reduced-precision generator's 8-bit images differ from float32's: levels of 255 (max, mean, 99.9th
    percentile), PSNR in dB (inf when identical), whether every value was finite, over ``samples`` faces."""

    precision: str
    samples: int
    max_levels: float
    mean_levels: float
    p999_levels: float
    psnr_db: float
    finite: bool

    @property
    def visible(self) -> bool:
        """The difference could be seen (the thresholds in this module's docstring)."""
        return (not self.finite or self.mean_levels > MEAN_LEVELS or self.p999_levels > P999_LEVELS
                or self.max_levels > MAX_LEVELS)

    def summary(self) -> str:
        """The figures in words, e.g. 'float16 differs from float32 by 0.04 levels of 255 on average, 1 at most
        (PSNR 61.8 dB, 4 faces)'."""
        if not self.finite:
            return f"{self.precision} overflows: its images hold infinite or undefined values"
        psnr = "identical" if math.isinf(self.psnr_db) else f"PSNR {self.psnr_db:.1f} dB"
        return (f"{self.precision} differs from float32 by {self.mean_levels:.2f} levels of 255 on average, "
                f"{self.max_levels:.0f} at most, {self.p999_levels:.0f} at the 99.9th percentile ({psnr}, "
                f"{self.samples} faces)")

    def to_dict(self) -> dict:
        return {"precision": self.precision, "samples": self.samples, "max_levels": self.max_levels,
                "mean_levels": self.mean_levels, "p999_levels": self.p999_levels,
                "psnr_db": None if math.isinf(self.psnr_db) else self.psnr_db, "finite": self.finite,
                "visible": self.visible}


def compare_images(reference: np.ndarray, candidate: np.ndarray, *, precision: str, finite: bool = True
                   ) -> PrecisionReport:
    """The report for two stacks of uint8 images of the same shape (candidate at ``precision``)."""
    d = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    mse = float(np.mean(d * d))
    return PrecisionReport(precision=precision, samples=int(reference.shape[0]), max_levels=float(d.max()),
                           mean_levels=float(d.mean()), p999_levels=float(np.quantile(d, 0.999)),
                           psnr_db=10 * math.log10(255.0**2 / mse) if mse > 0 else math.inf, finite=finite)


@torch.no_grad()
def measure_precision(reference, candidate, *, samples: int = CHECK_SAMPLES, seed: int = CHECK_SEED
                      ) -> PrecisionReport:
    """Render ``samples`` seeded faces with the float32 generator ``reference`` and with ``candidate`` (the same
    weights at a reduced precision, on the same device), one face per call, and compare their 8-bit images."""
    z = torch.randn(samples, reference.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    ws = reference.mapping(z.to(reference.w_avg.device))  # [N, num_ws, w_dim], float32: the same styles for both
    ref, got, finite = [], [], True
    for i in range(samples):
        img = candidate.synthesis(ws[i:i + 1], noise_mode="const")
        finite = finite and bool(torch.isfinite(img).all())
        ref.append(to_uint8(reference.synthesis(ws[i:i + 1], noise_mode="const")))
        got.append(to_uint8(torch.nan_to_num(img.float())))
    return compare_images(np.concatenate(ref), np.concatenate(got), precision=precision_name(candidate.precision),
                          finite=finite)


def at_precision(G, dtype: torch.dtype, *, device: torch.device | str = "cpu"):
    """The float32 generator ``G`` on ``device`` at ``dtype`` (float32, float64, or float16 / bfloat16 as NVIDIA's
    mixed precision, ``Generator.to_precision``). A reduced precision is first measured against ``G``'s float32
    images on ``device`` (``measure_precision``) and refused with a ``PrecisionError`` that gives the figures and
    the precisions to use instead when its difference would be visible; the module returned carries the
    measurement as ``precision_report`` (None at float32 / float64, where ``G`` itself is converted and returned).
    A reduced precision is applied to a copy: ``G`` stays float32 (on ``device``)."""
    if dtype not in (torch.float32, torch.float64) + REDUCED_DTYPES:
        raise PrecisionError(f"A generator runs in float32, float64, float16 or bfloat16, not in "
                             f"{precision_name(dtype)}.")
    G = G.to(device)
    if dtype not in REDUCED_DTYPES:
        G.to_precision(dtype).precision_report = None
        return G
    candidate = copy.deepcopy(G).to_precision(dtype)
    report = measure_precision(G, candidate)
    if report.visible:
        raise PrecisionError(_refusal(G, report, dtype))
    candidate.precision_report = report
    return candidate


def chosen_precision(G, name: str | None, device: torch.device | str):
    """The float32 generator ``G`` on ``device`` at the precision a user chose by name (``precision_dtype``). A named
    reduced precision whose images would differ visibly is refused (``at_precision``); with 'auto' such a model
    runs in float32 instead (logged), so 'auto' never changes what a model draws. A named float16 on the CPU is
    refused: the CPU has no fast float16 convolutions (measured on config-f: 20 times float32's time at 64 px, 65
    times at 256 px), and its float32 check of a 1024 px model would take many minutes."""
    if parse_precision(name) == "float16" and torch.device(device).type == "cpu":
        raise PrecisionError("float16 is for GPUs: on the CPU its convolutions run 20 to 65 times slower than "
                             "float32's. Use float32 or bfloat16 on the CPU.")
    try:
        return at_precision(G, precision_dtype(name, device), device=device)
    except PrecisionError as e:
        if parse_precision(name) != "auto":
            raise
        log.warning("%s Running it in float32.", e)
        return at_precision(G, torch.float32, device=device)


def _refusal(G, report: PrecisionReport, dtype: torch.dtype) -> str:
    """Why ``dtype`` is refused for ``G`` and what to use instead: float32, and the other reduced precision when it
    keeps this model's images (measured here)."""
    name = precision_name(dtype)
    instead = "float32"
    for other in REDUCED_DTYPES:
        if other != dtype and not measure_precision(G, copy.deepcopy(G).to_precision(other)).visible:
            instead = f"{precision_name(other)} (it keeps this model's images) or float32"
    return (f"{name} would change this model's images visibly: {report.summary()}. Use {instead} for this "
            "model.")


__all__ = ["PRECISIONS", "DTYPES", "PRECISION_HELP", "PrecisionReport", "parse_precision", "precision_dtype",
           "precision_name", "measure_precision", "compare_images", "at_precision",
           "chosen_precision"]
