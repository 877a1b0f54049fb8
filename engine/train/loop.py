"""The one training loop every trainer runs on: steps, CSV logs, held-out evaluation, checkpoints, snapshots, the
best model, graceful stops, time limits and exact resume (no Qt, no command line).

A trainer subclasses ``StepTrainer`` and provides only what is its own:

* ``train_step()``: one optimiser step on the batch of ``self.step`` (it advances ``self.step``) -> its figures;
* ``held_out_figures()``: held-out figures of the networks now (a trainer without ``eval_fields`` has none);
* ``model_state()`` / ``load_model_state(state)``: its networks, optimisers and other state in the checkpoint, and
  ``resume_args(state)``: the constructor arguments a checkpoint fixes (architectures, networks to load into);
* ``write_model(path)``: the model file; ``score(figures)`` when it keeps the best held-out model (higher wins);
* class attributes: its kind and command (messages), checkpoint format, config class, file and column names.

``train()`` runs to ``total_steps``. After step ``s`` it writes a ``metrics.csv`` row every ``log_every`` steps (the
means of the figures of the steps since the last row, and the timing columns the trainer lists), evaluates every
``eval_every`` steps (``eval.csv`` rows, ``eval.json``, ``best.pt`` when the score improves), writes
``checkpoint.pt`` every ``checkpoint_every`` steps and a model snapshot every ``snapshot_every`` steps (a config
without an interval skips that part; 0 turns the optional ones off). It stops at the last step, on Ctrl-C / SIGTERM
(the running step finishes) or after ``max_seconds`` of training in one call, all processes of a distributed run
at the same step; then it evaluates the last step (if that was not done yet), writes the checkpoint and the model.
Only the main process writes files, and only with an ``out_dir``; a fresh trainer refuses an ``out_dir`` that holds
another run's checkpoint.

Exact resume: the trainers draw every random number of step ``s`` from generators seeded by the run's seed and
``s`` (their data are pure functions of the step), so the checkpoint (config, step, networks, optimisers and the
trainer's own state) is the whole state of a run and ``from_state`` continues it bit for bit.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import fields, replace
from numbers import Real
from pathlib import Path

import torch

from engine.errors import ModelFormatError
from engine.files.checkpoints import atomic_torch_save, check_training_state, read_training_state
from engine.files.storage import read_model_file
from engine.runtime import GracefulStop
from engine.synth.styles import check_domain
from engine.train.csvlog import CsvLog
from engine.train.distributed import DistContext, barrier, max_over_processes
from engine.train.release.estimator import EVAL_SEED

CHECKPOINT_NAME, BEST_NAME, SNAPSHOT_DIR = "checkpoint.pt", "best.pt", "snapshots"
# the config fields a resume may change, where a config has them: the run's length and the intervals
RESUMABLE = ("steps", "kimg", "log_every", "eval_every", "checkpoint_every", "snapshot_every", "sample_every")
_TIME_LIMIT, _STOP = 1, 2  # stop codes the processes agree on (the larger wins)


def require(cfg, names: tuple[str, ...], *, at_least: float | None = None, at_most: float | None = None,
            above: float | None = None) -> None:
    """The range checks of a training config: ValueError naming the first setting of ``names`` outside
    ``[at_least, at_most]`` or not above ``above`` ("batch_size must be at least 1, got 0")."""
    words = [] if above is None else ["positive" if above == 0 else f"above {above}"]
    if at_least is not None and at_most is not None:
        words.append(f"in [{at_least}, {at_most}]")
    elif at_least is not None or at_most is not None:
        words.append(f"at least {at_least}" if at_most is None else f"at most {at_most}")
    for name in names:
        value = getattr(cfg, name)
        if ((above is not None and not value > above) or (at_least is not None and value < at_least)
                or (at_most is not None and value > at_most)):
            raise ValueError(f"{name} must be {' and '.join(words)}, got {value}")


def check_synthetic(cfg, *, domains: tuple[str, ...] = ()) -> None:
    """The synthetic world's checks of a config: its ``seed`` is non-negative and not the held-out ``EVAL_SEED``,
    and ``domains`` (when given) are at least two distinct known ones."""
    if cfg.seed < 0 or cfg.seed == EVAL_SEED:
        raise ValueError(f"seed must be non-negative and not {EVAL_SEED} (the held-out seed), got {cfg.seed}")
    if domains:
        for d in domains:
            check_domain(d)
        if len(domains) < 2 or len(set(domains)) != len(domains):
            raise ValueError(f"domains must hold at least two distinct domains, got {list(domains)}")


def article(noun: str) -> str:
    """``noun`` with its indefinite article: "an encoder", "a flow"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _mean(values: list):
    """The mean of numbers; the last value of anything else (a phase name)."""
    if all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
        return sum(values) / len(values)
    return values[-1]


