"""The engine worker, driven without Qt and deterministically: latest wins, stale results never delivered,
progress / partial / cancel, errors reported while the worker keeps serving, model cache, shutdown."""
from __future__ import annotations

import threading

import pytest
import torch

from engine.devices import resolve_device
from engine.worker import Event, ModelCache, Worker


class Recorder:
    def __init__(self):
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def __call__(self, event: Event):
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout=10.0):
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.events), timeout), self.events

    def kinds(self, kind):
        return [e for e in self.events if e.kind == kind]


@pytest.fixture
def worker():
    rec = Recorder()
    w = Worker(rec, device="cpu").start()
    yield w, rec
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


def test_latest_wins_and_stale_results_are_dropped(worker):
    w, rec = worker
    ran, started, gate = [], threading.Event(), threading.Event()
    a = w.submit(blocking_job("A", ran, started, gate))
    assert started.wait(5)
    b = w.submit(blocking_job("B", ran))
    c = w.submit(blocking_job("C", ran))
    gate.set()
    rec.wait_for(lambda ev: any(e.request_id == c and e.kind == "result" for e in ev))
    assert ran == ["A", "C"]  # B was replaced before it started
    results = rec.kinds("result")
    assert [(e.request_id, e.payload) for e in results] == [(c, "C")]  # A finished stale: not delivered
    assert any(e.request_id == a and e.kind == "cancelled" for e in rec.events)
    assert b not in {e.request_id for e in rec.events}
    assert w.newest() == c


def test_slots_do_not_replace_each_other(worker):
    w, rec = worker
    started, gate, ran = threading.Event(), threading.Event(), []
    w.submit(blocking_job("block", ran, started, gate), slot="render")
    assert started.wait(5)
    e1 = w.submit(blocking_job("export", ran), slot="export")
    r1 = w.submit(blocking_job("render", ran), slot="render")
    gate.set()
    rec.wait_for(lambda ev: {e.request_id for e in ev if e.kind == "result"} >= {e1, r1})


def test_progress_partial_and_cancel(worker):
    w, rec = worker
    step = threading.Semaphore(0)

    def long_job(ctx):
        for i in range(100):
            step.acquire()
            ctx.check()
            ctx.progress(i / 100, f"step {i}")
            ctx.partial(i)
        return "done"

    rid = w.submit(long_job, slot="invert")
    for _ in range(3):
        step.release()
    rec.wait_for(lambda ev: len([e for e in ev if e.kind == "partial"]) == 3)
    w.cancel(rid)
    step.release()
    rec.wait_for(lambda ev: any(e.kind == "cancelled" and e.request_id == rid for e in ev))
    assert [e.payload for e in rec.kinds("partial")] == [0, 1, 2]
    assert rec.kinds("progress")[-1].payload == (0.02, "step 2")
    assert not rec.kinds("result")


def test_errors_are_reported_and_worker_keeps_serving(worker):
    w, rec = worker

    def bad(ctx):
        raise ValueError("the latent has the wrong shape")

    r1 = w.submit(bad)
    rec.wait_for(lambda ev: any(e.kind == "error" for e in ev))
    r2 = w.submit(lambda ctx: 42)
    rec.wait_for(lambda ev: any(e.kind == "result" for e in ev))
    err = rec.kinds("error")[0]
    assert err.request_id == r1 and str(err.payload) == "The latent has the wrong shape."
    assert "ValueError" not in err.payload.message and err.payload.kind == "ValueError"
    assert "Traceback" in err.payload.details and "def bad" not in err.payload.message
    assert rec.kinds("result")[0].request_id == r2 and rec.kinds("result")[0].payload == 42
    assert w.alive


def test_a_device_that_cannot_be_opened_is_refused_at_start_not_hung():
    import time

    from engine.errors import DeviceError

    for name in ("cdua", "cuda:7" if not torch.cuda.is_available() else "cuda:99", "xla"):
        w = Worker(Recorder(), device=name)
        t0 = time.monotonic()
        with pytest.raises(DeviceError) as e:
            w.start()
        assert time.monotonic() - t0 < 5 and not w.alive
        message = str(e.value)
        assert repr(name) in message and "auto, cpu" in message


def test_cancel_pending_request(worker):
    w, rec = worker
    started, gate, ran = threading.Event(), threading.Event(), []
    w.submit(blocking_job("A", ran, started, gate), slot="s")
    assert started.wait(5)
    b = w.submit(blocking_job("B", ran), slot="t")
    w.cancel(b)
    gate.set()
    rec.wait_for(lambda ev: any(e.kind == "result" for e in ev))
    assert ran == ["A"] and any(e.kind == "cancelled" and e.request_id == b for e in rec.events)


def test_device_and_model_cache(worker):
    w, rec = worker
    assert w.device == torch.device("cpu") and resolve_device("auto").type in ("cpu", "cuda", "mps")
    loads = []

    def job(ctx):
        return ctx.models.get("m", lambda: loads.append(1) or torch.nn.Linear(2, 2)), ctx.device

    w.submit(job)
    rec.wait_for(lambda ev: len(rec.kinds("result")) == 1)
    w.submit(job)
    rec.wait_for(lambda ev: len(rec.kinds("result")) == 2)
    (m1, dev), (m2, _) = [e.payload for e in rec.kinds("result")]
    assert m1 is m2 and loads == [1] and dev == torch.device("cpu")
    cache = ModelCache(capacity=2)
    for k in "abc":
        cache.get(k, lambda k=k: k)
    assert len(cache) == 2 and cache.get("a", lambda: "new") == "new"  # 'a' was evicted first


def test_shutdown_stops_running_job_and_refuses_new_work():
    rec = Recorder()
    w = Worker(rec, device="cpu").start()
    started = threading.Event()

    def job(ctx):
        started.set()
        while True:
            ctx.check()

    w.submit(job)
    assert started.wait(5)
    w.shutdown(timeout=5)
    assert not w.alive
    with pytest.raises(RuntimeError, match="shut down"):
        w.submit(lambda ctx: 1)


def test_the_worker_sets_the_cpu_thread_count_it_was_given():
    before = torch.get_num_threads()
    try:
        seen = Recorder()
        w = Worker(seen, device="cpu", cpu_threads=1).start()
        w.submit(lambda ctx: torch.get_num_threads())
        seen.wait_for(lambda ev: any(e.kind == "result" for e in ev))
        assert seen.kinds("result")[0].payload == 1
        w.shutdown()
    finally:
        torch.set_num_threads(before)
