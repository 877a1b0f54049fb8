"""Engine tests (no Qt)."""
