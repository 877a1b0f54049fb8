"""Training BicycleGAN (cVAE-GAN + cLR-GAN hybrid) on paired synthetic faces, and its held-out figures.

Data, rendered afresh every step: step ``s`` draws faces ``s*B .. s*B+B-1`` of the data seed and renders each of them
in the ``source`` domain (A, default ``edges``) and the ``target`` domain (B, default ``photo``) from one scene, so
the pairs are exactly aligned. The objective and the update order are BICYCLEGAN_FACTS §2, through
``engine.algorithms.bicyclegan_losses`` (the first half of the batch trains the cVAE-GAN branch, the second half's B
is D2's real sample). One Adam (beta1 0.5, beta2 0.999, lr 2e-4 as the reference) holds G, E, D and D2: every step
updates G and E from their gradients, then D and D2 from theirs, and Adam's moments are per parameter, so this is the
reference's two optimisers. Learning rate: constant, then linear to 0 over the last ``decay_fraction`` of the steps
(the reference's ``niter`` + ``niter_decay``). The noise (eps, z_random) of step ``s`` comes from
``step_generator(seed, s)``, so a resumed run repeats an uninterrupted one bit for bit (same thread count); dropout
is off (it would draw from the global generator).

Networks for a ``size`` px run: the U-Net has ``log2(size)`` levels (1x1 bottleneck, as unet_256 at 256 px), the
encoder ``log2(size / 8)`` reductions (its AvgPool(8) then sees 8x8, as resnet_256 at 256 px), the two-scale
PatchGAN ``d_layers`` stride-2 convs; widths ``ngf`` / ``nef`` / ``ndf`` are smaller than the reference's 64.

Held-out figures on faces ``0..eval_n-1`` of ``EVAL_SEED`` (which no training seed may use), on the [0, 1] pixel
scale: ``recon_l1`` = mean |G(A, mu(E(B))) - B| (the encoded sample), ``random_l1`` = mean |G(A, z) - B| over random
codes, ``diversity`` = mean pairwise |G(A, z_i) - G(A, z_j)| between ``eval_samples`` random samples of each input.

Run folder (``engine.train.loop``): ``checkpoint.pt`` (training state, atomic), ``bicyclegan.pt`` (latest G, E, D,
D2), ``metrics.csv``, ``eval.csv`` / ``eval.json``, ``config.json``. ``python main.py train bicyclegan --out RUN
--size 64 --steps N --batch B --threads 1 --seed 0 --resume auto`` trains; ``python main.py train release-bicyclegan
RUN/bicyclegan.pt`` releases it (``engine.train.release.bicyclegan``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.algorithms.bicyclegan_losses import (
    BicycleGANWeights,
    backward_generator_encoder,
    bicyclegan_forward,
    discriminator_losses,
    generator_encoder_losses,
)
from engine.convert.bicyclegan import load_bicyclegan
from engine.errors import ModelFormatError
from engine.files.configs import DictForm
from engine.files.images import to_uint8
from engine.models.bicyclegan import (
    FORMAT,
    BicycleEncoderConfig,
    Encoder,
    MultiscaleDiscriminator,
    MultiscaleDiscriminatorConfig,
    UnetConfig,
    UnetGenerator,
    bicyclegan_checkpoint,
    default_ndf,
    encode,
    sample_codes,
)
from engine.synth import sample_params
from engine.synth.styles import check_domain
from engine.train.domains import render_domains
from engine.train.estimator import step_generator
from engine.train.loop import ModelTrainer, check_synthetic, require
from engine.train.release.estimator import EVAL_SEED

STATE_FORMAT = "face-editor/train-bicyclegan"
STATE_VERSION = 1
MODEL_NAME = "bicyclegan.pt"
METRIC_FIELDS = ("step", "images", "loss", "G_GAN", "G_GAN2", "G_L1", "kl", "z_L1", "D", "D2", "lr", "img_per_s",
                 "elapsed_s")
EVAL_FIELDS = ("step", "recon_l1", "random_l1", "diversity")
WEIGHT_FIELDS = ("lambda_L1", "lambda_GAN", "lambda_GAN2", "lambda_z", "lambda_kl", "gan_mode")


@dataclass(frozen=True)
class BicycleGANTrainConfig(DictForm, what="the BicycleGAN training settings"):
    """A training run; ``seed`` seeds the initialisation, the faces (sample indices) and the codes.

    batch_size: (A, B) pairs per step, even (half per branch). size: image side, a power of two >= 32.
    lr / beta1: Adam for all four networks. decay_fraction: share of the steps over which lr falls linearly to 0.
    nz: code size; ngf / nef / ndf: widths of G, E, D; num_D / d_layers: discriminator scales and stride-2 layers;
    encoder: ``resnet`` or ``conv``; lambda_* / gan_mode: the objective's weights (BICYCLEGAN_FACTS §2).
    eval_samples: random codes per held-out input for the diversity figure.
    """

    steps: int = 6000
    batch_size: int = 8
    size: int = 64
    seed: int = 0
    source: str = "edges"
    target: str = "photo"
    lr: float = 2e-4
    beta1: float = 0.5
    decay_fraction: float = 0.5
    nz: int = 8
    ngf: int = 16
    nef: int = 16
    ndf: int = 16
    num_D: int = 2
    d_layers: int = 2
    encoder: str = "resnet"
    norm: str = "instance"
    upsample: str = "basic"
    where_add: str = "all"
    lambda_L1: float = 10.0
    lambda_GAN: float = 1.0
    lambda_GAN2: float = 1.0
    lambda_z: float = 0.5
    lambda_kl: float = 0.01
    gan_mode: str = "lsgan"
    eval_n: int = 64
    eval_samples: int = 4
    eval_every: int = 250
    checkpoint_every: int = 100
    log_every: int = 10

    def __post_init__(self):
        check_domain(self.source)
        check_domain(self.target)
        if self.source == self.target:
            raise ValueError(f"source and target must be different domains, got {self.source!r} twice")
        check_synthetic(self)
        require(self, ("steps", "batch_size", "eval_n", "eval_every", "checkpoint_every", "log_every", "nz", "ngf",
                       "nef", "ndf", "num_D", "d_layers"), at_least=1)
        require(self, ("eval_samples",), at_least=2)  # diversity compares samples
        if self.batch_size % 2:
            raise ValueError(f"batch_size must be even (half the pairs per branch), got {self.batch_size}")
        if self.size < 32 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 32 (U-Net down to 1x1, encoder down to 8x8), "
                             f"got {self.size}")
        require(self, ("lr",), above=0)
        require(self, ("decay_fraction",), at_least=0, at_most=1)
        if not 0 <= self.beta1 < 1:
            raise ValueError(f"beta1 must be in [0, 1), got {self.beta1}")
        self.weights()  # validates gan_mode

    def weights(self) -> BicycleGANWeights:
        return BicycleGANWeights(**{k: getattr(self, k) for k in WEIGHT_FIELDS})



def network_configs(cfg: BicycleGANTrainConfig) -> dict:
    """The G, E, D and D2 configs a training config describes."""
    levels = int(math.log2(cfg.size))
    g = UnetConfig(nz=cfg.nz, ngf=cfg.ngf, num_downs=levels, norm=cfg.norm, upsample=cfg.upsample,
                   where_add=cfg.where_add)
    e = BicycleEncoderConfig(kind=cfg.encoder, nz=cfg.nz, nef=cfg.nef, n_layers=levels - 3, norm=cfg.norm)
    d = MultiscaleDiscriminatorConfig(ndf=default_ndf(cfg.ndf, cfg.num_D), n_layers=cfg.d_layers, norm=cfg.norm)
    return {"G": g, "E": e, "D": d, "D2": d}


def build_networks(cfg: BicycleGANTrainConfig) -> nn.ModuleDict:
    """Fresh G, E, D, D2 (seeds ``seed`` .. ``seed + 3``) in a ModuleDict."""
    c = network_configs(cfg)
    return nn.ModuleDict({"G": UnetGenerator(c["G"], seed=cfg.seed), "E": Encoder(c["E"], seed=cfg.seed + 1),
                          "D": MultiscaleDiscriminator(c["D"], seed=cfg.seed + 2),
                          "D2": MultiscaleDiscriminator(c["D2"], seed=cfg.seed + 3)})


def load_networks(source) -> nn.ModuleDict:
    """G, E, D, D2 of a project-format BicycleGAN dict or file, in train mode."""
    nets = load_bicyclegan(source)
    if missing := sorted(set(("G", "E", "D", "D2")) - set(nets)):
        raise ModelFormatError(f"a BicycleGAN training state needs G, E, D and D2; {missing} missing")
    return nn.ModuleDict({k: nets[k] for k in ("G", "E", "D", "D2")}).train()


def lr_at(cfg: BicycleGANTrainConfig, step: int) -> float:
    """Constant, then linear to 0 over the last ``decay_fraction * steps`` steps."""
    decay = round(cfg.decay_fraction * cfg.steps)
    if decay == 0:
        return cfg.lr
    return cfg.lr * min(1.0, (cfg.steps - step) / decay)


def render_pairs(params: np.ndarray, *, size: int, source: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces ``params`` [k, NUM_PARAMS] in the two domains from one scene each. -> A, B [k, 3, size, size] in [-1,1]"""
    x = render_domains(params, size=size, domains=(source, target))  # [2k, 3, S, S], domain-major
    return x[:len(params)], x[len(params):]


