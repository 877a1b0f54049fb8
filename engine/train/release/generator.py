"""The release of a trained StyleGAN2 snapshot as the embedded default generator (``assets/generator.pt``).

``release_generator(snapshot, out_dir)`` reads a snapshot written by ``train stylegan2`` (``RUN/snapshots/
network-KKKKKKkimg.pt`` or the final ``RUN/model.pt``) and writes into ``out_dir``:

* ``generator.pt``: the EMA generator alone (with ``w_avg`` and its stored noise) in the project's format, with
  the snapshot's training metadata; no discriminator, no optimiser state. Its weights equal the snapshot's.
* ``generator-samples.png`` / ``generator-samples-psi0.7.png``: 8 x 8 grids of seeds 0..63 (constant noise).
* ``generator.json``: the manifest (sha256, architecture, the run's training command and data seed, kimg, training
  time, hardware, the release command, the Fréchet figures, the sample grids).

Quality figure: the Fréchet distance in the attribute estimator's feature space between ``n`` real synthetic
``photo`` faces (samples ``0..n-1`` of ``real_seed``, which no training run uses) and ``n`` generated ones (z seeds
``seed..seed+n-1`` drawn like ``generate`` draws them, psi 1, constant noise), both quantised to 8 bits like saved
images. Its floor is the same distance between two disjoint real sets (samples ``0..n-1`` and ``n..2n-1``): what
sampling alone costs at this ``n``. Everything is a pure function of the snapshot and the arguments, so running the
same release twice writes the same files (given the same thread count).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from engine.algorithms.frechet import FeatureStats, frechet_distance, stats_of_batches
from engine.algorithms.latents import seeds_to_z
from engine.assets import DEFAULT_GENERATOR, default_estimator_path
from engine.errors import ModelFormatError
from engine.files.checkpoints import FORMAT, save_generator
from engine.files.images import save_png, to_uint8
from engine.files.loading import load_generator
from engine.files.paths import write_json
from engine.files.storage import file_sha256, read_model_file
from engine.models.estimator import AttributeEstimator, load_estimator
from engine.models.stylegan2 import Generator
from engine.synth import sample_batch
from engine.train.release.estimator import EVAL_SEED
from engine.train.release.manifest import file_facts, hardware
from engine.train.stylegan2 import MODEL_NAME, image_grid

DOMAIN = "photo"
GRID_PSIS = (1.0, 0.7)
TRAINING_EXTRAS = ("training_steps", "training_images", "training_kimg", "training_time_s")
_SNAPSHOT_NAME = re.compile(r"network-(\d+)kimg\.pt")


def grid_name(psi: float) -> str:
    """File name of the sample grid at truncation ``psi``: ``generator-samples.png`` for psi 1."""
    stem = Path(DEFAULT_GENERATOR).stem
    return f"{stem}-samples.png" if psi == 1.0 else f"{stem}-samples-psi{psi:g}.png"


def run_config(snapshot: Path) -> tuple[Path, dict]:
    """(path, content) of the training run's ``config.json``: beside ``model.pt`` or one level above
    ``snapshots/``."""
    for folder in (snapshot.parent, snapshot.parent.parent):
        path = folder / "config.json"
        if path.is_file():
            return path, json.loads(path.read_text())
    raise FileNotFoundError(f"{snapshot} is not inside a training run folder (no config.json beside it or one level "
                            f"up): release RUN/snapshots/network-*.pt or RUN/{MODEL_NAME} of a 'train stylegan2' run")


def training_facts(snapshot: Path, extras: dict) -> dict:
    """Steps, images, kimg and seconds of training stored in a snapshot (checked against its file name)."""
    missing = [k for k in TRAINING_EXTRAS if k not in extras]
    if missing:
        raise ModelFormatError(f"{snapshot.name} holds no training metadata ({', '.join(missing)} missing): release "
                               "a snapshot written by 'train stylegan2'")
    named = _SNAPSHOT_NAME.fullmatch(snapshot.name)
    if named and int(named.group(1)) != int(extras["training_images"]) // 1000:
        raise ModelFormatError(f"{snapshot.name} was written after {extras['training_images']} images, not at the "
                               f"{int(named.group(1))} kimg its name says")
    return {"steps": int(extras["training_steps"]), "images_seen": int(extras["training_images"]),
            "kimg": float(extras["training_kimg"]), "train_seconds": float(extras["training_time_s"])}


def quantised(images: torch.Tensor) -> torch.Tensor:
    """Images [B,3,H,W] in [-1,1] at the 8-bit levels a saved PNG holds (``to_uint8``), back in [-1,1]."""
    return torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def real_batches(n: int, *, size: int, seed: int, start: int, batch: int) -> Iterator[torch.Tensor]:
    """Synthetic photo faces ``start..start+n-1`` of ``seed``, [<=batch, 3, size, size] per batch."""
    for i in range(0, n, batch):
        yield sample_batch(min(batch, n - i), size=size, domain=DOMAIN, rng_or_seed=seed, start_index=start + i)[0]


@torch.no_grad()
def fake_batches(G: Generator, seeds: range, *, psi: float = 1.0, batch: int) -> Iterator[torch.Tensor]:
    """``G``'s images for z ``seeds`` (as ``generate`` draws them), constant noise: [<=batch, 3, R, R] per batch."""
    for i in range(0, len(seeds), batch):
        z = seeds_to_z(seeds[i:i + batch], G.z_dim)  # [b, z_dim]
        yield G(z, truncation_psi=psi, noise_mode="const")


