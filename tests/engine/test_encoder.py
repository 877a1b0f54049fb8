"""The inversion encoder: shapes and the w_avg start, the file format and its refusals, training (the loss falls,
exact resume), the release next to its generator only, and the shipped ``assets/encoder.pt``."""
from __future__ import annotations

import argparse
import json
import os
import pickle
from dataclasses import replace

import pytest
import torch

from engine.algorithms.latents import seed_to_z
from engine.algorithms.similarity import psnr
from engine.assets import ASSETS_DIR
from engine.cli.main import run
from engine.cli.train import add_train_commands
from engine.errors import ModelFormatError
from engine.files.checkpoints import save_generator
from engine.files.loading import load_generator
from engine.files.storage import file_sha256
from engine.models.encoder import Encoder, EncoderConfig, check_compatible, load_encoder, save_encoder
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.train.encoder import EncoderTrainConfig, EncoderTrainer, render, sample_latents
from engine.train.release.encoder import release_encoder
from engine.train.stylegan2 import step_generator

pytestmark = pytest.mark.usefixtures("one_thread")
read_state = EncoderTrainer.read_state

G_CFG = GeneratorConfig(img_resolution=16, channels=(16, 16, 16), z_dim=16, w_dim=16, mapping_layers=2)
TINY = ["--channel-base", "64", "--channel-max", "12", "--head-channels", "8", "--hidden", "24", "--batch", "4",
        "--eval-n", "8", "--threads", "1", "--quiet"]


def tiny_encoder_config(g: GeneratorConfig = G_CFG) -> EncoderConfig:
    return EncoderConfig.for_generator(g, channel_base=64, channel_max=12, head_channels=8, hidden=24)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "generator.pt"
    G = Generator(G_CFG, seed=1)
    G.w_avg = G.mapping(torch.randn(256, G_CFG.z_dim, generator=torch.Generator().manual_seed(0)))[:, 0].mean(0)
    save_generator(path, G)
    return path


def test_shapes_the_w_avg_start_and_bad_images():
    cfg = tiny_encoder_config()
    assert cfg.resolution == 16 and cfg.channels == (12, 12, 12) and (cfg.num_ws, cfg.w_dim) == (6, 16)
    E = Encoder(cfg, seed=0).eval()
    w_avg, scale = torch.linspace(-1, 1, 16), torch.linspace(0.5, 2, 16)
    E.set_latent_stats(w_avg, scale)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    ws = E(x)
    assert ws.shape == (3, 6, 16)
    assert torch.equal(ws, w_avg.expand(3, 6, 16))  # the head starts at zero
    assert E(torch.rand(2, 3, 32, 32)).shape == (2, 6, 16)  # other sizes are resized
    target = torch.randn(3, 6, 16)
    assert torch.allclose(E.denormalise(E.normalise(target)), target, atol=1e-6)
    for bad in (torch.zeros(3, 16, 16), torch.zeros(1, 1, 16, 16), torch.zeros(1, 3, 16, 8)):
        with pytest.raises(ValueError, match="images must be square"):
            E(bad)
    with pytest.raises(ValueError, match="one width per resolution"):
        EncoderConfig(resolution=16, num_ws=6, w_dim=16, channels=(8, 8))
    with pytest.raises(ModelFormatError, match="belongs to another generator"):
        check_compatible(E, GeneratorConfig(img_resolution=32, channels=(8, 8, 8, 8), z_dim=8, w_dim=16))