class StepTrainer:
    """The loop and the bookkeeping of a training run; subclasses add their networks (see the module docstring).

    cfg: the run's config (a frozen dataclass with ``to_dict`` / ``from_dict``, ``batch_size``, ``seed``,
    ``log_every``, ``checkpoint_every`` and the other intervals it uses). out_dir: run folder (None: nothing is
    written). command_line: the command recorded in every file. progress: show a progress bar (main process only).
    ctx: this process's place in a distributed run (default: a single process).
    """

    kind = "training"  # what the run trains, in messages: "a flow training run"
    command = "train"  # the command that makes such runs (the progress bar's label)
    resume_hint = ""  # appended to the message for a file that is not such a checkpoint
    state_format = ""
    state_version = 1
    config_cls = None
    resumable_extra: tuple[str, ...] = ()  # config fields a resume may change besides ``RESUMABLE``
    model_name = "model.pt"
    snapshot_stem = ""  # snapshots/<stem>-KKKKKKkimg.pt, where the config has ``snapshot_every``
    metric_fields: tuple[str, ...] = ()
    eval_fields: tuple[str, ...] = ()  # none: the trainer has no held-out evaluation
    eval_at_start = False  # evaluate a fresh run before its first step
    keeps_best = False  # keep the best held-out model (by ``score``) as best.pt

    def __init__(self, cfg, *, out_dir: str | Path | None = None, command_line: str = "", progress: bool = True,
                 ctx: DistContext | None = None):
        self.cfg = cfg
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.command_line, self.progress = command_line, progress
        self.ctx = ctx or DistContext()
        self.step, self.elapsed_s = 0, 0.0
        self.stats: dict = {}  # the figures of the last step
        self.last_eval: dict = {}  # the last held-out figures, with their step ({} before the first)
        self.best_score = None
        self.threads = torch.get_num_threads()
        self._continues = False  # whether out_dir's checkpoint is this run's own

    # ---- what a trainer provides ----------------------------------------------------------------------------

    def train_step(self) -> dict:
        """One optimiser step on the batch of ``self.step``; advances ``self.step`` and returns the step's figures."""
        raise NotImplementedError

    def held_out_figures(self) -> dict:
        """Held-out figures of the networks now."""
        raise NotImplementedError

    def model_state(self) -> dict:
        """The trainer's part of the checkpoint: networks, optimisers, anything else a resume needs."""
        raise NotImplementedError

    def load_model_state(self, state: dict) -> None:
        """Restore what ``model_state`` stored (into a trainer built with ``resume_args(state)``)."""
        raise NotImplementedError

    @classmethod
    def resume_args(cls, state: dict) -> dict:
        """Constructor arguments a checkpoint fixes (architectures, networks); the caller's arguments win."""
        return {}

    def write_model(self, path: Path) -> None:
        """Write the model file."""
        raise NotImplementedError

    def score(self, figures: dict):
        """How good held-out ``figures`` are (higher is better; compared with ``>``)."""
        raise NotImplementedError

    def postfix(self) -> dict:
        """The progress bar's figures after a step."""
        return {}

    def describe(self) -> str:
        """What the run trains, for messages ("a 64 px StyleGAN2 ... on synth:photo, batch 16, 500 kimg")."""
        return f"{article(self.kind)} model, batch {self.cfg.batch_size}, {self.total_steps} steps"

    def summary(self) -> str:
        """The run's held-out figures (or files) when it ends, for messages."""
        return f"files in {self.out_dir}" if self.out_dir is not None else "no files written"

    def run_record(self) -> dict:
        """What ``config.json`` records about the run (trainers add their data and networks)."""
        return {"config": self.cfg.to_dict(), "command_line": self.command_line, "threads": self.threads}

    def begin(self) -> None:
        """Before the first step of a fresh run that writes files."""
        if self.eval_at_start and self.eval_fields:
            self._record_eval(True)

    def write_periodic(self) -> None:
        """After each step's checkpoint and snapshot (main process, with an ``out_dir``): trainers' own files."""

    def write_final(self) -> None:
        """After the last checkpoint and model (main process, with an ``out_dir``)."""

    # ---- figures and files ------------------------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        return self.cfg.steps

    @property
    def images_seen(self) -> int:
        return self.step * self.cfg.batch_size

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files."""
        return self.out_dir is not None and self.ctx.is_main

    def evaluate(self) -> dict:
        """Held-out figures of the networks now, with their ``step`` (kept as ``last_eval``)."""
        self.last_eval = {"step": self.step, **self.held_out_figures()}
        return self.last_eval

    def timing(self) -> dict:
        """The run's progress columns, for the CSV rows."""
        return {"step": self.step, "images": self.images_seen, "kimg": self.images_seen / 1000,
                "time_s": round(self.elapsed_s, 2), "elapsed_s": self.elapsed_s}

    def log_row(self, window: list[tuple[dict, float]]) -> dict:
        """A ``metrics.csv`` row from the (figures, seconds) of the steps since the last row."""
        sec = sum(dt for _, dt in window) / len(window)
        means = {k: _mean([st[k] for st, _ in window if k in st]) for k in window[-1][0]}
        return {**self.timing(), **means, "sec_per_step": sec, "img_per_s": self.cfg.batch_size / sec}

    def eval_rows(self, figures: dict) -> list[dict]:
        """The ``eval.csv`` rows of held-out ``figures``."""
        return [{**self.timing(), **figures}]

    def _out(self, name: str) -> Path:
        if self.out_dir is None:
            raise ValueError("this trainer has no output folder")
        path = self.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def export(self, path: str | Path | None = None) -> Path:
        """Write the model file (main process only; default ``out_dir/model_name``); returns its path."""
        path = Path(path) if path is not None else self._out(self.model_name)
        if self.ctx.is_main:
            self.write_model(path)
        return path

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write the training state atomically (main process only); returns the path written."""
        if not self.ctx.is_main:
            return None
        path = Path(path) if path is not None else self._out(CHECKPOINT_NAME)
        atomic_torch_save(self.state_dict(), path)
        return path

    # ---- state ------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The full training state (plain containers and tensors; loadable with ``weights_only=True``)."""
        return {"format": self.state_format, "format_version": self.state_version, "config": self.cfg.to_dict(),
                "step": self.step, "elapsed_s": self.elapsed_s, "stats": dict(self.stats),
                "last_eval": self.last_eval, "best_score": self.best_score, "threads": self.threads,
                "command_line": self.command_line, **self.model_state()}

    def load_state_dict(self, state: dict) -> None:
        self.check_state(state)
        self.load_model_state(state)
        self.step, self.elapsed_s = int(state["step"]), float(state["elapsed_s"])
        self.stats = dict(state.get("stats") or {})
        self.last_eval = dict(state.get("last_eval") or {})
        self.best_score = state.get("best_score")
        self._continues = True

    @classmethod
    def _state_check(cls) -> dict:
        what = f"{cls.kind} training checkpoint"
        return dict(fmt=cls.state_format, version=cls.state_version, what=what,
                    wrong=f"not {article(what)} ('{cls.command}' writes OUT/{CHECKPOINT_NAME}){cls.resume_hint}")

    @classmethod
    def check_state(cls, state) -> None:
        """Refuse anything that is not a training state of this kind and version."""
        check_training_state(state, **cls._state_check())

    @classmethod
    def read_state(cls, path: str | Path) -> dict:
        """Load a checkpoint written by this trainer (weights only, on the CPU)."""
        return read_training_state(path, **cls._state_check())

    @classmethod
    def resumable(cls) -> tuple[str, ...]:
        names = {f.name for f in fields(cls.config_cls)}
        return tuple(n for n in RESUMABLE + cls.resumable_extra if n in names)

    @classmethod
    def resumed_config(cls, state: dict, overrides: dict | None = None):
        """The checkpoint's config with the ``resumable()`` settings of ``overrides`` replaced (None values keep
        the stored ones); ValueError for a different value of any other setting."""
        stored = cls.config_cls.from_dict(state["config"])
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        if unknown := sorted(set(given) - {f.name for f in fields(stored)}):
            raise ValueError(f"unknown training settings {unknown}")
        allowed = cls.resumable()
        if fixed := sorted(k for k, v in given.items() if k not in allowed and getattr(stored, k) != v):
            raise ValueError(f"cannot change {', '.join(fixed)} when resuming (the checkpoint fixes them)")
        return replace(stored, **{k: v for k, v in given.items() if k in allowed})

    @classmethod
    def from_state(cls, state: dict, *, overrides: dict | None = None, **kwargs):
        """A trainer continuing the checkpoint ``state`` exactly; ``overrides`` as for ``resumed_config``, the
        other arguments as for the constructor (the data, devices, files; the checkpoint's command by default)."""
        cls.check_state(state)
        cfg = cls.resumed_config(state, overrides)
        trainer = cls(cfg, **{"command_line": state.get("command_line", ""), **cls.resume_args(state), **kwargs})
        trainer.load_state_dict(state)
        return trainer

    @classmethod
    def refuse_existing_run(cls, out_dir: str | Path) -> None:
        """ValueError when ``out_dir`` holds a checkpoint (a fresh run would overwrite another one)."""
        if (Path(out_dir) / CHECKPOINT_NAME).exists():
            raise ValueError(f"{out_dir} already holds {article(cls.kind)} training run: continue it with --resume "
                             "auto, or choose another --out")

    # ---- the loop ---------------------------------------------------------------------------------------------

    def _due(self, interval: str) -> bool:
        every = getattr(self.cfg, interval, 0)
        return bool(every) and self.step % every == 0

    def _record_eval(self, writes: bool) -> None:
        figures = self.evaluate()
        if not writes:
            return
        self._eval_log.write(*self.eval_rows(figures))
        self._out("eval.json").write_text(json.dumps(figures, indent=2))
        if self.keeps_best:
            score = self.score(figures)
            if self.best_score is None or score > self.best_score:
                self.best_score = score
                self.export(self._out(BEST_NAME))

    def _after_step(self, writes: bool) -> None:
        if self.eval_fields and self._due("eval_every"):
            self._record_eval(writes)
        if not writes:
            return
        if self._due("checkpoint_every"):
            self.save_checkpoint()
        if self.snapshot_stem and self._due("snapshot_every"):
            self.export(self._out(f"{SNAPSHOT_DIR}/{self.snapshot_stem}-{self.images_seen // 1000:06d}kimg.pt"))
        self.write_periodic()

    def train(self, *, max_seconds: float | None = None, on_step=None) -> str:
        """Train to ``total_steps``; returns ``"done"``, ``"interrupted"`` (Ctrl-C / SIGTERM: the running step
        finishes) or ``"time limit"`` (``max_seconds`` of training in this call). The run folder then holds the
        checkpoint, the model and the held-out figures of the last step. on_step: optional callback
        ``on_step(trainer)`` after every step (tests, GUIs)."""
        from tqdm import tqdm

        writes = self.writes
        if writes:
            if not self._continues:
                self.refuse_existing_run(self.out_dir)
            self._continues = True
            self._metrics_log = CsvLog(self._out("metrics.csv"), self.metric_fields, resume_step=self.step)
            if self.eval_fields:
                self._eval_log = CsvLog(self._out("eval.csv"), self.eval_fields, resume_step=self.step)
            self._out("config.json").write_text(json.dumps(self.run_record(), indent=2))
            if self.step == 0:
                self.begin()
        status, started = "done", time.perf_counter()
        window: list[tuple[dict, float]] = []  # (figures, seconds) of the steps since the last metrics row
        with GracefulStop() as stop, tqdm(total=self.total_steps, initial=self.step, unit="step", file=sys.stderr,
                                          dynamic_ncols=True, disable=not (self.progress and self.ctx.is_main),
                                          desc=self.command) as bar:
            while self.step < self.total_steps:
                t0 = time.perf_counter()
                self.stats = dict(self.train_step())
                dt = time.perf_counter() - t0
                self.elapsed_s += dt
                window.append((self.stats, dt))
                bar.update(1)
                bar.set_postfix(self.postfix(), refresh=False)
                if self._due("log_every"):
                    if writes:
                        self._metrics_log.write(self.log_row(window))
                    window = []
                self._after_step(writes)
                if on_step is not None:
                    on_step(self)
                timed_out = max_seconds is not None and time.perf_counter() - started >= max_seconds
                code = max_over_processes(_STOP if stop.requested else _TIME_LIMIT if timed_out else 0, self.ctx)
                if code:
                    status = "interrupted" if code == _STOP else "time limit"
                    break
        if writes:
            if self.eval_fields and self.last_eval.get("step") != self.step:
                self._record_eval(True)
            self.save_checkpoint()
            self.export()
            self.write_final()
        barrier(self.ctx)
        return status


