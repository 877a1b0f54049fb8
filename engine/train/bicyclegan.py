"""Training BicycleGAN (cVAE-GAN + cLR-GAN hybrid) on paired synthetic faces, its held-out figures and its release.

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

Run folder: ``checkpoint.pt`` (training state, atomic), ``bicyclegan.pt`` (latest G, E, D, D2), ``metrics.csv``,
``eval.csv`` / ``eval.json``, ``config.json``.
``python main.py train bicyclegan --out RUN --size 64 --steps N --batch B --threads 1 --seed 0 --resume auto`` trains;
``python main.py train release-bicyclegan RUN/bicyclegan.pt`` writes ``assets/bicyclegan.pt`` (G and E),
``assets/bicyclegan.json`` (sha256, commands, time, hardware, figures) and ``assets/bicyclegan_samples.png``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

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
from engine.assets import ASSETS_DIR, DEFAULT_BICYCLEGAN
from engine.convert.bicyclegan import load_bicyclegan
from engine.errors import ModelFormatError
from engine.files.checkpoints import atomic_torch_save, check_training_state, read_training_state
from engine.files.images import save_png, to_uint8
from engine.files.paths import command_line, write_json
from engine.files.storage import file_sha256, read_model_file
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
from engine.runtime import set_threads
from engine.synth import sample_params
from engine.synth.styles import check_domain
from engine.train.domains import render_domains
from engine.train.estimator import (
    StepTrainer,
    add_schedule_arguments,
    given_fields,
    resume_trainer,
    start_run,
    step_generator,
)
from engine.train.release.estimator import EVAL_SEED, cpu_model

STATE_FORMAT = "face-editor/train-bicyclegan"
STATE_VERSION = 1
CHECKPOINT_NAME, MODEL_NAME = "checkpoint.pt", "bicyclegan.pt"
GRID_NAME = "bicyclegan_samples.png"
METRIC_FIELDS = ("step", "images", "loss", "G_GAN", "G_GAN2", "G_L1", "kl", "z_L1", "D", "D2", "lr", "img_per_s",
                 "elapsed_s")
EVAL_FIELDS = ("step", "recon_l1", "random_l1", "diversity")
WEIGHT_FIELDS = ("lambda_L1", "lambda_GAN", "lambda_GAN2", "lambda_z", "lambda_kl", "gan_mode")


@dataclass(frozen=True)
class BicycleGANTrainConfig:
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
        if self.seed < 0 or self.seed == EVAL_SEED:
            raise ValueError(f"seed must be non-negative and not {EVAL_SEED} (the held-out seed), got {self.seed}")
        for name in ("steps", "batch_size", "eval_n", "eval_every", "checkpoint_every", "log_every", "nz", "ngf",
                     "nef", "ndf", "num_D", "d_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % 2:
            raise ValueError(f"batch_size must be even (half the pairs per branch), got {self.batch_size}")
        if self.size < 32 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 32 (U-Net down to 1x1, encoder down to 8x8), "
                             f"got {self.size}")
        if self.eval_samples < 2:
            raise ValueError(f"eval_samples must be at least 2 (diversity compares samples), got {self.eval_samples}")
        if self.lr <= 0 or not 0 <= self.beta1 < 1 or not 0 <= self.decay_fraction <= 1:
            raise ValueError(f"need lr > 0, 0 <= beta1 < 1 and 0 <= decay_fraction <= 1, got {self.lr}, "
                             f"{self.beta1}, {self.decay_fraction}")
        self.weights()  # validates gan_mode

    def weights(self) -> BicycleGANWeights:
        return BicycleGANWeights(**{k: getattr(self, k) for k in WEIGHT_FIELDS})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BicycleGANTrainConfig:
        if unknown := sorted(set(d) - {f.name for f in fields(cls)}):
            raise ValueError(f"unknown BicycleGAN training settings {unknown} (written by a newer version?)")
        return cls(**d)


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


# ---- trainer --------------------------------------------------------------------------------------------------


class BicycleGANTrainer(StepTrainer):
    """G, E, D, D2 (``self.model``, a ModuleDict), their Adam optimiser and the step counter; ``train()`` runs to
    ``cfg.steps``. out_dir: run folder (None: nothing is written). max_seconds: stop (with a checkpoint) after this
    much training time in one ``train()`` call. model: starting networks (resume); otherwise fresh ones."""

    desc, model_name, metric_fields, eval_fields = "train bicyclegan", MODEL_NAME, METRIC_FIELDS, EVAL_FIELDS

    def __init__(self, cfg: BicycleGANTrainConfig, *, out_dir: str | Path | None = None,
                 model: nn.ModuleDict | None = None, command_line: str = "", progress: bool = True,
                 max_seconds: float | None = None):
        model = (model if model is not None else build_networks(cfg)).train()
        want = network_configs(cfg)
        if {k: model[k].cfg for k in want} != want:
            raise ValueError("the networks are not the ones the training config describes")
        super().__init__(cfg, model, out_dir=out_dir, command_line=command_line, progress=progress,
                         max_seconds=max_seconds, best_score=None)
        for group in self.opt.param_groups:
            group["betas"] = (cfg.beta1, 0.999)
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

    def evaluate(self) -> dict:
        """Held-out figures of the current networks (the faces are rendered once and kept)."""
        cfg = self.cfg
        if self._eval_data is None or len(self._eval_data[0]) != cfg.eval_n:
            self._eval_data = held_out_pairs(n=cfg.eval_n, size=cfg.size, source=cfg.source, target=cfg.target)
        a, b = self._eval_data
        self.last_eval = {"step": self.step, **figures(self.model["G"], self.model["E"], a, b,
                                                       samples=cfg.eval_samples)}
        return self.last_eval

    def extras(self) -> dict:
        """Metadata stored in exported models."""
        return {**self.run_extras(), "source_domain": self.cfg.source, "target_domain": self.cfg.target}

    def checkpoint(self) -> dict:
        return bicyclegan_checkpoint(dict(self.model.items()), extras=self.extras())

    def state_dict(self) -> dict:
        """The full training state (plain containers and tensors; loadable with ``weights_only=True``)."""
        return {**self.run_state(STATE_FORMAT, STATE_VERSION), "model": self.checkpoint(),
                "optimizer": self.opt.state_dict()}

    def save_model(self, path: Path) -> None:
        atomic_torch_save(self.checkpoint(), path)

    def _postfix(self, stats: dict) -> dict:
        post = {"step": self.step, "L1": f"{stats['G_L1']:.3f}", "D": f"{stats['D']:.3f}"}
        if self.last_eval is not None:
            post["rec"] = f"{self.last_eval['recon_l1']:.3f}"
            post["div"] = f"{self.last_eval['diversity']:.3f}"
        return post

    def _final_eval_due(self) -> bool:
        return self.last_eval is None or self.last_eval["step"] != self.step

    def _record_eval(self) -> None:
        ev = self.evaluate()
        if self.out_dir is None:
            return
        self._eval_log.write({k: ev[k] for k in EVAL_FIELDS})
        self._out("eval.json").write_text(json.dumps(ev, indent=2))


_STATE_CHECK = dict(fmt=STATE_FORMAT, version=STATE_VERSION, what="BicycleGAN training checkpoint",
                    wrong="not a BicycleGAN training checkpoint (train bicyclegan writes OUT/checkpoint.pt)")


def read_state(path: str | Path) -> dict:
    """A training checkpoint written by ``BicycleGANTrainer``; ValueError if it is something else."""
    return read_training_state(path, **_STATE_CHECK)


def trainer_from_state(state: dict, *, overrides: dict | None = None, **kwargs) -> BicycleGANTrainer:
    """Continue a checkpoint; ``overrides`` may change only ``OVERRIDABLE_ON_RESUME`` fields."""
    check_training_state(state, **_STATE_CHECK)
    return resume_trainer(BicycleGANTrainer, BicycleGANTrainConfig, state, load_model=load_networks,
                          overrides=overrides, **kwargs)


# ---- release --------------------------------------------------------------------------------------------------


def release_bicyclegan(source: str | os.PathLike, out_dir: str | os.PathLike, *, eval_n: int = 256,
                       samples: int = 10, grid_rows: int = 8, half: bool = True, command_line: str = "") -> dict:
    """Release ``source`` (``RUN/bicyclegan.pt`` or ``RUN/checkpoint.pt`` of ``train bicyclegan``) as
    ``out_dir/bicyclegan.pt`` (G and E, project format) with the manifest ``out_dir/bicyclegan.json`` (sha256,
    training and release commands, time, hardware, held-out figures on ``eval_n`` faces with ``samples`` random
    codes each) and the sample grid ``out_dir/bicyclegan_samples.png`` (``grid_rows`` held-out inputs). half: store
    the weights as float16 (they load into float32 networks); the figures are those of the stored weights. -> manifest
    """
    source, out_dir = Path(source), Path(out_dir)
    if eval_n < 1 or samples < 2 or grid_rows < 1:
        raise ValueError(f"need eval_n >= 1, samples >= 2 and grid_rows >= 1, got {eval_n}, {samples}, {grid_rows}")
    kind, obj = read_model_file(source)
    if kind == "torch" and isinstance(obj, dict) and obj.get("format") == STATE_FORMAT:
        check_training_state(obj, **_STATE_CHECK)
        obj = obj["model"]
    if kind != "torch" or not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ModelFormatError(f"{source}: not a file written by 'train bicyclegan' (RUN/bicyclegan.pt or "
                               "RUN/checkpoint.pt)")
    extras = dict(obj.get("extras") or {})
    if "train_config" not in extras:
        raise ModelFormatError(f"{source} holds no training metadata: release a file written by 'train bicyclegan'")
    tc = BicycleGANTrainConfig.from_dict(extras["train_config"])
    trained = load_bicyclegan(obj)
    released = bicyclegan_checkpoint({"G": trained["G"], "E": trained["E"]})
    if half:
        for entry in released["networks"].values():
            sd = entry["state_dict"]
            entry["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    nets = load_bicyclegan(released)
    G, E = nets["G"], nets["E"]
    a, b = held_out_pairs(n=max(eval_n, grid_rows), size=tc.size, source=tc.source, target=tc.target)
    figs = figures(G, E, a[:eval_n], b[:eval_n], samples=samples)
    grid = sample_grid(G, E, a[:grid_rows], b[:grid_rows], samples=4)
    extras.update(held_out_release=figs, released_from=source.name, weights_dtype="float16" if half else "float32")
    released["extras"] = extras
    out_path = out_dir / DEFAULT_BICYCLEGAN
    atomic_torch_save(released, out_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_png(out_dir / GRID_NAME, grid, parameters={"model": DEFAULT_BICYCLEGAN, "sha256": file_sha256(out_path)})
    manifest = {
        "file": DEFAULT_BICYCLEGAN, "sha256": file_sha256(out_path), "bytes": out_path.stat().st_size,
        "format": FORMAT, "weights_dtype": extras["weights_dtype"],
        "networks": {k: {"arch": n.cfg.to_dict(), "parameters": sum(p.numel() for p in n.parameters())}
                     for k, n in (("G", G), ("E", E))},
        "domains": {"A": tc.source, "B": tc.target},
        "input": f"A: RGB [B, 3, {tc.size}, {tc.size}] in [-1, 1] ({tc.source}); z [B, {tc.nz}] ~ N(0, I); "
                 f"E reads B images ({tc.target}) of the same size",
        "command": extras.get("command_line", ""), "release_command": command_line,
        "released_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_seed": extras.get("data_seed"), "eval_seed": EVAL_SEED, "train_config": extras.get("train_config"),
        "steps": extras.get("step"), "images_seen": extras.get("images_seen"),
        "train_seconds": round(float(extras.get("train_seconds", 0.0)), 1),
        "hardware": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": extras.get("threads"),
                     "torch": torch.__version__, "device": "cpu"},
        "released_from": source.name,
        "figures": {**figs, "scale": "mean absolute difference on [0, 1] pixels",
                    "note": "recon_l1: G(A, mu(E(B))) vs B; random_l1: G(A, z) vs B; diversity: mean pairwise L1 "
                            "between the random samples of one input"},
        "held_out_during_training": extras.get("held_out"),
        "grid": {"file": GRID_NAME, "rows": grid_rows, "columns": ["A", "B (ground truth)", "encoded",
                                                                  "random 1", "random 2", "random 3", "random 4"]},
    }
    return write_json(out_dir / f"{Path(DEFAULT_BICYCLEGAN).stem}.json", manifest)


# ---- command line ---------------------------------------------------------------------------------------------


# argparse destination -> BicycleGANTrainConfig field
_FLAGS = {"steps": "steps", "batch": "batch_size", "size": "size", "seed": "seed", "lr": "lr", "nz": "nz",
          "ngf": "ngf", "nef": "nef", "ndf": "ndf", "eval_n": "eval_n", "eval_every": "eval_every",
          "checkpoint_every": "checkpoint_every", "log_every": "log_every", "source": "source", "target": "target"}


def add_bicyclegan_commands(sub) -> None:
    """``train bicyclegan`` and ``train release-bicyclegan`` on the ``train`` subcommand set."""
    d = BicycleGANTrainConfig()
    p = sub.add_parser("bicyclegan", help="train BicycleGAN on paired synthetic faces (edges -> photo)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, bicyclegan.pt, metrics.csv, eval.csv, "
                   "eval.json)")
    p.add_argument("--resume", metavar="PATH|auto", help="continue a training checkpoint; 'auto': OUT/checkpoint.pt "
                   "if present")
    p.add_argument("--steps", type=int, help=f"iterations (default {d.steps})")
    p.add_argument("--batch", type=int, help=f"(A, B) pairs per iteration, even (default {d.batch_size})")
    p.add_argument("--size", type=int, help=f"image side, a power of two >= 32 (default {d.size})")
    p.add_argument("--seed", type=int, help=f"seed of initialisation, faces and codes (default {d.seed})")
    p.add_argument("--source", help=f"domain of A (default {d.source})")
    p.add_argument("--target", help=f"domain of B (default {d.target})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--nz", type=int, help=f"code size (default {d.nz})")
    p.add_argument("--ngf", type=int, help=f"generator width (default {d.ngf})")
    p.add_argument("--nef", type=int, help=f"encoder width (default {d.nef})")
    p.add_argument("--ndf", type=int, help=f"discriminator width (default {d.ndf})")
    p.add_argument("--eval-n", type=int, help=f"held-out faces (default {d.eval_n})")
    add_schedule_arguments(p, d)
    p.set_defaults(func=run_train_bicyclegan)

    p = sub.add_parser("release-bicyclegan", help="release a trained BicycleGAN as assets/bicyclegan.pt with its "
                       "manifest and sample grid", description=release_bicyclegan.__doc__)
    p.add_argument("source", help="RUN/bicyclegan.pt or RUN/checkpoint.pt of a 'train bicyclegan' run")
    p.add_argument("--out", default=str(ASSETS_DIR), help="output folder (default: this checkout's assets/)")
    p.add_argument("--eval-n", type=int, default=256, help="held-out faces (default 256)")
    p.add_argument("--samples", type=int, default=10, help="random codes per face for diversity (default 10)")
    p.add_argument("--float32", action="store_true", help="store float32 weights (default: float16, half the size)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.set_defaults(func=run_release_bicyclegan)


def _format(ev: dict) -> str:
    return (f"reconstruction L1 {ev['recon_l1']:.4f}, random-sample L1 {ev['random_l1']:.4f}, diversity "
            f"{ev['diversity']:.4f} ({ev['n']} faces x {ev['samples']} codes, [0, 1] pixels)")


def run_train_bicyclegan(args: argparse.Namespace) -> int:
    """``train bicyclegan``: train (or resume); 0 when done (or stopped by --max-minutes), 130 when interrupted."""
    set_threads(args.threads)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    given = given_fields(args, _FLAGS)
    trainer = start_run(args, given, kind="BicycleGAN", checkpoint_name=CHECKPOINT_NAME, read_state=read_state,
                        from_state=trainer_from_state, log=log,
                        fresh=lambda **kw: BicycleGANTrainer(BicycleGANTrainConfig(**given), **kw))
    c = trainer.cfg
    n = {k: sum(p.numel() for p in net.parameters()) for k, net in trainer.model.items()}
    log(f"training BicycleGAN {c.source} -> {c.target} at {c.size} px (G {n['G'] / 1e6:.2f} M, E "
        f"{n['E'] / 1e6:.2f} M, D+D2 {(n['D'] + n['D2']) / 1e6:.2f} M parameters), batch {c.batch_size}, "
        f"{c.steps} steps, {torch.get_num_threads()} threads")
    status = trainer.train()
    log(f"{status} at step {trainer.step} ({trainer.elapsed_s / 60:.1f} min); held-out: {_format(trainer.last_eval)}")
    return 130 if status == "interrupted" else 0


def run_release_bicyclegan(args: argparse.Namespace) -> int:
    """``train release-bicyclegan SOURCE``: write ``bicyclegan.pt``, ``bicyclegan.json`` and the grid into --out."""
    set_threads(args.threads)
    m = release_bicyclegan(args.source, args.out, eval_n=args.eval_n, samples=args.samples, half=not args.float32,
                           command_line=command_line())
    print(f"released {Path(args.out) / DEFAULT_BICYCLEGAN} (sha256 {m['sha256'][:12]}..., step {m['steps']}): "
          f"{_format(m['figures'])}; grid {Path(args.out) / GRID_NAME}", file=sys.stderr)
    return 0


__all__ = ["BicycleGANTrainConfig", "BicycleGANTrainer", "network_configs", "build_networks", "load_networks",
           "lr_at", "render_pairs", "training_batch", "held_out_pairs", "sample_outputs", "figures", "sample_grid",
           "read_state", "trainer_from_state", "release_bicyclegan", "add_bicyclegan_commands",
           "run_train_bicyclegan", "run_release_bicyclegan", "STATE_FORMAT", "CHECKPOINT_NAME", "MODEL_NAME",
           "DEFAULT_BICYCLEGAN", "GRID_NAME", "EVAL_SEED"]
