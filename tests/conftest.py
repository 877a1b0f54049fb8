"""Shared pytest configuration: offscreen Qt, paths to the shared reference fixtures, the ``fixture`` marker, and
global random number generators seeded per test and restored after it."""
import os
import random
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Log files of the editor and the command lines the tests start go to a scratch folder, never the user's.
os.environ.setdefault("FACE_EDITOR_LOG_DIR", tempfile.mkdtemp(prefix="face-editor-test-logs-"))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The shared reference fixtures (beside the checkout). Missing fixtures fail in CI and skip elsewhere."""
    if not REFERENCE.is_dir():
        message = f"shared reference fixtures not found at {REFERENCE}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REFERENCE


def pytest_collection_modifyitems(items):
    """Every test that reads the shared reference fixtures (through ``reference_dir``) is marked ``fixture``: the CI
    runs those again under other CPU kernels, and the selection follows the fixture use, so it cannot go stale."""
    for item in items:
        if "reference_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.fixture)


def rng_seed_for(nodeid: str) -> int:
    """The seed every test's global RNGs start from: its own, whatever ran before it."""
    return zlib.crc32(nodeid.encode())


@pytest.fixture(autouse=True)
def _isolated_global_rngs(request):
    """torch's, numpy's and Python's global RNGs start from the test's own seed and are put back afterwards, so no
    test sees what another one left behind and the order of tests cannot change a result."""
    seed = rng_seed_for(request.node.nodeid)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        yield
    np.random.set_state(numpy_state)
    random.setstate(python_state)


@pytest.fixture
def short_switch_interval():
    """Threads switch every 10 µs (the default is 5 ms), so that races between them show; restored after the test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)
