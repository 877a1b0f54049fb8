"""BicycleGAN's objective (cVAE-GAN + cLR-GAN hybrid), as pure functions a trainer calls once per iteration.

BICYCLEGAN_FACTS §2. A batch of 2k pairs is split: the first half ("encoded") trains the cVAE-GAN branch, the second
half's real B is the real sample of the cLR-GAN discriminator D2. Per iteration::

    fwd = bicyclegan_forward(G, E, real_A, real_B, eps=..., z_random=...)     # explicit noise, no global RNG
    losses = generator_encoder_losses(fwd, D, D2)
    backward_generator_encoder(losses, G, E)       # L_GE into G and E, then lambda_z * |mu2 - z| into G only
    (step the G and E optimisers)
    d = discriminator_losses(fwd, D, D2); (d["loss_D"] + d["loss_D2"]).backward(); (step D and D2)

GAN losses are summed over the discriminators' scales; the KL term is summed over batch and dimensions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

GAN_MODES = ("lsgan", "vanilla", "wgangp")


@dataclass(frozen=True)
class BicycleGANWeights:
    """Loss weights and settings (the reference's training defaults)."""

    lambda_L1: float = 10.0
    lambda_GAN: float = 1.0
    lambda_GAN2: float = 1.0
    lambda_z: float = 0.5
    lambda_kl: float = 0.01
    gan_mode: str = "lsgan"
    conditional_D: bool = False  # D sees cat(A, B) instead of B
    use_same_D: bool = False  # one discriminator for both branches

    def __post_init__(self):
        if self.gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode must be one of {list(GAN_MODES)}, got {self.gan_mode!r}")


def gan_loss(predictions: list[torch.Tensor], target_is_real: bool, *, mode: str = "lsgan") -> torch.Tensor:
    """GAN loss of a multi-scale discriminator's outputs, summed over scales. -> []

    lsgan: mean squared error to 1 (real) / 0 (fake); vanilla: BCE with logits; wgangp: -mean (real) / mean (fake).
    """
    total = predictions[0].new_zeros(())
    for p in predictions:
        if mode == "lsgan":
            total = total + F.mse_loss(p, torch.full_like(p, 1.0 if target_is_real else 0.0))
        elif mode == "vanilla":
            total = total + F.binary_cross_entropy_with_logits(p, torch.full_like(p, 1.0 if target_is_real else 0.0))
        elif mode == "wgangp":
            total = total + (-p.mean() if target_is_real else p.mean())
        else:
            raise ValueError(f"gan mode must be one of {list(GAN_MODES)}, got {mode!r}")
    return total


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over batch and dimensions (BicycleGAN's convention). -> []"""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + eps * exp(logvar / 2) with the standard-normal noise ``eps`` passed in. [B, nz]"""
    return eps * torch.exp(0.5 * logvar) + mu


def bicyclegan_forward(G: nn.Module, E: nn.Module, real_A: torch.Tensor, real_B: torch.Tensor, *,
                       eps: torch.Tensor, z_random: torch.Tensor, weights: BicycleGANWeights | None = None) -> dict:
    """The iteration's forward pass. real_A [2k, Ca, H, W], real_B [2k, Cb, H, W]; eps, z_random [k, nz].

    Returns the halves (``real_A_encoded`` ...), ``mu``, ``logvar``, ``z_encoded``, ``z_random``,
    ``fake_B_encoded`` = G(A1, z_encoded), ``fake_B_random`` = G(A1, z_random) (A1, as the reference), ``mu2`` =
    E(fake_B_random)'s mean (absent when lambda_z is 0) and the D inputs ``{real,fake}_data_{encoded,random}``.
    """
    w = weights or BicycleGANWeights()
    n = real_A.shape[0]
    if n % 2 or real_B.shape[0] != n:
        raise ValueError(f"the batch must hold an even number of (A, B) pairs, got {n} A and {real_B.shape[0]} B")
    k = n // 2
    if eps.shape[0] != k or z_random.shape[0] != k:
        raise ValueError(f"eps and z_random need {k} rows (half the batch), got {eps.shape[0]} and "
                         f"{z_random.shape[0]}")
    out = {"real_A_encoded": real_A[:k], "real_B_encoded": real_B[:k], "real_A_random": real_A[k:],
           "real_B_random": real_B[k:], "z_random": z_random}
    out["mu"], out["logvar"] = E(out["real_B_encoded"])
    out["z_encoded"] = reparameterize(out["mu"], out["logvar"], eps)
    out["fake_B_encoded"] = G(out["real_A_encoded"], out["z_encoded"])
    out["fake_B_random"] = G(out["real_A_encoded"], z_random)
    if w.conditional_D:
        out["fake_data_encoded"] = torch.cat([out["real_A_encoded"], out["fake_B_encoded"]], 1)
        out["real_data_encoded"] = torch.cat([out["real_A_encoded"], out["real_B_encoded"]], 1)
        out["fake_data_random"] = torch.cat([out["real_A_encoded"], out["fake_B_random"]], 1)
        out["real_data_random"] = torch.cat([out["real_A_random"], out["real_B_random"]], 1)
    else:
        out["fake_data_encoded"], out["real_data_encoded"] = out["fake_B_encoded"], out["real_B_encoded"]
        out["fake_data_random"], out["real_data_random"] = out["fake_B_random"], out["real_B_random"]
    if w.lambda_z > 0:
        out["mu2"] = E(out["fake_B_random"])[0]
    return out


def generator_encoder_losses(fwd: dict, D: nn.Module | None, D2: nn.Module | None, *,
                             weights: BicycleGANWeights | None = None) -> dict:
    """``loss_G_GAN``, ``loss_G_GAN2``, ``loss_kl``, ``loss_G_L1``, their sum ``loss_G`` (G and E), and
    ``loss_z_L1`` = lambda_z * mean|mu2 - z_random| (for G alone). Weighted; zero weights give zero terms."""
    w = weights or BicycleGANWeights()
    zero = fwd["mu"].new_zeros(())
    D2 = D if w.use_same_D else D2
    out = {
        "loss_G_GAN": w.lambda_GAN * gan_loss(D(fwd["fake_data_encoded"]), True, mode=w.gan_mode)
        if w.lambda_GAN > 0 else zero,
        "loss_G_GAN2": w.lambda_GAN2 * gan_loss(D2(fwd["fake_data_random"]), True, mode=w.gan_mode)
        if w.lambda_GAN2 > 0 else zero,
        "loss_kl": w.lambda_kl * kl_divergence(fwd["mu"], fwd["logvar"]) if w.lambda_kl > 0 else zero,
        "loss_G_L1": w.lambda_L1 * (fwd["fake_B_encoded"] - fwd["real_B_encoded"]).abs().mean()
        if w.lambda_L1 > 0 else zero,
    }
    out["loss_G"] = out["loss_G_GAN"] + out["loss_G_GAN2"] + out["loss_G_L1"] + out["loss_kl"]
    out["loss_z_L1"] = w.lambda_z * (fwd["mu2"] - fwd["z_random"]).abs().mean() if w.lambda_z > 0 else zero
    return out


def backward_generator_encoder(losses: dict, G: nn.Module, E: nn.Module) -> None:
    """Accumulate gradients as the reference does: ``loss_G`` into G and E, then ``loss_z_L1`` into G only (E is
    frozen for the latent regression, so G and E cannot agree on hidden codes). Discriminators get none."""
    g_params = [p for p in G.parameters() if p.requires_grad]
    e_params = [p for p in E.parameters() if p.requires_grad]
    if losses["loss_G"].requires_grad:
        losses["loss_G"].backward(inputs=g_params + e_params, retain_graph=True)
    if losses["loss_z_L1"].requires_grad:
        losses["loss_z_L1"].backward(inputs=g_params)


def discriminator_loss(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, *,
                       mode: str = "lsgan") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, fake term, real term) of one discriminator; ``fake`` is detached (no gradient reaches G)."""
    loss_fake = gan_loss(D(fake.detach()), False, mode=mode)
    loss_real = gan_loss(D(real), True, mode=mode)
    return loss_fake + loss_real, loss_fake, loss_real


def discriminator_losses(fwd: dict, D: nn.Module | None, D2: nn.Module | None, *,
                         weights: BicycleGANWeights | None = None) -> dict:
    """``loss_D`` (+ ``_fake``/``_real``): D on the encoded branch vs B1; ``loss_D2`` likewise on the random branch
    vs B2 (with ``use_same_D`` both go to D). Unweighted, as the reference."""
    w = weights or BicycleGANWeights()
    out = {}
    if w.lambda_GAN > 0:
        out["loss_D"], out["loss_D_fake"], out["loss_D_real"] = discriminator_loss(
            D, fwd["real_data_encoded"], fwd["fake_data_encoded"], mode=w.gan_mode)
    if w.lambda_GAN2 > 0:
        out["loss_D2"], out["loss_D2_fake"], out["loss_D2_real"] = discriminator_loss(
            D if w.use_same_D else D2, fwd["real_data_random"], fwd["fake_data_random"], mode=w.gan_mode)
    return out


__all__ = ["BicycleGANWeights", "gan_loss", "kl_divergence", "reparameterize", "bicyclegan_forward",
           "generator_encoder_losses", "backward_generator_encoder", "discriminator_loss", "discriminator_losses",
           "GAN_MODES"]
