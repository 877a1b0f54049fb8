"""Reading a condition from a conditional flow (``engine.algorithms.condition_fit``) with tiny seeded random CNFs."""
from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

from engine.algorithms.condition_fit import (
    SOLVER_STEPS,
    condition_bounds,
    condition_mean,
    condition_scale,
    fit_condition,
    log_likelihood,
)
from engine.algorithms.flow_edit import AttributeEdit
from engine.algorithms.flow_layout import AttributeSpec, ConditionLayout, LayoutError
from engine.jobs.condition import FlowReadJob
from engine.jobs.render import (
    AttributeReadJob,
    FlowTools,
    LatentJob,
    cached_model,
    cached_tools,
    read_from_flow,
    state_ws,
)
from engine.models.flow import ConditionalCNF, FlowConfig
from engine.project import EditState, ProjectError
from engine.worker import Cancelled, InlineContext

DIM, ROWS = 4, 12


def tiny_flow(layout: ConditionLayout, *, seed: int = 0, cond_gain: float = 3.0) -> ConditionalCNF:
    """A random CNF whose velocity depends strongly on the condition (hyper weights scaled by ``cond_gain``)."""
    cfg = FlowConfig(input_dim=DIM, hidden_dims=(16,), cond_dim=layout.cond_dim, divergence="exact", adjoint=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        flow = ConditionalCNF(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in flow.chain[1].odefunc.diffeq.layers:
            layer._hyper_bias.weight.mul_(cond_gain)
            layer._hyper_gate.weight.mul_(cond_gain)
        for bn in (flow.chain[0], flow.chain[2]):
            bn.running_mean.copy_(torch.randn(DIM, generator=g) * 0.3)
            bn.running_var.copy_(torch.rand(DIM, generator=g) + 0.5)
            bn.weight.copy_(torch.randn(DIM, generator=g) * 0.1)
    flow.eval()
    flow.layout = layout
    flow.extras = {}
    return flow


def layout_of(names=("a", "b", "c"), num_light: int = 0) -> ConditionLayout:
    attrs = tuple(AttributeSpec(n, (0,), (-2.0, 2.0), 1.0) for n in names)
    return ConditionLayout(num_light=num_light, attributes=attrs, lighting_rows=(0,) if num_light else ())


LAYOUT = layout_of()


def sample_w(flow: ConditionalCNF, cond: torch.Tensor, *, seed: int) -> torch.Tensor:
    """Latents [B, ROWS, DIM] drawn from the flow under ``cond`` [B, C] (z ~ N(0, I) through the inverse)."""
    z = torch.randn(cond.shape[0], ROWS, DIM, generator=torch.Generator().manual_seed(seed))
    return flow.z_to_w(z, cond)


def test_fast_log_likelihood_matches_the_flows_faithful_exact_log_density():
    flow = tiny_flow(LAYOUT)
    cond = torch.tensor([[0.5, -1.0, 1.5], [-1.0, 0.2, 0.0]])
    w = sample_w(flow, cond, seed=1)
    with torch.no_grad():
        z, delta = flow(w, cond, torch.zeros(*w.shape[:-1], 1))  # dopri5 at 1e-5, exact trace
    want = (-0.5 * (z ** 2 + math.log(2 * math.pi))).flatten(1).sum(1) + delta.flatten(1).sum(1) * -1
    got = log_likelihood(flow, w, cond, steps=20, divergence="exact")
    assert got.shape == (2,)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)
    approx = log_likelihood(flow, w, cond, steps=20, divergence="approximate")
    assert (approx - want).abs().max() < 0.2 * want.abs().max()  # an unbiased estimate, one probe per row
    assert not torch.equal(approx, got)


def test_log_likelihood_is_deterministic_and_leaves_the_global_rng_alone():
    flow = tiny_flow(LAYOUT)
    cond = torch.tensor([[0.5, -1.0, 1.5]])
    w = sample_w(flow, cond, seed=2)
    state = torch.random.get_rng_state()
    a = log_likelihood(flow, w, cond)
    b = log_likelihood(flow, w, cond)
    assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(log_likelihood(flow, w, cond, probe_seed=7), a)


@pytest.mark.parametrize("divergence", ["approximate", "exact", "none"])
def test_the_fit_raises_the_log_likelihood_from_the_start(divergence):
    flow = tiny_flow(LAYOUT)
    truth = torch.tensor([[1.0, -0.5, 0.3], [-0.8, 1.2, -1.0]])
    w = sample_w(flow, truth, seed=3)
    start = torch.zeros(2, 3)
    fit = fit_condition(flow, w, start, steps=30, lr=0.1, prior=0.0, divergence=divergence, snap=False)
    assert fit.trajectory.shape == (31, 2)
    start_ll = log_likelihood(flow, w, start, steps=SOLVER_STEPS, divergence=divergence)
    torch.testing.assert_close(fit.trajectory[0], start_ll)
    assert (fit.log_likelihood > start_ll + 1.0).all()
    assert (fit.trajectory[-1] > fit.trajectory[0]).all()
    torch.testing.assert_close(fit.log_likelihood, log_likelihood(flow, w, fit.condition, steps=SOLVER_STEPS,
                                                                  divergence=divergence))


def test_for_latents_drawn_under_a_known_condition_the_fit_moves_towards_it():
    flow = tiny_flow(LAYOUT)
    g = torch.Generator().manual_seed(4)
    truth = torch.rand(6, 3, generator=g) * 2.4 - 1.2  # inside the (-2, 2) ranges
    w = sample_w(flow, truth, seed=5)
    start = (truth + torch.randn(6, 3, generator=g) * 0.8).clamp(-2, 2)
    fit = fit_condition(flow, w, start, steps=60, lr=0.1, prior=0.0, snap=False)
    before = (start - truth).norm(dim=1)
    after = (fit.condition - truth).norm(dim=1)
    assert after.mean() < 0.5 * before.mean()
    assert (after < before).float().mean() >= 0.8


def test_bounds_are_respected_and_the_start_is_clamped_into_them():
    flow = tiny_flow(LAYOUT)
    truth = torch.tensor([[1.5, -1.5, 1.5]])
    w = sample_w(flow, truth, seed=6)
    lo, hi = torch.tensor([-0.2, -0.2, -0.2]), torch.tensor([0.3, 0.3, 0.3])
    start = torch.tensor([[-1.0, 0.0, 1.0]])
    fit = fit_condition(flow, w, start, steps=30, lr=0.3, prior=0.0, bounds=(lo, hi), snap=False)
    assert torch.equal(fit.start, torch.tensor([[-0.2, 0.0, 0.3]]))
    assert (fit.condition >= lo).all() and (fit.condition <= hi).all()
    # the truth lies outside: the unconstrained fit would leave the box (so the bounds did the clamping)
    free = fit_condition(flow, w, start, steps=30, lr=0.3, prior=0.0, snap=False,
                         bounds=(torch.full((3,), -5.0), torch.full((3,), 5.0)))
    assert ((free.condition < lo) | (free.condition > hi)).any()


def test_default_bounds_widen_the_slider_ranges_to_the_training_data_and_bound_the_lighting():
    layout = layout_of(("a", "b"), num_light=1)
    flow = tiny_flow(layout)
    lo, hi = condition_bounds(flow, layout)
    assert lo.tolist() == [-math.inf, -2.0, -2.0] and hi.tolist() == [math.inf, 2.0, 2.0]
    flow.extras = {"cond_names": list(layout.condition_names), "cond_min": [-1.0, -3.0, 0.0],
                   "cond_max": [1.0, 1.0, 2.5], "cond_mean": [0.1, 0.2, 0.3], "cond_std": [0.5, 0.0, 2.0]}
    lo, hi = condition_bounds(flow, layout)
    assert lo.tolist() == [-1.0, -3.0, -2.0] and hi.tolist() == [1.0, 2.0, 2.5]
    torch.testing.assert_close(condition_mean(flow, layout), torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(condition_scale(flow, layout), torch.tensor([0.5, 1.0, 2.0]))  # 0 std: range / 4
    flow.extras["cond_names"] = ["x", "y", "z"]  # statistics of other columns are not used
    assert condition_bounds(flow, layout)[0].tolist() == [-math.inf, -2.0, -2.0]


def test_without_a_start_the_fit_begins_at_the_training_mean():
    layout = layout_of()
    flow = tiny_flow(layout)
    flow.extras = {"cond_mean": [0.4, -0.3, 0.2]}
    w = sample_w(flow, torch.zeros(1, 3), seed=7)
    fit = fit_condition(flow, w, None, steps=0, snap=False)
    assert torch.equal(fit.start, torch.tensor([[0.4, -0.3, 0.2]]))
    assert fit.steps_run == 0 and torch.equal(fit.condition, fit.start)


def test_cancel_stops_the_fit_and_returns_the_best_so_far():
    flow = tiny_flow(LAYOUT)
    w = sample_w(flow, torch.tensor([[1.0, -1.0, 0.5]]), seed=8)
    asked, reports = [], []

    def cancelled():
        asked.append(1)
        return len(asked) > 3

    fit = fit_condition(flow, w, torch.zeros(1, 3), steps=50, prior=0.0, cancelled=cancelled,
                        progress=lambda step, total, ll: reports.append((step, total)))
    assert fit.stopped and fit.steps_run == 3
    assert reports == [(1, 50), (2, 50), (3, 50)]
    assert fit.trajectory.shape == (4, 1)
    assert fit.log_likelihood[0] == fit.trajectory.max()


def test_binary_attributes_snap_to_an_end_when_that_is_more_likely():
    flow = tiny_flow(LAYOUT)
    w = sample_w(flow, torch.tensor([[2.0, 0.0, 0.0]]), seed=9)  # 'a' at its high end
    relaxed = fit_condition(flow, w, torch.zeros(1, 3), steps=3, lr=0.05, prior=0.0, snap=False, binary=("a",))
    snapped = fit_condition(flow, w, torch.zeros(1, 3), steps=3, lr=0.05, prior=0.0, snap=True, binary=("a",))
    assert relaxed.condition[0, 0] < 1.0  # three small steps stay near the start
    assert snapped.condition[0, 0] == 2.0
    assert snapped.log_likelihood[0] > relaxed.log_likelihood[0]
    torch.testing.assert_close(snapped.condition[0, 1:], relaxed.condition[0, 1:])


def test_a_layout_of_another_size_is_used_and_a_mismatch_refused():
    layout = layout_of(("p", "q", "r", "s", "t"), num_light=2)
    flow = tiny_flow(layout, seed=3)
    truth = torch.tensor([[0.5, -0.5, 1.0, -1.0, 0.5, 0.0, -0.5]])
    w = sample_w(flow, truth, seed=10)
    fit = fit_condition(flow, w, None, steps=20, prior=0.0)
    assert fit.condition.shape == (1, 7)
    assert fit.log_likelihood[0] > fit.trajectory[0, 0]
    with pytest.raises(LayoutError, match="7 values"):
        fit_condition(flow, w, None, layout=LAYOUT, steps=1)
    with pytest.raises(ValueError, match=r"\[1, 7\] or \[7\]"):
        fit_condition(flow, w, torch.zeros(1, 3), steps=1)


def test_a_plain_w_latent_and_a_batch_norm_in_training_mode():
    flow = tiny_flow(LAYOUT)
    w = torch.randn(3, DIM, generator=torch.Generator().manual_seed(11))  # [B, w_dim]
    assert log_likelihood(flow, w, torch.zeros(3, 3)).shape == (3,)
    with pytest.raises(ValueError, match=r"\[B, num_ws, 4\] or W \[B, 4\]"):
        log_likelihood(flow, torch.zeros(3, 5), torch.zeros(3, 3))
    flow.train()
    with pytest.raises(RuntimeError, match="eval"):
        log_likelihood(flow, w, torch.zeros(3, 3))


class _Stopping(InlineContext):
    """A context whose job is cancelled after ``after`` questions."""

    def __init__(self, after: int):
        super().__init__(device=torch.device("cpu"))
        self.after, self.asked = after, 0

    def cancelled(self) -> bool:
        self.asked += 1
        return self.asked > self.after


def test_the_read_job_fits_the_embedded_face_reports_progress_and_feeds_the_sliders():
    reports = []
    ctx = InlineContext(device=torch.device("cpu"), on_progress=lambda f, m: reports.append(f))
    state = EditState(seed=3)
    reading = FlowReadJob(state)(ctx)
    estimator = AttributeReadJob(state)(ctx)
    assert reading.condition.shape == reading.start.shape == (reading.layout.cond_dim,)
    np.testing.assert_allclose(reading.start, estimator.base)
    assert not np.allclose(reading.condition, reading.start)
    assert reading.trajectory[-1] > reading.trajectory[0]
    assert reports[0] == 0.0 and reports[-1] == 1.0 and len(reports) > 3
    flowed = AttributeReadJob(state.replace(attribute_source="flow"))(ctx)  # the memoised fit, no second solve
    np.testing.assert_array_equal(flowed.base, reading.condition)
    edit = AttributeEdit("attribute", "age", 60.0)
    a = LatentJob(state.replace(edits=(edit,), edit_method="flow"))(ctx)
    b = LatentJob(state.replace(edits=(edit,), attribute_source="flow", edit_method="flow"))(ctx)
    assert not np.allclose(a, b)  # the flow's edit starts from the other condition
    a = LatentJob(state.replace(edits=(edit,)))(ctx)
    b = LatentJob(state.replace(edits=(edit,), attribute_source="flow"))(ctx)
    np.testing.assert_array_equal(a, b)  # measured directions aim at the asked reading whatever the start
    G = cached_model(ctx, state.model)
    tools = cached_tools(ctx, state)
    fresh = state_ws(G, state.replace(edits=(edit,), attribute_source="flow"), tools=tools)  # outside the worker
    np.testing.assert_allclose(fresh[0].numpy(), b, atol=1e-5)


def test_a_cancelled_read_job_stops_and_memoises_nothing():
    ctx = _Stopping(after=2)
    state = EditState(seed=4)
    with pytest.raises(Cancelled):
        FlowReadJob(state)(ctx)
    assert ctx.asked == 3
    assert not any(key[0] == "cond0-flow" for key in ctx.memo._items)
    ctx.after = 10**6
    assert FlowReadJob(state)(ctx).trajectory.shape[0] > 3


def test_an_unknown_attribute_source_is_refused():
    with pytest.raises(ProjectError, match="'estimator' or 'flow'"):
        EditState(attribute_source="guess")
    assert EditState.from_dict(EditState(attribute_source="flow").to_dict()).attribute_source == "flow"


def test_with_the_flows_reading_the_panel_still_shows_what_the_estimator_reads():
    ctx = InlineContext(device=torch.device("cpu"))
    state = EditState(seed=5)
    estimated = AttributeReadJob(state)(ctx)
    flowed = AttributeReadJob(state.replace(attribute_source="flow"))(ctx)
    np.testing.assert_array_equal(flowed.current, estimated.base)  # the grey numbers: the estimator's reading
    assert not np.allclose(flowed.base, estimated.base)  # the sliders: the flow's


def test_entries_the_estimator_does_not_read_start_at_the_flows_training_mean():
    flow = tiny_flow(LAYOUT)
    flow.extras = {"cond_mean": [0.7, -0.6, 0.5]}
    estimator = types.SimpleNamespace(cfg=types.SimpleNamespace(binary=()))
    tools = FlowTools(flow, estimator, None, LAYOUT, (True, False, True))
    w = sample_w(flow, torch.zeros(1, 3), seed=12)
    fit = read_from_flow(tools, w, torch.tensor([[0.1, 0.0, 0.2]]), steps=0)
    assert torch.equal(fit.start, torch.tensor([[0.1, -0.6, 0.2]]))
