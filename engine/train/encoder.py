"""Training an inversion encoder on a generator's own samples (``python main.py train encoder``), and its release
as the embedded default's encoder (``python main.py train release-encoder``).

Data, made on the fly: step ``s`` draws B latents from the frozen generator G: z -> w (psi 1), a second z for a
style mix with probability ``mixing_prob`` (rows from a crossover index drawn in ``[1, num_ws)`` come from it),
then the truncation ``w_avg + psi (w - w_avg)`` with psi drawn uniformly in ``[psi_min, psi_max]`` per sample, so
the encoder sees the W+ the editor makes (psi 0.7 by default, mixed styles). The images ``x = G(ws)`` (constant
noise, clamped to [-1, 1] like a photo) are rendered without gradients.

Loss: ``latent_weight * MSE(E.offsets(x), E.normalise(ws))`` (W+ in the encoder's normalised space:
``(w - w_avg) / w_scale``, ``w_scale`` the per-dimension spread of G's mapped latents) plus ``image_weight *
MSE(G(E(x)), x)`` through the frozen G, plus optionally ``ssim_weight * (1 - SSIM(G(E(x)), x))`` (off by default).
Adam; the learning rate ramps down (cosine) over the last ``rampdown`` fraction of the steps.

Held-out evaluation, every ``eval_every`` steps: ``eval_n`` latents drawn by the fixed recipe ``EVAL_RECIPE``
from a random stream no training step uses (``step_generator(EVAL_SEED, 1, i)``; training draws from rank 0 of
``step_generator(seed, 0, step)``): PSNR (dB, images in [-1, 1] clamped, peak-to-peak 2) of ``G(E(x))`` against
``x``, their SSIM (when the images hold an SSIM window), the normalised latent MSE, and the latent distance (mean
over samples and W+ rows of ``|w_E - w|_2`` in W units). The same figures for the constant guess ``w_avg`` are
the baseline.

Randomness: every draw of step ``s`` comes from ``step_generator(seed, 0, s)``, so the step counter is the whole
random state and a resumed run repeats an uninterrupted one bit for bit (on the CPU, same thread count).

Files under ``out_dir``: ``checkpoint.pt`` (training state, atomic, every ``checkpoint_every`` steps and on Ctrl-C
/ SIGTERM / ``--max-minutes``), ``encoder.pt`` (``save_encoder`` with its info, at the end),
``snapshots/encoder-KKKKKKkimg.pt`` (every ``snapshot_every`` steps), ``metrics.csv``, ``eval.csv``, ``config.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.algorithms import similarity
from engine.assets import ASSETS_DIR, DEFAULT_ENCODER, DEFAULT_GENERATOR
from engine.errors import ModelFormatError
from engine.files.checkpoints import (
    atomic_torch_save,
    check_training_state,
    read_training_state,
    resume_path,
    resumed_config,
)
from engine.files.paths import command_line, write_json
from engine.models.encoder import Encoder, EncoderConfig, check_compatible, load_encoder, save_encoder
from engine.models.stylegan2 import Generator
from engine.runtime import GracefulStop
from engine.train.csvlog import CsvLog
from engine.train.stylegan2 import step_generator

STATE_FORMAT = "face-editor/train-encoder"
STATE_VERSION = 1
CHECKPOINT_NAME, MODEL_NAME, SNAPSHOT_DIR = "checkpoint.pt", "encoder.pt", "snapshots"
METRIC_FIELDS = ("step", "kimg", "loss", "latent_mse", "image_mse", "one_minus_ssim", "lr", "sec_per_step", "time_s")
EVAL_FIELDS = ("step", "kimg", "psnr_db", "ssim", "latent_mse", "latent_l2", "time_s")
OVERRIDABLE_ON_RESUME = ("kimg", "eval_every", "checkpoint_every", "snapshot_every", "log_every")
EVAL_SEED = 0x455643  # the held-out stream: step_generator(EVAL_SEED, 1, i); training only uses rank 0
EVAL_RECIPE = {"psi_min": 0.5, "psi_max": 1.0, "mixing_prob": 0.5}  # fixed, so figures compare across runs
STATS_SEED = 0x5CA1E  # z of the latent statistics (w_scale): step_generator(STATS_SEED, 2, 0)
STATS_N = 4096
EVAL_CHUNK = 64


@dataclass(frozen=True)
class EncoderTrainConfig:
    """The recipe of an encoder training run (the architecture is an ``EncoderConfig``). Intervals count steps.

    psi_min / psi_max: range of the per-sample truncation psi; mixing_prob: chance that a sample is a style mix.
    rampdown: fraction of the steps over which the learning rate falls to 0 (cosine). eval_n: held-out samples.
    """

    kimg: float = 120.0
    batch_size: int = 16
    lr: float = 5e-4
    beta2: float = 0.99
    rampdown: float = 0.25
    psi_min: float = 0.5
    psi_max: float = 1.0
    mixing_prob: float = 0.5
    latent_weight: float = 1.0
    image_weight: float = 10.0
    ssim_weight: float = 0.0
    seed: int = 0
    eval_n: int = 256
    eval_every: int = 500
    checkpoint_every: int = 250
    snapshot_every: int = 2000
    log_every: int = 10

    def __post_init__(self):
        for name in ("batch_size", "eval_n", "eval_every", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.snapshot_every < 0 or self.seed < 0:
            raise ValueError(f"snapshot_every and seed must be >= 0, got {self.snapshot_every} and {self.seed}")
        if not self.kimg > 0 or not self.lr > 0 or not 0 <= self.beta2 < 1 or not 0 <= self.rampdown <= 1:
            raise ValueError(f"need kimg > 0, lr > 0, 0 <= beta2 < 1, 0 <= rampdown <= 1; got kimg={self.kimg}, "
                             f"lr={self.lr}, beta2={self.beta2}, rampdown={self.rampdown}")
        if not self.psi_min <= self.psi_max or not 0 <= self.mixing_prob <= 1:
            raise ValueError(f"need psi_min <= psi_max and 0 <= mixing_prob <= 1, got {self.psi_min}, "
                             f"{self.psi_max}, {self.mixing_prob}")
        weights = (self.latent_weight, self.image_weight, self.ssim_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise ValueError(f"the loss weights must be >= 0 and not all 0, got latent {self.latent_weight}, image "
                             f"{self.image_weight}, ssim {self.ssim_weight}")

    @property
    def total_steps(self) -> int:
        return max(1, math.ceil(self.kimg * 1000 / self.batch_size))

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step``: constant, then a cosine ramp-down over the last ``rampdown``."""
        t = step / self.total_steps
        if self.rampdown == 0 or t <= 1 - self.rampdown:
            return self.lr
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (t - (1 - self.rampdown)) / self.rampdown)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderTrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown encoder training settings {sorted(unknown)} (written by a newer version?)")
        return cls(**d)


