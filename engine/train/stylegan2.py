"""StyleGAN2 training: non-saturating logistic GAN with lazy R1 and path-length regularisation, EMA generator.

One training step is a D step (logistic loss on reals and fakes; every ``d_reg_every`` steps an R1 step on reals)
followed by a G step (non-saturating loss with style mixing; every ``g_reg_every`` steps a path-length step on
``batch / pl_batch_shrink`` samples), then the EMA update of ``G_ema``. Adam learning rates and betas carry the
lazy-regularisation correction ``c = every / (every + 1)``: lr * c, betas (0, 0.99 ** c).

Randomness: step ``s`` on rank ``r`` draws everything (z, mixing, noise, flips, path-length directions) from a
``torch.Generator`` seeded by ``SeedSequence([seed, r, s])``, and the data sources are pure functions of their
position, so the step counter and data position are the complete random state and a resumed run repeats an
uninterrupted one bit for bit (on CPU).

Files (rank 0 only; the loop is ``engine.train.loop``) under ``out_dir``: ``checkpoint.pt`` (training state,
atomic), ``model.pt`` and ``snapshots/network-KKKKKKkimg.pt`` (G_ema + D in the project's model format),
``samples/*.png``, ``metrics.csv``, ``config.json``.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.files.checkpoints import save_generator
from engine.files.configs import DictForm
from engine.files.images import save_png, to_uint8
from engine.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, channels_from_base
from engine.train.data import DataSource
from engine.train.distributed import average_gradients, broadcast_module, mean_over_processes
from engine.train.loop import StepTrainer, require

STATE_FORMAT = "face-editor/train-stylegan2"
STATE_VERSION = 1
MODEL_NAME = "model.pt"
METRIC_FIELDS = ("step", "kimg", "time_s", "sec_per_step", "loss_G", "loss_D", "real_logit", "fake_logit", "r1",
                 "pl", "pl_mean", "ema_beta")


@dataclass(frozen=True)
class TrainConfig(DictForm, what="the StyleGAN2 training settings"):
    """Everything that defines a training run (architecture, recipe, schedule). Intervals count steps.

    channels: explicit widths at 4, 8, ..., resolution; None derives them from channel_base / channel_max.
    The defaults make a small 64 px model (channels 128, 128, 128, 64, 32; w_dim 256; 4 mapping layers) that
    trains 500 kimg in roughly 3.5-4 hours on two CPU cores (measured 0.22 s/step at batch 8, 0.39 at 16).
    ema_kimg: half-life of the EMA in thousands of images; ema_rampup: cap it at ``images_seen * ema_rampup``
    early on (None: no ramp-up). batch_size is the global batch (split evenly over DDP processes).
    """

    resolution: int = 64
    channels: tuple[int, ...] | None = None
    channel_base: int = 2048
    channel_max: int = 128
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 4
    mapping_lr_mult: float = 0.01
    mbstd_group_size: int = 4
    batch_size: int = 16
    kimg: float = 500.0
    g_lr: float = 0.002
    d_lr: float = 0.002
    adam_beta2: float = 0.99
    r1_gamma: float = 10.0
    d_reg_every: int = 16
    g_reg_every: int = 4
    pl_weight: float = 2.0
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    w_avg_beta: float = 0.995
    xflip: bool = True
    freeze_mapping: bool = False
    seed: int = 0
    log_every: int = 10
    sample_every: int = 500
    snapshot_every: int = 2000
    checkpoint_every: int = 250
    sample_grid: int = 8

    def __post_init__(self):
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        require(self, ("resolution", "z_dim", "w_dim", "mapping_layers", "batch_size", "kimg", "g_lr", "d_lr",
                       "pl_batch_shrink", "sample_grid", "log_every", "checkpoint_every"), above=0)
        require(self, ("r1_gamma", "d_reg_every", "g_reg_every", "pl_weight", "ema_kimg", "sample_every",
                       "snapshot_every"), at_least=0)
        require(self, ("mixing_prob", "pl_decay", "w_avg_beta", "adam_beta2"), at_least=0, at_most=1)
        self.generator_config()  # validates resolution and channel table

    @property
    def total_steps(self) -> int:
        return math.ceil(self.kimg * 1000 / self.batch_size)

    def generator_config(self) -> GeneratorConfig:
        channels = self.channels or channels_from_base(self.resolution, channel_base=self.channel_base,
                                                       channel_max=self.channel_max)
        return GeneratorConfig(img_resolution=self.resolution, channels=channels, z_dim=self.z_dim,
                               w_dim=self.w_dim, mapping_layers=self.mapping_layers,
                               mapping_lr_mult=self.mapping_lr_mult)

    def discriminator_config(self, channels: tuple[int, ...] | None = None) -> DiscriminatorConfig:
        return DiscriminatorConfig(img_resolution=self.resolution,
                                   channels=channels or self.generator_config().channels,
                                   mbstd_group_size=self.mbstd_group_size)



def _adam(params: list, *, lr: float, beta2: float, reg_every: int) -> torch.optim.Adam:
    """Adam with the lazy-regularisation correction of lr and betas."""
    c = reg_every / (reg_every + 1) if reg_every else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(0.0, beta2**c), eps=1e-8)


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The CPU generator all random draws of one training step come from."""
    state = np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _cpu_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def image_grid(images: torch.Tensor, cols: int) -> np.ndarray:
    """Raw images [N, 3, H, W] -> one uint8 grid [rows * H, cols * W, 3] (row-major, blank tail)."""
    arr = to_uint8(images)  # [N, H, W, 3]
    n, h, w, c = arr.shape
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * cols, h, w, c), dtype=np.uint8)
    grid[:n] = arr
    return grid.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


