"""Releasing a FreezeFC fine-tune as a translation target: the file, the comparison grid, the model distance in the
manifest, and the refusals (mapping moved, not FreezeFC, another architecture)."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from engine.algorithms.layer_swap import model_distance_profile
from engine.errors import ModelFormatError
from engine.files.checkpoints import save_generator
from engine.files.loading import load_generator
from engine.files.storage import file_sha256
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.train import TensorSource, TrainConfig, Trainer
from engine.train.release.finetune import KIND, mapping_difference, release_finetune

R = 16
CFG = dict(resolution=R, channels=(16, 16, 16), z_dim=16, w_dim=16, mapping_layers=2, batch_size=4, kimg=0.008,
           seed=3, sample_grid=2, log_every=1, checkpoint_every=2, sample_every=0, snapshot_every=2, ema_kimg=0.01)

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(out, base: Generator, *, freeze: bool) -> None:
    cfg = TrainConfig(**CFG, freeze_mapping=freeze)
    images = torch.rand(8, 3, R, R, generator=torch.Generator().manual_seed(1)) * 2 - 1  # [8, 3, R, R]
    source = TensorSource(images, resolution=R, batch_size=4, seed=3)
    trainer = Trainer(cfg, source, out_dir=out, G=base, command_line="main.py train stylegan2 --data synth:toon "
                      "--threads 1", base="base.pt", progress=False, data_spec="synth:toon")
    assert trainer.train() == "done"


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
    G = Generator(GeneratorConfig(img_resolution=R, channels=(16, 16, 16), z_dim=16, w_dim=16, mapping_layers=2),
                  seed=5)
    path = tmp_path_factory.mktemp("base") / "base.pt"
    save_generator(path, G)
    return path


def test_release_writes_the_target_its_grid_and_distance(tmp_path, base_path):
    run = tmp_path / "run"
    _run(run, load_generator(base_path), freeze=True)
    manifest = release_finetune(run / "model.pt", tmp_path / "assets", name="toon", base=base_path, n=8)
    out = tmp_path / "assets"
    assert sorted(p.name for p in out.iterdir()) == ["toon-vs-base.png", "toon.json", "toon.pt"]
    assert json.loads((out / "toon.json").read_text()) == manifest
    assert manifest["kind"] == KIND and manifest["domain"] == "toon"
    assert manifest["sha256"] == file_sha256(out / "toon.pt") and manifest["base_sha256"] == file_sha256(base_path)
    tuned, base = load_generator(out / "toon.pt"), load_generator(base_path)
    assert mapping_difference(base, tuned) == 0.0
    distance = manifest["model_distance"]
    assert distance["to_base"] > 0 and set(distance["by_swap_depth"]) == {"8", "16"}
    expected = model_distance_profile(base, tuned, n=8, seed=10_000)
    assert distance["to_base"] == pytest.approx(expected[0], rel=1e-6)
    assert {int(d): v for d, v in distance["by_swap_depth"].items()} == pytest.approx(
        {d: v for d, v in expected.items() if d}, rel=1e-6)
    with Image.open(out / "toon-vs-base.png") as im:
        assert im.size == (8 * R, 8 * R)


def test_release_refuses_what_is_not_a_freezefc_fine_tune(tmp_path, base_path):
    run = tmp_path / "free"
    _run(run, load_generator(base_path), freeze=False)
    with pytest.raises(ModelFormatError, match="mapping network differs"):
        release_finetune(run / "model.pt", tmp_path / "a", name="toon", base=base_path, n=4)
    other = tmp_path / "other.pt"
    save_generator(other, Generator(GeneratorConfig(img_resolution=R, channels=(8, 8, 8), z_dim=16, w_dim=16,
                                                    mapping_layers=2), seed=1))
    with pytest.raises(ModelFormatError, match="architecture"):
        release_finetune(run / "model.pt", tmp_path / "a", name="toon", base=other, n=4)
    with pytest.raises(ValueError, match="plain word"):
        release_finetune(run / "model.pt", tmp_path / "a", name="../toon", base=base_path, n=4)


def test_the_shipped_targets_are_freezefc_fine_tunes_of_the_shipped_default():
    from engine.assets import ASSETS_DIR, default_generator_path, verified_asset
    from engine.jobs.translate import shipped_targets

    targets = shipped_targets(ASSETS_DIR)
    assert "toon" in {t.domain for t in targets}
    base = load_generator(default_generator_path())
    for t in targets:
        path = verified_asset(f"{t.domain}.pt")  # the manifest's sha256 checked
        assert t.info["kind"] == KIND and t.base_sha256 == base.model_info.sha256
        assert mapping_difference(base, load_generator(path)) == 0.0
        assert 0 < t.info["model_distance"]["to_base"] < 1
