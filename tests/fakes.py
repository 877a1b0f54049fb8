"""Stand-ins shared by the engine and editor tests."""
from __future__ import annotations

import time

import torch

import main
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.worker import InlineContext, ModelCache

TINY_CFG = GeneratorConfig(img_resolution=32, channels=(16, 16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2)


def fake_finetune(G: Generator, *, seed: int = 0, scale: float = 0.2) -> Generator:
    """A "fine-tuned" copy of ``G`` as FreezeFC leaves it: the synthesis weights moved, the mapping kept."""
    T = Generator(G.cfg, seed=seed)
    T.load_state_dict(G.state_dict())
    with torch.no_grad():
        for name, p in T.named_parameters():
            if not name.startswith("mapping."):
                p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return T.eval()


def as_exported(state):
    """What an exported PNG's project says of ``state``: every file by its name, each model with its sha256 (read
    here from the file itself), nothing else changed."""
    import dataclasses
    import hashlib
    from pathlib import Path

    from engine.project import ModelRef

    def ref(r: ModelRef) -> ModelRef:
        if r.path is None:
            return r
        sha = r.sha256 or hashlib.sha256(Path(r.path).read_bytes()).hexdigest()
        return ModelRef(path=Path(r.path).name, sha256=sha)

    tr = state.translation
    return state.replace(
        model=ref(state.model), flow=ref(state.flow),
        photo=None if state.photo is None else dataclasses.replace(state.photo, path=Path(state.photo.path).name),
        translation=None if tr is None else dataclasses.replace(tr, target=ref(tr.target)))


class RecordingContext:
    """The slice of the worker's JobContext that jobs use, on the CPU, recording progress and partial results."""

    def __init__(self):
        self.device = torch.device("cpu")
        self.models, self.memo, self.photos = ModelCache(), ModelCache(), ModelCache(capacity=2)
        self.partials, self.progressed = [], []

    def check(self):
        pass

    def cancelled(self):
        return False

    def progress(self, fraction, message=""):
        self.progressed.append(fraction)

    def partial(self, result):
        self.partials.append(result)


def cpu_context() -> InlineContext:
    """The command line's job context, on the CPU."""
    return InlineContext(device=torch.device("cpu"))


def run_cli(*argv) -> int:
    """``main.py ARGV`` in this process: the exit status (argparse's own exits included)."""
    try:
        return main.main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


def busy_job(seconds: float, value):
    """A job that works ``seconds`` (checking for a stop all along), then returns ``value``."""
    def job(ctx):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            ctx.check()
        return value
    return job
