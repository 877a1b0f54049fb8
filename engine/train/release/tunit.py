"""The release of a trained TUNIT as ``assets/tunit.pt`` (G_EMA, C, C_EMA; extras: cluster styles and the cluster ->
domain map) with its manifest ``assets/tunit.json`` (sha256, commands, time, hardware, fresh held-out purity and
translation accuracy) and the sample grid ``assets/tunit-grid.png`` (rows: held-out faces; columns: the input,
then its translation to each cluster's average style)."""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from engine.assets import DEFAULT_TUNIT, default_domains_path
from engine.convert.tunit import load_tunit
from engine.errors import ModelFormatError
from engine.files.checkpoints import atomic_torch_save
from engine.files.images import save_png
from engine.files.paths import write_json
from engine.files.storage import file_sha256
from engine.models.domains import load_domains
from engine.models.tunit import cluster_labels, cluster_styles, translate, tunit_checkpoint
from engine.train.release.estimator import EVAL_SEED
from engine.train.release.manifest import file_facts, release_facts, run_facts
from engine.train.tunit import TunitTrainer, evaluate, held_out_images

GRID_NAME = "tunit-grid.png"
RELEASED = ("G_EMA", "C", "C_EMA")


@torch.no_grad()
def sample_grid(nets, x: torch.Tensor, styles: dict[int, torch.Tensor]) -> np.ndarray:
    """Rows: images ``x`` [R, 3, S, S]; columns: the input, then its translation to each cluster style (G_EMA).
    -> uint8 [R*S, (1+K)*S, 3]"""
    G = nets["G_EMA"]
    mode = G.training
    G.eval()
    cols = [x] + [translate(G, x, s) for s in styles.values()]
    G.train(mode)
    grid = torch.stack(cols, 1)  # [R, 1+K, 3, S, S]
    r, k, _, s, _ = grid.shape
    img = grid.permute(0, 3, 1, 4, 2).reshape(r * s, k * s, 3)
    return ((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def release_tunit(source: str | os.PathLike, out_dir: str | os.PathLike, *, eval_n: int = 128, grid_rows: int = 6,
                  classifier: str | os.PathLike | None = None, command_line: str = "") -> dict:
    """Release ``source`` (``RUN/best.pt``, ``RUN/tunit.pt`` or ``RUN/checkpoint.pt`` of ``train tunit``) as
    ``out_dir/tunit.pt`` (G_EMA, C, C_EMA; extras: cluster styles and the cluster -> domain map) with the manifest
    ``out_dir/tunit.json`` (sha256, commands, time, hardware, fresh held-out purity and translation accuracy on
    ``eval_n`` faces per domain of the ``classifier``, default the embedded one) and the grid
    ``out_dir/tunit-grid.png``. -> manifest"""
    source, out_dir = Path(source), Path(out_dir)
    obj = TunitTrainer.model_file(source)
    nets = load_tunit(obj).networks
    extras = dict(obj["extras"])
    if missing := [k for k in RELEASED if k not in nets]:
        raise ModelFormatError(f"{source} lacks the networks {missing}")
    names = tuple(extras["train_config"]["domains"])
    size = int(extras["train_config"]["size"])
    classifier = classifier if classifier is not None else default_domains_path()
    x, labels = held_out_images(names, n=eval_n, size=size)
    figures = evaluate(nets, x, labels, names, classifier=load_domains(classifier))
    styles = cluster_styles(nets["C_EMA"], x, cluster_labels(nets["C"], x))
    per = max(1, min(eval_n, grid_rows // len(names)))
    rows = torch.cat([x[i * eval_n:i * eval_n + per] for i in range(len(names))])
    out_dir.mkdir(parents=True, exist_ok=True)
    grid_path = save_png(out_dir / GRID_NAME, sample_grid(nets, rows, styles),
                         parameters={"rows": "held-out faces " + ", ".join(f"{per} {d}" for d in names),
                                     "columns": ["input"] + [f"cluster {c}" for c in styles]})
    extras.update(held_out=figures, released_from=source.name,
                  cluster_styles={str(c): s.tolist() for c, s in styles.items()},
                  cluster_domain=figures["cluster_domain"])
    out_path = out_dir / DEFAULT_TUNIT
    atomic_torch_save(tunit_checkpoint({k: nets[k] for k in RELEASED}, extras=extras), out_path)
    manifest = {
        **file_facts(out_path), "networks": list(RELEASED),
        "parameters": {k: sum(p.numel() for p in nets[k].parameters()) for k in ("G_EMA", "C")},
        "architecture": {k: asdict(nets[k].cfg) for k in ("G_EMA", "C")}, "domains": list(names),
        "input": f"RGB [B, 3, {size}, {size}] in [-1, 1]",
        **run_facts(extras), **release_facts(source, command_line=command_line),
        "eval_seed": EVAL_SEED, "eval_faces_per_domain": eval_n, "classifier_sha256": file_sha256(classifier),
        "purity": figures["purity"], "translation_accuracy": figures["mean_accuracy"],
        "cluster_domain": figures["cluster_domain"], "held_out": figures, "grid": grid_path.name,
    }
    return write_json(out_dir / f"{Path(DEFAULT_TUNIT).stem}.json", manifest)


__all__ = ["sample_grid", "release_tunit", "GRID_NAME", "RELEASED"]
