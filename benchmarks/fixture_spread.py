"""How far the reference-fixture tests are from their tolerances under other CPU kernels and thread counts.

The fixtures under ``shared/reference`` were generated on one CPU (AVX-512 kernels). Other x86 CPUs round float32
work differently (ATen's vectorised kernels, oneDNN and MKL pick their code paths by CPU), and an adaptive ODE
solver amplifies that. This script runs the fixture tests themselves (``pytest -m fixture``, the same calls through
the public loaders) in one subprocess per configuration, with this file loaded as a pytest plugin that records every
tolerance check instead of asserting it:

* configurations: ``native`` (whatever this CPU has), ``avx2`` (``ATEN_CPU_CAPABILITY=avx2``,
  ``DNNL_MAX_CPU_ISA=AVX2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``: an AVX2 CPU without AVX-512) and ``default``
  (``ATEN_CPU_CAPABILITY=default``, ``DNNL_MAX_CPU_ISA=SSE41``, ``MKL_ENABLE_INSTRUCTIONS=SSE4_2``: no vector
  kernels), each at 1 and 2 threads (held for the whole run: the tests' own one-thread pins are overridden);
* per check (a ``torch.testing.assert_close`` with a non-zero tolerance in a fixture test): the max absolute error
  in each configuration and the share of the tolerance it uses, max over elements of
  ``|actual - expected| / (atol + rtol * |expected|)`` (1.0 = at the limit). Exact checks (atol = rtol = 0) still
  assert.

Prints a Markdown table (the largest share first) for ``docs/FIXTURE_SPREAD.md``. About 4 minutes on 2 cores.

    python benchmarks/fixture_spread.py [--configs native avx2 default] [--threads 1 2] [-k EXPR] [--json FILE]
"""
from __future__ import annotations

import argparse
import datetime
import json
import linecache
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


# --- the pytest plugin (``-p benchmarks.fixture_spread --spread-out FILE``) ------------------------------------

def pytest_addoption(parser):
    parser.addoption("--spread-out", default=None, help="record the fixture tests' tolerance checks to this JSON file")
    parser.addoption("--spread-threads", type=int, default=None, help="hold torch at this many threads")


class _Recorder:
    """Replaces ``torch.testing.assert_close`` while the tests run: tolerance checks are measured, not asserted."""

    def __init__(self, torch):
        self.torch = torch
        self.real = torch.testing.assert_close
        self.checks: dict[str, dict] = {}
        self.outcomes: dict[str, str] = {}
        self.nodeid = ""

    def assert_close(self, actual, expected, *args, rtol=None, atol=None, msg=None, **kwargs):
        torch = self.torch
        tensors = isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor)
        if not tensors or not actual.is_floating_point() or args:
            return self.real(actual, expected, *args, rtol=rtol, atol=atol, msg=msg, **kwargs)
        if rtol is None and atol is None:  # torch's defaults for the dtype
            rtol, atol = {torch.float64: (1e-7, 1e-7), torch.float16: (1e-3, 1e-5)}.get(actual.dtype, (1.3e-6, 1e-5))
        if rtol == 0 and atol == 0:
            return self.real(actual, expected, rtol=rtol, atol=atol, msg=msg, **kwargs)
        diff = (actual.detach().double() - expected.detach().double()).abs()
        allowed = atol + rtol * expected.detach().double().abs()
        frame = sys._getframe(1)
        label = _label(frame, msg)
        key = f"{self.nodeid}|{frame.f_lineno}|{label}"
        error, share = float(diff.max()), float((diff / allowed).max())
        old = self.checks.get(key)
        if old is None or share > old["share"]:
            self.checks[key] = {"test": self.nodeid, "check": label, "atol": atol, "rtol": rtol, "error": error,
                                "share": share}

    def pytest_runtest_setup(self, item):
        self.nodeid = item.nodeid

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[report.nodeid] = report.outcome


def _label(frame, msg) -> str:
    """What a check compares: its message (without the error text), else the first argument as written."""
    if callable(msg):
        msg = msg("")
    if isinstance(msg, str) and msg.strip(" :"):
        return msg.strip(" :")
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    text = line.split("assert_close(", 1)[-1]
    depth = 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            return text[:i].strip()
    return text.strip()


def pytest_configure(config):
    out = config.getoption("--spread-out")
    if not out:
        return
    import torch

    threads = config.getoption("--spread-threads")
    if threads:
        torch.set_num_threads(threads)
        torch.set_num_threads = lambda n: None  # the tests' one-thread pins must not undo the configuration
    recorder = _Recorder(torch)
    torch.testing.assert_close = recorder.assert_close
    config.pluginmanager.register(recorder, "fixture-spread-recorder")
    config._fixture_spread = (recorder, out)


def pytest_unconfigure(config):
    recorder, out = getattr(config, "_fixture_spread", (None, None))
    if recorder is not None:
        Path(out).write_text(json.dumps({"checks": list(recorder.checks.values()), "outcomes": recorder.outcomes}))


# --- the driver --------------------------------------------------------------------------------------------------

def _run(config: str, threads: int, keyword: str | None, out: Path) -> dict:
    env = {**os.environ, **CONFIGS[config], "CI": "true", "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "fixture", "-p",
           "benchmarks.fixture_spread", "--spread-out", str(out), "--spread-threads", str(threads)]
    if keyword:
        cmd += ["-k", keyword]
    subprocess.run(cmd, cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _table(runs: dict[str, dict]) -> str:
    names = list(runs)
    rows: dict[tuple, dict] = {}
    for name, run in runs.items():
        for c in run["checks"]:
            row = rows.setdefault((c["test"], c["check"]), {"tol": (c["atol"], c["rtol"]), "error": {}, "share": 0.0})
            row["error"][name] = max(row["error"].get(name, 0.0), c["error"])
            row["share"] = max(row["share"], c["share"])
    lines = ["| test | check | atol / rtol | " + " | ".join(names) + " | max share |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in names) + " | ---: |"]
    for (test, check), row in sorted(rows.items(), key=lambda kv: -kv[1]["share"]):
        errors = " | ".join(f"{row['error'][n]:.2g}" if n in row["error"] else "–" for n in names)
        short = test.replace("tests/engine/", "")
        lines.append(f"| `{short}` | `{check}` | {row['tol'][0]:.2g} / {row['tol'][1]:.2g} | {errors} | "
                     f"{row['share']:.0%} |")
    failed = sorted({t for run in runs.values() for t, o in run["outcomes"].items() if o == "failed"})
    lines.append("")
    lines.append(f"{len(rows)} checks in {len({t for t, _ in rows})} tests; tests failing in some configuration "
                 f"(an exact or non-tensor assertion): {', '.join(failed) if failed else 'none'}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression (a subset of the tests)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw records here")
    args = parser.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            for threads in args.threads:
                name = f"{config} {threads}t"
                print(f"running {name} ...", file=sys.stderr, flush=True)
                runs[name] = _run(config, threads, args.keyword, Path(tmp) / f"{config}_{threads}.json")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    import torch

    print(f"Measured {datetime.date.today().isoformat()} on {_cpu()} ({os.cpu_count()} cores, native kernels "
          f"{torch.backends.cpu.get_cpu_capability()}), torch {torch.__version__}. Columns: max |actual - expected| "
          "per configuration (kernels, threads); max share: the largest fraction of the tolerance any element used.\n")
    print(_table(runs))


if __name__ == "__main__":
    main()
