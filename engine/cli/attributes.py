"""``python main.py attributes IMAGE|LATENT``: what the attribute estimator reads on a face, as JSON on stdout.

With ``--from-flow`` (a latent only), also the attribute flow's own reading of it (``FlowReadJob``: the condition
under which the flow finds the latent most likely, from the estimator's reading), under ``"flow"``: the condition
by name in the flow's layout, its log-likelihood before and after, and the time.

A latent (``.npy`` / ``.pt``, W or W+) is rendered by the generator (``--model``) as the editor renders it; an
image is read as it is (a square aligned face; a non-square one by its centre square), or with ``--find-face``
its face is found and aligned first. Every output of the estimator is given in its raw units: the attributes by
name (probabilities for the binary ones, degrees, years) and the lighting's spherical-harmonic coefficients.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

from engine.algorithms.flow_layout import FLOW_LAYOUT_HELP
from engine.assets import default_estimator_path
from engine.cli.common import UserError, add_compute, add_model, command_parser, model_ref, start
from engine.cli.edit import document_model, flow_settings
from engine.cli.invert import add_face_arguments, chosen_transform
from engine.files.paths import file_name
from engine.jobs.condition import FlowReading, FlowReadJob
from engine.jobs.export import LATENT_FORMATS, load_latent
from engine.jobs.photo import ScanJob, cached_photo, to_target
from engine.jobs.render import ModelJob, RenderJob
from engine.models.estimator import load_estimator
from engine.photos.align import align_image, whole_image_transform
from engine.project import EditState, Source

LIGHTING = re.compile(r"sh(\d+)")  # the estimator's names of the lighting coefficients: sh0, sh1, ...

DESCRIPTION = ("Print the attribute estimator's reading of a face as JSON: each attribute in its raw units "
               "(probabilities, degrees, years) and the lighting coefficients. A latent is rendered first by the "
               "generator; an image is read as it is (its centre square), or with --find-face its face is found "
               "and aligned.")

EXAMPLES = """
python main.py attributes face.png
python main.py attributes w.npy --model g.pt
python main.py attributes photo.jpg --find-face --face 1
python main.py attributes portrait.jpg --find-face | jq .attributes.age
python main.py attributes w.npy --from-flow | jq .flow.attributes
"""


def reading(estimator, image) -> dict:
    """The estimator's outputs for a uint8 face [H, W, 3] in raw units: ``attributes`` by name, ``lighting``
    the coefficients in order."""
    with torch.no_grad():
        values = estimator.predict(to_target(np.array(image), next(estimator.parameters()).device))
    light = sorted((int(m.group(1)), name) for name in values if (m := LIGHTING.fullmatch(name)))
    return {"attributes": {name: float(v[0]) for name, v in values.items() if not LIGHTING.fullmatch(name)},
            "lighting": [float(values[name][0]) for _, name in light]}


def flow_reading(r: FlowReading) -> dict:
    """A ``FlowReading`` as JSON: the attributes by name, the lighting in order, the fit's log-likelihoods."""
    n = r.layout.num_light
    return {"attributes": {name: float(r.condition[r.layout.index(name)]) for name in r.layout.names},
            "lighting": [float(v) for v in r.condition[:n]], "start": [float(v) for v in r.start],
            "log_likelihood": {"start": float(r.trajectory[0]), "end": float(r.trajectory.max())},
            "steps": len(r.trajectory) - 1, "seconds": round(r.ms / 1000, 3)}


def _face(ctx, bar, args, path: Path, size: int) -> tuple:
    """(uint8 face [S, S, 3] or as it is, how it was cut out) of an image file."""
    if args.find_face:
        scan = bar.run(ScanJob(str(path), EditState(model=model_ref(args.model))), ctx, until=0.6)
        transform = chosen_transform(scan.photo, scan.faces, args, size=size, recipe=scan.recipe, name=path.name)
        how = ("the box given" if args.box is not None else "the centre square" if args.whole else
               f"face {args.face} of {len(scan.faces)} found, aligned ({scan.recipe})")
        return align_image(scan.photo.pixels, transform), how
    photo = cached_photo(ctx, str(path))
    w, h = photo.size
    if w == h:
        return photo.pixels, "as it is"
    return align_image(photo.pixels, whole_image_transform(w, h, size=size)), "its centre square"


def cmd_attributes(args) -> int:
    path = Path(args.input)
    if not path.is_file():
        raise UserError(f"{args.input}: no such file")
    latent = path.suffix.lower() in LATENT_FORMATS
    if latent and args.find_face:
        raise UserError("--find-face looks for a face in a photo; a latent is rendered instead")
    if not args.find_face and (args.box is not None or args.whole or args.face):
        raise UserError("--face, --box and --whole choose the face with --find-face")
    if args.from_flow and not latent:
        raise UserError("--from-flow reads a latent: invert the photo first (main.py invert PHOTO --latent-out "
                        "w.npy), then read w.npy")
    if (args.flow or args.flow_layout) and not args.from_flow:
        raise UserError("--flow and --flow-layout choose the flow that --from-flow reads with")
    ctx, bar = start(args, "attributes", delay=1.0)
    estimator_path = Path(args.estimator) if args.estimator else default_estimator_path()
    estimator = bar.run(lambda c: load_estimator(estimator_path).to(c.device).eval(), ctx, until=0.2)
    size = estimator.cfg.input_size
    out = {"input": path.name, "kind": "latent" if latent else "image"}
    if latent:
        summary = bar.run(ModelJob(model_ref(args.model)), ctx, until=0.6)
        state = EditState(model=document_model(summary), base=Source.from_latent(load_latent(path), name=path.stem))
        image = bar.run(RenderJob(state), ctx, until=0.9).image
        out |= {"model": file_name(summary.path), "model_sha256": summary.ref.sha256, "read": "rendered"}
    else:
        image, how = _face(ctx, bar, args, path, size)
        out["read"] = how
    out |= {"image_size": list(image.shape[1::-1]), "estimator": estimator_path.name, "estimator_size": size}
    out |= bar.run(lambda c: reading(estimator, image), ctx, until=0.92 if args.from_flow else 1.0)
    if args.from_flow:
        out["flow"] = flow_reading(bar.run(FlowReadJob(state.replace(**flow_settings(ctx, args))), ctx))
    bar.close()
    print(json.dumps(out, indent=2))
    return 0


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    p = command_parser(sub, "attributes", help=help, description=DESCRIPTION, examples=EXAMPLES)
    p.add_argument("input", metavar="IMAGE|LATENT", help="a face image (or a photo, with --find-face), or a latent "
                                                         f"({', '.join(LATENT_FORMATS)})")
    add_model(p, "generator that renders a latent")
    p.add_argument("--find-face", action="store_true", help="find the face in the photo and align it first")
    add_face_arguments(p.add_argument_group("which face (with --find-face)"))
    p.add_argument("--estimator", metavar="FILE", help="another attribute estimator (default: the embedded one)")
    p.add_argument("--from-flow", action="store_true", help="also the attribute flow's own reading of the latent")
    p.add_argument("--flow", metavar="FILE", help="another attribute flow than the embedded default's (with "
                                                  "--from-flow)")
    p.add_argument("--flow-layout", metavar="LAYOUT", help=FLOW_LAYOUT_HELP + " (with --flow)")
    add_compute(p)
    p.set_defaults(func=cmd_attributes)
