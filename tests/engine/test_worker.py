"""The engine worker, driven without Qt and deterministically: each submit returns a handle (result, exception with
its type, cancel, callbacks), latest wins in a slot (superseded handles end cancelled, a stale result is never
delivered), progress / partial reports, errors kept while the worker keeps serving, model cache, shutdown."""
from __future__ import annotations

import threading

import pytest
import torch

from engine.devices import resolve_device
from engine.errors import ErrorReport, PhotoError
from engine.worker import Cancelled, InlineContext, JobContext, JobHandle, ModelCache, Worker


@pytest.fixture
def worker():
    w = Worker(device="cpu").start()
    yield w
    w.shutdown()


def blocking_job(name, ran, started=None, gate=None):
    def job(ctx):
        ran.append(name)
        if started is not None:
            started.set()
        if gate is not None:
            assert gate.wait(10)
        return name
    return job


def test_latest_wins_and_superseded_handles_end_cancelled(worker):
    ran, started, gate = [], threading.Event(), threading.Event()
    a = worker.submit(blocking_job("A", ran, started, gate))
    assert started.wait(5) and a.running() and not a.done()
    b = worker.submit(blocking_job("B", ran))
    c = worker.submit(blocking_job("C", ran))
    assert isinstance(b, JobHandle) and a.request_id < b.request_id < c.request_id
    assert b.done() and b.cancelled() and b.superseded()  # replaced before it started: ended at once, never ran
    assert not a.done()  # running: it is only asked to stop
    gate.set()
    assert c.result(timeout=10) == "C"
    assert ran == ["A", "C"]
    assert a.done() and a.cancelled() and a.superseded()  # A returned after newer requests: its result is dropped
    with pytest.raises(Cancelled, match="superseded"):
        a.result()
    with pytest.raises(Cancelled):
        b.exception()
    assert c.done() and not c.cancelled() and c.exception() is None and c.slot == "render"


def test_slots_do_not_replace_each_other(worker):
    started, gate, ran = threading.Event(), threading.Event(), []
    block = worker.submit(blocking_job("block", ran, started, gate), slot="render")
    assert started.wait(5)
    e1 = worker.submit(blocking_job("export", ran), slot="export")
    r1 = worker.submit(blocking_job("render", ran), slot="render")
    assert not e1.done() and block.running()
    gate.set()
    assert (e1.result(timeout=10), r1.result(timeout=10)) == ("export", "render")
    assert block.superseded() and not e1.cancelled()


def test_progress_partial_and_cancel(worker):
    step = threading.Semaphore(0)
    progress, partials, seen = [], [], threading.Semaphore(0)

    def long_job(ctx):
        for i in range(100):
            step.acquire()
            ctx.check()
            ctx.progress(i / 100, f"step {i}")
            ctx.partial(i)
        return "done"

    def on_partial(value):
        partials.append(value)
        seen.release()

    handle = worker.submit(long_job, slot="invert", on_progress=lambda f, m: progress.append((f, m)),
                           on_partial=on_partial)
    for _ in range(3):
        step.release()
        assert seen.acquire(timeout=10)
    assert handle.cancel() is True
    step.release()
    with pytest.raises(Cancelled):
        handle.result(timeout=10)
    assert handle.cancelled() and not handle.superseded()
    assert partials == [0, 1, 2] and progress[-1] == (0.02, "step 2") and len(progress) == 3
    assert handle.cancel() is False  # it has ended


def test_callbacks_run_on_the_worker_thread_and_at_once_when_added_after_the_end(worker):
    gate, threads = threading.Event(), []
    handle = worker.submit(lambda ctx: gate.wait(10) and 42)
    handle.add_done_callback(lambda h: threads.append((threading.current_thread().name, h.result())))
    handle.on_progress(lambda *a: threads.append("never: the job reports nothing"))
    gate.set()
    assert handle.result(timeout=10) == 42
    late = []
    handle.add_done_callback(lambda h: late.append((threading.current_thread().name, h is handle)))
    assert late == [(threading.current_thread().name, True)]  # at once, on the caller's thread
    assert threads == [("engine-worker", 42)]


def test_result_waits_for_its_timeout(worker):
    gate = threading.Event()
    handle = worker.submit(lambda ctx: gate.wait(10) and "late")
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    gate.set()
    assert handle.result(timeout=10) == "late"


def test_a_failed_job_keeps_its_exception_and_the_worker_keeps_serving(worker):
    raised = []

    def bad(ctx):
        e = PhotoError("the photo is truncated")
        raised.append(e)
        raise e

    handle = worker.submit(bad)
    with pytest.raises(PhotoError) as info:
        handle.result(timeout=10)
    assert info.value is raised[0] and handle.exception() is raised[0]  # the original object, its type kept
    assert not handle.cancelled() and handle.done()
    frames = []
    tb = handle.exception().__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "bad" in frames  # the traceback reaches into the job
    report = ErrorReport.from_exception(handle.exception())
    assert report.message == "The photo is truncated." and report.kind == "PhotoError"
    assert "Traceback" in report.details and ", in bad" in report.details and report.exception is raised[0]
    assert worker.submit(lambda ctx: 42).result(timeout=10) == 42
    assert worker.alive