# ---- data -----------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_latents(G: Generator, n: int, gen: torch.Generator, *, psi_min: float, psi_max: float,
                   mixing_prob: float) -> torch.Tensor:
    """n W+ latents of G drawn from ``gen`` (CPU): mapped z, per-sample style mix and truncation psi (see the
    module docstring). -> [n, num_ws, w_dim] on G's device"""
    c, dev = G.cfg, G.w_avg.device
    z = torch.randn(n, c.z_dim, generator=gen)
    z2 = torch.randn(n, c.z_dim, generator=gen)
    mixed = torch.rand(n, generator=gen) < mixing_prob  # [n]
    cut = torch.randint(1, max(2, c.num_ws), (n,), generator=gen)  # [n] first row taken from z2
    psi = psi_min + (psi_max - psi_min) * torch.rand(n, generator=gen)  # [n]
    ws = G.mapping(z.to(dev))  # [n, num_ws, w_dim]
    ws2 = G.mapping(z2.to(dev))
    from_second = (mixed[:, None] & (torch.arange(c.num_ws)[None] >= cut[:, None])).to(dev)  # [n, num_ws]
    ws = torch.where(from_second[..., None], ws2, ws)
    return torch.lerp(G.w_avg, ws, psi.to(dev)[:, None, None])


@torch.no_grad()
def render(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    """G's image of ``ws`` with constant noise, clamped to [-1, 1] like a photo. -> [B, 3, R, R]"""
    return G.synthesis(ws, noise_mode="const").clamp(-1, 1)


@torch.no_grad()
def latent_scale(G: Generator, *, n: int = STATS_N) -> torch.Tensor:
    """Per-dimension RMS spread of G's mapped latents (psi 1) around ``w_avg``, from ``n`` seeded z. -> [w_dim]"""
    gen = step_generator(STATS_SEED, 2, 0)
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    for i in range(0, n, 1024):
        z = torch.randn(min(1024, n - i), G.z_dim, generator=gen)
        total += (G.mapping(z.to(G.w_avg.device))[:, 0] - G.w_avg).double().square().sum(0).cpu()
    return (total / n).sqrt().to(torch.float32).clamp_min(1e-6)


def held_out_latents(G: Generator, n: int) -> torch.Tensor:
    """The fixed held-out latents: ``EVAL_RECIPE`` drawn in chunks of ``EVAL_CHUNK`` from streams
    ``step_generator(EVAL_SEED, 1, chunk)``. -> [n, num_ws, w_dim] on G's device"""
    return torch.cat([sample_latents(G, min(EVAL_CHUNK, n - i), step_generator(EVAL_SEED, 1, i // EVAL_CHUNK),
                                     **EVAL_RECIPE) for i in range(0, n, EVAL_CHUNK)])


@torch.no_grad()
def evaluate_encoder(encoder: Encoder | None, G: Generator, ws: torch.Tensor, *, images: torch.Tensor | None = None
                     ) -> dict[str, float]:
    """Held-out figures of ``encoder`` on latents ``ws`` (None: the constant guess ``w_avg``): mean PSNR (dB) and
    SSIM of G(E(x)) vs x (images clamped to [-1, 1]; SSIM only when the images hold its window), the normalised
    latent MSE (in the encoder's space; w_scale from G when there is no encoder) and the mean per-row latent
    distance |w_E - w|_2."""
    scale = encoder.w_scale if encoder is not None else latent_scale(G)
    with_ssim = G.img_resolution >= similarity.WINDOW
    psnr, ssim, sq, dist = [], [], 0.0, 0.0
    for i in range(0, len(ws), EVAL_CHUNK):
        w = ws[i:i + EVAL_CHUNK]
        x = render(G, w) if images is None else images[i:i + EVAL_CHUNK]
        pred = encoder(x) if encoder is not None else G.w_avg.expand_as(w)
        rec = render(G, pred)
        psnr.append(similarity.psnr(rec, x))
        if with_ssim:
            ssim.append(similarity.ssim(rec, x))
        sq += (((pred - w) / scale).double().square().mean((1, 2))).sum().item()
        dist += (pred - w).double().norm(dim=2).mean(1).sum().item()
    out = {"psnr_db": torch.cat(psnr).double().mean().item()}
    if with_ssim:
        out["ssim"] = torch.cat(ssim).double().mean().item()
    return {**out, "latent_mse": sq / len(ws), "latent_l2": dist / len(ws)}


# ---- trainer --------------------------------------------------------------------------------------------------


class EncoderTrainer:
    """Trains an ``Encoder`` for the frozen generator ``G`` (``G.model_info.sha256`` is recorded when present).
    ``train()`` writes under ``out_dir``."""

    def __init__(self, cfg: EncoderTrainConfig, enc_cfg: EncoderConfig, G: Generator, *,
                 out_dir: str | Path | None = None, generator_path: str | None = None,
                 device: str | torch.device = "cpu", command_line: str = "", progress: bool = True):
        if (enc_cfg.num_ws, enc_cfg.w_dim, enc_cfg.img_channels) != (G.num_ws, G.w_dim, G.img_channels):
            raise ValueError(f"the encoder predicts W+ [{enc_cfg.num_ws}, {enc_cfg.w_dim}] from {enc_cfg.img_channels}"
                             f"-channel images; the generator has [{G.num_ws}, {G.w_dim}] and {G.img_channels}")
        self.cfg, self.enc_cfg = cfg, enc_cfg
        self.device = torch.device(device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.command_line = command_line
        self.progress = progress
        info = getattr(G, "model_info", None)
        self.generator_sha256 = info.sha256 if info is not None else None
        self.generator_path = generator_path or (info.path if info is not None else None)
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.encoder = Encoder(enc_cfg, seed=cfg.seed)
        self.encoder.set_latent_stats(G.w_avg.detach().cpu(), latent_scale(self.G).cpu())
        self.encoder.to(self.device).train()
        self.opt = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2))
        self.step = 0
        self.elapsed_s = 0.0
        self.stats: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self._held_out: tuple[torch.Tensor, torch.Tensor] | None = None
        self._baseline: dict[str, float] | None = None

    @property
    def images_seen(self) -> int:
        return self.step * self.cfg.batch_size

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of step ``step``: (images [B, 3, R, R], ws [B, num_ws, w_dim])."""
        c = self.cfg
        ws = sample_latents(self.G, c.batch_size, step_generator(c.seed, 0, step), psi_min=c.psi_min,
                            psi_max=c.psi_max, mixing_prob=c.mixing_prob)
        return render(self.G, ws), ws

    def train_step(self) -> dict[str, float]:
        """One Adam step; returns the step's figures."""
        c = self.cfg
        x, ws = self.batch(self.step)
        lr = c.lr_at(self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.encoder.train()
        off = self.encoder.offsets(x)  # [B, num_ws, w_dim]
        latent = (off - self.encoder.normalise(ws)).square().mean()
        loss = c.latent_weight * latent
        image = structure = torch.zeros([])
        if c.image_weight > 0 or c.ssim_weight > 0:
            rec = self.G.synthesis(self.encoder.denormalise(off), noise_mode="const")  # [B, 3, R, R]
            image = F.mse_loss(rec, x)
            loss = loss + c.image_weight * image
            if c.ssim_weight > 0:
                structure = 1 - similarity.ssim(rec, x).mean()
                loss = loss + c.ssim_weight * structure
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss.item()} at step {self.step}: lower --lr")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.stats = {"loss": loss.item(), "latent_mse": latent.item(), "image_mse": image.item(),
                      "one_minus_ssim": structure.item(), "lr": lr}
        return self.stats

    def held_out(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents, images) of the held-out set (made once)."""
        if self._held_out is None:
            ws = held_out_latents(self.G, self.cfg.eval_n)
            self._held_out = ws, torch.cat([render(self.G, w) for w in ws.split(EVAL_CHUNK)])
        return self._held_out

    def baseline(self) -> dict[str, float]:
        """Held-out figures of the constant guess ``w_avg``."""
        if self._baseline is None:
            ws, x = self.held_out()
            self._baseline = evaluate_encoder(None, self.G, ws, images=x)
        return self._baseline

    def evaluate(self) -> dict[str, float]:
        """Held-out figures (``evaluate_encoder``) of the encoder now, with the step."""
        ws, x = self.held_out()
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            result = evaluate_encoder(self.encoder, self.G, ws, images=x)
        finally:
            self.encoder.train(was_training)
        self.last_eval = {**result, "step": self.step}
        return self.last_eval

    # ---- state ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The full training state (plain containers and tensors; loadable with ``weights_only=True``)."""
        return {
            "format": STATE_FORMAT, "format_version": STATE_VERSION, "config": self.cfg.to_dict(),
            "encoder_arch": self.enc_cfg.to_dict(),
            "encoder": {k: v.detach().to("cpu").clone() for k, v in self.encoder.state_dict().items()},
            "opt": self.opt.state_dict(), "step": self.step, "elapsed_s": self.elapsed_s,
            "generator": {"path": self.generator_path, "sha256": self.generator_sha256},
            "rng": {"scheme": "step s draws from step_generator(seed, 0, s)", "seed": self.cfg.seed},
            "command_line": self.command_line, "stats": dict(self.stats), "last_eval": dict(self.last_eval),
        }

    def load_state_dict(self, state: dict) -> None:
        check_state(state)
        stored = state["generator"]["sha256"]
        if stored is not None and self.generator_sha256 is not None and stored != self.generator_sha256:
            raise ValueError(f"the checkpoint trains an encoder for generator {stored[:12]}..., not for "
                             f"{self.generator_sha256[:12]}...: resume with the same --model")
        self.encoder.load_state_dict(state["encoder"])
        self.opt.load_state_dict(state["opt"])
        self.step = int(state["step"])
        self.elapsed_s = float(state["elapsed_s"])
        self.stats = dict(state.get("stats") or {})
        self.last_eval = dict(state.get("last_eval") or {})

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path is not None else self._out(CHECKPOINT_NAME)
        atomic_torch_save(self.state_dict(), path)
        return path

    def info(self) -> dict:
        """Metadata stored with the encoder: the generator it belongs to, training length and figures."""
        info = {"generator_sha256": self.generator_sha256, "generator": self.generator_path,
                "kimg": self.images_seen / 1000, "training_steps": self.step, "training_images": self.images_seen,
                "training_time_s": round(self.elapsed_s, 3), "seed": self.cfg.seed,
                "command_line": self.command_line, "train_config": self.cfg.to_dict(),
                "eval_recipe": {**EVAL_RECIPE, "n": self.cfg.eval_n, "seed": EVAL_SEED}}
        if self.last_eval:
            info["figures"] = dict(self.last_eval)
            info["baseline_w_avg"] = dict(self.baseline())
        return info

    def export(self, path: str | Path | None = None) -> Path:
        """Write the encoder (``save_encoder`` with ``info()``)."""
        path = Path(path) if path is not None else self._out(MODEL_NAME)
        was_training = self.encoder.training
        save_encoder(path, self.encoder.eval(), info=self.info())
        self.encoder.train(was_training)
        return path

    # ---- loop -----------------------------------------------------------------------------------------------

    def _out(self, name: str) -> Path:
        if self.out_dir is None:
            raise ValueError("this trainer has no output folder")
        path = self.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def train(self, *, max_seconds: float | None = None, on_step=None) -> str:
        """Train to ``cfg.total_steps``; ``"done"``, ``"time limit"`` (``max_seconds`` of training in this call) or
        ``"interrupted"`` (Ctrl-C / SIGTERM: the running step finishes). A checkpoint and ``encoder.pt`` are
        written in every case. on_step: optional callback ``on_step(trainer)`` after every step."""
        from tqdm import tqdm

        cfg = self.cfg
        total = cfg.total_steps
        writes = self.out_dir is not None
        metrics = evals = None
        if writes:
            metrics = CsvLog(self._out("metrics.csv"), METRIC_FIELDS, resume_step=self.step)
            evals = CsvLog(self._out("eval.csv"), EVAL_FIELDS, resume_step=self.step)
            self._out("config.json").write_text(json.dumps(
                {"config": cfg.to_dict(), "encoder": self.enc_cfg.to_dict(), "generator": self.generator_path,
                 "generator_sha256": self.generator_sha256, "command_line": self.command_line,
                 "eval_recipe": {**EVAL_RECIPE, "n": cfg.eval_n, "seed": EVAL_SEED},
                 "baseline_w_avg": self.baseline()}, indent=2))
            if self.step == 0:
                evals.write({"step": 0, "kimg": 0.0, "time_s": 0.0, **self.evaluate()})
        status, started = "done", time.perf_counter()
        window: list[tuple[dict, float]] = []
        with GracefulStop() as stop, tqdm(total=total, initial=self.step, unit="step", file=sys.stderr,
                                          dynamic_ncols=True, disable=not self.progress, desc="encoder") as bar:
            while self.step < total:
                t0 = time.perf_counter()
                stats = self.train_step()
                dt = time.perf_counter() - t0
                self.elapsed_s += dt
                bar.update(1)
                post = {"kimg": f"{self.images_seen / 1000:.1f}", "loss": f"{stats['loss']:.4f}"}
                if self.last_eval:
                    post["psnr"] = f"{self.last_eval['psnr_db']:.2f}"
                bar.set_postfix(post, refresh=False)
                s = self.step
                window.append((stats, dt))
                if metrics is not None and s % cfg.log_every == 0:
                    row = {k: sum(st[k] for st, _ in window) / len(window) for k in stats}
                    metrics.write({"step": s, "kimg": self.images_seen / 1000, **row,
                                   "sec_per_step": sum(t for _, t in window) / len(window),
                                   "time_s": round(self.elapsed_s, 2)})
                    window = []
                if s % cfg.eval_every == 0 or s == total:
                    result = self.evaluate()
                    if evals is not None:
                        evals.write({"kimg": self.images_seen / 1000, "time_s": round(self.elapsed_s, 2), **result})
                if writes and s % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if writes and cfg.snapshot_every and s % cfg.snapshot_every == 0:
                    self.export(self._out(f"{SNAPSHOT_DIR}/encoder-{self.images_seen // 1000:06d}kimg.pt"))
                if on_step is not None:
                    on_step(self)
                if stop.requested:
                    status = "interrupted"
                    break
                if max_seconds is not None and time.perf_counter() - started >= max_seconds:
                    status = "time limit"
                    break
        if writes:
            if self.last_eval.get("step") != self.step:
                result = self.evaluate()
                if evals is not None:
                    evals.write({"kimg": self.images_seen / 1000, "time_s": round(self.elapsed_s, 2), **result})
            self.save_checkpoint()
            self.export()
        return status


