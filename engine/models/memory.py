"""How much GPU memory networks need, sized on the meta device (no memory is allocated, no GPU is needed).

A network is built on ``meta`` (the small attribute flow on the CPU) at the precision it will run in; its weights are
the bytes of its parameters and buffers, and its activations the peak, over one forward pass, of the bytes held by the
tensors that pass created and that are still alive (a tensor is counted when an operation creates it and released when
Python drops it, as the CUDA caching allocator sees it; views and in-place results add nothing). A generator's pass is
one frame at batch 1 (mapping, then synthesis with stored noise), an attribute flow's one slider edit (W+ -> z -> W+
on the fast solver), an e4e encoder's one aligned face. ``CUDA_OVERHEAD`` stands for what the process holds beyond
tensors (the CUDA context, cuBLAS / cuDNN workspaces, the allocator's rounding).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from engine.models.e4e import E4EConfig, Encoder4Editing
from engine.models.flow import ConditionalCNF, FlowConfig
from engine.models.stylegan2 import Generator, GeneratorConfig

META = torch.device("meta")
CUDA_OVERHEAD = 1 << 30  # bytes: context (~0.3-0.5 GB on recent drivers), workspaces, allocator slack; rounded up


@dataclass(frozen=True)
class MemoryEstimate:
    """One network's memory at one precision: weights (parameters + buffers) and peak activations, in bytes."""

    name: str
    precision: str
    parameters: int  # count
    weights_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes

    def to_dict(self) -> dict:
        return {"name": self.name, "precision": self.precision, "parameters": self.parameters,
                "weights_bytes": self.weights_bytes, "activation_bytes": self.activation_bytes,
                "total_bytes": self.total_bytes}


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of the tensors operations create while it is active, and their peak."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0

    def _release(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        inputs = {id(a) for a in (*args, *(kwargs or {}).values()) if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and id(t) not in inputs:  # in-place results are their input
                n = t.untyped_storage().nbytes()
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._release, n)
        return out


def peak_activation_bytes(run: Callable[[], object]) -> int:
    """The most bytes of tensors created by ``run()`` alive at one time (its result included)."""
    with torch.no_grad(), _LiveBytes() as mode:
        result = run()
        del result
    return mode.peak


def weights_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (each storage once)."""
    tensors = {id(t): t for t in (*module.parameters(), *module.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _estimate(name: str, module: torch.nn.Module, dtype: torch.dtype, run: Callable[[], object]) -> MemoryEstimate:
    return MemoryEstimate(name=name, precision=str(dtype).removeprefix("torch."),
                          parameters=sum(p.numel() for p in module.parameters()), weights_bytes=weights_bytes(module),
                          activation_bytes=peak_activation_bytes(run))


def generator_memory(cfg: GeneratorConfig, *, dtype: torch.dtype = torch.float32) -> MemoryEstimate:
    """A generator at ``dtype`` (``Generator.to_precision``) rendering one frame at full resolution, batch 1."""
    with META:
        G = Generator(cfg).eval().requires_grad_(False)
    G.to_precision(dtype)

    def frame():
        z = torch.zeros(1, cfg.z_dim, device=META)
        return G.synthesis(G.mapping(z), noise_mode="const")  # [1, 3, R, R]

    return _estimate("generator", G, dtype, frame)


def flow_memory(cfg: FlowConfig, *, num_ws: int, dtype: torch.dtype = torch.float32) -> MemoryEstimate:
    """An attribute flow at ``dtype`` making one slider edit of a W+ latent [1, num_ws, input_dim] (fast solver).
    Built and run on the CPU (the ODE solver reads its times as numbers, which meta tensors do not hold): the
    released CNF is a few megabytes, its edit takes milliseconds."""
    flow = ConditionalCNF(cfg).eval().requires_grad_(False).to(dtype)

    def edit():
        w = torch.zeros(1, num_ws, cfg.input_dim, dtype=dtype)
        c = torch.zeros(1, cfg.cond_dim, dtype=dtype)
        return flow.z_to_w(flow.w_to_z(w, c, fast=True), c, fast=True)

    return _estimate("flow", flow, dtype, edit)


def encoder_memory(cfg: E4EConfig, *, dtype: torch.dtype = torch.float32) -> MemoryEstimate:
    """An e4e encoder at ``dtype`` encoding one aligned face [1, 3, input_size, input_size]."""
    with META:
        net = Encoder4Editing(cfg).eval().requires_grad_(False)
    net.to(dtype)

    def encode():
        return net(torch.zeros(1, 3, cfg.input_size, cfg.input_size, device=META, dtype=dtype))

    return _estimate("encoder", net, dtype, encode)


def loaded_memory(parts: list[MemoryEstimate]) -> int:
    """Bytes a process holding ``parts`` together needs on a GPU: every part's weights, the largest activation
    peak (the worker runs one network at a time) and ``CUDA_OVERHEAD``."""
    return (sum(p.weights_bytes for p in parts) + max((p.activation_bytes for p in parts), default=0)
            + CUDA_OVERHEAD)


__all__ = ["MemoryEstimate", "CUDA_OVERHEAD", "generator_memory", "flow_memory", "encoder_memory", "loaded_memory",
           "peak_activation_bytes", "weights_bytes"]
