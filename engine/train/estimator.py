"""Training the attribute estimator on the synthetic face world (evaluation: ``engine.train.release.estimator``).

Every step renders a fresh batch: ``photo_fraction`` of it photos, the rest spread over the other domains.
Step ``s`` uses samples ``s*B .. s*B+B-1`` of the data seed and an augmentation generator seeded by
``(seed, s)``, and the learning rate is a function of ``s``, so a resumed run is bit-identical to an
uninterrupted one. Augmentation keeps the labels: 8-bit quantisation, colour jitter, noise, a small shift.

Run folder: ``checkpoint.pt`` (training state), ``estimator.pt`` (latest model), ``best.pt`` (best held-out
photo score), ``metrics.csv`` (loss per ``log_every`` steps), ``eval.csv`` / ``eval.json`` (held-out figures).
The held-out faces are samples ``0..n-1`` of ``EVAL_SEED``, drawn in every domain, which no training seed uses.
The CLI helpers back ``python main.py train attributes --out DIR --steps N --batch B --size 64 --seed S``.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import ModelFormatError, unreadable_reason
from engine.files.checkpoints import atomic_torch_save, resume_path
from engine.files.paths import command_line
from engine.models.estimator import (
    AttributeEstimator,
    EstimatorConfig,
    estimator_checkpoint,
    load_estimator,
    save_estimator,
)
from engine.runtime import GracefulStop
from engine.synth import CONDITION_NAMES, DOMAINS, attributes, sample_batch, sample_params
from engine.train.csvlog import CsvLog
from engine.train.release.estimator import EVAL_SEED, evaluate, format_table, held_out, photo_score, release

BINARY = ("gender", "glasses")
TRAIN_FORMAT = "face-editor/estimator-train"
CHECKPOINT_NAME, MODEL_NAME, BEST_NAME = "checkpoint.pt", "estimator.pt", "best.pt"
METRIC_FIELDS = ("step", "images", "loss", "mse", "bce", "lr", "img_per_s", "elapsed_s")
OVERRIDABLE_ON_RESUME = ("steps", "eval_every", "eval_n", "checkpoint_every", "log_every")


@dataclass(frozen=True)
class TrainConfig:
    """A training run; ``seed`` seeds the initialisation, the data (sample indices) and the augmentation."""

    steps: int = 6000
    batch_size: int = 64
    size: int = 64
    seed: int = 0
    lr: float = 2e-3
    warmup: int = 300
    final_lr_ratio: float = 0.02
    photo_fraction: float = 0.5
    jitter: float = 0.06
    noise: float = 0.03
    shift: int = 2
    widths: tuple[int, ...] = (32, 64, 128, 192)
    blocks: tuple[int, ...] = (1, 1, 2, 1)
    stem_width: int = 24
    feature_dim: int = 256
    stats_n: int = 20000
    eval_n: int = 512
    eval_every: int = 500
    checkpoint_every: int = 200
    log_every: int = 50

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if self.seed < 0 or self.seed == EVAL_SEED:
            raise ValueError(f"seed must be non-negative and not {EVAL_SEED} (the held-out seed), got {self.seed}")
        for name in ("steps", "batch_size", "stats_n", "eval_n", "eval_every", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < len(DOMAINS):
            raise ValueError(f"batch_size must be at least {len(DOMAINS)} (one face per domain)")
        if not 0.0 <= self.photo_fraction <= 1.0 or self.lr <= 0 or self.jitter < 0 or self.noise < 0:
            raise ValueError("need 0 <= photo_fraction <= 1, lr > 0, jitter >= 0, noise >= 0")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**d)


def target_stats(*, seed: int, n: int) -> tuple[list[float], list[float]]:
    """Mean and std of every condition over samples ``0..n-1`` of ``seed`` (0/1 for the binary ones)."""
    cond = attributes(sample_params(n, seed=seed)).astype(np.float64)  # [n, 17]
    binary = np.array([name in BINARY for name in CONDITION_NAMES])
    mean = np.where(binary, 0.0, cond.mean(0))
    std = np.where(binary, 1.0, np.maximum(cond.std(0), 1e-6))
    return mean.tolist(), std.tolist()


def estimator_config(cfg: TrainConfig) -> EstimatorConfig:
    """The network a training config describes, standardised on its own training data."""
    mean, std = target_stats(seed=cfg.seed, n=cfg.stats_n)
    return EstimatorConfig(output_names=CONDITION_NAMES, binary=BINARY, target_mean=mean, target_std=std,
                           input_size=cfg.size, widths=cfg.widths, blocks=cfg.blocks, stem_width=cfg.stem_width,
                           feature_dim=cfg.feature_dim)


def domain_counts(batch_size: int, *, photo_fraction: float, step: int) -> dict[str, int]:
    """Faces per domain in the batch of ``step``; the odd remainder rotates over the other domains."""
    others = [d for d in DOMAINS if d != "photo"]
    n_photo = round(batch_size * photo_fraction)
    share, extra = divmod(batch_size - n_photo, len(others))
    counts = {"photo": n_photo}
    for j, d in enumerate(others):
        counts[d] = share + int((j - step) % len(others) < extra)
    return counts


def step_generator(seed: int, step: int) -> torch.Generator:
    """The augmentation generator of one step."""
    state = np.random.SeedSequence([int(seed), int(step), 1]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def augment(x: torch.Tensor, *, gen: torch.Generator, jitter: float, noise: float, shift: int) -> torch.Tensor:
    """Label-preserving augmentation. [B,3,H,W] in [-1,1] -> same"""
    b = x.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=gen) * 2 - 1  # noqa: E731  uniform in [-1, 1]
    y = torch.round((x + 1) * 127.5) / 255.0  # the 8-bit values a saved image would have, [0,1]
    y = y * (1 + jitter * u(b, 1, 1, 1)) * (1 + 0.5 * jitter * u(b, 3, 1, 1)) + 0.5 * jitter * u(b, 1, 1, 1)
    y = y + noise * torch.rand(b, 1, 1, 1, generator=gen) * torch.randn(y.shape, generator=gen)
    if shift > 0:
        h, w = y.shape[-2:]
        padded = F.pad(y, (shift, shift, shift, shift), mode="replicate")
        dx, dy = torch.randint(0, 2 * shift + 1, (2, b), generator=gen).tolist()
        y = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    return y.clamp(0, 1) * 2 - 1


def training_batch(cfg: TrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The un-augmented faces and conditions of ``step``. -> [B,3,S,S] in [-1,1], [B,17]"""
    images, conds, index = [], [], step * cfg.batch_size
    for domain, count in domain_counts(cfg.batch_size, photo_fraction=cfg.photo_fraction, step=step).items():
        if count:
            x, _, c = sample_batch(count, size=cfg.size, domain=domain, rng_or_seed=cfg.seed, start_index=index)
            images.append(x)
            conds.append(torch.from_numpy(c))
            index += count
    return torch.cat(images), torch.cat(conds)


