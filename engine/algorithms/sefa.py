"""SeFa closed-form factorisation (Shen & Zhou 2021) as UI2I's ``closed_form_factorization.py`` computes it.

The style affines of the synthesis convs and of the first ToRGB are stacked row-wise (raw weights, without the
equalised-learning-rate gain, no per-layer normalisation; the later ToRGB affines are left out, exactly as the
reference's key filter does) and their right singular vectors are the directions, by descending singular value.
``UI2I_FACTS.md`` §4.1.
"""
from __future__ import annotations

import torch

from engine.models.stylegan2 import Generator


def modulation_weights(G: Generator) -> torch.Tensor:
    """The stacked style-affine weights [N, w_dim] in rosinality's state-dict order.

    Order: the 4x4 conv (``conv1``), the 4x4 ToRGB (``to_rgb1``), then every conv of the higher blocks
    (``convs.0``, ``convs.1``, ...); N is the sum of those layers' input channels.
    """
    blocks = G.synthesis.blocks()
    first = blocks[0]
    layers = [first.conv1, first.torgb] + [conv for blk in blocks[1:] for conv in (blk.conv0, blk.conv1)]
    return torch.cat([layer.affine.weight.detach() for layer in layers], dim=0).float()


def sefa_factor(G: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa directions of G: ``(eigvec [w_dim, w_dim], singular values [w_dim])``.

    ``eigvec``'s columns are the right singular vectors of ``modulation_weights(G)``, sorted by descending
    singular value (the reference's ``torch.svd(W).V``). When there are fewer stacked rows than w_dim, the
    remaining columns complete an orthonormal basis and their singular values are 0. Column signs are not fixed
    by the SVD (LAPACK's choice differs between builds); here each column's largest-magnitude entry is made
    positive, so the basis is the same on every machine. Computed in float64, returned as float32.
    """
    a = modulation_weights(G).double()  # [N, w_dim]
    _, s, vh = torch.linalg.svd(a, full_matrices=True)
    v = vh.transpose(0, 1)  # [w_dim, w_dim], columns = directions
    idx = v.abs().argmax(dim=0)  # [w_dim]
    signs = torch.sign(v[idx, torch.arange(v.shape[1], device=v.device)])
    v = v * torch.where(signs == 0, torch.ones_like(signs), signs)
    values = s.new_zeros(v.shape[1])
    values[: s.numel()] = s
    return v.float().contiguous(), values.float()


__all__ = ["modulation_weights", "sefa_factor"]
