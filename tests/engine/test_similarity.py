"""PSNR, SSIM, MS-SSIM against hand computations and their invariants; LPIPS-VGG loading, maths and refusals."""
from __future__ import annotations

import math
import pickle

import pytest
import torch

from engine.algorithms.similarity import MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_scales, psnr, ssim
from engine.errors import ModelFormatError
from engine.models.lpips import LPIPS, load_lpips, resolve_lpips_files


def _images(seed, shape=(2, 3, 32, 32)):
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(shape[0], shape[1], 8, 8, generator=g) * 2 - 1,
                                           size=shape[-2:], mode="bilinear", align_corners=False)
    return base, g


def test_psnr_matches_hand_computation():
    a = torch.zeros(1, 3, 4, 4)
    b = a.clone()
    b[0, 0, 0, 0] = 0.5
    b[0, 2, 3, 1] = -1.0
    mse = (0.25 + 1.0) / 48
    assert float(psnr(a, b)[0]) == pytest.approx(10 * math.log10(4 / mse), rel=1e-6)
    assert float(psnr(a, b, data_range=1.0)[0]) == pytest.approx(10 * math.log10(1 / mse), rel=1e-6)
    assert math.isinf(float(psnr(a, a)[0]))


def _ssim_by_hand(x, y, data_range=2.0, window=11, sigma=1.5):
    """SSIM of two single-channel images by explicit loops over the valid windows (float64)."""
    x, y = x.double(), y.double()
    r = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g1 = torch.exp(-r**2 / (2 * sigma**2))
    g = torch.outer(g1, g1) / g1.sum() ** 2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(x.shape[0] - window + 1):
        for j in range(x.shape[1] - window + 1):
            px, py = x[i:i + window, j:j + window], y[i:i + window, j:j + window]
            mx, my = (g * px).sum(), (g * py).sum()
            vx, vy = (g * px * px).sum() - mx**2, (g * py * py).sum() - my**2
            cxy = (g * px * py).sum() - mx * my
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(torch.stack(vals).mean())


def test_ssim_matches_hand_computation():
    a, g = _images(1, (1, 1, 13, 14))
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    assert float(ssim(a, b)[0]) == pytest.approx(_ssim_by_hand(a[0, 0], b[0, 0]), abs=1e-5)


def test_ssim_identity_symmetry_and_noise():
    a, g = _images(2)
    torch.testing.assert_close(ssim(a, a), torch.ones(2), rtol=0, atol=1e-6)
    torch.testing.assert_close(ms_ssim(a, a), torch.ones(2), rtol=0, atol=1e-6)
    noise = torch.randn(a.shape, generator=g)
    previous_s, previous_ms = torch.ones(2), torch.ones(2)
    for level in (0.02, 0.1, 0.3):
        b = a + level * noise
        s, ms = ssim(a, b), ms_ssim(a, b)
        assert bool((s < previous_s).all()) and bool((ms < previous_ms).all())
        torch.testing.assert_close(s, ssim(b, a), rtol=0, atol=1e-6)
        previous_s, previous_ms = s, ms
    assert float(previous_s.max()) < 0.8


def test_ssim_scales_with_data_range():
    a, g = _images(3)
    b = a + 0.1 * torch.randn(a.shape, generator=g)
    torch.testing.assert_close(ssim(a * 127.5, b * 127.5, data_range=255.0), ssim(a, b), rtol=1e-4, atol=1e-5)
    assert (ssim(a + 0.5, b + 0.5) - ssim(a, b)).abs().max() > 1e-3  # the luminance term is not shift-invariant


def test_ms_ssim_scales_and_weights():
    assert ms_ssim_scales(11) == 1 and ms_ssim_scales(16) == 1 and ms_ssim_scales(22) == 2
    assert ms_ssim_scales(64) == 3 and ms_ssim_scales(176) == 5 and ms_ssim_scales(1024) == 5
    with pytest.raises(ValueError, match="at least 11"):
        ms_ssim_scales(10)
    a, g = _images(4, (1, 3, 64, 64))
    b = a + 0.2 * torch.randn(a.shape, generator=g)
    # One scale is plain SSIM; with more scales the product follows the renormalised weights.
    torch.testing.assert_close(ms_ssim(a, b, scales=1), ssim(a, b), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="1..3"):
        ms_ssim(a, b, scales=4)
    from engine.algorithms.similarity import _ssim_terms

    w = torch.tensor(MS_SSIM_WEIGHTS[:2])
    w = w / w.sum()
    _, cs0 = _ssim_terms(a, b, data_range=2.0, window=11, sigma=1.5)
    s1, _ = _ssim_terms(torch.nn.functional.avg_pool2d(a, 2), torch.nn.functional.avg_pool2d(b, 2), data_range=2.0,
                        window=11, sigma=1.5)
    torch.testing.assert_close(ms_ssim(a, b, scales=2), cs0 ** w[0] * s1 ** w[1], rtol=1e-5, atol=1e-6)


def test_ms_ssim_gradient_is_finite_for_anticorrelated_images():
    a, _ = _images(5)
    b = (-a).requires_grad_(True)
    loss = (1 - ms_ssim(a, b)).sum()
    loss.backward()
    assert torch.isfinite(b.grad).all()


