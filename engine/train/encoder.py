"""Training an inversion encoder on a generator's own samples (``python main.py train encoder``; its release as the
embedded default's encoder: ``engine.train.release.encoder``).

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

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.algorithms import similarity
from engine.files.configs import DictForm
from engine.models.encoder import Encoder, EncoderConfig, save_encoder
from engine.models.stylegan2 import Generator
from engine.train.loop import StepTrainer, require
from engine.train.stylegan2 import step_generator

STATE_FORMAT = "face-editor/train-encoder"
STATE_VERSION = 1
MODEL_NAME = "encoder.pt"
METRIC_FIELDS = ("step", "kimg", "loss", "latent_mse", "image_mse", "one_minus_ssim", "lr", "sec_per_step", "time_s")
EVAL_FIELDS = ("step", "kimg", "psnr_db", "ssim", "latent_mse", "latent_l2", "time_s")
EVAL_SEED = 0x455643  # the held-out stream: step_generator(EVAL_SEED, 1, i); training only uses rank 0
EVAL_RECIPE = {"psi_min": 0.5, "psi_max": 1.0, "mixing_prob": 0.5}  # fixed, so figures compare across runs
STATS_SEED = 0x5CA1E  # z of the latent statistics (w_scale): step_generator(STATS_SEED, 2, 0)
STATS_N = 4096
EVAL_CHUNK = 64


@dataclass(frozen=True)
class EncoderTrainConfig(DictForm, what="the encoder training settings"):
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
        require(self, ("batch_size", "eval_n", "eval_every", "checkpoint_every", "log_every"), at_least=1)
        require(self, ("snapshot_every", "seed"), at_least=0)
        require(self, ("kimg", "lr"), above=0)
        require(self, ("rampdown", "mixing_prob"), at_least=0, at_most=1)
        if not 0 <= self.beta2 < 1 or not self.psi_min <= self.psi_max:
            raise ValueError(f"need 0 <= beta2 < 1 and psi_min <= psi_max, got beta2={self.beta2}, psi_min="
                             f"{self.psi_min}, psi_max={self.psi_max}")
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


class EncoderTrainer(StepTrainer):
    """Trains an ``Encoder`` for the frozen generator ``G`` (``G.model_info.sha256`` is recorded when present).
    ``train()`` writes under ``out_dir`` (``engine.train.loop``)."""

    kind, command = "encoder", "train encoder"
    state_format, state_version, config_cls = STATE_FORMAT, STATE_VERSION, EncoderTrainConfig
    model_name, snapshot_stem, metric_fields, eval_fields = MODEL_NAME, "encoder", METRIC_FIELDS, EVAL_FIELDS
    eval_at_start = True

    def __init__(self, cfg: EncoderTrainConfig, enc_cfg: EncoderConfig, G: Generator, *,
                 generator_path: str | None = None, device: str | torch.device = "cpu", **kwargs):
        if (enc_cfg.num_ws, enc_cfg.w_dim, enc_cfg.img_channels) != (G.num_ws, G.w_dim, G.img_channels):
            raise ValueError(f"the encoder predicts W+ [{enc_cfg.num_ws}, {enc_cfg.w_dim}] from {enc_cfg.img_channels}"
                             f"-channel images; the generator has [{G.num_ws}, {G.w_dim}] and {G.img_channels}")
        super().__init__(cfg, **kwargs)
        self.enc_cfg = enc_cfg
        self.device = torch.device(device)
        info = getattr(G, "model_info", None)
        self.generator_sha256 = info.sha256 if info is not None else None
        self.generator_path = generator_path or (info.path if info is not None else None)
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.encoder = Encoder(enc_cfg, seed=cfg.seed)
        self.encoder.set_latent_stats(G.w_avg.detach().cpu(), latent_scale(self.G).cpu())
        self.encoder.to(self.device).train()
        self.opt = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2))
        self._held_out: tuple[torch.Tensor, torch.Tensor] | None = None
        self._baseline: dict[str, float] | None = None

    @property
    def total_steps(self) -> int:
        return self.cfg.total_steps

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
        return {"loss": loss.item(), "latent_mse": latent.item(), "image_mse": image.item(),
                "one_minus_ssim": structure.item(), "lr": lr}

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

    def held_out_figures(self) -> dict[str, float]:
        """Held-out figures (``evaluate_encoder``) of the encoder now."""
        ws, x = self.held_out()
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return evaluate_encoder(self.encoder, self.G, ws, images=x)
        finally:
            self.encoder.train(was_training)

    # ---- state ----------------------------------------------------------------------------------------------

    def model_state(self) -> dict:
        return {
            "encoder_arch": self.enc_cfg.to_dict(),
            "encoder": {k: v.detach().to("cpu").clone() for k, v in self.encoder.state_dict().items()},
            "opt": self.opt.state_dict(), "generator": {"path": self.generator_path, "sha256": self.generator_sha256},
            "rng": {"scheme": "step s draws from step_generator(seed, 0, s)", "seed": self.cfg.seed},
        }

    def load_model_state(self, state: dict) -> None:
        stored = state["generator"]["sha256"]
        if stored is not None and self.generator_sha256 is not None and stored != self.generator_sha256:
            raise ValueError(f"the checkpoint trains an encoder for generator {stored[:12]}..., not for "
                             f"{self.generator_sha256[:12]}...: resume with the same --model")
        self.encoder.load_state_dict(state["encoder"])
        self.opt.load_state_dict(state["opt"])

    @classmethod
    def resume_args(cls, state: dict) -> dict:
        return {"enc_cfg": EncoderConfig.from_dict(state["encoder_arch"]),
                "generator_path": state["generator"].get("path")}

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

    def write_model(self, path: Path) -> None:
        """The encoder (``save_encoder`` with ``info()``)."""
        was_training = self.encoder.training
        save_encoder(path, self.encoder.eval(), info=self.info())
        self.encoder.train(was_training)

    def run_record(self) -> dict:
        return {**super().run_record(), "encoder": self.enc_cfg.to_dict(), "generator": self.generator_path,
                "generator_sha256": self.generator_sha256,
                "eval_recipe": {**EVAL_RECIPE, "n": self.cfg.eval_n, "seed": EVAL_SEED},
                "baseline_w_avg": self.baseline()}

    def postfix(self) -> dict:
        post = {"kimg": f"{self.images_seen / 1000:.1f}", "loss": f"{self.stats['loss']:.4f}"}
        if self.last_eval:
            post["psnr"] = f"{self.last_eval['psnr_db']:.2f}"
        return post

    def describe(self) -> str:
        e, c = self.enc_cfg, self.cfg
        return (f"an encoder {e.resolution} px -> W+ [{e.num_ws}, {e.w_dim}] (channels {list(e.channels)}, "
                f"{sum(p.numel() for p in self.encoder.parameters()) / 1e6:.2f} M parameters) for "
                f"{self.generator_path}, batch {c.batch_size}, {c.kimg:g} kimg = {c.total_steps} steps")

    def summary(self) -> str:
        ev = self.last_eval
        return (f"held-out PSNR {ev.get('psnr_db', float('nan')):.2f} dB (w_avg {self.baseline()['psnr_db']:.2f}), "
                f"latent distance {ev.get('latent_l2', float('nan')):.3f}")


__all__ = ["EncoderTrainConfig", "EncoderTrainer", "sample_latents", "render", "latent_scale", "held_out_latents",
           "evaluate_encoder", "STATE_FORMAT", "MODEL_NAME", "METRIC_FIELDS", "EVAL_FIELDS",
           "EVAL_SEED", "EVAL_RECIPE"]
