"""Training the domain classifier on the synthetic face world, and its held-out evaluation.

Data, rendered afresh every step: step ``s`` draws ``batch_size / len(domains)`` faces (samples ``s*k .. s*k+k-1``
of the data seed) and draws each of them in every domain, so no face, pose or lighting cue tells domains apart,
only the style does. Augmentation keeps the label and imitates generated images (blurrier than renders): a
Gaussian blur of random width on a share of the faces, saturation jitter, then the attribute estimator's
``augment`` (8-bit quantisation, brightness / contrast / per-channel jitter, noise, a small shift). Every random
draw of step ``s`` comes from ``step_generator(seed, s)`` and the learning rate is a function of ``s``, so a
resumed run repeats an uninterrupted one bit for bit (same thread count).

Held-out figures: samples ``0..n-1`` of ``EVAL_SEED`` (which no training seed may use) drawn in every domain and
quantised to 8 bits (``engine.train.release.estimator.held_out``): accuracy per domain, the confusion matrix (rows:
true domain, columns: predicted), the mean probability of the true domain and the mean cross-entropy.

Run folder (``engine.train.loop``): ``checkpoint.pt`` (training state, atomic), ``domains.pt`` (latest model),
``best.pt`` (best held-out accuracy, then cross-entropy), ``metrics.csv``, ``eval.csv`` / ``eval.json``,
``config.json``. ``python main.py train domains --out RUN --steps N --batch B --threads 1 --seed 0 --resume auto``
trains; ``python main.py train release-domains RUN/best.pt`` releases it (``engine.train.release.domains``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.files.configs import DictForm
from engine.models.domains import FORMAT, DomainClassifier, DomainConfig, classify, domains_checkpoint, load_domains
from engine.models.ops import gaussian_blur
from engine.synth import DOMAINS, build_scene, sample_params
from engine.synth.styles import STYLES, check_domain
from engine.train.estimator import augment as estimator_augment
from engine.train.estimator import lr_at, step_generator
from engine.train.loop import ModelTrainer, check_synthetic, require
from engine.train.release.estimator import EVAL_SEED, held_out

STATE_FORMAT = "face-editor/train-domains"
STATE_VERSION = 1
MODEL_NAME = "domains.pt"
METRIC_FIELDS = ("step", "images", "loss", "accuracy", "lr", "img_per_s", "elapsed_s")
EVAL_FIELDS = ("step", "domain", "accuracy", "confidence")
GENERATOR_DOMAIN = "photo"


@dataclass(frozen=True)
class DomainTrainConfig(DictForm, what="the domain classifier's training settings"):
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
        check_synthetic(self, domains=self.domains)
        require(self, ("steps", "batch_size", "eval_n", "eval_every", "checkpoint_every", "log_every"), at_least=1)
        if self.batch_size % len(self.domains):
            raise ValueError(f"batch_size must be a multiple of the {len(self.domains)} domains (each face is drawn "
                             f"in every domain), got {self.batch_size}")
        require(self, ("lr",), above=0)
        require(self, ("warmup", "blur", "saturation", "jitter", "noise", "shift"), at_least=0)
        require(self, ("final_lr_ratio", "blur_prob"), at_least=0, at_most=1)

    @property
    def faces_per_step(self) -> int:
        return self.batch_size // len(self.domains)



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


class DomainTrainer(ModelTrainer):
    """The network, its Adam optimiser and the step counter; ``train()`` runs to ``cfg.steps`` (``engine.train.loop``).
    model: a starting network (resume); otherwise a fresh one from ``cfg``. best.pt: the best held-out mean
    accuracy, then cross-entropy."""

    kind, command = "domain classifier", "train domains"
    state_format, state_version, config_cls = STATE_FORMAT, STATE_VERSION, DomainTrainConfig
    model_name, model_format, metric_fields, eval_fields = MODEL_NAME, FORMAT, METRIC_FIELDS, EVAL_FIELDS
    load_model, format_figures = staticmethod(load_domains), staticmethod(format_figures)

    def __init__(self, cfg: DomainTrainConfig, *, model: DomainClassifier | None = None, **kwargs):
        model = (model or DomainClassifier(domain_config(cfg), seed=cfg.seed)).train()
        if model.cfg != domain_config(cfg):
            raise ValueError(f"the network {model.cfg} is not the one the training config describes")
        super().__init__(cfg, model, **kwargs)

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

    def held_out_figures(self) -> dict:
        """``evaluate``'s figures of the current network (the faces are rendered once and kept)."""
        if self._eval_data is None or len(next(iter(self._eval_data.values()))[0]) != self.cfg.eval_n:
            self._eval_data = held_out(n=self.cfg.eval_n, size=self.cfg.size, domains=self.cfg.domains)
        return evaluate(self.model, self._eval_data)

    def eval_rows(self, figures: dict) -> list[dict]:
        return [{"step": self.step, "domain": d, "accuracy": a, "confidence": figures["confidence"][d]}
                for d, a in figures["accuracy"].items()]

    def score(self, figures: dict) -> list[float]:
        return [figures["mean_accuracy"], -figures["nll"]]

    def checkpoint(self) -> dict:
        return domains_checkpoint(self.model, extras=self.extras())

    def postfix(self) -> dict:
        post = {"loss": f"{self.stats['loss']:.4f}"}
        if self.last_eval:
            post["held_out"] = f"{100 * self.last_eval['mean_accuracy']:.1f}%"
        return post

    def subject(self) -> str:
        return (f"the domain classifier ({self.parameters()} parameters, widths {list(self.cfg.widths)}) on "
                f"{self.cfg.size} px synthetic faces in {len(self.cfg.domains)} domains")


__all__ = ["DomainTrainConfig", "DomainTrainer", "domain_config", "render_domains", "training_batch",
           "gaussian_blur", "augment", "evaluate", "format_figures", "STATE_FORMAT",
           "MODEL_NAME", "GENERATOR_DOMAIN", "EVAL_SEED"]
