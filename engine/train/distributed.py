"""Multi-process data-parallel training with ``torch.distributed`` (gloo on CPU, nccl on CUDA).

Launch with ``torchrun --nproc_per_node N main.py train stylegan2 ...``: every process reads RANK, WORLD_SIZE and
LOCAL_RANK from the environment. Gradients are averaged with one ``all_reduce`` per optimiser step instead of
wrapping the networks in ``DistributedDataParallel``: DDP only supports gradients accumulated into ``.grad`` by
``backward()``, not ``torch.autograd.grad``, which the R1 and path-length terms need (with ``create_graph``);
averaging after each full backward pass is exact for every loss. Only rank 0 writes files; progress statistics
(losses in metrics.csv) are rank 0's own.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from engine import devices


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: its rank, the number of processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, *, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:local_rank`` when CUDA is available, else CPU; ``cuda`` -> ``cuda:local_rank``. Training
    runs on the CPU or CUDA only; any other name is refused (``DeviceError``) with the choices."""
    dev = devices.resolve_device(name, kinds=("cpu", "cuda"))
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process launch (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_process(rank: int, world_size: int, *, device: str = "auto", local_rank: int | None = None,
                 init_method: str = "env://") -> DistContext:
    """Join a process group (gloo on CPU, nccl on CUDA) and return this process's context.

    With ``init_method="env://"`` MASTER_ADDR and MASTER_PORT must be set (torchrun sets them).
    """
    local_rank = rank if local_rank is None else local_rank
    dev = resolve_device(device, local_rank=local_rank)
    if world_size > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def init_from_env(*, device: str = "auto") -> DistContext:
    """The context of this process: from torchrun's environment when present, else a single process."""
    if not launched_by_torchrun():
        return DistContext(device=resolve_device(device))
    return init_process(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), device=device,
                        local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params: list[torch.nn.Parameter], ctx: DistContext) -> None:
    """Replace each gradient by its mean over all processes (missing gradients count as zero)."""
    if not ctx.distributed or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # [total parameters]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for p in params:
        n = p.numel()
        mean = flat[offset:offset + n].view_as(p)
        if p.grad is None:
            p.grad = mean.clone()
        else:
            p.grad.copy_(mean)
        offset += n


def mean_over_processes(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of a tensor over all processes (a copy; the input is untouched)."""
    if not ctx.distributed:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / ctx.world_size


def max_over_processes(value: int, ctx: DistContext) -> int:
    """The largest ``value`` of all processes, on every process (used to stop all ranks together)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([float(value)], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def broadcast_module(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every process."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


__all__ = ["DistContext", "resolve_device", "launched_by_torchrun", "init_process", "init_from_env", "shutdown",
           "average_gradients", "mean_over_processes", "max_over_processes", "broadcast_module", "barrier"]