_STATE_CHECK = dict(fmt=STATE_FORMAT, version=STATE_VERSION, what="encoder training checkpoint",
                    wrong="not an encoder training checkpoint (train encoder writes OUT/checkpoint.pt)")


def check_state(state) -> None:
    """Refuse anything that is not an encoder training state this version can continue."""
    check_training_state(state, **_STATE_CHECK)


def read_state(path: str | Path) -> dict:
    """Load a training checkpoint written by ``EncoderTrainer.save_checkpoint`` (weights only, on the CPU)."""
    return read_training_state(path, **_STATE_CHECK)


def trainer_from_state(state: dict, G: Generator, *, overrides: dict | None = None, **kwargs) -> EncoderTrainer:
    """An EncoderTrainer continuing ``state`` exactly; ``overrides``: ``OVERRIDABLE_ON_RESUME`` settings (None
    keeps the stored ones)."""
    check_state(state)
    cfg = resumed_config(EncoderTrainConfig, state["config"], overrides, allowed=OVERRIDABLE_ON_RESUME)
    kwargs.setdefault("command_line", state.get("command_line", ""))
    kwargs.setdefault("generator_path", state["generator"].get("path"))
    trainer = EncoderTrainer(cfg, EncoderConfig.from_dict(state["encoder_arch"]), G, **kwargs)
    trainer.load_state_dict(state)
    return trainer


