"""Training the domain classifier on the synthetic face world, its held-out evaluation and its release.

Data, rendered afresh every step: step ``s`` draws ``batch_size / len(domains)`` faces (samples ``s*k .. s*k+k-1``
of the data seed) and draws each of them in every domain, so no face, pose or lighting cue tells domains apart,
only the style does. Augmentation keeps the label and imitates generated images (blurrier than renders): a
Gaussian blur of random width on a share of the faces, saturation jitter, then the attribute estimator's
``augment`` (8-bit quantisation, brightness / contrast / per-channel jitter, noise, a small shift). Every random
draw of step ``s`` comes from ``step_generator(seed, s)`` and the learning rate is a function of ``s``, so a
resumed run repeats an uninterrupted one bit for bit (same thread count).

Held-out figures: samples ``0..n-1`` of ``EVAL_SEED`` (which no training seed may use) drawn in every domain and
quantised to 8 bits (``estimator_eval.held_out``): accuracy per domain, the confusion matrix (rows: true domain,
columns: predicted), the mean probability of the true domain and the mean cross-entropy.

Run folder: ``checkpoint.pt`` (training state, atomic), ``domains.pt`` (latest model), ``best.pt`` (best held-out
accuracy, then cross-entropy), ``metrics.csv``, ``eval.csv`` / ``eval.json``, ``config.json``.
``python main.py train domains --out RUN --steps N --batch B --threads 1 --seed 0 --resume auto`` trains;
``python main.py train release-domains RUN/best.pt`` writes ``assets/domains.pt`` and its manifest
``assets/domains.json`` (sha256, commands, time, hardware, held-out accuracy per domain and confusion matrix, and a
sanity check on images of the embedded default generator, which are all ``photo``).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.assets import ASSETS_DIR, DEFAULT_DOMAINS
from engine.errors import ModelFormatError
from engine.files.checkpoints import check_training_state, read_training_state
from engine.files.paths import command_line, write_json
from engine.files.storage import file_sha256, read_model_file
from engine.models.domains import (
    FORMAT,
    DomainClassifier,
    DomainConfig,
    classify,
    domains_checkpoint,
    load_domains,
    save_domains,
)
from engine.models.ops import gaussian_blur
from engine.runtime import set_threads
from engine.synth import DOMAINS, build_scene, sample_params
from engine.synth.styles import STYLES, check_domain
from engine.train.estimator import (
    StepTrainer,
    add_schedule_arguments,
    given_fields,
    int_list,
    lr_at,
    resume_trainer,
    start_run,
    step_generator,
)
from engine.train.estimator import augment as estimator_augment
from engine.train.release.estimator import EVAL_SEED, cpu_model, held_out

STATE_FORMAT = "face-editor/train-domains"
STATE_VERSION = 1
CHECKPOINT_NAME, MODEL_NAME, BEST_NAME = "checkpoint.pt", "domains.pt", "best.pt"
METRIC_FIELDS = ("step", "images", "loss", "accuracy", "lr", "img_per_s", "elapsed_s")
EVAL_FIELDS = ("step", "domain", "accuracy", "confidence")
GENERATOR_DOMAIN = "photo"


@dataclass(frozen=True)
class DomainTrainConfig:
    """A training run; ``seed`` seeds the initialisation, the faces (sample indices) and the augmentation.

    batch_size: images per step, a multiple of ``len(domains)`` (each face is drawn in every domain).
    blur: largest blur sigma in pixels at ``size``; blur_prob: share of the images blurred (sigma uniform in
    [0.2, 1] x blur). saturation: relative saturation jitter. jitter / noise / shift: the estimator's augmentation.
    warmup / final_lr_ratio: linear warm-up steps, then cosine decay to ``final_lr_ratio * lr`` at ``steps``.
    """

    steps: int = 2400
    batch_size: int = 48
    size: int = 64
    seed: int = 0
    domains: tuple[str, ...] = DOMAINS
    lr: float = 2e-3
    warmup: int = 100
    final_lr_ratio: float = 0.02
    blur: float = 1.5
    blur_prob: float = 0.5
    saturation: float = 0.25
    jitter: float = 0.08
    noise: float = 0.04
    shift: int = 2
    widths: tuple[int, ...] = (16, 32, 48, 64)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    stem_width: int = 16
    eval_n: int = 128
    eval_every: int = 200
    checkpoint_every: int = 100
    log_every: int = 20

    def __post_init__(self):
        for name, cast in (("domains", str), ("widths", int), ("blocks", int)):
            object.__setattr__(self, name, tuple(cast(v) for v in getattr(self, name)))
        for d in self.domains:
            check_domain(d)
        if len(self.domains) < 2 or len(set(self.domains)) != len(self.domains):
            raise ValueError(f"domains must hold at least two distinct domains, got {list(self.domains)}")
        if self.seed < 0 or self.seed == EVAL_SEED:
            raise ValueError(f"seed must be non-negative and not {EVAL_SEED} (the held-out seed), got {self.seed}")
        for name in ("steps", "batch_size", "eval_n", "eval_every", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % len(self.domains):
            raise ValueError(f"batch_size must be a multiple of the {len(self.domains)} domains (each face is drawn "
                             f"in every domain), got {self.batch_size}")
        if self.lr <= 0 or self.warmup < 0 or not 0 <= self.final_lr_ratio <= 1:
            raise ValueError(f"need lr > 0, warmup >= 0 and 0 <= final_lr_ratio <= 1, got {self.lr}, {self.warmup}, "
                             f"{self.final_lr_ratio}")
        if min(self.blur, self.saturation, self.jitter, self.noise, self.shift) < 0 or not 0 <= self.blur_prob <= 1:
            raise ValueError("blur, saturation, jitter, noise and shift must be >= 0 and 0 <= blur_prob <= 1")

    @property
    def faces_per_step(self) -> int:
        return self.batch_size // len(self.domains)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> DomainTrainConfig:
        if unknown := sorted(set(d) - {f.name for f in fields(cls)}):
            raise ValueError(f"unknown domain training settings {unknown} (written by a newer version?)")
        return cls(**d)


def domain_config(cfg: DomainTrainConfig) -> DomainConfig:
    """The network a training config describes."""
    return DomainConfig(domain_names=cfg.domains, input_size=cfg.size, widths=cfg.widths, blocks=cfg.blocks,
                        stem_width=cfg.stem_width)


# ---- data -----------------------------------------------------------------------------------------------------


@torch.no_grad()
def render_domains(params: np.ndarray, *, size: int, domains=DOMAINS) -> torch.Tensor:
    """Faces ``params`` [k, NUM_PARAMS] drawn in every domain from one scene each (as ``sample_batch`` draws them,
    at a sixth of the cost). -> [len(domains) * k, 3, size, size] in [-1,1], domain-major"""
    scene = build_scene(params, size=size)
    return torch.cat([STYLES[check_domain(d)](scene) for d in domains]) * 2.0 - 1.0


def training_batch(cfg: DomainTrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The un-augmented images and labels of ``step``. -> [B,3,S,S] in [-1,1], [B] class indices"""
    k = cfg.faces_per_step
    params = sample_params(k, seed=cfg.seed, start_index=step * k)
    labels = torch.arange(len(cfg.domains)).repeat_interleave(k)
    return render_domains(params, size=cfg.size, domains=cfg.domains), labels


