"""Tiny random BicycleGAN and TUNIT model files for the image-to-image job and window tests, in the project's
format (with the extras the trainers write) and in the released layouts (state-dict files, with the options file
BicycleGAN's training writes beside them)."""
from __future__ import annotations

from pathlib import Path

import torch

from engine.models.bicyclegan import BicycleEncoderConfig, Encoder, UnetConfig, UnetGenerator, bicyclegan_checkpoint
from engine.models.tunit import Generator as TunitG
from engine.models.tunit import GuidingConfig, GuidingNetwork, TunitGeneratorConfig, tunit_checkpoint

SIZE = 32  # both tiny models take 32 px inputs


def tiny_bicyclegan() -> dict:
    """G (nz 4, 5 U-Net levels: 32 px multiples) and a ResNet E designed for 32 px."""
    G = UnetGenerator(UnetConfig(nz=4, ngf=4, num_downs=5), seed=1).eval()
    E = Encoder(BicycleEncoderConfig(nz=4, nef=4, n_layers=2), seed=2).eval()
    return {"G": G, "E": E}


def tiny_tunit() -> dict:
    """G_EMA (32 px nominal), C and C_EMA with 3 clusters."""
    g_cfg = TunitGeneratorConfig(nf=4, n_downs=1, n_res=1, sty_dim=8, nf_mlp=16)
    c_cfg = GuidingConfig(features=(4, "M", 8, "M"), sty_dim=8, output_k=3)
    return {"G_EMA": TunitG(g_cfg, seed=3).eval(), "C": GuidingNetwork(c_cfg, seed=4).eval(),
            "C_EMA": GuidingNetwork(c_cfg, seed=5).eval()}


def save_bicyclegan(path: Path, nets: dict) -> Path:
    """Project format, with the extras ``release-bicyclegan`` writes (size, domains, data seed)."""
    extras = {"train_config": {"size": SIZE}, "source_domain": "edges", "target_domain": "photo", "data_seed": 0}
    torch.save(bicyclegan_checkpoint(nets, extras=extras), path)
    return path


# BicycleGAN's option defaults (options/base_options.py), for the "[default: ...]" column of its options file
BICYCLEGAN_DEFAULTS = {"batch_size": 2, "checkpoints_dir": "./checkpoints", "conditional_D": False,
                       "crop_size": 256, "dataroot": None, "direction": "AtoB", "gpu_ids": "0", "input_nc": 3,
                       "isTrain": None, "load_size": 286, "name": "", "ndf": 64, "nef": 64, "netD": "basic_256_multi",
                       "netD2": "basic_256_multi", "netE": "resnet_256", "netG": "unet_256", "ngf": 64, "nl": "relu",
                       "norm": "instance", "num_Ds": 2, "nz": 8, "output_nc": 3, "suffix": "", "upsample": "basic",
                       "use_dropout": False, "where_add": "all"}


def training_options_text(options: dict) -> str:
    """An options file as BicycleGAN's ``print_options`` writes it: header, one padded line per option (sorted),
    the ``[default: ...]`` column where a value differs from ``BICYCLEGAN_DEFAULTS``, footer."""
    lines = ["----------------- Options ---------------"]
    for k, v in sorted(options.items()):
        comment = f"\t[default: {BICYCLEGAN_DEFAULTS[k]}]" if k in BICYCLEGAN_DEFAULTS and \
            BICYCLEGAN_DEFAULTS[k] != v else ""
        lines.append("{:>25}: {:<30}{}".format(str(k), str(v), comment))
    lines.append("----------------- End -------------------")
    return "\n".join(lines) + "\n"


def bicyclegan_options(G, E=None, **more) -> dict:
    """The options a BicycleGAN training of ``G`` (and ``E``) would write, with a few unrelated ones as the real
    file has them (an empty ``suffix`` included); ``more`` adds or replaces options."""
    c = G.cfg
    opts = {"dataroot": "./datasets/edges2shoes", "name": "tiny", "gpu_ids": "-1", "isTrain": True, "suffix": "",
            "batch_size": 2, "input_nc": c.input_nc, "output_nc": c.output_nc, "nz": c.nz, "ngf": c.ngf,
            "netG": f"unet_{2 ** c.num_downs}", "norm": c.norm, "nl": c.nl, "upsample": c.upsample,
            "where_add": c.where_add, "use_dropout": c.use_dropout}
    if E is not None:
        opts.update(nef=E.cfg.nef, netE=f"{E.cfg.kind}_{E.cfg.image_size}")
    return {**opts, **more}


def write_training_options(folder: Path, options: dict, *, name: str = "opt.txt") -> Path:
    """``folder/name`` holding ``options`` in the trainers' format."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(training_options_text(options))
    return folder / name


def save_bicyclegan_released(folder: Path, nets: dict, *, encoder: bool = True) -> Path:
    """The released layout: ``latest_net_G.pth`` (and ``latest_net_E.pth``) state dicts in ``folder``, with the
    ``opt.txt`` their training writes."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(nets["G"].state_dict(), folder / "latest_net_G.pth")
    if encoder:
        torch.save(nets["E"].state_dict(), folder / "latest_net_E.pth")
    write_training_options(folder, bicyclegan_options(nets["G"], nets["E"] if encoder else None))
    return folder


def tunit_styles(nets: dict) -> dict[int, torch.Tensor]:
    """Two made-up cluster mean styles (cluster 1 empty)."""
    g = torch.Generator().manual_seed(9)
    dim = nets["G_EMA"].cfg.sty_dim
    return {0: torch.randn(dim, generator=g), 2: torch.randn(dim, generator=g)}


def save_tunit(path: Path, nets: dict) -> Path:
    """Project format with cluster styles and the cluster -> domain map, as ``release-tunit`` writes them."""
    extras = {"train_config": {"size": SIZE}, "data_seed": 0,
              "cluster_styles": {str(k): v.tolist() for k, v in tunit_styles(nets).items()},
              "cluster_domain": {"0": "photo", "2": "sketch"}}
    torch.save(tunit_checkpoint(nets, extras=extras), path)
    return path


def save_tunit_released(path: Path, nets: dict) -> Path:
    """A ``model_<epoch>.ckpt`` as TUNIT's training writes it (no cluster styles)."""
    torch.save({"G_EMA_state_dict": nets["G_EMA"].state_dict(), "C_state_dict": nets["C"].state_dict(),
                "C_EMA_state_dict": nets["C_EMA"].state_dict(), "epoch": 7}, path)
    return path
