"""The models of a generator's latent space and their releases: ``train flow`` / ``release-flow`` (StyleFlow's
conditional flow), ``train encoder`` / ``release-encoder`` (the inversion encoder) and ``train directions`` (the
measured edit directions, ``engine.cli.train_directions``)."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from engine.assets import DEFAULT_ENCODER, DEFAULT_FLOW, default_estimator_path, default_generator_path
from engine.cli import train_options as opts
from engine.cli.train_directions import add_directions_command
from engine.files.loading import load_generator
from engine.files.paths import command_line
from engine.models.encoder import EncoderConfig
from engine.models.flow import ADAPTIVE_SOLVERS, FIXED_SOLVERS, FlowConfig
from engine.train import encoder, flow
from engine.train.distributed import resolve_device
from engine.train.release.encoder import release_encoder
from engine.train.release.flow import release_flow

# ---- train flow / release-flow --------------------------------------------------------------------------------

# option -> (config field, type, help): the options of each trainer beyond the shared ones (the flow's length is
# --steps or --epochs)
FLOW: dict[str, opts.Option] = {
    "--batch": ("batch_size", int, "samples per step (StyleFlow: 5)"), "--lr": ("lr", float, "Adam learning rate"),
    "--val-n": ("val_n", int, "held-out samples, the last rows of the data (default 5%%, at least 1)"),
    "--eval-batch": ("eval_batch", int, "held-out samples per pass")}
ENCODER: dict[str, opts.Option] = {
    "--kimg": ("kimg", float, "training length in thousands of images"), "--batch": ("batch_size", int, ""),
    "--lr": ("lr", float, "Adam learning rate"),
    "--rampdown": ("rampdown", float, "fraction of the steps with a cosine learning-rate ramp-down"),
    "--psi-min": ("psi_min", float, ""), "--psi-max": ("psi_max", float, ""),
    "--mixing": ("mixing_prob", float, "style-mixing probability per sample"),
    "--latent-weight": ("latent_weight", float, ""),
    "--image-weight": ("image_weight", float, "weight of the pixel MSE through G (0: latent loss only)"),
    "--ssim-weight": ("ssim_weight", float, "weight of 1 - SSIM through G"),
    "--eval-n": ("eval_n", int, "held-out samples")}


def _hidden(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"hidden widths are dash-separated integers like 256-256-256, got {text!r}"
                                         ) from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"hidden widths must be positive, got {text!r}")
    return dims


def add_flow_commands(sub) -> None:
    d, f = flow.FlowTrainConfig(), FlowConfig()
    p = sub.add_parser("flow", help="train StyleFlow's conditional flow on a generator's labelled latents (or "
                       "StyleFlow's data)", description=flow.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    opts.add_run_options(p, d, files="checkpoint.pt, flow.pt, metrics.csv, eval.csv, flow_data.npz",
                         seeds="initialisation, batch order and noise", device="cpu")
    io = p.add_argument_group("data")
    io.add_argument("--generator", metavar="MODEL", help="sample latents from this generator (default: the embedded "
                    "default)")
    io.add_argument("--estimator", metavar="MODEL", help="label the faces with this attribute estimator (default: the "
                    "embedded one)")
    io.add_argument("--styleflow-data", metavar="DIR", help="train on StyleFlow's released files instead "
                    "(sg2latents.pickle or latents.npy, attributes.npy, light.npy)")
    io.add_argument("--n", type=int, default=10000, help="latents to sample (default 10000)")
    io.add_argument("--data-seed", type=int, default=0, help="seed of the sampled z (default 0)")
    io.add_argument("--psi", type=float, default=1.0, help="truncation psi of the sampled latents (default 1)")
    arch = p.add_argument_group("architecture (StyleFlow's builder)")
    arch.add_argument("--hidden", type=_hidden, help="ODE-net hidden widths, e.g. 256-256-256 (default: three "
                      "w_dim-wide layers; 512-512-512-512-512 for 512-dim W, as StyleFlow)")
    arch.add_argument("--blocks", type=int, default=f.num_blocks, help=f"CNF blocks (default {f.num_blocks})")
    arch.add_argument("--no-batch-norm", action="store_true", help="no moving batch norm around the blocks")
    arch.add_argument("--solver", default=f.solver, choices=ADAPTIVE_SOLVERS + FIXED_SOLVERS,
                      help=f"(default {f.solver})")
    arch.add_argument("--step-size", type=float, help="step of a fixed-step solver")
    arch.add_argument("--atol", type=float, default=f.atol, help=f"(default {f.atol:g}, as StyleFlow)")
    arch.add_argument("--rtol", type=float, default=f.rtol, help=f"(default {f.rtol:g}, as StyleFlow)")
    arch.add_argument("--adjoint", action="store_true", help="gradients by the adjoint method (StyleFlow's; about 3x "
                      "slower on a CPU than the default backpropagation through the solver)")
    rec = p.add_argument_group("recipe")
    length = rec.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help=f"training steps (default {d.steps})")
    length.add_argument("--epochs", type=float, help="training length in passes over the training rows")
    opts.add_config_options(rec, d, FLOW)
    p.set_defaults(func=run_train_flow)

    p = opts.add_release_command(sub, "release-flow", help="release a trained flow as the embedded default's attribute "
                            "flow", description=release_flow.__doc__, source="flow",
                            source_help="RUN/flow.pt written by train flow", func=run_release_flow,
                            out_help="the assets folder holding generator.pt (default: this checkout's)")
    p.add_argument("--runs", type=int, default=10, help="timed edits per solver for the manifest (default 10)")


def _data_spec(args) -> dict:
    if args.styleflow_data:
        if args.generator or args.estimator:
            raise ValueError("--styleflow-data brings its own latents and labels; drop --generator / --estimator")
        return flow.styleflow_spec(args.styleflow_data)
    return flow.generator_spec(args.generator or default_generator_path(),
                               args.estimator or default_estimator_path(), n=args.n, seed=args.data_seed,
                               truncation_psi=args.psi)


def run_train_flow(args: argparse.Namespace) -> int:
    """``train flow``: train (or resume) a flow on the data cached in the run folder or made now."""
    device = resolve_device(args.device)
    log = opts.logger(args)
    out = Path(args.out)
    given = opts.given_fields(args, FLOW)

    def steps(train_n: int, batch: int) -> int | None:
        return args.steps if args.epochs is None else max(1, math.ceil(args.epochs * (train_n // batch)))

    def data(spec: dict | None) -> tuple[dict, dict]:
        return flow.prepare_data(out, spec, log=log, device=device, progress=not args.quiet)

    def resumed(state: dict, *, overrides: dict, **kwargs) -> flow.FlowTrainer:
        rows, spec = data(json.loads(state["data"]["spec"]))
        length = steps(state["data"]["train_n"], state["config"]["batch_size"])
        return flow.FlowTrainer.from_state(state, data=rows, data_spec=spec, overrides={**overrides, "steps": length},
                                           **kwargs)

    def fresh(**kwargs) -> flow.FlowTrainer:
        rows, spec = data(_data_spec(args))
        n, _, w_dim = rows["w"].shape
        val_n = given.get("val_n", max(1, round(0.05 * n)))
        length = steps(n - val_n, given.get("batch_size", flow.FlowTrainConfig.batch_size))
        cfg = flow.FlowTrainConfig(**{**given, "val_n": val_n, "steps": length or flow.FlowTrainConfig.steps})
        flow_cfg = FlowConfig(input_dim=w_dim, hidden_dims=args.hidden or flow.default_hidden_dims(w_dim),
                              cond_dim=rows["cond"].shape[1], num_blocks=args.blocks,
                              batch_norm=not args.no_batch_norm, solver=args.solver, atol=args.atol, rtol=args.rtol,
                              step_size=args.step_size, adjoint=args.adjoint)
        return flow.FlowTrainer(cfg, flow_cfg, rows, data_spec=spec, **kwargs)

    trainer = opts.start_trainer(args, flow.FlowTrainer, given=given, fresh=fresh, resumed=resumed, log=log,
                                 device=device)
    return opts.run_trainer(args, trainer, log=log)


def run_release_flow(args: argparse.Namespace) -> int:
    """``train release-flow FLOW``: write ``flow.pt`` and ``flow.json`` beside ``--out``'s generator."""
    m = release_flow(args.flow, args.out, runs=args.runs, command_line=command_line())
    e = m["edit"]
    print(f"released {Path(args.out) / DEFAULT_FLOW} (sha256 {m['sha256'][:12]}...): held-out NLL "
          f"{m['held_out_nll_nats_per_dim']} nats/dim; one edit {e['faithful_ms']['median']} ms faithful, "
          f"{e['fast_ms']['median']} ms fast (max |dw| {e['fast_vs_faithful_max_abs_w']:.2e})", file=sys.stderr)
    return 0


