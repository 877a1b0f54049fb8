"""``python main.py translate PHOTO --method layer-swap|bicyclegan|tunit``: a photo (or every photo of a folder)
through the paths of the Translate panel and the compare-methods window, with the editor's jobs.

- ``layer-swap``: the face is found, aligned and inverted into the face's model (``--model``), then rendered by the
  fine-tuned ``--target`` above the swap depth: with the face's own appearance, or ``--n`` appearances sampled from
  ``--seed`` on (``StyleGridJob``). A project beside the image reopens it in the editor.
- ``bicyclegan`` / ``tunit``: the face is found and aligned for the image-to-image model (``--whole``: the image
  as it is, cut to its centre square), and translated with ``--n`` codes from ``--seed`` on (BicycleGAN) or a
  cluster's style (TUNIT, ``--cluster``); ``--reference`` adds the sample of a reference image (``I2IExportJob``).

A folder runs the Translate panel's and the compare window's folder jobs (``TranslateFolderJob``,
``I2IFolderJob``): every photo's best face, photos without one listed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.common import UserError, add_compute, add_model, command_parser, model_ref, say, start
from engine.cli.edit import add_translation_arguments, document_model, open_model, translation_for
from engine.cli.invert import (
    METHODS,
    add_face_arguments,
    add_inversion_arguments,
    chosen_transform,
    inversion_settings,
    invert_photo,
)
from engine.files.paths import file_name
from engine.jobs.export import save_image
from engine.jobs.i2i import I2IExportJob, I2IFolderJob, I2IInput, I2IRequest, cached_i2i, pin, shipped_i2i
from engine.jobs.photo import cached_photo
from engine.jobs.render import RenderJob
from engine.jobs.translate import StyleGridJob, TranslateFolderJob, shipped_targets, with_style
from engine.photos.faces import detect_faces
from engine.project import EditState, PhotoRef, Source, save_project

TRANSLATORS = ("layer-swap", "bicyclegan", "tunit")
I2I_SAMPLES = 4  # the compare window's default N

DESCRIPTION = """Translate a photo, or every photo of a folder, as the Translate panel and the compare-methods
window do.

layer-swap: the face is found, aligned and inverted into the face's model (--model), then drawn by the fine-tuned
--target above the swap depth, with the face's own appearance or --n appearances sampled from --seed on; a project
beside the image reopens it in the editor.

bicyclegan, tunit: the face is found and aligned for the model (--whole: the image as it is, cut to its centre
square) and translated with --n codes from --seed on (BicycleGAN) or each cluster's style (TUNIT, --cluster);
--reference adds the sample a reference image gives.

A folder: every photo's best face is translated; photos without a face are listed."""

EXAMPLES = """
python main.py translate photo.jpg --method layer-swap --target toon --out out/
python main.py translate photo.jpg --method layer-swap --target sketch --depth 8 --n 4 --seed 10 --out out/
python main.py translate photo.jpg --method bicyclegan --n 4 --seed 2 --out out/
python main.py translate drawing.png --method bicyclegan --whole --no-lines --out out/
python main.py translate photo.jpg --method tunit --cluster 0 --cluster 1 --out out/
python main.py translate photo.jpg --method tunit --reference style.jpg --out out/
python main.py translate photos/ --method layer-swap --target toon --steps 100 --out toons/
"""


def _layer_swap(args, photo: Path, out: Path) -> str:
    if args.cluster or args.reference or args.lines is not None:
        raise UserError("--cluster, --reference and --lines belong to bicyclegan and tunit, not to the layer swap")
    if args.target is None:
        targets = shipped_targets()
        if not targets:
            raise UserError("no fine-tuned target is shipped: give --target MODEL_FILE")
        args.target = targets[0].domain  # the compare window's first target
    ctx, bar = start(args, "translate")
    summary = open_model(ctx, bar, model_ref(args.model), until=0.05)
    face = EditState(model=document_model(summary))
    if photo.is_dir():
        if args.n is not None and args.n > 1:
            raise UserError("a folder gets one appearance per photo: give --n 1 --seed S, or leave --n out")
        style = None if args.n is None else Source(seed=args.seed)
        tr = translation_for(ctx, bar, summary, args.target, args, style=style, until=0.1)
        use_encoder, optimise = METHODS[args.inversion]
        job = TranslateFolderJob(face.replace(translation=tr), str(photo), str(out), inversion_settings(args),
                                 use_encoder=use_encoder, optimise=optimise)
        return _folder_summary(bar.run(job, ctx), bar, out)
    _, outcome = invert_photo(ctx, bar, face, args, until=0.85)
    state = outcome.state.replace(translation=translation_for(ctx, bar, summary, args.target, args, until=0.87))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{photo.stem}-layer-swap"
    written = [save_project(out / f"{stem}.fproj", state)]
    if args.n is None:
        written.append(save_image(out / f"{stem}.png", bar.run(RenderJob(state), ctx).image, state=state))
    else:
        grid = bar.run(StyleGridJob(state, seed=args.seed, n=args.n), ctx)
        for seed, image in zip(grid.seeds, grid.images):
            written.append(save_image(out / f"{stem}-style{seed:05d}.png", image,
                                      state=with_style(state, Source(seed=seed))))
    bar.close()
    return (f"{photo.name}: inverted (PSNR {outcome.psnr:.2f} dB) and translated into "
            f"{state.translation.target.label()} at depth {state.translation.depth} px: wrote "
            f"{', '.join(file_name(str(p)) for p in written)} to {out}")


