"""The one training loop (engine.train.loop) on a toy trainer: metrics rows are the means of their window, held-out
rows, eval.json and best.pt follow the evaluations, checkpoints and snapshots their intervals, a stopped or timed-out
run ends with a checkpoint of its last step, a resumed run repeats an uninterrupted one, a fresh run refuses another
run's folder, and a resume may change only the run's length and intervals."""
from __future__ import annotations

import csv
import json
import signal
from dataclasses import dataclass

import pytest
import torch

from engine.errors import ModelFormatError
from engine.files.configs import DictForm
from engine.train.loop import StepTrainer, check_synthetic, require
from engine.train.release.estimator import EVAL_SEED


@dataclass(frozen=True)
class ToyConfig(DictForm, what="the toy settings"):
    steps: int = 6
    batch_size: int = 2
    seed: int = 0
    lr: float = 0.1
    eval_every: int = 2
    checkpoint_every: int = 3
    snapshot_every: int = 0
    log_every: int = 2


class ToyTrainer(StepTrainer):
    """Fits w to random targets; step s's loss is s + 1 and its held-out score peaks at step 4."""

    kind, command, state_format, config_cls = "toy", "train toy", "test/toy", ToyConfig
    metric_fields, eval_fields, snapshot_stem, keeps_best = ("step", "loss", "time_s"), ("step", "score"), "toy", True

    def __init__(self, cfg: ToyConfig, **kwargs):
        super().__init__(cfg, **kwargs)
        self.w = torch.zeros(3)

    def train_step(self) -> dict:
        target = torch.randn(3, generator=torch.Generator().manual_seed(1000 * self.cfg.seed + self.step))
        self.w = self.w + self.cfg.lr * (target - self.w)
        self.step += 1
        return {"loss": float(self.step), "phase": f"p{self.step}"}

    def held_out_figures(self) -> dict:
        return {"score": -abs(self.step - 4)}

    def score(self, figures: dict) -> float:
        return figures["score"]

    def model_state(self) -> dict:
        return {"w": self.w.clone()}

    def load_model_state(self, state: dict) -> None:
        self.w = state["w"].clone()

    def write_model(self, path) -> None:
        torch.save({"w": self.w.clone(), "step": self.step}, path)


def rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_evaluations_best_model_and_checkpoints(tmp_path):
    t = ToyTrainer(ToyConfig(snapshot_every=3), out_dir=tmp_path, progress=False)
    assert t.train() == "done" and t.step == 6
    assert [(r["step"], r["loss"]) for r in rows(tmp_path / "metrics.csv")] == [("2", "1.5"), ("4", "3.5"),
                                                                                 ("6", "5.5")]
    assert [(r["step"], r["score"]) for r in rows(tmp_path / "eval.csv")] == [("2", "-2"), ("4", "0"), ("6", "-2")]
    assert json.loads((tmp_path / "eval.json").read_text()) == {"step": 6, "score": -2}
    assert torch.load(tmp_path / "best.pt", weights_only=True)["step"] == 4
    assert torch.load(tmp_path / "model.pt", weights_only=True)["step"] == 6
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == ["toy-000000kimg.pt"]  # steps 3 and 6: 12 images
    state = ToyTrainer.read_state(tmp_path / "checkpoint.pt")
    assert state["step"] == 6 and state["best_score"] == 0 and state["last_eval"] == {"step": 6, "score": -2}
    assert json.loads((tmp_path / "config.json").read_text())["config"] == ToyConfig(snapshot_every=3).to_dict()


def test_a_resumed_run_repeats_an_uninterrupted_one(tmp_path):
    straight = ToyTrainer(ToyConfig(steps=7), progress=False)
    straight.train()
    first = ToyTrainer(ToyConfig(steps=7), out_dir=tmp_path, progress=False)
    assert first.train(max_seconds=0) == "time limit" and first.step == 1
    state = ToyTrainer.read_state(tmp_path / "checkpoint.pt")
    assert state["step"] == 1 and state["last_eval"] == {"step": 1, "score": -3}  # the last step is evaluated
    resumed = ToyTrainer.from_state(state, out_dir=tmp_path, progress=False)
    assert resumed.step == 1 and resumed.train() == "done" and resumed.step == 7
    assert torch.equal(resumed.w, straight.w)
    assert [r["step"] for r in rows(tmp_path / "metrics.csv")] == ["2", "4", "6"]
    assert [r["step"] for r in rows(tmp_path / "eval.csv")] == ["1", "2", "4", "6", "7"]  # 1: the stop's own
    assert torch.load(tmp_path / "best.pt", weights_only=True)["step"] == 4