# ---- train encoder / release-encoder --------------------------------------------------------------------------

def add_encoder_commands(sub) -> None:
    d = encoder.EncoderTrainConfig()
    p = sub.add_parser("encoder", help="train an inversion encoder (image -> W+) on a generator's own samples",
                       description=encoder.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    opts.add_run_options(p, d, files="checkpoint.pt, encoder.pt, snapshots/, metrics.csv, eval.csv",
                         seeds="initialisation and sampled latents", device="cpu")
    p.add_argument("--model", metavar="MODEL", help="the generator (any file the engine loads; default: the embedded "
                   "default)")
    arch = p.add_argument_group("architecture")
    arch.add_argument("--resolution", type=int, help="input size (default: the generator's, at most 256)")
    arch.add_argument("--channel-base", type=int, default=2048, help="width rule min(base/res, max) (default 2048)")
    arch.add_argument("--channel-max", type=int, default=128, help="(default 128)")
    arch.add_argument("--head-channels", type=int, default=64, help="channels of the flattened 4x4 map (default 64)")
    arch.add_argument("--hidden", type=int, default=256, help="width of the hidden FC layer (default 256)")
    opts.add_config_options(p.add_argument_group("recipe"), d, ENCODER)
    p.set_defaults(func=run_train_encoder)

    p = opts.add_release_command(sub, "release-encoder", help="release a trained encoder as the embedded default's "
                            "encoder", description=release_encoder.__doc__, source="source",
                            source_help="RUN/encoder.pt, RUN/snapshots/encoder-KKKKKKkimg.pt or RUN/checkpoint.pt",
                            func=run_release_encoder,
                            out_help="the assets folder holding generator.pt (default: this checkout's)")
    p.add_argument("--eval-n", type=int, default=1024, help="held-out samples for the manifest (default 1024)")
    p.add_argument("--runs", type=int, default=50, help="timed single-image encodings (default 50)")
    p.add_argument("--float32", action="store_true", help="store the weights in float32 (default float16: half the "
                   "file, the same figures)")


def run_train_encoder(args: argparse.Namespace) -> int:
    """``train encoder``: train (or resume) an encoder for ``--model`` (or the checkpoint's generator)."""
    device = resolve_device(args.device)
    log = opts.logger(args)
    given = opts.given_fields(args, ENCODER)

    def resumed(state: dict, *, overrides: dict, **kwargs) -> encoder.EncoderTrainer:
        model = args.model or state["generator"].get("path")
        if not model:
            raise ValueError("the training checkpoint does not name its generator: pass --model")
        return encoder.EncoderTrainer.from_state(state, G=load_generator(model), generator_path=str(model),
                                                 overrides=overrides, **kwargs)

    def fresh(**kwargs) -> encoder.EncoderTrainer:
        model = args.model or default_generator_path()
        G = load_generator(model)
        enc_cfg = EncoderConfig.for_generator(G.cfg, resolution=args.resolution, channel_base=args.channel_base,
                                              channel_max=args.channel_max, head_channels=args.head_channels,
                                              hidden=args.hidden)
        return encoder.EncoderTrainer(encoder.EncoderTrainConfig(**given), enc_cfg, G, generator_path=str(model),
                                      **kwargs)

    trainer = opts.start_trainer(args, encoder.EncoderTrainer, given=given, fresh=fresh, resumed=resumed, log=log,
                                 device=device)
    return opts.run_trainer(args, trainer, log=log)


def run_release_encoder(args: argparse.Namespace) -> int:
    """``train release-encoder SOURCE``: write ``encoder.pt`` and ``encoder.json`` beside ``--out``'s generator."""
    m = release_encoder(args.source, args.out, eval_n=args.eval_n, runs=args.runs, half=not args.float32,
                        command_line=command_line())
    h = m["held_out"]
    print(f"released {Path(args.out) / DEFAULT_ENCODER} (sha256 {m['sha256'][:12]}..., {m['kimg']:g} kimg): held-out "
          f"PSNR {h['encoder']['psnr_db']:.2f} dB (w_avg {h['baseline_w_avg']['psnr_db']:.2f}), latent distance "
          f"{h['encoder']['latent_l2']:.3f} (w_avg {h['baseline_w_avg']['latent_l2']:.3f}); "
          f"{m['inference_ms']['median']} ms per image on one thread", file=sys.stderr)
    return 0


def add_latent_commands(sub) -> None:
    """Register the flow and encoder trainers and their releases on the ``train`` subcommand set."""
    add_flow_commands(sub)
    add_encoder_commands(sub)
    add_directions_command(sub)


__all__ = ["add_latent_commands", "run_train_flow", "run_train_encoder", "run_release_flow", "run_release_encoder"]
