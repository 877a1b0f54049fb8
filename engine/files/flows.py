"""Attribute flow files: StyleFlow's released CNF (``modellarge10k.pt``, a bare state dict) and the project's own
format (``{"format": "face-editor/styleflow", "arch", "state_dict", "extras"}``, extras holding the condition
layout, lighting presets and the fast solver's steps), loaded into ``engine.models.flow.ConditionalCNF``.
"""
from __future__ import annotations

import logging
import os

import torch

from engine.algorithms.flow_layout import ConditionLayout, LayoutError
from engine.convert import styleflow
from engine.errors import ModelFormatError, describe
from engine.files.checkpoints import atomic_torch_save
from engine.files.guard import build_module, refuse_broken_files
from engine.files.loading import ModelInfo
from engine.files.storage import file_sha256, read_model_file
from engine.models.flow import FORMAT, FORMAT_VERSION, ConditionalCNF

log = logging.getLogger(__name__)


def flow_checkpoint(flow: ConditionalCNF, *, extras: dict | None = None,
                    layout: ConditionLayout | None = None) -> dict:
    """The project-format dict of ``flow`` (float32 CPU copies of every tensor). ``layout`` (default: the flow's
    ``layout`` attribute, if it has one) is stored as ``extras["condition_layout"]``; it must fit the condition."""
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in flow.state_dict().items()}
    extras = dict(extras or {})
    layout = layout if layout is not None else getattr(flow, "layout", None)
    if layout is not None:
        layout.check_size(flow.cfg.cond_dim)
        extras["condition_layout"] = layout.to_dict()
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": flow.cfg.to_dict(), "state_dict": state,
            "extras": extras}


def save_flow(path: str | os.PathLike, flow: ConditionalCNF, *, extras: dict | None = None,
              layout: ConditionLayout | None = None) -> None:
    """Write ``flow`` in the project's format (with its condition layout, see ``flow_checkpoint``), atomically."""
    atomic_torch_save(flow_checkpoint(flow, extras=extras, layout=layout), path)


@refuse_broken_files
def load_flow(source, *, layout: ConditionLayout | None = None) -> ConditionalCNF:
    """A flow from a path or a loaded dict: StyleFlow's released state-dict layout (``modellarge10k.pt``, the
    architecture inferred from the weights) or the project's format. Returns an eval-mode CPU module with
    ``flow.info`` (format, description, notes, sha256, path), ``flow.extras`` (the project format's extras, else
    empty), ``flow.layout`` (what its condition holds; None when neither the file nor ``layout`` says it and it
    cannot be told from the shapes: edits then refuse the flow, saying what to pass) and ``flow.layout_source`` (where
    the layout came from, in words). ``layout``: the caller's (the user's) layout, for a file that does not state
    one; it must fit the condition size, and a file that states another one is refused. Anything else raises
    ``ModelFormatError``."""
    path = None
    if isinstance(source, (str, os.PathLike)):
        kind, obj = read_model_file(source)
        label, path, sha = os.path.basename(source), str(source), file_sha256(source)
        if kind != "torch":
            raise ModelFormatError(f"{label} is a {kind} file, not a StyleFlow flow")
    elif isinstance(source, dict):
        obj, label, sha = source, "flow checkpoint dict", None
    else:
        raise ModelFormatError(f"cannot load a flow from {describe(source)}: pass a path or a state dict")
    cfg, state, notes, fmt, description = styleflow.flow_parts(obj, label=label)
    stated, source_text = styleflow.flow_layout(obj, cfg, label=label)
    if layout is not None:
        try:
            layout.check_size(cfg.cond_dim, what=label)
        except LayoutError as e:
            raise ModelFormatError(str(e)) from None
        if stated is not None and source_text == styleflow.STATED and layout != stated:
            raise ModelFormatError(f"{label} states its own condition layout ({stated.describe()}), and the layout "
                                   "given differs from it: leave the layout out to use the file's")
        stated, source_text = layout, "given by the user"
    flow = build_module(ConditionalCNF, cfg, what=label)
    notes += styleflow.load_strict(flow, state, label=label)
    flow.eval()
    flow.info = ModelInfo(format=fmt, description=description, notes=tuple(notes), sha256=sha, path=path)
    extras = obj.get("extras") if isinstance(obj, dict) and obj.get("format") == FORMAT else None
    flow.extras = dict(extras) if isinstance(extras, dict) else {}  # e.g. lighting presets written by `train flow`
    flow.layout, flow.layout_source = stated, source_text
    log.info("loaded attribute flow %s (%s [%s], condition of %d values, layout %s, sha256 %s)", label, description,
             fmt, cfg.cond_dim, source_text, sha)
    return flow
