"""The engine worker: one thread that owns every model and the device, fed through single-slot mailboxes.

The GUI (through its Qt adapter) submits immutable jobs; each mailbox ("slot") holds at most one pending job, so
a newer job replaces an unstarted older one (latest wins). Results carry their request id; a result older than the
newest request of its slot is never delivered. Jobs are plain callables ``job(ctx) -> result``; long ones report
progress, hand out partial results and stop early when ``ctx.cancelled()`` (cancel asked, or superseded by a newer
request in the same slot). An exception in a job is delivered as an error message; the worker keeps serving.
No Qt here: callbacks run on the worker thread and the editor's adapter turns them into signals.
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from engine.devices import resolve_device
from engine.errors import ErrorReport

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised by ``JobContext.check()`` inside a job that should stop."""


@dataclass(frozen=True)
class Event:
    """What the worker reports: ``kind`` is 'result', 'partial', 'progress', 'error' (payload: an ``ErrorReport``)
    or 'cancelled'."""

    kind: str
    request_id: int
    slot: str
    payload: Any = None


class ModelCache:
    """Models loaded by the worker, keyed by the caller (e.g. path + sha256), least recently used dropped first."""

    def __init__(self, *, capacity: int = 4):
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key, loader: Callable[[], Any]):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = loader()
        self._items[key] = value
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class JobContext:
    """What a running job sees: the device, the model cache, and the progress / partial / cancel protocol."""

    def __init__(self, worker: "Worker", request_id: int, slot: str):
        self._worker = worker
        self.request_id = request_id
        self.slot = slot
        self.device = worker.device
        self.models = worker.models
        self.memo = worker.memo  # small derived values (e.g. a face's measured attributes), kept apart from models
        self.photos = worker.photos

    def cancelled(self) -> bool:
        """True once this job was cancelled or a newer request arrived in its slot."""
        return self._worker._is_stale(self.request_id, self.slot)

    def check(self) -> None:
        """Raise ``Cancelled`` if ``cancelled()``; call it between steps of long jobs."""
        if self.cancelled():
            raise Cancelled

    def progress(self, fraction: float, message: str = "") -> None:
        self._worker._emit(Event("progress", self.request_id, self.slot, (float(fraction), message)))

    def partial(self, result) -> None:
        """Hand out an intermediate result (e.g. the current reconstruction of an inversion)."""
        if not self.cancelled():
            self._worker._emit(Event("partial", self.request_id, self.slot, result))


Job = Callable[[JobContext], Any]


class InlineContext:
    """A job context for running a job on the calling thread (the command line): the same caches and protocol as
    the worker's, no mailbox; ``listener(event)`` receives progress and partial results."""

    request_id = 0
    slot = "inline"

    def __init__(self, *, device: torch.device, listener: Callable[[Event], None] | None = None):
        self.device = device
        self.models = ModelCache(capacity=4)
        self.memo = ModelCache(capacity=64)
        self.photos = ModelCache(capacity=2)
        self._listener = listener

    def cancelled(self) -> bool:
        return False

    def check(self) -> None:
        pass

    def progress(self, fraction: float, message: str = "") -> None:
        if self._listener is not None:
            self._listener(Event("progress", 0, self.slot, (float(fraction), message)))

    def partial(self, result) -> None:
        if self._listener is not None:
            self._listener(Event("partial", 0, self.slot, result))


class Worker:
    """One thread, single-slot mailboxes, latest wins. ``listener(event)`` is called on the worker thread."""

    def __init__(self, listener: Callable[[Event], None], *, device: str = "auto", cache_capacity: int = 4,
                 cpu_threads: int | None = None, name: str = "engine-worker"):
        self._listener = listener
        self._device_preference = device
        self._cpu_threads = cpu_threads
        self.device: torch.device | None = None
        self.models = ModelCache(capacity=cache_capacity)
        self.memo = ModelCache(capacity=64)
        self.photos = ModelCache(capacity=2)  # decoded photos are large: keep the current one and one more
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._pending: OrderedDict[str, tuple[int, Job]] = OrderedDict()  # slot -> newest unstarted job
        self._newest: dict[str, int] = {}  # slot -> newest request id submitted
        self._cancelled: set[int] = set()
        self._running: tuple[int, str] | None = None
        self._stop = False
        self._ready = threading.Event()
        self._start_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Worker":
        """Start the thread and wait until it has opened its device; a device that cannot be used raises
        ``DeviceError`` here (the thread has then ended), it never leaves the caller waiting."""
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        return self

    def submit(self, job: Job, *, slot: str = "render") -> int:
        """Queue ``job`` in ``slot``, replacing an unstarted older job there; returns the request id."""
        with self._lock:
            if self._stop:
                raise RuntimeError("the engine worker has been shut down")
            rid = next(self._ids)
            self._pending[slot] = (rid, job)
            self._pending.move_to_end(slot)
            self._newest[slot] = rid
            self._lock.notify_all()
        return rid

    def cancel(self, request_id: int) -> None:
        """Cancel a pending or running request (a running job stops at its next ``check()``)."""
        dropped = None
        with self._lock:
            for slot, (rid, _) in list(self._pending.items()):
                if rid == request_id:
                    del self._pending[slot]
                    dropped = Event("cancelled", rid, slot)
            if self._running is not None and self._running[0] == request_id:
                self._cancelled.add(request_id)
        if dropped is not None:
            self._emit(dropped)

    def newest(self, slot: str = "render") -> int | None:
        with self._lock:
            return self._newest.get(slot)

    def shutdown(self, *, timeout: float | None = 10.0) -> None:
        """Stop after the running job; pending jobs are dropped. Joins the thread."""
        with self._lock:
            self._stop = True
            if self._running is not None:
                self._cancelled.add(self._running[0])
            self._pending.clear()
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _is_stale(self, request_id: int, slot: str) -> bool:
        with self._lock:
            return request_id in self._cancelled or self._newest.get(slot, request_id) != request_id

    def _emit(self, event: Event) -> None:
        try:
            self._listener(event)
        except Exception:  # a faulty listener must not kill the worker
            log.exception("the listener failed on a %s event", event.kind)

    def _run(self) -> None:
        try:
            self.device = resolve_device(self._device_preference)
            torch.zeros(1, device=self.device)  # a device that parses but cannot run fails here, not in a job
        except Exception as e:  # reported by start() on the caller's thread
            self._start_error = e
            self._ready.set()
            return
        if self.device.type == "cpu" and self._cpu_threads is not None:
            torch.set_num_threads(self._cpu_threads)  # process-wide: the worker is the one that computes
        log.info("engine worker started on %s", self.device)
        self._ready.set()
        while True:
            with self._lock:
                while not self._pending and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                slot, (rid, job) = self._pending.popitem(last=False)
                self._running = (rid, slot)
            ctx = JobContext(self, rid, slot)
            try:
                result = job(ctx)
            except Cancelled:
                self._emit(Event("cancelled", rid, slot))
            except Exception as e:
                log.error("job %d in slot %r failed", rid, slot, exc_info=e)
                self._emit(Event("error", rid, slot, ErrorReport.from_exception(e)))
            else:
                if ctx.cancelled():
                    self._emit(Event("cancelled", rid, slot))
                else:
                    self._emit(Event("result", rid, slot, result))
            finally:
                with self._lock:
                    self._running = None
                    self._cancelled.discard(rid)
