"""Training StyleFlow's conditional CNF by maximum likelihood (``python main.py train flow``; FACTS §10).

Data: W+ latents with their 17-value conditions (``engine.train.flow_data``): sampled from a generator and labelled by
the attribute estimator, or StyleFlow's released files. They are cached as ``OUT/flow_data.npz`` (with the recipe that
made them in ``flow_data.json``), so a resumed run, or a fresh run with the same recipe, reuses them. The last
``val_n`` rows are held out.

Loss, as StyleFlow's ``train_flow.py``: ``z, logp = flow(w, c, 0)`` with the batch-norm layers in train mode,
``loss = -mean_B(sum_{rows, dims} log N(z; 0, I) - sum_rows logp)``, Adam (default betas), learned end time trained
too. Reported per dimension: NLL in **nats per W+ coordinate** (``loss / (num_ws * w_dim)``); the held-out NLL is
computed in eval mode (running statistics) with the divergence noise seeded by ``EVAL_NOISE_SEED``.

Gradients: plain backpropagation through the solver's steps by default (``adjoint=False``). On a CPU it is about
3x faster than StyleFlow's adjoint method for the embedded default's flow (measured, 1 thread, batch 8 x 10 x 256,
hidden 256-256-256, dopri5 at 1e-5: 0.19 s vs 0.61 s per step, NFE 20 forward vs 47 forward + adjoint); the memory
it costs (the graph of every solver stage) is small at these sizes. ``adjoint=True`` gives StyleFlow's gradients.

Randomness: step ``s`` runs with the global RNG (the Hutchinson noise is drawn from it) forked and seeded from
``SeedSequence([seed, s])``; epoch ``e``'s batch order is a permutation seeded from ``SeedSequence([seed, 1, e])``.
The step counter is therefore the complete random state, and a resumed run repeats an uninterrupted one bit for
bit (on the CPU, with the same thread count).

Files under ``out_dir``: ``checkpoint.pt`` (training state, atomic, every ``checkpoint_every`` steps and on
Ctrl-C / SIGTERM), ``flow.pt`` (``save_flow`` with extras: the condition layout, lighting presets, condition
statistics, the generator it belongs to, training figures), ``metrics.csv`` (training loss, NFE, end time: means over
``log_every`` steps), ``eval.csv`` (held-out NLL), ``flow_data.npz`` / ``flow_data.json``, ``config.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from engine.algorithms.flow_edit import CONDITION_NAMES, LIGHTING_PRESETS, NUM_LIGHT
from engine.algorithms.flow_layout import STYLEFLOW
from engine.files.checkpoints import (
    atomic_torch_save,
    check_training_state,
    read_training_state,
    resume_path,
    resumed_config,
)
from engine.files.flows import save_flow
from engine.files.paths import command_line
from engine.models.flow import ADAPTIVE_SOLVERS, CNF, FIXED_SOLVERS, ConditionalCNF, FlowConfig
from engine.runtime import GracefulStop
from engine.train.csvlog import CsvLog
from engine.train.flow_data import (
    check_flow_data,
    load_flow_data,
    read_styleflow_data,
    sample_flow_data,
    save_flow_data,
    styleflow_lighting_presets,
)

STATE_FORMAT = "face-editor/train-flow"
STATE_VERSION = 1
CHECKPOINT_NAME, MODEL_NAME = "checkpoint.pt", "flow.pt"
DATA_NAME, DATA_SPEC_NAME = "flow_data.npz", "flow_data.json"
METRIC_FIELDS = ("step", "epoch", "loss", "nll_nats_per_dim", "nfe_forward", "nfe_total", "end_time",
                 "sec_per_step", "time_s")
EVAL_FIELDS = ("step", "val_nll_nats_per_dim", "val_bits_per_dim", "val_nfe", "time_s")
OVERRIDABLE_ON_RESUME = ("steps", "eval_every", "eval_batch", "checkpoint_every", "log_every")
EVAL_NOISE_SEED = 0
LOG_2PI = math.log(2 * math.pi)

# Lighting presets for data without StyleFlow's rows, in ``LIGHTING_PRESETS`` order: (SH coefficient, quantile).
# SH order (engine.synth): DC, y (up), z (towards the viewer), x (image right), then the 2nd order terms.
QUANTILE_PRESETS: dict[str, tuple[int, float]] = {
    "left_to_right": (3, 0.05), "right_to_left": (3, 0.95), "down_to_up": (1, 0.05), "up_to_down": (1, 0.95),
    "no_light": (0, 0.05), "front_light": (2, 0.95)}


@dataclass(frozen=True)
class FlowTrainConfig:
    """The recipe of a flow training run (the architecture is a ``FlowConfig``). Intervals count steps.

    batch_size: samples per step (StyleFlow: 5); each sample's num_ws rows are points of the batch-norm statistics.
    val_n: held-out samples (the last rows of the data). eval_batch: samples per held-out forward pass.
    """

    steps: int = 5000
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    val_n: int = 500
    eval_every: int = 250
    eval_batch: int = 100
    checkpoint_every: int = 250
    log_every: int = 10

    def __post_init__(self):
        for name in ("steps", "batch_size", "val_n", "eval_every", "eval_batch", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.seed < 0:
            raise ValueError(f"need lr > 0 and seed >= 0, got lr={self.lr}, seed={self.seed}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FlowTrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown flow training settings {sorted(unknown)} (written by a newer version?)")
        return cls(**d)


def default_hidden_dims(w_dim: int) -> tuple[int, ...]:
    """StyleFlow's five 512-wide layers for 512-dim W; three ``w_dim``-wide layers for smaller generators (the
    embedded default's 256: 0.19 s per CPU step instead of 0.28 s with five)."""
    return (512,) * 5 if w_dim >= 512 else (w_dim,) * 3


