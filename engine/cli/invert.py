"""``python main.py invert PHOTO``: the editor's photo round trip without the window.

Reads the photo, finds its faces, aligns one (or a given box), inverts it into the generator (encoder guess, then
the optimiser) and writes the aligned face, the reconstruction, the face pasted back into the photo, the W+ latent
and a project that opens the result in the editor.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from engine.algorithms.projection import InversionSettings
from engine.cli.common import UserError, setup_compute
from engine.files.images import save_png
from engine.jobs.photo import InvertJob, PasteJob, ScanJob
from engine.photos.align import box_transform, face_transform, whole_image_transform
from engine.project import EditState, ModelRef, save_project
from engine.worker import InlineContext

METHODS = {"encoder+optimiser": (True, True), "optimiser": (False, True), "encoder": (True, False)}


class _Bar:
    """A tqdm bar fed by the job's progress reports and partial results."""

    def __init__(self, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=1000, desc="invert", file=sys.stderr, disable=quiet,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")

    def progress(self, fraction: float, _message: str) -> None:
        self.bar.n = round(1000 * fraction)
        self.bar.refresh()

    def partial(self, step) -> None:
        self.bar.set_description_str(f"invert · step {step.step}/{step.total} · PSNR {step.psnr:.1f} dB")


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box wants x0,y0,x1,y1 in photo pixels, got {text!r}") from None
    return x0, y0, x1, y1


def cmd_invert(args) -> int:
    device = setup_compute(args)
    model = ModelRef(path=str(Path(args.model).resolve())) if args.model else ModelRef()
    state = EditState(model=model)
    bar = _Bar(args.quiet)
    ctx = InlineContext(device=device, on_progress=bar.progress, on_partial=bar.partial)
    scan = ScanJob(str(args.photo), state)(ctx)
    if args.box is not None:
        transform = box_transform(args.box, size=scan.size)
    elif args.whole:
        h, w = scan.photo.pixels.shape[:2]
        transform = whole_image_transform(w, h, size=scan.size)
    else:
        if not scan.faces:
            raise UserError(f"no face found in {Path(args.photo).name}: give --box x0,y0,x1,y1 or --whole")
        if not 0 <= args.face < len(scan.faces):
            raise UserError(f"--face {args.face}: the photo has {len(scan.faces)} face(s), numbered from 0")
        transform = face_transform(scan.faces[args.face], size=scan.size, recipe=scan.recipe)
    use_encoder, optimise = METHODS[args.method]
    extra = dict(loss="lpips", lpips_path=args.lpips) if args.lpips else {}
    settings = dataclasses.replace(InversionSettings(), steps=args.steps, seed=args.seed, **extra)
    out = InvertJob(state, str(args.photo), transform, settings, use_encoder=use_encoder, optimise=optimise)(ctx)
    bar.bar.close()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(args.photo).stem
    summary = {"photo": Path(args.photo).name, "photo_sha256": out.state.photo.sha256,
               "faces_found": len(scan.faces), "recipe": scan.recipe,
               "psnr": round(out.psnr, 3), "ssim": round(out.ssim, 4), "steps": out.steps,
               "encoder": out.encoder, "seconds": round(out.seconds, 2), "settings": settings.to_dict()}
    save_png(folder / f"{stem}-aligned.png", out.aligned)
    save_png(folder / f"{stem}-inverted.png", out.image, parameters=summary)
    save_png(folder / f"{stem}-pasted.png", PasteJob(out.state)(ctx).pasted, parameters=summary)
    np.save(folder / f"{stem}-latent.npy", out.state.base.array())  # W+ [num_ws, w_dim]
    save_project(folder / f"{stem}.fproj", out.state, extras={"inversion": summary})
    if not args.quiet:
        print(f"{Path(args.photo).name}: {len(scan.faces)} face(s) found; inverted in {out.seconds:.1f} s "
              f"({out.steps} steps{', from the encoder' if out.encoder else ''}): PSNR {out.psnr:.2f} dB, "
              f"SSIM {out.ssim:.4f}. Wrote {stem}-aligned/-inverted/-pasted.png, {stem}-latent.npy and "
              f"{stem}.fproj (open it in the editor) to {folder}")
    return 0


def add_photo_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="find the face in a photo and invert it into a generator (writes the "
                                      "reconstruction, the pasted-back photo, the latent and a project)")
    p.add_argument("photo", help="photo file (JPEG, PNG, WebP, BMP, TIFF)")
    p.add_argument("--model", help="generator file; default: the embedded default model")
    p.add_argument("--out", required=True, help="output folder")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--face", type=int, default=0, help="which detected face, best first (default 0)")
    where.add_argument("--box", type=_box, help="a square crop box x0,y0,x1,y1 in photo pixels instead")
    where.add_argument("--whole", action="store_true", help="the centred square of the whole photo instead")
    p.add_argument("--method", choices=list(METHODS), default="encoder+optimiser",
                   help="encoder guess, optimiser, or both (default; the encoder is used when one fits the model)")
    p.add_argument("--steps", type=int, default=InversionSettings().steps, help="optimiser steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the optimiser's starting noise maps")
    p.add_argument("--lpips", metavar="VGG16_PTH", help="use LPIPS-VGG as the loss (torchvision's VGG16 weights, "
                                                        "lpips' vgg.pth beside them)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's; use fewer on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_invert)
