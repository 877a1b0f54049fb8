"""Releasing a StyleGAN2 training snapshot as the default generator: a tiny 16 px run released with a tiny
estimator (the file, its manifest and grids, exact weights, finite Fréchet figures, idempotence, refusals, CLI)."""
from __future__ import annotations

import argparse
import json
import math
import shutil

import pytest
import torch
from PIL import Image

from engine.algorithms.latents import seed_to_z
from engine.assets import verified_asset
from engine.cli.main import run
from engine.cli.train import add_train_commands
from engine.errors import ModelFormatError
from engine.files.checkpoints import FORMAT, save_generator
from engine.files.images import read_png_parameters
from engine.files.loading import load_generator
from engine.files.storage import file_sha256
from engine.models.estimator import AttributeEstimator, EstimatorConfig, save_estimator
from engine.models.stylegan2 import GeneratorConfig
from engine.train import TensorSource, TrainConfig, Trainer
from engine.train.release.generator import GRID_PSIS, grid_name, release_generator
from engine.train.release.manifest import option_value

R = 16
COMMAND = "main.py train stylegan2 --data t --out run --threads 1 --seed 3"
FILES = ["generator.pt", "generator.json", *map(grid_name, GRID_PSIS)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2-step 16 px training run: config.json, metrics.csv, snapshots/network-000000kimg.pt, model.pt."""
    cfg = TrainConfig(resolution=R, channels=(16, 16, 16), z_dim=16, w_dim=16, mapping_layers=2, batch_size=4,
                      kimg=0.008, seed=3, sample_grid=2, log_every=1, checkpoint_every=2, sample_every=0,
                      snapshot_every=2, ema_kimg=0.01)
    images = torch.rand(8, 3, R, R, generator=torch.Generator().manual_seed(1)) * 2 - 1  # [8, 3, R, R]
    source = TensorSource(images, resolution=R, batch_size=4, seed=3)
    out = tmp_path_factory.mktemp("run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert Trainer(cfg, source, out_dir=out, command_line=COMMAND, progress=False).train() == "done"
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def estimator_file(tmp_path_factory):
    cfg = EstimatorConfig(output_names=("a", "b"), input_size=R, widths=(8, 8), blocks=(1, 1), stem_width=8,
                          feature_dim=16)
    path = tmp_path_factory.mktemp("est") / "est.pt"
    save_estimator(path, AttributeEstimator(cfg, seed=2))
    return path


def test_release_writes_the_snapshot_generator_its_manifest_and_grids(run_dir, estimator_file, tmp_path):
    snap = run_dir / "snapshots" / "network-000000kimg.pt"
    out = tmp_path / "out"
    m = release_generator(snap, out, n=64, batch=24, grid=2, estimator=estimator_file, command_line="release it")
    assert json.loads((out / "generator.json").read_text()) == m
    assert m["sha256"] == file_sha256(out / "generator.pt") and m["bytes"] == (out / "generator.pt").stat().st_size
    assert verified_asset("generator.pt", folder=out) == out / "generator.pt"
    ckpt = torch.load(out / "generator.pt", weights_only=True)
    assert ckpt["format"] == FORMAT and "discriminator" not in ckpt and "mapping.w_avg" in ckpt["state_dict"]
    assert ckpt["extras"]["snapshot_sha256"] == m["snapshot_sha256"] == file_sha256(snap)

    G0, G1 = load_generator(snap), load_generator(out / "generator.pt")
    assert not G1.model_info.notes and G0.state_dict().keys() == G1.state_dict().keys()
    assert all(torch.equal(v, G1.state_dict()[k]) for k, v in G0.state_dict().items())
    with torch.no_grad():
        z = seed_to_z(7, G0.z_dim)
        assert torch.equal(G0(z, noise_mode="const"), G1(z, noise_mode="const"))

    fid = m["frechet"]
    assert math.isfinite(fid["frechet_estimator_space"]) and fid["frechet_estimator_space"] > 0
    assert math.isfinite(fid["floor_real_vs_real"]) and fid["floor_real_vs_real"] >= 0
    assert fid["n"] == 64 and fid["estimator_sha256"] == file_sha256(estimator_file)
    assert fid["real"]["samples"] == [0, 63] and fid["floor_real"]["samples"] == [64, 127]
    assert (m["command"], m["data_seed"], m["steps"], m["images_seen"], m["kimg"]) == (COMMAND, 3, 2, 8, 0.008)
    assert m["train_seconds"] > 0 and m["hardware"]["torch_threads"] == 1 and m["hardware"]["cpu"]
    assert m["release_command"] == "release it" and GeneratorConfig.from_dict(m["architecture"]) == G0.cfg
    for psi in GRID_PSIS:
        with Image.open(out / grid_name(psi)) as im:
            assert im.size == (2 * R, 2 * R)
        params = read_png_parameters(out / grid_name(psi))
        assert params["truncation_psi"] == psi and params["model_sha256"] == m["sha256"]
    assert set(m["samples"]) == {grid_name(psi) for psi in GRID_PSIS}

    again = release_generator(snap, tmp_path / "again", n=64, batch=40, grid=2, estimator=estimator_file,
                              command_line="release it")
    assert again["sha256"] == m["sha256"]
    for name in FILES[:1] + FILES[2:]:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    assert again["frechet"]["frechet_estimator_space"] == pytest.approx(fid["frechet_estimator_space"], rel=1e-6)


def test_release_refuses_what_is_not_a_training_snapshot(run_dir, estimator_file, tmp_path):
    snap = run_dir / "snapshots" / "network-000000kimg.pt"
    kw = dict(n=4, batch=4, grid=1, estimator=estimator_file)
    loose = tmp_path / "loose" / "network-000000kimg.pt"
    loose.parent.mkdir()
    shutil.copy(snap, loose)
    with pytest.raises(FileNotFoundError, match="not inside a training run folder"):
        release_generator(loose, tmp_path / "out", **kw)
    misnamed = run_dir / "snapshots" / "network-000005kimg.pt"
    shutil.copy(snap, misnamed)
    try:
        with pytest.raises(ModelFormatError, match="not at the 5 kimg its name says"):
            release_generator(misnamed, tmp_path / "out", **kw)
    finally:
        misnamed.unlink()
    bare = run_dir / "snapshots" / "bare.pt"
    save_generator(bare, load_generator(snap))
    try:
        with pytest.raises(ModelFormatError, match="holds no training metadata"):
            release_generator(bare, tmp_path / "out", **kw)
    finally:
        bare.unlink()
    with pytest.raises(ValueError, match="need n >= 2"):
        release_generator(snap, tmp_path / "out", **{**kw, "n": 1})
    assert not (tmp_path / "out").exists()


def test_release_command_releases_the_final_model(run_dir, estimator_file, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_train_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "release-generator", str(run_dir / "model.pt"), "--out", str(tmp_path),
                              "--n", "8", "--batch", "8", "--estimator", str(estimator_file)])
    assert run(args) == 0
    m = json.loads((tmp_path / "generator.json").read_text())
    assert m["snapshot"] == "model.pt" and m["frechet"]["n"] == 8 and m["release_threads"] == 1
    assert "Fréchet distance" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


def test_option_value_reads_recorded_command_lines():
    assert option_value("main.py train --threads 2 --seed 0", "--threads") == "2"
    assert option_value("main.py train --threads=4", "--threads") == "4"
    assert option_value("main.py train", "--threads") is None