def losses(model: AttributeEstimator, raw: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(loss, mse, bce): MSE on standardised continuous targets, BCE on binary ones, averaged over outputs."""
    binary = model.is_binary
    target = (cond - model.target_mean) / model.target_std  # [B, K]
    mse = (raw[:, ~binary] - target[:, ~binary]).square().mean(0).sum()
    bce = F.binary_cross_entropy_with_logits(raw[:, binary], cond[:, binary].clamp(0, 1), reduction="none")
    bce = bce.mean(0).sum()
    return (mse + bce) / raw.shape[1], mse / int((~binary).sum()), bce / max(1, int(binary.sum()))


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_ratio * lr`` at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


EVAL_FIELDS = ("step", "domain", "output", "metric", "value")


class StepTrainer:
    """The skeleton the small synthetic-data trainers share: a network, its Adam optimiser and the step counter;
    ``train()`` runs to ``cfg.steps`` with metrics / held-out / checkpoint bookkeeping in ``out_dir``.

    Subclasses set ``desc`` (progress bar), ``model_name``, ``metric_fields`` and ``eval_fields`` and implement
    ``train_step``, ``_record_eval``, ``state_dict``, ``extras``, ``save_model`` and ``_final_eval_due``
    (``run_state`` and ``run_extras`` hold what every run records).
    out_dir: run folder (None: nothing is written). max_seconds: stop (with a checkpoint) after this much training
    time in one ``train()`` call. cfg needs ``lr``, ``steps``, ``batch_size`` and the ``*_every`` intervals.
    """

    desc = "train"
    model_name = "model.pt"
    metric_fields: tuple[str, ...] = ()
    eval_fields: tuple[str, ...] = ()

    def __init__(self, cfg, model: torch.nn.Module, *, out_dir: str | Path | None, command_line: str, progress: bool,
                 max_seconds: float | None, best_score):
        self.cfg, self.model = cfg, model
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.command_line, self.progress, self.max_seconds = command_line, progress, max_seconds
        self.step, self.elapsed_s, self.best_score = 0, 0.0, best_score
        self.last_eval: dict | None = None
        self.threads = torch.get_num_threads()
        self._eval_data = None

    @property
    def images_seen(self) -> int:
        return self.step * self.cfg.batch_size

    def _out(self, name: str) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name

    def run_extras(self) -> dict:
        """What an exported model records about its run (subclasses add their own keys)."""
        return {"train_config": self.cfg.to_dict(), "step": self.step, "images_seen": self.images_seen,
                "data_seed": self.cfg.seed, "eval_seed": EVAL_SEED, "held_out": self.last_eval,
                "train_seconds": self.elapsed_s, "threads": self.threads, "command_line": self.command_line}

    def run_state(self, fmt: str, version: int) -> dict:
        """The bookkeeping part of a training state; subclasses add their networks and optimiser state."""
        return {"format": fmt, "format_version": version, "config": self.cfg.to_dict(), "step": self.step,
                "elapsed_s": self.elapsed_s, "best_score": self.best_score, "last_eval": self.last_eval,
                "threads": self.threads, "command_line": self.command_line}

    def _postfix(self, stats: dict) -> dict:
        """The progress bar's figures after a step."""
        return {"step": self.step, "loss": f"{stats['loss']:.4f}"}

    def _periodic(self, stats: dict, dt: float) -> None:
        cfg, s = self.cfg, self.step
        if self.out_dir is not None and s % cfg.log_every == 0:
            self._metrics_log.write(dict(step=s, images=self.images_seen, **stats, img_per_s=cfg.batch_size / dt,
                                         elapsed_s=self.elapsed_s))
        if s % cfg.eval_every == 0:
            self._record_eval()
        if self.out_dir is not None and s % cfg.checkpoint_every == 0:
            atomic_torch_save(self.state_dict(), self._out(CHECKPOINT_NAME))

    def train(self, *, on_step=None) -> str:
        """Train to ``cfg.steps``; returns ``"done"``, ``"interrupted"`` (Ctrl-C / SIGTERM: the running step
        finishes) or ``"time limit"``. The run folder then holds a checkpoint, the latest model and the held-out
        figures of the last step. on_step: optional callback ``on_step(trainer)`` after every step."""
        from tqdm import tqdm

        cfg = self.cfg
        if self.out_dir is not None:
            self._metrics_log = CsvLog(self._out("metrics.csv"), self.metric_fields, resume_step=self.step)
            self._eval_log = CsvLog(self._out("eval.csv"), self.eval_fields, resume_step=self.step)
            self._out("config.json").write_text(json.dumps(
                {"config": cfg.to_dict(), "command_line": self.command_line, "threads": self.threads}, indent=2))
        status, start = "done", time.perf_counter()
        with GracefulStop() as stop, tqdm(total=cfg.steps * cfg.batch_size, initial=self.images_seen, unit="img",
                                          unit_scale=True, file=sys.stderr, dynamic_ncols=True,
                                          disable=not self.progress, desc=self.desc) as bar:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                stats = self.train_step()
                dt = time.perf_counter() - t0
                self.elapsed_s += dt
                bar.update(cfg.batch_size)
                bar.set_postfix(self._postfix(stats), refresh=False)
                self._periodic(stats, dt)
                if on_step is not None:
                    on_step(self)
                if stop.requested:
                    status = "interrupted"
                    break
                if self.max_seconds is not None and time.perf_counter() - start > self.max_seconds:
                    status = "time limit"
                    break
        if self.out_dir is not None:
            if self._final_eval_due():
                self._record_eval()
            atomic_torch_save(self.state_dict(), self._out(CHECKPOINT_NAME))
            self.save_model(self._out(self.model_name))
        return status


def resume_trainer(trainer_cls, config_cls, state: dict, *, load_model, overrides: dict | None = None, **kwargs):
    """A ``trainer_cls`` continuing the training ``state`` of a ``StepTrainer`` (config, network through
    ``load_model``, optimiser, step, time, last held-out figures; the caller restores ``best_score``).
    ``overrides`` may change only ``OVERRIDABLE_ON_RESUME`` fields."""
    stored = config_cls.from_dict(state["config"])
    overrides = dict(overrides or {})
    if changed := sorted(k for k, v in overrides.items() if k not in OVERRIDABLE_ON_RESUME and getattr(stored, k) != v):
        raise ValueError(f"cannot change {', '.join(changed)} when resuming (the checkpoint fixes them)")
    cfg = replace(stored, **{k: v for k, v in overrides.items() if k in OVERRIDABLE_ON_RESUME})
    kwargs.setdefault("command_line", state.get("command_line", ""))
    trainer = trainer_cls(cfg, model=load_model(state["model"]), **kwargs)
    trainer.opt.load_state_dict(state["optimizer"])
    trainer.step, trainer.elapsed_s = int(state["step"]), float(state["elapsed_s"])
    trainer.last_eval = state.get("last_eval")
    return trainer


def start_run(args: argparse.Namespace, given: dict, *, kind: str, checkpoint_name: str, fresh, from_state,
              read_state, log) -> StepTrainer:
    """The trainer a ``train ...`` command runs: ``--resume`` continues a checkpoint (``from_state(state,
    overrides=given, ...)``); otherwise ``fresh(command_line=..., ...)`` starts one in ``--out``, which must not
    hold a run of this ``kind`` already. ``given``: the config fields set on the command line."""

    common = dict(out_dir=args.out, progress=not args.quiet,
                  max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    resume = resume_path(args.resume, args.out, name=checkpoint_name, what=f"{kind} training checkpoint")
    if resume is not None:
        trainer = from_state(read_state(resume), overrides=given, **common)
        log(f"resuming {resume} at step {trainer.step}")
        return trainer
    if (Path(args.out) / checkpoint_name).exists():
        raise ValueError(f"{args.out} already holds a {kind} run: continue it with --resume auto or choose "
                         "another --out")
    return fresh(command_line=command_line(), **common)


def given_fields(args: argparse.Namespace, flags: dict[str, str]) -> dict:
    """The config fields a command line set: ``flags`` maps argument names to config field names."""
    return {f: getattr(args, a) for a, f in flags.items() if getattr(args, a, None) is not None}


class EstimatorTrainer(StepTrainer):
    """The estimator, its Adam optimiser and the step counter; ``train()`` runs to ``cfg.steps``.

    out_dir: run folder (None: nothing is written). max_seconds: stop (with a checkpoint) after this much
    training time in this call. model: a starting network (resume); otherwise a fresh one from ``cfg``.
    """

    desc, model_name, metric_fields, eval_fields = "train attributes", MODEL_NAME, METRIC_FIELDS, EVAL_FIELDS

    def __init__(self, cfg: TrainConfig, *, out_dir: str | Path | None = None, model: AttributeEstimator | None = None,
                 command_line: str = "", progress: bool = True, max_seconds: float | None = None):
        model = (model or AttributeEstimator(estimator_config(cfg), seed=cfg.seed)).train()
        if model.cfg.input_size != cfg.size:
            raise ValueError(f"the network reads {model.cfg.input_size} px images but --size is {cfg.size}")
        model.to(memory_format=torch.channels_last)
        super().__init__(cfg, model, out_dir=out_dir, command_line=command_line, progress=progress,
                         max_seconds=max_seconds, best_score=math.inf)

    def train_step(self) -> dict:
        """One optimiser step on the batch of ``self.step``; returns its losses and learning rate."""
        cfg = self.cfg
        x, cond = training_batch(cfg, self.step)
        x = augment(x, gen=step_generator(cfg.seed, self.step), jitter=cfg.jitter, noise=cfg.noise, shift=cfg.shift)
        lr = lr_at(cfg, self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        loss, mse, bce = losses(self.model, self.model(x), cond)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return {"loss": float(loss.detach()), "mse": float(mse.detach()), "bce": float(bce.detach()), "lr": lr}

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Held-out figures of the current network (the faces are rendered once and kept)."""
        if self._eval_data is None or len(next(iter(self._eval_data.values()))[0]) != self.cfg.eval_n:
            self._eval_data = held_out(n=self.cfg.eval_n, size=self.cfg.size)
        self.last_eval = evaluate(self.model, self._eval_data)
        return self.last_eval

    def state_dict(self) -> dict:
        return {**self.run_state(TRAIN_FORMAT, 1), "model": estimator_checkpoint(self.model),
                "optimizer": self.opt.state_dict()}

    def extras(self) -> dict:
        """Metadata stored in exported models."""
        return {"train_config": self.cfg.to_dict(), "step": self.step, "images_seen": self.images_seen,
                "data_seed": self.cfg.seed, "eval_seed": EVAL_SEED, "eval_n": self.cfg.eval_n,
                "held_out": self.last_eval, "train_seconds": self.elapsed_s, "threads": self.threads,
                "command_line": self.command_line}

    def save_model(self, path: Path) -> None:
        save_estimator(path, self.model, extras=self.extras())

    def _final_eval_due(self) -> bool:
        return bool(self.step % self.cfg.eval_every)

    def _record_eval(self) -> None:
        results = self.evaluate()
        if self.out_dir is None:
            return
        rows = [{"step": self.step, "domain": d, "output": n, "metric": "accuracy" if n in BINARY else "mae",
                 "value": v} for d, row in results.items() for n, v in row.items()]
        self._eval_log.write(*rows)
        self._out("eval.json").write_text(json.dumps({"step": self.step, "held_out": results}, indent=2))
        score = photo_score(self.model, results)
        if score < self.best_score:
            self.best_score = score
            self.save_model(self._out(BEST_NAME))


def read_state(path: str | Path) -> dict:
    """A training checkpoint written by ``EstimatorTrainer``; ModelFormatError if it is something else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a format problem for the user
        raise ModelFormatError(f"{path} cannot be read: {unreadable_reason(e)}") from None
    if not isinstance(state, dict) or state.get("format") != TRAIN_FORMAT or state.get("format_version") != 1:
        raise ModelFormatError(f"{path}: not an attribute-estimator training checkpoint")
    return state


def trainer_from_state(state: dict, *, overrides: dict | None = None, **kwargs) -> EstimatorTrainer:
    """Continue a checkpoint; ``overrides`` may change only ``OVERRIDABLE_ON_RESUME`` fields."""
    trainer = resume_trainer(EstimatorTrainer, TrainConfig, state, load_model=load_estimator, overrides=overrides,
                             **kwargs)
    trainer.best_score = float(state["best_score"])
    return trainer


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


# argparse destination -> TrainConfig field
_FLAGS = {"steps": "steps", "batch": "batch_size", "size": "size", "seed": "seed", "lr": "lr",
          "photo_fraction": "photo_fraction", "widths": "widths", "blocks": "blocks", "eval_n": "eval_n",
          "eval_every": "eval_every", "checkpoint_every": "checkpoint_every", "log_every": "log_every"}


def add_schedule_arguments(p: argparse.ArgumentParser, d) -> None:
    """The options every ``StepTrainer`` command shares: evaluation / checkpoint / log intervals (defaults from the
    config ``d``), threads, a time limit and quiet."""
    p.add_argument("--eval-every", type=int, help=f"held-out evaluation interval (default {d.eval_every})")
    p.add_argument("--checkpoint-every", type=int, help=f"checkpoint interval (default {d.checkpoint_every})")
    p.add_argument("--log-every", type=int, help=f"metrics.csv row interval (default {d.log_every})")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this much training")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def add_attributes_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``train attributes`` flags; unset flags keep ``TrainConfig``'s defaults (or the checkpoint's)."""
    d = TrainConfig()
    parser.add_argument("--out", required=True, help="run folder (checkpoint.pt, estimator.pt, best.pt, "
                        "metrics.csv, eval.csv, eval.json)")
    parser.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    parser.add_argument("--steps", type=int, help=f"optimiser steps (default {d.steps})")
    parser.add_argument("--batch", type=int, help=f"faces per step (default {d.batch_size})")
    parser.add_argument("--size", type=int, help=f"image side the network reads (default {d.size})")
    parser.add_argument("--seed", type=int, help=f"seed of initialisation, data and augmentation (default {d.seed})")
    parser.add_argument("--lr", type=float, help=f"peak Adam learning rate (default {d.lr})")
    parser.add_argument("--photo-fraction", type=float, help=f"share of photos per batch (default {d.photo_fraction})")
    parser.add_argument("--widths", type=int_list, help="channels per stage (default "
                        f"{','.join(map(str, d.widths))})")
    parser.add_argument("--blocks", type=int_list, help=f"residual blocks per stage (default "
                        f"{','.join(map(str, d.blocks))})")
    parser.add_argument("--eval-n", type=int, help=f"held-out faces per domain (default {d.eval_n})")
    add_schedule_arguments(parser, d)
    parser.add_argument("--export", metavar="PATH", help="at the end, release OUT/best.pt to PATH with a manifest "
                        "PATH.json (sha256, command, seeds, hardware, held-out figures)")
    return parser


def _trainer(args, log) -> EstimatorTrainer:
    given = {f: getattr(args, a) for a, f in _FLAGS.items() if getattr(args, a, None) is not None}
    common = dict(out_dir=args.out, progress=not args.quiet,
                  max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    path = Path(args.out) / CHECKPOINT_NAME
    if args.resume:
        if not path.is_file():
            raise ValueError(f"--resume: no training checkpoint at {path}")
        trainer = trainer_from_state(read_state(path), overrides=given, **common)
        log(f"resuming {path} at step {trainer.step}")
        return trainer
    if path.exists():
        raise ValueError(f"{path} exists: pass --resume to continue it, or choose another --out")
    command = getattr(args, "command_line", None) or command_line()
    return EstimatorTrainer(TrainConfig(**given), command_line=command, **common)


def run_train_attributes(args: argparse.Namespace) -> int:
    """``train attributes``: train (or resume) the estimator; 0 when done (or stopped by --max-minutes),
    130 when interrupted, 2 for a user error."""
    log = (lambda msg: print(msg, file=sys.stderr)) if not args.quiet else (lambda msg: None)
    if args.threads is not None:
        if args.threads < 1:
            print("error: --threads must be at least 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    try:
        trainer = _trainer(args, log)
    except (ValueError, TypeError, ModelFormatError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    c = trainer.cfg
    n_params = sum(p.numel() for p in trainer.model.parameters())
    log(f"training the attribute estimator ({n_params / 1e6:.2f} M parameters, widths {list(c.widths)}) on "
        f"{c.size} px synthetic faces, batch {c.batch_size} ({c.photo_fraction:.0%} photo), {c.steps} steps, "
        f"{torch.get_num_threads()} threads")
    status = trainer.train()
    log(f"{status} at step {trainer.step} ({trainer.images_seen} images, {trainer.elapsed_s / 60:.1f} min); "
        f"held-out figures at step {trainer.step}:\n{format_table(trainer.last_eval, binary=BINARY)}")
    if args.export:
        manifest = release(Path(args.out) / BEST_NAME, args.export, eval_n=max(c.eval_n, 1024))
        log(f"released {args.export} (sha256 {manifest['sha256']})")
    return 130 if status == "interrupted" else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.train.estimator --out DIR ...`` (the same flags as ``main.py train attributes``)."""
    parser = argparse.ArgumentParser(prog="python -m engine.train.estimator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    argv = sys.argv[1:] if argv is None else argv
    args = add_attributes_arguments(parser).parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "engine.train.estimator", *argv])
    return run_train_attributes(args)


__all__ = ["TrainConfig", "EstimatorTrainer", "estimator_config", "target_stats", "domain_counts", "augment",
           "training_batch", "losses", "lr_at", "StepTrainer", "resume_trainer", "int_list", "read_state",
           "trainer_from_state", "add_attributes_arguments",
           "run_train_attributes", "main", "EVAL_SEED", "BINARY"]

if __name__ == "__main__":
    sys.exit(main())