def augment(x: torch.Tensor, *, gen: torch.Generator, cfg: DomainTrainConfig) -> torch.Tensor:
    """Label-preserving augmentation (blur on a share of the images, saturation jitter, then the estimator's
    quantisation, colour jitter, noise and shift). [B,3,H,W] in [-1,1] -> same"""
    b = x.shape[0]
    blurred = torch.rand(b, generator=gen) < cfg.blur_prob
    sigma = torch.where(blurred, cfg.blur * (0.2 + 0.8 * torch.rand(b, generator=gen)), torch.zeros(b))
    if cfg.blur > 0:
        x = gaussian_blur(x, sigma, radius=max(1, math.ceil(2.5 * cfg.blur)))
    grey = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)  # [B,1,H,W]
    scale = 1 + cfg.saturation * (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1)
    x = (grey + scale * (x - grey)).clamp(-1, 1)
    return estimator_augment(x, gen=gen, jitter=cfg.jitter, noise=cfg.noise, shift=cfg.shift)


# ---- evaluation -----------------------------------------------------------------------------------------------


def evaluate(model: DomainClassifier, data: dict[str, tuple[torch.Tensor, object]]) -> dict:
    """Held-out figures on ``data`` (domain -> (uint8 images [n,3,S,S], anything), as ``held_out`` returns):
    ``accuracy`` and ``confidence`` (mean probability of the true domain) per domain, their means, ``nll`` (mean
    cross-entropy, nats), ``confusion`` (counts; row: true domain, column: predicted, both in ``order``)."""
    names = model.domain_names
    confusion = torch.zeros(len(names), len(names), dtype=torch.long)
    accuracy, conf, nll, total = {}, {}, 0.0, 0
    for domain, (pixels, _) in data.items():
        t = names.index(domain)
        probs = classify(model, pixels.float() / 127.5 - 1)  # [n, D]
        confusion[t] += torch.bincount(probs.argmax(1), minlength=len(names))
        accuracy[domain] = float((probs.argmax(1) == t).float().mean())
        conf[domain] = float(probs[:, t].mean())
        nll += float(-probs[:, t].clamp_min(1e-12).log().sum())
        total += len(pixels)
    return {"accuracy": accuracy, "mean_accuracy": sum(accuracy.values()) / len(accuracy), "confidence": conf,
            "mean_confidence": sum(conf.values()) / len(conf), "nll": nll / total, "n_per_domain": total // len(data),
            "order": list(names), "confusion": confusion.tolist()}


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
    from engine.train.release.generator import fake_batches, quantised

    probs = torch.cat([classify(model, quantised(x)) for x in fake_batches(G, range(n), psi=psi, batch=batch)])
    names = model.domain_names
    t = names.index(GENERATOR_DOMAIN)
    share = torch.bincount(probs.argmax(1), minlength=len(names)).double() / n
    return {"psi": psi, "n": n, "accuracy": float(share[t]), "confidence": float(probs[:, t].mean()),
            "predicted_share": dict(zip(names, share.tolist()))}


