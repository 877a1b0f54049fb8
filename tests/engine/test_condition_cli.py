"""The flow's own attribute reading on the command line: ``attributes LATENT --from-flow`` and
``edit --attributes-from flow`` give what the editor's Read from flow gives."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.algorithms.flow_edit import AttributeEdit, slider_target
from engine.jobs.condition import FlowReadJob
from engine.jobs.render import AttributeReadJob, LatentJob
from engine.project import EditState
from tests.fakes import cpu_context as ctx
from tests.fakes import run_cli as cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _log_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE_EDITOR_LOG_DIR", str(tmp_path / "logs"))


def test_attributes_from_flow_of_a_latent_is_the_editors_reading(tmp_path, capsys):
    state = EditState(seed=11)
    np.save(tmp_path / "w.npy", LatentJob(state)(ctx()))
    assert cli("attributes", tmp_path / "w.npy", "--from-flow", "-q") == 0
    out = json.loads(capsys.readouterr().out)
    want = FlowReadJob(state)(ctx())
    layout = want.layout
    assert set(out["flow"]["attributes"]) == set(layout.names)
    for name, value in out["flow"]["attributes"].items():
        assert value == pytest.approx(float(want.condition[layout.index(name)]), abs=1e-4)
    assert out["flow"]["lighting"] == pytest.approx(want.condition[:layout.num_light].tolist(), abs=1e-4)
    assert out["flow"]["start"] == pytest.approx(want.start.tolist(), abs=1e-5)
    assert out["flow"]["log_likelihood"]["end"] > out["flow"]["log_likelihood"]["start"]
    assert out["attributes"]["age"] == pytest.approx(want.start[layout.index("age")], abs=1e-5)


@pytest.mark.parametrize("argv, said", [
    (["attributes", "face.png", "--from-flow"], "reads a latent"),
    (["attributes", "w.npy", "--flow", "f.pt"], "choose the flow that --from-flow reads with"),
    (["edit", "--attributes-from", "guess", "--out", "x.png"], "invalid choice"),
])
def test_the_flow_reading_is_refused_where_it_cannot_apply(argv, said, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "face.png").write_bytes(b"")
    np.save(tmp_path / "w.npy", np.zeros((1, 4), np.float32))
    assert cli(*argv) == 2
    assert said in capsys.readouterr().err


def test_edit_with_attributes_from_the_flow_starts_the_slider_at_the_flows_reading(tmp_path):
    assert cli("edit", "--seed", 2, "--attributes-from", "flow", "--set", "age=60", "--latent-out",
               tmp_path / "w.npy", "-q") == 0
    state = EditState(seed=2, attribute_source="flow")
    reading = AttributeReadJob(state)(ctx())
    original = float(reading.base[reading.layout.index("age")])
    want = LatentJob(state.replace(edits=(AttributeEdit("attribute", "age", slider_target("age", 60.0, original)),)))
    np.testing.assert_allclose(np.load(tmp_path / "w.npy"), want(ctx()), atol=1e-5)
    assert cli("edit", "--seed", 2, "--set", "age=60", "--latent-out", tmp_path / "e.npy", "-q") == 0
    assert not np.allclose(np.load(tmp_path / "e.npy"), np.load(tmp_path / "w.npy"), atol=1e-3)
