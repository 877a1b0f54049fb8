"""Embedded assets are checked against their manifests: present and intact loads, missing or changed is refused;
the shipped generator generates, and ``generate`` without ``--model`` uses it."""
from __future__ import annotations

import argparse
import json
import os

import pytest
import torch

from engine import ModelFormatError, assets
from engine.algorithms.latents import seed_to_z
from engine.assets import ASSETS_DIR, default_estimator_path, default_generator_path, verified_asset
from engine.cli.main import add_commands, run
from engine.files.loading import load_generator
from engine.files.storage import file_sha256


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


def test_shipped_generator_matches_its_manifest_and_generates():
    if not (ASSETS_DIR / "generator.pt").exists():
        message = "assets/generator.pt is missing from the checkout"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    path = default_generator_path()
    info = json.loads((ASSETS_DIR / "generator.json").read_text())
    assert file_sha256(path) == info["sha256"] and info["frechet"]["n"] > 0
    G = load_generator(path)
    assert G.model_info.format == "face-editor" and not G.model_info.notes
    with torch.no_grad():
        a, b = (G(seed_to_z(0, G.z_dim), noise_mode="const") for _ in range(2))
    size = info["architecture"]["img_resolution"]
    assert a.shape == (1, 3, size, size) and torch.isfinite(a).all() and torch.equal(a, b)


def _generate_args(out, *extra):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["generate", "--seeds", "0", "--device", "cpu", "--quiet", "--out", str(out), *extra])


def test_generate_without_a_model_uses_the_embedded_generator(tmp_path, monkeypatch, capsys):
    if (ASSETS_DIR / "generator.pt").exists():
        assert run(_generate_args(tmp_path / "a")) == 0
        written = json.loads((tmp_path / "a" / "generate.json").read_text())
        assert written["model"] == "generator.pt"  # the name only: no folder of the user's in what is written
        assert written["model_sha256"] == json.loads((ASSETS_DIR / "generator.json").read_text())["sha256"]
    monkeypatch.setattr(assets, "DEFAULT_GENERATOR", "absent.pt")
    assert run(_generate_args(tmp_path / "b")) == 2
    assert "no embedded default generator" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_shipped_flow_belongs_to_the_shipped_generator_and_inverts():
    import torch

    from engine.assets import default_flow_path, default_generator_path
    from engine.files.flows import load_flow
    from engine.jobs.render import load_model, mixed_ws
    from engine.project import EditState

    if not (ASSETS_DIR / "flow.pt").exists():
        pytest.fail("assets/flow.pt is missing from the checkout")
    flow = load_flow(default_flow_path())
    assert flow.extras["generator_sha256"] == file_sha256(default_generator_path())
    assert len(flow.extras["lighting_presets"]) == 6 and flow.extras["fast_steps"] >= 3
    G = load_model(EditState().model)
    w = mixed_ws(G, EditState(seed=3))
    cond = torch.tensor([flow.extras["cond_mean"]], dtype=torch.float32)
    back = flow.z_to_w(flow.w_to_z(w, cond, fast=True, fast_steps=flow.extras["fast_steps"]), cond, fast=True,
                       fast_steps=flow.extras["fast_steps"])
    assert (back - w).abs().max() < 5e-3
