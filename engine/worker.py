"""The engine worker: one thread that owns every model and the device, fed through single-slot mailboxes.

``Worker.submit(job, slot=...)`` queues an immutable job and returns its ``JobHandle``, which works like a
``concurrent.futures.Future``: ``result()``, ``exception()``, ``cancel()``, ``add_done_callback(fn)``, plus
``on_progress(fn)`` and ``on_partial(fn)`` for what a long job reports while it runs. Each mailbox ("slot") holds at
most one pending job: a newer request in a slot supersedes the older one there, unstarted (it never runs) or running
(it stops at its next ``ctx.check()``), and the older handle ends cancelled with ``superseded()`` true (latest wins).
The end of a job is decided in step with ``submit``: once ``submit`` has returned, no older handle of that slot ends
with a result or delivers a partial result; a job that ended first had its done callbacks run before ``submit``
returned (so callbacks should be quick: a submitter waits for them).
A job is a plain callable ``job(ctx: JobContext) -> result``; an exception it raises is kept on its handle as the
original object (type and traceback), and the worker keeps serving. ``InlineContext`` runs the same jobs on the
calling thread (the command line). No Qt here: callbacks run on the thread that ends the handle (the worker's, or
the one that cancels or supersedes a job before it starts); the editor's adapter turns them into signals.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from engine.devices import resolve_device
from engine.models.precision import parse_precision, precision_dtype, precision_name
from engine.runtime import full_float32

log = logging.getLogger(__name__)


class Cancelled(concurrent.futures.CancelledError):
    """Raised by ``JobContext.check()`` inside a job that should stop, and by ``JobHandle.result()`` of a job that
    was cancelled or superseded."""


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


@runtime_checkable
class JobContext(Protocol):
    """What a running job sees: the device, the caches, and the progress / partial / cancel protocol.

    ``models`` holds loaded networks, ``memo`` small derived values (e.g. a face's measured attributes), ``photos``
    decoded photos. ``progress(fraction, message)`` reports how far the job is (fraction in [0, 1]),
    ``partial(result)`` hands out an intermediate result (e.g. the current reconstruction of an inversion),
    ``cancelled()`` says the job should stop (cancel asked, or a newer request in its slot) and ``check()`` raises
    ``Cancelled`` then: call it between the steps of a long job. ``precision`` is the user's choice for generators
    ('auto', 'float32', 'float16' or 'bfloat16'; ``engine.models.precision``)."""

    device: torch.device
    precision: str
    models: ModelCache
    memo: ModelCache
    photos: ModelCache

    def progress(self, fraction: float, message: str = "") -> None: ...

    def partial(self, result: Any) -> None: ...

    def cancelled(self) -> bool: ...

    def check(self) -> None: ...


Job = Callable[[JobContext], Any]
ProgressCallback = Callable[[float, str], None]  # fraction in [0, 1], message
PartialCallback = Callable[[Any], None]

_PENDING, _RUNNING, _FINISHED, _FAILED, _CANCELLED = "pending", "running", "finished", "failed", "cancelled"
_ENDED = (_FINISHED, _FAILED, _CANCELLED)
SUPERSEDED, CANCELLED, SHUT_DOWN = "superseded", "cancelled", "shut down"  # why a job was asked to stop


def _call(fn: Callable, *args) -> None:
    try:
        fn(*args)
    except Exception:  # a faulty callback must not kill the worker, nor keep the other callbacks from running
        log.exception("a job callback failed")


class JobHandle:
    """One submitted job, like a ``concurrent.futures.Future``: its ``request_id`` (increasing with each submit),
    its ``slot``, its state (``done()``, ``running()``, ``cancelled()``, ``superseded()``), its outcome
    (``result()``, ``exception()``) and callbacks for its end and its reports. Callbacks run on the thread that
    ends the job or reports (the worker's thread, or the one cancelling or superseding a job before it starts); one
    added after the end runs at once on the caller's thread. Reports made before ``on_progress`` / ``on_partial``
    was called are not replayed: pass those to ``Worker.submit`` to see every one.

    Latest wins, exactly: a handle whose slot has a newer request (its ``submit`` returned) never ends with a result
    or an error and delivers no more partial results; it ends cancelled, ``superseded()`` true. A job that ended
    before the newer ``submit`` keeps its outcome, and its done callbacks ran before that ``submit`` returned."""

    def __init__(self, worker: Worker, request_id: int, slot: str):
        self.request_id = request_id
        self.slot = slot
        self._worker = worker
        self._cond = threading.Condition()
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._stop: str | None = None  # why the job should stop (SUPERSEDED, CANCELLED, SHUT_DOWN), None: it runs on
        self._done: list[Callable[[JobHandle], None]] = []
        self._progress: list[ProgressCallback] = []
        self._partial: list[PartialCallback] = []

    def __repr__(self) -> str:
        return f"JobHandle(request_id={self.request_id}, slot={self.slot!r}, state={self._state!r})"

    # ----- state

    def done(self) -> bool:
        """Ended: finished with a result, failed with an exception, or cancelled."""
        return self._state in _ENDED

    def running(self) -> bool:
        return self._state == _RUNNING

    def cancelled(self) -> bool:
        """Ended without running to its result: cancelled, superseded by a newer request in its slot, or dropped
        when the worker shut down."""
        return self._state == _CANCELLED

    def superseded(self) -> bool:
        """Ended cancelled because a newer request arrived in its slot (latest wins)."""
        return self._state == _CANCELLED and self._stop == SUPERSEDED

    def stop_asked(self) -> bool:
        """The job was asked to stop (cancel, a newer request in its slot, shutdown): ``ctx.cancelled()``."""
        return self._stop is not None

    def cancel(self) -> bool:
        """Ask the job to stop: a pending one never runs and ends cancelled now, a running one ends cancelled at its
        next ``ctx.check()`` (or when it returns). False when it had already ended."""
        with self._worker._delivery, self._cond:  # in step with the end of a running job (``Worker._conclude``)
            if self._state in _ENDED:
                return False
            self._stop = self._stop or CANCELLED
        self._worker._withdraw(self)
        return True

    # ----- outcome

    def _wait(self, timeout: float | None) -> None:
        with self._cond:
            if not self._cond.wait_for(self.done, timeout):
                raise TimeoutError(f"request {self.request_id} in slot {self.slot!r} did not end in {timeout} s")

    def result(self, timeout: float | None = None) -> Any:
        """The job's result, waiting up to ``timeout`` seconds (None: as long as it takes). Raises the job's own
        exception (its type and traceback kept), ``Cancelled`` if it was cancelled or superseded, ``TimeoutError``
        if it has not ended in time."""
        self._wait(timeout)
        if self._state == _CANCELLED:
            raise Cancelled(f"request {self.request_id} in slot {self.slot!r} was {self._stop or CANCELLED}")
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception the job raised (the original object), None if it returned a result; raises ``Cancelled``
        and ``TimeoutError`` as ``result`` does."""
        self._wait(timeout)
        if self._state == _CANCELLED:
            raise Cancelled(f"request {self.request_id} in slot {self.slot!r} was {self._stop or CANCELLED}")
        return self._exception

    # ----- callbacks

    def add_done_callback(self, fn: Callable[[JobHandle], None]) -> None:
        """Call ``fn(handle)`` when the job ends (at once if it has)."""
        with self._cond:
            if self._state not in _ENDED:
                self._done.append(fn)
                return
        _call(fn, self)

    def on_progress(self, fn: ProgressCallback) -> None:
        """Call ``fn(fraction, message)`` on each progress report from now on."""
        with self._cond:
            self._progress.append(fn)

    def on_partial(self, fn: PartialCallback) -> None:
        """Call ``fn(result)`` on each intermediate result from now on."""
        with self._cond:
            self._partial.append(fn)

    # ----- the worker's side

    def _start(self) -> bool:
        """Mark it running; False (and ended cancelled) when it was asked to stop before it started."""
        with self._cond:
            if self._stop is None and self._state == _PENDING:
                self._state = _RUNNING
                return True
        self._end(_CANCELLED)
        return False

    def _end(self, state: str, *, result: Any = None, exception: BaseException | None = None) -> None:
        with self._cond:
            if self._state in _ENDED:
                return
            self._state, self._result, self._exception = state, result, exception
            callbacks, self._done, self._progress, self._partial = self._done, [], [], []
            self._cond.notify_all()
        for fn in callbacks:
            _call(fn, self)

    def _report(self, kind: str, *args) -> None:
        if kind == "progress":
            with self._cond:
                callbacks = list(self._progress)
            for fn in callbacks:
                _call(fn, *args)
            return
        with self._worker._delivery:  # in step with submit, as a result is
            if self._stop is not None:
                return  # the intermediate result of a job asked to stop is not shown; its progress still says how far
            with self._cond:
                callbacks = list(self._partial)
            for fn in callbacks:
                _call(fn, *args)


class _WorkerContext:
    """The ``JobContext`` of a job on the worker thread: the worker's caches, reports to its handle."""

    def __init__(self, worker: Worker, handle: JobHandle):
        self._handle = handle
        self.device: torch.device = worker.device
        self.precision: str = worker.precision
        self.models: ModelCache = worker.models
        self.memo: ModelCache = worker.memo
        self.photos: ModelCache = worker.photos

    def cancelled(self) -> bool:
        return self._handle.stop_asked()

    def check(self) -> None:
        if self._handle.stop_asked():
            raise Cancelled

    def progress(self, fraction: float, message: str = "") -> None:
        self._handle._report("progress", float(fraction), message)

    def partial(self, result: Any) -> None:
        self._handle._report("partial", result)


class InlineContext:
    """A ``JobContext`` for running a job on the calling thread (the command line): the same caches and protocol as
    the worker's, no mailbox, never cancelled; ``on_progress(fraction, message)`` and ``on_partial(result)``
    receive the job's reports. ``precision``: the generators' (checked: ``PrecisionError`` names the choices)."""

    def __init__(self, *, device: torch.device, precision: str = "auto", on_progress: ProgressCallback | None = None,
                 on_partial: PartialCallback | None = None):
        self.device = device
        self.precision = parse_precision(precision)
        self.models = ModelCache(capacity=4)
        self.memo = ModelCache(capacity=64)
        self.photos = ModelCache(capacity=2)
        self._on_progress = on_progress
        self._on_partial = on_partial

    def cancelled(self) -> bool:
        return False

    def check(self) -> None:
        pass

    def progress(self, fraction: float, message: str = "") -> None:
        if self._on_progress is not None:
            self._on_progress(float(fraction), message)

    def partial(self, result: Any) -> None:
        if self._on_partial is not None:
            self._on_partial(result)


class Worker:
    """One thread, single-slot mailboxes, latest wins; ``submit`` returns a ``JobHandle``. ``precision``: the
    generators' ('auto': float16 on CUDA, float32 elsewhere), checked here (``PrecisionError`` names the choices)."""

    def __init__(self, *, device: str = "auto", precision: str = "auto", cache_capacity: int = 4,
                 cpu_threads: int | None = None, name: str = "engine-worker"):
        self._device_preference = device
        self.precision = parse_precision(precision)
        self._cpu_threads = cpu_threads
        self.device: torch.device | None = None
        self.models = ModelCache(capacity=cache_capacity)
        self.memo = ModelCache(capacity=64)
        self.photos = ModelCache(capacity=2)  # decoded photos are large: keep the current one and one more
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        # Held while a job's end is decided and its done callbacks run, and while submit supersedes: a newer request
        # either comes first (the older job then ends cancelled) or waits until the older one's end is delivered.
        self._delivery = threading.RLock()
        self._pending: OrderedDict[str, tuple[JobHandle, Job]] = OrderedDict()  # slot -> newest unstarted job
        self._live: dict[str, JobHandle] = {}  # slot -> newest request not ended yet (pending or running)
        self._stop = False
        self._ready = threading.Event()
        self._start_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Worker:
        """Start the thread and wait until it has opened its device; a device that cannot be used raises
        ``DeviceError`` here (the thread has then ended), it never leaves the caller waiting."""
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        return self

    def submit(self, job: Job, *, slot: str = "render", on_progress: ProgressCallback | None = None,
               on_partial: PartialCallback | None = None,
               on_done: Callable[[JobHandle], None] | None = None) -> JobHandle:
        """Queue ``job`` in ``slot`` and return its handle; the older request of the slot is superseded (a pending
        one ends cancelled now, a running one is asked to stop). The callbacks given here are attached before the
        job can start, so none of its reports is missed."""
        with self._delivery, self._lock:
            if self._stop:
                raise RuntimeError("the engine worker has been shut down")
            handle = JobHandle(self, next(self._ids), slot)
            for fn, add in ((on_progress, handle.on_progress), (on_partial, handle.on_partial),
                            (on_done, handle.add_done_callback)):
                if fn is not None:
                    add(fn)
            older = self._live.get(slot)
            if older is not None:
                older._stop = older._stop or SUPERSEDED
            replaced = self._pending.pop(slot, None)
            self._pending[slot] = (handle, job)
            self._live[slot] = handle
            self._lock.notify_all()
        if replaced is not None:  # it never ran: its callbacks say cancelled, outside the locks
            replaced[0]._end(_CANCELLED)
        return handle

    def _withdraw(self, handle: JobHandle) -> None:
        """A cancelled handle: out of its mailbox and ended now if it had not started."""
        with self._lock:
            queued = self._pending.get(handle.slot)
            withdrawn = queued is not None and queued[0] is handle
            if withdrawn:
                del self._pending[handle.slot]
                self._forget(handle)
        if withdrawn:
            handle._end(_CANCELLED)

    def _forget(self, handle: JobHandle) -> None:
        if self._live.get(handle.slot) is handle:
            del self._live[handle.slot]

    def shutdown(self, *, timeout: float | None = 10.0) -> None:
        """Stop after the running job (asked to stop); pending jobs end cancelled. Joins the thread."""
        with self._delivery, self._lock:
            self._stop = True
            for handle in self._live.values():
                handle._stop = handle._stop or SHUT_DOWN
            dropped = [handle for handle, _ in self._pending.values()]
            self._pending.clear()
            for handle in dropped:
                self._forget(handle)
            self._lock.notify_all()
        for handle in dropped:
            handle._end(_CANCELLED)
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def dtype_name(self) -> str:
        """What 'auto' or the chosen precision means on the worker's device, e.g. 'float16' ('' before it started)."""
        return precision_name(precision_dtype(self.precision, self.device)) if self.device is not None else ""

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.device = resolve_device(self._device_preference)
            torch.zeros(1, device=self.device)  # a device that parses but cannot run fails here, not in a job
        except Exception as e:  # reported by start() on the caller's thread
            self._start_error = e
            self._ready.set()
            return
        if self.device.type == "cuda":
            full_float32()
        if self.device.type == "cpu" and self._cpu_threads is not None:
            torch.set_num_threads(self._cpu_threads)  # process-wide: the worker is the one that computes
        log.info("engine worker started on %s (generators in %s)", self.device, self.dtype_name)
        self._ready.set()
        while True:
            with self._lock:
                while not self._pending and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                _, (handle, job) = self._pending.popitem(last=False)
            try:
                if handle._start():
                    self._execute(handle, job)
            finally:
                with self._lock:
                    self._forget(handle)
                handle._end(_CANCELLED)  # only if it has not ended (e.g. a BaseException left the job)

    def _execute(self, handle: JobHandle, job: Job) -> None:
        try:
            result = job(_WorkerContext(self, handle))
        except Cancelled:
            handle._end(_CANCELLED)
            return
        except Exception as e:
            self._conclude(handle, _FAILED, exception=e)
        else:
            self._conclude(handle, _FINISHED, result=result)

    def _conclude(self, handle: JobHandle, state: str, *, result: Any = None,
                  exception: BaseException | None = None) -> None:
        """End a job that ran to its ``state``, or cancelled if it was asked to stop meanwhile: decided and delivered
        under the delivery lock, so a ``submit`` that supersedes it either came first or waits for its callbacks."""
        with self._delivery:
            if handle.stop_asked():  # told to stop: the cancel is its outcome, an error only goes to the log
                if exception is not None:
                    log.warning("job %d in slot %r failed after it was %s", handle.request_id, handle.slot,
                                handle._stop, exc_info=exception)
                handle._end(_CANCELLED)
            elif exception is not None:
                log.error("job %d in slot %r failed", handle.request_id, handle.slot, exc_info=exception)
                handle._end(_FAILED, exception=exception)
            else:
                handle._end(_FINISHED, result=result)
