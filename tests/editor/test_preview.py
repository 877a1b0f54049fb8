"""Live preview: throttled requests, preview resolution while dragging, and never a stale frame shown last."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

import editor.controllers.preview as preview_module
from editor.controllers.document import Document
from editor.controllers.preview import LivePreview
from engine.jobs.render import RenderResult
from engine.project import EditState

GATE = threading.Event()
STARTED = []


@dataclass(frozen=True)
class SlowFakeJob:
    """A fake engine: the frame's colour encodes the seed; seed 1 blocks until the test opens the gate."""

    state: EditState
    preview_limit: int | None = None
    live: bool = False

    def __call__(self, ctx):
        STARTED.append(self.state.seed)
        if self.state.seed == 1:
            GATE.wait(10)
        image = np.full((8, 8, 3), self.state.seed, np.uint8)
        return RenderResult(self.state, image, self.preview_limit is None, 1.0, "fake")


def test_a_slow_engine_never_shows_a_stale_frame_last(qtbot, monkeypatch, bridge):
    monkeypatch.setattr(preview_module, "RenderJob", SlowFakeJob)
    GATE.clear()
    STARTED.clear()
    doc = Document(EditState(seed=0))
    preview = LivePreview(doc, bridge, interval_ms=1)
    shown = []
    preview.frame.connect(lambda r: shown.append(int(r.image[0, 0, 0])))
    doc.edit("Seed", seed=1)  # blocks in the engine
    qtbot.waitUntil(lambda: STARTED == [1], timeout=5000)
    for seed in (2, 3, 4):  # each replaces the unstarted one before it
        doc.edit("Seed", seed=seed)
        qtbot.wait(5)
    GATE.set()
    qtbot.waitUntil(lambda: bool(shown) and shown[-1] == 4, timeout=5000)
    qtbot.wait(100)
    assert shown == [4], shown  # seed 1's frame finished after newer requests: dropped, never shown
    assert 2 not in STARTED and 3 not in STARTED


def _dragging(monkeypatch, bridge, job):
    """A preview of a seed-5 document on the fake engine ``job``, its frames collected, a control held."""
    monkeypatch.setattr(preview_module, "RenderJob", job)
    doc = Document(EditState(seed=5))
    preview = LivePreview(doc, bridge, interval_ms=1, preview_limit=16)
    frames = []
    preview.frame.connect(frames.append)
    preview.set_dragging(True)
    return doc, preview, frames


def test_dragging_asks_for_preview_frames_then_a_full_one(qtbot, monkeypatch, bridge):
    doc, preview, frames = _dragging(monkeypatch, bridge, SlowFakeJob)
    with qtbot.waitSignal(preview.frame, timeout=5000):
        doc.edit("Psi", merge="psi", psi=0.5)
    assert frames[-1].full is False
    with qtbot.waitSignal(preview.frame, timeout=5000):
        preview.set_dragging(False)
    assert frames[-1].full is True and frames[-1].state.psi == 0.5
    assert preview.latencies_ms and all(v >= 0 for v in preview.latencies_ms)


@dataclass(frozen=True)
class TimedFakeJob(SlowFakeJob):
    """A fake engine that takes 30 ms a frame: slower than the drag's inputs."""

    def __call__(self, ctx):
        import time

        time.sleep(0.03)
        return RenderResult(self.state, np.zeros((8, 8, 3), np.uint8), self.preview_limit is None, 30.0, "fake")


def test_a_drag_faster_than_the_engine_still_shows_frames_while_it_lasts(qtbot, monkeypatch, bridge):
    doc, preview, frames = _dragging(monkeypatch, bridge, TimedFakeJob)
    for k in range(60):  # an input every 5 ms for 0.3 s, each superseding the frame in flight were it submitted
        doc.edit("Psi", merge="psi", psi=0.3 + 0.01 * k)
        qtbot.wait(5)
    during = list(frames)
    preview.set_dragging(False)
    qtbot.waitUntil(lambda: bool(frames) and frames[-1].full and frames[-1].state == doc.state, timeout=5000)
    assert len(during) >= 4, len(during)  # about one frame per 30 ms, not none until the release
    assert [f.state.psi for f in during] == sorted(f.state.psi for f in during)  # never an older one after


def test_real_render_through_the_bridge_matches_the_engine(qtbot, bridge, tiny_state):
    from engine.jobs.render import load_model, render_state

    doc = Document(tiny_state)
    preview = LivePreview(doc, bridge)
    with qtbot.waitSignal(preview.frame, timeout=20000) as blocker:
        preview.render_now()
    expected = render_state(load_model(tiny_state.model), tiny_state)
    assert blocker.args[0].image.shape == (32, 32, 3)
    np.testing.assert_array_equal(blocker.args[0].image, expected)


def test_requests_after_shutdown_are_ignored_not_raised(qtbot, tiny_state):
    from editor.controllers.bridge import EngineBridge

    b = EngineBridge(device="cpu").start()
    b.shutdown()
    request = b.submit(lambda ctx: 1, slot="x")
    assert request.done() and request.handle is None and b.newest("x") is None  # queued nowhere, emits nothing
