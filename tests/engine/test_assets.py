"""Embedded assets are checked against their manifests: present and intact loads, missing or changed is refused."""
from __future__ import annotations

import json

import pytest

from engine import ModelFormatError
from engine.assets import ASSETS_DIR, default_estimator_path, verified_asset
from engine.loading import file_sha256


def test_shipped_estimator_matches_its_manifest():
    if not (ASSETS_DIR / "estimator.pt").exists():
        pytest.fail("assets/estimator.pt is missing from the checkout")
    path = default_estimator_path()
    assert file_sha256(path) == json.loads((ASSETS_DIR / "estimator.json").read_text())["sha256"]


def test_missing_changed_or_unlisted_assets_are_refused(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"weights")
    (tmp_path / "m.json").write_text(json.dumps({"sha256": file_sha256(tmp_path / "m.pt")}))
    assert verified_asset("m.pt", folder=tmp_path) == tmp_path / "m.pt"
    (tmp_path / "m.pt").write_bytes(b"weightz")
    with pytest.raises(ModelFormatError, match="does not match its manifest"):
        verified_asset("m.pt", folder=tmp_path)
    with pytest.raises(ModelFormatError, match="no .* in this checkout yet"):
        verified_asset("gone.pt", folder=tmp_path)
    (tmp_path / "m.pt").unlink()
    with pytest.raises(ModelFormatError, match="missing; restore it with git"):
        verified_asset("m.pt", folder=tmp_path)
    (tmp_path / "n.pt").write_bytes(b"x")
    with pytest.raises(ModelFormatError, match="no manifest"):
        verified_asset("n.pt", folder=tmp_path)
