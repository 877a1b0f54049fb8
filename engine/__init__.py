"""The face editor's engine: PyTorch networks, checkpoint loaders and latent algorithms (no Qt).

Public API::

    from engine import load_generator, load_discriminator
    G = load_generator(path_or_checkpoint_dict)      # eval-mode CPU module, any supported format
    ws = G.mapping(z, truncation_psi=0.7)            # [B, num_ws, w_dim]
    img = G.synthesis(ws, noise_mode="const")        # [B, 3, H, W], raw float32
"""
from engine.errors import ModelFormatError
from engine.files.loading import ModelInfo, inspect_model, load_discriminator, load_generator
from engine.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

__all__ = [
    "load_generator", "load_discriminator", "inspect_model", "ModelInfo", "ModelFormatError",
    "Generator", "GeneratorConfig", "Discriminator", "DiscriminatorConfig",
]
