"""Held-out evaluation of an attribute estimator on the synthetic world, and the release of a trained one.

The held-out faces are samples ``0..n-1`` of ``EVAL_SEED`` (which no training seed may use), drawn with the same
parameters in every domain and quantised to 8 bits like saved images. Figures: MAE in real units for the
continuous outputs (years, degrees, SH coefficients, 0..1 scores), accuracy for the binary ones, both thresholded
at 0.5 (gender: female 0 .. male 1; glasses 0/1).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from engine.files.paths import write_json
from engine.models.estimator import FORMAT, AttributeEstimator, load_estimator, save_estimator
from engine.synth import DOMAINS, sample_batch
from engine.train.release.manifest import file_facts, release_facts, run_facts

EVAL_SEED = 2**31 - 1


def held_out(*, n: int, size: int, domains=DOMAINS) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Held-out faces 0..n-1 of ``EVAL_SEED`` in every domain: domain -> (uint8 [n,3,S,S], conditions [n,17])."""
    out = {}
    for domain in domains:
        parts = [sample_batch(min(256, n - i), size=size, domain=domain, rng_or_seed=EVAL_SEED, start_index=i)
                 for i in range(0, n, 256)]
        x = torch.cat([p[0] for p in parts])
        out[domain] = (torch.round((x + 1) * 127.5).to(torch.uint8),
                       torch.from_numpy(np.concatenate([p[2] for p in parts])))
    return out


@torch.inference_mode()
def evaluate(model: AttributeEstimator, data: dict, *, batch: int = 256) -> dict[str, dict[str, float]]:
    """domain -> output name -> held-out MAE (real units) or accuracy (binary outputs, thresholds 0.5)."""
    was_training = model.training
    model.eval()
    results = {}
    for domain, (pixels, cond) in data.items():
        pred = torch.cat([model.to_units(model(pixels[i:i + batch].float() / 127.5 - 1))
                          for i in range(0, len(pixels), batch)])  # [n, K]
        row = {}
        for k, name in enumerate(model.cfg.output_names):
            if name in model.cfg.binary:
                row[name] = float(((pred[:, k] >= 0.5) == (cond[:, k] >= 0.5)).float().mean())
            else:
                row[name] = float((pred[:, k] - cond[:, k]).abs().mean())
        results[domain] = row
    model.train(was_training)
    return results


def photo_score(model: AttributeEstimator, results: dict) -> float:
    """One number to rank checkpoints (lower is better): photo MAE / target std plus binary error rates."""
    cfg, row = model.cfg, results["photo"]
    return sum((1 - row[n]) if n in cfg.binary else row[n] / s for n, s in zip(cfg.output_names, cfg.target_std))


def format_table(results: dict, *, binary) -> str:
    """A text table: one row per output (accuracy % for binary ones, MAE otherwise), one column per domain."""
    domains = list(results)
    names = list(next(iter(results.values())))
    lines = [f"{'output':<10}{'metric':<8}" + "".join(f"{d:>10}" for d in domains)]
    for name in names:
        acc = name in binary
        cells = "".join(f"{100 * results[d][name]:>9.1f}%" if acc else f"{results[d][name]:>10.3f}" for d in domains)
        lines.append(f"{name:<10}{'acc' if acc else 'MAE':<8}{cells}")
    return "\n".join(lines)


def release(source: str | os.PathLike, out: str | os.PathLike, *, eval_n: int = 1024, command_line: str = "") -> dict:
    """Copy the estimator file ``source`` to ``out`` with fresh held-out figures on ``eval_n`` faces per domain,
    and write the manifest ``out`` with suffix ``.json`` (sha256, the training and release commands, seeds,
    training time, hardware, figures). Returns the manifest."""
    model = load_estimator(source)
    extras = dict(model.extras)
    results = evaluate(model, held_out(n=eval_n, size=model.cfg.input_size))
    extras.update(held_out=results, eval_n=eval_n)
    out = Path(out)
    save_estimator(out, model, extras=extras)
    manifest = {
        **file_facts(out), "format": FORMAT, "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": model.cfg.to_dict(), **run_facts(extras), **release_facts(source, command_line=command_line),
        "eval_seed": EVAL_SEED, "eval_faces_per_domain": eval_n,
        "metrics": {name: "accuracy" if name in model.cfg.binary else "mae" for name in model.cfg.output_names},
        "held_out": results,
    }
    return write_json(out.with_suffix(".json"), manifest)


__all__ = ["EVAL_SEED", "held_out", "evaluate", "photo_score", "format_table", "release"]
