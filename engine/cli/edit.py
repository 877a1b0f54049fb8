"""``python main.py edit``: what a person does in the editor's window, as one command.

The face starts from a seed, a saved latent, a photo (found, aligned and inverted as ``invert`` does) or a project;
truncation, noise, style mixing, attribute and lighting edits (with the sliders' meaning: the value the face should
read), locks and a layer-swap translation go into an ``EditState`` exactly as the editor's document holds them, and
the editor's own jobs render it (``RenderJob``), export its latent (``LatentJob``) and paste it into its photo
(``PasteJob``). The image written is therefore the one the editor shows for the project written beside it. The
translation options are shared with ``translate`` (``add_translation_arguments``, ``translation_for``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.algorithms.flow_edit import AttributeEdit, merge_edit, slider_target
from engine.algorithms.flow_layout import FLOW_LAYOUT_HELP, LayoutError, parse_layout, parse_rows
from engine.cli.common import UserError, add_compute, add_model, command_parser, model_ref, say, start
from engine.cli.invert import add_face_arguments, add_inversion_arguments, invert_photo
from engine.files.paths import file_name
from engine.jobs.export import image_format, load_latent, save_image, save_latent
from engine.jobs.photo import PasteJob
from engine.jobs.render import (
    AttributeReading,
    AttributeReadJob,
    FlowProbeJob,
    LatentJob,
    ModelJob,
    ModelSummary,
    RenderJob,
)
from engine.jobs.translate import TargetJob, shipped_targets
from engine.models.stylegan2 import NOISE_MODES
from engine.project import (
    ATTRIBUTE_SOURCES,
    SWAP_MODES,
    EditState,
    ModelRef,
    Source,
    Translation,
    read_project,
    save_project,
)

DEFAULT_DEPTH = 16  # the Translate panel's default swap depth (UI2I's usual swap) when the model has it
PROJECT_SUFFIX = ".fproj"

DESCRIPTION = ("Edit a face without the window and write its image (PNG with the project inside, JPEG or WebP), "
               "its W+ latent and a project the editor opens showing the same image. The face is a seed (default "
               "0), a latent, a photo's inverted face or a project; on it go truncation, style mixing, attribute "
               "sliders (--set NAME=VALUE: the value the face should read, as the editor's slider), locks, "
               "lighting presets and a translation, in the order given.")

EXAMPLES = """
python main.py edit --seed 7 --set age=60 --set glasses=1 --out face.png
python main.py edit --seed 7 --psi 0.5 --mix 0-3=42 --mix 8-9=other.npy --latent-out w.npy --out mixed.png
python main.py edit --photo me.jpg --steps 200 --set smile=0.9 --lock age --light front_light:0.5 --out me.png
python main.py edit --latent w.npy --translate toon --depth 16 --out toon.png --project-out toon.fproj
python main.py edit --project face.fproj --set yaw=-20 --out turned.png
python main.py edit --model g.pt --flow flow.pt --flow-layout styleflow --set age=30 --out young.png
python main.py edit --latent w.npy --attributes-from flow --set age=60 --out older.png
"""


# ----- parsing what the options mean


def _named_value(text: str, sep: str, what: str) -> tuple[str, float]:
    name, found, value = text.rpartition(sep)
    try:
        if not found or not name.strip():
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} wants NAME{sep}NUMBER, got {text!r}") from None


def _attribute(text: str) -> tuple[str, str, float]:
    return ("attribute", *_named_value(text, "=", "--set"))


def _lighting(text: str) -> tuple[str, str, float]:
    return ("lighting", *_named_value(text, ":", "--light"))


def _mixing(text: str) -> tuple[tuple[int, ...], str, str]:
    rows, found, source = text.partition("=")
    try:
        if not found or not source.strip():
            raise LayoutError("")
        return parse_rows(rows, "--mix"), source.strip(), rows.strip()
    except LayoutError:
        raise argparse.ArgumentTypeError(f"--mix wants ROWS=SEED or ROWS=LATENT_FILE with rows like 0-3,8, got "
                                         f"{text!r}") from None


class _Append(argparse.Action):
    """Append to the shared ``edits`` list, so that attribute and lighting edits keep the order they were given."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])


# ----- the state, piece by piece as the editor's panels build it


def open_model(ctx, bar, ref: ModelRef, *, until: float) -> ModelSummary:
    """Load a generator (the model panel's ``ModelJob``): its summary, with the pinned reference."""
    return bar.run(ModelJob(ref), ctx, until=until)


def document_model(summary: ModelSummary) -> ModelRef:
    """The model reference the editor's document keeps for a loaded model (the embedded default stays unpinned)."""
    return summary.ref if summary.ref.path else ModelRef()


