"""Condition layouts of attribute flows: the layout's forms and checks, where a flow's layout comes from (the file,
the user, StyleFlow's size), refusals that say what to pass, edits of a non-StyleFlow condition, the render
pipeline with it (measured and unmeasured entries, locks), project round trips and ``main.py info``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.algorithms.flow_edit import (
    CHANGED_ROWS,
    DEGREES,
    LIGHTING_PRESETS,
    LIGHTING_ROWS,
    SLIDER_RANGES,
    AttributeEdit,
    apply_edits,
    attribute_mask,
    lighting_mask,
    slider_target,
)
from engine.algorithms.flow_layout import (
    STYLEFLOW,
    AttributeSpec,
    ConditionLayout,
    LayoutError,
    parse_layout,
    parse_rows,
)
from engine.assets import ASSETS_DIR, default_flow_path
from engine.errors import ModelFormatError
from engine.files.checkpoints import save_generator
from engine.files.flows import load_flow, save_flow
from engine.jobs.render import AttributeReadJob, LatentJob, RenderJob, load_flow_tools
from engine.models.flow import ConditionalCNF, FlowConfig
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.project import EditState, ModelRef, ProjectError, read_project, save_project
from engine.worker import ModelCache

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = GeneratorConfig(img_resolution=32, channels=(16, 16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2)  # 8 rows
# 4 lighting coefficients and 3 attributes: age and smile (which the estimator reads) and hat (which it does not)
CUSTOM_TEXT = "light=4@6-7; age@4-7=0..65*0.93; hat@0-3=-1..1*2; smile@4-5"
CUSTOM = ConditionLayout(num_light=4, lighting_rows=(6, 7), attributes=(
    AttributeSpec("age", (4, 5, 6, 7), (0.0, 65.0), 0.93), AttributeSpec("hat", (0, 1, 2, 3), (-1.0, 1.0), 2.0),
    AttributeSpec("smile", (4, 5), (0.0, 1.0), 1.0)))


def tiny_flow(cond_dim: int, *, seed: int = 0) -> ConditionalCNF:
    """A random flow over w_dim 10 with a fixed-step solver (quick), its weights moved off their init."""
    flow = ConditionalCNF(FlowConfig(input_dim=CFG.w_dim, hidden_dims=(16,), cond_dim=cond_dim, solver="rk4",
                                     step_size=0.25, divergence="exact", adjoint=False))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return flow.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny generator, and a 7-value flow in StyleFlow's released format (a bare state dict: no layout)."""
    folder = tmp_path_factory.mktemp("layout")
    save_generator(folder / "g.pt", Generator(CFG, seed=4))
    torch.save(tiny_flow(7).state_dict(), folder / "released7.pt")
    return folder


class Ctx:
    def __init__(self):
        self.device = torch.device("cpu")
        self.models = ModelCache()
        self.memo = ModelCache()


def face(layout: ConditionLayout, *, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, CFG.num_ws, CFG.w_dim, generator=g), torch.rand(1, layout.cond_dim, generator=g)


# --- the layout itself ------------------------------------------------------------------------------------------

def test_styleflow_layout_is_the_released_one():
    assert STYLEFLOW.num_light == 9 and STYLEFLOW.cond_dim == 17 and STYLEFLOW.num_ws == 18
    assert STYLEFLOW.names == ("gender", "glasses", "yaw", "pitch", "baldness", "beard", "age", "expression")
    assert {a.name: a.rows for a in STYLEFLOW.attributes} == CHANGED_ROWS and STYLEFLOW.lighting_rows == LIGHTING_ROWS
    assert {a.name: a.range for a in STYLEFLOW.attributes} == SLIDER_RANGES
    assert {a.name: a.degree for a in STYLEFLOW.attributes} == DEGREES
    assert STYLEFLOW.index("smile") == STYLEFLOW.index("expression") == 16


