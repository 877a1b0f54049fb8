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

Files under ``out_dir`` (the loop is ``engine.train.loop``): ``checkpoint.pt`` (training state, atomic, every
``checkpoint_every`` steps and at the end), ``flow.pt`` (``save_flow`` with extras: the condition layout, lighting
presets, condition statistics, the generator it belongs to, training figures), ``metrics.csv`` (training loss, NFE,
end time: means over ``log_every`` steps), ``eval.csv`` / ``eval.json`` (held-out NLL), ``flow_data.npz`` /
``flow_data.json``, ``config.json``.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.algorithms.flow_edit import CONDITION_NAMES, LIGHTING_PRESETS, NUM_LIGHT
from engine.algorithms.flow_layout import STYLEFLOW
from engine.files.configs import DictForm
from engine.files.flows import save_flow
from engine.models.flow import CNF, ConditionalCNF, FlowConfig
from engine.train.flow_data import (
    check_flow_data,
    load_flow_data,
    read_styleflow_data,
    sample_flow_data,
    save_flow_data,
    styleflow_lighting_presets,
)
from engine.train.loop import StepTrainer, require

STATE_FORMAT = "face-editor/train-flow"
STATE_VERSION = 1
MODEL_NAME = "flow.pt"
DATA_NAME, DATA_SPEC_NAME = "flow_data.npz", "flow_data.json"
METRIC_FIELDS = ("step", "epoch", "loss", "nll_nats_per_dim", "nfe_forward", "nfe_total", "end_time",
                 "sec_per_step", "time_s")
EVAL_FIELDS = ("step", "val_nll_nats_per_dim", "val_bits_per_dim", "val_nfe", "time_s")
EVAL_NOISE_SEED = 0
LOG_2PI = math.log(2 * math.pi)

# Lighting presets for data without StyleFlow's rows, in ``LIGHTING_PRESETS`` order: (SH coefficient, quantile).
# SH order (engine.synth): DC, y (up), z (towards the viewer), x (image right), then the 2nd order terms.
QUANTILE_PRESETS: dict[str, tuple[int, float]] = {
    "left_to_right": (3, 0.05), "right_to_left": (3, 0.95), "down_to_up": (1, 0.05), "up_to_down": (1, 0.95),
    "no_light": (0, 0.05), "front_light": (2, 0.95)}


@dataclass(frozen=True)
class FlowTrainConfig(DictForm, what="the flow training settings"):
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
        require(self, ("steps", "batch_size", "val_n", "eval_every", "eval_batch", "checkpoint_every", "log_every"),
                at_least=1)
        require(self, ("lr",), above=0)
        require(self, ("seed",), at_least=0)



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