def test_a_stopped_run_ends_with_a_checkpoint_of_its_last_step(tmp_path):
    t = ToyTrainer(ToyConfig(checkpoint_every=100), out_dir=tmp_path, progress=False)
    assert t.train(on_step=lambda tr: tr.step == 2 and signal.raise_signal(signal.SIGINT)) == "interrupted"
    assert ToyTrainer.read_state(tmp_path / "checkpoint.pt")["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_fresh_run_refuses_another_runs_folder(tmp_path):
    ToyTrainer(ToyConfig(steps=2), out_dir=tmp_path, progress=False).train()
    with pytest.raises(ValueError, match="already holds a toy training run: continue it with --resume auto"):
        ToyTrainer(ToyConfig(steps=2), out_dir=tmp_path, progress=False).train()
    again = ToyTrainer(ToyConfig(steps=1), progress=False)
    again.train()
    again.cfg = ToyConfig(steps=2)
    again.train()  # a trainer continues its own run in memory
    assert again.step == 2


def test_a_resume_may_change_only_the_length_and_the_intervals(tmp_path):
    ToyTrainer(ToyConfig(steps=2), out_dir=tmp_path, progress=False).train()
    state = ToyTrainer.read_state(tmp_path / "checkpoint.pt")
    cfg = ToyTrainer.resumed_config(state, {"steps": 9, "log_every": 3, "lr": 0.1, "seed": None})
    assert cfg == ToyConfig(steps=9, log_every=3)
    with pytest.raises(ValueError, match="cannot change lr, seed when resuming"):
        ToyTrainer.resumed_config(state, {"lr": 0.2, "seed": 1})
    with pytest.raises(ValueError, match="unknown training settings"):
        ToyTrainer.resumed_config(state, {"depth": 3})


def test_other_files_are_refused_as_checkpoints(tmp_path):
    torch.save({"format": "test/other", "format_version": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"not a toy training checkpoint \('train toy' writes OUT/checkpoint.pt\)"):
        ToyTrainer.read_state(tmp_path / "other.pt")
    torch.save({"format": "test/toy", "format_version": 2}, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match="version 2 is not supported"):
        ToyTrainer.read_state(tmp_path / "newer.pt")
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(ModelFormatError, match="cannot read broken.pt"):
        ToyTrainer.read_state(tmp_path / "broken.pt")
    with pytest.raises(FileNotFoundError, match="toy training checkpoint not found"):
        ToyTrainer.read_state(tmp_path / "missing.pt")


def test_the_settings_checks_name_the_setting_and_its_range():
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        require(ToyConfig(steps=0), ("batch_size", "steps"), at_least=1)
    with pytest.raises(ValueError, match="lr must be positive, got 0.0"):
        require(ToyConfig(lr=0.0), ("lr",), above=0)
    with pytest.raises(ValueError, match=r"lr must be in \[0, 1\], got 1.5"):
        require(ToyConfig(lr=1.5), ("lr",), at_least=0, at_most=1)
    require(ToyConfig(), ("steps", "batch_size"), at_least=1)
    with pytest.raises(ValueError, match="held-out seed"):
        check_synthetic(ToyConfig(seed=EVAL_SEED))
    with pytest.raises(ValueError, match="two distinct domains"):
        check_synthetic(ToyConfig(), domains=("photo", "photo"))
    with pytest.raises(ValueError, match="anime"):
        check_synthetic(ToyConfig(), domains=("photo", "anime"))
    check_synthetic(ToyConfig(), domains=("photo", "toon"))
