"""Inversion: the UI2I projector's helpers against the fixture, the optimiser on a tiny generator, the contract."""
from __future__ import annotations

import math

import pytest
import torch

from engine import Generator, GeneratorConfig
from engine.algorithms.latents import make_noise
from engine.algorithms.projection import (
    METHODS,
    InversionResult,
    InversionSettings,
    invert,
    lr_at,
    noise_regularize,
)
from engine.algorithms.sefa import sefa_factor
from engine.algorithms.similarity import psnr

STEPS = 40


@pytest.fixture(scope="module")
def helpers(reference_dir):
    return torch.load(reference_dir / "i2i" / "ui2i_s64.pt", weights_only=True)["cases"]["projector_helpers"]


def test_fixture_lr_table(helpers):
    kw, steps = helpers["kwargs"], helpers["inputs"]["steps"]
    got = torch.tensor([lr_at(int(s), kw["total_steps"], lr=kw["lr"], rampup=0.05, rampdown=0.25) for s in steps],
                       dtype=torch.float64)
    torch.testing.assert_close(got, helpers["expected"]["lr"], rtol=1e-9, atol=1e-12)


def test_fixture_noise_regularize(helpers):
    got = noise_regularize(helpers["inputs"]["noise"])
    torch.testing.assert_close(got, helpers["expected"]["noise_regularize"], rtol=1e-5, atol=1e-7)


def test_lr_schedule_shape():
    lrs = [lr_at(s, 200, lr=0.1, rampup=0.05, rampdown=0.25) for s in range(200)]
    assert lrs[0] == 0
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # warm-up over the first 5 % (10 steps)
    assert all(x == pytest.approx(0.1) for x in lrs[10:151])  # flat at lr until the last 25 %
    assert all(a > b for a, b in zip(lrs[150:199], lrs[151:200]))  # cosine ramp-down
    assert 0 < lrs[-1] < 1e-3
    assert lr_at(0, 10, lr=0.3, rampup=0, rampdown=0) == pytest.approx(0.3)


