"""Live preview: document changes -> throttled render requests -> frames, never a stale one.

Input is throttled (leading + trailing edge, last state wins) before a request is made; while a slider is held the
request asks for a reduced preview resolution, and the full image follows on release. Attribute edits by measured
directions are shown first with their quick solve (``RenderJob(live=True)``), then settled (locks held, the other
attributes kept) by a second request of the same state: on release, or as soon as a quick frame of a change made
without a drag arrives. Each render is one request in
the ``render`` slot, and the preview listens to that request only: the bridge delivers nothing of a request a newer
one superseded.
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal
from superqt.utils import qthrottled

from editor.controllers.bridge import QtRequest
from editor.dialogs.error_box import sentence
from engine import RenderJob, RenderResult

SLOT = "render"


class LivePreview(QObject):
    """Renders the document's state. ``frame(result)`` carries only the newest request's result."""

    frame = Signal(object)  # RenderResult
    failed = Signal(str)  # the sentence; the traceback is in the log

    def __init__(self, document, bridge, *, interval_ms: int = 10, preview_limit: int | None = 256,
                 parent: QObject | None = None):
        super().__init__(parent)
        self._doc = document
        self._bridge = bridge
        self.preview_limit = preview_limit
        self._dragging = False
        self._request: QtRequest | None = None  # the newest render request
        self._held = False  # a change made during a drag waits for the frame in flight
        self.latencies_ms: list[float] = []  # request -> frame received, for the status bar and benchmarks
        self._throttled = qthrottled(self._submit, timeout=interval_ms, leading=True, parent=self)
        document.changed.connect(lambda *_: self.request())

    def request(self) -> None:
        """Ask for a new frame of the current state (throttled). While a control is held, a change made while the
        newest frame is still rendering waits for it (``_held``): a drag faster than the engine would otherwise
        supersede every frame before it finished, and show none until the release."""
        if self._dragging and self._request is not None and not self._request.done():
            self._held = True
            return
        self._throttled()

    def render_now(self) -> QtRequest:
        """Submit the current state at once (no throttle); returns the request."""
        return self._submit()

    def set_dragging(self, dragging: bool) -> None:
        """A continuous control is held (preview resolution) or was released (render the full image now)."""
        self._dragging = dragging
        if not dragging:
            self._held = False
            self._throttled.cancel()
            self._submit(live=False)

    def _submit(self, *, live: bool = True) -> QtRequest:
        limit = self.preview_limit if self._dragging else None
        job = RenderJob(self._doc.state, preview_limit=limit, live=live)
        self._request = self._bridge.submit(job, slot=SLOT)
        return self._request.on(finished=self._on_frame, failed=self._on_failed, cancelled=self._release_held)

    def _release_held(self) -> None:
        if self._held:
            self._held = False
            self._throttled()

    def _on_frame(self, result: RenderResult) -> None:
        # only the newest request is ever delivered: this is its frame
        self.latencies_ms.append((time.perf_counter() - self._request.submitted_at) * 1e3)
        del self.latencies_ms[:-200]
        self.frame.emit(result)
        if result.live and not self._dragging and result.state == self._doc.state:
            self._submit(live=False)  # the quick solve is shown; now the settled one (locks held)
        self._release_held()

    def _on_failed(self, error: Exception) -> None:
        self.failed.emit(sentence(error))
        self._release_held()
