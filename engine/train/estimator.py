"""Training the attribute estimator on the synthetic face world (evaluation: ``engine.train.release.estimator``).

Every step renders a fresh batch: ``photo_fraction`` of it photos, the rest spread over the other domains.
Step ``s`` uses samples ``s*B .. s*B+B-1`` of the data seed and an augmentation generator seeded by
``(seed, s)``, and the learning rate is a function of ``s``, so a resumed run is bit-identical to an
uninterrupted one. Augmentation keeps the labels: 8-bit quantisation, colour jitter, noise, a small shift.

Run folder (``engine.train.loop``): ``checkpoint.pt`` (training state), ``estimator.pt`` (latest model),
``best.pt`` (best held-out photo score), ``metrics.csv`` (mean losses per ``log_every`` steps), ``eval.csv`` /
``eval.json`` (held-out figures), ``config.json``. The held-out faces are samples ``0..n-1`` of ``EVAL_SEED``, drawn
in every domain, which no training seed uses. Command line: ``python main.py train attributes --out DIR --steps N
--batch B --size 64 --seed S`` (``engine.cli.train_synthetic``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.files.configs import DictForm
from engine.models.estimator import (
    FORMAT,
    AttributeEstimator,
    EstimatorConfig,
    estimator_checkpoint,
    load_estimator,
)
from engine.synth import CONDITION_NAMES, DOMAINS, attributes, sample_batch, sample_params
from engine.train.loop import ModelTrainer, check_synthetic, require
from engine.train.release.estimator import EVAL_SEED, evaluate, format_table, held_out, photo_score

BINARY = ("gender", "glasses")
TRAIN_FORMAT = "face-editor/estimator-train"
MODEL_NAME = "estimator.pt"
METRIC_FIELDS = ("step", "images", "loss", "mse", "bce", "lr", "img_per_s", "elapsed_s")


@dataclass(frozen=True)
class TrainConfig(DictForm, what="the attribute estimator's training settings"):
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
        check_synthetic(self)
        require(self, ("steps", "stats_n", "eval_n", "eval_every", "checkpoint_every", "log_every"), at_least=1)
        require(self, ("batch_size",), at_least=len(DOMAINS))  # one face per domain
        require(self, ("lr",), above=0)
        require(self, ("jitter", "noise"), at_least=0)
        require(self, ("photo_fraction",), at_least=0, at_most=1)



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


class EstimatorTrainer(ModelTrainer):
    """The estimator, its Adam optimiser and the step counter; ``train()`` runs to ``cfg.steps``
    (``engine.train.loop``). model: a starting network (resume); otherwise a fresh one from ``cfg``."""

    kind, command = "attribute estimator", "train attributes"
    state_format, config_cls = TRAIN_FORMAT, TrainConfig
    model_name, model_format, metric_fields, eval_fields = MODEL_NAME, FORMAT, METRIC_FIELDS, EVAL_FIELDS
    load_model = staticmethod(load_estimator)

    @staticmethod
    def format_figures(figures: dict) -> str:
        return format_table(figures["held_out"], binary=BINARY)

    def __init__(self, cfg: TrainConfig, *, model: AttributeEstimator | None = None, **kwargs):
        model = (model or AttributeEstimator(estimator_config(cfg), seed=cfg.seed)).train()
        if model.cfg.input_size != cfg.size:
            raise ValueError(f"the network reads {model.cfg.input_size} px images but --size is {cfg.size}")
        model.to(memory_format=torch.channels_last)
        super().__init__(cfg, model, **kwargs)

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

    def held_out_figures(self) -> dict:
        """``held_out``: domain -> output -> MAE or accuracy (the faces are rendered once and kept)."""
        if self._eval_data is None or len(next(iter(self._eval_data.values()))[0]) != self.cfg.eval_n:
            self._eval_data = held_out(n=self.cfg.eval_n, size=self.cfg.size)
        return {"held_out": evaluate(self.model, self._eval_data)}

    def eval_rows(self, figures: dict) -> list[dict]:
        return [{"step": self.step, "domain": d, "output": n, "metric": "accuracy" if n in BINARY else "mae",
                 "value": v} for d, row in figures["held_out"].items() for n, v in row.items()]

    def score(self, figures: dict) -> float:
        return -photo_score(self.model, figures["held_out"])

    def extras(self) -> dict:
        return {**super().extras(), "held_out": self.last_eval.get("held_out"), "eval_n": self.cfg.eval_n}

    def checkpoint(self) -> dict:
        return estimator_checkpoint(self.model, extras=self.extras())

    def postfix(self) -> dict:
        return {"loss": f"{self.stats['loss']:.4f}"}

    def subject(self) -> str:
        c = self.cfg
        return (f"the attribute estimator ({self.parameters()} parameters, widths {list(c.widths)}) on {c.size} px "
                f"synthetic faces ({c.photo_fraction:.0%} photos)")


__all__ = ["TrainConfig", "EstimatorTrainer", "estimator_config", "target_stats", "domain_counts", "augment",
           "training_batch", "losses", "lr_at", "step_generator", "EVAL_SEED", "BINARY", "MODEL_NAME",
           "METRIC_FIELDS", "EVAL_FIELDS"]
