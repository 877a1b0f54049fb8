"""The face editor's engine: PyTorch networks, checkpoint loaders and latent algorithms (no Qt)."""
