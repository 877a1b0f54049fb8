"""Training StyleFlow's flow (``train flow``): tiny generator, estimator and flow; the loss, exact resume, the written
flow.pt (loads, inverts, carries presets and condition statistics), StyleFlow-format data files and refusals."""
from __future__ import annotations

import argparse
import math
import os
import pickle
import signal

import numpy as np
import pytest
import torch

from engine.algorithms.flow_edit import CONDITION_NAMES, LIGHTING_PRESETS
from engine.cli.main import run
from engine.cli.train import add_train_commands
from engine.files.checkpoints import save_generator
from engine.files.flows import load_flow
from engine.files.storage import file_sha256
from engine.models.estimator import AttributeEstimator, EstimatorConfig, save_estimator
from engine.models.flow import ConditionalCNF, FlowConfig
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.train.flow import (
    FlowTrainConfig,
    FlowTrainer,
    condition_stats,
    default_hidden_dims,
    lighting_presets,
    negative_log_likelihood,
)
from engine.train.flow_data import load_flow_data

read_state = FlowTrainer.read_state

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--hidden", "16-16", "--atol", "1e-3", "--rtol", "1e-3", "--threads", "1", "--quiet"]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", "flow", *argv])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A 16 px generator (w_dim 16, 6 W+ rows) and an estimator predicting the flow's 17 conditions."""
    folder = tmp_path_factory.mktemp("models")
    G = Generator(GeneratorConfig(img_resolution=16, channels=(16, 16, 16), z_dim=16, w_dim=16, mapping_layers=2),
                  seed=1)
    save_generator(folder / "G.pt", G)
    names = tuple("smile" if n == "expression" else n for n in CONDITION_NAMES)
    est = AttributeEstimator(EstimatorConfig(output_names=names, binary=("gender", "glasses"), input_size=16,
                                             widths=(8, 8), blocks=(1, 1), stem_width=8, feature_dim=16), seed=2)
    save_estimator(folder / "E.pt", est)
    return folder / "G.pt", folder / "E.pt"


def train(out, models, *extra: str) -> int:
    G, E = models
    return run(parse("--out", str(out), "--generator", str(G), "--estimator", str(E), "--n", "40", "--val-n", "8",
                     "--batch", "8", *TINY, *extra))