def format_figures(figures: dict) -> str:
    """A text table of ``evaluate``'s figures: accuracy and confidence per domain, then the confusion matrix."""
    names = figures["order"]
    lines = [f"{'domain':<10}{'accuracy':>10}{'confidence':>12}   predicted: " + " ".join(f"{d[:6]:>6}" for d in names)]
    for i, d in enumerate(names):
        if d not in figures["accuracy"]:
            continue
        lines.append(f"{d:<10}{100 * figures['accuracy'][d]:>9.1f}%{figures['confidence'][d]:>12.3f}   "
                     f"{'':>10} " + " ".join(f"{c:>6}" for c in figures["confusion"][i]))
    lines.append(f"{'mean':<10}{100 * figures['mean_accuracy']:>9.1f}%{figures['mean_confidence']:>12.3f}   "
                 f"cross-entropy {figures['nll']:.4f} nats, {figures['n_per_domain']} faces per domain")
    return "\n".join(lines)


# ---- trainer --------------------------------------------------------------------------------------------------


class DomainTrainer(StepTrainer):
    """The network, its Adam optimiser and the step counter; ``train()`` runs to ``cfg.steps``.

    out_dir: run folder (None: nothing is written). max_seconds: stop (with a checkpoint) after this much
    training time in one ``train()`` call. model: a starting network (resume); otherwise a fresh one from ``cfg``.
    best_score: [held-out mean accuracy, -cross-entropy] of ``best.pt``.
    """

    desc, model_name, metric_fields, eval_fields = "train domains", MODEL_NAME, METRIC_FIELDS, EVAL_FIELDS

    def __init__(self, cfg: DomainTrainConfig, *, out_dir: str | Path | None = None,
                 model: DomainClassifier | None = None, command_line: str = "", progress: bool = True,
                 max_seconds: float | None = None):
        model = (model or DomainClassifier(domain_config(cfg), seed=cfg.seed)).train()
        if model.cfg != domain_config(cfg):
            raise ValueError(f"the network {model.cfg} is not the one the training config describes")
        super().__init__(cfg, model, out_dir=out_dir, command_line=command_line, progress=progress,
                         max_seconds=max_seconds, best_score=None)

    def train_step(self) -> dict:
        """One optimiser step on the batch of ``self.step``; returns its loss, accuracy and learning rate."""
        cfg = self.cfg
        x, labels = training_batch(cfg, self.step)
        x = augment(x, gen=step_generator(cfg.seed, self.step), cfg=cfg)
        lr = lr_at(cfg, self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        logits = self.model(x)  # [B, D]
        loss = F.cross_entropy(logits, labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss.item()} at step {self.step}: lower --lr")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return {"loss": float(loss.detach()), "accuracy": float((logits.argmax(1) == labels).float().mean()),
                "lr": lr}

    def evaluate(self) -> dict:
        """Held-out figures of the current network (the faces are rendered once and kept)."""
        if self._eval_data is None or len(next(iter(self._eval_data.values()))[0]) != self.cfg.eval_n:
            self._eval_data = held_out(n=self.cfg.eval_n, size=self.cfg.size, domains=self.cfg.domains)
        self.last_eval = {"step": self.step, **evaluate(self.model, self._eval_data)}
        return self.last_eval

    def extras(self) -> dict:
        """Metadata stored in exported models."""
        return self.run_extras()

    def state_dict(self) -> dict:
        """The full training state (plain containers and tensors; loadable with ``weights_only=True``)."""
        return {**self.run_state(STATE_FORMAT, STATE_VERSION),
                "model": domains_checkpoint(self.model, extras=self.extras()), "optimizer": self.opt.state_dict()}

    def save_model(self, path: Path) -> None:
        save_domains(path, self.model, extras=self.extras())

    def _postfix(self, stats: dict) -> dict:
        post = super()._postfix(stats)
        if self.last_eval is not None:
            post["held_out"] = f"{100 * self.last_eval['mean_accuracy']:.1f}%"
        return post

    def _final_eval_due(self) -> bool:
        return self.last_eval is None or self.last_eval["step"] != self.step

    def _record_eval(self) -> None:
        ev = self.evaluate()
        if self.out_dir is None:
            return
        self._eval_log.write(*[{"step": self.step, "domain": d, "accuracy": a, "confidence": ev["confidence"][d]}
                               for d, a in ev["accuracy"].items()])
        self._out("eval.json").write_text(json.dumps(ev, indent=2))
        score = [ev["mean_accuracy"], -ev["nll"]]
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.save_model(self._out(BEST_NAME))