def training_batch(cfg: BicycleGANTrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (A, B) pairs of ``step``. -> [B, 3, S, S] twice, in [-1, 1]"""
    params = sample_params(cfg.batch_size, seed=cfg.seed, start_index=step * cfg.batch_size)
    return render_pairs(params, size=cfg.size, source=cfg.source, target=cfg.target)


def held_out_pairs(*, n: int, size: int, source: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces ``0..n-1`` of ``EVAL_SEED`` as (A, B), quantised to 8 bits like saved images. -> [n, 3, S, S] twice"""
    a, b = render_pairs(sample_params(n, seed=EVAL_SEED), size=size, source=source, target=target)
    q = lambda x: torch.round((x + 1) * 127.5) / 127.5 - 1  # noqa: E731
    return q(a), q(b)


@torch.no_grad()
def sample_outputs(G: UnetGenerator, E: Encoder, A: torch.Tensor, B: torch.Tensor, *, samples: int, seed: int,
                   batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoded sample G(A, mu(E(B))) [n, 3, S, S] and ``samples`` random samples per input [n, samples, 3, S, S]
    (codes ``sample_codes(n * samples, nz, seed=seed)``, row-major), computed in eval mode."""
    modes = G.training, E.training
    G.eval(), E.eval()
    n = len(A)
    codes = sample_codes(n * samples, G.cfg.nz, seed=seed).view(n, samples, -1)  # [n, samples, nz]
    enc, rnd = [], []
    for i in range(0, n, batch):
        a, b = A[i:i + batch], B[i:i + batch]
        enc.append(G(a, encode(E, b)))
        k = len(a)
        z = codes[i:i + k].reshape(k * samples, -1)
        rnd.append(G(a.repeat_interleave(samples, 0), z).view(k, samples, *a.shape[1:]))
    G.train(modes[0]), E.train(modes[1])
    return torch.cat(enc), torch.cat(rnd)


def figures(G: UnetGenerator, E: Encoder, A: torch.Tensor, B: torch.Tensor, *, samples: int,
            seed: int = EVAL_SEED) -> dict:
    """Held-out figures on the [0, 1] pixel scale: ``recon_l1`` (encoded sample vs B), ``random_l1`` (random samples
    vs B) and ``diversity`` (mean pairwise L1 between the ``samples`` random samples of each input)."""
    enc, rnd = sample_outputs(G, E, A, B, samples=samples, seed=seed)
    i, j = torch.triu_indices(samples, samples, offset=1)
    pairwise = (rnd[:, i] - rnd[:, j]).abs().mean(dim=(2, 3, 4))  # [n, pairs]
    return {"recon_l1": float((enc - B).abs().mean() / 2), "random_l1": float((rnd - B[:, None]).abs().mean() / 2),
            "diversity": float(pairwise.mean() / 2), "n": len(A), "samples": samples}


def sample_grid(G: UnetGenerator, E: Encoder, A: torch.Tensor, B: torch.Tensor, *, samples: int = 4,
                seed: int = EVAL_SEED) -> np.ndarray:
    """One row per input: A, the ground-truth B, the encoded sample, ``samples`` random samples. -> uint8 [H, W, 3]"""
    enc, rnd = sample_outputs(G, E, A, B, samples=samples, seed=seed)
    rows = torch.cat([A[:, None], B[:, None], enc[:, None], rnd], 1)  # [n, 3 + samples, 3, S, S]
    n, c, _, s, _ = rows.shape
    tiles = to_uint8(rows.flatten(0, 1))  # [n * c, S, S, 3]
    return tiles.reshape(n, c, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(n * s, c * s, 3)


def format_figures(ev: dict) -> str:
    """One line of held-out figures (``figures``)."""
    return (f"reconstruction L1 {ev['recon_l1']:.4f}, random-sample L1 {ev['random_l1']:.4f}, diversity "
            f"{ev['diversity']:.4f} ({ev['n']} faces x {ev['samples']} codes, [0, 1] pixels)")


# ---- trainer --------------------------------------------------------------------------------------------------


class BicycleGANTrainer(ModelTrainer):
    """G, E, D, D2 (``self.model``, a ModuleDict), their Adam optimiser and the step counter; ``train()`` runs to
    ``cfg.steps`` (``engine.train.loop``). model: starting networks (resume); otherwise fresh ones."""

    kind, command, keeps_best = "BicycleGAN", "train bicyclegan", False
    state_format, state_version, config_cls = STATE_FORMAT, STATE_VERSION, BicycleGANTrainConfig
    model_name, model_format, metric_fields, eval_fields = MODEL_NAME, FORMAT, METRIC_FIELDS, EVAL_FIELDS
    load_model, format_figures = staticmethod(load_networks), staticmethod(format_figures)

    def __init__(self, cfg: BicycleGANTrainConfig, *, model: nn.ModuleDict | None = None, **kwargs):
        model = (model if model is not None else build_networks(cfg)).train()
        want = network_configs(cfg)
        if {k: model[k].cfg for k in want} != want:
            raise ValueError("the networks are not the ones the training config describes")
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        super().__init__(cfg, model, optimizer=opt, **kwargs)
        self.weights = cfg.weights()

    def train_step(self) -> dict:
        """One iteration: forward, G and E update, D and D2 update; returns the losses and learning rate."""
        cfg, m = self.cfg, self.model
        real_a, real_b = training_batch(cfg, self.step)
        gen = step_generator(cfg.seed, self.step)
        k = cfg.batch_size // 2
        eps = torch.randn(k, cfg.nz, generator=gen)  # [k, nz]
        z_random = torch.randn(k, cfg.nz, generator=gen)  # [k, nz]
        lr = lr_at(cfg, self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        fwd = bicyclegan_forward(m["G"], m["E"], real_a, real_b, eps=eps, z_random=z_random, weights=self.weights)
        ge = generator_encoder_losses(fwd, m["D"], m["D2"], weights=self.weights)
        loss = ge["loss_G"] + ge["loss_z_L1"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the G/E loss is {loss.item()} at step {self.step}: lower --lr")
        self.opt.zero_grad(set_to_none=True)
        backward_generator_encoder(ge, m["G"], m["E"])
        self.opt.step()  # only G and E hold gradients
        self.opt.zero_grad(set_to_none=True)
        d = discriminator_losses(fwd, m["D"], m["D2"], weights=self.weights)
        zero = loss.new_zeros(())
        d_loss = d.get("loss_D", zero) + d.get("loss_D2", zero)
        if d_loss.requires_grad:
            d_loss.backward()
        self.opt.step()  # only D and D2 hold gradients
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        f = lambda t: float(t.detach())  # noqa: E731
        return {"loss": f(loss), "G_GAN": f(ge["loss_G_GAN"]), "G_GAN2": f(ge["loss_G_GAN2"]),
                "G_L1": f(ge["loss_G_L1"]), "kl": f(ge["loss_kl"]), "z_L1": f(ge["loss_z_L1"]),
                "D": f(d.get("loss_D", zero)), "D2": f(d.get("loss_D2", zero)), "lr": lr}

    def held_out_figures(self) -> dict:
        """``figures`` of the current networks (the faces are rendered once and kept)."""
        cfg = self.cfg
        if self._eval_data is None or len(self._eval_data[0]) != cfg.eval_n:
            self._eval_data = held_out_pairs(n=cfg.eval_n, size=cfg.size, source=cfg.source, target=cfg.target)
        a, b = self._eval_data
        return figures(self.model["G"], self.model["E"], a, b, samples=cfg.eval_samples)

    def extras(self) -> dict:
        return {**super().extras(), "source_domain": self.cfg.source, "target_domain": self.cfg.target}

    def checkpoint(self) -> dict:
        return bicyclegan_checkpoint(dict(self.model.items()), extras=self.extras())

    def postfix(self) -> dict:
        post = {"L1": f"{self.stats['G_L1']:.3f}", "D": f"{self.stats['D']:.3f}"}
        if self.last_eval:
            post["rec"] = f"{self.last_eval['recon_l1']:.3f}"
            post["div"] = f"{self.last_eval['diversity']:.3f}"
        return post

    def subject(self) -> str:
        c = self.cfg
        return f"BicycleGAN {c.source} -> {c.target} at {c.size} px ({self.parameters()} parameters)"


__all__ = ["BicycleGANTrainConfig", "BicycleGANTrainer", "network_configs", "build_networks", "load_networks",
           "lr_at", "render_pairs", "training_batch", "held_out_pairs", "sample_outputs", "figures", "sample_grid",
           "format_figures", "STATE_FORMAT", "MODEL_NAME", "EVAL_SEED"]
