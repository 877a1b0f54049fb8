"""``python main.py train stylegan2 ...``: train (or fine-tune, or resume) a StyleGAN2 generator.

Single process: ``python main.py train stylegan2 --data DIR|synth:photo --out runs/NAME``. Several processes:
``torchrun --nproc_per_node N main.py train stylegan2 ...`` (gloo on CPU, nccl on CUDA). ``--batch`` is the
global batch. ``--resume auto`` continues ``OUT/checkpoint.pt`` when it exists and starts fresh otherwise.
``python main.py train release-generator RUN/snapshots/network-KKKKKKkimg.pt`` then makes a snapshot the embedded
default generator in ``assets/`` (see ``release``). ``train flow`` / ``release-flow`` and ``train encoder`` /
``release-encoder`` are registered here too (see ``flow``, ``flow_release`` and ``encoder``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from engine.assets import ASSETS_DIR
from engine.files.checkpoints import resume_path
from engine.files.paths import command_line
from engine.train.stylegan2 import CHECKPOINT_NAME, MODEL_NAME, OVERRIDABLE_ON_RESUME, TrainConfig

# argparse destination -> TrainConfig field, for the options that map one to one
_FIELDS = {
    "resolution": "resolution", "channel_base": "channel_base", "channel_max": "channel_max", "z_dim": "z_dim",
    "w_dim": "w_dim", "mapping_layers": "mapping_layers", "batch": "batch_size", "kimg": "kimg", "g_lr": "g_lr",
    "d_lr": "d_lr", "r1_gamma": "r1_gamma", "d_reg_every": "d_reg_every", "g_reg_every": "g_reg_every",
    "pl_weight": "pl_weight", "mixing": "mixing_prob", "ema_kimg": "ema_kimg", "seed": "seed",
    "log_every": "log_every", "sample_every": "sample_every", "snapshot_every": "snapshot_every",
    "checkpoint_every": "checkpoint_every", "mbstd_group": "mbstd_group_size",
}


def _channels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"channels must be comma-separated integers, got {text!r}") from None


def _given(args) -> dict:
    """TrainConfig fields set explicitly on the command line."""
    out = {f: getattr(args, a) for a, f in _FIELDS.items() if getattr(args, a) is not None}
    if args.channels is not None:
        out["channels"] = args.channels
    if args.ema_rampup is not None:
        out["ema_rampup"] = args.ema_rampup if args.ema_rampup > 0 else None
    if args.no_xflip:
        out["xflip"] = False
    if args.freeze_mapping:
        out["freeze_mapping"] = True
    return out


def _load_base(path: str, given: dict, log) -> tuple[dict, object, object]:
    """(config fields implied by the base model, G, D or None)."""
    from engine.errors import ModelFormatError
    from engine.files.loading import load_discriminator, load_generator

    G = load_generator(path)
    c = G.cfg
    if "resolution" in given and given["resolution"] != c.img_resolution:
        raise ValueError(f"--base makes {c.img_resolution} px images but --resolution is {given['resolution']}")
    try:
        D = load_discriminator(path)
    except ModelFormatError as e:
        log(f"note: {e}; training a fresh discriminator")
        D = None
    implied = dict(resolution=c.img_resolution, channels=c.channels, z_dim=c.z_dim, w_dim=c.w_dim,
                   mapping_layers=c.mapping_layers, mapping_lr_mult=c.mapping_lr_mult)
    return implied, G, D


def cmd_train_stylegan2(args) -> int:
    from engine.train.data import open_source
    from engine.train.distributed import init_from_env, shutdown
    from engine.train.stylegan2 import Trainer, read_state, resume_config, trainer_from_state

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    ctx = init_from_env(device=args.device)
    log = (lambda msg: print(msg, file=sys.stderr)) if ctx.is_main and not args.quiet else (lambda msg: None)
    try:
        given = _given(args)
        resume = resume_path(args.resume, args.out, name=CHECKPOINT_NAME)
        common = dict(out_dir=args.out, ctx=ctx, command_line=command_line(), progress=not args.quiet)
        if resume is not None:
            state = read_state(resume)
            fixed = {k: v for k, v in given.items() if k not in OVERRIDABLE_ON_RESUME}
            stored = TrainConfig.from_dict(state["config"])
            changed = sorted(k for k, v in fixed.items() if getattr(stored, k) != v)
            if changed:
                raise ValueError(f"cannot change {', '.join(changed)} when resuming {resume} (the checkpoint "
                                 "fixes them)")
            cfg = resume_config(state, **{k: v for k, v in given.items() if k in OVERRIDABLE_ON_RESUME})
            data = args.data or state["data_spec"]
            source = open_source(data, resolution=cfg.resolution, batch_size=cfg.batch_size // ctx.world_size,
                                 seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size)
            trainer = trainer_from_state(state, source, cfg=cfg, data_spec=data, **common)
            log(f"resuming {resume} at step {trainer.step} ({trainer.images_seen / 1000:.1f} kimg)")
        else:
            if not args.data:
                raise ValueError("--data is required (an image folder or synth:DOMAIN) unless resuming")
            if (Path(args.out) / CHECKPOINT_NAME).exists():
                raise ValueError(f"{args.out} already holds a training run: continue it with --resume auto or "
                                 "choose another --out")
            G = D = None
            if args.base:
                implied, G, D = _load_base(args.base, given, log)
                given = {**given, **implied}
            cfg = TrainConfig(**given)
            if cfg.batch_size % ctx.world_size:
                raise ValueError(f"--batch {cfg.batch_size} does not split evenly over {ctx.world_size} processes")
            source = open_source(args.data, resolution=cfg.resolution, batch_size=cfg.batch_size // ctx.world_size,
                                 seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size)
            trainer = Trainer(cfg, source, G=G, D=D, data_spec=args.data, base=args.base, **common)
        g = trainer.G.cfg
        log(f"training {g.img_resolution} px StyleGAN2 (channels {list(g.channels)}, w_dim {g.w_dim}) on "
            f"{source.description}, batch {cfg.batch_size} on {ctx.world_size} x {ctx.device}, "
            f"{cfg.kimg} kimg = {cfg.total_steps} steps")
        status = trainer.train()
        log(f"{status} at step {trainer.step}: checkpoint {Path(args.out) / CHECKPOINT_NAME}, "
            f"model {Path(args.out) / MODEL_NAME}")
        return 0 if status == "done" else 130
    finally:
        shutdown(ctx)


def cmd_release_generator(args) -> int:
    """``train release-generator SNAPSHOT``: write the embedded default generator, its grids and manifest."""
    from engine.train.release.generator import release_generator

    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    start = time.perf_counter()
    manifest = release_generator(args.snapshot, args.out, n=args.n, seed=args.seed, batch=args.batch,
                                 estimator=args.estimator, command_line=command_line(), log=log)
    fid = manifest["frechet"]
    log(f"released {Path(args.out) / manifest['file']} ({manifest['kimg']:g} kimg, sha256 {manifest['sha256'][:12]}"
        f"...): Fréchet distance {fid['frechet_estimator_space']:.3f} (real vs real floor "
        f"{fid['floor_real_vs_real']:.3f}, n {fid['n']}) in {time.perf_counter() - start:.0f} s")
    return 0


def add_train_commands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Register ``train`` (with its ``stylegan2`` and ``release-generator`` subcommands) on a ``main.py`` subparser
    set; returns the ``train`` subcommand set so other trainers can add theirs."""
    train = sub.add_parser("train", help="train generators (see: train stylegan2 --help)")
    models = train.add_subparsers(dest="train_model", metavar="MODEL", required=True)
    d = TrainConfig()
    p = models.add_parser("stylegan2", help="train or fine-tune a StyleGAN2 generator",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("data and files")
    io.add_argument("--data", help="image folder (PNG/JPEG, recursive) or synth:DOMAIN, e.g. synth:photo")
    io.add_argument("--out", required=True, help="run folder (checkpoint.pt, model.pt, samples/, metrics.csv)")
    io.add_argument("--resume", metavar="PATH|auto", help="continue a training checkpoint; 'auto': OUT/checkpoint.pt "
                    "if present")
    io.add_argument("--base", metavar="MODEL", help="start from this model file (any supported format)")
    io.add_argument("--freeze-mapping", action="store_true", help="keep the mapping network fixed (FreezeFC)")
    io.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    io.add_argument("--threads", type=int, help="CPU threads per process (default: PyTorch's choice; on a shared "
                    "machine or with several CPU processes, cores / processes)")
    io.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    arch = p.add_argument_group("architecture")
    arch.add_argument("--resolution", type=int, help=f"image size, a power of two (default {d.resolution})")
    arch.add_argument("--channels", type=_channels, help="widths at 4,8,...,resolution, e.g. 256,256,128,64,32")
    arch.add_argument("--channel-base", type=int, help=f"width rule min(base/res, max) (default {d.channel_base})")
    arch.add_argument("--channel-max", type=int, help=f"(default {d.channel_max})")
    arch.add_argument("--z-dim", type=int, help=f"(default {d.z_dim})")
    arch.add_argument("--w-dim", type=int, help=f"(default {d.w_dim})")
    arch.add_argument("--mapping-layers", type=int, help=f"(default {d.mapping_layers})")
    arch.add_argument("--mbstd-group", type=int, help=f"minibatch-stddev group size (default {d.mbstd_group_size})")
    rec = p.add_argument_group("recipe")
    rec.add_argument("--kimg", type=float, help=f"training length in thousands of images (default {d.kimg:g})")
    rec.add_argument("--batch", type=int, help=f"global batch size (default {d.batch_size})")
    rec.add_argument("--g-lr", type=float, help=f"(default {d.g_lr})")
    rec.add_argument("--d-lr", type=float, help=f"(default {d.d_lr})")
    rec.add_argument("--r1-gamma", type=float, help=f"(default {d.r1_gamma:g})")
    rec.add_argument("--d-reg-every", type=int, help=f"lazy R1 interval, 0 = off (default {d.d_reg_every})")
    rec.add_argument("--g-reg-every", type=int, help=f"lazy path-length interval, 0 = off (default {d.g_reg_every})")
    rec.add_argument("--pl-weight", type=float, help=f"(default {d.pl_weight:g})")
    rec.add_argument("--mixing", type=float, help=f"style-mixing probability (default {d.mixing_prob})")
    rec.add_argument("--ema-kimg", type=float, help=f"EMA half-life in kimg (default {d.ema_kimg:g})")
    rec.add_argument("--ema-rampup", type=float, help=f"EMA ramp-up, 0 = off (default {d.ema_rampup})")
    rec.add_argument("--no-xflip", action="store_true", help="no horizontal-flip augmentation")
    rec.add_argument("--seed", type=int, help=f"seed of initialisation, data order and sampling (default {d.seed})")
    sch = p.add_argument_group("schedule (in steps)")
    sch.add_argument("--log-every", type=int, help=f"metrics.csv row interval (default {d.log_every})")
    sch.add_argument("--sample-every", type=int, help=f"sample grid interval, 0 = off (default {d.sample_every})")
    sch.add_argument("--snapshot-every", type=int, help=f"model snapshot interval, 0 = off (default "
                     f"{d.snapshot_every})")
    sch.add_argument("--checkpoint-every", type=int, help=f"training checkpoint interval (default "
                     f"{d.checkpoint_every})")
    p.set_defaults(func=cmd_train_stylegan2)

    p = models.add_parser("release-generator", help="turn a stylegan2 training snapshot into the embedded default "
                          "generator (generator.pt, sample grids, generator.json with Fréchet figures)")
    p.add_argument("snapshot", help="RUN/snapshots/network-KKKKKKkimg.pt or RUN/model.pt of a 'train stylegan2' run")
    p.add_argument("--out", default=str(ASSETS_DIR), help="output folder (default: this checkout's assets/)")
    p.add_argument("--n", type=int, default=5000, help="faces per set for the Fréchet distance (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="first z seed of the generated set (default 0)")
    p.add_argument("--batch", type=int, default=250, help="images per forward pass (default 250)")
    p.add_argument("--estimator", help="feature extractor (default: the embedded assets/estimator.pt)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1; figures can differ in the last "
                   "digits with another count)")
    p.add_argument("--quiet", action="store_true", help="no messages")
    p.set_defaults(func=cmd_release_generator)

    from engine.train.flow import __doc__ as flow_doc
    from engine.train.flow import add_flow_arguments, run_train_flow

    p = models.add_parser("flow", help="train StyleFlow's conditional flow on a generator's labelled latents (or "
                          "StyleFlow's data)", description=flow_doc,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flow_arguments(p)
    p.set_defaults(func=run_train_flow)
    from engine.train.release.flow import add_release_flow_command

    add_release_flow_command(models)
    from engine.train.encoder import add_encoder_commands

    add_encoder_commands(models)
    from engine.train.release.finetune import add_release_finetune_command

    add_release_finetune_command(models)
    return models


__all__ = ["add_train_commands", "cmd_train_stylegan2", "cmd_release_generator"]
