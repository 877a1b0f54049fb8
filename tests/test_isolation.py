"""Tests start from their own global RNG state: what one test draws or seeds never reaches the next one."""
import random

import numpy as np
import torch

from .conftest import rng_seed_for


def _first_draws() -> tuple[float, float, float]:
    return float(torch.rand(())), float(np.random.rand()), random.random()


def test_a_test_may_seed_and_draw_from_the_global_rngs():
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    _first_draws()


def test_every_test_starts_from_its_own_seed(request):
    """Run after the test above (file order) or alone: the same state either way."""
    seed = rng_seed_for(request.node.nodeid)
    assert torch.initial_seed() == seed
    torch_state = torch.get_rng_state()
    got = _first_draws()
    torch.set_rng_state(torch_state)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    assert got == _first_draws()
