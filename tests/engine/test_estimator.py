"""The attribute estimator: network shapes and units, its file format, training (loss, exact resume), the
held-out evaluation, the CLI helpers and the embedded trained network in assets/."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from engine import synth
from engine.cli.main import run
from engine.cli.train import add_train_commands
from engine.errors import ModelFormatError
from engine.files.storage import file_sha256
from engine.models.estimator import (
    FORMAT,
    AttributeEstimator,
    EstimatorConfig,
    estimator_checkpoint,
    load_estimator,
    save_estimator,
)
from engine.train.estimator import (
    BINARY,
    EstimatorTrainer,
    TrainConfig,
    augment,
    domain_counts,
    estimator_config,
    losses,
    step_generator,
)
from engine.train.release.estimator import EVAL_SEED, evaluate, format_table, held_out, release
from tests.conftest import REPO

TINY = dict(size=32, widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1), stem_width=8, feature_dim=16, stats_n=64,
            batch_size=12, eval_n=6, eval_every=2, checkpoint_every=2, log_every=1, warmup=2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> AttributeEstimator:
    return AttributeEstimator(estimator_config(TrainConfig(**TINY)), seed=3).eval()


@pytest.fixture(scope="module")
def faces() -> tuple[torch.Tensor, torch.Tensor]:
    """12 fixed photo faces at 32 px and their conditions [12, 17]."""
    x, _, cond = synth.sample_batch(12, size=32, domain="photo", rng_or_seed=5)
    return x, torch.from_numpy(cond)


def test_shapes_features_and_any_input_size(tiny, faces):
    x = faces[0][:4]
    with torch.no_grad():
        raw, feats = tiny(x), tiny.features(x)
        assert raw.shape == (4, 17) and feats.shape == (4, 16) and bool((feats >= 0).all())
        assert tiny(torch.zeros(2, 3, 80, 56)).shape == (2, 17)  # resized to 32 x 32 inside
        big = torch.nn.functional.interpolate(x, size=64, mode="bilinear")
        small = torch.nn.functional.interpolate(big, size=32, mode="bilinear", antialias=True)
        assert torch.equal(tiny(big), tiny(small))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny(torch.zeros(3, 32, 32))


def test_predict_in_real_units(tiny, faces):
    cfg = tiny.cfg
    assert cfg.output_names == synth.CONDITION_NAMES and cfg.binary == BINARY
    assert cfg.target_mean[0] == 0.0 and 20 < cfg.target_mean[synth.CONDITION_NAMES.index("age")] < 50
    model = AttributeEstimator(cfg, seed=3).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        out = model.predict(faces[0][:3])
    assert set(out) == set(synth.CONDITION_NAMES)
    assert torch.equal(out["gender"], torch.full((3,), 0.5)) and torch.equal(out["glasses"], torch.full((3,), 0.5))
    assert torch.allclose(out["age"], torch.full((3,), cfg.target_mean[6]))
    assert torch.allclose(out["sh3"], torch.full((3,), cfg.target_mean[11]))


def test_config_is_checked():
    with pytest.raises(ValueError, match="not among"):
        EstimatorConfig(output_names=("a",), binary=("b",))
    with pytest.raises(ValueError, match="positive"):
        EstimatorConfig(output_names=("a",), target_std=(0.0,))
    with pytest.raises(ValueError, match="one entry per stage"):
        EstimatorConfig(output_names=("a",), widths=(8, 8), blocks=(1,))
    with pytest.raises(ValueError, match="held-out"):
        TrainConfig(seed=EVAL_SEED)


def test_save_load_round_trip_is_bit_exact(tiny, faces, tmp_path):
    path = tmp_path / "est.pt"
    save_estimator(path, tiny, extras={"note": "test", "step": 7})
    loaded = load_estimator(path)
    assert loaded.cfg == tiny.cfg and loaded.extras == {"note": "test", "step": 7} and not loaded.training
    a, b = tiny.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(tiny(faces[0]), loaded(faces[0]))
    assert torch.load(path, weights_only=True)["format"] == FORMAT


def test_bad_files_are_refused(tiny, tmp_path):
    good = estimator_checkpoint(tiny)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    cases = {
        "no such file": tmp_path / "missing.pt",
        "not a model file": garbage,
        "not an attribute estimator": {**good, "format": "face-editor/stylegan2"},
        "version 2 is not supported": {**good, "format_version": 2},
        "invalid architecture: unknown fields depth": {**good, "arch": {**good["arch"], "depth": 3}},
        "invalid architecture": {**good, "arch": {**good["arch"], "binary": ["nope"]}},
        "do not match": {**good, "state_dict": {k: v for k, v in good["state_dict"].items() if "head" not in k}},
    }
    for message, source in cases.items():
        with pytest.raises(ModelFormatError, match=message):
            load_estimator(source)
    with pytest.raises(ModelFormatError, match="not an attribute estimator"):
        load_estimator([1, 2])


def test_batches_mix_domains_and_augmentation_is_seeded(faces):
    counts = [domain_counts(64, photo_fraction=0.5, step=s) for s in range(5)]
    assert all(sum(c.values()) == 64 and c["photo"] == 32 for c in counts)
    assert all(sum(c[d] for c in counts) == 32 for d in synth.DOMAINS if d != "photo")  # the remainder rotates
    x = faces[0]
    a = augment(x, gen=step_generator(0, 4), jitter=0.06, noise=0.03, shift=2)
    b = augment(x, gen=step_generator(0, 4), jitter=0.06, noise=0.03, shift=2)
    c = augment(x, gen=step_generator(0, 5), jitter=0.06, noise=0.03, shift=2)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    mild = augment(x, gen=step_generator(0, 4), jitter=0.06, noise=0.03, shift=0)
    assert float((mild - x).abs().mean()) < 0.1
    plain = augment(x, gen=step_generator(0, 4), jitter=0.0, noise=0.0, shift=0)
    assert torch.equal(plain, torch.round((x + 1) * 127.5) / 255.0 * 2 - 1)  # only 8-bit quantisation


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(faces):
    model = AttributeEstimator(estimator_config(TrainConfig(**TINY)), seed=0).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, cond = faces
    first = None
    for _ in range(30):
        loss = losses(model, model(x), cond)[0]
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(losses(model, model(x), cond)[0].detach()) < 0.6 * first


def test_resume_is_bit_identical_and_leaves_global_rngs_alone(tmp_path):
    cfg = TrainConfig(steps=4, **TINY)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    straight = EstimatorTrainer(cfg, progress=False)
    assert straight.train() == "done"
    first = EstimatorTrainer(cfg, out_dir=tmp_path, progress=False)
    assert first.train(max_seconds=0.0) == "time limit" and first.step == 1
    resumed = EstimatorTrainer.from_state(EstimatorTrainer.read_state(tmp_path / "checkpoint.pt"), out_dir=tmp_path,
                                          progress=False)
    assert resumed.step == 1 and resumed.train() == "done" and resumed.step == 4
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(torch.get_rng_state(), torch_state) and np.random.get_state()[1].tolist() == np_state[1].tolist()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4"]
    assert load_estimator(tmp_path / "estimator.pt").extras["step"] == 4
    assert (tmp_path / "best.pt").is_file() and json.loads((tmp_path / "eval.json").read_text())["step"] == 4
    with pytest.raises(ValueError, match="cannot change batch_size"):
        EstimatorTrainer.from_state(EstimatorTrainer.read_state(tmp_path / "checkpoint.pt"),
                                    overrides={"batch_size": 6})


def test_evaluation_reports_every_output_in_every_domain(tiny):
    data = held_out(n=4, size=32)
    assert list(data) == list(synth.DOMAINS)
    pixels, cond = data["photo"]
    assert pixels.dtype == torch.uint8 and pixels.shape == (4, 3, 32, 32) and cond.shape == (4, 17)
    assert torch.equal(cond, torch.from_numpy(synth.attributes(synth.sample_params(4, seed=EVAL_SEED))))
    results = evaluate(tiny, data)
    for row in results.values():
        assert list(row) == list(synth.CONDITION_NAMES)
        assert all(0.0 <= row[n] <= 1.0 for n in BINARY)
        assert all(np.isfinite(v) and v >= 0 for v in row.values())
        assert row["yaw"] < 60 and row["age"] < 62
    table = format_table(results, binary=BINARY)
    assert all(n in table for n in synth.CONDITION_NAMES) and "%" in table


def _train(tmp_path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    add_train_commands(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["train", "attributes", "--out", str(tmp_path / "run"), "--size", "32", "--batch",
                                  "6", "--widths", "8,8,8,8", "--blocks", "1,1,1,1", "--eval-n", "2", "--quiet",
                                  *extra]))


def test_cli_trains_resumes_and_reports_user_errors(tmp_path, capsys):
    assert _train(tmp_path, "--resume") == 2
    assert "no attribute estimator training checkpoint" in capsys.readouterr().err
    assert _train(tmp_path, "--steps", "1") == 0
    assert _train(tmp_path, "--steps", "2") == 2
    assert "already holds an attribute estimator training run" in capsys.readouterr().err
    assert _train(tmp_path, "--steps", "2", "--resume") == 0
    assert EstimatorTrainer.read_state(tmp_path / "run" / "checkpoint.pt")["step"] == 2
    assert _train(tmp_path, "--steps", "3", "--seed", "4", "--resume") == 2
    assert "Cannot change seed" in capsys.readouterr().err
    assert _train(tmp_path, "--steps", "3", "--resume", "auto") == 0
    assert EstimatorTrainer.read_state(tmp_path / "run" / "checkpoint.pt")["step"] == 3


def test_release_writes_the_model_and_its_manifest(tiny, tmp_path):
    save_estimator(tmp_path / "best.pt", tiny, extras={"command_line": "train it", "data_seed": 0, "step": 2})
    manifest = release(tmp_path / "best.pt", tmp_path / "out" / "est.pt", eval_n=2)
    assert json.loads((tmp_path / "out" / "est.json").read_text()) == manifest
    assert manifest["sha256"] == file_sha256(tmp_path / "out" / "est.pt") and manifest["command"] == "train it"
    assert list(manifest["held_out"]) == list(synth.DOMAINS) and manifest["hardware"]["cpu"]
    assert load_estimator(tmp_path / "out" / "est.pt").extras["held_out"] == manifest["held_out"]


ASSET = REPO / "assets" / "estimator.pt"


@pytest.mark.skipif(not ASSET.is_file(), reason="assets/estimator.pt has not been trained yet")
def test_embedded_estimator_reads_synthetic_photos():
    manifest = json.loads(ASSET.with_suffix(".json").read_text())
    assert file_sha256(ASSET) == manifest["sha256"]
    model = load_estimator(ASSET)
    x, _, cond = synth.sample_batch(32, size=64, domain="photo", rng_or_seed=EVAL_SEED, start_index=10_000)
    with torch.no_grad():
        pred = model.predict(x)
    cond = torch.from_numpy(cond)
    mae = {n: float((pred[n] - cond[:, k]).abs().mean()) for k, n in enumerate(synth.CONDITION_NAMES)}
    assert mae["yaw"] < 10 and mae["pitch"] < 10 and mae["age"] < 15
    for k, name in enumerate(BINARY):
        assert float(((pred[name] >= 0.5) == (cond[:, k] >= 0.5)).float().mean()) >= 0.8