class ModelTrainer(StepTrainer):
    """A trainer of one network (a module, or a ModuleDict of several) with one optimiser on the synthetic world:
    the attribute estimator, the domain classifier, TUNIT, BicycleGAN. ``self.model``, ``self.opt`` (Adam at
    ``cfg.lr`` unless given), held-out data cached in ``self._eval_data``. The checkpoint holds the model file's dict
    (``checkpoint()``) and the optimiser's state; a resume rebuilds the network with ``load_model``."""

    keeps_best = True
    resumable_extra = ("eval_n",)
    model_format = ""  # the format id of ``checkpoint()``'s dict

    def __init__(self, cfg, model: torch.nn.Module, *, optimizer=None, **kwargs):
        super().__init__(cfg, **kwargs)
        self.model = model
        self.opt = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=cfg.lr)
        self._eval_data = None

    @staticmethod
    def format_figures(figures: dict) -> str:
        """Held-out figures as text."""
        raise NotImplementedError

    def summary(self) -> str:
        return "held-out figures:\n" + self.format_figures(self.last_eval) if self.last_eval else "not evaluated"

    def subject(self) -> str:
        """What the network learns, for ``describe``."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.subject()}, batch {self.cfg.batch_size}, {self.total_steps} steps, {self.threads} threads"

    @staticmethod
    def load_model(checkpoint) -> torch.nn.Module:
        """The network of a model file's dict (what ``checkpoint()`` returns)."""
        raise NotImplementedError

    def checkpoint(self) -> dict:
        """The model file's dict, with ``extras()``."""
        raise NotImplementedError

    def extras(self) -> dict:
        """What a model file records about its run."""
        return {"train_config": self.cfg.to_dict(), "step": self.step, "images_seen": self.images_seen,
                "data_seed": self.cfg.seed, "eval_seed": EVAL_SEED, "held_out": self.last_eval or None,
                "train_seconds": self.elapsed_s, "threads": self.threads, "command_line": self.command_line}

    def write_model(self, path: Path) -> None:
        atomic_torch_save(self.checkpoint(), path)

    def parameters(self, names: tuple[str, ...] | None = None) -> str:
        """Parameter counts of the network (of the ``names`` networks of a ModuleDict), e.g. "G 1.20 M, E 0.30 M"."""
        nets = self.model if isinstance(self.model, torch.nn.ModuleDict) else {"": self.model}
        count = {k: sum(p.numel() for p in net.parameters()) for k, net in nets.items()}
        return ", ".join(f"{k} {count[k] / 1e6:.2f} M".strip() for k in (names or count))

    def model_state(self) -> dict:
        return {"model": self.checkpoint(), "optimizer": self.opt.state_dict()}

    def load_model_state(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])

    @classmethod
    def resume_args(cls, state: dict) -> dict:
        return {"model": cls.load_model(state["model"])}

    @classmethod
    def model_file(cls, source: str | Path) -> dict:
        """The model file's dict of a run of this trainer, to release: ``source`` is a model file it wrote
        (``RUN/<model_name>``, ``RUN/best.pt``) or its training checkpoint (which holds the latest model);
        ModelFormatError for anything else, or for a model without the run's metadata."""
        kind, obj = read_model_file(source)
        if kind == "torch" and isinstance(obj, dict) and obj.get("format") == cls.state_format:
            cls.check_state(obj)
            obj = obj["model"]
        files = ", ".join(f"RUN/{n}" for n in (cls.model_name, BEST_NAME if cls.keeps_best else "", CHECKPOINT_NAME)
                          if n)
        if kind != "torch" or not isinstance(obj, dict) or obj.get("format") != cls.model_format:
            raise ModelFormatError(f"{source}: not {article(cls.kind)} model written by '{cls.command}' ({files})")
        if "train_config" not in (obj.get("extras") or {}):
            raise ModelFormatError(f"{source} holds no training metadata: release a file written by '{cls.command}'")
        return obj


__all__ = ["StepTrainer", "ModelTrainer", "require", "check_synthetic", "article", "CHECKPOINT_NAME", "BEST_NAME",
           "SNAPSHOT_DIR", "RESUMABLE"]