def test_noise_regularize_penalises_correlated_noise():
    g = torch.Generator().manual_seed(0)
    white = [torch.randn(1, 1, r, r, generator=g) for r in (4, 8, 16, 32)]
    smooth = [torch.nn.functional.interpolate(torch.randn(1, 1, r // 2, r // 2, generator=g), size=(r, r),
                                              mode="bilinear", align_corners=False) for r in (4, 8, 16, 32)]
    smooth = [(n - n.mean()) / n.std() for n in smooth]
    assert float(noise_regularize(smooth)) > 10 * float(noise_regularize(white))
    # One 16x16 map contributes at 16 and 8 (pooled 2x2); a 4x4 map once.
    n = torch.randn(1, 1, 16, 16, generator=g)
    pooled = n.reshape(1, 1, 8, 2, 8, 2).mean(dim=(3, 5))

    def term(m):
        return ((m * m.roll(1, 3)).mean() ** 2 + (m * m.roll(1, 2)).mean() ** 2)

    torch.testing.assert_close(noise_regularize([n]), term(n) + term(pooled))


@pytest.fixture(scope="module")
def tiny(one_thread):
    """A 32 px random generator with visible noise, and a target rendered from a known latent and other noise."""
    G = Generator(GeneratorConfig(img_resolution=32, channels=(32, 32, 16, 8), z_dim=32, w_dim=32,
                                  mapping_layers=2), seed=1)
    with torch.no_grad():
        for layer in G.synthesis.noise_layers():
            layer.noise_strength.fill_(0.05)
        G.w_avg = G.mapping(torch.randn(512, 32, generator=torch.Generator().manual_seed(5)))[:, 0].mean(0)
        ws = G.mapping(torch.randn(1, 32, generator=torch.Generator().manual_seed(7)))
        target = G.synthesis(ws, noise=make_noise(G.cfg.noise_resolutions, seed=9)).clamp(-1, 1)
    return G, ws, target


@pytest.mark.parametrize("method", METHODS)
def test_inversion_improves_psnr(tiny, method):
    G, ws_true, target = tiny
    seen = []
    settings = InversionSettings(method=method, steps=STEPS, optimize_noise=True, noise_init="random")
    result = invert(G, target, settings=settings,
                    progress=lambda step, total, metrics, preview: seen.append((step, total, metrics, preview)))
    assert isinstance(result, InversionResult) and result.steps == STEPS
    assert [s[0] for s in seen] == list(range(1, STEPS + 1)) and {s[1] for s in seen} == {STEPS}
    start = seen[0][2]["psnr"]
    assert result.psnr > start + 5, f"{method}: PSNR {start:.2f} -> {result.psnr:.2f} dB"
    assert seen[-1][2]["loss"] < seen[0][2]["loss"]
    assert result.ssim > seen[0][2]["ssim"]
    # previews every 10 steps (and at the last), as clamped images
    previews = [(s[0], s[3]) for s in seen if s[3] is not None]
    assert [p[0] for p in previews] == [10, 20, 30, 40]
    assert previews[-1][1].shape == target.shape and float(previews[-1][1].abs().max()) <= 1
    # the result is the final code and reproduces its image
    assert result.ws.shape == (1, G.num_ws, G.w_dim)
    assert [tuple(n.shape) for n in result.noise] == [(1, 1, r, r) for r in G.cfg.noise_resolutions]
    with torch.no_grad():
        again = G.synthesis(result.ws, noise=result.noise).clamp(-1, 1)
    torch.testing.assert_close(again, result.image, rtol=0, atol=1e-6)
    assert float(psnr(result.image, target)[0]) == pytest.approx(result.psnr, abs=1e-4)
    if method != "w+":  # W methods keep every row equal
        torch.testing.assert_close(result.ws, result.ws[:, :1].expand_as(result.ws), rtol=0, atol=0)
    for n in result.noise:  # renormalised after every step
        assert abs(float(n.mean())) < 1e-5 and float(n.std()) == pytest.approx(1, abs=1e-4)


def test_deterministic_and_seeded(tiny):
    G, _, target = tiny
    s = InversionSettings(method="sefa", steps=5, optimize_noise=True, noise_init="random")
    a, b = invert(G, target, settings=s), invert(G, target, settings=s)
    torch.testing.assert_close(a.ws, b.ws, rtol=0, atol=0)
    for x, y in zip(a.noise, b.noise):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    c = invert(G, target, settings=InversionSettings.from_dict(s.to_dict() | {"seed": 1}))
    assert (c.ws - a.ws).abs().max() > 1e-4
    for x, y in zip(a.noise, c.noise):
        assert (x - y).abs().max() > 1e-2


def test_sefa_start_and_init_ws(tiny):
    G, ws_true, target = tiny
    # One step runs at lr 0 (warm-up starts at 0): the code stays at its start.
    one = dict(steps=1)
    start = invert(G, target, settings=InversionSettings(method="sefa", **one)).ws
    v0 = torch.randn(10_000, G.w_dim, generator=torch.Generator().manual_seed(0)).mean(0, keepdim=True)
    torch.testing.assert_close(start[:, 0], v0 @ sefa_factor(G)[0], rtol=0, atol=1e-6)
    assert float(start[0, 0].norm()) < 0.1 < float(G.w_avg.norm())  # about 0, not the mean w
    for method in METHODS:
        got = invert(G, target, settings=InversionSettings(method=method, **one), init_ws=ws_true).ws
        torch.testing.assert_close(got, ws_true, rtol=1e-5, atol=1e-5)
        got = invert(G, target, settings=InversionSettings(method=method, **one), init_ws=ws_true[:, 0]).ws
        torch.testing.assert_close(got, ws_true, rtol=1e-5, atol=1e-5)
    plain = invert(G, target, settings=InversionSettings(method="w", **one)).ws
    torch.testing.assert_close(plain[0, 0], G.w_avg, rtol=0, atol=1e-6)
    # Starting at the true latent beats starting at the mean.
    s = InversionSettings(method="w+", steps=10)
    assert invert(G, target, settings=s, init_ws=ws_true).psnr > invert(G, target, settings=s).psnr + 3


def test_should_stop_and_no_side_effects(tiny):
    G, _, target = tiny
    before = {k: v.clone() for k, v in G.state_dict().items()}
    flags = {k: p.requires_grad for k, p in G.named_parameters()}
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 5

    result = invert(G, target, settings=InversionSettings(steps=100), should_stop=stop)
    assert result.steps == 5 and len(calls) == 6
    assert result.image.shape == target.shape and math.isfinite(result.psnr)
    assert {k: p.requires_grad for k, p in G.named_parameters()} == flags
    assert all(p.grad is None for p in G.parameters())
    for k, v in G.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    frozen = Generator(G.cfg, seed=1).requires_grad_(False)
    invert(frozen, target, settings=InversionSettings(steps=2))
    assert not any(p.requires_grad for p in frozen.parameters())


def test_runs_under_no_grad_and_refuses_inference_mode(tiny):
    G, _, target = tiny
    s = InversionSettings(method="w", steps=6)
    with torch.no_grad():
        quiet = invert(G, target, settings=s)
    torch.testing.assert_close(quiet.ws, invert(G, target, settings=s).ws, rtol=0, atol=0)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        invert(G, target, settings=s)


def test_default_keeps_the_generators_noise(tiny):
    """The default leaves the stored noise maps alone: the editor's constant-noise rendering is the result."""
    G, _, target = tiny
    assert not InversionSettings().optimize_noise and InversionSettings().noise_init == "const"
    r = invert(G, target, settings=InversionSettings(steps=5))
    for n, layer in zip(r.noise, G.synthesis.noise_layers()):
        torch.testing.assert_close(n[0, 0], layer.noise_const, rtol=0, atol=0)
    with torch.no_grad():
        const = G.synthesis(r.ws, noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(const, r.image, rtol=0, atol=1e-6)


def test_bad_targets_raise(tiny):
    G, _, target = tiny
    s = InversionSettings(steps=1)
    for bad in (target[0], torch.cat([target, target]), target[:, :, :16, :16], target[:, :2],
                torch.nn.functional.interpolate(target, size=(64, 64))):
        with pytest.raises(ValueError, match=r"\[1, 3, 32, 32\]"):
            invert(G, bad, settings=s)
    with pytest.raises(ValueError, match="NaN"):
        invert(G, target * float("nan"), settings=s)
    with pytest.raises(ValueError, match="init_ws"):
        invert(G, target, settings=s, init_ws=torch.zeros(1, 3, G.w_dim))


def test_settings_round_trip_and_validation():
    s = InversionSettings(method="sefa", steps=123, lr=0.05, seed=9, perceptual_weight=0.3, ms_ssim_scales=2,
                          noise_init="const")
    assert InversionSettings.from_dict(s.to_dict()) == s
    assert InversionSettings.from_dict({}) == InversionSettings()
    assert InversionSettings.from_dict({"steps": 7}).steps == 7
    with pytest.raises(ValueError, match="unknown"):
        InversionSettings.from_dict({"stpes": 7})
    for bad in (dict(method="z"), dict(loss="vgg"), dict(steps=0), dict(lr=0), dict(mse_weight=-1),
                dict(noise_init="zeros"), dict(rampup=2), dict(loss="lpips")):
        with pytest.raises(ValueError):
            InversionSettings(**bad)
    ref = InversionSettings.ui2i("/x/vgg16.pth")
    assert (ref.method, ref.steps, ref.loss, ref.mse_weight, ref.perceptual_weight, ref.lr) == \
        ("sefa", 1000, "lpips", 0.0, 1.0, 0.1)
    assert ref.optimize_noise and ref.noise_regularize == 1e5 and ref.noise_init == "random"
    offline = InversionSettings.ui2i()
    assert (offline.method, offline.steps, offline.loss, offline.optimize_noise) == ("sefa", 1000, "ms-ssim", True)
    assert InversionSettings.ui2i(steps=10).steps == 10


def test_too_many_ms_ssim_scales_raise(tiny):
    G, _, target = tiny
    with pytest.raises(ValueError, match="at most 2 MS-SSIM scales"):
        invert(G, target, settings=InversionSettings(steps=1, ms_ssim_scales=3))


def test_lpips_loss_path(tiny, tmp_path):
    """loss='lpips' loads the user's files and optimises with them (tiny stand-in weights)."""
    from tests.engine.test_similarity import _heads, _vgg_state_dict

    torch.save(_vgg_state_dict(), tmp_path / "vgg16-test.pth")
    torch.save(_heads(), tmp_path / "vgg.pth")
    G, _, target = tiny
    seen = []
    s = InversionSettings(steps=15, loss="lpips", lpips_path=str(tmp_path))
    r = invert(G, target, settings=s, progress=lambda *a: seen.append(a[2]["loss"]))
    assert r.steps == 15 and seen[-1] < seen[0]
    with pytest.raises(Exception, match="no such"):
        invert(G, target, settings=InversionSettings(steps=1, loss="lpips", lpips_path=str(tmp_path / "nope")))


def test_keep_best_never_ends_worse_than_its_start(tiny):
    """Refining a good code with a large step can only make it worse: ``keep_best`` then keeps the start."""
    G, ws_true, target = tiny
    s = InversionSettings(method="w+", steps=10, lr=0.5)
    with torch.no_grad():
        start = float(psnr(G.synthesis(ws_true).clamp(-1, 1), target)[0])
    assert invert(G, target, settings=s, init_ws=ws_true).psnr < start - 1  # what the plain run does
    kept = invert(G, target, settings=s, init_ws=ws_true, keep_best=True)
    assert kept.steps == 10 and kept.kept_step == 0 and kept.psnr == pytest.approx(start, abs=1e-4)
    torch.testing.assert_close(kept.ws, ws_true, rtol=0, atol=0)


def test_keep_best_returns_the_best_rendered_step(tiny):
    G, _, target = tiny
    seen = []
    s = InversionSettings(method="w+", steps=30, lr=0.3)
    r = invert(G, target, settings=s, keep_best=True, progress=lambda *a: seen.append(a[2]["psnr"]))
    # seen[k]: the code after k optimiser steps; the final code (after all 30) is rendered after the loop
    assert r.psnr >= max(seen) - 1e-4 and r.psnr >= seen[0]
    if r.kept_step < s.steps:
        assert r.psnr == pytest.approx(seen[r.kept_step], abs=1e-4)
    with torch.no_grad():
        again = G.synthesis(r.ws, noise=r.noise).clamp(-1, 1)
    assert float(psnr(again, target)[0]) == pytest.approx(r.psnr, abs=1e-4)
    assert invert(G, target, settings=s).kept_step == s.steps  # without keep_best: the final code
