"""Reading a face's condition from the attribute flow on the worker (``condition_fit.fit_condition``), with progress
and cancellation: the "Read from flow" action of the attributes panel.

``FlowReadJob(state)`` fits the condition of the state's unedited face (its mixed W+ latent) from the estimator's
reading and returns it beside that reading. The fit is memoised per face in the worker's memo
(``render.flow_condition``), so once the editor switches the state's ``attribute_source`` to ``'flow'`` the renders
and readings that follow start from it at no further cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engine.algorithms.flow_layout import ConditionLayout
from engine.jobs.render import cached_tools, estimator_condition, flow_condition, state_model
from engine.project import EditState
from engine.worker import JobContext


@dataclass(frozen=True)
class FlowReading:
    """The flow's reading of a face: ``condition`` [C] (layout order, raw units) and the estimator's reading it
    started from, ``start`` [C]; ``trajectory`` the fit's log-likelihood after each step [steps + 1] (nats, prior
    included); ``ms`` the worker's time for the job (a memoised fit takes none)."""

    state: EditState
    condition: np.ndarray
    start: np.ndarray
    trajectory: np.ndarray
    layout: ConditionLayout
    ms: float


@dataclass(frozen=True)
class FlowReadJob:
    """Read the condition of the state's unedited face from its flow (cancellable; progress per optimiser step)."""

    state: EditState

    def __call__(self, ctx: JobContext) -> FlowReading:
        t0 = time.perf_counter()
        G = state_model(ctx, self.state)  # the face as shown: tuned when the state has a tuning
        tools = cached_tools(ctx, self.state)
        start = estimator_condition(ctx, G, self.state, tools)
        ctx.progress(0.0, "Reading the attributes from the flow…")

        def report(step: int, steps: int, ll: float) -> None:
            ctx.progress(step / max(steps, 1), f"Reading the attributes from the flow: step {step} of {steps}")

        fit = flow_condition(ctx, G, self.state, tools, start, progress=report)
        return FlowReading(self.state, fit.condition[0].cpu().numpy(), start[0].cpu().numpy(),
                           fit.trajectory[:, 0].cpu().numpy(), tools.layout, (time.perf_counter() - t0) * 1e3)


__all__ = ["FlowReading", "FlowReadJob"]