def flow_settings(ctx, args) -> dict:
    """``--flow`` / ``--flow-layout`` as the document's ``flow`` and ``flow_layout`` (``FlowProbeJob`` pins it)."""
    if args.flow_layout and not args.flow:
        raise UserError("--flow-layout describes the condition of a flow given with --flow (the embedded default "
                        "flow states its own)")
    if not args.flow:
        return {}
    if not Path(args.flow).is_file():
        raise UserError(f"--flow {args.flow}: no such file")
    probe = FlowProbeJob(ModelRef(path=str(Path(args.flow).resolve())))(ctx)
    return {"flow": probe.ref, "flow_layout": parse_layout(args.flow_layout) if args.flow_layout else None}


def _source(text: str) -> Source:
    """A mixing source: a seed, or a latent file (``load_latent``), named as the mixing panel names it."""
    if text.isdigit():
        return Source(seed=int(text))
    path = Path(text)
    if not path.is_file():
        raise UserError(f"--mix: {text} is neither a seed nor a latent file")
    return Source.from_latent(load_latent(path), name=path.stem)


def mixed(state: EditState, mixes, num_ws: int) -> EditState:
    """``state`` with each ``--mix ROWS=SOURCE`` added as a source and its rows taken from it (as the mixing panel
    adds a column and picks it for those rows; a source whose rows a later one took keeps its column)."""
    if not mixes:
        return state
    rows = list(state.rows) or [0] * num_ws
    sources = list(state.sources)
    for wanted, text, given in mixes:
        if any(r >= num_ws for r in wanted):
            raise UserError(f"--mix {given}={text}: this model has {num_ws} W+ rows, 0-{num_ws - 1}")
        sources.append(_source(text))
        for r in wanted:
            rows[r] = len(sources)
    return state.replace(sources=tuple(sources), rows=tuple(rows) if any(rows) else ())  # as the mixing panel


def depth_choices(summary: ModelSummary) -> tuple[int, ...]:
    """The swap depths the Translate panel offers: none (0), then every resolution from 8 px."""
    return (0, *sorted({r for r in summary.row_resolutions if r >= 8}))


def target_ref(text: str) -> ModelRef:
    """``--target`` / ``--translate``: a shipped fine-tune by its domain (toon, sketch, ...) or a model file."""
    shipped = {t.domain: t.ref for t in shipped_targets()}
    if text in shipped:
        return shipped[text]
    if Path(text).is_file():
        return ModelRef(path=str(Path(text).resolve()))
    names = ", ".join(shipped) or "none are shipped"
    raise UserError(f"the translation target {text!r} is neither a shipped fine-tune ({names}) nor a model file")


def translation_for(ctx, bar, summary: ModelSummary, target: str, args, *, style: Source | None = None,
                    until: float) -> Translation:
    """The Translate panel's translation into ``target`` (checked against the face's model by ``TargetJob``) with
    ``--depth``, ``--blend``, ``--swap-mode`` and ``--style-psi``, and the appearance ``style`` (None: the
    face's own)."""
    info = bar.run(TargetJob(document_model(summary), target_ref(target)), ctx, until=until)
    choices = depth_choices(summary)
    if args.depth is None:
        depth = DEFAULT_DEPTH if DEFAULT_DEPTH in choices[1:] else choices[1:][len(choices[1:]) // 2]
    elif args.depth in choices:
        depth = args.depth
    else:
        raise UserError(f"--depth {args.depth}: this model's swap depths are {', '.join(map(str, choices))} px "
                        "(0: the target alone)")
    return Translation(info.ref, depth=depth, blend=args.blend, mode=args.swap_mode, style=style,
                       style_psi=args.style_psi)


def edited(state: EditState, reading: AttributeReading, requests, locks) -> EditState:
    """``state`` with the ``--set`` / ``--light`` edits merged in order (as slider moves are) and ``--lock``."""
    layout = reading.layout
    edits = state.edits
    for kind, key, value in requests:
        if kind == "attribute":
            name = layout.canonical(key)
            lo, hi = layout.spec(name).range
            if not lo <= value <= hi:
                raise UserError(f"--set {key}={value:g}: the {name} slider runs from {lo:g} to {hi:g}")
            original = float(reading.base[layout.index(name)])
            edit = AttributeEdit("attribute", name, slider_target(name, value, original, layout=layout))
        else:
            edit = AttributeEdit("lighting", _preset(key, reading.preset_names), value)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"--light {key}:{value:g}: a lighting preset's strength runs from 0 to 1")
        edits = merge_edit(edits, edit)
    held = tuple(dict.fromkeys((*state.locks, *(layout.canonical(a) for a in locks))))
    return state.replace(edits=edits, locks=held)