def test_written_forms_round_trip_and_defaults(tmp_path):
    assert parse_layout(CUSTOM_TEXT) == CUSTOM
    for layout in (CUSTOM, STYLEFLOW):
        assert parse_layout(layout.to_text()) == layout
        assert ConditionLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout
    (tmp_path / "l.json").write_text(json.dumps(CUSTOM.to_dict()))
    assert parse_layout(str(tmp_path / "l.json")) == CUSTOM
    assert parse_layout("styleflow") == STYLEFLOW
    assert parse_rows("0-3, 8") == (0, 1, 2, 3, 8)
    # unstated range and degree: StyleFlow's for its attributes (by either name of expression), else 0..1 and 1
    short = parse_layout("light=0; age@4-7; expression@4-5; hat@0-1")
    assert short.spec("age").range == (0.0, 65.0) and short.spec("age").degree == 0.93
    assert short.spec("hat").range == (0.0, 1.0) and short.spec("hat").degree == 1.0
    assert short.num_light == 0 and short.lighting_rows == () and short.num_ws is None
    assert short.canonical("smile") == "expression" and CUSTOM.canonical("expression") == "smile"
    assert CUSTOM.neutral() == (0.0, 0.0, 0.0, 0.0, 32.5, 0.0, 0.5)


@pytest.mark.parametrize("text, message", [
    ("age@4-7", "how many lighting"),
    ("light=4; age@4-7", "rows a lighting edit"),
    ("light=0@3; age@4-7", "no lighting"),
    ("light=0; age@4-7; age@1", "unique"),
    ("light=0; ws=6; age@4-7", "row 7"),
    ("light=0; age@7-4", "backwards"),
    ("light=0; age@4-7=5..1", "low to high"),
    ("light=0; age@4-7*0", "must not be 0"),
    ("light=0; sh2@1", "attribute name"),
    ("light=0; age", "NAME@ROWS"),
    ("light=0", "lighting coefficients or attributes"),
])
def test_malformed_layouts_are_refused_with_what_is_wrong(text, message):
    with pytest.raises(LayoutError, match=message):
        parse_layout(text)


def test_malformed_json_layouts_are_refused(tmp_path):
    good = CUSTOM.to_dict()
    for bad, message in (({**good, "wings": 2}, "unknown fields wings"), ({"num_light": 1}, "attributes is missing"),
                         ({**good, "attributes": [{"name": "age"}]}, "rows"),
                         ({**good, "attributes": [{"name": "age", "rows": [1], "size": 3}]}, "unknown fields")):
        with pytest.raises(LayoutError, match=message):
            ConditionLayout.from_dict(bad)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(LayoutError, match="not a readable JSON"):
        parse_layout(str(tmp_path / "bad.json"))
    with pytest.raises(LayoutError, match="no layout file"):
        parse_layout(str(tmp_path / "absent.json"))


# --- where a flow's layout comes from ---------------------------------------------------------------------------

def test_a_released_flow_of_another_size_loads_but_is_refused_for_edits_saying_what_to_pass(files):
    flow = load_flow(files / "released7.pt")
    assert flow.cfg.cond_dim == 7 and flow.layout is None
    message = flow.layout_source
    assert "7 values" in message and "--flow-layout" in message and "Open attribute flow" in message
    w, cond = face(CUSTOM)
    with pytest.raises(LayoutError, match="--flow-layout"):
        apply_edits(flow, w, cond, (AttributeEdit("attribute", "hat", 0.5),), fast=True)
    with pytest.raises(LayoutError, match="--flow-layout"):
        load_flow_tools(ModelRef(str(files / "released7.pt")))
    with pytest.raises(ModelFormatError, match="17 values.*7 values"):
        load_flow(files / "released7.pt", layout=STYLEFLOW)  # a layout must fit the condition size


