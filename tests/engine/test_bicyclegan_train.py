"""BicycleGAN trainer: finite losses that move every network, exact resume, the release and its manifest."""
from __future__ import annotations

import json

import pytest
import torch

from engine.assets import DEFAULT_BICYCLEGAN, manifest, verified_asset
from engine.convert.bicyclegan import load_bicyclegan
from engine.errors import ModelFormatError
from engine.files.storage import file_sha256
from engine.models.bicyclegan import encode, sample_codes, translate
from engine.train.bicyclegan import (
    BicycleGANTrainConfig,
    BicycleGANTrainer,
    figures,
    held_out_pairs,
    lr_at,
    network_configs,
    training_batch,
)
from engine.train.release.bicyclegan import GRID_NAME, release_bicyclegan

read_state, trainer_from_state = BicycleGANTrainer.read_state, BicycleGANTrainer.from_state

TINY = dict(size=32, batch_size=4, ngf=4, nef=4, ndf=4, nz=4, d_layers=1, eval_n=4, eval_samples=3,
            eval_every=2, checkpoint_every=2, log_every=1)


def _params(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_network_configs_follow_the_size():
    c = network_configs(BicycleGANTrainConfig(size=64, ngf=8, nef=8, ndf=8))
    assert c["G"].num_downs == 6 and c["G"].size_multiple == 64
    assert c["E"].image_size == 64 and c["E"].nz == c["G"].nz == 8
    assert c["D"].ndf == (8, 4)
    with pytest.raises(ValueError, match="power of two"):
        BicycleGANTrainConfig(size=48)
    with pytest.raises(ValueError, match="even"):
        BicycleGANTrainConfig(batch_size=3)
    with pytest.raises(ValueError, match="held-out seed"):
        BicycleGANTrainConfig(seed=2**31 - 1)


def test_pairs_are_aligned_renders_and_lr_decays_linearly():
    cfg = BicycleGANTrainConfig(**TINY, steps=10)
    a, b = training_batch(cfg, 3)
    assert a.shape == b.shape == (4, 3, 32, 32)
    assert not torch.equal(a, b) and a.min() >= -1 and b.max() <= 1
    a2, _ = training_batch(cfg, 3)
    assert torch.equal(a, a2)
    assert not torch.equal(training_batch(cfg, 4)[0], a)
    ha, _ = held_out_pairs(n=4, size=32, source="edges", target="photo")
    assert not any(torch.equal(ha[i], a[j]) for i in range(4) for j in range(4))
    assert [lr_at(cfg, s) for s in (0, 4, 5, 8, 9)] == pytest.approx([2e-4, 2e-4, 2e-4, 0.8e-4, 0.4e-4])


def test_step_losses_finite_and_every_network_changes():
    t = BicycleGANTrainer(BicycleGANTrainConfig(**TINY, steps=2), progress=False)
    before = _params(t)
    stats = t.train_step()
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert stats["G_L1"] > 0 and stats["D"] > 0 and stats["D2"] > 0 and stats["z_L1"] > 0
    after = _params(t)
    for net in ("G", "E", "D", "D2"):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(net + ".")), net
    ev = t.evaluate()
    assert ev["step"] == 1 and 0 < ev["recon_l1"] < 1 and ev["diversity"] >= 0


def test_resume_is_exact(tmp_path):
    cfg = BicycleGANTrainConfig(**TINY, steps=4)
    full = BicycleGANTrainer(cfg, out_dir=tmp_path / "full", progress=False)
    assert full.train() == "done"
    half = BicycleGANTrainer(BicycleGANTrainConfig(**{**TINY, "steps": 2}), out_dir=tmp_path / "half",
                             progress=False)
    half.train()
    resumed = trainer_from_state(read_state(tmp_path / "half" / "checkpoint.pt"), overrides={"steps": 4},
                                 out_dir=tmp_path / "half", progress=False)
    assert resumed.step == 2
    resumed.train()
    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "half" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    with pytest.raises(ValueError, match="cannot change"):
        trainer_from_state(read_state(tmp_path / "half" / "checkpoint.pt"), overrides={"ngf": 8}, progress=False)


def test_release_writes_a_verified_loadable_model(tmp_path):
    t = BicycleGANTrainer(BicycleGANTrainConfig(**TINY, steps=2), out_dir=tmp_path / "run", progress=False,
                          command_line="main.py train bicyclegan")
    t.train()
    out = tmp_path / "assets"
    m = release_bicyclegan(tmp_path / "run" / "bicyclegan.pt", out, eval_n=4, samples=3, grid_rows=2,
                           command_line="main.py train release-bicyclegan")
    path = verified_asset(DEFAULT_BICYCLEGAN, folder=out)
    assert m["sha256"] == file_sha256(path) == json.loads((out / "bicyclegan.json").read_text())["sha256"]
    assert m["steps"] == 2 and m["command"] == "main.py train bicyclegan" and m["domains"] == {"A": "edges",
                                                                                             "B": "photo"}
    nets = load_bicyclegan(path)
    assert set(nets) == {"G", "E"}
    for k in ("G", "E"):
        sd = t.model[k].state_dict()
        assert all(torch.equal(v, sd[n].half().float()) for n, v in nets[k].state_dict().items())
    assert m["weights_dtype"] == "float16"
    full = release_bicyclegan(tmp_path / "run" / "bicyclegan.pt", tmp_path / "full", eval_n=4, samples=3,
                              grid_rows=1, half=False)
    assert full["bytes"] > 1.5 * m["bytes"] and full["figures"]["recon_l1"] == pytest.approx(
        m["figures"]["recon_l1"], abs=1e-3)
    a, b = held_out_pairs(n=4, size=32, source="edges", target="photo")
    again = figures(nets["G"], nets["E"], a, b, samples=3)
    assert again["recon_l1"] == pytest.approx(m["figures"]["recon_l1"])
    assert again["diversity"] == pytest.approx(m["figures"]["diversity"])
    y = translate(nets["G"], a[0], sample_codes(2, 4, seed=1))
    assert y.shape == (2, 3, 32, 32) and not torch.equal(y[0], y[1])
    from PIL import Image

    with Image.open(out / GRID_NAME) as im:
        assert im.size == (7 * 32, 2 * 32)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(ModelFormatError, match="not a BicycleGAN model written by 'train bicyclegan'"):
        release_bicyclegan(other, tmp_path / "x")


def test_shipped_bicyclegan_loads_and_translates():
    path = verified_asset(DEFAULT_BICYCLEGAN, what="embedded BicycleGAN")
    info = manifest(DEFAULT_BICYCLEGAN)
    assert (path.parent / info["grid"]["file"]).is_file()
    nets = load_bicyclegan(path)
    G, E = nets["G"], nets["E"]
    size = info["train_config"]["size"]
    a, b = held_out_pairs(n=4, size=size, source=info["domains"]["A"], target=info["domains"]["B"])
    y = translate(G, a[0], sample_codes(2, G.cfg.nz, seed=0))
    assert y.shape == (2, 3, size, size) and y.abs().max() <= 1
    assert (y[0] - y[1]).abs().mean() > 1e-3
    mu = encode(E, b)
    assert mu.shape == (4, G.cfg.nz)
    rec = (translate(G, a, mu) - b).abs().mean() / 2
    assert rec < (a - b).abs().mean() / 2 and rec == pytest.approx(info["figures"]["recon_l1"], abs=0.05)
