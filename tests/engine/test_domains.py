"""The domain classifier: shapes and probabilities, its file format, the paired training data and augmentation,
training (loss, exact resume), the release and its manifest, the CLI, and the embedded trained classifier."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine import synth
from engine.assets import ASSETS_DIR, DEFAULT_DOMAINS, default_domains_path
from engine.cli.main import add_commands, run
from engine.errors import ModelFormatError
from engine.files.checkpoints import save_generator
from engine.files.storage import file_sha256
from engine.models.domains import (
    FORMAT,
    DomainClassifier,
    DomainConfig,
    classify,
    confidence,
    domains_checkpoint,
    load_domains,
    save_domains,
)
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.train.domains import (
    DomainTrainConfig,
    DomainTrainer,
    augment,
    domain_config,
    evaluate,
    format_figures,
    gaussian_blur,
    render_domains,
    training_batch,
)
from engine.train.estimator import step_generator
from engine.train.release.domains import blurred, release_domains
from engine.train.release.estimator import EVAL_SEED, held_out

read_state, trainer_from_state = DomainTrainer.read_state, DomainTrainer.from_state

TINY = dict(size=32, widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), stem_width=8, batch_size=12, eval_n=3, eval_every=2,
            checkpoint_every=2, log_every=1, warmup=2)

pytestmark = pytest.mark.usefixtures("one_thread")


class NotWeights:
    """A Python object a weights-only load must refuse."""


@pytest.fixture(scope="module")
def tiny() -> DomainClassifier:
    return DomainClassifier(domain_config(DomainTrainConfig(**TINY)), seed=3).eval()


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    """Two faces at 32 px in every domain, domain-major. [12, 3, 32, 32]"""
    return render_domains(synth.sample_params(2, seed=5), size=32)


def test_shapes_probabilities_and_any_input_size(tiny, faces):
    assert tiny.domain_names == synth.DOMAINS
    with torch.no_grad():
        assert tiny(faces).shape == (12, 6)
        assert tiny(torch.zeros(2, 3, 80, 56)).shape == (2, 6)  # resized to 32 x 32 inside
    p = classify(tiny, faces)
    assert p.shape == (12, 6) and torch.allclose(p.sum(1), torch.ones(12)) and bool((p >= 0).all())
    assert not tiny.training
    big = torch.nn.functional.interpolate(faces, size=64, mode="bilinear")
    small = torch.nn.functional.interpolate(big, size=32, mode="bilinear", antialias=True)
    assert torch.equal(classify(tiny, big), classify(tiny, small))
    assert torch.equal(classify(tiny, faces, batch=5), p)
    assert torch.equal(confidence(tiny, faces, "sketch"), p[:, 3])
    with pytest.raises(ValueError, match="knows no domain 'anime'"):
        confidence(tiny, faces, "anime")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        classify(tiny, torch.zeros(3, 32, 32))
    tiny.train()
    classify(tiny, faces)
    assert tiny.training  # classify restores the mode
    tiny.eval()


def test_config_is_checked():
    with pytest.raises(ValueError, match="two distinct"):
        DomainConfig(domain_names=("photo", "photo"))
    with pytest.raises(ValueError, match="one entry per stage"):
        DomainConfig(domain_names=("a", "b"), widths=(8, 8), blocks=(1,))
    with pytest.raises(ValueError, match="too small"):
        DomainConfig(domain_names=("a", "b"), input_size=16)
    with pytest.raises(ValueError, match="multiple of the 6 domains"):
        DomainTrainConfig(batch_size=10)
    with pytest.raises(ValueError, match="held-out"):
        DomainTrainConfig(seed=EVAL_SEED)
    with pytest.raises(ValueError, match="unknown synthetic domain"):
        DomainTrainConfig(domains=("photo", "anime"))
    cfg = DomainConfig(("a", "b", "c"), widths=[4, 4], blocks=[1, 2])
    assert DomainConfig.from_dict(cfg.to_dict()) == cfg and cfg.blocks == (1, 2)


def test_save_load_round_trip_is_bit_exact(tiny, faces, tmp_path):
    path = tmp_path / "d.pt"
    save_domains(path, tiny, extras={"note": "test", "step": 7})
    loaded = load_domains(path)
    assert loaded.cfg == tiny.cfg and loaded.extras == {"note": "test", "step": 7} and not loaded.training
    a, b = tiny.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(classify(tiny, faces), classify(loaded, faces))
    assert torch.load(path, weights_only=True)["format"] == FORMAT


def test_bad_files_are_refused(tiny, tmp_path):
    good = domains_checkpoint(tiny)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    objects = tmp_path / "objects.pt"
    torch.save({**good, "extras": NotWeights()}, objects)
    cases = {
        "no such file": tmp_path / "missing.pt",
        "not a model file": garbage,
        "asks for the Python object .*NotWeights": objects,
        "not a domain classifier": {**good, "format": "face-editor/estimator"},
        "version 2 is not supported": {**good, "format_version": 2},
        "invalid architecture: unknown fields depth": {**good, "arch": {**good["arch"], "depth": 3}},
        "invalid architecture": {**good, "arch": {**good["arch"], "domain_names": ["photo"]}},
        "'state_dict' is missing": {k: v for k, v in good.items() if k != "state_dict"},
        "do not match": {**good, "state_dict": {k: v for k, v in good["state_dict"].items() if "head" not in k}},
    }
    for message, source in cases.items():
        with pytest.raises(ModelFormatError, match=message):
            load_domains(source)
    with pytest.raises(ModelFormatError, match="expected a file path or a checkpoint dict"):
        load_domains([1, 2])


def test_batches_pair_faces_across_domains_and_augmentation_is_seeded():
    cfg = DomainTrainConfig(**TINY)
    x, labels = training_batch(cfg, 3)
    assert x.shape == (12, 3, 32, 32) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    for i, domain in enumerate(synth.DOMAINS):  # samples 6, 7 of seed 0, as sample_batch draws them
        ref, _, _ = synth.sample_batch(2, size=32, domain=domain, rng_or_seed=0, start_index=6)
        assert torch.equal(x[2 * i:2 * i + 2], ref)
    a = augment(x, gen=step_generator(0, 4), cfg=cfg)
    b = augment(x, gen=step_generator(0, 4), cfg=cfg)
    c = augment(x, gen=step_generator(0, 5), cfg=cfg)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    assert float((a.mean((1, 2, 3)) - x.mean((1, 2, 3))).abs().max()) < 0.3  # colours move, but not far
    unshifted = augment(x, gen=step_generator(0, 4), cfg=replace(cfg, shift=0))
    assert float((unshifted - x).abs().mean()) < 0.2
    plain = DomainTrainConfig(**TINY, blur=0, saturation=0, jitter=0, noise=0, shift=0)
    assert torch.equal(augment(x, gen=step_generator(0, 4), cfg=plain), torch.round((x + 1) * 127.5) / 255 * 2 - 1)


def test_gaussian_blur_per_image():
    x = torch.rand(3, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    y = gaussian_blur(x, torch.tensor([0.0, 1.0, 2.0]), radius=5)
    assert torch.allclose(y[0], x[0], atol=1e-6)  # sigma 0 leaves an image alone
    assert y[1].std() < x[1].std() and y[2].std() < y[1].std()
    flat = gaussian_blur(torch.full((1, 3, 8, 8), 0.3), torch.tensor([1.5]), radius=4)
    assert torch.allclose(flat, torch.full_like(flat, 0.3))  # weights sum to 1, borders replicate
    data = {"photo": ((x[:, :1].expand(3, 3, 9, 9) * 255).round().to(torch.uint8), None)}
    soft = blurred(data, sigma=1.0)["photo"][0]
    assert soft.dtype == torch.uint8 and soft.float().std() < data["photo"][0].float().std()


def test_training_reduces_the_loss_and_evaluation_counts_every_face(faces):
    cfg = DomainTrainConfig(**TINY, steps=20, lr=1e-2)
    trainer = DomainTrainer(cfg, progress=False)
    labels = torch.arange(6).repeat_interleave(2)
    fixed = lambda: float(torch.nn.functional.cross_entropy(  # noqa: E731
        classify(trainer.model, faces).log(), labels, reduction="mean"))
    before = fixed()
    assert trainer.train() == "done" and trainer.step == 20
    assert fixed() < 0.9 * before
    data = held_out(n=2, size=32)
    ev = evaluate(trainer.model, data)
    confusion = np.array(ev["confusion"])
    assert confusion.shape == (6, 6) and confusion.sum() == 12 and (confusion.sum(1) == 2).all()
    assert ev["accuracy"]["photo"] == confusion[0, 0] / 2 and ev["order"] == list(synth.DOMAINS)
    assert abs(ev["mean_accuracy"] - np.trace(confusion) / 12) < 1e-9 and ev["n_per_domain"] == 2
    assert "mean" in format_figures(ev) and "pop" in format_figures(ev)


def test_resume_is_bit_identical_and_leaves_global_rngs_alone(tmp_path):
    cfg = DomainTrainConfig(steps=4, **TINY)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    straight = DomainTrainer(cfg, progress=False)
    assert straight.train() == "done"
    first = DomainTrainer(cfg, out_dir=tmp_path, progress=False)
    assert first.train(max_seconds=0.0) == "time limit" and first.step == 1
    resumed = trainer_from_state(read_state(tmp_path / "checkpoint.pt"), out_dir=tmp_path, progress=False)
    assert resumed.step == 1 and resumed.train() == "done" and resumed.step == 4
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(torch.get_rng_state(), torch_state) and np.random.get_state()[1].tolist() == np_state[1].tolist()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4"]
    assert load_domains(tmp_path / "domains.pt").extras["step"] == 4
    assert (tmp_path / "best.pt").is_file() and json.loads((tmp_path / "eval.json").read_text())["step"] == 4
    with pytest.raises(ValueError, match="cannot change batch_size"):
        trainer_from_state(read_state(tmp_path / "checkpoint.pt"), overrides={"batch_size": 6})
    torch.save({"format": "face-editor/train-encoder", "format_version": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a domain classifier training checkpoint"):
        read_state(tmp_path / "other.pt")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny run and a tiny 32 px generator beside it."""
    root = tmp_path_factory.mktemp("domains")
    DomainTrainer(DomainTrainConfig(steps=2, **TINY), out_dir=root / "run", command_line="train it",
                  progress=False).train()
    G = Generator(GeneratorConfig(img_resolution=32, channels=(8, 8, 8, 8), z_dim=8, w_dim=8, mapping_layers=1))
    save_generator(root / "g.pt", G)
    return root