def test_the_layout_comes_from_the_file_the_user_or_styleflows_size(tmp_path, files):
    given = load_flow(files / "released7.pt", layout=CUSTOM)
    assert given.layout == CUSTOM and given.layout_source == "given by the user"
    save_flow(tmp_path / "own7.pt", given)  # the project's format stores the layout it has
    own = load_flow(tmp_path / "own7.pt")
    assert own.layout == CUSTOM and own.layout_source == "stated in the file"
    assert torch.load(tmp_path / "own7.pt", weights_only=True)["extras"]["condition_layout"] == CUSTOM.to_dict()
    assert load_flow(tmp_path / "own7.pt", layout=CUSTOM).layout == CUSTOM
    other = parse_layout("light=4@6-7; age@4-7; hat@0-3; grin@4-5")
    with pytest.raises(ModelFormatError, match="states its own condition layout"):
        load_flow(tmp_path / "own7.pt", layout=other)

    torch.save(tiny_flow(17).state_dict(), tmp_path / "released17.pt")  # StyleFlow's released size
    assert load_flow(tmp_path / "released17.pt").layout == STYLEFLOW
    old = tiny_flow(17)
    save_flow(tmp_path / "old17.pt", old)  # an own-format file from before layouts were stored
    raw = torch.load(tmp_path / "old17.pt", weights_only=True)
    assert "condition_layout" not in raw["extras"]  # a module that was never given a layout saves none
    assert load_flow(raw).layout == STYLEFLOW
    raw["extras"]["cond_names"] = [f"c{i}" for i in range(17)]  # it names other quantities: unknown
    unknown = load_flow(raw)
    assert unknown.layout is None and "c0, c1" in unknown.layout_source
    assert load_flow(default_flow_path()).layout == STYLEFLOW  # the embedded default
    tools = load_flow_tools(ModelRef())  # (its file has fast steps and named presets)
    assert tools.layout == STYLEFLOW and all(tools.measured) and tools.preset_names == tuple(LIGHTING_PRESETS)


def test_a_file_stating_a_broken_layout_is_refused(tmp_path):
    save_flow(tmp_path / "f.pt", tiny_flow(7), extras={"condition_layout": {"num_light": 9, "attributes": []}})
    with pytest.raises(ModelFormatError, match="condition layout it states is unusable"):
        load_flow(tmp_path / "f.pt")
    with pytest.raises(LayoutError, match="17 values"):
        save_flow(tmp_path / "g.pt", tiny_flow(7), layout=STYLEFLOW)


# --- edits with a non-StyleFlow layout --------------------------------------------------------------------------

def test_an_attribute_edit_changes_exactly_its_condition_entry_and_rows(files):
    flow = load_flow(files / "released7.pt", layout=CUSTOM)
    w0, cond0 = face(CUSTOM)
    for name, value in (("hat", 0.9), ("age", 50.0), ("smile", 0.1)):
        w, cond = apply_edits(flow, w0, cond0, (AttributeEdit("attribute", name, value),), fast=True)
        i, rows = CUSTOM.index(name), list(CUSTOM.spec(name).rows)
        assert cond[0, i] == pytest.approx(value)
        others = [j for j in range(CUSTOM.cond_dim) if j != i]
        assert torch.equal(cond[:, others], cond0[:, others])  # no other entry moved
        kept = [r for r in range(CFG.num_ws) if r not in rows]
        assert torch.equal(w[:, kept], w0[:, kept])  # bit-identical outside the attribute's rows
        assert (w[:, rows] - w0[:, rows]).abs().amax(dim=-1).min() > 1e-4
        assert attribute_mask(name, CFG.num_ws, layout=CUSTOM).nonzero().flatten().tolist() == rows