def test_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16))


# LPIPS-VGG: a VGG16 layout with narrow widths (the loader reads the widths from the file).
WIDTHS = (4, 6, 8, 8, 8)
CONVS = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]


def _vgg_state_dict(seed=0):
    g = torch.Generator().manual_seed(seed)
    sd, prev = {}, 3
    for width, stage in zip(WIDTHS, CONVS):
        for i in stage:
            sd[f"features.{i}.weight"] = torch.randn(width, prev, 3, 3, generator=g) * (2 / (9 * prev)) ** 0.5
            sd[f"features.{i}.bias"] = 0.1 * torch.randn(width, generator=g)
            prev = width
    sd["classifier.0.weight"] = torch.randn(5, 8 * 49, generator=g)  # torchvision's file has the classifier too
    return sd


def _heads(seed=1):
    g = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": torch.rand(1, w, 1, 1, generator=g) for k, w in enumerate(WIDTHS)}


@pytest.fixture()
def lpips_files(tmp_path):
    torch.save(_vgg_state_dict(), tmp_path / "vgg16-397923af.pth")
    torch.save(_heads(), tmp_path / "vgg.pth")
    return tmp_path


def _lpips_by_hand(sd, heads, a, b):
    """The LPIPS definition written out with functional ops on the raw state dicts."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    total = torch.zeros(a.shape[0])
    xs = [(a - shift) / scale, (b - shift) / scale]
    for k, stage in enumerate(CONVS):
        for n, x in enumerate(xs):
            if k:
                x = torch.nn.functional.max_pool2d(x, 2)
            for i in stage:
                x = torch.relu(torch.nn.functional.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"],
                                                          padding=1))
            xs[n] = x
        fa, fb = (x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10) for x in xs)
        total += ((fa - fb).square() * heads[f"lin{k}.model.1.weight"]).sum(1).mean(dim=(1, 2))
    return total


def test_lpips_loads_and_matches_its_definition(lpips_files):
    model = load_lpips(lpips_files)  # the folder
    assert isinstance(model, LPIPS) and model.widths == WIDTHS
    assert not any(p.requires_grad for p in model.parameters())
    a, g = _images(6)
    b = (a + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    d = model(a, b)
    assert d.shape == (2,) and bool((d > 0).all())
    torch.testing.assert_close(d, _lpips_by_hand(_vgg_state_dict(), _heads(), a, b), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model(a, a), torch.zeros(2), rtol=0, atol=1e-6)
    torch.testing.assert_close(model(b, a), d, rtol=1e-5, atol=1e-7)
    same = load_lpips(lpips_files / "vgg16-397923af.pth", lpips_files / "vgg.pth")
    torch.testing.assert_close(same(a, b), d, rtol=0, atol=0)


def test_lpips_refuses_other_files(tmp_path, lpips_files):
    bn = {k.replace("features.2.", "features.3."): v for k, v in _vgg_state_dict().items()}
    torch.save(bn, tmp_path / "bn.pth")
    with pytest.raises(ModelFormatError, match="not a torchvision VGG16"):
        load_lpips(tmp_path / "bn.pth", lpips_files / "vgg.pth")
    wrong_heads = _heads()
    wrong_heads["lin2.model.1.weight"] = torch.rand(1, 5, 1, 1)
    torch.save(wrong_heads, tmp_path / "heads.pth")
    with pytest.raises(ModelFormatError, match="do not belong"):
        load_lpips(lpips_files / "vgg16-397923af.pth", tmp_path / "heads.pth")
    with pytest.raises(ModelFormatError, match="not an LPIPS"):
        load_lpips(lpips_files / "vgg16-397923af.pth", lpips_files / "vgg16-397923af.pth")
    (tmp_path / "obj.pth").write_bytes(pickle.dumps({"x": object()}, protocol=2))
    with pytest.raises(ModelFormatError):
        load_lpips(tmp_path / "obj.pth", lpips_files / "vgg.pth")
    torch.save({"features.0.weight": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(ModelFormatError, match="refusing|is a list"):
        load_lpips(tmp_path / "list.pth", lpips_files / "vgg.pth")
    with pytest.raises(ModelFormatError, match="no such"):
        load_lpips(tmp_path / "missing.pth")


def test_lpips_file_resolution(tmp_path, lpips_files):
    assert resolve_lpips_files(lpips_files) == (lpips_files / "vgg16-397923af.pth", lpips_files / "vgg.pth")
    lone = tmp_path / "lone"
    lone.mkdir()
    torch.save(_vgg_state_dict(), lone / "vgg16-x.pth")
    torch.save(_vgg_state_dict(), lone / "vgg16-y.pth")
    with pytest.raises(ModelFormatError, match="exactly one"):
        resolve_lpips_files(lone)
    (lone / "vgg16-y.pth").unlink()
    if resolve_lpips_files.__globals__["installed_heads_path"]() is None:
        with pytest.raises(ModelFormatError, match="no LPIPS linear heads"):
            resolve_lpips_files(lone)
