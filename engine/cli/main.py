"""Headless command line: ``generate`` images from seeds and ``info`` about a model file.

User mistakes end with one clear line on stderr and exit status 2; nothing prints a traceback for them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from engine.algorithms.flow_layout import FLOW_LAYOUT_HELP
from engine.algorithms.latents import make_noise, parse_seeds, seed_to_z
from engine.cli.common import UserError, end_progress_bars, setup_compute
from engine.errors import ErrorReport, ModelFormatError
from engine.files.images import save_png, to_uint8
from engine.files.loading import inspect_model, load_generator
from engine.files.paths import names_only
from engine.logs import log_path, setup_logging
from engine.models.stylegan2 import NOISE_MODES
from engine.runtime import tune_allocator

log = logging.getLogger(__name__)


def _default_model() -> Path:
    from engine import assets

    return assets.default_generator_path()


def cmd_generate(args) -> int:
    seeds = parse_seeds(args.seeds)
    if args.batch < 1:
        raise UserError("--batch must be at least 1")
    device = setup_compute(args)
    model_path = Path(args.model) if args.model else _default_model()
    G = load_generator(model_path).to(device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = {"model": str(model_path), "model_sha256": G.model_info.sha256, "truncation_psi": args.trunc,
              "truncation_cutoff": args.trunc_cutoff, "noise_mode": args.noise_mode, "noise_seed": args.noise_seed}
    noise = None
    if args.noise_mode == "random":
        noise = [n.to(device) for n in make_noise(G.cfg.noise_resolutions, seed=args.noise_seed)]
    from tqdm import tqdm

    start = time.perf_counter()
    with torch.inference_mode(), tqdm(total=len(seeds), unit="img", desc="generate", file=sys.stderr,
                                      disable=args.quiet) as bar:
        for i in range(0, len(seeds), args.batch):
            chunk = seeds[i:i + args.batch]
            z = torch.cat([seed_to_z(s, G.z_dim) for s in chunk]).to(device)
            ws = G.mapping(z, truncation_psi=args.trunc, truncation_cutoff=args.trunc_cutoff)
            img = G.synthesis(ws, noise_mode=args.noise_mode if noise is None else "const", noise=noise)
            for seed, arr, w in zip(chunk, to_uint8(img), ws.cpu().numpy()):
                stem = out / f"seed{seed:04d}"
                save_png(stem.with_suffix(".png"), arr, parameters=dict(params, seed=seed))
                np.save(stem.with_suffix(".npy"), w.astype(np.float32))  # W+ [num_ws, w_dim]
            bar.update(len(chunk))
    (out / "generate.json").write_text(json.dumps(names_only(dict(params, seeds=seeds)), indent=2))
    if not args.quiet:
        print(f"wrote {len(seeds)} images and their W+ latents to {out} in "
              f"{time.perf_counter() - start:.1f} s on {device}")
    return 0


def cmd_info(args) -> int:
    from engine.cli.info import flow_file_info, flow_info_lines

    try:
        info = inspect_model(args.model)
    except ModelFormatError:
        flow = flow_file_info(args.model, layout_text=args.flow_layout)
        if flow is None:
            raise
        print(json.dumps(flow, indent=2) if args.json else "\n".join(flow_info_lines(flow)))
        return 0
    if args.flow_layout:
        raise UserError("--flow-layout describes an attribute flow's condition, and this file is a generator")
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    g = info["generator"]
    lines = [
        f"file:          {info['path']}",
        f"sha256:        {info['sha256']}",
        f"format:        {info['description']} [{info['format']}]",
        f"resolution:    {g['img_resolution']} x {g['img_resolution']}, {g['img_channels']} channels",
        f"latents:       z_dim {g['z_dim']}, w_dim {g['w_dim']}, num_ws {info['num_ws']}",
        f"mapping:       {g['mapping_layers']} layers, lr multiplier {g['mapping_lr_mult']}"
        + (f", hidden width {g['mapping_features']}" if g["mapping_features"] else ""),
        "channels:      " + ", ".join(f"{2 ** (i + 2)}:{c}" for i, c in enumerate(g["channels"])),
        f"conv_clamp:    {g['conv_clamp']}   num_fp16_res: {g['num_fp16_res']}   noise: {g['use_noise']}",
        "discriminator: " + ("yes, mbstd group {mbstd_group_size}".format(**info["discriminator"])
                             if info["discriminator"] else "no"),
    ]
    lines += [f"note:          {n}" for n in info["notes"]]
    print("\n".join(lines))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the engine's headless subcommands on a ``main.py`` subparser set."""
    p = sub.add_parser("generate", help="write images (and their W+ latents) for a range of seeds")
    p.add_argument("--model", help="model file (any supported format); default: the embedded default model")
    p.add_argument("--seeds", default="0-7", help="seeds, e.g. '0-7' or '1,5,9' (default 0-7)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1.0 = none)")
    p.add_argument("--trunc-cutoff", type=int, default=None, help="truncate only the first N W+ rows")
    p.add_argument("--noise-mode", choices=NOISE_MODES, default="const", help="per-layer noise (default const)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the noise maps in 'random' mode")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_generate)

    from engine.synth import add_synth_arguments, cli_synth

    p = sub.add_parser("synth", help="write a synthetic face dataset (images + labels.json)")
    add_synth_arguments(p)
    p.set_defaults(func=cli_synth)

    from engine.cli.train import add_train_commands
    from engine.train.estimator import add_attributes_arguments, run_train_attributes

    trainers = add_train_commands(sub)
    p = trainers.add_parser("attributes", help="train the attribute estimator on the synthetic face world")
    add_attributes_arguments(p)
    p.set_defaults(func=run_train_attributes)
    from engine.train.domains import add_domains_commands

    add_domains_commands(trainers)
    from engine.train.tunit import add_tunit_commands

    add_tunit_commands(trainers)
    from engine.train.bicyclegan import add_bicyclegan_commands

    add_bicyclegan_commands(trainers)

    from engine.cli.invert import add_photo_commands

    add_photo_commands(sub)

    from engine.cli.translate import add_translate_commands

    add_translate_commands(sub)

    p = sub.add_parser("info", help="print the detected format and architecture of a model file (for an attribute "
                                    "flow: its condition layout)")
    p.add_argument("model", help="model file: a generator or an attribute flow")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--flow-layout", metavar="LAYOUT", help=FLOW_LAYOUT_HELP)
    p.set_defaults(func=cmd_info)


def run(args: argparse.Namespace) -> int:
    """Run a parsed subcommand. User errors become one ``error:`` line on stderr and exit status 2; anything else
    one sentence, exit status 1, with the traceback in the log file (set FACE_EDITOR_DEBUG=1 to see tracebacks
    on the terminal instead)."""
    tune_allocator()
    setup_logging()
    log.info("command: %s", " ".join(sys.argv[1:]) or args.command)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        end_progress_bars()
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        end_progress_bars()
        if os.environ.get("FACE_EDITOR_DEBUG"):
            raise
        report = ErrorReport.from_exception(e)
        user = isinstance(e, UserError | ModelFormatError | ValueError | OSError)  # the input's fault, not ours
        log.log(logging.WARNING if user else logging.ERROR, "%s: %s", "refused" if user else "failed",
                report.message, exc_info=e)
        print(f"error: {report.message}" + ("" if user else f" ({log_path()})"), file=sys.stderr)
        return 2 if user else 1
