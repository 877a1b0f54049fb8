"""The embedded default models in ``assets/``: where they are, checked against their manifests' sha256.

Every embedded file ``assets/<name>.pt`` has a manifest ``assets/<name>.json`` (sha256, the command and data
seed that produced it, training time, hardware, quality figures). A missing file or a checksum mismatch is a
clear ``ModelFormatError``, never a silently different model.
"""
from __future__ import annotations

import json
from pathlib import Path

from engine.errors import ModelFormatError
from engine.files.storage import file_sha256

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_GENERATOR = "generator.pt"
DEFAULT_ESTIMATOR = "estimator.pt"
DEFAULT_FLOW = "flow.pt"
DEFAULT_ENCODER = "encoder.pt"
DEFAULT_DOMAINS = "domains.pt"
DEFAULT_BICYCLEGAN = "bicyclegan.pt"
DEFAULT_TUNIT = "tunit.pt"
DEFAULT_DIRECTIONS = "directions.pt"

_verified: dict[tuple[str, int, int], str] = {}


def manifest(name: str, *, folder: Path = ASSETS_DIR) -> dict | None:
    """The manifest ``<folder>/<stem>.json`` of an embedded file, or None."""
    path = folder / f"{Path(name).stem}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def verified_asset(name: str, *, folder: Path = ASSETS_DIR, what: str = "embedded model") -> Path:
    """Path of ``folder/name`` after checking it exists, has a manifest, and matches the manifest's sha256."""
    path = folder / name
    info = manifest(name, folder=folder)
    if not path.is_file():
        if info is None:
            raise ModelFormatError(f"there is no {what} ({path}) in this checkout yet; pass a model file explicitly")
        raise ModelFormatError(f"the {what} {path} is missing; restore it with git (git checkout -- {path.name}) "
                               "or pass a model file explicitly")
    if info is None or "sha256" not in info:
        raise ModelFormatError(f"the {what} {path} has no manifest with a sha256 ({path.stem}.json)")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _verified.get(key) or file_sha256(path)
    if digest != info["sha256"]:
        raise ModelFormatError(f"the {what} {path} does not match its manifest (sha256 {digest[:12]}..., expected "
                               f"{info['sha256'][:12]}...): the file was changed or damaged")
    _verified[key] = digest
    return path


def default_generator_path() -> Path:
    """The embedded default StyleGAN2 generator (verified)."""
    return verified_asset(DEFAULT_GENERATOR, what="embedded default generator")


def default_estimator_path() -> Path:
    """The embedded attribute estimator (verified)."""
    return verified_asset(DEFAULT_ESTIMATOR, what="embedded attribute estimator")


def default_flow_path() -> Path:
    """The embedded StyleFlow flow for the default generator (verified)."""
    return verified_asset(DEFAULT_FLOW, what="embedded attribute flow")


def default_directions_path() -> Path:
    """The embedded edit directions measured on the default generator (verified)."""
    return verified_asset(DEFAULT_DIRECTIONS, what="embedded edit directions")


def default_encoder_path() -> Path:
    """The embedded inversion encoder for the default generator (verified)."""
    return verified_asset(DEFAULT_ENCODER, what="embedded inversion encoder")


def default_domains_path() -> Path:
    """The embedded domain classifier of the synthetic world's domains (verified)."""
    return verified_asset(DEFAULT_DOMAINS, what="embedded domain classifier")
