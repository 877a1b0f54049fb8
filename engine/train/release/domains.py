"""The release of a trained domain classifier as ``assets/domains.pt`` with its manifest ``assets/domains.json``:
sha256, the training and release commands, time, hardware, fresh held-out accuracy per domain and the confusion
matrix (clean and blurred), the training curve, and a sanity check on images of the embedded default generator
(which are all ``photo``)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from engine.assets import DEFAULT_DOMAINS, default_generator_path
from engine.files.loading import load_generator
from engine.files.paths import write_json
from engine.files.storage import file_sha256
from engine.models.domains import FORMAT, DomainClassifier, classify, load_domains, save_domains
from engine.train.domains import GENERATOR_DOMAIN, DomainTrainer, evaluate, gaussian_blur
from engine.train.release.estimator import EVAL_SEED, held_out
from engine.train.release.generator import fake_batches, quantised
from engine.train.release.manifest import eval_curve, file_facts, release_facts, run_facts


def blurred(data: dict, *, sigma: float) -> dict:
    """``data`` (as ``held_out`` returns it) with every image blurred by ``sigma`` pixels, still uint8."""
    out = {}
    for domain, (pixels, rest) in data.items():
        x = gaussian_blur(pixels.float(), torch.full((len(pixels),), float(sigma)), radius=max(1, math.ceil(3 * sigma)))
        out[domain] = (x.round().clamp(0, 255).to(torch.uint8), rest)
    return out


def generator_check(model: DomainClassifier, G, *, n: int, psi: float, batch: int = 64) -> dict:
    """How ``model`` classifies ``G``'s images of z seeds ``0..n-1`` (constant noise, quantised to 8 bits like
    saved images); every one of them is a ``photo``. -> share classified as each domain, accuracy, confidence"""
    probs = torch.cat([classify(model, quantised(x)) for x in fake_batches(G, range(n), psi=psi, batch=batch)])
    names = model.domain_names
    t = names.index(GENERATOR_DOMAIN)
    share = torch.bincount(probs.argmax(1), minlength=len(names)).double() / n
    return {"psi": psi, "n": n, "accuracy": float(share[t]), "confidence": float(probs[:, t].mean()),
            "predicted_share": dict(zip(names, share.tolist()))}


def accuracy_curve(run_dir: Path, last_step: int) -> list[dict]:
    """The run's held-out mean accuracy per evaluated step up to ``last_step`` (from ``eval.csv``), or []."""
    steps: dict[int, list[float]] = {}
    for row in eval_curve(run_dir, last_step=last_step):
        steps.setdefault(int(row["step"]), []).append(row["accuracy"])
    return [{"step": s, "mean_accuracy": sum(v) / len(v)} for s, v in sorted(steps.items())]


def release_domains(source: str | os.PathLike, out_dir: str | os.PathLike, *, eval_n: int = 512,
                    blur_sigma: float = 1.0, generator: str | os.PathLike | None = None, generator_n: int = 256,
                    command_line: str = "") -> dict:
    """Release ``source`` (``RUN/best.pt``, ``RUN/domains.pt`` or ``RUN/checkpoint.pt`` of ``train domains``) as
    ``out_dir/domains.pt`` with the manifest ``out_dir/domains.json``: sha256, the training and release commands,
    training time, hardware, fresh held-out figures on ``eval_n`` faces per domain (clean, and blurred by
    ``blur_sigma`` pixels), the training curve, and the share of ``generator_n`` images of ``generator`` (default:
    the embedded default generator; all ``photo``) classified as photo at psi 1 and 0.7. -> manifest"""
    source, out_dir = Path(source), Path(out_dir)
    model = load_domains(DomainTrainer.model_file(source))
    extras = dict(model.extras)
    data = held_out(n=eval_n, size=model.cfg.input_size, domains=model.domain_names)
    figures = evaluate(model, data)
    figures_blurred = {"sigma_px": blur_sigma, **evaluate(model, blurred(data, sigma=blur_sigma))}
    generator = generator if generator is not None else default_generator_path()
    G = load_generator(generator)
    gen_check = {"generator": Path(generator).name, "generator_sha256": file_sha256(generator),
                 "domain": GENERATOR_DOMAIN, "noise_mode": "const", "seeds": f"0-{generator_n - 1}",
                 "results": [generator_check(model, G, n=generator_n, psi=psi) for psi in (1.0, 0.7)]}
    extras.update(held_out=figures, held_out_blurred=figures_blurred, generator_check=gen_check,
                  released_from=source.name)
    out_path = out_dir / DEFAULT_DOMAINS
    save_domains(out_path, model, extras=extras)
    manifest = {
        **file_facts(out_path), "format": FORMAT, "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": model.cfg.to_dict(), "domains": list(model.domain_names),
        "input": "RGB [B, 3, H, W] in [-1, 1]; other sizes are resized (antialiased bilinear) to input_size",
        **run_facts(extras), **release_facts(source, command_line=command_line),
        "eval_seed": EVAL_SEED, "eval_faces_per_domain": eval_n,
        "held_out": figures, "held_out_blurred": figures_blurred, "generator_check": gen_check,
        "held_out_curve": accuracy_curve(source.parent, int(extras.get("step") or 0)),
    }
    return write_json(out_dir / f"{Path(DEFAULT_DOMAINS).stem}.json", manifest)


__all__ = ["blurred", "generator_check", "accuracy_curve", "release_domains"]
