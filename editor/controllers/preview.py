"""Live preview: document changes -> throttled render requests -> frames, never a stale one.

Input is throttled (leading + trailing edge, last state wins) before a request is made; while a slider is held the
request asks for a reduced preview resolution, and the full image follows on release.
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal
from superqt.utils import qthrottled

from engine import RenderJob, RenderResult

SLOT = "render"


class LivePreview(QObject):
    """Renders the document's state. ``frame(result)`` carries only the newest request's result."""

    frame = Signal(object)  # RenderResult
    failed = Signal(str)

    def __init__(self, document, bridge, *, interval_ms: int = 10, preview_limit: int | None = 256,
                 parent: QObject | None = None):
        super().__init__(parent)
        self._doc = document
        self._bridge = bridge
        self.preview_limit = preview_limit
        self._dragging = False
        self._submitted_at: dict[int, float] = {}
        self.latencies_ms: list[float] = []  # request -> frame received, for the status bar and benchmarks
        self._throttled = qthrottled(self._submit, timeout=interval_ms, leading=True, parent=self)
        document.changed.connect(lambda *_: self.request())
        bridge.result.connect(self._on_result)
        bridge.failed.connect(self._on_failed)

    def request(self) -> None:
        """Ask for a new frame of the current state (throttled)."""
        self._throttled()

    def render_now(self) -> int:
        """Submit the current state at once (no throttle); returns the request id."""
        return self._submit()

    def set_dragging(self, dragging: bool) -> None:
        """A continuous control is held (preview resolution) or was released (render the full image now)."""
        self._dragging = dragging
        if not dragging:
            self._throttled.cancel()
            self._submit()

    def _submit(self) -> int:
        limit = self.preview_limit if self._dragging else None
        rid = self._bridge.submit(RenderJob(self._doc.state, preview_limit=limit), slot=SLOT)
        self._submitted_at[rid] = time.perf_counter()
        return rid

    def _on_result(self, slot: str, rid: int, result: RenderResult) -> None:
        if slot != SLOT or rid != self._bridge.newest(SLOT):
            return
        sent = self._submitted_at.pop(rid, None)
        self._submitted_at = {k: v for k, v in self._submitted_at.items() if k > rid}
        if sent is not None:
            self.latencies_ms.append((time.perf_counter() - sent) * 1e3)
            del self.latencies_ms[:-200]
        self.frame.emit(result)

    def _on_failed(self, slot: str, rid: int, report) -> None:
        if slot == SLOT:
            self.failed.emit(str(report))  # the status bar shows the sentence; the traceback is in the log
