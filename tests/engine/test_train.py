"""StyleGAN2 training on tiny 16 px networks: data sources, losses and regularisers, EMA, exact resume, FreezeFC,
exported files, the CLI and two-process gloo data parallelism."""
from __future__ import annotations

import argparse
import math
import socket
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli.train import add_train_commands
from engine.files.checkpoints import save_generator
from engine.files.loading import load_discriminator, load_generator
from engine.models.stylegan2 import Discriminator, Generator
from engine.train import TensorSource, TrainConfig, Trainer, open_source
from engine.train.distributed import init_process, shutdown

R = 16
read_state = Trainer.read_state
TINY = dict(resolution=R, channels=(16, 16, 16), z_dim=16, w_dim=16, mapping_layers=2, batch_size=4,
            d_reg_every=2, g_reg_every=2, sample_grid=2, log_every=1, checkpoint_every=2, sample_every=0,
            snapshot_every=0, ema_kimg=0.01)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY, **kw})


def tensor_source(*, batch: int = 4, seed: int = 0, rank: int = 0, world: int = 1) -> TensorSource:
    g = torch.Generator().manual_seed(123)
    images = torch.rand(12, 3, R, R, generator=g) * 2 - 1
    return TensorSource(images, resolution=R, batch_size=batch, seed=seed, rank=rank, world_size=world)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def snapshot(m: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    sizes = [(20, 24), (16, 16), (33, 17), (24, 20), (18, 18), (40, 32)]
    for i, (w, h) in enumerate(sizes):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        folder = root / "sub" if i % 2 else root
        Image.fromarray(arr).save(folder / (f"{i}.png" if i < 5 else f"{i}.jpg"))
    (root / "notes.txt").write_text("not an image")
    return root


def test_image_folder_source_shapes_range_and_seed(image_dir):
    src = open_source(str(image_dir), resolution=R, batch_size=4, seed=1)
    assert len(src) == 6
    batches = [next(src) for _ in range(3)]  # 12 samples: two epochs
    for x in batches:
        assert x.shape == (4, 3, R, R) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
    again = open_source(str(image_dir), resolution=R, batch_size=4, seed=1)
    assert all(torch.equal(a, next(again)) for a in batches)
    other = open_source(str(image_dir), resolution=R, batch_size=4, seed=2)
    assert not all(torch.equal(a, next(other)) for a in batches)
    epoch = sorted(src.sample_index(k) for k in range(6))
    assert epoch == list(range(6))  # every image once per epoch

    resumed = open_source(str(image_dir), resolution=R, batch_size=4, seed=1)
    resumed.load_state_dict({"position": 2})
    assert torch.equal(next(resumed), batches[2])


def test_sources_shard_by_rank():
    ranks = [tensor_source(seed=5, rank=r, world=2) for r in range(2)]
    for epoch in range(2):
        shards = [{s.sample_index(epoch * 6 + k) for k in range(6)} for s in ranks]
        assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == 12


def test_source_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError):
        open_source(str(tmp_path / "missing"), resolution=R, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="no PNG"):
        open_source(str(tmp_path), resolution=R, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="names no domain"):
        open_source("synth:", resolution=R, batch_size=2, seed=0)
    monkeypatch.setitem(sys.modules, "engine.synth", None)  # as if engine.synth could not be imported
    with pytest.raises(ValueError, match="engine.synth"):
        open_source("synth:photo", resolution=R, batch_size=2, seed=0)


def test_steps_regularisers_and_ema(monkeypatch):
    trainer = Trainer(tiny_cfg(), tensor_source(), progress=False)
    g0, d0 = snapshot(trainer.G), snapshot(trainer.D)
    calls = {"r1": [], "pl": []}
    for name, key in (("_r1_step", "r1"), ("_path_length_step", "pl")):
        original = getattr(trainer, name)
        monkeypatch.setattr(trainer, name, lambda *a, _o=original, _k=key: (calls[_k].append(trainer.step),
                                                                            _o(*a)))
    for _ in range(4):
        trainer.train_step()
        for key in ("loss_G", "loss_D", "r1", "pl", "pl_mean"):
            assert math.isfinite(trainer.stats[key])
        assert trainer.stats["r1"] > 0 and trainer.stats["pl"] > 0
    assert calls == {"r1": [0, 2], "pl": [0, 2]}
    g1, d1 = snapshot(trainer.G), snapshot(trainer.D)
    assert not torch.equal(g0["synthesis.b16.conv1.weight"], g1["synthesis.b16.conv1.weight"])
    assert not torch.equal(g0["mapping.fc0.weight"], g1["mapping.fc0.weight"])
    assert not torch.equal(d0["b16.conv0.weight"], d1["b16.conv0.weight"])
    assert not torch.equal(g0["mapping.w_avg"], g1["mapping.w_avg"])
    key = "synthesis.b8.conv0.weight"
    ema = trainer.G_ema.state_dict()[key]
    assert 0 < trainer.ema_beta() < 1
    assert (ema - g1[key]).norm() < (g0[key] - g1[key]).norm()  # G_ema moved from the start towards G
    assert not torch.equal(ema, g0[key]) and not torch.equal(ema, g1[key])


