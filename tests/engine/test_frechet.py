"""Fréchet distance: zero for identical statistics, the closed form for Gaussians, sensitive to shifts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.algorithms.frechet import FeatureStats, feature_stats, frechet_distance, stats_of_batches


def test_identical_and_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    s = feature_stats(x)
    assert frechet_distance(s, s) == pytest.approx(0.0, abs=1e-8)
    # Diagonal Gaussians: d^2 = |dmu|^2 + sum (s1 - s2)^2 over standard deviations.
    a = FeatureStats(mean=np.zeros(3), cov=np.diag([1.0, 4.0, 9.0]), n=0)
    b = FeatureStats(mean=np.array([1.0, 2.0, 0.0]), cov=np.diag([4.0, 4.0, 1.0]), n=0)
    assert frechet_distance(a, b) == pytest.approx(5.0 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2)


def test_sample_estimates_and_batches():
    g = torch.Generator().manual_seed(1)
    same1 = torch.randn(3000, 4, generator=g)
    same2 = torch.randn(3000, 4, generator=g)
    shifted = torch.randn(3000, 4, generator=g) + 1.0
    near = frechet_distance(feature_stats(same1), feature_stats(same2))
    far = frechet_distance(feature_stats(same1), feature_stats(shifted))
    assert near < 0.05 and far == pytest.approx(4.0, rel=0.1)
    stats = stats_of_batches(lambda b: b.flatten(1)[:, :4], same1.view(-1, 1, 2, 2).split(500))
    np.testing.assert_allclose(stats.mean, feature_stats(same1).mean)
    dead = torch.cat([same1, torch.zeros(3000, 2)], dim=1)  # singular covariance (dead features)
    assert frechet_distance(feature_stats(dead), feature_stats(dead)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="feature sizes"):
        frechet_distance(feature_stats(same1), feature_stats(same1[:, :3]))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_stats(np.zeros((1, 3)))
