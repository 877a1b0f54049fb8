"""Written files never hold absolute paths: exports keep file names, projects keep paths relative to themselves."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch

from engine.files.images import read_png_parameters
from engine.files.paths import file_name, is_absolute_path, names_only, relative_to, resolve_from
from engine.jobs.export import save_image
from engine.project import EditState, ModelRef, PhotoRef, read_project, save_project
from tests.conftest import REPO


def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def test_absolute_paths_are_recognised_on_both_systems_and_reduced_to_names():
    assert is_absolute_path("/home/ann/Photos/me.jpg") and is_absolute_path("C:\\Users\\ann\\me.jpg")
    assert not is_absolute_path("me.jpg") and not is_absolute_path("../models/g.pkl") and not is_absolute_path("")
    assert is_absolute_path("/home/ann/My Photos/me.jpg") and not is_absolute_path("/usr/bin/python main.py --x 1")
    assert file_name("C:\\Users\\ann\\me.jpg") == "me.jpg" and file_name("/a/b/g.pkl") == "g.pkl"
    d = {"model": {"path": "/home/ann/m.pkl", "sha256": "ab"}, "list": ["/x/y.png", "keep"], "n": 3, "t": None}
    assert names_only(d) == {"model": {"path": "m.pkl", "sha256": "ab"}, "list": ["y.png", "keep"], "n": 3,
                             "t": None}
    assert relative_to(d, "/home/ann/projects")["model"]["path"] == "../m.pkl"
    assert resolve_from("../m.pkl", "/home/ann/projects") == "/home/ann/m.pkl"
    assert resolve_from("/abs/m.pkl", "/elsewhere") == "/abs/m.pkl" and resolve_from(None, "/x") is None


def _state(folder) -> EditState:
    model = folder / "private-models" / "g.pt"
    photo = folder / "private-photos" / "me.jpg"
    for f in (model, photo):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    quad = ((0.0, 0.0), (0.0, 8.0), (8.0, 8.0), (8.0, 0.0))
    return EditState(model=ModelRef(path=str(model), sha256="0" * 64), seed=3,
                     photo=PhotoRef(str(photo), "1" * 64, quad, 8))


def test_an_exported_png_keeps_only_file_names(tmp_path):
    state = _state(tmp_path)
    out = save_image(tmp_path / "face.png", np.zeros((8, 8, 3), np.uint8), state=state,
                     extras={"i2i": {"model": {"path": str(tmp_path / "private-models" / "g.pt")}}})
    params = read_png_parameters(out)
    assert not any(str(tmp_path) in s for s in _strings(params))
    assert params["state"]["model"] == {"path": "g.pt", "sha256": "0" * 64}
    assert params["state"]["photo"]["path"] == "me.jpg" and params["state"]["photo"]["sha256"] == "1" * 64
    assert params["extras"]["i2i"]["model"]["path"] == "g.pt"


def test_a_project_stores_paths_relative_to_itself_and_reopens_them_after_a_move(tmp_path):
    state = _state(tmp_path / "work")
    project = tmp_path / "work" / "projects" / "p.fproj"
    project.parent.mkdir(parents=True)
    save_project(project, state, extras={"inversion": {"photo": state.photo.path}})
    text = project.read_text()
    assert str(tmp_path) not in text
    stored = json.loads(text)["state"]
    assert stored["model"]["path"] == "../private-models/g.pt" and stored["photo"]["path"] == "../private-photos/me.jpg"
    again, extras = read_project(project)
    assert again == state and extras == {"inversion": {"photo": "../private-photos/me.jpg"}}
    moved = tmp_path / "moved"
    (tmp_path / "work").rename(moved)
    after, _ = read_project(moved / "projects" / "p.fproj")
    assert after.model.path == str(moved / "private-models" / "g.pt") and after.photo.path.startswith(str(moved))


def test_generate_writes_no_absolute_path(reference_dir, tmp_path):
    fx = torch.load(reference_dir / "stylegan2" / "rosinality_s32.pt", weights_only=True)
    model = tmp_path / "secret-folder" / "ros32.pt"
    model.parent.mkdir()
    torch.save(fx["checkpoint"], model)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "main.py", "generate", "--model", str(model), "--seeds", "1", "--out",
                        str(out), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for f in out.iterdir():
        data = f.read_bytes()
        assert b"secret-folder" not in data and str(tmp_path).encode() not in data, f.name
    assert read_png_parameters(out / "seed0001.png")["model"] == "ros32.pt"


def test_the_recorded_command_line_leaves_out_the_programs_own_path(monkeypatch):
    from engine.files.paths import command_line

    monkeypatch.setattr(sys, "argv", ["/home/ann/editor/main.py", "train", "flow", "--out", "runs/a b"])
    assert command_line() == "main.py train flow --out 'runs/a b'"
    monkeypatch.setattr(sys, "argv", ["/home/ann/.venv/lib/python3.11/site-packages/pytest/__main__.py"])
    assert command_line() == "main.py"  # a bare program path once made a whole record look like a path
