"""Shared pytest configuration: offscreen Qt, paths to the shared reference fixtures, the ``fixture`` marker."""
import os
import tempfile
from pathlib import Path

import pytest

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