def test_a_job_that_fails_after_it_was_told_to_stop_ends_cancelled(worker):
    started, gate = threading.Event(), threading.Event()

    def job(ctx):
        started.set()
        gate.wait(10)
        raise RuntimeError("it broke while stopping")

    handle = worker.submit(job)
    assert started.wait(5)
    handle.cancel()
    gate.set()
    with pytest.raises(Cancelled):
        handle.result(timeout=10)


def test_a_faulty_callback_does_not_stop_the_worker_or_the_other_callbacks(worker):
    seen = []

    def broken(h):
        raise ValueError("a listener's bug")

    handle = worker.submit(lambda ctx: 1, on_done=broken)
    handle.add_done_callback(lambda h: seen.append(h.result()))
    assert handle.result(timeout=10) == 1
    assert worker.submit(lambda ctx: 2).result(timeout=10) == 2 and worker.alive


def test_a_device_that_cannot_be_opened_is_refused_at_start_not_hung():
    import time

    from engine.errors import DeviceError

    for name in ("cdua", "cuda:7" if not torch.cuda.is_available() else "cuda:99", "xla"):
        w = Worker(device=name)
        t0 = time.monotonic()
        with pytest.raises(DeviceError) as e:
            w.start()
        assert time.monotonic() - t0 < 5 and not w.alive
        message = str(e.value)
        assert repr(name) in message and "auto, cpu" in message


def test_cancel_pending_request(worker):
    started, gate, ran = threading.Event(), threading.Event(), []
    worker.submit(blocking_job("A", ran, started, gate), slot="s")
    assert started.wait(5)
    b = worker.submit(blocking_job("B", ran), slot="t")
    ended = []
    b.add_done_callback(ended.append)
    assert b.cancel() is True
    assert ended == [b] and b.cancelled() and not b.superseded()  # ended at once, before A lets the worker go
    gate.set()
    assert worker.submit(lambda ctx: "next", slot="t").result(timeout=10) == "next"
    assert ran == ["A"]


def test_device_and_model_cache(worker):
    assert worker.device == torch.device("cpu") and resolve_device("auto").type in ("cpu", "cuda", "mps")
    loads = []

    def job(ctx):
        assert isinstance(ctx, JobContext)
        return ctx.models.get("m", lambda: loads.append(1) or torch.nn.Linear(2, 2)), ctx.device

    m1, dev = worker.submit(job).result(timeout=10)
    m2, _ = worker.submit(job).result(timeout=10)
    assert m1 is m2 and loads == [1] and dev == torch.device("cpu")
    cache = ModelCache(capacity=2)
    for k in "abc":
        cache.get(k, lambda k=k: k)
    assert len(cache) == 2 and cache.get("a", lambda: "new") == "new"  # 'a' was evicted first


def test_shutdown_stops_running_job_ends_pending_ones_and_refuses_new_work():
    w = Worker(device="cpu").start()
    started = threading.Event()

    def job(ctx):
        started.set()
        while True:
            ctx.check()

    running = w.submit(job)
    assert started.wait(5)
    pending = w.submit(lambda ctx: 1, slot="other")
    w.shutdown(timeout=5)
    assert not w.alive
    assert running.cancelled() and pending.cancelled()
    with pytest.raises(RuntimeError, match="shut down"):
        w.submit(lambda ctx: 1)


def test_the_worker_sets_the_cpu_thread_count_it_was_given():
    before = torch.get_num_threads()
    try:
        w = Worker(device="cpu", cpu_threads=1).start()
        assert w.submit(lambda ctx: torch.get_num_threads()).result(timeout=10) == 1
        w.shutdown()
    finally:
        torch.set_num_threads(before)


def test_the_inline_context_is_a_job_context_that_reports_to_its_callbacks():
    seen = []
    ctx = InlineContext(device=torch.device("cpu"), on_progress=lambda f, m: seen.append((f, m)),
                        on_partial=lambda r: seen.append(r))
    assert isinstance(ctx, JobContext) and not ctx.cancelled()
    ctx.check()
    ctx.progress(1, "done")
    ctx.partial("half")
    assert seen == [(1.0, "done"), "half"]
    InlineContext(device=torch.device("cpu")).progress(0.5)  # no callbacks: reports go nowhere


def test_a_job_asked_to_stop_still_reports_its_progress_but_no_partial_result(worker):
    started, gate, progress, partials = threading.Event(), threading.Event(), [], []

    def job(ctx):
        started.set()
        gate.wait(10)
        ctx.progress(0.7, "wrote 7 of 10")  # what it did before it noticed: still worth telling
        ctx.partial("a preview of a run being stopped")
        ctx.check()

    handle = worker.submit(job, on_progress=lambda f, m: progress.append(m), on_partial=partials.append)
    assert started.wait(5)
    handle.cancel()
    gate.set()
    with pytest.raises(Cancelled):
        handle.result(timeout=10)
    assert progress == ["wrote 7 of 10"] and partials == []
