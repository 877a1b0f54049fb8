"""``python main.py invert PHOTO``: the editor's photo round trip without the window.

Reads the photo, finds its faces, aligns one (or a given box), inverts it into the generator (encoder guess, then
the optimiser) and writes the aligned face, the reconstruction, the face pasted back into the photo, the W+ latent
and a project that opens the result in the editor. The face choice and the inversion options are shared with
``edit --photo`` and ``translate --method layer-swap`` (``add_face_arguments``, ``add_inversion_arguments``,
``invert_photo``).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from pathlib import Path

import numpy as np

from engine.algorithms.pivotal import TuneSettings
from engine.algorithms.projection import InversionSettings
from engine.cli.common import UserError, add_compute, add_model, command_parser, model_ref, say, start
from engine.files.images import save_png
from engine.jobs.photo import (
    PHOTO_SECONDS,
    PHOTO_STEPS,
    TUNINGS,
    InversionOutcome,
    InvertJob,
    PasteJob,
    PhotoScan,
    ScanJob,
    TuneJob,
    tuning_after,
)
from engine.photos.align import AlignTransform, box_transform, face_transform, whole_image_transform
from engine.photos.read import Photo
from engine.project import EditState, save_project

log = logging.getLogger(__name__)

METHODS = {"encoder+optimiser": (True, True), "optimiser": (False, True), "encoder": (True, False)}

DESCRIPTION = ("Find the face in a photo (or take a box, or the whole image), align it the way the model's training "
               "faces were and invert it into the generator: the encoder's guess, then the optimiser, then (by "
               "default, --tune quick) the generator tuned around the found latent until the whole inversion has "
               f"taken {PHOTO_SECONDS:g} s. Writes the "
               "aligned face, the reconstruction, the face pasted back into the photo, the W+ latent (.npy) and a "
               "project (.fproj) that opens the result in the editor.")

EXAMPLES = """
python main.py invert photo.jpg --out out/
python main.py invert group.jpg --face 1 --steps 200 --out out/
python main.py invert face.png --whole --inversion encoder --out out/
python main.py invert photo.jpg --tune person --out out/
python main.py invert photo.jpg --tune off --steps 400 --out out/
python main.py invert photo.jpg --model ffhq.pkl --lpips vgg16-397923af.pth --out out/
"""


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box wants x0,y0,x1,y1 in photo pixels, got {text!r}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1 - x0, y1 - y0)) or x1 <= x0 or y1 <= y0:
        raise argparse.ArgumentTypeError(f"--box wants x0,y0,x1,y1 in photo pixels with x1 > x0 and y1 > y0, a box of "
                                         f"finite size, got {text!r}")
    return x0, y0, x1, y1


def add_face_arguments(p: argparse.ArgumentParser) -> None:
    """Which face of the photo: ``--face N`` (detected, best first), ``--box`` or ``--whole``."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--face", type=int, default=0, help="which detected face, best first (default 0)")
    where.add_argument("--box", type=_box, help="a square crop box x0,y0,x1,y1 in photo pixels instead")
    where.add_argument("--whole", action="store_true", help="the centred square of the whole photo instead")


def add_inversion_arguments(p: argparse.ArgumentParser, *, seed: str = "--seed",
                            steps: int = InversionSettings().steps) -> None:
    """``--inversion`` (also ``--method`` where a command has no other method), ``--steps`` (default ``steps``),
    the optimiser's seed (``seed`` names the option) and ``--lpips``."""
    names = ("--inversion",) if seed != "--seed" else ("--method", "--inversion")
    p.add_argument(*names, dest="inversion", choices=list(METHODS), default="encoder+optimiser",
                   help="encoder guess, optimiser, or both (default; the encoder is used when one fits the model)")
    p.add_argument("--steps", type=int, default=steps, help=f"optimiser steps (default {steps})")
    p.add_argument(seed, dest="inversion_seed", type=int, default=0,
                   help="seed of the optimiser's starting noise maps (default 0)")
    p.add_argument("--lpips", metavar="VGG16_PTH", help="use LPIPS-VGG as the loss (torchvision's VGG16 weights, "
                                                        "lpips' vgg.pth beside them)")


def chosen_transform(photo: Photo, faces, args, *, size: int, recipe: str, name: str) -> AlignTransform:
    """The alignment ``--face`` / ``--box`` / ``--whole`` asks for, cutting ``size`` px squares by ``recipe``."""
    if args.box is not None:
        return box_transform(args.box, size=size)
    if args.whole:
        return whole_image_transform(*photo.size, size=size)
    if not faces:
        raise UserError(f"no face found in {name}: give --box x0,y0,x1,y1 or --whole")
    if not 0 <= args.face < len(faces):
        raise UserError(f"--face {args.face}: the photo has {len(faces)} face(s), numbered from 0")
    return face_transform(faces[args.face], size=size, recipe=recipe)


def inversion_settings(args) -> InversionSettings:
    if args.steps < 0:
        raise UserError("--steps must be at least 0")
    extra = dict(loss="lpips", lpips_path=args.lpips) if args.lpips else {}
    return dataclasses.replace(InversionSettings(), steps=args.steps, seed=args.inversion_seed, **extra)


