"""Latent algorithms and the generator's noise / truncation API: seeds, truncation, mixing, noise modes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import Generator, GeneratorConfig
from engine.algorithms.latents import (
    broadcast_w,
    crossover_rows,
    make_noise,
    mix_styles,
    parse_seeds,
    seed_to_z,
    seeds_to_z,
    truncate,
)


@pytest.fixture(scope="module")
def G():
    G = Generator(GeneratorConfig(img_resolution=16, channels=(16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2),
                  seed=1).eval()
    with torch.no_grad():
        for layer in G.synthesis.noise_layers():
            layer.noise_strength.fill_(0.3)
    return G


def test_seed_to_z_matches_nvidia_gen_images():
    for seed in (0, 1, 42, 2**32 - 1):
        expected = np.random.RandomState(seed).randn(1, 512)
        z = seed_to_z(seed, 512)
        assert z.dtype == torch.float32 and z.shape == (1, 512)
        np.testing.assert_array_equal(z.numpy(), expected.astype(np.float32))
    assert torch.equal(seeds_to_z([3, 5], 8), torch.cat([seed_to_z(3, 8), seed_to_z(5, 8)]))
    with pytest.raises(ValueError):
        seed_to_z(-1, 8)


def test_parse_seeds():
    assert parse_seeds("0-3,10, 12") == [0, 1, 2, 3, 10, 12]
    assert parse_seeds("7") == [7]
    for bad in ("", "a-b", "5-2", "-3", "1,,x"):
        with pytest.raises(ValueError, match="seed"):
            parse_seeds(bad)


def test_truncate_formula_and_cutoff():
    g = torch.Generator().manual_seed(0)
    ws = torch.randn(2, 6, 4, generator=g)
    avg = torch.randn(4, generator=g)
    out = truncate(ws, avg, 0.5, cutoff=2)
    torch.testing.assert_close(out[:, :2], avg + 0.5 * (ws[:, :2] - avg))
    assert torch.equal(out[:, 2:], ws[:, 2:])
    assert truncate(ws, avg, 1.0) is ws
    torch.testing.assert_close(truncate(ws, avg, 0.0), avg.expand_as(ws))
    torch.testing.assert_close(truncate(ws, avg, 1.5), avg + 1.5 * (ws - avg))  # psi > 1 extrapolates
    with pytest.raises(ValueError, match="w_avg"):
        truncate(ws, torch.zeros(3), 0.5)


def test_mix_styles_picks_rows_from_sources():
    src = torch.randn(3, 2, 5, 4, generator=torch.Generator().manual_seed(1))
    rows = [2, 0, 1, 1, 0]
    mixed = mix_styles(src, rows)
    for i, k in enumerate(rows):
        assert torch.equal(mixed[:, i], src[k, :, i])
    assert crossover_rows(5, 2) == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="indices"):
        mix_styles(src, [0, 0, 0, 0, 3])
    with pytest.raises(ValueError, match="one source index per"):
        mix_styles(src, [0, 0])


def test_broadcast_w(G):
    w = torch.randn(2, G.w_dim)
    assert torch.equal(broadcast_w(w, G.num_ws)[:, 3], w)
    with pytest.raises(ValueError, match="num_ws"):
        broadcast_w(torch.zeros(2, 3, G.w_dim), G.num_ws)


@torch.no_grad()
def test_noise_modes(G):
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(2)))
    res = G.cfg.noise_resolutions
    assert len(res) == len(G.synthesis.noise_layers()) == G.num_ws - 1
    zeros = [torch.zeros(1, 1, r, r) for r in res]
    torch.testing.assert_close(G.synthesis(ws, noise_mode="none"), G.synthesis(ws, noise=zeros), rtol=0, atol=0)
    const = [layer.noise_const[None, None] for layer in G.synthesis.noise_layers()]
    torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise=const), rtol=0, atol=0)
    # "random" is reproducible given a generator and differs between draws.
    a = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(5))
    b = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(5))
    c = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # Per-sample noise [B, 1, r, r] vs broadcast [1, 1, r, r].
    per = make_noise(res, seed=3, batch=2)
    img = G.synthesis(ws, noise=per)
    first = G.synthesis(ws[:1], noise=[n[:1] for n in per])
    torch.testing.assert_close(img[:1], first, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="noise\\[0\\]"):
        G.synthesis(ws, noise=[torch.zeros(1, 1, 5, 5)] + zeros[1:])
    with pytest.raises(ValueError, match="one per layer"):
        G.synthesis(ws, noise=zeros[:-1])
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="loud")


@torch.no_grad()
def test_api_shapes_and_errors(G):
    z = torch.randn(3, G.z_dim)
    ws = G.mapping(z, truncation_psi=0.7, truncation_cutoff=2)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, G.img_resolution, G.img_resolution) and img.dtype == torch.float32
    with pytest.raises(ValueError, match="z must be"):
        G.mapping(torch.zeros(3, G.z_dim + 1))
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(torch.zeros(3, G.num_ws + 1, G.w_dim))
    G.w_avg = torch.ones(G.w_dim)
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.0), torch.ones(3, G.num_ws, G.w_dim))
    with pytest.raises(ValueError, match="w_avg"):
        G.w_avg = torch.ones(G.w_dim + 1)
    G.w_avg = torch.zeros(G.w_dim)


@torch.no_grad()
def test_batch_independence(G):
    """Sample i of a batch equals sample i rendered alone (no cross-talk between samples)."""
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(9))
    batch = G(z)
    for i in range(4):
        torch.testing.assert_close(batch[i:i + 1], G(z[i:i + 1]), rtol=1e-5, atol=1e-5)


def test_engine_never_touches_the_global_rngs(G, tmp_path):
    """Loading, mapping, synthesis in every noise mode and seed helpers leave torch's and numpy's global RNGs
    untouched (all randomness is explicit)."""
    from engine import load_generator
    from engine.files.checkpoints import save_generator

    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    save_generator(tmp_path / "g.pt", G)
    ck = {k: v for k, v in G.state_dict().items() if k != "mapping.w_avg" and "noise_const" not in k}
    G2 = load_generator({"G_ema": ck})  # fills noise and computes w_avg
    with torch.no_grad():
        ws = G2.mapping(seeds_to_z([1, 2], G2.z_dim), truncation_psi=0.5)
        for mode in ("const", "none", "random"):
            G2.synthesis(ws, noise_mode=mode)
    make_noise([4, 8], seed=1)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
