"""Process-level runtime tuning for CPU inference, applied explicitly by entry points (never at import)."""
from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
import threading

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_tuned = False


def tune_allocator(*, keep_bytes: int = 1 << 30) -> bool:
    """Stop glibc from returning large freed blocks to the OS after every use.

    By default glibc serves allocations above ~32 MB with fresh ``mmap`` pages and unmaps them on free, so every
    large activation of a 256 px generator page-faults anew (measured: a 128 x 257 x 257 blur took 51 ms instead
    of 11 ms). Raising the mmap and trim thresholds keeps freed memory in the heap for reuse. Returns whether it
    applied (only on Linux with glibc); harmless to call twice.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # Some glibc versions cap the mmap threshold at 32 MB; then turn large-block mmap off altogether.
    mapped = mallopt(_M_MMAP_THRESHOLD, int(keep_bytes)) == 1 or mallopt(_M_MMAP_MAX, 0) == 1
    ok = mapped and mallopt(_M_TRIM_THRESHOLD, int(keep_bytes)) == 1
    _tuned = ok
    return ok


class GracefulStop:
    """Context manager for long jobs: while active, the first SIGINT/SIGTERM only sets ``requested`` (the job
    finishes its step and writes a checkpoint); a second one interrupts at once. Handlers are installed only
    from the main thread and restored on exit."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU thread count (None: leave torch's choice); below 1 is a user error."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def full_float32() -> None:
    """float32 means float32 on a GPU too: TF32 off for cuDNN convolutions and CUDA matrix products. torch turns it
    on for convolutions by default on Ampere and later GPUs; it rounds their inputs to 10 mantissa bits as float16
    does (2e-3 of the image range on the StyleGAN2 fixtures in float16, 20 times their tolerance), and NVIDIA's
    StyleGAN2 training keeps it off unless asked (``--allow-tf32``). Process-wide; float16 / bfloat16 layers are
    unaffected. Called by the worker and the commands when they open a CUDA device."""
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
