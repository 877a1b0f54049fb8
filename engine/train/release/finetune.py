"""The release of a FreezeFC fine-tune of the embedded default as a translation target (``assets/<name>.pt``).

``release_finetune(snapshot, out_dir, name=...)`` reads a snapshot of ``train stylegan2 --base BASE
--freeze-mapping`` and writes into ``out_dir``:

* ``<name>.pt``: the fine-tuned EMA generator in the project's format, with the run's training metadata;
* ``<name>-vs-base.png``: base and fine-tuned images of the same latents, in alternating rows (seeds 0.., psi 0.7,
  constant noise);
* ``<name>.json``: the manifest (``kind: finetuned-generator``, the domain, the base's sha256, the training
  command, kimg, time, hardware, the release command, and the model distance to the base: plain and per swap
  depth, ``engine.algorithms.layer_swap.model_distance_profile``).

It refuses a snapshot whose mapping network differs from the base's (not FreezeFC: layer swap would mix two
latent spaces) or whose architecture differs, and a base other than the one the run recorded (by sha256).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from engine.algorithms.latents import seeds_to_z
from engine.algorithms.layer_swap import model_distance_profile
from engine.assets import default_generator_path
from engine.errors import ModelFormatError
from engine.files.checkpoints import FORMAT, save_generator
from engine.files.images import save_png
from engine.files.loading import load_generator
from engine.files.paths import write_json
from engine.files.storage import file_sha256, read_model_file
from engine.train.release.generator import run_config, training_facts
from engine.train.release.manifest import file_facts, hardware
from engine.train.stylegan2 import image_grid

KIND = "finetuned-generator"
GRID_PSI = 0.7


def mapping_difference(base, tuned) -> float:
    """Largest absolute difference between the two mapping networks' parameters (0 under FreezeFC)."""
    b, t = dict(base.mapping.named_parameters()), dict(tuned.mapping.named_parameters())
    return max(float((b[k] - t[k]).abs().max()) for k in b)


@torch.no_grad()
def comparison_grid(base, tuned, *, cols: int, pairs: int) -> torch.Tensor:
    """[2 * pairs * cols, 3, R, R]: rows alternate base / fine-tuned over seeds 0.. at psi ``GRID_PSI``."""
    rows = []
    for p in range(pairs):
        z = seeds_to_z(range(p * cols, (p + 1) * cols), base.z_dim)  # [cols, z_dim]
        rows += [base(z, truncation_psi=GRID_PSI, noise_mode="const"),
                 tuned(z, truncation_psi=GRID_PSI, noise_mode="const")]
    return torch.cat(rows)


def release_finetune(snapshot: str | os.PathLike, out_dir: str | os.PathLike, *, name: str,
                     base: str | os.PathLike | None = None, n: int = 256, seed: int = 10_000, grid: int = 8,
                     command_line: str = "") -> dict:
    """Release ``snapshot`` as ``out_dir/<name>.pt`` with its comparison grid and manifest (module docstring).
    ``base``: the generator it was fine-tuned from (default: the embedded default); ``n`` latents from ``seed``
    measure the model distance. Returns the manifest."""
    if not name.isidentifier():
        raise ValueError(f"the release name must be a plain word (it names the files), got {name!r}")
    snapshot, out_dir = Path(snapshot), Path(out_dir)
    base_path = Path(base) if base is not None else default_generator_path()
    tuned, G0 = load_generator(snapshot), load_generator(base_path)
    if tuned.cfg != G0.cfg:
        raise ModelFormatError(f"{snapshot.name} has another architecture than the base {base_path.name}")
    drift = mapping_difference(G0, tuned)
    if drift > 0:
        raise ModelFormatError(f"{snapshot.name}'s mapping network differs from {base_path.name}'s (by up to "
                               f"{drift:.3g}): release only FreezeFC fine-tunes (train with --freeze-mapping)")
    extras = dict(read_model_file(snapshot)[1].get("extras") or {})
    facts = training_facts(snapshot, extras)
    config_path, run = run_config(snapshot)
    if not run.get("config", {}).get("freeze_mapping"):
        raise ModelFormatError(f"{config_path} does not record --freeze-mapping: not a FreezeFC fine-tune")
    data = str(run.get("data") or "")
    base_sha = file_sha256(base_path)

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.pt"
    save_generator(out, tuned, extras={**extras, "released_from": snapshot.name, "base_sha256": base_sha,
                                       "snapshot_sha256": tuned.model_info.sha256})
    sha = file_sha256(out)
    grid_file = f"{name}-vs-base.png"
    save_png(out_dir / grid_file, image_grid(comparison_grid(G0, tuned, cols=grid, pairs=grid // 2), grid),
             parameters={"rows": "base, fine-tuned, ...", "seeds": f"0-{grid * (grid // 2) - 1}",
                         "truncation_psi": GRID_PSI, "model_sha256": sha, "base_sha256": base_sha})
    profile = model_distance_profile(G0, tuned, n=n, seed=seed)
    command = run.get("command_line", "")
    manifest = {
        **file_facts(out), "kind": KIND, "domain": data.split(":", 1)[1] if data.startswith("synth:") else name,
        "format": FORMAT, "base": base_path.name,
        "base_sha256": base_sha, "architecture": tuned.cfg.to_dict(), "command": command, "data": data,
        "run": config_path.parent.name, "snapshot": snapshot.name, **facts,
        "hardware": hardware(command=command, device="auto", processes=run.get("world_size")),
        "release_command": command_line,
        "model_distance": {"to_base": profile[0], "by_swap_depth": {str(d): v for d, v in profile.items() if d},
                           "n": n, "seeds": [seed, seed + n - 1],
                           "measure": "mean RMS pixel difference of raw images (range about [-1, 1]) for the same "
                                      "latents and noise; by_swap_depth: the layer-swapped hybrid vs the base"},
        "comparison_grid": grid_file,
    }
    return write_json(out_dir / f"{name}.json", manifest)


__all__ = ["KIND", "mapping_difference", "comparison_grid", "release_finetune"]