def _seed_int(*entropy: int) -> int:
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1, np.uint64)[0])


def data_digest(data: dict) -> str:
    """sha256 of the arrays (w, cond) of a flow data set: identifies it independently of the file's container."""
    h = hashlib.sha256()
    for key in ("w", "cond"):
        a = np.ascontiguousarray(data[key], dtype=np.float32)
        h.update(f"{key}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def gaussian_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over every axis but the batch. [B, ...] -> [B]"""
    return (-0.5 * LOG_2PI - 0.5 * z.square()).flatten(1).sum(1)


def negative_log_likelihood(flow: ConditionalCNF, w: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """StyleFlow's per-sample NLL of W+ latents w [B, num_ws, D] under cond [B, C], in nats. -> [B]"""
    z, logp = flow(w, cond, torch.zeros(*w.shape[:-1], 1, dtype=w.dtype, device=w.device))
    return -(gaussian_log_density(z) - logp.flatten(1).sum(1))


def lighting_presets(light: np.ndarray) -> np.ndarray:
    """Six lighting conditions from the data's SH rows [N, 9], in ``LIGHTING_PRESETS`` order: for each preset, the
    row at a quantile of one coefficient (``QUANTILE_PRESETS``), so every preset is a lighting that occurs. -> [6, 9]
    """
    if light.ndim != 2 or light.shape[1] != NUM_LIGHT or len(light) == 0:
        raise ValueError(f"lighting must be [N, {NUM_LIGHT}] with N >= 1, got shape {light.shape}")
    rows = []
    for name in LIGHTING_PRESETS:
        k, q = QUANTILE_PRESETS[name]
        order = np.argsort(light[:, k], kind="stable")
        rows.append(order[int(round(q * (len(light) - 1)))])
    return light[rows].astype(np.float32)


def condition_stats(cond: np.ndarray) -> dict:
    """Per-column statistics of the conditions [N, 17] for slider limits (plain lists, ``CONDITION_NAMES`` order)."""
    cond = cond.astype(np.float64)
    return {"cond_names": list(CONDITION_NAMES), "cond_mean": cond.mean(0).tolist(), "cond_std": cond.std(0).tolist(),
            "cond_min": cond.min(0).tolist(), "cond_max": cond.max(0).tolist(),
            "cond_q01": np.quantile(cond, 0.01, axis=0).tolist(), "cond_q99": np.quantile(cond, 0.99, axis=0).tolist()}


# ---- data -----------------------------------------------------------------------------------------------------


def generator_spec(generator: str | Path, estimator: str | Path, *, n: int, seed: int, truncation_psi: float) -> dict:
    """The recipe of sampled training data (files named by path and sha256)."""
    from engine.files.storage import file_sha256

    return {"kind": "generator", "generator": str(generator), "generator_sha256": file_sha256(generator),
            "estimator": str(estimator), "estimator_sha256": file_sha256(estimator), "n": int(n), "seed": int(seed),
            "truncation_psi": float(truncation_psi)}


def styleflow_spec(folder: str | Path) -> dict:
    """The recipe of StyleFlow's data in ``folder``: the UI's files (``sg2latents.pickle``, ``light.npy``) or
    ``train_flow.py``'s (``latents.npy``, ``lighting.npy``), whichever are there, and ``attributes.npy``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--styleflow-data: no folder {folder}")

    def pick(*names: str) -> str:
        found = [n for n in names if (folder / n).is_file()]
        if not found:
            raise FileNotFoundError(f"{folder} holds none of {', '.join(names)} (StyleFlow's data files)")
        return found[0]

    return {"kind": "styleflow", "folder": str(folder), "latents": pick("sg2latents.pickle", "latents.npy"),
            "attributes": pick("attributes.npy"), "light": pick("light.npy", "lighting.npy")}


def _same_recipe(a: dict, b: dict) -> bool:
    """Whether two data recipes make the same data (paths may differ when the files are the same)."""
    ignore = {"generator", "estimator"} if a.get("kind") == "generator" else set()
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def make_data(spec: dict, *, batch: int = 100, device: str | torch.device = "cpu", progress: bool = True
              ) -> dict[str, np.ndarray]:
    """The data a recipe describes: sampled and labelled (``kind='generator'``) or StyleFlow's files."""
    if spec["kind"] == "styleflow":
        return read_styleflow_data(spec["folder"], latents=spec["latents"], attributes=spec["attributes"],
                                   light=spec["light"])
    if spec["kind"] != "generator":
        raise ValueError(f"unknown flow data kind {spec['kind']!r}")
    from tqdm import tqdm

    from engine.files.loading import load_generator
    from engine.models.estimator import load_estimator

    G = load_generator(spec["generator"]).to(device).eval()
    E = load_estimator(spec["estimator"]).to(device).eval()
    with tqdm(total=spec["n"], unit="face", desc="label", file=sys.stderr, dynamic_ncols=True,
              disable=not progress) as bar:
        return sample_flow_data(G, E, spec["n"], seed=spec["seed"], batch=batch, truncation_psi=spec["truncation_psi"],
                                progress=lambda done, n: bar.update(done - bar.n))


def prepare_data(out_dir: str | Path, spec: dict | None, *, log=print, **make_kwargs) -> tuple[dict, dict]:
    """(data, spec): ``OUT/flow_data.npz`` when it was made by ``spec`` (or ``spec`` is None: whatever is there),
    else made now and cached there."""
    out_dir = Path(out_dir)
    data_path, spec_path = out_dir / DATA_NAME, out_dir / DATA_SPEC_NAME
    stored = json.loads(spec_path.read_text()) if spec_path.is_file() else None
    if data_path.is_file() and stored is not None and (spec is None or _same_recipe(stored, spec)):
        log(f"reusing the training data in {data_path}")
        return load_flow_data(data_path), stored
    if spec is None:
        raise FileNotFoundError(f"no cached training data in {out_dir} ({DATA_NAME} with {DATA_SPEC_NAME}); pass a "
                                "data source")
    log(f"making the training data: {json.dumps(spec)}")
    data = check_flow_data(make_data(spec, **make_kwargs))
    save_flow_data(data_path, data)
    spec_path.write_text(json.dumps(spec, indent=2))
    return data, spec


# ---- trainer --------------------------------------------------------------------------------------------------


class FlowTrainer:
    """Trains a ``ConditionalCNF`` on ``data`` ({"w": [N, num_ws, D], "cond": [N, C]}); rows ``N - val_n ..`` are
    held out. ``flow_cfg.input_dim`` / ``cond_dim`` must match the data. ``train()`` writes under ``out_dir``."""

    def __init__(self, cfg: FlowTrainConfig, flow_cfg: FlowConfig, data: dict, *, out_dir: str | Path | None = None,
                 data_spec: dict | None = None, device: str | torch.device = "cpu", command_line: str = "",
                 progress: bool = True):
        data = check_flow_data(data)
        n, num_ws, w_dim = data["w"].shape
        if flow_cfg.input_dim != w_dim or flow_cfg.cond_dim != data["cond"].shape[1]:
            raise ValueError(f"the flow maps {flow_cfg.input_dim}-dim latents under {flow_cfg.cond_dim} condition "
                             f"values; the data has {w_dim}-dim latents and {data['cond'].shape[1]} values")
        if n - cfg.val_n < cfg.batch_size:
            raise ValueError(f"{n} samples leave {n - cfg.val_n} for training after holding out {cfg.val_n}; need at "
                             f"least one batch of {cfg.batch_size}")
        self.cfg, self.flow_cfg = cfg, flow_cfg
        self.device = torch.device(device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.data_spec = dict(data_spec or {"kind": "arrays"})
        self.command_line = command_line
        self.progress = progress
        self.data_sha256 = data_digest(data)
        self.all_cond = data["cond"]  # [N, C] numpy, for presets and statistics
        # C-contiguous: sampled latents can come with another memory layout, which changes the matmul summation order
        # and so the last bits of a step (a resumed run, reading the cached file, would then differ)
        w = torch.from_numpy(np.ascontiguousarray(data["w"])).to(self.device)
        c = torch.from_numpy(np.ascontiguousarray(data["cond"])).to(self.device)
        self.train_n = n - cfg.val_n
        self.w_train, self.c_train = w[:self.train_n], c[:self.train_n]  # [n_train, num_ws, D], [n_train, C]
        self.w_val, self.c_val = w[self.train_n:], c[self.train_n:]
        self.dims = num_ws * w_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.flow = ConditionalCNF(flow_cfg)
        self.flow.to(self.device).train()
        self.opt = torch.optim.Adam(self.flow.parameters(), lr=cfg.lr)
        self.step = 0
        self.elapsed_s = 0.0
        self.stats: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}

    @property
    def steps_per_epoch(self) -> int:
        return self.train_n // self.cfg.batch_size  # the incomplete last batch is dropped (batch statistics)

    def batch_indices(self, step: int) -> torch.Tensor:
        """Training rows of step ``step``: epoch ``step // steps_per_epoch`` in a seeded order. -> int64 [B]"""
        epoch, k = divmod(step, self.steps_per_epoch)
        gen = torch.Generator().manual_seed(_seed_int(self.cfg.seed, 1, epoch))
        order = torch.randperm(self.train_n, generator=gen)
        return order[k * self.cfg.batch_size:(k + 1) * self.cfg.batch_size]

    def train_step(self) -> dict[str, float]:
        """One Adam step on StyleFlow's loss; returns the step's figures."""
        idx = self.batch_indices(self.step).to(self.device)
        w, c = self.w_train[idx], self.c_train[idx]  # [B, num_ws, D], [B, C]
        self.flow.train()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(_seed_int(self.cfg.seed, self.step))
            loss = negative_log_likelihood(self.flow, w, c).mean()
            nfe_forward = sum(self.flow.nfe.values())
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            nfe_total = sum(self.flow.nfe.values())  # the adjoint's backward solves count on; backprop adds none
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss.item()} at step {self.step}: lower --lr or tighten the solver")
        self.opt.step()
        self.step += 1
        self.stats = {"loss": loss.item(), "nll_nats_per_dim": loss.item() / self.dims, "nfe_forward": nfe_forward,
                      "nfe_total": nfe_total, "end_time": self.end_time()}
        return self.stats

    def end_time(self) -> float:
        """Mean learned end time T of the CNF blocks."""
        times = [m.times(torch.zeros(1), reverse=False)[-1].item() for m in self.flow.chain if isinstance(m, CNF)]
        return sum(times) / len(times)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out NLL in eval mode (running statistics), divergence noise seeded with ``EVAL_NOISE_SEED``.
        -> {val_nll_nats_per_dim, val_bits_per_dim, val_nfe (summed over the passes), step}"""
        was_training = self.flow.training
        self.flow.eval()
        total, nfe = 0.0, 0
        try:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(EVAL_NOISE_SEED)
                for w, c in zip(self.w_val.split(self.cfg.eval_batch), self.c_val.split(self.cfg.eval_batch)):
                    total += negative_log_likelihood(self.flow, w, c).double().sum().item()
                    nfe += sum(self.flow.nfe.values())
        finally:
            self.flow.train(was_training)
        nats = total / (len(self.w_val) * self.dims)
        self.last_eval = {"val_nll_nats_per_dim": nats, "val_bits_per_dim": nats / math.log(2), "val_nfe": nfe,
                          "step": self.step}
        return self.last_eval

    # ---- state ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The full training state (plain containers and tensors; loadable with ``weights_only=True``)."""
        return {
            "format": STATE_FORMAT, "format_version": STATE_VERSION, "config": self.cfg.to_dict(),
            "flow_arch": self.flow_cfg.to_dict(),
            "flow": {k: v.detach().to("cpu").clone() for k, v in self.flow.state_dict().items()},
            "opt": self.opt.state_dict(), "step": self.step, "elapsed_s": self.elapsed_s,
            "data": {"spec": json.dumps(self.data_spec), "sha256": self.data_sha256, "train_n": self.train_n,
                     "val_n": self.cfg.val_n},
            "rng": {"scheme": "global RNG forked and seeded by SeedSequence([seed, step]) per step; epoch order by "
                    "SeedSequence([seed, 1, epoch])", "seed": self.cfg.seed},
            "command_line": self.command_line, "stats": dict(self.stats), "last_eval": dict(self.last_eval),
        }

    def load_state_dict(self, state: dict) -> None:
        check_state(state)
        if state["data"]["sha256"] != self.data_sha256 or state["data"]["val_n"] != self.cfg.val_n:
            raise ValueError("the training data differ from the checkpoint's (another flow_data.npz or held-out "
                             "split); resume in the run folder that made it")
        self.flow.load_state_dict(state["flow"])
        self.opt.load_state_dict(state["opt"])
        self.step = int(state["step"])
        self.elapsed_s = float(state["elapsed_s"])
        self.stats = dict(state.get("stats") or {})
        self.last_eval = dict(state.get("last_eval") or {})

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path is not None else self._out(CHECKPOINT_NAME)
        atomic_torch_save(self.state_dict(), path)
        return path

    def extras(self) -> dict:
        """Metadata stored with the flow: lighting presets and condition statistics for the editor, provenance."""
        light = self.all_cond[:, :NUM_LIGHT]
        spec = self.data_spec
        if spec.get("kind") == "styleflow" and len(light) > max(LIGHTING_PRESETS.values()):
            presets = styleflow_lighting_presets(light)
            source = f"StyleFlow's light.npy rows {list(LIGHTING_PRESETS.values())}"
        else:
            presets, source = lighting_presets(light), "data rows at quantiles of SH coefficients " + json.dumps(
                QUANTILE_PRESETS)
        extras = {"condition_layout": STYLEFLOW.to_dict(),  # the data's condition is StyleFlow's 17 values
                  "lighting_presets": presets.tolist(), "lighting_preset_names": list(LIGHTING_PRESETS),
                  "lighting_presets_source": source, **condition_stats(self.all_cond),
                  "num_ws": int(self.w_train.shape[1]), "w_dim": int(self.w_train.shape[2]),
                  "training_steps": self.step, "training_time_s": round(self.elapsed_s, 1),
                  "train_config": json.dumps(self.cfg.to_dict()), "data": json.dumps(spec),
                  "data_sha256": self.data_sha256, "train_n": self.train_n, "val_n": self.cfg.val_n,
                  "command_line": self.command_line}
        if spec.get("kind") == "generator":
            extras["generator_sha256"] = spec["generator_sha256"]
        if self.last_eval:
            extras["val_nll_nats_per_dim"] = self.last_eval["val_nll_nats_per_dim"]
            extras["val_nll_step"] = self.last_eval["step"]
        return extras

    def export(self, path: str | Path | None = None) -> Path:
        """Write the flow (eval mode) with ``save_flow`` and ``extras()``."""
        path = Path(path) if path is not None else self._out(MODEL_NAME)
        save_flow(path, self.flow, extras=self.extras())
        return path

    # ---- loop -----------------------------------------------------------------------------------------------

    def _out(self, name: str) -> Path:
        if self.out_dir is None:
            raise ValueError("this trainer has no output folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name

    def train(self, *, max_seconds: float | None = None, on_step=None) -> str:
        """Train to ``cfg.steps``; ``"done"``, ``"time limit"`` (``max_seconds`` of training in this call) or
        ``"interrupted"`` (Ctrl-C / SIGTERM: the running step finishes). A checkpoint and ``flow.pt`` are written
        in every case. on_step: optional callback ``on_step(trainer)`` after every step."""
        from tqdm import tqdm

        cfg = self.cfg
        writes = self.out_dir is not None
        metrics = evals = None
        if writes:
            metrics = CsvLog(self._out("metrics.csv"), METRIC_FIELDS, resume_step=self.step)
            evals = CsvLog(self._out("eval.csv"), EVAL_FIELDS, resume_step=self.step)
            self._out("config.json").write_text(json.dumps(
                {"config": self.cfg.to_dict(), "flow": self.flow_cfg.to_dict(), "data": self.data_spec,
                 "train_n": self.train_n, "val_n": cfg.val_n, "command_line": self.command_line}, indent=2))
            if self.step == 0:
                evals.write({"step": 0, "time_s": 0.0, **self.evaluate()})
        status, started = "done", time.perf_counter()
        window: list[tuple[dict, float]] = []  # the steps since the last metrics row (a row holds their means)
        with GracefulStop() as stop, tqdm(total=cfg.steps, initial=self.step, unit="step", file=sys.stderr,
                                          dynamic_ncols=True, disable=not self.progress, desc="flow") as bar:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                stats = self.train_step()
                dt = time.perf_counter() - t0
                self.elapsed_s += dt
                bar.update(1)
                post = {"nll/dim": f"{stats['nll_nats_per_dim']:.3f}", "nfe": stats["nfe_total"],
                        "T": f"{stats['end_time']:.3f}"}
                if self.last_eval:
                    post["val"] = f"{self.last_eval['val_nll_nats_per_dim']:.3f}"
                bar.set_postfix(post, refresh=False)
                s = self.step
                window.append((stats, dt))
                if metrics is not None and s % cfg.log_every == 0:
                    row = {k: sum(st[k] for st, _ in window) / len(window) for k in stats}
                    metrics.write({"step": s, "epoch": s / self.steps_per_epoch, **row,
                                   "sec_per_step": sum(t for _, t in window) / len(window),
                                   "time_s": round(self.elapsed_s, 2)})
                    window = []
                if s % cfg.eval_every == 0 or s == cfg.steps:
                    result = self.evaluate()
                    if evals is not None:
                        evals.write({"step": s, "time_s": round(self.elapsed_s, 2), **result})
                if writes and s % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if on_step is not None:
                    on_step(self)
                if stop.requested:
                    status = "interrupted"
                    break
                if max_seconds is not None and time.perf_counter() - started >= max_seconds:
                    status = "time limit"
                    break
        if writes:
            self.save_checkpoint()
            self.export()
        return status


_STATE_CHECK = dict(fmt=STATE_FORMAT, version=STATE_VERSION, what="flow training checkpoint",
                    wrong="not a flow training checkpoint (train flow writes OUT/checkpoint.pt)")


def check_state(state) -> None:
    """Refuse anything that is not a flow training state this version can continue."""
    check_training_state(state, **_STATE_CHECK)


def read_state(path: str | Path) -> dict:
    """Load a training checkpoint written by ``FlowTrainer.save_checkpoint`` (weights only, on the CPU)."""
    return read_training_state(path, **_STATE_CHECK)


def trainer_from_state(state: dict, data: dict, *, overrides: dict | None = None, **kwargs) -> FlowTrainer:
    """A FlowTrainer continuing ``state`` exactly; ``overrides``: ``OVERRIDABLE_ON_RESUME`` settings (None keeps)."""
    check_state(state)
    cfg = resumed_config(FlowTrainConfig, state["config"], overrides, allowed=OVERRIDABLE_ON_RESUME)
    kwargs.setdefault("data_spec", json.loads(state["data"]["spec"]))
    kwargs.setdefault("command_line", state.get("command_line", ""))
    trainer = FlowTrainer(cfg, FlowConfig.from_dict(state["flow_arch"]), data, **kwargs)
    trainer.load_state_dict(state)
    return trainer


# ---- command line ---------------------------------------------------------------------------------------------


def _hidden(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"hidden widths are dash-separated integers like 256-256-256, got {text!r}"
                                         ) from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"hidden widths must be positive, got {text!r}")
    return dims


def add_flow_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``train flow``."""
    d, f = FlowTrainConfig(), FlowConfig()
    io = p.add_argument_group("data and files")
    io.add_argument("--out", required=True, help="run folder (checkpoint.pt, flow.pt, metrics.csv, eval.csv, "
                    "flow_data.npz)")
    io.add_argument("--generator", metavar="MODEL", help="sample latents from this generator (default: the embedded "
                    "default)")
    io.add_argument("--estimator", metavar="MODEL", help="label the faces with this attribute estimator (default: the "
                    "embedded one)")
    io.add_argument("--styleflow-data", metavar="DIR", help="train on StyleFlow's released files instead "
                    "(sg2latents.pickle or latents.npy, attributes.npy, light.npy)")
    io.add_argument("--n", type=int, default=10000, help="latents to sample (default 10000)")
    io.add_argument("--data-seed", type=int, default=0, help="seed of the sampled z (default 0)")
    io.add_argument("--psi", type=float, default=1.0, help="truncation psi of the sampled latents (default 1)")
    io.add_argument("--val-n", type=int, help="held-out samples, the last rows of the data (default 5%%, at least 1)")
    io.add_argument("--resume", metavar="PATH|auto", help="continue a training checkpoint; 'auto': OUT/checkpoint.pt "
                    "if present")
    io.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    io.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    io.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    arch = p.add_argument_group("architecture (StyleFlow's builder)")
    arch.add_argument("--hidden", type=_hidden, help="ODE-net hidden widths, e.g. 256-256-256 (default: three "
                      "w_dim-wide layers; 512-512-512-512-512 for 512-dim W, as StyleFlow)")
    arch.add_argument("--blocks", type=int, default=f.num_blocks, help=f"CNF blocks (default {f.num_blocks})")
    arch.add_argument("--no-batch-norm", action="store_true", help="no moving batch norm around the blocks")
    arch.add_argument("--solver", default=f.solver, choices=ADAPTIVE_SOLVERS + FIXED_SOLVERS,
                      help=f"(default {f.solver})")
    arch.add_argument("--step-size", type=float, help="step of a fixed-step solver")
    arch.add_argument("--atol", type=float, default=f.atol, help=f"(default {f.atol:g}, as StyleFlow)")
    arch.add_argument("--rtol", type=float, default=f.rtol, help=f"(default {f.rtol:g}, as StyleFlow)")
    arch.add_argument("--adjoint", action="store_true", help="gradients by the adjoint method (StyleFlow's; about 3x "
                      "slower on a CPU than the default backpropagation through the solver)")
    rec = p.add_argument_group("recipe")
    length = rec.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help=f"training steps (default {d.steps})")
    length.add_argument("--epochs", type=float, help="training length in passes over the training rows")
    rec.add_argument("--batch", type=int, default=d.batch_size, help=f"(default {d.batch_size}; StyleFlow: 5)")
    rec.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr:g})")
    rec.add_argument("--seed", type=int, default=d.seed, help=f"initialisation, batch order, noise (default {d.seed})")
    sch = p.add_argument_group("schedule (in steps)")
    sch.add_argument("--eval-every", type=int, help=f"held-out NLL interval (default {d.eval_every})")
    sch.add_argument("--eval-batch", type=int, help=f"held-out samples per pass (default {d.eval_batch})")
    sch.add_argument("--checkpoint-every", type=int, help=f"(default {d.checkpoint_every})")
    sch.add_argument("--log-every", type=int, help=f"metrics.csv row interval (default {d.log_every})")
    sch.add_argument("--max-minutes", type=float, help="stop (with a checkpoint and flow.pt) after this much training")


def _data_spec(args) -> dict:
    if args.styleflow_data:
        if args.generator or args.estimator:
            raise ValueError("--styleflow-data brings its own latents and labels; drop --generator / --estimator")
        return styleflow_spec(args.styleflow_data)
    from engine.assets import default_estimator_path, default_generator_path

    return generator_spec(args.generator or default_generator_path(), args.estimator or default_estimator_path(),
                          n=args.n, seed=args.data_seed, truncation_psi=args.psi)


def run_train_flow(args) -> int:
    """``train flow``: train (or resume) a flow; 0 when done or stopped by --max-minutes, 130 when interrupted."""
    from engine.train.distributed import resolve_device

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    out = Path(args.out)
    schedule = {k: getattr(args, k) for k in ("eval_every", "eval_batch", "checkpoint_every", "log_every")}
    common = dict(out_dir=out, device=device, progress=not args.quiet)

    resume = resume_path(args.resume, args.out, name=CHECKPOINT_NAME, what="flow training checkpoint")
    if resume is not None:
        state = read_state(resume)
        data, spec = prepare_data(out, json.loads(state["data"]["spec"]), log=log, device=device,
                                  progress=not args.quiet)
        steps = args.steps
        if args.epochs is not None:
            steps = math.ceil(args.epochs * (state["data"]["train_n"] // state["config"]["batch_size"]))
        trainer = trainer_from_state(state, data, overrides={**schedule, "steps": steps}, data_spec=spec, **common)
        log(f"resuming {resume} at step {trainer.step}")
    else:
        if (out / CHECKPOINT_NAME).exists():
            raise ValueError(f"{out} already holds a flow training run: continue it with --resume auto or choose "
                             "another --out")
        data, spec = prepare_data(out, _data_spec(args), log=log, device=device, progress=not args.quiet)
        n, num_ws, w_dim = data["w"].shape
        val_n = args.val_n if args.val_n is not None else max(1, round(0.05 * n))
        batch = args.batch
        steps = args.steps or FlowTrainConfig.steps
        if args.epochs is not None:
            steps = max(1, math.ceil(args.epochs * ((n - val_n) // batch)))
        cfg = FlowTrainConfig(steps=steps, batch_size=batch, lr=args.lr, seed=args.seed, val_n=val_n,
                              **{k: v for k, v in schedule.items() if v is not None})
        flow_cfg = FlowConfig(input_dim=w_dim, hidden_dims=args.hidden or default_hidden_dims(w_dim),
                              cond_dim=data["cond"].shape[1], num_blocks=args.blocks,
                              batch_norm=not args.no_batch_norm, solver=args.solver, atol=args.atol, rtol=args.rtol,
                              step_size=args.step_size, adjoint=args.adjoint)
        trainer = FlowTrainer(cfg, flow_cfg, data, data_spec=spec, command_line=command_line(), **common)
    f = trainer.flow_cfg
    log(f"training a flow {f.input_dim}-dim, hidden {'-'.join(map(str, f.hidden_dims))}, {f.num_blocks} block(s), "
        f"{f.solver} at {f.atol:g}/{f.rtol:g}, {'adjoint' if f.adjoint else 'backprop'} on {trainer.train_n} "
        f"samples ({trainer.cfg.val_n} held out), batch {trainer.cfg.batch_size}, {trainer.cfg.steps} steps "
        f"({trainer.cfg.steps / trainer.steps_per_epoch:.2f} epochs)")
    status = trainer.train(max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    val = trainer.last_eval.get("val_nll_nats_per_dim")
    log(f"{status} at step {trainer.step}: held-out NLL {'-' if val is None else f'{val:.4f}'} nats/dim; checkpoint "
        f"{out / CHECKPOINT_NAME}, flow {out / MODEL_NAME}")
    return 130 if status == "interrupted" else 0


__all__ = ["FlowTrainConfig", "FlowTrainer", "default_hidden_dims", "data_digest", "gaussian_log_density",
           "negative_log_likelihood", "lighting_presets", "condition_stats", "generator_spec", "styleflow_spec",
           "make_data", "prepare_data", "check_state", "read_state", "trainer_from_state", "add_flow_arguments",
           "run_train_flow", "STATE_FORMAT", "CHECKPOINT_NAME", "MODEL_NAME", "DATA_NAME", "METRIC_FIELDS",
           "EVAL_FIELDS", "EVAL_NOISE_SEED", "QUANTILE_PRESETS"]
