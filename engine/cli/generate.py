"""``python main.py generate``: images and their W+ latents for a range of seeds, reproducible from the PNGs'
parameters (seed N gives NVIDIA's ``gen_images.py`` z)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from engine.algorithms.latents import make_noise, parse_seeds, seed_to_z
from engine.assets import default_generator_path
from engine.cli.common import UserError, add_compute, add_model, command_parser, say, setup_compute
from engine.files.images import save_png, to_uint8
from engine.files.loading import read_generator
from engine.files.paths import names_only
from engine.models.precision import chosen_precision, precision_name
from engine.models.stylegan2 import NOISE_MODES

DESCRIPTION = ("Write seedNNNN.png (the parameters in a PNG text chunk) and seedNNNN.npy (the W+ latent, "
               "[num_ws, w_dim]) per seed, and generate.json, with the given truncation and noise.")

EXAMPLES = """
python main.py generate --seeds 0-7 --out out/
python main.py generate --model ffhq.pkl --seeds 1,5,9 --psi 0.7 --batch 4 --out out/
python main.py generate --seeds 0-99 --noise-mode random --noise-seed 3 --device cuda --out out/
"""


def cmd_generate(args) -> int:
    seeds = parse_seeds(args.seeds)
    if args.batch < 1:
        raise UserError("--batch must be at least 1")
    device = setup_compute(args)
    model_path = Path(args.model) if args.model else default_generator_path()
    G = chosen_precision(read_generator(model_path), args.precision, device)
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
    say(args, f"wrote {len(seeds)} images and their W+ latents to {out} in {time.perf_counter() - start:.1f} s on "
              f"{device} in {precision_name(G.precision)}")
    return 0


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    p = command_parser(sub, "generate", help=help, description=DESCRIPTION, examples=EXAMPLES)
    add_model(p)
    p.add_argument("--seeds", default="0-7", help="seeds, e.g. '0-7' or '1,5,9' (default 0-7)")
    p.add_argument("--psi", "--trunc", dest="trunc", type=float, default=1.0,
                   help="truncation psi (default 1.0 = none)")
    p.add_argument("--cutoff", "--trunc-cutoff", dest="trunc_cutoff", type=int, default=None,
                   help="truncate only the first N W+ rows")
    p.add_argument("--noise-mode", choices=NOISE_MODES, default="const", help="per-layer noise (default const)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the noise maps in 'random' mode")
    p.add_argument("--out", required=True, metavar="FOLDER", help="output folder")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1)")
    add_compute(p)
    p.set_defaults(func=cmd_generate)