def test_resume_is_bit_identical(tmp_path):
    full = Trainer(tiny_cfg(kimg=0.024), tensor_source(), progress=False)
    assert full.train() == "done" and full.step == 6

    half = Trainer(tiny_cfg(kimg=0.012), tensor_source(), out_dir=tmp_path / "run", progress=False)
    half.train()
    state = read_state(tmp_path / "run" / "checkpoint.pt")
    assert state["step"] == 3 and state["data"]["position"] == 3
    resumed = Trainer.from_state(state, source=tensor_source(), overrides={"kimg": 0.024}, out_dir=tmp_path / "run",
                                 progress=False)
    resumed.train()
    assert resumed.step == 6
    for name in ("G", "D", "G_ema"):
        assert states_equal(getattr(full, name).state_dict(), getattr(resumed, name).state_dict()), name
    for name in ("opt_G", "opt_D"):
        a, b = getattr(full, name).state_dict()["state"], getattr(resumed, name).state_dict()["state"]
        assert all(states_equal(a[i], b[i]) for i in a), name
    assert float(full.pl_mean) == float(resumed.pl_mean)

    exported = load_generator(tmp_path / "run" / "model.pt")
    assert states_equal(exported.state_dict(), resumed.G_ema.state_dict())
    assert load_discriminator(tmp_path / "run" / "model.pt").cfg == resumed.D.cfg
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 7))


def test_freeze_mapping_keeps_base_mapping(tmp_path):
    base_G = Generator(tiny_cfg().generator_config(), seed=7)
    base_D = Discriminator(tiny_cfg().discriminator_config(), seed=8)
    base_G.w_avg = torch.randn(16, generator=torch.Generator().manual_seed(1))
    save_generator(tmp_path / "base.pt", base_G, D=base_D, extras={"note": "base"})
    G, D = load_generator(tmp_path / "base.pt"), load_discriminator(tmp_path / "base.pt")
    trainer = Trainer(tiny_cfg(freeze_mapping=True), tensor_source(), G=G, D=D, progress=False)
    assert not any(p is q for p in trainer.g_params for q in trainer.G.mapping.parameters())
    for _ in range(3):
        trainer.train_step()
    base = base_G.state_dict()
    for net in (trainer.G, trainer.G_ema):
        sd = net.state_dict()
        assert all(torch.equal(sd[k], base[k]) for k in base if k.startswith("mapping."))
        assert not torch.equal(sd["synthesis.b16.conv1.weight"], base["synthesis.b16.conv1.weight"])


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_trains_exports_and_resumes(image_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "stylegan2", "--data", str(image_dir), "--out", str(out), "--resolution", "16",
            "--channels", "16,16,16", "--z-dim", "16", "--w-dim", "16", "--mapping-layers", "2", "--batch", "4",
            "--kimg", "0.008", "--d-reg-every", "2", "--g-reg-every", "2", "--sample-every", "1",
            "--snapshot-every", "2", "--device", "cpu", "--quiet", "--resume", "auto"]
    args = _parse(argv)
    assert args.func(args) == 0
    G = load_generator(out / "model.pt")
    extras = torch.load(out / "model.pt", weights_only=True)["extras"]
    assert extras["training_steps"] == 2 and extras["data"] == str(image_dir) and extras["seed"] == 0
    assert G.cfg.channels == (16, 16, 16) and (out / "samples" / "reals.png").exists()
    assert (out / "samples" / "fakes-0000002.png").exists() and list((out / "snapshots").glob("*.pt"))

    args = _parse(argv[:argv.index("--kimg")] + ["--kimg", "0.016"] + argv[argv.index("--kimg") + 2:])
    assert args.func(args) == 0
    assert read_state(out / "checkpoint.pt")["step"] == 4
    timed = _parse([a for a in argv if a not in ("--resume", "auto", "--kimg", "0.008")] + [
        "--resume", "--kimg", "0.04", "--max-minutes", "0"])  # bare --resume: OUT/checkpoint.pt
    assert timed.func(timed) == 0 and read_state(out / "checkpoint.pt")["step"] == 5  # stopped after one step
    with pytest.raises(ValueError, match="already holds a StyleGAN2 training run"):
        fresh = _parse([a for a in argv if a not in ("--resume", "auto")])
        fresh.func(fresh)
    with pytest.raises(ValueError, match="cannot change w_dim"):
        bad = _parse(argv + ["--w-dim", "32"])
        bad.func(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out: str) -> None:
    import os

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ctx = init_process(rank, 2, device="cpu")
    try:
        trainer = Trainer(tiny_cfg(kimg=0.012), tensor_source(batch=2, rank=rank, world=2), ctx=ctx,
                          progress=False)
        trainer.train()
        torch.save({n: snapshot(getattr(trainer, n)) for n in ("G", "D", "G_ema")}, f"{out}/rank{rank}.pt")
    finally:
        shutdown(ctx)


def test_ddp_gloo_two_processes_agree(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    for name in ("G", "D", "G_ema"):
        assert states_equal(a[name], b[name]), name
    init = snapshot(Generator(tiny_cfg().generator_config(), seed=0))
    assert not torch.equal(a["G"]["synthesis.b16.conv1.weight"], init["synthesis.b16.conv1.weight"])


def test_interrupt_writes_checkpoint_and_stops(tmp_path):
    import signal

    trainer = Trainer(tiny_cfg(kimg=0.04, checkpoint_every=100), tensor_source(), out_dir=tmp_path,
                      progress=False)
    status = trainer.train(on_step=lambda t: signal.raise_signal(signal.SIGINT) if t.step == 2 else None)
    assert status == "interrupted" and trainer.step == 2
    assert read_state(tmp_path / "checkpoint.pt")["step"] == 2
    assert load_generator(tmp_path / "model.pt").cfg == trainer.G.cfg
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
