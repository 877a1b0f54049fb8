"""``python main.py render PROJECT``: a project's image exactly as the editor shows it (the editor's ``RenderJob``,
or with ``--pasted`` the face pasted back into its photo, ``PasteJob``), optionally resampled to another size."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from engine.cli.common import UserError, add_compute, command_parser, say, start
from engine.files.images import to_pil
from engine.jobs.export import image_format, save_image
from engine.jobs.photo import PasteJob
from engine.jobs.render import RenderJob
from engine.project import read_project

DESCRIPTION = ("Render a project file (.fproj) as the editor shows it: bit for bit at the model's own size. "
               "--size resamples the result (Lanczos up, area average down) and says so in the output and in the "
               "PNG's metadata; --pasted renders the face pasted back into the photo it came from.")

EXAMPLES = """
python main.py render face.fproj                         # -> face.png beside it
python main.py render face.fproj --size 1024 --out face-1024.png
python main.py render photo-edit.fproj --pasted --out photo-edited.jpg
"""


def resample(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """uint8 [H, W, 3] -> [h, w, 3] at ``size`` (w, h): Lanczos when enlarging, the area average when reducing.
    Returns the image and what was done, in words."""
    w, h = image.shape[1], image.shape[0]
    if (w, h) == size:
        return image, "native"
    up = size[0] > w
    out = to_pil(image).resize(size, Image.Resampling.LANCZOS if up else Image.Resampling.BOX)
    return np.asarray(out), "upscaled (Lanczos)" if up else "downscaled (area average)"


def cmd_render(args) -> int:
    state, _ = read_project(args.project)
    out = Path(args.out) if args.out else Path(args.project).with_suffix(".png")
    image_format(out)
    if args.size is not None and args.size < 1:
        raise UserError("--size must be at least 1 px")
    if args.pasted and state.photo is None:
        raise UserError(f"{Path(args.project).name} does not come from a photo: there is nothing to paste into")
    ctx, bar = start(args, "render", delay=1.0)
    image = bar.run(PasteJob(state) if args.pasted else RenderJob(state), ctx)
    image = image.pasted if args.pasted else image.image
    bar.close()
    native = (image.shape[1], image.shape[0])
    size = native
    if args.size is not None:  # the longer side (a face is square; a photo keeps its aspect)
        scale = args.size / max(native)
        size = (max(1, round(native[0] * scale)), max(1, round(native[1] * scale)))
    image, how = resample(image, size)
    extras = {"render": {"native_size": list(native), "size": list(size), "resampled": how}}
    save_image(out, image, state=state, extras=extras)
    note = "" if how == "native" else f", {how} from {native[0]} x {native[1]}"
    where = f", pasted into {state.photo.name}" if args.pasted else ""
    say(args, f"wrote {out} ({size[0]} x {size[1]} px{note}{where})")
    return 0


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    p = command_parser(sub, "render", help=help, description=DESCRIPTION, examples=EXAMPLES)
    p.add_argument("project", metavar="PROJECT", help="a project file (.fproj), as the editor saves it")
    p.add_argument("--out", metavar="IMAGE", help="the image: .png (with the project inside), .jpg or .webp "
                                                  "(default: the project's name with .png)")
    p.add_argument("--size", type=int, metavar="N", help="resample to N px (the longer side); default: the model's "
                                                         "own size, bit for bit as the editor shows it")
    p.add_argument("--pasted", action="store_true", help="the face pasted back into the photo it was inverted from")
    add_compute(p)
    p.set_defaults(func=cmd_render)
