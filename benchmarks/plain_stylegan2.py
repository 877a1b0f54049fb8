"""A deliberately plain StyleGAN2 synthesis forward, the baseline the benchmarks compare against.

It reads the weights of an ``engine`` Generator and computes the image the textbook way (FACTS.md §3-§7):
per-sample modulated and demodulated weights in one grouped conv, transposed conv + padded 2-D blur, separate
noise / bias / activation passes, NCHW tensors, default allocator. This is what a straightforward port does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _blur(x: torch.Tensor, f2d: torch.Tensor, pad: tuple[int, int], *, up: int = 1) -> torch.Tensor:
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = f2d.shape[0]
    return F.conv2d(x, f2d.flip([0, 1]).view(1, 1, k, k).repeat(c, 1, 1, 1), groups=c)


def _modconv(layer, x, w, noise, f2d):
    b, i_ch, h, wd = x.shape
    s = F.linear(w, layer.affine.weight * layer.affine.weight_gain, layer.affine.bias)  # [B, I]
    wt = layer.weight[None] * s[:, None, :, None, None]  # [B, O, I, 3, 3]
    wt = wt * torch.rsqrt(wt.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    o_ch = wt.shape[1]
    xg = x.reshape(1, b * i_ch, h, wd)
    if layer.up:
        wg = wt.transpose(1, 2).reshape(b * i_ch, o_ch, 3, 3)
        y = F.conv_transpose2d(xg, wg, stride=2, groups=b)
        y = _blur(y, f2d * 4, (1, 1))
    else:
        y = F.conv2d(xg, wt.reshape(b * o_ch, i_ch, 3, 3), padding=1, groups=b)
    y = y.reshape(b, o_ch, y.shape[2], y.shape[3])
    y = y + noise * layer.noise_strength
    y = F.leaky_relu(y + layer.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)
    return y


def _torgb(layer, x, w):
    b, i_ch, h, wd = x.shape
    s = F.linear(w, layer.affine.weight * layer.affine.weight_gain, layer.affine.bias) * layer.weight_gain
    wt = layer.weight[None] * s[:, None, :, None, None]  # [B, 3, I, 1, 1]
    y = F.conv2d(x.reshape(1, b * i_ch, h, wd), wt.reshape(-1, i_ch, 1, 1), groups=b)
    return y.reshape(b, -1, h, wd) + layer.bias.view(1, -1, 1, 1)


def plain_forward(G, z: torch.Tensor) -> torch.Tensor:
    """Mapping + synthesis with const noise, computed plainly from ``G``'s weights. [B, 3, R, R]"""
    ws = G.mapping(z)  # [B, num_ws, w_dim]
    taps = G.synthesis.b4.taps
    f2d = torch.outer(taps, taps)
    x = img = None
    idx = 0
    for blk in G.synthesis.blocks():
        if blk.resolution == 4:
            x = blk.const.unsqueeze(0).repeat(z.shape[0], 1, 1, 1)
        else:
            x = _modconv(blk.conv0, x, ws[:, idx], blk.conv0.noise_const[None, None], f2d)
            idx += 1
        x = _modconv(blk.conv1, x, ws[:, idx], blk.conv1.noise_const[None, None], f2d)
        y = _torgb(blk.torgb, x, ws[:, idx + 1])
        img = y if img is None else _blur(img, f2d * 4, (2, 1), up=2) + y
        idx += 1
    return img