def _preset(key: str, names: tuple[str, ...]) -> int:
    """A lighting preset by its name (``-``, ``_`` and spaces alike, any case) or its number from 1."""
    if not names:
        raise UserError("this attribute flow has no lighting presets")
    if key.isdigit() and 1 <= int(key) <= len(names):
        return int(key) - 1
    norm = {n.lower().replace("-", "_").replace(" ", "_"): i for i, n in enumerate(names)}
    found = norm.get(key.lower().replace("-", "_").replace(" ", "_"))
    if found is None:
        raise UserError(f"--light {key}: this flow's lighting presets are {', '.join(names)} (or 1-{len(names)})")
    return found


def starting_state(ctx, bar, args, *, until: float) -> tuple[EditState, ModelSummary]:
    """The face before mixing and edits: a project, or the model with the seed, latent or photo, truncation,
    noise and flow of the options."""
    fields = {k: v for k, v in (("psi", args.psi), ("cutoff", args.cutoff), ("noise_mode", args.noise_mode),
                                ("noise_seed", args.noise_seed)) if v is not None}
    if args.project:
        if args.model:
            raise UserError("--model with --project: the project names its model (open it in the editor to change "
                            "the model)")
        state, _ = read_project(args.project)
        summary = open_model(ctx, bar, state.model, until=0.2 * until)
        return state.replace(**fields, **flow_settings(ctx, args)), summary
    summary = open_model(ctx, bar, model_ref(args.model), until=0.2 * until)
    state = EditState(model=document_model(summary), **fields, **flow_settings(ctx, args))
    if args.latent:
        path = Path(args.latent)
        if not path.is_file():
            raise UserError(f"--latent {args.latent}: no such file")
        return state.replace(base=Source.from_latent(load_latent(path), name=path.stem)), summary
    if args.photo:
        _, outcome = invert_photo(ctx, bar, state, args, until=until)
        return outcome.state, summary
    return state.replace(seed=args.seed), summary


def _check_outputs(args) -> None:
    if not (args.out or args.latent_out or args.project_out or args.pasted_out):
        raise UserError("nothing to write: give --out IMAGE, --latent-out FILE, --project-out FILE or --pasted-out "
                        "IMAGE")
    for path in (args.out, args.pasted_out):
        if path:
            image_format(path)
    if args.latent_out and Path(args.latent_out).suffix.lower() not in (".npy", ".pt"):
        raise UserError(f"--latent-out {args.latent_out}: write a latent as .npy or .pt")
    if args.project_out and Path(args.project_out).suffix.lower() not in (PROJECT_SUFFIX, ".json"):
        raise UserError(f"--project-out {args.project_out}: a project file ends in {PROJECT_SUFFIX}")
    if not args.translate and (args.depth is not None or args.style_seed is not None):
        raise UserError("--depth and --style-seed set a translation: give its target with --translate")
    if args.pasted_out and not (args.photo or args.project):
        raise UserError("--pasted-out pastes the face back into its photo: start from --photo (or a project of one)")


def cmd_edit(args) -> int:
    _check_outputs(args)
    ctx, bar = start(args, "edit")
    state, summary = starting_state(ctx, bar, args, until=0.6 if args.photo else 0.2)
    state = mixed(state, args.mix, summary.num_ws)
    if args.translate:
        style = None if args.style_seed is None else Source(seed=args.style_seed)
        state = state.replace(translation=translation_for(ctx, bar, summary, args.translate, args, style=style,
                                                          until=0.65 if args.photo else 0.25))
    if args.adaptive:
        state = state.replace(flow_fast=False)
    if args.attributes_from:
        state = state.replace(attribute_source=args.attributes_from)
    if args.edits or args.lock:
        state = edited(state, bar.run(AttributeReadJob(state), ctx, until=0.8), args.edits or (), args.lock)
    image = bar.run(RenderJob(state), ctx, until=0.95 if args.pasted_out else 1.0).image
    written = []
    if args.out:
        written.append(file_name(str(save_image(args.out, image, state=state))))
    if args.pasted_out:
        pasted = bar.run(PasteJob(state), ctx).pasted
        written.append(file_name(str(save_image(args.pasted_out, pasted, state=state))))
    if args.latent_out:
        written.append(file_name(str(save_latent(args.latent_out, LatentJob(state)(ctx)))))
    if args.project_out:
        written.append(file_name(str(save_project(args.project_out, state))))
    bar.close()
    face = (f"the face of {state.photo.name}" if state.photo is not None else
            f"latent {state.base.label()}" if state.base is not None else f"seed {state.seed}")
    say(args, f"{face}, {len(state.edits)} edit(s){', translated' if state.translation else ''}: wrote "
              f"{', '.join(written)} ({image.shape[1]} x {image.shape[0]} px)")
    return 0


