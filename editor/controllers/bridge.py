"""The one Qt adapter over the engine worker: engine callbacks become signals on the GUI thread.

It owns the worker's lifecycle, is the only editor object that knows about the engine's threading, and drops any
result older than the newest request of its slot, so a stale frame is never shown.
"""
from __future__ import annotations

import os

from PySide6.QtCore import QObject, Qt, Signal

from engine import ErrorReport, Event, Job, Worker, plain_text


def gui_cpu_threads() -> int:
    """Engine threads on the CPU: all cores but one, which stays free for the GUI thread to paint (on 2 cores a
    contended second thread made the slider-to-pixels p95 five times worse: 65 ms instead of 12.5 ms)."""
    return max(1, (os.cpu_count() or 2) - 1)


class EngineBridge(QObject):
    """Submit engine jobs by slot; receive results, partials, progress, errors and cancellations as signals."""

    result = Signal(str, int, object)  # slot, request id, payload
    partial = Signal(str, int, object)
    progress = Signal(str, int, float, str)  # slot, request id, fraction, message
    failed = Signal(str, int, object)  # slot, request id, ErrorReport (str() is its sentence)
    cancelled = Signal(str, int)
    _event = Signal(object)  # emitted on the worker thread, delivered on the GUI thread

    def __init__(self, *, device: str = "auto", cpu_threads: int | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._event.connect(self._dispatch, Qt.ConnectionType.QueuedConnection)
        self._worker = Worker(self._event.emit, device=device, cpu_threads=cpu_threads)
        self._newest: dict[str, int] = {}
        self._closed = False

    def start(self) -> "EngineBridge":
        self._worker.start()
        return self

    @property
    def device(self) -> str:
        return str(self._worker.device) if self._worker.device is not None else "starting"

    def submit(self, job: Job, *, slot: str = "render") -> int:
        """Queue ``job``; returns its request id. After ``shutdown`` (the app is closing: a late timer of some widget
        may still fire) nothing is queued and 0 is returned."""
        if self._closed:
            return 0
        rid = self._worker.submit(job, slot=slot)
        self._newest[slot] = rid
        return rid

    def cancel(self, request_id: int) -> None:
        self._worker.cancel(request_id)

    def newest(self, slot: str) -> int | None:
        return self._newest.get(slot)

    def shutdown(self) -> None:
        self._closed = True
        self._worker.shutdown()

    def _dispatch(self, event: Event) -> None:
        if event.request_id < self._newest.get(event.slot, 0):
            return  # superseded on the GUI side already: never show it
        if event.kind == "result":
            self.result.emit(event.slot, event.request_id, event.payload)
        elif event.kind == "partial":
            self.partial.emit(event.slot, event.request_id, event.payload)
        elif event.kind == "progress":
            fraction, message = event.payload
            self.progress.emit(event.slot, event.request_id, fraction, message)
        elif event.kind == "error":
            report = event.payload
            if not isinstance(report, ErrorReport):
                report = ErrorReport(plain_text(str(report)))
            self.failed.emit(event.slot, event.request_id, report)
        elif event.kind == "cancelled":
            self.cancelled.emit(event.slot, event.request_id)
