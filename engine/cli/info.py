"""``main.py info`` for attribute flow files: the architecture and the condition layout, or what to pass for it."""
from __future__ import annotations

import os

from engine.algorithms.flow_layout import ConditionLayout, parse_layout
from engine.convert.styleflow import is_flow_content
from engine.files.flows import load_flow
from engine.files.storage import read_model_file


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
