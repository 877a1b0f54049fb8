"""``main.py`` starts the editor: --screenshot renders the window on the embedded default; no display is a clear
error instead of a Qt abort."""
from __future__ import annotations

import numpy as np
from PIL import Image

import main


def test_screenshot_renders_the_window_with_a_face(qtbot, tmp_path):
    out = tmp_path / "shot.png"
    assert main.main(["--screenshot", str(out), "--settings", str(tmp_path / "s.ini")]) == 0
    with Image.open(out) as im:
        assert im.size == (1280, 800)
        centre = im.convert("RGB").crop((500, 250, 780, 550))
        colours = np.asarray(centre).reshape(-1, 3)
        assert len(np.unique(colours, axis=0)) > 500  # a rendered face, not a flat placeholder
    assert not (tmp_path / "s.autosave.fproj").exists()


def test_no_display_is_a_clear_error(monkeypatch, capsys):
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert main.main([]) == 2
    assert "no display" in capsys.readouterr().err


def test_a_device_torch_cannot_open_exits_2_with_one_error_line_naming_the_choices(tmp_path):
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    for name in ("cdua", "cuda:3"):
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "main.py", "--device", name, "--settings", str(tmp_path / "s.ini")],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
        assert time.monotonic() - t0 < 30
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith("error: ") and repr(name) in lines[0] and "auto, cpu" in lines[0]


def test_a_stored_device_that_no_longer_exists_falls_back_to_auto(qtbot, tmp_path, capsys):
    from editor.controllers.settings import Settings

    ini = tmp_path / "s.ini"
    Settings(str(ini)).device = "cdua"
    out = tmp_path / "shot.png"
    assert main.main(["--screenshot", str(out), "--settings", str(ini)]) == 0
    err = capsys.readouterr().err
    assert "warning: The device 'cdua'" in err and "Using auto instead" in err and out.exists()
