"""Editing and latent algorithms as pure functions over tensors."""
