"""engine.files.images.to_uint8: the one conversion of images to 8-bit pixels (generator output, synthetic faces,
translations)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import synth
from engine.files.images import to_uint8


def test_raw_images_convert_as_nvidias_scripts_do():
    x = torch.tensor([-2.0, -1.0, -0.999, 0.0, 0.5, 0.999, 1.0, 3.0]).view(1, 1, 1, 8).expand(2, 3, 1, 8)
    out = to_uint8(x)
    assert out.shape == (2, 1, 8, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out[0, 0, :, 0], [0, 0, 0, 128, 191, 255, 255, 255])  # x * 127.5 + 128, truncated
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        to_uint8(x[0])
    with pytest.raises(ValueError, match="low to high"):
        to_uint8(x, value_range=(1, 0))


def test_zero_to_one_images_keep_the_synthetic_worlds_former_pixels():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1  # a little out of range too
    former = (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # synth's own conversion
    np.testing.assert_array_equal(to_uint8(x, value_range=(0, 1)), former)
    faces = synth.render_faces(synth.sample_params(2, seed=3), size=32, domain="toon")
    np.testing.assert_array_equal(to_uint8(faces, value_range=(0, 1)),
                                  (faces.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy())


def test_translations_move_only_at_exact_halves_from_their_former_rounding():
    x = torch.tanh(torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(1)) * 1.5)
    former = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # halves to even
    now = to_uint8(x)
    moved = now != former
    assert np.abs(now.astype(int) - former).max() <= 1 and moved.mean() < 1e-4
    level = ((x.double() + 1) * 127.5).permute(0, 2, 3, 1).numpy()[moved]
    assert np.abs(level - np.floor(level) - 0.5).max() < 1e-4  # each one a tie: NVIDIA's rule rounds halves up