class Trainer(StepTrainer):
    """Holds G, D, G_ema and their optimisers; ``train()`` runs to ``cfg.kimg`` writing files under ``out_dir``
    (``engine.train.loop``; ``ctx``: this process's place in a data-parallel run).

    G / D: optional starting networks (fine-tuning from a base model, or shells for ``from_state``); their
    architecture wins over the config's channel settings. With ``cfg.freeze_mapping`` the mapping network is left
    out of G's optimiser and out of the EMA, so G.mapping and G_ema.mapping stay exactly the starting ones.
    data_spec: how the data were named (default: the source's description); base: the model fine-tuned from.
    """

    kind, command = "StyleGAN2", "train stylegan2"
    resume_hint = "; start from a model file with --base"
    state_format, state_version, config_cls = STATE_FORMAT, STATE_VERSION, TrainConfig
    model_name, snapshot_stem, metric_fields = MODEL_NAME, "network", METRIC_FIELDS

    def __init__(self, cfg: TrainConfig, source: DataSource, *, G: Generator | None = None,
                 D: Discriminator | None = None, data_spec: str = "", base: str | None = None, **kwargs):
        super().__init__(cfg, **kwargs)
        self.device = self.ctx.device
        self.source = source
        self.data_spec = data_spec or source.description
        self.base = base
        self.local_batch = self._check_batch(source)

        g_cfg = G.cfg if G is not None else cfg.generator_config()
        if g_cfg.img_resolution != cfg.resolution:
            raise ValueError(f"the starting generator makes {g_cfg.img_resolution} px images, training is at "
                             f"{cfg.resolution} px")
        self.G = Generator(g_cfg, seed=cfg.seed)
        if G is not None:
            self.G.load_state_dict(G.state_dict())
        d_cfg = D.cfg if D is not None else cfg.discriminator_config(g_cfg.channels)
        self.D = Discriminator(d_cfg, seed=cfg.seed + 1)
        if D is not None:
            if d_cfg.img_resolution != cfg.resolution:
                raise ValueError(f"the starting discriminator reads {d_cfg.img_resolution} px images, training "
                                 f"is at {cfg.resolution} px")
            self.D.load_state_dict(D.state_dict())
        group = min(self.D.cfg.mbstd_group_size or self.local_batch, self.local_batch)
        if self.local_batch % group:
            raise ValueError(f"the per-process batch {self.local_batch} must be a multiple of the "
                             f"discriminator's minibatch-stddev group size {group}")
        self.G.to(self.device).requires_grad_(True)
        self.D.to(self.device).requires_grad_(True)
        broadcast_module(self.G, self.ctx)
        broadcast_module(self.D, self.ctx)
        if cfg.freeze_mapping:
            self.G.mapping.requires_grad_(False)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)

        self.g_params = [p for n, p in self.G.named_parameters()
                         if not (cfg.freeze_mapping and n.startswith("mapping."))]
        self.d_params = list(self.D.parameters())
        self.opt_G = _adam(self.g_params, lr=cfg.g_lr, beta2=cfg.adam_beta2, reg_every=cfg.g_reg_every)
        self.opt_D = _adam(self.d_params, lr=cfg.d_lr, beta2=cfg.adam_beta2, reg_every=cfg.d_reg_every)
        self.pl_mean = torch.zeros([], device=self.device)
        self.sample_z = torch.randn(cfg.sample_grid**2, g_cfg.z_dim,
                                    generator=torch.Generator().manual_seed(cfg.seed))  # [N, z_dim]

    def _check_batch(self, source: DataSource) -> int:
        world = self.ctx.world_size
        if self.cfg.batch_size % world:
            raise ValueError(f"batch size {self.cfg.batch_size} does not split evenly over {world} processes")
        local = self.cfg.batch_size // world
        if source.batch_size != local or source.resolution != self.cfg.resolution:
            raise ValueError(f"the data source yields {source.batch_size} x {source.resolution} px batches, the "
                             f"trainer needs {local} x {self.cfg.resolution} px")
        return local

    @property
    def total_steps(self) -> int:
        return self.cfg.total_steps

    # ---- one step -----------------------------------------------------------------------------------------

    def _generate(self, n: int, gen: torch.Generator, *, need_ws_grad: bool = False):
        """n fakes from G with style mixing at a random crossover: (images [n, 3, R, R], ws [n, num_ws, w_dim])."""
        G, c = self.G, self.G.cfg
        z = torch.randn(n, c.z_dim, generator=gen).to(self.device)
        ws = G.mapping(z)  # [n, num_ws, w_dim]
        if self.cfg.mixing_prob > 0 and float(torch.rand([], generator=gen)) < self.cfg.mixing_prob:
            cut = int(torch.randint(1, c.num_ws, [], generator=gen))
            z2 = torch.randn(n, c.z_dim, generator=gen).to(self.device)
            ws = torch.cat([ws[:, :cut], G.mapping(z2)[:, cut:]], dim=1)
        if need_ws_grad and not ws.requires_grad:
            ws = ws.detach().requires_grad_(True)
        if c.use_noise:
            noise = [torch.randn(n, 1, r, r, generator=gen).to(self.device) for r in c.noise_resolutions]
            return G.synthesis(ws, noise=noise), ws
        return G.synthesis(ws, noise_mode="none"), ws

    def _optimise(self, opt: torch.optim.Optimizer, params: list, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params, self.ctx)
        opt.step()

    def _d_step(self, real: torch.Tensor, gen: torch.Generator) -> None:
        cfg, D = self.cfg, self.D
        with torch.no_grad():
            fake, _ = self._generate(len(real), gen)
        fake_logits = D(fake)  # [B, 1]
        real_logits = D(real)
        loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        self._optimise(self.opt_D, self.d_params, loss)
        self.stats.update(loss_D=loss.item(), real_logit=real_logits.detach().mean().item(),
                          fake_logit=fake_logits.detach().mean().item())
        if cfg.d_reg_every and cfg.r1_gamma > 0 and self.step % cfg.d_reg_every == 0:
            self._r1_step(real)

    def _r1_step(self, real: torch.Tensor) -> None:
        """Lazy R1: (gamma / 2) * every * E[|grad_x D(x)|^2] on reals."""
        cfg = self.cfg
        x = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(x).sum(), x, create_graph=True)  # [B, 3, R, R]
        r1 = grad.square().flatten(1).sum(1).mean()
        self._optimise(self.opt_D, self.d_params, r1 * (cfg.r1_gamma / 2 * cfg.d_reg_every))
        self.stats["r1"] = r1.item()

    def _g_step(self, gen: torch.Generator) -> None:
        cfg = self.cfg
        self.D.requires_grad_(False)
        try:
            fake, ws = self._generate(self.local_batch, gen)
            loss = F.softplus(-self.D(fake)).mean()
            self._optimise(self.opt_G, self.g_params, loss)
            self.stats["loss_G"] = loss.item()
            if not cfg.freeze_mapping:
                self._track_w_avg(ws[:, 0].detach())
            if cfg.g_reg_every and cfg.pl_weight > 0 and self.step % cfg.g_reg_every == 0:
                self._path_length_step(gen)
        finally:
            self.D.requires_grad_(True)

    def _track_w_avg(self, w: torch.Tensor) -> None:
        """Running mean of w (the truncation target), averaged over processes so every rank agrees."""
        with torch.no_grad():
            batch_mean = mean_over_processes(w.mean(0), self.ctx)  # [w_dim]
            self.G.mapping.w_avg.copy_(batch_mean.lerp(self.G.mapping.w_avg, self.cfg.w_avg_beta))

    def _path_length_step(self, gen: torch.Generator) -> None:
        """Lazy path-length regularisation: pl_weight * every * E[(|J_w^T y| - running mean)^2] on a half batch."""
        cfg = self.cfg
        n = max(1, self.local_batch // cfg.pl_batch_shrink)
        fake, ws = self._generate(n, gen, need_ws_grad=True)
        h, w = fake.shape[2:]
        y = torch.randn(fake.shape, generator=gen).to(self.device) / math.sqrt(h * w)
        (grad,) = torch.autograd.grad((fake * y).sum(), ws, create_graph=True)  # [n, num_ws, w_dim]
        lengths = grad.square().sum(2).mean(1).sqrt()  # [n]
        batch_mean = mean_over_processes(lengths.mean().detach(), self.ctx)
        self.pl_mean = self.pl_mean + cfg.pl_decay * (batch_mean - self.pl_mean)
        penalty = (lengths - self.pl_mean).square().mean()
        self._optimise(self.opt_G, self.g_params, penalty * (cfg.pl_weight * cfg.g_reg_every))
        self.stats.update(pl=penalty.item(), pl_mean=self.pl_mean.item())

    def ema_beta(self) -> float:
        """Per-step EMA decay ``0.5 ** (batch / half_life_images)``, half-life ramped up early in training."""
        half_life = self.cfg.ema_kimg * 1000
        if self.cfg.ema_rampup is not None:
            half_life = min(half_life, self.images_seen * self.cfg.ema_rampup)
        return 0.5 ** (self.cfg.batch_size / max(half_life, 1e-8))

    def _update_ema(self) -> None:
        beta = self.ema_beta()
        frozen = "mapping." if self.cfg.freeze_mapping else None
        with torch.no_grad():
            src = dict(self.G.named_parameters())
            for name, p in self.G_ema.named_parameters():
                if frozen is None or not name.startswith(frozen):
                    p.lerp_(src[name], 1.0 - beta)
            src = dict(self.G.named_buffers())
            for name, b in self.G_ema.named_buffers():
                if frozen is None or not name.startswith(frozen):
                    b.copy_(src[name])
        self.stats["ema_beta"] = beta

    def train_step(self) -> dict:
        """One D step, one G step (each with its lazy regulariser when due) and the EMA update; returns the figures
        (the regularisers' ones from their last step)."""
        gen = step_generator(self.cfg.seed, self.ctx.rank, self.step)
        real = next(self.source).to(self.device)  # [b, 3, R, R]
        if self.cfg.xflip:
            flip = (torch.rand(len(real), generator=gen) < 0.5).to(self.device)
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
        self._d_step(real, gen)
        self._g_step(gen)
        self.step += 1
        self._update_ema()
        return dict(self.stats)

    # ---- state --------------------------------------------------------------------------------------------

    def model_state(self) -> dict:
        return {
            "g_arch": self.G.cfg.to_dict(), "d_arch": self.D.cfg.to_dict(),
            "G": _cpu_state(self.G), "D": _cpu_state(self.D), "G_ema": _cpu_state(self.G_ema),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "pl_mean": float(self.pl_mean),
            "data": self.source.state_dict(), "data_spec": self.data_spec, "world_size": self.ctx.world_size,
            "rng": {"scheme": "torch.Generator per step seeded by SeedSequence([seed, rank, step])",
                    "seed": self.cfg.seed},
            "base": self.base,
        }

    def load_model_state(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.pl_mean = torch.tensor(float(state["pl_mean"]), device=self.device)
        self.base = state.get("base")
        self.source.load_state_dict(state["data"])

    @classmethod
    def resume_args(cls, state: dict) -> dict:
        return {"G": Generator(GeneratorConfig.from_dict(state["g_arch"])),
                "D": Discriminator(DiscriminatorConfig.from_dict(state["d_arch"])),
                "data_spec": state.get("data_spec", ""), "base": state.get("base")}

    def extras(self) -> dict:
        """Metadata stored with an exported model."""
        return {"training_steps": self.step, "training_images": self.images_seen,
                "training_kimg": self.images_seen / 1000, "training_time_s": round(self.elapsed_s, 3),
                "command_line": self.command_line, "data": self.data_spec, "seed": self.cfg.seed,
                "base": self.base or "", "train_config": json.dumps(self.cfg.to_dict())}

    def write_model(self, path: Path) -> None:
        """G_ema (+ D) in the project's model format."""
        save_generator(path, self.G_ema, D=self.D, extras=self.extras())

    def run_record(self) -> dict:
        return {**super().run_record(), "data": self.data_spec, "base": self.base,
                "world_size": self.ctx.world_size}

    # ---- samples ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample_images(self, *, chunk: int = 16) -> torch.Tensor:
        """G_ema on the fixed sample latents with constant noise: [grid^2, 3, R, R] raw images on the CPU."""
        out = [self.G_ema(z.to(self.device), noise_mode="const").cpu() for z in self.sample_z.split(chunk)]
        return torch.cat(out)

    def write_samples(self, name: str) -> Path:
        return save_png(self._out(f"samples/{name}.png"), image_grid(self.sample_images(), self.cfg.sample_grid),
                        parameters={"step": self.step, "kimg": self.images_seen / 1000, "seed": self.cfg.seed})

    def begin(self) -> None:
        """The real images and the starting fakes."""
        n = self.cfg.sample_grid**2
        imgs = torch.cat([self.source.batch(i) for i in range(math.ceil(n / self.local_batch))])[:n]
        save_png(self._out("samples/reals.png"), image_grid(imgs, self.cfg.sample_grid))
        self.write_samples("fakes-0000000")

    def write_periodic(self) -> None:
        if self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
            self.write_samples(f"fakes-{self.step:07d}")

    def write_final(self) -> None:
        self.write_samples(f"fakes-{self.step:07d}")

    def describe(self) -> str:
        g, c = self.G.cfg, self.cfg
        return (f"{g.img_resolution} px StyleGAN2 (channels {list(g.channels)}, w_dim {g.w_dim}) on "
                f"{self.source.description}, batch {c.batch_size} on {self.ctx.world_size} x {self.device}, "
                f"{c.kimg:g} kimg = {c.total_steps} steps")

    def postfix(self) -> dict:
        return {"kimg": f"{self.images_seen / 1000:.2f}", "G": f"{self.stats['loss_G']:.3f}",
                "D": f"{self.stats['loss_D']:.3f}"}


__all__ = ["TrainConfig", "Trainer", "step_generator", "image_grid", "MODEL_NAME", "METRIC_FIELDS", "STATE_FORMAT"]