_STATE_CHECK = dict(fmt=STATE_FORMAT, version=STATE_VERSION, what="domain classifier training checkpoint",
                    wrong="not a domain classifier training checkpoint (train domains writes OUT/checkpoint.pt)")


def read_state(path: str | Path) -> dict:
    """A training checkpoint written by ``DomainTrainer``; ValueError if it is something else."""
    return read_training_state(path, **_STATE_CHECK)


def trainer_from_state(state: dict, *, overrides: dict | None = None, **kwargs) -> DomainTrainer:
    """Continue a checkpoint; ``overrides`` may change only ``OVERRIDABLE_ON_RESUME`` fields."""
    check_training_state(state, **_STATE_CHECK)
    trainer = resume_trainer(DomainTrainer, DomainTrainConfig, state, load_model=load_domains, overrides=overrides,
                             **kwargs)
    trainer.best_score = state.get("best_score")
    return trainer


# ---- release --------------------------------------------------------------------------------------------------


def _eval_curve(run_dir: Path, last_step: int) -> list[dict]:
    """The run's held-out mean accuracy per evaluated step up to ``last_step`` (from ``eval.csv``), or []."""
    path = run_dir / "eval.csv"
    if not path.is_file():
        return []
    steps: dict[int, list[float]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            steps.setdefault(int(row["step"]), []).append(float(row["accuracy"]))
    return [{"step": s, "mean_accuracy": sum(v) / len(v)} for s, v in sorted(steps.items()) if s <= last_step]


def release_domains(source: str | os.PathLike, out_dir: str | os.PathLike, *, eval_n: int = 512,
                    blur_sigma: float = 1.0, generator: str | os.PathLike | None = None, generator_n: int = 256,
                    command_line: str = "") -> dict:
    """Release ``source`` (``RUN/best.pt``, ``RUN/domains.pt`` or ``RUN/checkpoint.pt`` of ``train domains``) as
    ``out_dir/domains.pt`` with the manifest ``out_dir/domains.json``: sha256, the training and release commands,
    training time, hardware, fresh held-out figures on ``eval_n`` faces per domain (clean, and blurred by
    ``blur_sigma`` pixels), the training curve, and the share of ``generator_n`` images of ``generator`` (default:
    the embedded default generator; all ``photo``) classified as photo at psi 1 and 0.7. -> manifest"""
    from engine.files.loading import load_generator

    source, out_dir = Path(source), Path(out_dir)
    kind, obj = read_model_file(source)
    if kind == "torch" and isinstance(obj, dict) and obj.get("format") == STATE_FORMAT:
        check_training_state(obj, **_STATE_CHECK)
        model = load_domains(obj["model"])
    else:
        model = load_domains(source)
    extras = dict(model.extras)
    if "train_config" not in extras:
        raise ModelFormatError(f"{source} holds no training metadata: release a file written by 'train domains'")
    data = held_out(n=eval_n, size=model.cfg.input_size, domains=model.domain_names)
    figures = evaluate(model, data)
    figures_blurred = {"sigma_px": blur_sigma, **evaluate(model, blurred(data, sigma=blur_sigma))}
    if generator is None:
        from engine.assets import default_generator_path

        generator = default_generator_path()
    G = load_generator(generator)
    gen_check = {"generator": Path(generator).name, "generator_sha256": file_sha256(generator),
                 "domain": GENERATOR_DOMAIN, "noise_mode": "const", "seeds": f"0-{generator_n - 1}",
                 "results": [generator_check(model, G, n=generator_n, psi=psi) for psi in (1.0, 0.7)]}
    extras.update(held_out=figures, held_out_blurred=figures_blurred, generator_check=gen_check,
                  released_from=source.name)
    out_path = out_dir / DEFAULT_DOMAINS
    save_domains(out_path, model, extras=extras)
    run_dir = source.parent
    manifest = {
        "file": DEFAULT_DOMAINS, "sha256": file_sha256(out_path), "bytes": out_path.stat().st_size,
        "format": FORMAT, "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": model.cfg.to_dict(), "domains": list(model.domain_names),
        "input": "RGB [B, 3, H, W] in [-1, 1]; other sizes are resized (antialiased bilinear) to input_size",
        "command": extras.get("command_line", ""), "release_command": command_line,
        "released_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_seed": extras.get("data_seed"), "eval_seed": EVAL_SEED, "eval_faces_per_domain": eval_n,
        "train_config": extras.get("train_config"), "steps": extras.get("step"),
        "images_seen": extras.get("images_seen"), "train_seconds": round(float(extras.get("train_seconds", 0.0)), 1),
        "hardware": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": extras.get("threads"),
                     "torch": torch.__version__, "device": "cpu"},
        "released_from": source.name,
        "held_out": figures, "held_out_blurred": figures_blurred, "generator_check": gen_check,
        "held_out_curve": _eval_curve(run_dir, int(extras.get("step") or 0)),
    }
    return write_json(out_dir / f"{Path(DEFAULT_DOMAINS).stem}.json", manifest)