class FlowTrainer(StepTrainer):
    """Trains a ``ConditionalCNF`` on ``data`` ({"w": [N, num_ws, D], "cond": [N, C]}); rows ``N - val_n ..`` are
    held out. ``flow_cfg.input_dim`` / ``cond_dim`` must match the data. ``train()`` writes under ``out_dir``
    (``engine.train.loop``)."""

    kind, command = "flow", "train flow"
    state_format, state_version, config_cls = STATE_FORMAT, STATE_VERSION, FlowTrainConfig
    resumable_extra = ("eval_batch",)
    model_name, metric_fields, eval_fields, eval_at_start = MODEL_NAME, METRIC_FIELDS, EVAL_FIELDS, True

    def __init__(self, cfg: FlowTrainConfig, flow_cfg: FlowConfig, data: dict, *, data_spec: dict | None = None,
                 device: str | torch.device = "cpu", **kwargs):
        super().__init__(cfg, **kwargs)
        data = check_flow_data(data)
        n, num_ws, w_dim = data["w"].shape
        if flow_cfg.input_dim != w_dim or flow_cfg.cond_dim != data["cond"].shape[1]:
            raise ValueError(f"the flow maps {flow_cfg.input_dim}-dim latents under {flow_cfg.cond_dim} condition "
                             f"values; the data has {w_dim}-dim latents and {data['cond'].shape[1]} values")
        if n - cfg.val_n < cfg.batch_size:
            raise ValueError(f"{n} samples leave {n - cfg.val_n} for training after holding out {cfg.val_n}; need at "
                             f"least one batch of {cfg.batch_size}")
        self.flow_cfg = flow_cfg
        self.device = torch.device(device)
        self.data_spec = dict(data_spec or {"kind": "arrays"})
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
        return {"loss": loss.item(), "nll_nats_per_dim": loss.item() / self.dims, "nfe_forward": nfe_forward,
                "nfe_total": nfe_total, "end_time": self.end_time()}

    def end_time(self) -> float:
        """Mean learned end time T of the CNF blocks."""
        times = [m.times(torch.zeros(1), reverse=False)[-1].item() for m in self.flow.chain if isinstance(m, CNF)]
        return sum(times) / len(times)

    @torch.no_grad()
    def held_out_figures(self) -> dict[str, float]:
        """Held-out NLL in eval mode (running statistics), divergence noise seeded with ``EVAL_NOISE_SEED``.
        -> {val_nll_nats_per_dim, val_bits_per_dim, val_nfe (summed over the passes)}"""
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
        return {"val_nll_nats_per_dim": nats, "val_bits_per_dim": nats / math.log(2), "val_nfe": nfe}

    # ---- state ----------------------------------------------------------------------------------------------

    def model_state(self) -> dict:
        return {
            "flow_arch": self.flow_cfg.to_dict(),
            "flow": {k: v.detach().to("cpu").clone() for k, v in self.flow.state_dict().items()},
            "opt": self.opt.state_dict(),
            "data": {"spec": json.dumps(self.data_spec), "sha256": self.data_sha256, "train_n": self.train_n,
                     "val_n": self.cfg.val_n},
            "rng": {"scheme": "global RNG forked and seeded by SeedSequence([seed, step]) per step; epoch order by "
                    "SeedSequence([seed, 1, epoch])", "seed": self.cfg.seed},
        }

    def load_model_state(self, state: dict) -> None:
        if state["data"]["sha256"] != self.data_sha256 or state["data"]["val_n"] != self.cfg.val_n:
            raise ValueError("the training data differ from the checkpoint's (another flow_data.npz or held-out "
                             "split); resume in the run folder that made it")
        self.flow.load_state_dict(state["flow"])
        self.opt.load_state_dict(state["opt"])

    @classmethod
    def resume_args(cls, state: dict) -> dict:
        return {"flow_cfg": FlowConfig.from_dict(state["flow_arch"]), "data_spec": json.loads(state["data"]["spec"])}

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

    def write_model(self, path: Path) -> None:
        """The flow (eval mode) with ``save_flow`` and ``extras()``."""
        save_flow(path, self.flow, extras=self.extras())

    def run_record(self) -> dict:
        return {**super().run_record(), "flow": self.flow_cfg.to_dict(), "data": self.data_spec,
                "train_n": self.train_n, "val_n": self.cfg.val_n}

    def log_row(self, window: list[tuple[dict, float]]) -> dict:
        return {**super().log_row(window), "epoch": self.step / self.steps_per_epoch}

    def postfix(self) -> dict:
        stats = self.stats
        post = {"nll/dim": f"{stats['nll_nats_per_dim']:.3f}", "nfe": stats["nfe_total"],
                "T": f"{stats['end_time']:.3f}"}
        if self.last_eval:
            post["val"] = f"{self.last_eval['val_nll_nats_per_dim']:.3f}"
        return post

    def describe(self) -> str:
        f, c = self.flow_cfg, self.cfg
        return (f"a flow {f.input_dim}-dim, hidden {'-'.join(map(str, f.hidden_dims))}, {f.num_blocks} block(s), "
                f"{f.solver} at {f.atol:g}/{f.rtol:g}, {'adjoint' if f.adjoint else 'backprop'} on {self.train_n} "
                f"samples ({c.val_n} held out), batch {c.batch_size}, {c.steps} steps "
                f"({c.steps / self.steps_per_epoch:.2f} epochs)")

    def summary(self) -> str:
        val = self.last_eval.get("val_nll_nats_per_dim")
        return f"held-out NLL {'-' if val is None else f'{val:.4f}'} nats/dim"


__all__ = ["FlowTrainConfig", "FlowTrainer", "default_hidden_dims", "data_digest", "gaussian_log_density",
           "negative_log_likelihood", "lighting_presets", "condition_stats", "generator_spec", "styleflow_spec",
           "make_data", "prepare_data", "STATE_FORMAT", "MODEL_NAME", "DATA_NAME", "METRIC_FIELDS", "EVAL_FIELDS",
           "EVAL_NOISE_SEED", "QUANTILE_PRESETS"]
