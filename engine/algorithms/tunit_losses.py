"""TUNIT's unsupervised objective (IIC clustering + MoCo style contrast + hinge GAN with R1 + reconstruction), as
pure functions a trainer calls in the reference's order (TUNIT_FACTS §2)::

    c = guiding_losses(C, C_EMA, x_org, x_tf, queue)            # c["c_loss"] (x 0.1 once the GAN phase runs)
    (backward c_loss, step C)
    y_org, y_ref = pseudo_labels(C, x_org, x_ref_idx)           # x_ref = x_org[x_ref_idx]
    with torch.no_grad(): x_fake = G.decode(G.cnt_encoder(x_org), C.moco(x_ref))
    d = discriminator_losses(D, x_ref, x_fake, y_ref)           # d["d_loss"]; (backward, step D)
    g = generator_losses(G, C, C_EMA, D, x_org, x_ref, y_org, y_ref, queue)   # g["g_loss"] also trains C
    (backward g_loss, step C and G)
    queue = update_queue(queue, c["k_cont"]); ema_update(C_EMA, C); ema_update(G_EMA, G) once G_EMA has started
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IIC_EPS = 1e-10


@dataclass(frozen=True)
class TunitWeights:
    """Loss weights (the reference's flags) and the contrastive temperature."""

    w_gp: float = 10.0
    w_rec: float = 0.1
    w_adv: float = 1.0
    w_vec: float = 0.01
    w_iic: float = 5.0  # L_C = L_moco + 5 L_IIC
    temperature: float = 0.07
    queue_size: int = 1024


def mutual_information_loss(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """IIC: minus the mutual information of the symmetrised joint of two views' cluster probabilities.

    p, q [B, K] (softmax outputs) -> []; marginals come from the unclamped joint, then all are clamped at 1e-10.
    """
    joint = p.t() @ q  # [K, K]: sum_b p_b^T q_b
    joint = (joint + joint.t()) / 2
    joint = joint / joint.sum()
    p_i = joint.sum(dim=1, keepdim=True).expand_as(joint).clamp_min(IIC_EPS)
    p_j = joint.sum(dim=0, keepdim=True).expand_as(joint).clamp_min(IIC_EPS)
    joint = joint.clamp_min(IIC_EPS)
    return -(joint * (joint.log() - p_j.log() - p_i.log())).sum()


def contrastive_loss(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, *,
                     temperature: float = 0.07) -> torch.Tensor:
    """MoCo InfoNCE: logits [q.k, q.queue^T] / T, cross-entropy with the positive at index 0; key detached.

    query, key [B, D], queue [N, D] -> []. No L2 normalisation (as the reference).
    """
    key = key.detach()
    pos = (query * key).sum(dim=1, keepdim=True)  # [B, 1]
    neg = query @ queue.t()  # [B, N]
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(query.shape[0], dtype=torch.long, device=query.device))


def adversarial_loss(logit: torch.Tensor, mode: str) -> torch.Tensor:
    """Hinge: ``d_real`` mean relu(1 - l), ``d_fake`` mean relu(1 + l), ``g`` -mean l. -> []"""
    if mode == "d_real":
        return F.relu(1.0 - logit).mean()
    if mode == "d_fake":
        return F.relu(1.0 + logit).mean()
    if mode == "g":
        return -logit.mean()
    raise ValueError(f"mode must be 'd_real', 'd_fake' or 'g', got {mode!r}")


def r1_penalty(logit: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum of squared gradients of sum(logit) w.r.t. the real images, divided by the batch size (graph kept). -> []"""
    (grad,) = torch.autograd.grad(logit.sum(), x, create_graph=True, retain_graph=True)
    return grad.pow(2).sum() / x.shape[0]


def guiding_losses(C: nn.Module, C_EMA: nn.Module, x_org: torch.Tensor, x_tf: torch.Tensor, queue: torch.Tensor,
                   *, weights: TunitWeights | None = None) -> dict:
    """The guiding network's terms: ``q_cont`` = C.moco(x_org), ``k_cont`` = C_EMA.moco(x_tf) (detached), the two
    views' cluster softmaxes, ``iic_loss``, ``moco_loss`` and ``c_loss`` = moco + w_iic * iic (before the 0.1 factor
    the reference applies once the GAN phase has started)."""
    w = weights or TunitWeights()
    out = {"q_cont": C.moco(x_org), "k_cont": C_EMA.moco(x_tf).detach()}
    out["q_disc_softmax"] = F.softmax(C.iic(x_org), dim=1)
    out["k_disc_softmax"] = F.softmax(C.iic(x_tf), dim=1)
    out["iic_loss"] = mutual_information_loss(out["q_disc_softmax"], out["k_disc_softmax"])
    out["moco_loss"] = contrastive_loss(out["q_cont"], out["k_cont"], queue, temperature=w.temperature)
    out["c_loss"] = out["moco_loss"] + w.w_iic * out["iic_loss"]
    return out


@torch.no_grad()
def pseudo_labels(C: nn.Module, x_org: torch.Tensor, x_ref_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y_org = argmax C.iic(x_org), y_ref = y_org[x_ref_idx]), both [B] int64."""
    y_org = C.iic(x_org).argmax(dim=1)
    return y_org, y_org[x_ref_idx]


def discriminator_losses(D: nn.Module, x_ref: torch.Tensor, x_fake: torch.Tensor, y_ref: torch.Tensor, *,
                         weights: TunitWeights | None = None) -> dict:
    """``d_real_logit``, ``d_fake_logit``, hinge terms ``d_adv_real`` / ``d_adv_fake``, ``d_gp`` = w_gp * R1 on the
    real images and ``d_loss`` = their sum. ``x_ref`` gets ``requires_grad`` (a detached copy is used when it is a
    non-leaf) and ``x_fake`` is detached."""
    w = weights or TunitWeights()
    x_ref = x_ref.detach().requires_grad_(True)
    real_logit, _ = D(x_ref, y_ref)
    fake_logit, _ = D(x_fake.detach(), y_ref)
    out = {"d_real_logit": real_logit, "d_fake_logit": fake_logit,
           "d_adv_real": adversarial_loss(real_logit, "d_real"), "d_adv_fake": adversarial_loss(fake_logit, "d_fake"),
           "d_gp": w.w_gp * r1_penalty(real_logit, x_ref)}
    out["d_loss"] = out["d_adv_real"] + out["d_adv_fake"] + out["d_gp"]
    return out


def generator_losses(G: nn.Module, C: nn.Module, C_EMA: nn.Module, D: nn.Module, x_org: torch.Tensor,
                     x_ref: torch.Tensor, y_org: torch.Tensor, y_ref: torch.Tensor, queue: torch.Tensor, *,
                     weights: TunitWeights | None = None) -> dict:
    """The generator's terms: styles ``s_src`` = C.moco(x_org), ``s_ref`` = C.moco(x_ref); ``x_fake`` (content of
    x_org, style of x_ref) and ``x_rec`` (own style); ``g_adv`` = hinge of both judged with y_ref / y_org;
    ``g_imgrec`` = mean |x_rec - x_org|; ``g_sty_contrastive`` = MoCo loss of C.moco(x_fake) against
    C_EMA.moco(x_ref); ``g_loss`` = w_adv * adv + w_rec * rec + w_vec * style (its gradient also reaches C)."""
    w = weights or TunitWeights()
    out = {"s_src": C.moco(x_org), "s_ref": C.moco(x_ref)}
    content = G.cnt_encoder(x_org)
    out["x_fake"] = G.decode(content, out["s_ref"])
    out["x_rec"] = G.decode(content, out["s_src"])
    fake_logit, _ = D(out["x_fake"], y_ref)
    rec_logit, _ = D(out["x_rec"], y_org)
    out["g_adv"] = adversarial_loss(fake_logit, "g") + adversarial_loss(rec_logit, "g")
    out["g_imgrec"] = (out["x_rec"] - x_org).abs().mean()
    out["g_sty_contrastive"] = contrastive_loss(C.moco(out["x_fake"]), C_EMA.moco(x_ref), queue,
                                                temperature=w.temperature)
    out["g_loss"] = w.w_adv * out["g_adv"] + w.w_rec * out["g_imgrec"] + w.w_vec * out["g_sty_contrastive"]
    return out


def update_queue(queue: torch.Tensor, keys: torch.Tensor, *, size: int = 1024) -> torch.Tensor:
    """FIFO MoCo queue: append this batch's keys, keep the newest ``size``. [N, D], [B, D] -> [min(N+B, size), D]"""
    out = torch.cat([queue, keys.detach()], dim=0)
    return out[-size:] if out.shape[0] > size else out


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, *, beta: float = 0.999) -> None:
    """Parameters only: target = beta * target + (1 - beta) * source (buffers: see ``copy_buffers``)."""
    src = dict(source.named_parameters())
    for name, p in target.named_parameters():
        p.copy_(beta * p + (1.0 - beta) * src[name])


@torch.no_grad()
def copy_buffers(target: nn.Module, source: nn.Module) -> None:
    """Copy every buffer (BatchNorm running statistics ...) from ``source``; the reference does this per epoch."""
    src = dict(source.named_buffers())
    for name, b in target.named_buffers():
        b.copy_(src[name])


__all__ = ["TunitWeights", "mutual_information_loss", "contrastive_loss", "adversarial_loss", "r1_penalty",
           "guiding_losses", "pseudo_labels", "discriminator_losses", "generator_losses", "update_queue",
           "ema_update", "copy_buffers"]