def test_release_writes_the_model_and_its_manifest(run_dir, tmp_path):
    m = release_domains(run_dir / "run" / "best.pt", tmp_path, eval_n=2, generator=run_dir / "g.pt", generator_n=3,
                        command_line="release it")
    out = tmp_path / DEFAULT_DOMAINS
    assert m["file"] == DEFAULT_DOMAINS and m["sha256"] == file_sha256(out) and m["bytes"] == out.stat().st_size
    assert json.loads((tmp_path / "domains.json").read_text()) == m
    assert m["command"] == "train it" and m["release_command"] == "release it" and m["steps"] == 2
    assert m["hardware"]["torch_threads"] == 1 and m["eval_seed"] == EVAL_SEED and m["released_at"]
    h = m["held_out"]
    assert set(h["accuracy"]) == set(synth.DOMAINS) and np.array(h["confusion"]).sum() == 12
    assert m["held_out_blurred"]["sigma_px"] == 1.0 and [p["step"] for p in m["held_out_curve"]] == [2]
    g = m["generator_check"]
    assert g["generator_sha256"] == file_sha256(run_dir / "g.pt") and [r["psi"] for r in g["results"]] == [1.0, 0.7]
    assert all(abs(sum(r["predicted_share"].values()) - 1) < 1e-9 and r["n"] == 3 for r in g["results"])
    model = load_domains(out)
    assert model.extras["held_out"] == h and DomainConfig.from_dict(m["architecture"]) == model.cfg
    again = release_domains(run_dir / "run" / "checkpoint.pt", tmp_path / "b", eval_n=2, generator=run_dir / "g.pt",
                            generator_n=3)
    assert again["held_out"] == h  # the final checkpoint holds the same step-2 network as best.pt here
    bare = tmp_path / "bare.pt"
    save_domains(bare, model.__class__(model.cfg))
    with pytest.raises(ModelFormatError, match="no training metadata"):
        release_domains(bare, tmp_path / "c", eval_n=2, generator=run_dir / "g.pt")