def fake_data(n=40, num_ws=3, dim=8, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    cond = rng.normal(size=(n, len(CONDITION_NAMES))).astype(np.float32)
    w = (rng.normal(size=(n, num_ws, dim)) * 1.5 + 0.5 + 0.3 * cond[:, None, :1]).astype(np.float32)
    return {"w": w, "cond": cond}


def tiny_config(dim=8) -> FlowConfig:
    return FlowConfig(input_dim=dim, hidden_dims=(16, 16), atol=1e-3, rtol=1e-3, adjoint=False)


def test_cli_run_trains_and_writes_a_flow_that_loads_and_inverts(models, tmp_path):
    out = tmp_path / "run"
    assert train(out, models, "--steps", "6", "--eval-every", "3", "--log-every", "2") == 0
    data = load_flow_data(out / "flow_data.npz")
    assert data["w"].shape == (40, 6, 16) and data["cond"].shape == (40, 17)
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,loss,nll_nats_per_dim") and [r.split(",")[0] for r in rows[1:]] == [
        "2", "4", "6"]
    evals = [r.split(",") for r in (out / "eval.csv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in evals] == [0, 3, 6]
    nll = [float(r[1]) for r in evals]
    assert all(math.isfinite(v) for v in nll) and nll[-1] < nll[0]  # fresh running statistics fit the data badly
    assert float(evals[-1][2]) == pytest.approx(nll[-1] / math.log(2), rel=1e-4)

    flow = load_flow(out / "flow.pt")
    assert not flow.training and flow.cfg.input_dim == 16 and flow.cfg.hidden_dims == (16, 16)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fresh = ConditionalCNF(flow.cfg)
    changed = [k for k, v in fresh.state_dict().items() if not k.endswith("_num_evals")
               and not torch.equal(v, flow.state_dict()[k])]
    assert "chain.1.sqrt_end_time" in changed and "chain.0.running_mean" in changed
    assert any(".diffeq.layers." in k for k in changed)

    w = torch.from_numpy(data["w"][-8:])  # held-out latents [8, 6, 16]
    c = torch.from_numpy(data["cond"][-8:])
    z = flow.w_to_z(w, c)
    assert z.shape == w.shape and not torch.allclose(z, w, atol=1e-2)
    assert torch.allclose(flow.z_to_w(z, c), w, atol=2e-3)

    extras = flow.extras  # what the editor reads
    assert extras["generator_sha256"] == file_sha256(models[0]) and extras["num_ws"] == 6 and extras["w_dim"] == 16
    assert extras["training_steps"] == 6 and extras["val_n"] == 8 and extras["train_n"] == 32
    assert extras["val_nll_nats_per_dim"] == pytest.approx(nll[-1], rel=1e-5)
    presets = np.array(extras["lighting_presets"])
    assert presets.shape == (6, 9) and extras["lighting_preset_names"] == list(LIGHTING_PRESETS)
    assert all((np.abs(data["cond"][:, :9] - p).max(1) < 1e-6).any() for p in presets)  # rows of the data
    assert extras["cond_names"] == list(CONDITION_NAMES)
    assert flow.layout_source == "stated in the file" and flow.layout.to_dict() == extras["condition_layout"]
    assert flow.layout.condition_names == CONDITION_NAMES  # the trainer states StyleFlow's layout
    assert np.allclose(extras["cond_mean"], data["cond"].mean(0), atol=1e-5)
    assert np.allclose(extras["cond_max"], data["cond"].max(0))


def test_cli_resume_continues_exactly_and_reuses_the_data(models, tmp_path, capsys):
    assert train(tmp_path / "a", models, "--steps", "4", "--eval-every", "2") == 0
    assert train(tmp_path / "b", models, "--steps", "2", "--eval-every", "2") == 0
    stamp = (tmp_path / "b" / "flow_data.npz").stat().st_mtime_ns
    assert run(parse("--out", str(tmp_path / "b"), "--generator", str(models[0]), "--estimator", str(models[1]),
                     "--threads", "1", "--quiet")) == 2
    assert "already holds a flow training run" in capsys.readouterr().err
    assert run(parse("--out", str(tmp_path / "b"), "--resume", "auto", "--steps", "4", "--quiet")) == 0
    assert (tmp_path / "b" / "flow_data.npz").stat().st_mtime_ns == stamp
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    assert a["flow"].keys() == b["flow"].keys() and all(torch.equal(v, b["flow"][k]) for k, v in a["flow"].items())
    sa, sb = a["opt"]["state"], b["opt"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    va = [r.split(",")[1] for r in (tmp_path / "a" / "eval.csv").read_text().splitlines()[1:]]
    vb = [r.split(",")[1] for r in (tmp_path / "b" / "eval.csv").read_text().splitlines()[1:]]
    assert va == vb and len(va) == 3


def test_trainer_resume_from_state_matches_one_go_stops_cleanly_and_refuses_other_data(tmp_path):
    data = fake_data()
    cfg = FlowTrainConfig(steps=5, batch_size=8, val_n=8, eval_every=100, checkpoint_every=100, seed=3)
    one = FlowTrainer(cfg, tiny_config(), data, progress=False)
    losses = [one.train_step()["loss"] for _ in range(5)]
    assert all(math.isfinite(v) for v in losses)

    first = FlowTrainer(FlowTrainConfig(**{**cfg.to_dict(), "steps": 2}), tiny_config(), data, out_dir=tmp_path,
                        progress=False)
    assert first.train() == "done"
    state = read_state(tmp_path / "checkpoint.pt")
    second = FlowTrainer.from_state(state, data=data, overrides={"steps": 5}, progress=False)
    assert second.step == 2 and second.train() == "done"
    assert all(torch.equal(v, second.flow.state_dict()[k]) for k, v in one.flow.state_dict().items())

    stopped = FlowTrainer(cfg, tiny_config(), data, out_dir=tmp_path / "stop", progress=False)
    assert stopped.train(on_step=lambda t: t.step == 2 and os.kill(os.getpid(), signal.SIGINT)) == "interrupted"
    assert read_state(tmp_path / "stop" / "checkpoint.pt")["step"] == 2
    extras = torch.load(tmp_path / "stop" / "flow.pt", weights_only=True)["extras"]
    assert extras["training_steps"] == 2 and extras["val_nll_step"] == 2  # a stopped run is evaluated at its end
    timed = FlowTrainer(cfg, tiny_config(), data, out_dir=tmp_path / "timed", progress=False)
    assert timed.train(max_seconds=0) == "time limit" and timed.step == 1

    with pytest.raises(ValueError, match="differ from the checkpoint"):
        FlowTrainer.from_state(state, data=fake_data(seed=1), progress=False)
    with pytest.raises(ValueError, match="cannot change"):
        FlowTrainer.from_state(state, data=data, overrides={"lr": 1.0})


def test_the_loss_is_styleflows_likelihood():
    """f = 0 (identity CNF) and a batch norm scaling by 2: NLL = -(log N(z) + D * log 2 per row), z = 2 w."""
    flow = ConditionalCNF(tiny_config(dim=4)).eval()
    with torch.no_grad():
        for name, p in flow.named_parameters():
            if ".diffeq." in name:
                p.zero_()
        flow.chain[0].weight.fill_(math.log(2.0))
        for bn in (flow.chain[0], flow.chain[2]):
            bn.running_var.fill_(1.0 - flow.cfg.bn_eps)  # so that (var + eps) = 1
    w = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    expected = -((-0.5 * math.log(2 * math.pi) - 0.5 * (2 * w).square()).sum((1, 2)) + 5 * 4 * math.log(2.0))
    with torch.no_grad():
        assert torch.allclose(negative_log_likelihood(flow, w, torch.zeros(3, 17)), expected, rtol=1e-5)


def test_styleflow_format_files_train_with_styleflows_presets(tmp_path):
    """The released layouts: sg2latents.pickle {'Latent': N x (1, num_ws, D)}, attributes.npy (N, 8, 1),
    light.npy (N, 1, 9, 1, 1); 650 rows so that StyleFlow's preset rows (up to 641) exist."""
    rng = np.random.default_rng(0)
    n = 650
    latents = [rng.normal(size=(1, 3, 8)).astype(np.float32) for _ in range(n)]
    with open(tmp_path / "sg2latents.pickle", "wb") as f:
        pickle.dump({"Latent": latents}, f)
    attributes = rng.normal(size=(n, 8, 1))
    light = rng.normal(size=(n, 1, 9, 1, 1)).astype(np.float32)
    np.save(tmp_path / "attributes.npy", attributes)
    np.save(tmp_path / "light.npy", light)
    out = tmp_path / "run"
    assert run(parse("--out", str(out), "--styleflow-data", str(tmp_path), "--val-n", "50", "--batch", "16",
                     "--steps", "2", "--eval-batch", "50", *TINY)) == 0
    data = load_flow_data(out / "flow_data.npz")
    assert np.array_equal(data["w"], np.concatenate(latents))
    assert np.allclose(data["cond"], np.concatenate([light.reshape(n, 9), attributes.reshape(n, 8)], axis=1))
    extras = torch.load(out / "flow.pt", weights_only=True)["extras"]
    assert np.array_equal(np.array(extras["lighting_presets"], dtype=np.float32),
                          light.reshape(n, 9)[list(LIGHTING_PRESETS.values())])
    assert "generator_sha256" not in extras and extras["train_n"] == 600
    flow = load_flow(out / "flow.pt")
    assert flow.cfg.input_dim == 8 and flow.cfg.cond_dim == 17

    # train_flow.py's names: latents.npy (N, 1, num_ws, D) and lighting.npy
    other = tmp_path / "train_flow"
    other.mkdir()
    np.save(other / "latents.npy", np.stack(latents)[:40])
    np.save(other / "attributes.npy", attributes[:40])
    np.save(other / "lighting.npy", light[:40])
    assert run(parse("--out", str(tmp_path / "run2"), "--styleflow-data", str(other), "--val-n", "8", "--steps", "1",
                     *TINY)) == 0
    assert load_flow_data(tmp_path / "run2" / "flow_data.npz")["w"].shape == (40, 3, 8)


def test_lighting_presets_and_condition_statistics():
    rng = np.random.default_rng(0)
    light = rng.normal(size=(101, 9)).astype(np.float32)
    presets = dict(zip(LIGHTING_PRESETS, lighting_presets(light)))
    for name, k, q in (("left_to_right", 3, 0.05), ("right_to_left", 3, 0.95), ("down_to_up", 1, 0.05),
                       ("up_to_down", 1, 0.95), ("no_light", 0, 0.05), ("front_light", 2, 0.95)):
        assert presets[name][k] == np.sort(light[:, k])[round(q * 100)]
        assert any(np.array_equal(presets[name], row) for row in light)
    assert presets["left_to_right"][3] < np.median(light[:, 3]) < presets["right_to_left"][3]
    cond = rng.normal(size=(50, 17))
    stats = condition_stats(cond)
    assert np.allclose(stats["cond_std"], cond.std(0)) and np.allclose(stats["cond_min"], cond.min(0))
    assert all(lo <= hi for lo, hi in zip(stats["cond_q01"], stats["cond_q99"]))
    assert default_hidden_dims(256) == (256, 256, 256) and default_hidden_dims(512) == (512,) * 5


def test_refusals(models, tmp_path, capsys):
    data = fake_data()
    with pytest.raises(ValueError, match="8-dim latents"):
        FlowTrainer(FlowTrainConfig(val_n=8), tiny_config(dim=6), data)
    with pytest.raises(ValueError, match="at least one batch"):
        FlowTrainer(FlowTrainConfig(val_n=35, batch_size=8), tiny_config(), data)
    with pytest.raises(ValueError, match="batch_size"):
        FlowTrainConfig(batch_size=0)
    assert run(parse("--out", str(tmp_path), "--resume", str(tmp_path / "missing.pt"))) == 2
    assert "no flow training checkpoint" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run(parse("--out", str(tmp_path / "o"), "--styleflow-data", str(tmp_path / "empty"))) == 2
    assert "none of sg2latents.pickle, latents.npy" in capsys.readouterr().err
    assert run(parse("--out", str(tmp_path / "o"), "--styleflow-data", str(tmp_path / "empty"), "--generator",
                     str(models[0]))) == 2
    assert "drop --generator" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a flow training checkpoint"):
        torch.save({"format": "something"}, tmp_path / "x.pt")
        read_state(tmp_path / "x.pt")