def test_save_load_round_trip_and_bad_files(tmp_path, generator_file):
    E = Encoder(tiny_encoder_config(), seed=3)
    with torch.no_grad():
        for p in E.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    info = {"generator_sha256": "ab" * 32, "kimg": 1.5, "figures": {"psnr_db": 20.0}}
    save_encoder(tmp_path / "e.pt", E, info=info)
    back = load_encoder(tmp_path / "e.pt")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert back.info == info and not back.training
    assert torch.equal(back(x), E.eval()(x)) and back(x).abs().sum() > 0
    with pytest.raises(ValueError, match="plain values"):
        save_encoder(tmp_path / "f.pt", E, info={"x": torch.zeros(1)})
    with pytest.raises(ValueError, match="float32 or float16"):
        save_encoder(tmp_path / "f.pt", E, dtype=torch.int8)
    save_encoder(tmp_path / "h.pt", E, dtype=torch.float16)
    assert torch.allclose(load_encoder(tmp_path / "h.pt")(x), E(x), atol=1e-2)

    (tmp_path / "junk.pt").write_bytes(b"not a model")
    data = (tmp_path / "e.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with open(tmp_path / "obj.pt", "wb") as f:
        pickle.dump(argparse.ArgumentParser, f, protocol=2)
    ckpt = torch.load(tmp_path / "e.pt", weights_only=True)
    cases = {
        tmp_path / "missing.pt": "no such file",
        tmp_path / "junk.pt": "not a model file",
        tmp_path / "cut.pt": "truncated|damaged",
        generator_file: "not an encoder",
        str(tmp_path / "obj.pt"): "refusing to load",
        "version": "format version 99",
        "arch": "invalid architecture: unknown fields depth",
        "weights": "do not match the architecture",
        "nan": "non-finite",
        "ints": "float32 / float16 tensors",
    }
    for source, message in cases.items():
        if source == "version":
            source = {**ckpt, "format_version": 99}
        elif source == "arch":
            source = {**ckpt, "arch": {**ckpt["arch"], "depth": 3}}
        elif source == "weights":
            source = {**ckpt, "state_dict": {k: v for k, v in ckpt["state_dict"].items() if k != "head.weight"}}
        elif source == "ints":
            source = {**ckpt, "state_dict": {**ckpt["state_dict"], "w_avg": torch.zeros(16, dtype=torch.int64)}}
        elif source == "nan":
            source = {**ckpt, "state_dict": {**ckpt["state_dict"], "w_scale": torch.full((16,), float("nan"))}}
        with pytest.raises(ModelFormatError, match=message):
            load_encoder(source)


def test_sampled_latents_are_seeded_truncated_and_mixed(generator_file):
    G = load_generator(generator_file)
    a = sample_latents(G, 64, step_generator(0, 0, 5), psi_min=0.5, psi_max=0.5, mixing_prob=1.0)
    b = sample_latents(G, 64, step_generator(0, 0, 5), psi_min=0.5, psi_max=0.5, mixing_prob=1.0)
    assert a.shape == (64, 6, 16) and torch.equal(a, b)
    assert not torch.equal(a, sample_latents(G, 64, step_generator(0, 0, 6), psi_min=0.5, psi_max=0.5,
                                             mixing_prob=1.0))
    assert torch.allclose(a[:, 0], a[:, :1].expand(-1, 6, -1)[:, 0])
    assert ((a[:, 0] - a[:, -1]).abs().amax(1) > 0).all()  # every sample mixes: first and last rows differ
    plain = sample_latents(G, 64, step_generator(0, 0, 5), psi_min=1.0, psi_max=1.0, mixing_prob=0.0)
    assert torch.equal(plain, plain[:, :1].expand(-1, 6, -1))  # no mix: all rows equal
    assert torch.allclose(a[:, 0] - G.w_avg, 0.5 * (plain[:, 0] - G.w_avg), atol=1e-5)  # same z, psi 0.5


def test_training_lowers_the_loss_and_changes_the_weights(generator_file):
    G = load_generator(generator_file)
    cfg = EncoderTrainConfig(kimg=0.48, batch_size=16, lr=1e-2, rampdown=0.0, image_weight=1.0, eval_n=32, seed=1)
    trainer = EncoderTrainer(cfg, tiny_encoder_config(), G, progress=False)
    before = trainer.evaluate()
    start = {k: v.clone() for k, v in trainer.encoder.state_dict().items()}
    assert trainer.train() == "done" and trainer.step == 30
    after = trainer.evaluate()
    assert after["latent_mse"] < 0.9 * before["latent_mse"] and after["psnr_db"] > before["psnr_db"] + 2
    assert before == pytest.approx({**trainer.baseline(), "step": 0})  # the untrained encoder answers w_avg
    changed = [k for k, v in trainer.encoder.state_dict().items() if not torch.equal(v, start[k])]
    assert "head.weight" in changed and "fromrgb.weight" in changed
    assert set(changed) <= {k for k, _ in trainer.encoder.named_parameters()}  # w_avg / w_scale stay
    assert 0 < before["ssim"] < after["ssim"] <= 1

    ssim_only = EncoderTrainer(replace(cfg, latent_weight=0.0, image_weight=0.0, ssim_weight=1.0),
                               tiny_encoder_config(), G, progress=False)
    first, second = ssim_only.train_step(), ssim_only.train_step()
    assert first["loss"] == pytest.approx(first["one_minus_ssim"]) and first["image_mse"] > 0
    assert 0 < second["one_minus_ssim"] < 1 and ssim_only.encoder.head.weight.abs().sum() > 0


def test_cli_resume_continues_exactly(generator_file, tmp_path, capsys):
    common = ["encoder", "--model", str(generator_file), "--rampdown", "0", "--eval-every", "2", *TINY]
    assert run(parse(*common, "--out", str(tmp_path / "a"), "--kimg", "0.016")) == 0
    assert run(parse(*common, "--out", str(tmp_path / "b"), "--kimg", "0.008")) == 0
    assert run(parse(*common, "--out", str(tmp_path / "b"), "--kimg", "0.016")) == 2
    assert "already holds an encoder training run" in capsys.readouterr().err
    assert run(parse("encoder", "--out", str(tmp_path / "b"), "--resume", "auto", "--kimg", "0.016", "--quiet")) == 0
    a, b = read_state(tmp_path / "a" / "checkpoint.pt"), read_state(tmp_path / "b" / "checkpoint.pt")
    assert a["step"] == b["step"] == 4
    assert all(torch.equal(v, b["encoder"][k]) for k, v in a["encoder"].items())
    sa, sb = a["opt"]["state"], b["opt"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    ea, eb = ((tmp_path / r / "eval.csv").read_text().splitlines() for r in "ab")
    assert [r.split(",")[:5] for r in ea] == [r.split(",")[:5] for r in eb] and len(ea) == 4
    info = load_encoder(tmp_path / "b" / "encoder.pt").info
    assert info["generator_sha256"] == file_sha256(generator_file) and info["training_steps"] == 4
    assert info["figures"]["step"] == 4 and info["baseline_w_avg"]["psnr_db"] < 100


def test_release_writes_a_matching_manifest_and_refuses_another_generator(generator_file, tmp_path):
    run_dir, assets = tmp_path / "run", tmp_path / "assets"
    assets.mkdir()
    (assets / "generator.pt").write_bytes(generator_file.read_bytes())
    assert run(parse("encoder", "--model", str(generator_file), "--out", str(run_dir), "--kimg", "0.008",
                     *TINY)) == 0
    m = release_encoder(run_dir / "checkpoint.pt", assets, eval_n=8, runs=3, command_line="release")
    assert m["sha256"] == file_sha256(assets / "encoder.pt") == json.loads((assets / "encoder.json").read_text())[
        "sha256"]
    assert m["generator_sha256"] == file_sha256(assets / "generator.pt") and m["kimg"] == 0.008
    assert m["seed"] == 0 and m["command"] == read_state(run_dir / "checkpoint.pt")["command_line"]
    assert m["inference_ms"]["median"] > 0 and m["inference_ms"]["threads"] == 1
    h = m["held_out"]
    assert h["recipe"]["n"] == 8 and 0 < h["baseline_w_avg"]["psnr_db"] < 100 and h["encoder"]["latent_l2"] > 0
    assert [row["step"] for row in m["held_out_curve"]] == [0.0, 2.0]
    stored = torch.load(assets / "encoder.pt", weights_only=True)["state_dict"]
    assert stored["head.weight"].dtype == torch.float16 and stored["w_scale"].dtype == torch.float32
    assert m["weights_dtype"] == "float16" and m["bytes"] < (run_dir / "encoder.pt").stat().st_size * 0.7
    shipped = load_encoder(assets / "encoder.pt")
    trained = load_encoder(run_dir / "encoder.pt")
    weights = {k for k, _ in trained.named_parameters()}
    assert all(torch.equal(v, trained.state_dict()[k].half().float() if k in weights else trained.state_dict()[k])
               for k, v in shipped.state_dict().items())
    assert shipped.info["figures"] == h["encoder"]
    assert release_encoder(run_dir / "encoder.pt", assets, eval_n=8, runs=3, half=False)["weights_dtype"] == "float32"
    exact = load_encoder(assets / "encoder.pt").state_dict()
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in exact.items())
    assert release_encoder(run_dir / "checkpoint.pt", assets, eval_n=8, runs=3)["sha256"] == m["sha256"]  # repeatable
    again = release_encoder(run_dir / "encoder.pt", assets, eval_n=8, runs=3)
    assert again["held_out"]["encoder"] == h["encoder"] and again["released_from"] == "encoder.pt"

    save_generator(assets / "generator.pt", Generator(G_CFG, seed=2))  # another generator: the encoder no longer fits
    with pytest.raises(ModelFormatError, match="train an encoder for this generator"):
        release_encoder(run_dir / "checkpoint.pt", assets, eval_n=8, runs=3)
    (assets / "generator.pt").unlink()
    with pytest.raises(ModelFormatError, match="no generator"):
        release_encoder(run_dir / "encoder.pt", assets, eval_n=8, runs=3)


def test_shipped_encoder_loads_verified_and_beats_w_avg():
    if not (ASSETS_DIR / "encoder.pt").exists():
        message = "assets/encoder.pt is missing from the checkout"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from engine.assets import default_encoder_path, default_generator_path

    path = default_encoder_path()
    manifest = json.loads((ASSETS_DIR / "encoder.json").read_text())
    assert file_sha256(path) == manifest["sha256"]
    G = load_generator(default_generator_path())
    E = load_encoder(path)
    assert E.info["generator_sha256"] == G.model_info.sha256 == manifest["generator_sha256"]
    with torch.no_grad():
        ws = G.mapping(seed_to_z(0, G.z_dim), truncation_psi=0.7)
        x = render(G, ws)
        pred = E(x)
        assert pred.shape == (1, G.num_ws, G.w_dim)
        mean = render(G, G.w_avg.expand_as(ws))
        assert psnr(render(G, pred), x) > psnr(mean, x) + 3
        assert (pred - ws).norm(dim=2).mean() < (G.w_avg - ws).norm(dim=2).mean()
