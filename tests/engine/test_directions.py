"""Measured edit directions: the fit, the closed loop, locks, the file, the method choice and the editor's readout."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.algorithms.directions import (
    GAIN_RANGE,
    GUARD_SD,
    MAX_SHIFT,
    Directions,
    covariance_directions,
    rows_move,
    secant_gain,
    solve_edit,
)
from engine.algorithms.flow_edit import NUM_LIGHT, STYLEFLOW, AttributeEdit
from engine.assets import default_directions_path, manifest
from engine.errors import ModelFormatError
from engine.files.directions import load_directions, save_directions
from engine.jobs.directions import DragGains, direction_targets, resolve_method, solve_targets
from engine.jobs.render import (
    AttributeReadJob,
    LatentJob,
    RenderJob,
    cached_model,
    drag_gains,
    read_condition,
    worker_ws,
)
from engine.project import EditState, ProjectError, read_project, save_project
from engine.worker import InlineContext


def _linear_world(seed=0, n=2000, w_dim=12, k=3):
    g = torch.Generator().manual_seed(seed)
    read = torch.randn(k, w_dim, generator=g)  # [K, w_dim]: the true read-out
    w = torch.randn(n, w_dim, generator=g) * torch.linspace(0.5, 2.0, w_dim)
    return read, w, w @ read.T + 0.01 * torch.randn(n, k, generator=g)


def test_covariance_directions_change_their_own_entry_by_one_and_the_others_by_nothing():
    read, w, cond = _linear_world()
    d = covariance_directions(w, cond)  # [K, w_dim]
    np.testing.assert_allclose((read @ d.T).numpy(), np.eye(3), atol=0.02)


def test_covariance_directions_refuse_too_few_samples():
    read, w, cond = _linear_world(n=10)
    with pytest.raises(ValueError, match="too few"):
        covariance_directions(w, cond)


def _saturating(read, num_ws=2):
    """A toy 'generator + estimator': entry i reads tanh of its linear read-out of row 0."""
    return lambda ws: torch.tanh(ws[:, 0] @ read.T / 4)


def _toy_directions(read, w, cond, num_ws=2, reach=1000.0):
    d = covariance_directions(w, torch.tanh(cond / 4))
    moves = torch.stack([rows_move(d[i], range(num_ws), num_ws) for i in range(len(d))])
    return Directions(("a", "b", "c"), moves, torch.eye(3), torch.tanh(cond / 4).std(0), ((0, 1),) * 3,
                      reach)


def _toy_faces(seed, n, **directions):
    """Toy directions, their read-out, n faces [n, 2, w_dim] and the faces' readings [n, 3]."""
    read, w, cond = _linear_world(seed=seed)
    D = _toy_directions(read, w, cond, **directions)
    measure = _saturating(read)
    w0 = w[:n, None].expand(-1, 2, -1).contiguous()
    return D, measure, w0, measure(w0)


def test_the_closed_loop_reaches_a_target_the_open_loop_overshoots_or_misses():
    D, measure, w0, c0 = _toy_faces(0, 16)
    target = (c0[:, 0] + 0.3).clamp(max=0.9)
    open_loop, _ = solve_edit(D, w0, c0, {0: target})
    closed, _ = solve_edit(D, w0, c0, {0: target}, passes=4, measure=measure)
    miss_open = (measure(open_loop)[:, 0] - target).abs().mean()
    miss_closed = (measure(closed)[:, 0] - target).abs().mean()
    assert miss_closed < 0.3 * miss_open and miss_closed < 0.03