def _estimator(estimator) -> tuple[AttributeEstimator, str | None]:
    """(model in eval mode, sha256 of its file or None) for a path, a model, or None = the embedded one."""
    if isinstance(estimator, AttributeEstimator):
        return estimator.eval(), None
    path = default_estimator_path() if estimator is None else Path(estimator)
    return load_estimator(path), file_sha256(path)


def release_generator(snapshot: str | os.PathLike, out_dir: str | os.PathLike, *, n: int = 5000, seed: int = 0,
                      real_seed: int = EVAL_SEED, batch: int = 250, grid: int = 8,
                      estimator: AttributeEstimator | str | os.PathLike | None = None, command_line: str = "",
                      log: Callable[[str], None] | None = None) -> dict:
    """Release ``snapshot`` into ``out_dir`` (``generator.pt``, sample grids, ``generator.json``; see the module
    docstring). ``estimator``: the feature extractor (default: the embedded one); ``command_line``: the release
    command recorded in the manifest. Returns the manifest."""
    if n < 2 or batch < 1 or grid < 1:
        raise ValueError(f"need n >= 2, batch >= 1 and grid >= 1, got n={n}, batch={batch}, grid={grid}")
    say = log or (lambda msg: None)
    snapshot, out_dir = Path(snapshot), Path(out_dir)
    G = load_generator(snapshot)
    if G.model_info.format != "face-editor" or G.model_info.notes:
        raise ModelFormatError(f"{snapshot.name} is not a complete face-editor training snapshot ("
                               f"{G.model_info.description}; {'; '.join(G.model_info.notes) or 'foreign format'})")
    extras = dict(read_model_file(snapshot)[1].get("extras") or {})
    facts = training_facts(snapshot, extras)
    config_path, run = run_config(snapshot)
    model, estimator_sha = _estimator(estimator)
    size = G.cfg.img_resolution

    def stats(batches: Iterator[torch.Tensor], what: str) -> FeatureStats:
        say(f"features of {n} {what}")
        return stats_of_batches(lambda x: model.features(quantised(x)), batches)  # [b, F] per batch

    real = stats(real_batches(n, size=size, seed=real_seed, start=0, batch=batch), f"real {DOMAIN} faces")
    other = stats(real_batches(n, size=size, seed=real_seed, start=n, batch=batch), "other real faces")
    fake = stats(fake_batches(G, range(seed, seed + n), batch=batch), "generated faces")
    figures = {"frechet_estimator_space": frechet_distance(fake, real),
               "floor_real_vs_real": frechet_distance(other, real), "n": n,
               "feature_space": f"attribute estimator features [{model.cfg.feature_dim}]",
               "estimator_sha256": estimator_sha, "images": "8-bit quantised, as saved PNGs",
               "real": {"domain": DOMAIN, "size": size, "seed": real_seed, "samples": [0, n - 1]},
               "floor_real": {"domain": DOMAIN, "size": size, "seed": real_seed, "samples": [n, 2 * n - 1]},
               "generated": {"z_seeds": [seed, seed + n - 1], "truncation_psi": 1.0, "noise_mode": "const"}}

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / DEFAULT_GENERATOR
    save_generator(out, G, extras={**extras, "released_from": snapshot.name,
                                   "snapshot_sha256": G.model_info.sha256})
    sha = file_sha256(out)
    samples = {}
    for psi in GRID_PSIS:
        seeds = range(grid * grid)
        images = torch.cat(list(fake_batches(G, seeds, psi=psi, batch=batch)))  # [grid^2, 3, R, R]
        params = {"seeds": f"0-{len(seeds) - 1}", "truncation_psi": psi, "noise_mode": "const"}
        save_png(out_dir / grid_name(psi), image_grid(images, grid), parameters={**params, "model_sha256": sha})
        samples[grid_name(psi)] = params

    command = run.get("command_line", "")
    manifest = {
        **file_facts(out), "format": FORMAT,
        "parameters": sum(p.numel() for p in G.parameters()), "architecture": G.cfg.to_dict(),
        "command": command, "data": run.get("data"), "data_seed": run.get("config", {}).get("seed"),
        "train_config": run.get("config"), "run": config_path.parent.name, "snapshot": snapshot.name,
        "snapshot_sha256": G.model_info.sha256, **facts,
        "hardware": hardware(command=command, device="auto", processes=run.get("world_size")),
        "release_command": command_line, "release_threads": torch.get_num_threads(),
        "frechet": figures, "samples": samples,
    }
    return write_json(out_dir / f"{out.stem}.json", manifest)


__all__ = ["DOMAIN", "GRID_PSIS", "grid_name", "run_config", "training_facts", "quantised",
           "real_batches", "fake_batches", "release_generator"]