def _i2i_request(args, ctx, bar, source: I2IInput):
    """The model (``--model`` or the embedded one of ``--method``), checked, and the request for its samples."""
    if args.model:
        ref = pin(model_ref(args.model))
    else:
        shipped = {m.method: m.ref for m in shipped_i2i()}
        if args.method not in shipped:
            raise UserError(f"no {args.method} model is shipped: give --model FILE")
        ref = shipped[args.method]
    model = bar.run(lambda c: cached_i2i(c, ref), ctx, until=0.3)
    if model.method != args.method:
        raise UserError(f"{file_name(ref.path)} is a {model.method} model, not {args.method}: use --method "
                        f"{model.method}")
    clusters = None
    if args.cluster:
        if model.method != "tunit":
            raise UserError("--cluster picks a TUNIT cluster's style: BicycleGAN samples codes (--n, --seed)")
        missing = [k for k in args.cluster if k not in model.styles]
        if missing:
            raise UserError(f"--cluster {missing[0]}: {model.label} has styles for clusters "
                            f"{', '.join(map(str, sorted(model.styles))) or 'none (use --reference)'}")
        clusters = tuple(args.cluster)
    elif args.reference and model.method == "tunit":
        clusters = ()  # the reference's style only
    if args.reference and not Path(args.reference).is_file():
        raise UserError(f"--reference {args.reference}: no such file")
    n = args.n if args.n is not None else (0 if args.reference else I2I_SAMPLES)
    reference = str(Path(args.reference).resolve()) if args.reference else None
    return model, I2IRequest(ref, source, lines=args.lines, n=n, seed=args.seed, clusters=clusters,
                             reference=reference)


def _i2i(args, photo: Path, out: Path) -> str:
    ctx, bar = start(args, "translate")
    if photo.is_dir():
        model, request = _i2i_request(args, ctx, bar, I2IInput())
        return _folder_summary(bar.run(I2IFolderJob(request, str(photo), str(out), align=not args.whole), ctx),
                               bar, out)
    if args.whole:  # the compare window's image-file input: the image as it is, cut to its centre square
        model, request = _i2i_request(args, ctx, bar, I2IInput("file", str(photo.resolve())))
        state = EditState()
    else:  # the face found and aligned for the model, as its folder job does for every photo
        model, request = _i2i_request(args, ctx, bar, I2IInput("photo"))
        pixels = cached_photo(ctx, str(photo))
        faces = detect_faces(pixels.pixels) if args.box is None else []
        transform = chosen_transform(pixels, faces, args, size=model.size, recipe=model.recipe, name=photo.name)
        state = EditState(photo=PhotoRef(str(photo.resolve()), pixels.sha256, transform.quad, transform.size))
    written = bar.run(I2IExportJob(state, request, str(out), prefix=f"{photo.stem}-"), ctx)
    bar.close()
    return f"{photo.name}: {model.label} wrote {', '.join(file_name(p) for p in written)} to {out}"


def _folder_summary(summary, bar, out: Path) -> str:
    bar.close()
    text = f"wrote {len(summary.written)} image(s) to {out} in {summary.seconds:.1f} s"
    if summary.no_face:
        text += f"; no face in {', '.join(summary.no_face)}"
    if summary.failed:
        text += "; could not read " + ", ".join(f"{name} ({why})" for name, why in summary.failed)
    return text


def cmd_translate(args) -> int:
    photo = Path(args.photo)
    if not photo.exists():
        raise UserError(f"{args.photo}: no such photo or folder")
    if args.n is not None and args.n < 1:
        raise UserError("--n must be at least 1")
    out = Path(args.out)
    say(args, (_layer_swap if args.method == "layer-swap" else _i2i)(args, photo, out))
    return 0


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    p = command_parser(sub, "translate", help=help, description=DESCRIPTION, examples=EXAMPLES)
    p.add_argument("photo", metavar="PHOTO", help="a photo or face image (JPEG, PNG, WebP, BMP, TIFF), or a folder "
                                                  "of them")
    p.add_argument("--method", choices=TRANSLATORS, required=True, help="how to translate")
    add_model(p, "layer-swap: the face's generator; bicyclegan / tunit: the model file (or its folder)")
    p.add_argument("--out", required=True, metavar="FOLDER", help="output folder")
    p.add_argument("--n", type=int, help=f"samples: layer-swap appearances (default: the face's own), BicycleGAN "
                                         f"codes (default {I2I_SAMPLES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample; sample i uses seed + i (default 0)")
    p.add_argument("--reference", metavar="IMAGE", help="bicyclegan / tunit: also the sample whose code or style a "
                                                        "reference image gives")
    face = p.add_argument_group("which face (--whole: the whole image)")
    add_face_arguments(face)
    swap = p.add_argument_group("layer-swap")
    add_translation_arguments(swap, "--target")
    add_inversion_arguments(swap, seed="--inversion-seed")
    i2i = p.add_argument_group("bicyclegan / tunit")
    i2i.add_argument("--lines", action=argparse.BooleanOptionalAction, default=None,
                     help="turn the input into a line drawing first (default: when the model translates from line "
                          "drawings, as the embedded BicycleGAN does)")
    i2i.add_argument("--cluster", type=int, action="append", default=[], metavar="K",
                     help="tunit: this cluster's style (repeat for more; default: every cluster)")
    add_compute(p)
    p.set_defaults(func=cmd_translate)