def test_a_carried_gain_scales_the_open_loop_move_and_a_drag_then_needs_no_pass_of_its_own():
    D, measure, w0, c0 = _toy_faces(2, 16)
    target = (c0[:, 0] + 0.2).clamp(max=0.9)
    _, beta1 = solve_edit(D, w0, c0, {0: target})
    _, beta2 = solve_edit(D, w0, c0, {0: target}, gain=torch.full((16, 3), 2.0))
    torch.testing.assert_close(beta2[:, 0], beta1[:, 0] / 2)
    with pytest.raises(ValueError, match="gain"):
        solve_edit(D, w0, c0, {0: target}, gain=torch.ones(16, 1))
    f64 = dict(dtype=torch.float64)
    gain = secant_gain(torch.tensor([[0.5, 0.01, -2.0]], **f64), torch.tensor([[1.0, 5.0, -100.0]], **f64),
                       torch.ones(3, **f64), torch.full((1, 3), 0.7, **f64))
    assert gain.tolist() == [[2.0, 0.7, GAIN_RANGE[1]]]  # measured, too small a step to tell, clamped

    calls = []

    def counted(ws):
        calls.append(len(ws))
        return measure(ws)

    gains, frames = DragGains(D), []
    for f in range(1, 6):  # a drag: each frame asks a little more; the face shown is read after it is made
        calls.clear()
        aim = c0[:, 0] + (target - c0[:, 0]) * f / 5
        w = solve_targets(D, w0, c0, {0: aim}, free=[1, 2], measure=counted, live=True, gains=gains, key=f)
        frames.append((len(calls), (measure(w)[:, 0] - aim).abs().mean()))
        gains.shown(f, measure(w))
    assert [n for n, _ in frames] == [1, 0, 0, 0, 0]  # only the first frame reads a face of its own
    open_miss = (measure(solve_edit(D, w0, c0, {0: target})[0])[:, 0] - target).abs().mean()
    assert frames[-1][1] < 0.5 * open_miss  # the carried gain corrects the open loop as a pass would


def test_locks_hold_the_locked_entries_while_the_edit_reaches_its_target():
    D, measure, w0, c0 = _toy_faces(1, 16)
    target = (c0[:, 0] + 0.3).clamp(max=0.9)
    locked, _ = solve_edit(D, w0, c0, {0: target, 1: c0[:, 1], 2: c0[:, 2]}, passes=4, measure=measure, local=True,
                           damping=0.05)
    r = measure(locked)
    assert (r[:, 0] - target).abs().mean() < 0.03
    assert (r[:, 1:] - c0[:, 1:]).abs().mean() < 0.03


def test_a_guarded_lock_holds_where_the_edit_cannot_happen_without_it_and_the_edit_falls_short():
    D, measure, w0, c0 = _toy_faces(5, 400)

    def tied(ws):  # entry 1 also rises with entry 0 past 0.4: unseen by the response at faces reading below it
        r = measure(ws)
        return torch.stack([r[:, 0], r[:, 1] + 2 * torch.relu(r[:, 0] - 0.4), r[:, 2]], 1)

    pick = ((c0[:, 0] > 0.0) & (c0[:, 0] < 0.2)).nonzero()[:8, 0]
    free = ((c0[:, 0] > -0.6) & (c0[:, 0] < -0.3)).nonzero()[:2, 0]  # two faces whose edit never reaches 0.4
    w0, c0 = w0[torch.cat([pick, free])], tied(w0[torch.cat([pick, free])])
    target = c0[:, 0] + torch.tensor([0.4] * 8 + [0.2] * 2)
    asked = {0: target, 1: c0[:, 1]}
    kw = dict(passes=1, measure=tied, local=True, weights={1: 100.0}, open_loop=False, pass_sd=2.0)
    loose, _ = solve_edit(D, w0, c0, asked, **kw)
    guarded, _ = solve_edit(D, w0, c0, asked, guard=[1], **kw)
    limit = GUARD_SD * D.scale[1]
    assert len(pick) == 8 and ((tied(loose)[:8, 1] - c0[:8, 1]).abs() > limit).any()  # the weight alone lets go
    assert ((tied(guarded)[:, 1] - c0[:, 1]).abs() <= limit + 1e-6).all()
    moved = tied(guarded)[:, 0] - c0[:, 0]
    assert (moved[:8] > 0.01).all() and (moved[:8] < 0.4).all()  # part of the way the lock allows: short
    torch.testing.assert_close(guarded[8:], loose[8:], rtol=0, atol=0)  # faces that hold are left as they are


def test_a_batch_solve_gives_each_face_what_it_gets_alone():
    D, measure, w0, c0 = _toy_faces(2, 4)
    target = c0[:, 0] + 0.2
    together, _ = solve_edit(D, w0, c0, {0: target}, passes=3, measure=measure)
    for i in range(4):
        alone, _ = solve_edit(D, w0[i:i + 1], c0[i:i + 1], {0: target[i:i + 1]}, passes=3, measure=measure)
        np.testing.assert_allclose(together[i].numpy(), alone[0].numpy(), atol=1e-5)


