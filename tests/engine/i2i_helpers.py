"""Shared by the BicycleGAN and TUNIT tests: tolerances, the shared ``i2i`` fixtures and released-layout manifests,
a fixture case's inputs and expected outputs, and zero-filled state dicts of a manifest's layout."""
from __future__ import annotations

import json
from pathlib import Path

import torch

# The README's tiers: about 1e-5 for a float32 re-implementation, 1e-4 for losses; spread: docs/FIXTURE_SPREAD.md.
TOL = dict(rtol=1e-5, atol=3e-5)  # 2x the max output spread over native/avx2/default x 1/2 threads (1.4e-5, G, default)
LOSS_TOL = dict(rtol=1e-4, atol=1e-4)  # the README's loss tier; max spread measured 1.9e-6 (50x margin)


def load_fixture(reference_dir: Path, name: str) -> dict:
    """The shared fixture ``i2i/<name>`` (weights, configs and cases)."""
    return torch.load(reference_dir / "i2i" / name, weights_only=True)


def load_manifests(reference_dir: Path, family: str) -> dict:
    """The released full-size layouts of ``family`` (``bicyclegan`` or ``tunit``): ``{name: {"keys", ...}}``."""
    return json.loads((reference_dir / "i2i" / "manifests_i2i.json").read_text())[family]


def fixture_case(fx: dict, name: str) -> tuple[dict, dict]:
    """``(inputs, expected)`` of the fixture's case ``name``."""
    c = fx["cases"][name]
    return c["inputs"], c["expected"]


def manifest_entry(manifests: dict, prefix: str) -> dict:
    """The first manifest entry whose name starts with ``prefix``."""
    return next(v for k, v in manifests.items() if k.startswith(prefix))


def zeros(keys: dict) -> dict:
    """A state dict of zeros with the manifest's shapes (``num_batches_tracked`` counters as int64)."""
    return {k: torch.zeros(shape, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
            for k, shape in keys.items()}