# ---- command line ---------------------------------------------------------------------------------------------


# argparse destination -> DomainTrainConfig field
_FLAGS = {"steps": "steps", "batch": "batch_size", "size": "size", "seed": "seed", "lr": "lr", "blur": "blur",
          "widths": "widths", "blocks": "blocks", "stem_width": "stem_width", "eval_n": "eval_n",
          "eval_every": "eval_every", "checkpoint_every": "checkpoint_every", "log_every": "log_every"}


def add_domains_commands(sub) -> None:
    """``train domains`` and ``train release-domains`` on the ``train`` subcommand set."""
    d = DomainTrainConfig()
    p = sub.add_parser("domains", help="train the domain classifier on the synthetic face world",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, domains.pt, best.pt, metrics.csv, "
                   "eval.csv, eval.json)")
    p.add_argument("--resume", metavar="PATH|auto", help="continue a training checkpoint; 'auto': OUT/checkpoint.pt "
                   "if present")
    p.add_argument("--steps", type=int, help=f"optimiser steps (default {d.steps})")
    p.add_argument("--batch", type=int, help=f"images per step, a multiple of the {len(d.domains)} domains "
                   f"(default {d.batch_size})")
    p.add_argument("--size", type=int, help=f"image side the network reads (default {d.size})")
    p.add_argument("--seed", type=int, help=f"seed of initialisation, faces and augmentation (default {d.seed})")
    p.add_argument("--lr", type=float, help=f"peak Adam learning rate (default {d.lr})")
    p.add_argument("--blur", type=float, help=f"largest augmentation blur sigma in pixels (default {d.blur})")
    p.add_argument("--widths", type=int_list, help=f"channels per stage (default {','.join(map(str, d.widths))})")
    p.add_argument("--blocks", type=int_list,
                   help=f"residual blocks per stage (default {','.join(map(str, d.blocks))})")
    p.add_argument("--stem-width", type=int, help=f"channels of the stem (default {d.stem_width})")
    p.add_argument("--eval-n", type=int, help=f"held-out faces per domain (default {d.eval_n})")
    add_schedule_arguments(p, d)
    p.set_defaults(func=run_train_domains)

    p = sub.add_parser("release-domains", help="release a trained domain classifier as assets/domains.pt with its "
                       "manifest", description=release_domains.__doc__)
    p.add_argument("source", help="RUN/best.pt, RUN/domains.pt or RUN/checkpoint.pt of a 'train domains' run")
    p.add_argument("--out", default=str(ASSETS_DIR), help="output folder (default: this checkout's assets/)")
    p.add_argument("--eval-n", type=int, default=512, help="held-out faces per domain (default 512)")
    p.add_argument("--generator", help="generator for the photo sanity check (default: the embedded default)")
    p.add_argument("--generator-n", type=int, default=256, help="generated images per psi (default 256)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.set_defaults(func=run_release_domains)


def run_train_domains(args: argparse.Namespace) -> int:
    """``train domains``: train (or resume) the classifier; 0 when done (or stopped by --max-minutes), 130 when
    interrupted. User errors raise ValueError / FileNotFoundError / ModelFormatError (one line from main.py)."""
    set_threads(args.threads)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    given = given_fields(args, _FLAGS)
    trainer = start_run(args, given, kind="domain classifier", checkpoint_name=CHECKPOINT_NAME, read_state=read_state,
                        from_state=trainer_from_state, log=log,
                        fresh=lambda **kw: DomainTrainer(DomainTrainConfig(**given), **kw))
    c = trainer.cfg
    n_params = sum(p.numel() for p in trainer.model.parameters())
    log(f"training the domain classifier ({n_params / 1e3:.0f} k parameters, widths {list(c.widths)}) on {c.size} px "
        f"synthetic faces in {len(c.domains)} domains, batch {c.batch_size}, {c.steps} steps, "
        f"{torch.get_num_threads()} threads")
    status = trainer.train()
    log(f"{status} at step {trainer.step} ({trainer.images_seen} images, {trainer.elapsed_s / 60:.1f} min); "
        f"held-out figures:\n{format_figures(trainer.last_eval)}")
    return 130 if status == "interrupted" else 0


def run_release_domains(args: argparse.Namespace) -> int:
    """``train release-domains SOURCE``: write ``domains.pt`` and ``domains.json`` into ``--out``."""
    set_threads(args.threads)
    if args.eval_n < 1 or args.generator_n < 1:
        raise ValueError(f"--eval-n and --generator-n must be at least 1, got {args.eval_n} and {args.generator_n}")
    m = release_domains(args.source, args.out, eval_n=args.eval_n, generator=args.generator,
                        generator_n=args.generator_n, command_line=command_line())
    g = ", ".join(f"psi {r['psi']:g}: {100 * r['accuracy']:.1f}%" for r in m["generator_check"]["results"])
    print(f"released {Path(args.out) / DEFAULT_DOMAINS} (sha256 {m['sha256'][:12]}..., step {m['steps']}):\n"
          f"{format_figures(m['held_out'])}\nblurred by {m['held_out_blurred']['sigma_px']:g} px: "
          f"{100 * m['held_out_blurred']['mean_accuracy']:.1f}%; generator images classified as photo: {g}",
          file=sys.stderr)
    return 0


__all__ = ["DomainTrainConfig", "DomainTrainer", "domain_config", "render_domains", "training_batch",
           "gaussian_blur", "augment", "evaluate", "blurred", "generator_check", "format_figures", "read_state",
           "trainer_from_state", "release_domains", "add_domains_commands", "run_train_domains",
           "run_release_domains", "STATE_FORMAT", "CHECKPOINT_NAME", "MODEL_NAME", "BEST_NAME", "EVAL_SEED"]