def encoder_from_state(state: dict) -> Encoder:
    """The encoder of a training state, with the ``info`` the trainer would export (eval mode, CPU)."""
    check_state(state)
    encoder = Encoder(EncoderConfig.from_dict(state["encoder_arch"]))
    encoder.load_state_dict(state["encoder"])
    cfg = EncoderTrainConfig.from_dict(state["config"])
    step = int(state["step"])
    encoder.info = {"generator_sha256": state["generator"]["sha256"], "generator": state["generator"]["path"],
                    "kimg": step * cfg.batch_size / 1000, "training_steps": step,
                    "training_images": step * cfg.batch_size, "training_time_s": round(float(state["elapsed_s"]), 3),
                    "seed": cfg.seed, "command_line": state.get("command_line", ""), "train_config": cfg.to_dict()}
    return encoder.eval()


# ---- release --------------------------------------------------------------------------------------------------


def _eval_curve(run_dir: Path) -> list[dict]:
    path = run_dir / "eval.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def inference_ms(encoder: Encoder, *, runs: int = 50) -> dict:
    """Latency of ``encoder`` on one image at its input size, on one CPU thread: ms median / p95 over ``runs``."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    x = torch.zeros(1, encoder.cfg.img_channels, encoder.cfg.resolution, encoder.cfg.resolution)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        with torch.no_grad():
            for i in range(runs + 3):
                t0 = time.perf_counter()
                encoder(x)
                if i >= 3:  # the first calls warm the allocator up
                    times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(threads)
    times.sort()
    p95 = times[min(runs - 1, round(0.95 * (runs - 1)))]
    return {"median": round(statistics.median(times), 2), "p95": round(p95, 2), "runs": runs, "threads": 1,
            "input": [1, encoder.cfg.img_channels, encoder.cfg.resolution, encoder.cfg.resolution]}


def release_encoder(source: str | os.PathLike, out_dir: str | os.PathLike, *, eval_n: int = 1024, runs: int = 50,
                    half: bool = True, command_line: str = "") -> dict:
    """Release ``source`` (``RUN/encoder.pt``, ``RUN/snapshots/encoder-*.pt`` or ``RUN/checkpoint.pt`` of ``train
    encoder``) as ``out_dir/encoder.pt`` next to the generator it was trained for (``out_dir/generator.pt``;
    another generator's encoder is refused), with the manifest ``encoder.json``. half: store the weights in
    float16 (half the file; the figures are measured on the stored weights). -> manifest"""
    from engine.files.loading import load_generator
    from engine.files.storage import file_sha256, read_model_file
    from engine.models.encoder import FORMAT
    from engine.train.release.estimator import cpu_model
    from engine.train.release.generator import option_value

    source, out_dir = Path(source), Path(out_dir)
    kind, obj = read_model_file(source)
    if kind == "torch" and isinstance(obj, dict) and obj.get("format") == STATE_FORMAT:
        encoder = encoder_from_state(obj)
    else:
        encoder = load_encoder(source)
    info = dict(encoder.info)
    g_path = out_dir / DEFAULT_GENERATOR
    if not g_path.is_file():
        raise ModelFormatError(f"there is no generator at {g_path} to release the encoder for")
    g_sha = file_sha256(g_path)
    if info.get("generator_sha256") != g_sha:
        raise ModelFormatError(f"{source} was trained for generator {str(info.get('generator_sha256'))[:12]}..., not "
                               f"for {g_path.name} ({g_sha[:12]}...): train an encoder for this generator first")
    G = load_generator(g_path)
    check_compatible(encoder, G.cfg)
    storage = torch.float16 if half else torch.float32
    with torch.no_grad():
        for p in encoder.parameters():
            p.copy_(p.to(storage))  # what the file will hold
    ws = held_out_latents(G, eval_n)
    figures = evaluate_encoder(encoder, G, ws)
    baseline = evaluate_encoder(None, G, ws)
    latency = inference_ms(encoder, runs=runs)
    recipe = {**EVAL_RECIPE, "n": eval_n, "seed": EVAL_SEED, "noise_mode": "const"}
    info.update(figures=figures, baseline_w_avg=baseline, eval_recipe=recipe, released_from=source.name)
    out_path = out_dir / DEFAULT_ENCODER
    save_encoder(out_path, encoder, info=info, dtype=storage)
    command = info.get("command_line") or ""
    threads = option_value(command, "--threads") if command else None
    manifest = {
        "file": DEFAULT_ENCODER, "sha256": file_sha256(out_path), "bytes": out_path.stat().st_size,
        "format": FORMAT, "parameters": sum(p.numel() for p in encoder.parameters()),
        "weights_dtype": str(storage).removeprefix("torch."),
        "architecture": encoder.cfg.to_dict(), "generator_sha256": g_sha, "command": command,
        "seed": info.get("seed"), "train_config": info.get("train_config"), "kimg": info.get("kimg"),
        "training_steps": info.get("training_steps"), "training_time_s": info.get("training_time_s"),
        "hardware": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                     "torch_threads": int(threads) if threads else None,
                     "device": (option_value(command, "--device") or "cpu") if command else None,
                     "torch": torch.__version__},
        "released_from": source.name,
        "held_out": {"recipe": recipe, "encoder": figures, "baseline_w_avg": baseline,
                     "units": {"psnr_db": "dB, images in [-1, 1], peak-to-peak 2",
                               "ssim": "SSIM (11x11 Gaussian window, sigma 1.5), images in [-1, 1]",
                               "latent_mse": "mean squared error in the encoder's normalised W+ space",
                               "latent_l2": "mean over samples and W+ rows of |w_E - w|_2 in W units"}},
        "held_out_curve": [row for row in _eval_curve(source.parent.parent if source.parent.name == SNAPSHOT_DIR
                                                      else source.parent)
                           if row["step"] <= info.get("training_steps", math.inf)],
        "inference_ms": latency, "release_command": command_line,
    }
    return write_json(out_dir / f"{Path(DEFAULT_ENCODER).stem}.json", manifest)


# ---- command line ---------------------------------------------------------------------------------------------


def add_encoder_commands(sub) -> None:
    """``train encoder`` and ``train release-encoder`` on the ``train`` subcommand set."""
    d = EncoderTrainConfig()
    p = sub.add_parser("encoder", help="train an inversion encoder (image -> W+) on a generator's own samples",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("files")
    io.add_argument("--model", metavar="MODEL", help="the generator (any file the engine loads; default: the embedded "
                    "default)")
    io.add_argument("--out", required=True, help="run folder (checkpoint.pt, encoder.pt, snapshots/, metrics.csv, "
                    "eval.csv)")
    io.add_argument("--resume", metavar="PATH|auto", help="continue a training checkpoint; 'auto': OUT/checkpoint.pt "
                    "if present")
    io.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    io.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    io.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    arch = p.add_argument_group("architecture")
    arch.add_argument("--resolution", type=int, help="input size (default: the generator's, at most 256)")
    arch.add_argument("--channel-base", type=int, default=2048, help="width rule min(base/res, max) (default 2048)")
    arch.add_argument("--channel-max", type=int, default=128, help="(default 128)")
    arch.add_argument("--head-channels", type=int, default=64, help="channels of the flattened 4x4 map (default 64)")
    arch.add_argument("--hidden", type=int, default=256, help="width of the hidden FC layer (default 256)")
    rec = p.add_argument_group("recipe")
    rec.add_argument("--kimg", type=float, help=f"training length in thousands of images (default {d.kimg:g})")
    rec.add_argument("--batch", type=int, default=d.batch_size, help=f"(default {d.batch_size})")
    rec.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr:g})")
    rec.add_argument("--rampdown", type=float, default=d.rampdown, help="fraction of the steps with a cosine "
                     f"learning-rate ramp-down (default {d.rampdown:g})")
    rec.add_argument("--psi-min", type=float, default=d.psi_min, help=f"(default {d.psi_min:g})")
    rec.add_argument("--psi-max", type=float, default=d.psi_max, help=f"(default {d.psi_max:g})")
    rec.add_argument("--mixing", type=float, default=d.mixing_prob, help="style-mixing probability per sample "
                     f"(default {d.mixing_prob:g})")
    rec.add_argument("--latent-weight", type=float, default=d.latent_weight, help=f"(default {d.latent_weight:g})")
    rec.add_argument("--image-weight", type=float, default=d.image_weight, help="weight of the pixel MSE through G "
                     f"(default {d.image_weight:g}; 0: latent loss only)")
    rec.add_argument("--ssim-weight", type=float, default=d.ssim_weight, help="weight of 1 - SSIM through G "
                     f"(default {d.ssim_weight:g})")
    rec.add_argument("--seed", type=int, default=d.seed, help=f"initialisation and sampled latents (default {d.seed})")
    sch = p.add_argument_group("schedule (in steps)")
    sch.add_argument("--eval-n", type=int, default=d.eval_n, help=f"held-out samples (default {d.eval_n})")
    sch.add_argument("--eval-every", type=int, help=f"(default {d.eval_every})")
    sch.add_argument("--checkpoint-every", type=int, help=f"(default {d.checkpoint_every})")
    sch.add_argument("--snapshot-every", type=int, help=f"encoder snapshot interval, 0 = off (default "
                     f"{d.snapshot_every})")
    sch.add_argument("--log-every", type=int, help=f"metrics.csv row interval (default {d.log_every})")
    sch.add_argument("--max-minutes", type=float, help="stop (with a checkpoint and encoder.pt) after this much "
                     "training")
    p.set_defaults(func=run_train_encoder)

    p = sub.add_parser("release-encoder", help="release a trained encoder as the embedded default's encoder",
                       description=release_encoder.__doc__)
    p.add_argument("source", help="RUN/encoder.pt, RUN/snapshots/encoder-KKKKKKkimg.pt or RUN/checkpoint.pt")
    p.add_argument("--out", default=str(ASSETS_DIR),
                   help="the assets folder holding generator.pt (default: this checkout's)")
    p.add_argument("--eval-n", type=int, default=1024, help="held-out samples for the manifest (default 1024)")
    p.add_argument("--runs", type=int, default=50, help="timed single-image encodings (default 50)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the evaluation (default 1)")
    p.add_argument("--float32", action="store_true", help="store the weights in float32 (default float16: half the "
                   "file, the same figures)")
    p.set_defaults(func=run_release_encoder)


def run_train_encoder(args) -> int:
    """``train encoder``: train (or resume) an encoder; 0 when done or stopped by --max-minutes, 130 when
    interrupted."""
    from engine.files.loading import load_generator
    from engine.train.distributed import resolve_device

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    out = Path(args.out)
    schedule = {k: getattr(args, k) for k in ("eval_every", "checkpoint_every", "snapshot_every", "log_every")}
    common = dict(out_dir=out, device=device, progress=not args.quiet)
    resume = resume_path(args.resume, out, name=CHECKPOINT_NAME, what="encoder training checkpoint")
    if resume is not None:
        state = read_state(resume)
        model = args.model or state["generator"].get("path")
        if not model:
            raise ValueError(f"{resume} does not name its generator: pass --model")
        G = load_generator(model)
        trainer = trainer_from_state(state, G, overrides={**schedule, "kimg": args.kimg}, generator_path=str(model),
                                     **common)
        log(f"resuming {resume} at step {trainer.step} ({trainer.images_seen / 1000:.1f} kimg)")
    else:
        if (out / CHECKPOINT_NAME).exists():
            raise ValueError(f"{out} already holds an encoder training run: continue it with --resume auto or choose "
                             "another --out")
        if args.model:
            model = args.model
        else:
            from engine.assets import default_generator_path

            model = default_generator_path()
        G = load_generator(model)
        cfg = EncoderTrainConfig(kimg=args.kimg if args.kimg is not None else EncoderTrainConfig.kimg,
                                 batch_size=args.batch, lr=args.lr, rampdown=args.rampdown, psi_min=args.psi_min,
                                 psi_max=args.psi_max, mixing_prob=args.mixing, latent_weight=args.latent_weight,
                                 image_weight=args.image_weight, ssim_weight=args.ssim_weight, seed=args.seed,
                                 eval_n=args.eval_n,
                                 **{k: v for k, v in schedule.items() if v is not None})
        enc_cfg = EncoderConfig.for_generator(G.cfg, resolution=args.resolution, channel_base=args.channel_base,
                                              channel_max=args.channel_max, head_channels=args.head_channels,
                                              hidden=args.hidden)
        trainer = EncoderTrainer(cfg, enc_cfg, G, generator_path=str(model), command_line=command_line(),
                                 **common)
    e, c = trainer.enc_cfg, trainer.cfg
    log(f"training an encoder {e.resolution} px -> W+ [{e.num_ws}, {e.w_dim}] (channels {list(e.channels)}, "
        f"{sum(p.numel() for p in trainer.encoder.parameters()) / 1e6:.2f} M parameters) for "
        f"{trainer.generator_path}, batch {c.batch_size}, {c.kimg:g} kimg = {c.total_steps} steps")
    status = trainer.train(max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    ev = trainer.last_eval
    log(f"{status} at step {trainer.step} ({trainer.images_seen / 1000:.1f} kimg): held-out PSNR "
        f"{ev.get('psnr_db', float('nan')):.2f} dB (w_avg {trainer.baseline()['psnr_db']:.2f}), latent distance "
        f"{ev.get('latent_l2', float('nan')):.3f}; checkpoint {out / CHECKPOINT_NAME}, encoder {out / MODEL_NAME}")
    return 130 if status == "interrupted" else 0


def run_release_encoder(args) -> int:
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    m = release_encoder(args.source, args.out, eval_n=args.eval_n, runs=args.runs, half=not args.float32,
                        command_line=command_line())
    h = m["held_out"]
    print(f"released {Path(args.out) / DEFAULT_ENCODER} (sha256 {m['sha256'][:12]}..., {m['kimg']:g} kimg): held-out "
          f"PSNR {h['encoder']['psnr_db']:.2f} dB (w_avg {h['baseline_w_avg']['psnr_db']:.2f}), latent distance "
          f"{h['encoder']['latent_l2']:.3f} (w_avg {h['baseline_w_avg']['latent_l2']:.3f}); "
          f"{m['inference_ms']['median']} ms per image on one thread", file=sys.stderr)
    return 0


__all__ = ["EncoderTrainConfig", "EncoderTrainer", "sample_latents", "render", "latent_scale", "held_out_latents",
           "evaluate_encoder", "check_state", "read_state", "trainer_from_state", "encoder_from_state",
           "inference_ms", "release_encoder", "add_encoder_commands", "run_train_encoder", "run_release_encoder",
           "STATE_FORMAT", "CHECKPOINT_NAME", "MODEL_NAME", "METRIC_FIELDS", "EVAL_FIELDS", "EVAL_SEED",
           "EVAL_RECIPE"]