def test_steps_are_bounded_so_an_unreachable_target_ends_short_instead_of_breaking_the_latent():
    read, w, cond = _linear_world(seed=3)
    D = _toy_directions(read, w, cond)
    w0 = w[:2, None].expand(-1, 2, -1).contiguous()
    c0 = _saturating(read)(w0)
    _, beta = solve_edit(D, w0, c0, {0: torch.full((2,), 50.0)}, passes=3, measure=_saturating(read))
    assert (beta[:, 0].abs() <= 4.0 * D.scale[0] + 1e-6).all()


def test_every_edit_stays_within_its_shift_budget_and_unreachable_entries_are_left_alone():
    read, w, cond = _linear_world(seed=4)
    wide = _toy_directions(read, w, cond)
    length = float(wide.length[0]) * 1000.0  # per-row W distance of one standard deviation along entry 0
    D = _toy_directions(read, w, cond, reach=length * 2.5)  # entry 0 editable, a budget of 0.35 * reach
    w0 = w[:4, None].expand(-1, 2, -1).contiguous()
    c0 = _saturating(read)(w0)
    moved, _ = solve_edit(D, w0, c0, {0: torch.full((4,), 0.95)}, passes=3, measure=_saturating(read))
    shift = (moved - w0).norm(dim=2).amax(1)
    assert (shift <= MAX_SHIFT * D.reach * (1 + 1e-5)).all() and (shift >= MAX_SHIFT * D.reach * (1 - 1e-5)).any()
    tight = _toy_directions(read, w, cond, reach=length)  # one standard deviation takes a whole reach
    assert not tight.editable[0]
    still, _ = solve_edit(tight, w0, c0, {0: torch.full((4,), 0.95)}, passes=3, measure=_saturating(read))
    torch.testing.assert_close(still, w0, rtol=0, atol=0)


def test_direction_targets_take_the_last_value_blend_the_lighting_and_hold_locks():
    cond0 = torch.arange(17, dtype=torch.float32)[None]
    presets = torch.ones(2, NUM_LIGHT)
    edits = (AttributeEdit("attribute", "age", 30.0), AttributeEdit("attribute", "age", 50.0),
             AttributeEdit("lighting", 1, 0.5))
    t = direction_targets(STYLEFLOW, cond0, edits, ("gender", "age"), presets)
    assert float(t[STYLEFLOW.index("age")]) == 50.0  # the lock of an edited attribute is its edit
    assert float(t[STYLEFLOW.index("gender")]) == float(cond0[0, STYLEFLOW.index("gender")])
    np.testing.assert_allclose(torch.stack([t[i] for i in range(NUM_LIGHT)], 1).numpy(),
                               (cond0[:, :NUM_LIGHT] + 0.5 * (1 - cond0[:, :NUM_LIGHT])).numpy())
    assert set(t) == {*range(NUM_LIGHT), STYLEFLOW.index("age"), STYLEFLOW.index("gender")}


def test_the_method_is_the_directions_only_where_they_fit():
    D, _ = load_directions(default_directions_path())
    assert resolve_method("auto", D, STYLEFLOW) == "directions"
    assert resolve_method("auto", None, STYLEFLOW) == "flow"
    assert resolve_method("flow", D, STYLEFLOW) == "flow"
    with pytest.raises(ProjectError, match="no measured edit directions"):
        resolve_method("directions", None, STYLEFLOW)


def test_a_direction_file_round_trips_and_refuses_another_generator(tmp_path):
    D, facts = load_directions(default_directions_path())
    assert facts["generator_sha256"] == manifest("generator.pt")["sha256"]
    path = save_directions(tmp_path / "d.pt", D, generator_sha256="a" * 64, estimator_sha256="b" * 64)
    again, _ = load_directions(path)
    assert again.names == D.names and again.rows == D.rows
    torch.testing.assert_close(again.moves, D.moves, rtol=0, atol=0)
    with pytest.raises(ModelFormatError, match="another generator"):
        load_directions(path, generator_sha256="c" * 64)
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFormatError):
        load_directions(tmp_path / "bad.pt")


def test_the_embedded_directions_were_measured_on_every_entry_with_unit_gain():
    D, _ = load_directions(default_directions_path())
    assert D.names == STYLEFLOW.condition_names
    np.testing.assert_allclose(D.response.diagonal().numpy(), 1.0, atol=0.01)
    info = json.loads(default_directions_path().with_suffix(".json").read_text())
    assert info["command"].startswith("main.py train directions") and info["seconds"] > 0


