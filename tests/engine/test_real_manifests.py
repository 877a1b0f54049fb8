"""Real full-size checkpoint layouts (key -> shape manifests of the released files) load through the public
loaders with the right inferred architecture: FFHQ-1024 config-f (rosinality and NVIDIA) and the 256 model."""
from __future__ import annotations

import json

import torch

from engine import load_discriminator, load_generator


def _state(reference_dir, name: str) -> dict:
    shapes = json.loads((reference_dir / "stylegan2" / "manifests" / f"{name}.json").read_text())
    g = torch.Generator().manual_seed(len(shapes))
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f2 = torch.outer(f, f) / 64  # the constant [1,3,3,1] filter buffers hold (any overall scale)
    return {k: f2.clone() if k.endswith(("kernel", "resample_filter")) else torch.randn(v, generator=g) * 0.1
            for k, v in shapes.items()}


FFHQ1024 = (512, 512, 512, 512, 512, 256, 128, 64, 32)


def _check_1024(G):
    assert G.cfg.img_resolution == 1024 and G.cfg.channels == FFHQ1024
    assert (G.z_dim, G.w_dim, G.num_ws, G.cfg.mapping_layers) == (512, 512, 18, 8)
    assert sum(p.numel() for p in G.parameters()) == 30_370_060  # FACTS §13


def test_rosinality_ffhq1024_config_f(reference_dir):
    g = _state(reference_dir, "rosinality_ffhq1024_configf_g_ema")
    d = _state(reference_dir, "rosinality_ffhq1024_configf_d")
    ck = {"g_ema": g, "latent_avg": torch.zeros(512), "d": d}
    _check_1024(load_generator(ck))
    D = load_discriminator(ck)
    assert D.cfg.channels == FFHQ1024 and D.cfg.mbstd_group_size == 4
    assert sum(p.numel() for p in D.parameters()) == 29_012_513


def test_nvlabs_ada_ffhq1024(reference_dir):
    kwargs = {"z_dim": 512, "w_dim": 512, "c_dim": 0, "img_resolution": 1024, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 8},
              "synthesis_kwargs": {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256}}
    G = load_generator({"G_ema": _state(reference_dir, "nvlabs_ada_ffhq1024_G_ema"), "init_kwargs": kwargs})
    _check_1024(G)
    assert G.cfg.conv_clamp == 256 and G.cfg.num_fp16_res == 4
    D = load_discriminator({"D": _state(reference_dir, "nvlabs_ada_ffhq1024_D"),
                            "init_kwargs": {"c_dim": 0, "img_resolution": 1024, "img_channels": 3,
                                            "channel_base": 32768, "channel_max": 512,
                                            "epilogue_kwargs": {"mbstd_group_size": 4}}})
    assert D.cfg.channels == FFHQ1024


def test_rosinality_256_released_layout_renders(reference_dir):
    """The released 550000.pt: no noise buffers, no latent_avg; a 256 px image comes out."""
    g = {k: v for k, v in _state(reference_dir, "rosinality_256_cm2_g_ema").items() if not k.startswith("noises.")}
    G = load_generator({"g": g, "g_ema": g, "d": _state(reference_dir, "rosinality_256_cm2_d"),
                        "g_optim": {}, "d_optim": {}})
    assert G.cfg.channels == (512, 512, 512, 512, 512, 256, 128) and G.num_ws == 14
    with torch.no_grad():
        img = G(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)))
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()
