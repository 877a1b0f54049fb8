"""engine.models.ops.gaussian_blur: the one Gaussian blur (line drawings, synthetic styles, augmentation, SSIM)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.algorithms.similarity import ssim
from engine.models.ops import gaussian_blur, gaussian_taps


def _by_hand(x: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """Blur of one [H, W] image in float64: replicated borders, the 2-D Gaussian summed over the window."""
    t = np.arange(-radius, radius + 1)
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma**2))
    g /= g.sum()
    p = np.pad(x, radius, mode="edge")
    h, w = x.shape
    return np.array([[(p[i:i + 2 * radius + 1, j:j + 2 * radius + 1] * g).sum() for j in range(w)] for i in range(h)])


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 2, 13, 11, generator=torch.Generator().manual_seed(0))  # [B, C, H, W]


@pytest.mark.parametrize("sigma", [0.6, 1.5, 2.2])
def test_the_blur_is_the_2d_gaussian_with_replicated_borders(images, sigma):
    y = gaussian_blur(images, sigma)
    radius = max(1, math.ceil(3 * sigma))
    assert y.shape == images.shape
    for b in range(3):
        for c in range(2):
            np.testing.assert_allclose(y[b, c].numpy(), _by_hand(images[b, c].double().numpy(), sigma, radius),
                                       atol=2e-6)


def test_one_sigma_per_image_blurs_each_image_as_alone(images):
    sigmas = torch.tensor([0.0, 1.0, 2.5])
    y = gaussian_blur(images, sigmas, radius=5)
    assert torch.equal(y[0], images[0])  # sigma 0: unchanged
    for b in (1, 2):
        torch.testing.assert_close(y[b:b + 1], gaussian_blur(images[b:b + 1], float(sigmas[b]), radius=5),
                                   rtol=0, atol=1e-6)
    assert y[2].std() < y[1].std() < images[1].std()
    flat = torch.full((2, 3, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, torch.tensor([1.5, 0.5]), radius=4), flat)  # taps sum to 1
    with pytest.raises(ValueError, match="needs its radius"):
        gaussian_blur(images, sigmas)


def test_valid_padding_keeps_only_what_the_whole_window_covers(images):
    y = gaussian_blur(images, 1.5, radius=3, padding="valid")
    assert y.shape == (3, 2, 7, 5)
    torch.testing.assert_close(y, gaussian_blur(images, 1.5, radius=3)[..., 3:-3, 3:-3], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="padding must be one of replicate, valid"):
        gaussian_blur(images, 1.5, padding="circular")


def test_taps_are_normalised_and_match_in_both_forms():
    one = gaussian_taps(1.5, radius=5)
    many = gaussian_taps(torch.tensor([1.5, 0.0]), radius=5)
    assert one.shape == (11,) and many.shape == (2, 11)
    torch.testing.assert_close(one.sum(), torch.tensor(1.0))
    torch.testing.assert_close(many[0], one, rtol=0, atol=1e-7)
    assert torch.equal(many[1], torch.eye(11)[5])  # sigma 0: a single 1 in the middle


def test_ssim_takes_odd_windows_only():
    a = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert float(ssim(a, a, window=7)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="odd number"):
        ssim(a, a, window=8)