def _main(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(list(argv)))


def test_cli_trains_resumes_releases_and_reports_user_errors(tmp_path, capsys):
    out = str(tmp_path / "run")
    tiny = ["--size", "32", "--batch", "12", "--widths", "8,8,8,8", "--stem-width", "8", "--eval-n", "2", "--quiet"]
    assert _main("train", "domains", "--out", out, "--steps", "2", "--threads", "1", "--resume", "auto", *tiny) == 0
    assert read_state(tmp_path / "run" / "checkpoint.pt")["step"] == 2
    assert _main("train", "domains", "--out", out, "--steps", "2", *tiny) == 2
    assert "--resume auto" in capsys.readouterr().err
    assert _main("train", "domains", "--out", out, "--steps", "3", "--resume", "auto", *tiny) == 0
    assert read_state(tmp_path / "run" / "checkpoint.pt")["step"] == 3
    assert _main("train", "domains", "--out", out, "--seed", "4", "--resume", "auto", *tiny) == 2
    assert "error: Cannot change seed" in capsys.readouterr().err
    assert _main("train", "domains", "--out", str(tmp_path / "x"), *tiny, "--batch", "10") == 2
    assert "multiple of the 6 domains" in capsys.readouterr().err
    assert _main("train", "domains", "--out", out, "--resume", str(tmp_path / "none.pt")) == 2
    save_generator(tmp_path / "g.pt", Generator(GeneratorConfig(img_resolution=16, channels=(4, 4, 4), z_dim=4,
                                                                w_dim=4, mapping_layers=1)))
    assert _main("train", "release-domains", f"{out}/domains.pt", "--out", str(tmp_path / "rel"), "--eval-n", "2",
                 "--generator", str(tmp_path / "g.pt"), "--generator-n", "2") == 0
    assert "released" in capsys.readouterr().err and (tmp_path / "rel" / "domains.json").is_file()
    assert _main("train", "release-domains", str(tmp_path / "g.pt"), "--out", str(tmp_path / "rel")) == 2
    assert "not a domain classifier" in capsys.readouterr().err


def test_shipped_classifier_matches_its_manifest_and_tells_fresh_renders_apart():
    if not (ASSETS_DIR / DEFAULT_DOMAINS).is_file():
        pytest.skip("no domain classifier is shipped in this checkout yet")
    path = default_domains_path()  # checks the sha256 against domains.json
    info = json.loads((ASSETS_DIR / "domains.json").read_text())
    assert file_sha256(path) == info["sha256"] and path.stat().st_size < 1_000_000
    model = load_domains(path)
    assert model.domain_names == synth.DOMAINS and min(info["held_out"]["accuracy"].values()) >= 0.9
    n, start = 6, 100_000  # faces never rendered for training (seed 2^31-1) nor for the manifest (samples < 512)
    x = render_domains(synth.sample_params(n, seed=EVAL_SEED, start_index=start), size=model.cfg.input_size)
    pred = classify(model, x).argmax(1).view(len(synth.DOMAINS), n)  # [domain, face]
    accuracy = (pred == torch.arange(len(synth.DOMAINS))[:, None]).float().mean(1)
    assert bool((accuracy >= 0.9).all()), dict(zip(synth.DOMAINS, accuracy.tolist()))
