"""``python main.py info FILE``: the detected format and architecture of a generator file, or of an attribute flow
file its architecture and condition layout (or what to pass for it)."""
from __future__ import annotations

import argparse
import json
import os

from engine.algorithms.flow_layout import FLOW_LAYOUT_HELP, ConditionLayout, parse_layout
from engine.cli.common import UserError, command_parser
from engine.convert.styleflow import is_flow_content
from engine.errors import ModelFormatError
from engine.files.flows import load_flow
from engine.files.loading import inspect_model
from engine.files.storage import read_model_file

DESCRIPTION = ("Print what a model file holds, checked by building its networks from its weights as the editor "
               "loads them: the detected format, the architecture and the conversion notes of a generator; an "
               "attribute flow's architecture and condition layout. A file the editor would refuse is refused here.")

EXAMPLES = """
python main.py info assets/generator.pt
python main.py info stylegan2-ffhq-config-f.pkl --json
python main.py info modellarge10k.pt --flow-layout styleflow
"""


def flow_file_info(path: str | os.PathLike, *, layout_text: str | None = None) -> dict | None:
    """What a flow file holds (plain values), with the layout from the file or ``layout_text`` (``parse_layout``);
    None when the file is not a flow."""
    kind, obj = read_model_file(path)
    if kind != "torch" or not is_flow_content(obj):
        return None
    flow = load_flow(path, layout=parse_layout(layout_text) if layout_text else None)
    layout, presets = flow.layout, flow.extras.get("lighting_presets")
    return {"path": str(path), "sha256": flow.info.sha256, "format": flow.info.format,
            "description": flow.info.description, "architecture": flow.cfg.to_dict(),
            "parameters": sum(p.numel() for p in flow.parameters()), "notes": list(flow.info.notes),
            "condition_size": flow.cfg.cond_dim, "layout": None if layout is None else layout.to_dict(),
            "layout_text": None if layout is None else layout.to_text(), "layout_source": flow.layout_source,
            "lighting_presets": 0 if presets is None else len(presets), "fast_steps": flow.extras.get("fast_steps")}


def flow_info_lines(info: dict) -> list[str]:
    """``flow_file_info`` for people."""
    n = info["condition_size"]
    lines = [f"file:          {info['path']}", f"sha256:        {info['sha256']}",
             f"format:        {info['description']} [{info['format']}]",
             f"parameters:    {info['parameters']:,}"]
    if info["layout"] is None:
        lines += [f"condition:     {n} values, layout unknown", f"layout:        {info['layout_source']}"]
    else:
        layout = ConditionLayout.from_dict(info["layout"])
        lines += [f"condition:     {n} values: {layout.describe()}",
                  f"layout:        {info['layout_text']}",
                  f"layout from:   {info['layout_source']}",
                  "W+ rows:       " + (f"numbered for {layout.num_ws} rows (another generator's rows are matched by "
                                      "resolution)" if layout.num_ws else "the generator's own row numbers")]
    lines.append(f"lighting:      {info['lighting_presets'] or 'no'} presets"
                 + (f", fast mode {info['fast_steps']} steps" if info["fast_steps"] else ""))
    lines += [f"note:          {n}" for n in info["notes"]]
    return lines


def cmd_info(args) -> int:
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
        f"checked:       the generator loads ({info['parameters']:,} parameters)",
        "discriminator: " + (f"yes, mbstd group {info['discriminator']['mbstd_group_size']}, loads "
                             f"({info['discriminator_parameters']:,} parameters)" if info["discriminator"] else
                             f"none loaded ({info['discriminator_error']})" if "discriminator_error" in info else "no"),
    ]
    lines += [f"note:          {n}" for n in info["notes"]]
    print("\n".join(lines))
    return 0


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    p = command_parser(sub, "info", help=help, description=DESCRIPTION, examples=EXAMPLES)
    p.add_argument("model", metavar="FILE", help="model file: a generator or an attribute flow")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--flow-layout", metavar="LAYOUT", help=FLOW_LAYOUT_HELP)
    p.set_defaults(func=cmd_info)
