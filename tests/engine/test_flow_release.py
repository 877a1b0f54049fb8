"""Releasing a trained flow next to its generator: manifest figures, and refusal for another generator's flow."""
from __future__ import annotations

import json

import pytest
import torch

from engine.assets import ASSETS_DIR
from engine.errors import ModelFormatError
from engine.files.checkpoints import save_generator
from engine.files.flows import load_flow, save_flow
from engine.files.storage import file_sha256
from engine.models.flow import ConditionalCNF, FlowConfig
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.train.release.flow import release_flow

pytestmark = pytest.mark.usefixtures("one_thread")


def test_release_writes_the_flow_and_its_manifest_and_refuses_a_foreign_flow(tmp_path):
    if not (ASSETS_DIR / "estimator.pt").exists():
        pytest.fail("assets/estimator.pt is missing")
    cfg = GeneratorConfig(img_resolution=32, channels=(16, 16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2)
    out = tmp_path / "assets"
    out.mkdir()
    save_generator(out / "generator.pt", Generator(cfg, seed=1))
    flow = ConditionalCNF(FlowConfig(input_dim=10, hidden_dims=(16,), solver="rk4", step_size=0.25,
                                     divergence="exact", adjoint=False)).eval()
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.csv").write_text("step,val_nll_nats_per_dim\n0,2.5\n10,1.25\n")
    extras = {"generator_sha256": file_sha256(out / "generator.pt"), "command_line": "main.py train flow --out run",
              "data": json.dumps({"kind": "generator"}), "train_config": "{}", "training_steps": 10,
              "val_nll_nats_per_dim": 1.25, "lighting_presets": torch.zeros(6, 9).tolist()}
    save_flow(run / "flow.pt", flow, extras=extras)
    m = release_flow(run / "flow.pt", out, runs=2)
    assert m["sha256"] == file_sha256(out / "flow.pt") == json.loads((out / "flow.json").read_text())["sha256"]
    assert m["held_out_nll_curve"][-1] == {"step": 10.0, "val_nll_nats_per_dim": 1.25}
    e = m["edit"]
    assert e["fast_ms"]["median"] > 0 and e["fast_vs_faithful_max_abs_w"] <= 5e-3 and e["fast_steps"] >= 3
    assert load_flow(out / "flow.pt").extras["fast_steps"] == e["fast_steps"]
    back = load_flow(out / "flow.pt")
    assert back.extras["generator_sha256"] == extras["generator_sha256"]
    for k, v in flow.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    save_generator(out / "generator.pt", Generator(cfg, seed=2))  # another generator: the flow no longer fits
    with pytest.raises(ModelFormatError, match="train a flow for this generator"):
        release_flow(run / "flow.pt", out, runs=1)
