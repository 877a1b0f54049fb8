"""Attribute edits in the render pipeline: replayed from the state with the flow, reproducible, rows outside the
edit's mask untouched, project round trip, and the attribute reading job."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.algorithms.flow_edit import AttributeEdit, attribute_mask
from engine.assets import ASSETS_DIR
from engine.files.checkpoints import save_generator
from engine.files.flows import save_flow
from engine.jobs.render import AttributeReadJob, LatentJob, RenderJob, mixed_ws
from engine.models.flow import ConditionalCNF, FlowConfig
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.project import EditState, ModelRef, ProjectError, read_project, save_project
from engine.worker import ModelCache

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = GeneratorConfig(img_resolution=32, channels=(16, 16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2)


class Ctx:
    def __init__(self):
        self.device = torch.device("cpu")
        self.models = ModelCache()
        self.memo = ModelCache()


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    if not (ASSETS_DIR / "estimator.pt").exists():
        pytest.fail("assets/estimator.pt is missing")
    folder = tmp_path_factory.mktemp("flow")
    save_generator(folder / "g.pt", Generator(CFG, seed=4))
    flow = ConditionalCNF(FlowConfig(input_dim=10, hidden_dims=(16,), solver="rk4", step_size=0.25,
                                     divergence="exact", adjoint=False))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    save_flow(folder / "flow.pt", flow.eval())
    return folder / "g.pt", folder / "flow.pt"


def _state(paths, **kw):
    g, f = paths
    return EditState(model=ModelRef(str(g)), flow=ModelRef(str(f)), seed=5, **kw)


def test_edits_change_only_their_rows_and_replay_exactly(paths, tmp_path):
    ctx = Ctx()
    plain = _state(paths)
    edited = plain.replace(edits=(AttributeEdit("attribute", "age", 60.0),))
    w0 = torch.from_numpy(LatentJob(plain)(ctx))
    w1 = torch.from_numpy(LatentJob(edited)(ctx))
    changed = (w0 != w1).any(dim=1)  # [num_ws]
    mask = attribute_mask("age", CFG.num_ws)
    assert changed.any() and not (changed & ~mask).any()  # rows outside the age band are bit-identical
    a, b = RenderJob(edited)(ctx).image, RenderJob(edited)(Ctx()).image
    np.testing.assert_array_equal(a, b)  # a fresh worker (no caches) reproduces the image exactly
    save_project(tmp_path / "p.fproj", edited)
    back, _ = read_project(tmp_path / "p.fproj")
    assert back == edited
    np.testing.assert_array_equal(RenderJob(back)(Ctx()).image, a)
    assert not np.array_equal(a, RenderJob(plain)(ctx).image)


def test_reading_job_reports_base_target_and_current(paths):
    ctx = Ctx()
    st = _state(paths, edits=(AttributeEdit("attribute", "age", 55.0),))
    RenderJob(st)(ctx)
    r = AttributeReadJob(st)(ctx)
    LatentJob(st)(ctx)
    assert len(ctx.memo) == 2  # the face's reading and one edited latent, shared by the three jobs
    assert r.base.shape == r.target.shape == r.current.shape == (17,)
    assert r.target[9 + 6] == pytest.approx(55.0)  # age is attribute 6, after the 9 lighting coefficients
    np.testing.assert_array_equal(np.delete(r.target, 15), np.delete(r.base, 15))
    unedited = AttributeReadJob(st.replace(edits=()))(ctx)
    np.testing.assert_array_equal(unedited.base, r.base)
    np.testing.assert_array_equal(unedited.current, unedited.base)


def test_edits_without_a_flow_file_are_a_clear_error(paths, tmp_path):
    st = _state(paths, edits=(AttributeEdit("attribute", "age", 50.0),)).replace(
        flow=ModelRef(str(tmp_path / "missing.pt")))
    with pytest.raises(Exception, match="missing.pt"):
        RenderJob(st)(Ctx())
    w = mixed_ws(Generator(CFG, seed=4).eval(), st)
    assert w.shape == (1, CFG.num_ws, CFG.w_dim)
    with pytest.raises(ProjectError):
        EditState.from_dict({**st.to_dict(), "edits": [{"kind": "nonsense", "key": "age", "value": 1}]})


def test_lighting_edits_use_the_presets_stored_with_the_flow(paths, tmp_path):
    from engine.files.flows import load_flow

    flow = load_flow(paths[1])
    presets = torch.linspace(-1, 1, 54).reshape(6, 9)
    save_flow(tmp_path / "lit.pt", flow, extras={"lighting_presets": presets})
    st = _state(paths).replace(flow=ModelRef(str(tmp_path / "lit.pt")))
    lit = st.replace(edits=(AttributeEdit("lighting", 2, 1.0),))
    ctx = Ctx()
    w0, w1 = (torch.from_numpy(LatentJob(s)(ctx)) for s in (st, lit))
    changed = (w0 != w1).any(dim=1)
    assert changed[7] and not changed[:7].any()  # lighting owns rows 7-11: only row 7 exists in an 8-row model
    r = AttributeReadJob(lit)(ctx)
    np.testing.assert_allclose(r.target[:9], presets[2].numpy(), rtol=1e-6)  # weight 1: that preset's lighting
    with pytest.raises(ValueError, match="presets"):
        LatentJob(lit.replace(flow=ModelRef(str(paths[1]))))(Ctx())
