"""Fréchet distance between two sets of images in a feature space (FID's formula, any feature extractor).

The project measures its generators in the attribute estimator's feature space (no Inception weights offline):
``d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
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


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding noise clipped)."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """The Fréchet distance between two Gaussians fitted to features (squared-distance units, as FID reports).

    ``tr((S1 S2)^(1/2))`` is computed as the trace of ``(S1^(1/2) S2 S1^(1/2))^(1/2)``, a symmetric PSD matrix, so
    singular covariances (dead feature dimensions) need no regularisation.
    """
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape} vs {b.mean.shape}")
    diff = a.mean - b.mean
    root = _psd_sqrt(a.cov)
    middle = np.linalg.eigvalsh(root @ b.cov @ root)
    trace_covmean = float(np.sqrt(np.clip(middle, 0, None)).sum())
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * trace_covmean)
