"""Latest wins at the bridge under a burst (issue 22): a thousand submits from the GUI thread a fraction of a
millisecond apart, the interpreter switching threads every 10 µs, and no request emits ``finished`` once a newer
request of its slot has been submitted; the last one always does."""
from __future__ import annotations

import random
import time
from collections import Counter

from PySide6.QtWidgets import QApplication

from tests.fakes import busy_job

REQUESTS = 1000


def test_no_finished_signal_after_a_newer_submit(qtbot, bridge, short_switch_interval):
    app = QApplication.instance()
    rng = random.Random(22)
    newest = [0]
    stale, heard = [], Counter()

    def finished(request, value):
        heard["finished"] += 1
        if newest[0] != request.request_id:
            stale.append((request.request_id, newest[0]))

    requests = []
    for i in range(REQUESTS):
        request = bridge.submit(busy_job(rng.uniform(0.0, 0.0012), i), slot="render")
        newest[0] = request.request_id
        request.finished.connect(lambda value, r=request: finished(r, value))
        request.cancelled.connect(lambda: heard.__setitem__("cancelled", heard["cancelled"] + 1))
        requests.append(request)
        end = time.perf_counter() + rng.uniform(0.0002, 0.0009)
        while time.perf_counter() < end:
            app.processEvents()  # queued deliveries of older requests arrive between the submits
    last = requests[-1]
    qtbot.waitUntil(last.done, timeout=20000)
    qtbot.wait(50)
    assert stale == []
    assert heard["finished"] >= 1 and last.handle.result(timeout=1) == REQUESTS - 1
    assert all(r.done() for r in requests) and bridge.newest("render") is None