def test_a_lighting_edit_sets_the_stated_coefficients_and_rows(files):
    flow = load_flow(files / "released7.pt", layout=CUSTOM)
    w0, cond0 = face(CUSTOM)
    presets = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.0, 0.5, 0.25]])
    w, cond = apply_edits(flow, w0, cond0, (AttributeEdit("lighting", 1, 1.0),), fast=True, presets=presets)
    assert torch.allclose(cond[0, :4], presets[1]) and torch.equal(cond[:, 4:], cond0[:, 4:])
    assert torch.equal(w[:, :6], w0[:, :6]) and not torch.equal(w[:, 6:], w0[:, 6:])
    assert lighting_mask(CFG.num_ws, layout=CUSTOM).nonzero().flatten().tolist() == [6, 7]
    with pytest.raises(ValueError, match=r"\[J, 4\]"):
        apply_edits(flow, w0, cond0, (AttributeEdit("lighting", 0, 1.0),), presets=torch.zeros(6, 9))
    no_light = load_flow(files / "released7.pt", layout=parse_layout("light=0; a@0; b@1; c@2; d@3; e@4; f@5; g@6"))
    with pytest.raises(LayoutError, match="no lighting"):
        apply_edits(no_light, w0, cond0, (AttributeEdit("lighting", 0, 1.0),), presets=torch.zeros(1, 0))


def test_rows_beyond_the_generator_are_an_error_for_a_layout_of_its_own_rows(files):
    flow = load_flow(files / "released7.pt", layout=CUSTOM)
    w0, cond0 = torch.randn(1, 6, CFG.w_dim), torch.rand(1, 7)  # a generator with 6 rows: age's rows 6-7 are gone
    with pytest.raises(ValueError, match="only 6 rows"):
        apply_edits(flow, w0, cond0, (AttributeEdit("attribute", "age", 40.0),), fast=True)


def test_slider_rule_and_locks_follow_the_layout(files):
    flow = load_flow(files / "released7.pt", layout=CUSTOM)
    assert slider_target("hat", 1.0, 0.0, layout=CUSTOM) == 2.0  # hat's degree 2
    w0, cond0 = face(CUSTOM)
    edits = (AttributeEdit("attribute", "age", 50.0),)
    seen = []

    def measure(w):  # reads the edited face with smile drifted by 0.3
        seen.append(w)
        reading = cond0.clone()
        reading[:, CUSTOM.index("smile")] += 0.3
        return reading

    free, _ = apply_edits(flow, w0, cond0, edits, fast=True)
    held, cond = apply_edits(flow, w0, cond0, edits, fast=True, locks=("expression",), measure=measure)
    assert len(seen) == 1 and cond[0, CUSTOM.index("smile")] == cond0[0, CUSTOM.index("smile")]
    assert torch.equal(held[:, [0, 1, 2, 3, 6, 7]], free[:, [0, 1, 2, 3, 6, 7]])  # only smile's rows 4-5 corrected
    assert not torch.equal(held[:, 4:6], free[:, 4:6])
    with pytest.raises(LayoutError, match="unknown attribute 'gender'"):
        apply_edits(flow, w0, cond0, (AttributeEdit("attribute", "gender", 1.0),), fast=True)


def test_styleflows_layout_refuses_attributes_it_does_not_have():
    flow = tiny_flow(17)
    w0, cond0 = torch.randn(1, CFG.num_ws, CFG.w_dim), torch.rand(1, 17)
    with pytest.raises(LayoutError, match="unknown attribute 'hat'"):
        apply_edits(flow, w0, cond0, (AttributeEdit("attribute", "hat", 1.0),), fast=True)
    with pytest.raises(ProjectError, match="hat"):  # the embedded default flow's layout is known: checked at once
        EditState(edits=(AttributeEdit("attribute", "hat", 1.0),))


# --- the render pipeline and projects ---------------------------------------------------------------------------

def _state(files, **kw) -> EditState:
    return EditState(model=ModelRef(str(files / "g.pt")), flow=ModelRef(str(files / "released7.pt")),
                     flow_layout=CUSTOM, seed=5, **kw)


