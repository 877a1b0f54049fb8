"""The release of a trained BicycleGAN as ``assets/bicyclegan.pt`` (G and E, project format) with its manifest
``assets/bicyclegan.json`` (sha256, commands, time, hardware, held-out figures) and the sample grid
``assets/bicyclegan_samples.png``."""
from __future__ import annotations

import os
from pathlib import Path

from engine.assets import DEFAULT_BICYCLEGAN
from engine.convert.bicyclegan import load_bicyclegan
from engine.files.checkpoints import atomic_torch_save
from engine.files.images import save_png
from engine.files.paths import write_json
from engine.models.bicyclegan import FORMAT, bicyclegan_checkpoint
from engine.train.bicyclegan import BicycleGANTrainConfig, BicycleGANTrainer, figures, held_out_pairs, sample_grid
from engine.train.release.manifest import file_facts, release_facts, run_facts

GRID_NAME = "bicyclegan_samples.png"


def release_bicyclegan(source: str | os.PathLike, out_dir: str | os.PathLike, *, eval_n: int = 256,
                       samples: int = 10, grid_rows: int = 8, half: bool = True, command_line: str = "") -> dict:
    """Release ``source`` (``RUN/bicyclegan.pt`` or ``RUN/checkpoint.pt`` of ``train bicyclegan``) as
    ``out_dir/bicyclegan.pt`` (G and E, project format) with the manifest ``out_dir/bicyclegan.json`` (sha256,
    training and release commands, time, hardware, held-out figures on ``eval_n`` faces with ``samples`` random
    codes each) and the sample grid ``out_dir/bicyclegan_samples.png`` (``grid_rows`` held-out inputs). half: store
    the weights as float16 (they load into float32 networks); the figures are those of the stored weights. -> manifest
    """
    source, out_dir = Path(source), Path(out_dir)
    if eval_n < 1 or samples < 2 or grid_rows < 1:
        raise ValueError(f"need eval_n >= 1, samples >= 2 and grid_rows >= 1, got {eval_n}, {samples}, {grid_rows}")
    obj = BicycleGANTrainer.model_file(source)
    extras = dict(obj["extras"])
    tc = BicycleGANTrainConfig.from_dict(extras["train_config"])
    trained = load_bicyclegan(obj)
    released = bicyclegan_checkpoint({"G": trained["G"], "E": trained["E"]})
    if half:
        for entry in released["networks"].values():
            sd = entry["state_dict"]
            entry["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    nets = load_bicyclegan(released)
    G, E = nets["G"], nets["E"]
    a, b = held_out_pairs(n=max(eval_n, grid_rows), size=tc.size, source=tc.source, target=tc.target)
    figs = figures(G, E, a[:eval_n], b[:eval_n], samples=samples)
    grid = sample_grid(G, E, a[:grid_rows], b[:grid_rows], samples=4)
    extras.update(held_out_release=figs, released_from=source.name, weights_dtype="float16" if half else "float32")
    released["extras"] = extras
    out_path = out_dir / DEFAULT_BICYCLEGAN
    atomic_torch_save(released, out_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    facts = file_facts(out_path)
    save_png(out_dir / GRID_NAME, grid, parameters={"model": DEFAULT_BICYCLEGAN, "sha256": facts["sha256"]})
    manifest = {
        **facts, "format": FORMAT, "weights_dtype": extras["weights_dtype"],
        "networks": {k: {"arch": n.cfg.to_dict(), "parameters": sum(p.numel() for p in n.parameters())}
                     for k, n in (("G", G), ("E", E))},
        "domains": {"A": tc.source, "B": tc.target},
        "input": f"A: RGB [B, 3, {tc.size}, {tc.size}] in [-1, 1] ({tc.source}); z [B, {tc.nz}] ~ N(0, I); "
                 f"E reads B images ({tc.target}) of the same size",
        **run_facts(extras), **release_facts(source, command_line=command_line),
        "figures": {**figs, "scale": "mean absolute difference on [0, 1] pixels",
                    "note": "recon_l1: G(A, mu(E(B))) vs B; random_l1: G(A, z) vs B; diversity: mean pairwise L1 "
                            "between the random samples of one input"},
        "held_out_during_training": extras.get("held_out"),
        "grid": {"file": GRID_NAME, "rows": grid_rows, "columns": ["A", "B (ground truth)", "encoded",
                                                                  "random 1", "random 2", "random 3", "random 4"]},
    }
    return write_json(out_dir / f"{Path(DEFAULT_BICYCLEGAN).stem}.json", manifest)


__all__ = ["release_bicyclegan", "GRID_NAME"]