@pytest.fixture(scope="module")
def ctx():
    return InlineContext(device=torch.device("cpu"))


def test_an_edit_on_the_embedded_default_moves_the_reading_to_the_slider_and_the_readout_follows(ctx):
    age = STYLEFLOW.index("age")
    for seed in (5, 6):  # a seed change keeps the edit, and the new face reads the asked value too
        base = AttributeReadJob(EditState(seed=seed))(ctx).base[age]
        target = float(np.clip(base + 15.0, 30.0, 60.0))
        reading = AttributeReadJob(EditState(seed=seed, edits=(AttributeEdit("attribute", "age", target),)))(ctx)
        assert reading.method == "directions" and reading.methods == ("directions", "flow")
        assert abs(reading.current[age] - target) < 0.35 * abs(target - base)
        assert abs(reading.current[age] - base) > 0.6 * abs(target - base)
        undone = AttributeReadJob(EditState(seed=seed))(ctx)  # undo: the reading is the unedited face's again
        assert undone.current[age] == pytest.approx(base)


def test_a_lock_holds_its_attribute_while_another_is_edited(ctx):
    state = EditState(seed=9)
    base = AttributeReadJob(state)(ctx).base
    i, j = STYLEFLOW.index("gender"), STYLEFLOW.index("age")
    edit = (AttributeEdit("attribute", "age", float(np.clip(base[j] + 20, 30, 62))),)
    locked = AttributeReadJob(state.replace(edits=edit, locks=("gender",)))(ctx).current
    spread = load_directions(default_directions_path())[0].scale[i]
    assert abs(locked[i] - base[i]) < 0.25 * float(spread)


def test_the_live_solve_while_dragging_differs_from_the_settled_one_and_both_are_memoised_apart(ctx):
    state = EditState(seed=12, edits=(AttributeEdit("attribute", "expression", 0.9),))
    G = cached_model(ctx, state.model)
    live, settled = worker_ws(ctx, G, state, live=True)[0], worker_ws(ctx, G, state)[0]
    assert not torch.equal(live, settled)
    torch.testing.assert_close(settled, torch.from_numpy(LatentJob(state)(ctx))[None], rtol=0, atol=0)


def test_a_project_written_before_the_choice_reads_as_the_flow(tmp_path):
    path = tmp_path / "old.fproj"
    save_project(path, EditState(seed=3, edits=(AttributeEdit("attribute", "age", 40.0),)))
    d = json.loads(path.read_text())
    assert d["state"]["edit_method"] == "auto"
    del d["state"]["edit_method"]
    path.write_text(json.dumps(d))
    assert read_project(path)[0].edit_method == "flow"
    with pytest.raises(ProjectError, match="edit method"):
        EditState(edit_method="magic")



def test_a_drag_on_the_embedded_default_reads_each_shown_frame_and_solves_the_next_without_a_pass(ctx, monkeypatch):
    import engine.jobs.render as render

    calls = []
    make = render.reader
    monkeypatch.setattr(render, "reader", lambda *a: (lambda ws, m=make(*a): (calls.append(len(ws)), m(ws))[1]))
    face = EditState(seed=14)
    age = STYLEFLOW.index("age")
    base = float(AttributeReadJob(face)(ctx).base[age])
    G = cached_model(ctx, face.model)
    tools = render.cached_tools(ctx, face)
    counts, misses = [], []
    for k in range(1, 6):
        state = face.replace(edits=(AttributeEdit("attribute", "age", base + 3.0 * k),))
        calls.clear()
        frame = RenderJob(state, live=True)(ctx)
        counts.append(len(calls))
        read = read_condition(tools.estimator, frame.image, layout=tools.layout)[0, age]
        misses.append(abs(float(read) - (base + 3.0 * k)))
    assert frame.live and counts == [1, 0, 0, 0, 0]
    assert drag_gains(ctx, G, face).gain((age,)) is not None
    reads = []
    read = render.read_condition
    monkeypatch.setattr(render, "read_condition", lambda *a, **k: (reads.append(1), read(*a, **k))[1])
    RenderJob(state, live=True)(ctx)  # the same frame again: its solve is memoised, no reading is waited for
    assert reads == [] and calls == []
    assert misses[-1] < 0.35 * 15.0  # the last frame reads within a third of the 15 years asked
