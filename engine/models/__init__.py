"""Network architectures, one plain-PyTorch module file per paper."""