def add_translation_arguments(p: argparse.ArgumentParser, target: str) -> None:
    """The Translate panel's settings; ``target`` names the option that picks the fine-tuned model."""
    p.add_argument(target, metavar="TARGET", help="translate into this fine-tuned model: a shipped one (toon, "
                                                  "sketch) or a model file fine-tuned from the face's model")
    p.add_argument("--depth", type=int, help="swap depth in px: the face's model draws everything up to it (default "
                                             f"{DEFAULT_DEPTH} where the model has it; 0: the target alone)")
    p.add_argument("--blend", type=float, default=0.0, help="octaves over which the two models fade into each other "
                                                            "(0 to 8, default 0)")
    p.add_argument("--swap-mode", choices=SWAP_MODES, default="feature",
                   help="feature (UI2I, default) or weights (Toonify) swap")
    p.add_argument("--style-psi", type=float, default=0.5,
                   help="truncation of a sampled appearance towards the target's mean (default 0.5)")


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    p = command_parser(sub, "edit", help=help, description=DESCRIPTION, examples=EXAMPLES)
    face = p.add_argument_group("the face (one of)").add_mutually_exclusive_group()
    face.add_argument("--seed", type=int, default=0, help="the face of this seed (default 0)")
    face.add_argument("--latent", metavar="FILE", help="a saved W or W+ latent (.npy or .pt) as the face")
    face.add_argument("--photo", metavar="FILE", help="a photo: its face found, aligned and inverted as 'invert' "
                                                      "does (see the photo options)")
    face.add_argument("--project", metavar="FILE", help="a project (.fproj): edit on top of what it holds")
    gen = p.add_argument_group("model and generation")
    add_model(gen)
    gen.add_argument("--psi", type=float, help="truncation psi (default 0.7, the editor's)")
    gen.add_argument("--cutoff", type=int, help="truncate only the first N W+ rows")
    gen.add_argument("--noise-mode", choices=NOISE_MODES, help="per-layer noise (default const)")
    gen.add_argument("--noise-seed", type=int, help="seed of the noise maps in 'random' mode (default 0)")
    gen.add_argument("--mix", type=_mixing, action="append", default=[], metavar="ROWS=SEED|FILE",
                     help="style mixing: these W+ rows (e.g. 0-3 or 8,9) from another seed or a latent file; "
                          "repeat for more sources")
    att = p.add_argument_group("attribute edits (applied in the order given)")
    att.add_argument("--set", dest="edits", type=_attribute, action=_Append, metavar="NAME=VALUE",
                     help="move an attribute slider to VALUE, the value the face should read (e.g. age=60, "
                          "glasses=1, smile=0.8; names from the flow's layout, see 'main.py info FLOW')")
    att.add_argument("--light", dest="edits", type=_lighting, action=_Append, metavar="PRESET:STRENGTH",
                     help="blend the lighting towards one of the flow's presets (its name, e.g. front_light, or "
                          "number from 1) with a strength from 0 to 1")
    att.add_argument("--lock", action="append", default=[], metavar="NAME",
                     help="hold this attribute at its value while the others are edited")
    att.add_argument("--adaptive", action="store_true", help="StyleFlow's adaptive solver instead of fast mode")
    att.add_argument("--attributes-from", choices=ATTRIBUTE_SOURCES,
                     help="where the face's starting values come from: the attribute estimator's reading (the "
                          "default) or the flow's own reading of the face's latent (the panel's Read from flow)")
    att.add_argument("--flow", metavar="FILE", help="another attribute flow than the embedded default's")
    att.add_argument("--flow-layout", metavar="LAYOUT", help=FLOW_LAYOUT_HELP + " (with --flow)")
    tr = p.add_argument_group("translation (the Translate panel)")
    add_translation_arguments(tr, "--translate")
    tr.add_argument("--style-seed", type=int, help="an appearance sampled from the target with this seed "
                                                   "(default: the face's own)")
    photo = p.add_argument_group("photo options (with --photo)")
    add_face_arguments(photo)
    add_inversion_arguments(photo, seed="--inversion-seed")
    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="IMAGE", help="the image: .png (with the project inside), .jpg or .webp")
    out.add_argument("--latent-out", metavar="FILE", help="the W+ latent [num_ws, w_dim] as .npy or .pt")
    out.add_argument("--project-out", metavar="FILE", help="a project (.fproj) the editor opens showing this image")
    out.add_argument("--pasted-out", metavar="IMAGE", help="the edited face pasted back into its photo")
    add_compute(p)
    p.set_defaults(func=cmd_edit, edits=None)
