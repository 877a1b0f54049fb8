"""What every release manifest records the same way: the released file (name, sha256, size), the hardware, the
training run's facts, the release's own command and time, the run's held-out curve from its ``eval.csv``, latencies;
and the generator a latent-space model (a flow, an encoder) is released beside."""
from __future__ import annotations

import csv
import os
import platform
import shlex
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from engine.assets import DEFAULT_GENERATOR
from engine.errors import ModelFormatError
from engine.files.storage import file_sha256


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what the platform module knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def option_value(command_line: str, option: str) -> str | None:
    """The value of ``--option V`` or ``--option=V`` in a recorded command line, or None."""
    tokens = shlex.split(command_line)
    for i, tok in enumerate(tokens):
        if tok == option and i + 1 < len(tokens):
            return tokens[i + 1]
        if tok.startswith(option + "="):
            return tok.split("=", 1)[1]
    return None


def file_facts(path: str | os.PathLike) -> dict:
    """The released file: name, sha256 and size in bytes."""
    path = Path(path)
    return {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def hardware(*, threads: int | None = None, device: str | None = "cpu", command: str | None = None, **more) -> dict:
    """The machine a run trained on: CPU model and count, torch's threads and version, the device. With the run's
    recorded ``command``, threads and device come from its ``--threads`` / ``--device`` (``device`` when it names
    none). ``more``: further entries (processes)."""
    if command is not None:
        recorded = option_value(command, "--threads")
        threads = int(recorded) if recorded else threads
        device = option_value(command, "--device") or device
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": threads, "device": device,
            "torch": torch.__version__, **more}


def release_facts(source: str | os.PathLike, *, command_line: str) -> dict:
    """This release: its command, its time (UTC) and the file it released."""
    return {"release_command": command_line, "released_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "released_from": Path(source).name}


def run_facts(extras: dict) -> dict:
    """The training run of a model file written by a ``engine.train.loop.ModelTrainer`` (its ``extras``): command,
    seeds, config, length, time and hardware."""
    return {"command": extras.get("command_line", ""), "data_seed": extras.get("data_seed"),
            "eval_seed": extras.get("eval_seed"), "train_config": extras.get("train_config"),
            "steps": extras.get("step"), "images_seen": extras.get("images_seen"),
            "train_seconds": round(float(extras.get("train_seconds", 0.0)), 1),
            "hardware": hardware(threads=extras.get("threads"))}


def eval_curve(run_dir: str | os.PathLike, *, last_step: float | None = None) -> list[dict]:
    """The rows of a run's ``eval.csv`` up to ``last_step`` (numbers as floats, other cells as text); [] when the run
    folder has none."""
    path = Path(run_dir) / "eval.csv"
    if not path.is_file():
        return []

    def cell(text: str):
        try:
            return float(text)
        except ValueError:
            return text

    with path.open(newline="") as f:
        rows = [{k: cell(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return [r for r in rows if last_step is None or r["step"] <= last_step]


def latency_ms(run: Callable[[], object], *, runs: int, warmup: int = 0, digits: int = 1) -> dict:
    """Milliseconds per call of ``run``: median and 95th percentile over ``runs`` calls after ``warmup`` untimed
    ones, rounded to ``digits``."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    p95 = times[min(runs - 1, round(0.95 * (runs - 1)))]
    return {"median": round(statistics.median(times), digits), "p95": round(p95, digits)}


def released_generator(out_dir: str | os.PathLike, trained_for: str | None, *, source: str | os.PathLike,
                       what: str) -> tuple[Path, str]:
    """``(path, sha256)`` of ``out_dir/generator.pt``, the generator ``source`` (``what``: "a flow") must have been
    trained for (``trained_for``: the sha256 it recorded); ModelFormatError when there is none or another one."""
    path = Path(out_dir) / DEFAULT_GENERATOR
    if not path.is_file():
        raise ModelFormatError(f"there is no generator at {path} to release {what} for")
    sha = file_sha256(path)
    if trained_for != sha:
        raise ModelFormatError(f"{source} was trained for generator {str(trained_for)[:12]}..., not for {path.name} "
                               f"({sha[:12]}...): train {what} for this generator first")
    return path, sha


__all__ = ["cpu_model", "option_value", "file_facts", "hardware", "release_facts", "run_facts", "eval_curve",
           "latency_ms", "released_generator"]