def test_renders_read_and_reproduce_with_the_users_layout(files, tmp_path):
    if not (ASSETS_DIR / "estimator.pt").exists():
        pytest.fail("assets/estimator.pt is missing")
    ctx = Ctx()
    plain = _state(files)
    edited = plain.replace(edits=(AttributeEdit("attribute", "hat", 0.8),))
    w0, w1 = (torch.from_numpy(LatentJob(s)(ctx)) for s in (plain, edited))
    changed = (w0 != w1).any(dim=1)
    assert changed[:4].all() and not changed[4:].any()  # hat owns rows 0-3
    r = AttributeReadJob(edited)(ctx)
    assert r.layout == CUSTOM and r.base.shape == (7,)
    assert r.measured == (False,) * 4 + (True, False, True)  # 4 lights are not the estimator's SH9; hat is unknown
    np.testing.assert_array_equal(r.base[[0, 1, 2, 3, 5]], np.array(CUSTOM.neutral())[[0, 1, 2, 3, 5]])
    assert 0 < r.base[4] < 120 and r.base[4] != CUSTOM.neutral()[4]  # age: the estimator's reading
    assert r.target[5] == pytest.approx(0.8)
    image = RenderJob(edited)(ctx).image
    assert not np.array_equal(image, RenderJob(plain)(ctx).image)

    save_project(tmp_path / "p.fproj", edited)  # the project keeps the layout: it reopens identically
    back, _ = read_project(tmp_path / "p.fproj")
    assert back.flow_layout == CUSTOM and back.edits == edited.edits
    assert json.loads((tmp_path / "p.fproj").read_text())["state"]["flow_layout"] == CUSTOM.to_dict()
    np.testing.assert_array_equal(RenderJob(back.replace(model=edited.model, flow=edited.flow))(Ctx()).image, image)

    with pytest.raises(ProjectError, match="cannot hold hat"):  # the estimator cannot read hat: no drift to undo
        LatentJob(edited.replace(locks=("hat",)))(Ctx())
    held = LatentJob(edited.replace(locks=("smile",)))(Ctx())
    assert held.shape == (CFG.num_ws, CFG.w_dim)


def test_states_check_edits_and_locks_against_the_users_layout():
    st = EditState(flow=ModelRef("/x/f.pt"), flow_layout=CUSTOM, locks=("hat", "smile", "age", "hat"),
                   edits=(AttributeEdit("attribute", "hat", 0.2),))
    assert st.locks == ("age", "hat", "smile")  # canonical: the layout's order, once each
    assert EditState.from_dict(json.loads(json.dumps(st.to_dict()))) == st
    assert EditState.from_dict({k: v for k, v in st.to_dict().items() if k != "flow_layout"}).flow_layout is None
    with pytest.raises(ProjectError, match="unknown attribute 'gender'"):
        st.replace(edits=(AttributeEdit("attribute", "gender", 1.0),))
    with pytest.raises(ProjectError, match="unknown attribute 'beard'"):
        st.replace(locks=("beard",))
    bad = {**st.to_dict(), "flow_layout": {"num_light": 2, "attributes": []}}
    with pytest.raises(ProjectError, match=r"flow_layout is unusable: .*W\+ row") as e:
        EditState.from_dict(bad)
    assert "LayoutError" not in str(e.value)
    # a user's flow without a stated layout: the names are checked when the flow loads
    assert EditState(flow=ModelRef("/x/f.pt"), locks=("hat",)).locks == ("hat",)


# --- main.py info -----------------------------------------------------------------------------------------------

def test_info_reports_the_layout_or_what_to_pass(files, tmp_path, capsys):
    from main import main

    assert main(["info", str(files / "released7.pt")]) == 0
    out = capsys.readouterr().out
    assert "condition:     7 values, layout unknown" in out and "--flow-layout" in out
    assert main(["info", str(files / "released7.pt"), "--flow-layout", CUSTOM_TEXT, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layout"] == CUSTOM.to_dict() and info["layout_source"] == "given by the user"
    assert main(["info", str(default_flow_path())]) == 0
    assert "layout:        " + STYLEFLOW.to_text() in capsys.readouterr().out
    assert main(["info", str(files / "released7.pt"), "--flow-layout", "light=9@7-11; age@4-7"]) == 2
    assert "10 values" in capsys.readouterr().err
    assert main(["info", str(files / "g.pt"), "--flow-layout", CUSTOM_TEXT]) == 2
    assert "generator" in capsys.readouterr().err