def invert_photo(ctx, bar, state: EditState, args, *, until: float) -> tuple[PhotoScan, InversionOutcome]:
    """Find the faces of ``args.photo``, align the chosen one and invert it into ``state.model`` (the jobs the
    editor's photo panel runs); the bar fills up to ``until``."""
    name = Path(args.photo).name
    scan = bar.run(ScanJob(str(args.photo), state), ctx, until=0.02 * until)
    transform = chosen_transform(scan.photo, scan.faces, args, size=scan.size, recipe=scan.recipe, name=name)
    use_encoder, optimise = METHODS[args.inversion]
    job = InvertJob(state, str(args.photo), transform, inversion_settings(args), use_encoder=use_encoder,
                    optimise=optimise)
    return scan, bar.run(job, ctx, until=until)


def cmd_invert(args) -> int:
    if args.keep_person_steps < 0 or not args.keep_person_seconds > 0:
        raise UserError("--keep-person-steps must be at least 0 and --keep-person-seconds more than 0")
    ctx, bar = start(args, "invert")
    state = EditState(model=model_ref(args.model))
    tune = "person" if args.keep_person else args.tune
    scan, out = invert_photo(ctx, bar, state, args, until=0.6 if tune != "off" else 0.95)
    tuned = None
    settings = tuning_after(out, tune, person=TuneSettings(steps=args.keep_person_steps,
                                                           seconds=args.keep_person_seconds))
    if settings is not None:
        tuned = bar.run(TuneJob(out.state, settings=settings, folder=str(Path(args.out) / "tunings")), ctx,
                        until=0.95)
        out = dataclasses.replace(out, state=tuned.state, image=tuned.image, psnr=tuned.psnr, ssim=tuned.ssim)
    pasted = bar.run(PasteJob(out.state), ctx)
    bar.close()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(args.photo).stem
    summary = {"photo": Path(args.photo).name, "photo_sha256": out.state.photo.sha256,
               "faces_found": len(scan.faces), "recipe": scan.recipe,
               "psnr": round(out.psnr, 3), "ssim": round(out.ssim, 4), "steps": out.steps,
               "encoder": out.encoder, "seconds": round(out.seconds, 2), "settings": inversion_settings(args).to_dict()}
    if tuned is not None:
        summary["keep_person"] = {"mode": tune, "psnr_before": round(tuned.start_psnr, 3), "steps": tuned.steps,
                                  "seconds": round(tuned.seconds, 2), "file": Path(tuned.state.tuning.path).name,
                                  "bytes": tuned.bytes}
    save_png(folder / f"{stem}-aligned.png", out.aligned)
    save_png(folder / f"{stem}-inverted.png", out.image, parameters=summary)
    save_png(folder / f"{stem}-pasted.png", pasted.pasted, parameters=summary)
    np.save(folder / f"{stem}-latent.npy", out.state.base.array())  # W+ [num_ws, w_dim]
    save_project(folder / f"{stem}.fproj", out.state, extras={"inversion": summary})
    say(args, f"{Path(args.photo).name}: {len(scan.faces)} face(s) found; inverted in {out.seconds:.1f} s "
              f"({out.steps} steps{', from the encoder' if out.encoder else ''}): PSNR {out.psnr:.2f} dB, "
              f"SSIM {out.ssim:.4f}"
              + (f" after keeping the person ({tuned.steps} tuning steps in {tuned.seconds:.1f} s, from "
                 f"{tuned.start_psnr:.2f} dB; tunings/{Path(tuned.state.tuning.path).name})" if tuned else "")
              + f". Wrote {stem}-aligned/-inverted/-pasted.png, {stem}-latent.npy and "
              f"{stem}.fproj (open it in the editor) to {folder}")
    return 0


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    p = command_parser(sub, "invert", help=help, examples=EXAMPLES, description=DESCRIPTION)
    p.add_argument("photo", help="photo file (JPEG, PNG, WebP, BMP, TIFF)")
    add_model(p)
    p.add_argument("--out", required=True, metavar="FOLDER", help="output folder")
    add_face_arguments(p)
    add_inversion_arguments(p, steps=PHOTO_STEPS)
    p.add_argument("--tune", choices=TUNINGS, default="quick",
                   help="after the fit, tune the generator around the found latent so that it renders this photo "
                        f"more faithfully (pivotal tuning): quick (default) until the inversion has taken "
                        f"{PHOTO_SECONDS:g} s in all, person for --keep-person-steps / --keep-person-seconds, off "
                        "not at all; the weight differences go to FOLDER/tunings/ and the project names them")
    p.add_argument("--keep-person", action="store_true", help="the same as --tune person")
    p.add_argument("--keep-person-steps", type=int, default=TuneSettings().steps, metavar="N",
                   help=f"--tune person: tuning steps at most (default {TuneSettings().steps})")
    p.add_argument("--keep-person-seconds", type=float, default=TuneSettings().seconds, metavar="S",
                   help=f"--tune person: tuning time limit in seconds (default {TuneSettings().seconds:g})")
    add_compute(p)
    p.set_defaults(func=cmd_invert)
