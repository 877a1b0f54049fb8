"""Training StyleGAN2 generators from image folders or the synthetic face renderer (no Qt), and the other trainers
(one module each, all on the step loop of ``engine.train.loop``; their releases in ``engine.train.release``).

Public API::

    from engine.train import TrainConfig, Trainer, open_source
    cfg = TrainConfig(resolution=64, batch_size=16, kimg=500)
    source = open_source("synth:photo", resolution=64, batch_size=16, seed=cfg.seed)   # or an image folder
    Trainer(cfg, source, out_dir="runs/photo64").train()      # checkpoint.pt, model.pt, samples/, metrics.csv
    Trainer.from_state(Trainer.read_state("runs/photo64/checkpoint.pt"), source=source, overrides={"kimg": 600},
                       out_dir="runs/photo64").train()         # continues bit for bit

Command line: ``python main.py train stylegan2 --data DIR|synth:DOMAIN --out runs/NAME ...`` (``engine.cli.train``).
"""
from engine.train.data import DataSource, ImageFolderSource, SynthSource, TensorSource, open_source
from engine.train.distributed import DistContext, init_from_env, init_process
from engine.train.stylegan2 import TrainConfig, Trainer

__all__ = [
    "TrainConfig", "Trainer",
    "DataSource", "ImageFolderSource", "TensorSource", "SynthSource", "open_source",
    "DistContext", "init_from_env", "init_process",
]
