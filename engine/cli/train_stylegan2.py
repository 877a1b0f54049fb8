"""``train stylegan2``: train, fine-tune or resume a StyleGAN2 generator; ``train release-generator`` and ``train
release-finetune``: make a run's snapshot the embedded default generator, or a fine-tune a translation target.

Single process: ``python main.py train stylegan2 --data DIR|synth:photo --out runs/NAME``. Several processes:
``torchrun --nproc_per_node N main.py train stylegan2 ...`` (gloo on CPU, nccl on CUDA). ``--batch`` is the
global batch. ``--resume auto`` continues ``OUT/checkpoint.pt`` when it exists and starts fresh otherwise.
``python main.py train release-generator RUN/snapshots/network-KKKKKKkimg.pt`` then makes a snapshot the embedded
default generator in ``assets/`` (``engine.train.release.generator``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine.cli import train_options as opts
from engine.errors import ModelFormatError
from engine.files.loading import load_discriminator, load_generator
from engine.files.paths import command_line
from engine.train.data import open_source
from engine.train.distributed import init_from_env, shutdown
from engine.train.release.finetune import release_finetune
from engine.train.release.generator import release_generator
from engine.train.stylegan2 import TrainConfig, Trainer

# option -> (config field, type, help), by group
ARCHITECTURE: dict[str, opts.Option] = {
    "--resolution": ("resolution", int, "image size, a power of two"),
    "--channels": ("channels", opts.int_list, "widths at 4,8,...,resolution, e.g. 256,256,128,64,32 (default: by "
                   "--channel-base and --channel-max)"),
    "--channel-base": ("channel_base", int, "width rule min(base/res, max)"), "--channel-max": ("channel_max", int, ""),
    "--z-dim": ("z_dim", int, ""), "--w-dim": ("w_dim", int, ""), "--mapping-layers": ("mapping_layers", int, ""),
    "--mbstd-group": ("mbstd_group_size", int, "minibatch-stddev group size")}
RECIPE: dict[str, opts.Option] = {
    "--kimg": ("kimg", float, "training length in thousands of images"),
    "--batch": ("batch_size", int, "global batch size"), "--g-lr": ("g_lr", float, ""), "--d-lr": ("d_lr", float, ""),
    "--r1-gamma": ("r1_gamma", float, ""), "--d-reg-every": ("d_reg_every", int, "lazy R1 interval, 0 = off"),
    "--g-reg-every": ("g_reg_every", int, "lazy path-length interval, 0 = off"),
    "--pl-weight": ("pl_weight", float, ""), "--mixing": ("mixing_prob", float, "style-mixing probability"),
    "--ema-kimg": ("ema_kimg", float, "EMA half-life in kimg"),
    "--ema-rampup": ("ema_rampup", float, "EMA ramp-up, 0 = off")}


def _given(args) -> dict:
    """TrainConfig fields set explicitly on the command line."""
    out = opts.given_fields(args, ARCHITECTURE, RECIPE)
    if out.get("ema_rampup") == 0:
        out["ema_rampup"] = None
    if args.no_xflip:
        out["xflip"] = False
    if args.freeze_mapping:
        out["freeze_mapping"] = True
    return out


def _load_base(path: str, given: dict, log) -> tuple[dict, object, object]:
    """(config fields implied by the base model, G, D or None)."""
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


def run_train_stylegan2(args: argparse.Namespace) -> int:
    """``train stylegan2``: train, fine-tune (``--base``) or resume a generator, in this process and the others
    torchrun started."""
    ctx = init_from_env(device=args.device)
    log = opts.logger(args, main_process=ctx.is_main)

    def source(cfg: TrainConfig, data: str):
        if cfg.batch_size % ctx.world_size:
            raise ValueError(f"--batch {cfg.batch_size} does not split evenly over {ctx.world_size} processes")
        return open_source(data, resolution=cfg.resolution, batch_size=cfg.batch_size // ctx.world_size,
                           seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size)

    def resumed(state: dict, *, overrides: dict, **kwargs) -> Trainer:
        data = args.data or state["data_spec"]
        return Trainer.from_state(state, overrides=overrides, data_spec=data, **kwargs,
                                  source=source(Trainer.resumed_config(state, overrides), data))

    def fresh(**kwargs) -> Trainer:
        if not args.data:
            raise ValueError("--data is required (an image folder or synth:DOMAIN) unless resuming")
        fields, G, D = given, None, None
        if args.base:
            implied, G, D = _load_base(args.base, given, log)
            fields = {**given, **implied}
        cfg = TrainConfig(**fields)
        return Trainer(cfg, source(cfg, args.data), G=G, D=D, data_spec=args.data, base=args.base, **kwargs)

    try:
        given = _given(args)
        trainer = opts.start_trainer(args, Trainer, given=given, fresh=fresh, resumed=resumed, log=log, ctx=ctx)
        return opts.run_trainer(args, trainer, log=log)
    finally:
        shutdown(ctx)


def add_stylegan2_command(sub) -> None:
    d = TrainConfig()
    p = sub.add_parser("stylegan2", help="train or fine-tune a StyleGAN2 generator", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    opts.add_run_options(p, d, files="checkpoint.pt, model.pt, snapshots/, samples/, metrics.csv",
                         seeds="initialisation, data order and sampling", device="auto")
    io = p.add_argument_group("data")
    io.add_argument("--data", help="image folder (PNG/JPEG, recursive) or synth:DOMAIN, e.g. synth:photo")
    io.add_argument("--base", metavar="MODEL", help="start from this model file (any supported format)")
    io.add_argument("--freeze-mapping", action="store_true", help="keep the mapping network fixed (FreezeFC)")
    opts.add_config_options(p.add_argument_group("architecture"), d, ARCHITECTURE)
    recipe = p.add_argument_group("recipe")
    opts.add_config_options(recipe, d, RECIPE)
    recipe.add_argument("--no-xflip", action="store_true", help="no horizontal-flip augmentation")
    p.set_defaults(func=run_train_stylegan2)


def run_release_generator(args: argparse.Namespace) -> int:
    """``train release-generator SNAPSHOT``: write the embedded default generator, its grids and manifest."""
    log = opts.logger(args)
    start = time.perf_counter()
    manifest = release_generator(args.snapshot, args.out, n=args.n, seed=args.seed, batch=args.batch,
                                 estimator=args.estimator, command_line=command_line(), log=log)
    fid = manifest["frechet"]
    log(f"released {Path(args.out) / manifest['file']} ({manifest['kimg']:g} kimg, sha256 {manifest['sha256'][:12]}"
        f"...): Fréchet distance {fid['frechet_estimator_space']:.3f} (real vs real floor "
        f"{fid['floor_real_vs_real']:.3f}, n {fid['n']}) in {time.perf_counter() - start:.0f} s")
    return 0


def run_release_finetune(args: argparse.Namespace) -> int:
    """``train release-finetune SNAPSHOT --name NAME``: write NAME.pt, NAME-vs-base.png and NAME.json."""
    m = release_finetune(args.snapshot, args.out, name=args.name, base=args.base, n=args.n,
                         command_line=command_line())
    by_depth = ", ".join(f"{d} px {v:.3f}" for d, v in m["model_distance"]["by_swap_depth"].items())
    print(f"released {Path(args.out) / m['file']} ({m['kimg']:g} kimg, sha256 {m['sha256'][:12]}...): distance to "
          f"the base {m['model_distance']['to_base']:.3f}; swapped at {by_depth}", file=sys.stderr)
    return 0


def add_release_commands(sub) -> None:
    """``train release-generator`` and ``train release-finetune``."""
    p = opts.add_release_command(sub, "release-generator", help="turn a stylegan2 training snapshot into the embedded "
                            "default generator (generator.pt, sample grids, generator.json with Fréchet figures)",
                            description=None, source="snapshot", source_help="RUN/snapshots/network-KKKKKKkimg.pt "
                            "or RUN/model.pt of a 'train stylegan2' run", func=run_release_generator)
    p.add_argument("--n", type=int, default=5000, help="faces per set for the Fréchet distance (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="first z seed of the generated set (default 0)")
    p.add_argument("--batch", type=int, default=250, help="images per forward pass (default 250)")
    p.add_argument("--estimator", help="feature extractor (default: the embedded assets/estimator.pt)")
    p.add_argument("--quiet", action="store_true", help="no messages")

    p = opts.add_release_command(sub, "release-finetune", help="release a FreezeFC fine-tune of the default as a "
                            "translation target (NAME.pt, NAME-vs-base.png, NAME.json with the model distance)",
                            description=release_finetune.__doc__, source="snapshot",
                            source_help="RUN/snapshots/network-KKKKKKkimg.pt or RUN/model.pt of a fine-tuning run",
                            func=run_release_finetune)
    p.add_argument("--name", required=True, help="the target's name, e.g. its domain: toon")
    p.add_argument("--base", help="the generator it was fine-tuned from (default: the embedded default)")
    p.add_argument("--n", type=int, default=256, help="latents for the model distance (default 256)")


__all__ = ["add_stylegan2_command", "add_release_commands", "run_train_stylegan2", "run_release_generator",
           "run_release_finetune"]
