"""``python main.py train directions``: measure a generator's edit directions with the attribute estimator
(``engine.train.directions``) and write the direction file and its manifest.

The file goes to ``--out`` (default: ``<model>.directions.pt`` beside the model, where the editor finds it; for the
embedded default, ``assets/directions.pt``), the manifest (command, hardware, time, the per-entry rows, gains and
entanglement) beside it as ``.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from engine.assets import ASSETS_DIR, DEFAULT_DIRECTIONS, default_estimator_path, default_generator_path
from engine.files.directions import save_directions
from engine.files.loading import load_generator
from engine.files.paths import command_line
from engine.files.storage import file_sha256, write_text_atomic
from engine.jobs.directions import SIDECAR_SUFFIX
from engine.models.estimator import load_estimator
from engine.train.directions import calibrate_directions
from engine.train.release.manifest import file_facts, hardware


def add_directions_command(sub) -> None:
    p = sub.add_parser("directions", help="measure a generator's attribute and lighting edit directions",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="the generator (default: the embedded default)")
    p.add_argument("--out", default=None, help="the direction file to write")
    p.add_argument("--n-fit", type=int, default=6000, help="labelled latents the directions are fitted on")
    p.add_argument("--n-probe", type=int, default=64, help="faces each candidate range of rows is tried on")
    p.add_argument("--seed", type=int, default=0, help="draws the fitting latents (seed + 1: the probe faces)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.set_defaults(func=run_train_directions)


def run_train_directions(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n_fit < 1 or args.n_probe < 1 or args.batch < 1:
        print("error: --n-fit, --n-probe and --batch must be at least 1", file=sys.stderr)
        return 2
    model = Path(args.model) if args.model else default_generator_path()
    out = Path(args.out) if args.out else (ASSETS_DIR / DEFAULT_DIRECTIONS if args.model is None
                                           else model.with_name(model.stem + SIDECAR_SUFFIX))
    G = load_generator(model)
    estimator = load_estimator(default_estimator_path()).eval()
    t0 = time.perf_counter()
    shown: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if shown.get(stage) != total and done == total:
            shown[stage] = total
            print(f"{stage}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    directions, report = calibrate_directions(G, estimator, n_fit=args.n_fit, n_probe=args.n_probe, seed=args.seed,
                                              batch=args.batch, progress=progress)
    seconds = time.perf_counter() - t0
    g_sha, e_sha = file_sha256(model), file_sha256(default_estimator_path())
    save_directions(out, directions, generator_sha256=g_sha, estimator_sha256=e_sha,
                    extras={"command": command_line()})
    manifest = {**file_facts(out), "format": "face-editor/directions", "generator": model.name,
                "generator_sha256": g_sha, "estimator_sha256": e_sha, "command": command_line(),
                "hardware": hardware(threads=torch.get_num_threads()), "seconds": round(seconds, 1), **report}
    write_text_atomic(out.with_suffix(".json"), json.dumps(manifest, indent=1) + "\n")
    for name, entry in report["entries"].items():
        print(f"{name:>11}: rows {entry['rows']}, gain {entry['gain']:.2f}, entanglement "
              f"{entry['entanglement_sd']:.3f} sd, face/elsewhere {entry['face_vs_elsewhere']:.2f}", file=sys.stderr)
    print(f"wrote {out} and {out.with_suffix('.json').name} in {seconds:.0f} s", file=sys.stderr)
    return 0


__all__ = ["add_directions_command", "run_train_directions"]
