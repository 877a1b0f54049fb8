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
