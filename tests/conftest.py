"""Shared pytest configuration: offscreen Qt, paths to the shared reference fixtures."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The shared reference fixtures; tests that need them are skipped (loudly) if the folder is absent."""
    if not REFERENCE.is_dir():
        pytest.skip(f"shared reference fixtures not found at {REFERENCE}")
    return REFERENCE
