"""Training StyleGAN2 generators from image folders or the synthetic face renderer (no Qt).

Public API::

    from engine.train import TrainConfig, Trainer, open_source
    cfg = TrainConfig(resolution=64, batch_size=16, kimg=500)
    source = open_source("synth:photo", resolution=64, batch_size=16, seed=cfg.seed)   # or an image folder
    Trainer(cfg, source, out_dir="runs/photo64").train()      # checkpoint.pt, model.pt, samples/, metrics.csv

Command line: ``python main.py train stylegan2 --data DIR|synth:DOMAIN --out runs/NAME ...`` (see ``cli``).
"""
from engine.train.data import DataSource, ImageFolderSource, SynthSource, TensorSource, open_source
from engine.train.distributed import DistContext, init_from_env, init_process
from engine.train.stylegan2 import TrainConfig, Trainer, read_state, resume_config, trainer_from_state

__all__ = [
    "TrainConfig", "Trainer", "read_state", "resume_config", "trainer_from_state",
    "DataSource", "ImageFolderSource", "TensorSource", "SynthSource", "open_source",
    "DistContext", "init_from_env", "init_process",
]
