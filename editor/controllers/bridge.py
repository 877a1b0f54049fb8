"""The one Qt adapter over the engine worker: each submitted job gets a ``QtRequest`` whose signals arrive on the GUI
thread.

``EngineBridge.submit(job, slot=...)`` queues the job on the engine worker and returns its request; the widget that
asked connects to that request's own signals (``finished``, ``failed``, ``progress``, ``partial``, ``cancelled``),
never to a signal every widget hears. The bridge owns the worker's lifecycle and is the only editor object that
knows about the engine's threading: the worker's callbacks become queued events, delivered on the GUI thread. A
request superseded by a newer one of its slot delivers nothing more, even when its job ended before the newer one
was submitted, so a stale frame is never shown.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal

from engine import Job, JobHandle, Worker


def gui_cpu_threads() -> int:
    """Engine threads on the CPU: all cores but one, which stays free for the GUI thread to paint (on 2 cores a
    contended second thread made the slider-to-pixels p95 five times worse: 65 ms instead of 12.5 ms)."""
    return max(1, (os.cpu_count() or 2) - 1)


class QtRequest(QObject):
    """One job submitted through the bridge, seen from the GUI thread.

    Exactly one of ``finished(result)``, ``failed(exception)`` and ``cancelled()`` ends it; ``progress(fraction,
    message)`` and ``partial(result)`` may come before. ``failed`` carries the job's own exception, its type and
    traceback kept (``editor.dialogs.error_box`` turns it into a sentence and its details where it is shown). A
    request superseded by a newer one of its slot, or submitted after the bridge shut down, emits nothing."""

    finished = Signal(object)  # the job's result
    failed = Signal(object)  # the exception the job raised
    progress = Signal(float, str)  # fraction in [0, 1], message
    partial = Signal(object)  # an intermediate result
    cancelled = Signal()

    def __init__(self, slot: str):
        super().__init__()
        self.slot = slot
        self.handle: JobHandle | None = None  # the engine's handle; None when nothing was queued (after shutdown)
        self.request_id = 0
        self.submitted_at = time.perf_counter()
        self._ended = False

    def __repr__(self) -> str:
        return f"QtRequest(request_id={self.request_id}, slot={self.slot!r})"

    def on(self, *, finished: Callable | None = None, failed: Callable | None = None,
           progress: Callable | None = None, partial: Callable | None = None,
           cancelled: Callable | None = None) -> QtRequest:
        """Connect the given callables to this request's signals; returns the request."""
        for signal, slot in ((self.finished, finished), (self.failed, failed), (self.progress, progress),
                             (self.partial, partial), (self.cancelled, cancelled)):
            if slot is not None:
                signal.connect(slot)
        return self

    def cancel(self) -> None:
        """Ask the job to stop: ``cancelled()`` follows (a pending job never runs; a running one stops at its next
        step). Nothing happens once it has ended."""
        if self.handle is not None:
            self.handle.cancel()

    def done(self) -> bool:
        """Its ending signal was emitted, or it will emit nothing (superseded, or never queued)."""
        return self._ended

    def _deliver(self, kind: str, payload) -> None:
        if self._ended:
            return
        if kind == "progress":
            self.progress.emit(*payload)
        elif kind == "partial":
            self.partial.emit(payload)
        else:
            self._ended = True
            handle: JobHandle = payload
            if handle.cancelled():
                self.cancelled.emit()
            elif handle.exception() is not None:
                self.failed.emit(handle.exception())
            else:
                self.finished.emit(handle.result())


class EngineBridge(QObject):
    """Submit engine jobs by slot (latest wins in a slot); each returns the ``QtRequest`` to listen to."""

    _event = Signal(object)  # (request, kind, payload), emitted on any thread, delivered on the GUI thread

    def __init__(self, *, device: str = "auto", precision: str = "auto", cpu_threads: int | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self._event.connect(self._dispatch, Qt.ConnectionType.QueuedConnection)
        self._worker = Worker(device=device, precision=precision, cpu_threads=cpu_threads)
        self._newest: dict[str, QtRequest] = {}  # slot -> its newest request that has not ended
        self._closed = False

    def start(self) -> EngineBridge:
        self._worker.start()
        return self

    @property
    def device(self) -> str:
        return str(self._worker.device) if self._worker.device is not None else "starting"

    @property
    def precision(self) -> str:
        """The generators' precision on the worker's device, e.g. 'float16' for 'auto' on CUDA ('' before it
        started)."""
        return self._worker.dtype_name

    def submit(self, job: Job, *, slot: str = "render") -> QtRequest:
        """Queue ``job`` in ``slot`` (superseding the slot's older request) and return its request. After
        ``shutdown`` (the app is closing: a late timer of some widget may still fire) nothing is queued and the
        request returned never emits."""
        request = QtRequest(slot)
        if self._closed:
            request._ended = True
            return request
        post = self._event.emit
        request.handle = self._worker.submit(
            job, slot=slot, on_progress=lambda fraction, message: post((request, "progress", (fraction, message))),
            on_partial=lambda result: post((request, "partial", result)),
            on_done=lambda handle: post((request, "done", handle)))
        request.request_id = request.handle.request_id
        older = self._newest.get(slot)
        if older is not None:
            older._ended = True  # superseded: it emits nothing more
        self._newest[slot] = request
        return request

    def newest(self, slot: str) -> QtRequest | None:
        """The newest request of ``slot`` that has not ended yet."""
        return self._newest.get(slot)

    def shutdown(self) -> None:
        self._closed = True
        self._newest.clear()
        self._worker.shutdown()

    def _dispatch(self, event: tuple[QtRequest, str, object]) -> None:
        request, kind, payload = event
        if self._closed or self._newest.get(request.slot) is not request:
            return  # superseded on the GUI side already (or closing): never show it
        if kind == "done":
            del self._newest[request.slot]
        request._deliver(kind, payload)
