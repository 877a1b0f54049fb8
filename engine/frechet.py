"""Fréchet distance between two sets of images in a feature space (FID's formula, any feature extractor).

The project measures its generators in the attribute estimator's feature space (no Inception weights offline):
``d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch


@dataclass(frozen=True)
class FeatureStats:
    """Mean [F] and covariance [F, F] (float64) of n feature vectors."""

    mean: np.ndarray
    cov: np.ndarray
    n: int


def feature_stats(features: np.ndarray | torch.Tensor) -> FeatureStats:
    """Statistics of a feature matrix [N, F] (N >= 2)."""
    x = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features,
                                                                                                       np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a feature matrix [N >= 2, F], got shape {x.shape}")
    return FeatureStats(mean=x.mean(0), cov=np.cov(x, rowvar=False), n=x.shape[0])


@torch.no_grad()
def stats_of_batches(extract: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[torch.Tensor]
                     ) -> FeatureStats:
    """Run ``extract`` (images [B, 3, H, W] -> features [B, F]) over image batches and summarise the features."""
    feats = [extract(b).double().cpu() for b in batches]
    if not feats:
        raise ValueError("no image batches given")
    return feature_stats(torch.cat(feats))


def frechet_distance(a: FeatureStats, b: FeatureStats, *, eps: float = 1e-6) -> float:
    """The Fréchet distance between two Gaussians fitted to features (squared-distance units, as FID reports)."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape} vs {b.mean.shape}")
    diff = a.mean - b.mean
    covmean = scipy.linalg.sqrtm(a.cov @ b.cov)
    if not np.isfinite(covmean).all():
        offset = np.eye(a.cov.shape[0]) * eps  # near-singular product: regularise both covariances
        covmean = scipy.linalg.sqrtm((a.cov + offset) @ (b.cov + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * np.trace(covmean))
