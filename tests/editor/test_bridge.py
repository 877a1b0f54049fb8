"""The engine bridge: each submit returns a request whose own signals arrive on the GUI thread; a superseded request
delivers nothing (the stale-frame guarantee, even when its job had ended first); errors arrive with their type,
traceback and details."""
from __future__ import annotations

import threading

from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from editor.dialogs.error_box import as_report, error_box
from engine import ErrorReport, ModelFormatError, PhotoError


class Heard:
    """Everything one request emitted, in order, with the thread each signal arrived on."""

    def __init__(self, request):
        self.events: list[tuple] = []
        self.gui = []
        for name in ("finished", "failed", "progress", "partial", "cancelled"):
            getattr(request, name).connect(lambda *args, name=name: self._heard(name, args))

    def _heard(self, name: str, args: tuple) -> None:
        self.gui.append(QThread.currentThread() is QApplication.instance().thread())
        self.events.append((name, *args))

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


def test_each_request_delivers_only_to_its_own_listeners_on_the_gui_thread(qtbot, bridge):
    def job(ctx):
        ctx.progress(0.5, "half")
        ctx.partial("draft")
        return "a"

    a = bridge.submit(job, slot="one")
    b = bridge.submit(lambda ctx: "b", slot="two")
    heard_a, heard_b = Heard(a), Heard(b)
    with qtbot.waitSignals([a.finished, b.finished], timeout=10000):
        pass
    assert heard_a.events == [("progress", 0.5, "half"), ("partial", "draft"), ("finished", "a")]
    assert heard_b.events == [("finished", "b")]
    assert all(heard_a.gui + heard_b.gui)  # delivered on the GUI thread, never from the worker's
    assert a.done() and b.done() and bridge.newest("one") is None


def test_a_superseded_request_delivers_nothing_even_when_its_job_had_ended(qtbot, bridge):
    old = bridge.submit(lambda ctx: "old frame", slot="render")
    heard_old = Heard(old)
    assert old.handle.result(timeout=10) == "old frame"  # the engine has finished it; its result waits to be shown
    new = bridge.submit(lambda ctx: "new frame", slot="render")
    heard_new = Heard(new)
    assert old.done() and bridge.newest("render") is new
    with qtbot.waitSignal(new.finished, timeout=10000):
        pass
    qtbot.wait(50)
    assert heard_old.events == [] and heard_new.events == [("finished", "new frame")]


def test_a_running_request_superseded_is_stopped_and_delivers_nothing(qtbot, bridge):
    started, gate = threading.Event(), threading.Event()

    def slow(ctx):
        started.set()
        gate.wait(10)
        ctx.progress(1.0, "late")
        ctx.check()
        return "stale"

    old = bridge.submit(slow, slot="render")
    heard_old = Heard(old)
    assert started.wait(10)
    new = bridge.submit(lambda ctx: "fresh", slot="render")
    gate.set()
    with qtbot.waitSignal(new.finished, timeout=10000) as blocker:
        pass
    qtbot.waitUntil(old.handle.done, timeout=10000)
    qtbot.wait(50)
    assert blocker.args == ["fresh"] and heard_old.events == []
    assert old.handle.superseded()  # the engine stopped it at its next step


def test_cancel_asks_the_job_to_stop_and_says_so(qtbot, bridge):
    started = threading.Event()

    def endless(ctx):
        started.set()
        while True:
            ctx.check()

    request = bridge.submit(endless, slot="invert")
    heard = Heard(request)
    assert started.wait(10)
    with qtbot.waitSignal(request.cancelled, timeout=10000):
        request.cancel()
    assert heard.kinds() == ["cancelled"] and request.handle.cancelled() and not request.handle.superseded()


def test_a_failed_job_arrives_with_its_type_traceback_and_details(qtbot, bridge):
    def unreadable(ctx):
        raise PhotoError("the photo me.jpg is truncated")

    request = bridge.submit(unreadable, slot="photo-scan")
    with qtbot.waitSignal(request.failed, timeout=10000) as blocker:
        pass
    error = blocker.args[0]
    assert type(error) is PhotoError and error is request.handle.exception()  # the job's own exception
    assert error.__traceback__ is not None
    report = as_report(error)
    assert report.message == "The photo me.jpg is truncated." and report.exception is error
    assert report.kind == "PhotoError" and "Traceback" in report.details and ", in unreadable" in report.details
    box = error_box(None, "Could not open the photo", report.prefixed("Could not open the photo"))
    assert box.text() == "Could not open the photo. The photo me.jpg is truncated."
    assert "PhotoError" not in box.text() and "unreadable" in box.detailedText()  # the details are one click away
    assert "log file" in box.informativeText()


def test_the_model_panel_reports_a_failure_with_the_engines_exception_kept(qtbot, tmp_path, bridge, tiny_state):
    import torch

    from editor.controllers.document import Document
    from editor.controllers.settings import Settings
    from editor.panels.model_panel import ModelPanel

    bad = tmp_path / "bad.pt"
    torch.save({"something": torch.zeros(2)}, bad)
    panel = ModelPanel(Document(tiny_state), bridge, Settings(tmp_path / "s.ini"))
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.failed, timeout=20000) as blocker:
        panel.open_path(bad)
    report = blocker.args[0]
    assert isinstance(report, ErrorReport) and isinstance(report.exception, ModelFormatError)
    assert report.kind == "ModelFormatError" and "Traceback" in report.details
    assert report.message.startswith("Could not load the model.") and "ModelFormatError" not in report.message


def test_a_widget_hears_only_its_own_requests(qtbot, tmp_path, bridge, tiny_state):
    from editor.controllers.document import Document
    from editor.controllers.settings import Settings
    from editor.panels.model_panel import ModelPanel
    from editor.panels.photo_panel import PhotoPanel

    doc = Document(tiny_state)
    model_panel = ModelPanel(doc, bridge, Settings(tmp_path / "s.ini"))
    photo_panel = PhotoPanel(doc, bridge)
    for panel in (model_panel, photo_panel):
        qtbot.addWidget(panel)
    failures = {"model": [], "photo": []}
    model_panel.failed.connect(failures["model"].append)
    photo_panel.failed.connect(failures["photo"].append)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo at all")
    model_panel.load_current()
    photo_panel.open_path(str(broken))  # both in flight on the same bridge, in different slots
    qtbot.waitUntil(lambda: doc.summary is not None and bool(failures["photo"]), timeout=20000)
    qtbot.wait(50)
    assert failures["model"] == [] and len(failures["photo"]) == 1  # the photo's failure reached its panel only
    assert isinstance(failures["photo"][0].exception, PhotoError)
    assert photo_panel.info.text() == "Could not open the photo." and "tiny.pt" in model_panel.info.text()
