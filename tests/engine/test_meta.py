"""Modules built without initial values (``engine.models.meta``): shapes, storage, the global random state, and the
start-up cost they avoid (sympy is never imported on the way to the first face)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from engine.models.meta import materialise, skip_init

ROOT = Path(__file__).resolve().parents[2]


def test_skip_init_builds_real_uninitialised_storage_without_drawing_random_numbers():
    state = torch.random.get_rng_state()
    conv = skip_init(nn.Conv2d, 3, 8, 3, padding=1, bias=False)
    lin = skip_init(nn.Linear, 5, 4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert conv.weight.shape == (8, 3, 3, 3) and conv.bias is None and lin.bias.shape == (4,)
    assert all(p.device.type == "cpu" and not p.is_meta and p.requires_grad for p in (conv.weight, lin.weight))
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.zero_()
    assert torch.equal(lin(torch.ones(2, 5)), torch.full((2, 4), 5.0))


def test_materialise_keeps_buffers_dtypes_and_module_structure():
    with torch.device("meta"):
        net = nn.Sequential(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(4))
    out = materialise(net)
    assert out is net
    bn = net[1]
    assert bn.running_mean.device.type == "cpu" and bn.num_batches_tracked.dtype == torch.int64
    assert isinstance(net[0].weight, nn.Parameter) and net[0].weight.shape == (4, 2, 1, 1)


def test_loading_the_default_models_and_rendering_the_first_face_never_imports_sympy():
    code = ("import sys\n"
            "from engine.jobs.render import load_flow_tools, load_model, render_state\n"
            "from engine.project import EditState, ModelRef\n"
            "state = EditState()\n"
            "render_state(load_model(state.model), state)\n"
            "load_flow_tools(ModelRef())\n"
            "print('sympy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
