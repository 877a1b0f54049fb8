"""Broken and hostile project files are refused cleanly (issue 22): a ``ProjectError`` naming the field, in bounded
time and memory, never a hang on a pipe or a device; the command line says so in one ``error:`` line (exit 2) and
never waits on a dialog; killed saves leave no temporary file behind once the next save runs, and a live save's
temporary file is never touched. Every hostile file is made here, small (the bombs are a few kB compressed)."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib

import numpy as np
import pytest

import main
from engine.errors import PhotoError
from engine.files.storage import STALE_TEMP_S, atomic_write, remove_stale_temps
from engine.photos.read import MAX_FILE_BYTES, load_photo
from engine.project import (
    MAX_EDITS,
    EditState,
    ModelRef,
    NoiseMaps,
    ProjectError,
    Source,
    project_dict,
    read_project,
    save_project,
    verify_files,
)
from tests.conftest import REPO

SECONDS = 10.0  # no refusal may take longer
PEAK_BYTES = 200 << 20  # nor allocate more (the bound is 1 GB; a refusal needs far less)


def _good() -> dict:
    maps = NoiseMaps.from_arrays([np.zeros((4, 4), np.float32), np.ones((8, 8), np.float32)])
    latent = Source.from_latent(np.ones((2, 8), np.float32), name="ref")
    return json.loads(json.dumps(project_dict(EditState(seed=5, noise_maps=maps, sources=(latent,), rows=(0, 1)))))


def _with(path: str, value) -> dict:
    """The good project with the value at ``path`` ('state.model.path') replaced."""
    d = _good()
    *parents, last = path.split(".")
    node = d
    for key in parents:
        node = node[key]
    node[last] = value
    return d


def _bomb(size: int) -> str:
    """base64 of ``size`` zero bytes, zlib-compressed (about size / 1000 bytes)."""
    out = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    data = b"".join(out.compress(chunk) for _ in range(size >> 20)) + out.flush()
    return base64.b64encode(data).decode("ascii")


def _deep(depth: int) -> str:
    """The good project with ``depth`` nested lists in its extras (the whole nests ``depth + 2`` deep)."""
    good = json.dumps(_good())
    return good[:-1] + ', "extras": {"x": ' + "[" * depth + "]" * depth + "}}"


CASES = {  # name -> (file text, words the message must hold: the field's name where there is one)
    "invalid JSON": ("{not json", "not a readable project file"),
    "truncated": (json.dumps(_good())[:80], "not a readable project file"),
    "negative seed": (json.dumps(_with("state.seed", -1)), "seed -1 is out of range"),
    "NaN psi": (json.dumps(_good()).replace('"psi": 0.7', '"psi": NaN'), "psi nan is outside"),
    "int model path": (json.dumps(_with("state.model.path", 5)), "state.model.path must be a text string"),
    "5000-digit seed": (json.dumps(_good()).replace('"seed": 5', '"seed": ' + "9" * 5000),
                        "state.seed is unusable: a number of 5000 digits"),
    "5000-digit number in extras": (json.dumps(_with("extras", {"n": 0})).replace('"n": 0', '"n": ' + "7" * 5000),
                                    "extras.n is unusable: a number of 5000 digits"),
    "extras a list": (json.dumps(_with("extras", [1, 2])), "extras must be a dictionary"),
    "extras a string": (json.dumps(_with("extras", "abc")), "extras must be a dictionary"),
    "extras empty list": (json.dumps(_with("extras", [])), "extras must be a dictionary"),
    "nested 100 000 deep": (_deep(100_000), "nests 100002 deep"),
    "nested 40 deep": (_deep(40), "nests 42 deep"),
    "zlib bomb in the noise maps": (json.dumps(_with("state.noise_maps", {"zlib": _bomb(64 << 20),
                                                                          "shapes": [[4, 4], [8, 8]]})),
                                    "noise_maps is unusable: the stored noise maps hold more data"),
    "noise shapes of 16 GiB": (json.dumps(_with("state.noise_maps", {"zlib": _bomb(1 << 20),
                                                                     "shapes": [[65536, 65536]]})),
                               "noise_maps is unusable: the noise map shapes ask for 16384 MB"),
    "noise shape overflowing int64": (json.dumps(_with("state.noise_maps", {"zlib": "eJwDAAAAAAE=",
                                                                            "shapes": [[2**32, 2**32]]})),
                                      "noise_maps is unusable"),
    "negative noise shape": (json.dumps(_with("state.noise_maps", {"zlib": _bomb(0), "shapes": [[-4, -4]]})),
                             "are not all sizes >= 1"),
    "latent shape overflowing int64": (json.dumps(_with("state.sources", [{"latent": "", "shape": [2**32, 2**32]}])),
                                       "sources[0] is unusable: latent data does not match"),
    "5000 attribute edits": (json.dumps(_with("state.edits", [{"kind": "attribute", "key": "age", "value": i % 7}
                                                              for i in range(5000)])),
                             f"5000 attribute edits are more than the {MAX_EDITS}"),
    "not UTF-8": ('{"format": "face-editor/project", "x": "\udcff"}', "is not UTF-8 text"),
    "a list, not a project": ("[1, 2, 3]", "holds no dictionary"),
    "state a string": (json.dumps(_with("state", "seed 5")), "state must be a dictionary"),
    "model a number": (json.dumps(_with("state.model", 7)), "state.model must be a dictionary"),
}


def _write(path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))


def _refused(path, words: str) -> float:
    """Read ``path``: a ProjectError holding ``words``; returns the seconds it took (peak memory checked)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ProjectError) as info:
            read_project(path)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert type(info.value) is ProjectError and words in str(info.value), str(info.value)
    assert "\n" not in str(info.value) and "Error" not in str(info.value)  # a sentence, no class names
    assert seconds < SECONDS and peak < PEAK_BYTES, (seconds, peak)
    return seconds


@pytest.mark.parametrize("name", list(CASES))
def test_a_malformed_project_is_a_project_error_naming_the_field(tmp_path, name):
    text, words = CASES[name]
    path = tmp_path / "bad.fproj"
    _write(path, text)
    _refused(path, words)


def test_the_good_project_these_cases_break_still_opens(tmp_path):
    path = tmp_path / "good.fproj"
    path.write_text(json.dumps(_good()))
    state, extras = read_project(path)
    assert state.seed == 5 and extras == {} and [m.shape for m in state.noise_maps.arrays()] == [(4, 4), (8, 8)]
    path.write_text(_deep(25))  # nested, but within the bound: extras are free-form data
    nested = []
    for _ in range(24):
        nested = [nested]
    assert read_project(path)[1]["x"] == nested
    full = _with("state.edits", [{"kind": "attribute", "key": ("age", "yaw")[i % 2], "value": 1} for i in
                                 range(MAX_EDITS)])
    path.write_text(json.dumps(full))
    assert len(read_project(path)[0].edits) == MAX_EDITS


def test_an_oversized_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.fproj"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB of zeros that take no disk
    _refused(path, "more than any project")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_device_is_refused_without_reading_it():
    _refused("/dev/zero", "is not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.fproj"
    os.mkfifo(fifo)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_refused_quietly(fifo)), daemon=True)
    reader.start()
    reader.join(SECONDS)
    if reader.is_alive():  # unblock the reader so the test process can end, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO as a project blocked")
    assert outcome and "is not a regular file" in outcome[0]


def _refused_quietly(path) -> str:
    try:
        read_project(path)
    except ProjectError as e:
        return str(e)
    return "accepted"


def test_a_folder_and_a_missing_file_are_project_errors(tmp_path):
    _refused(tmp_path, "is a folder")
    _refused(tmp_path / "missing.fproj", "no project file at")


def test_model_references_refuse_what_is_not_a_file_name():
    for path in (5, "", b"g.pt", ["g.pt"]):
        with pytest.raises(ProjectError, match="a model path must be a file name"):
            ModelRef(path=path)
    with pytest.raises(ProjectError, match="sha256"):
        ModelRef(path="g.pt", sha256=1234)


def test_verify_files_names_a_missing_or_changed_model(tmp_path):
    model = tmp_path / "g.pt"
    model.write_bytes(b"weights")
    with pytest.raises(ProjectError, match=r"the model file .*missing\.pt does not exist"):
        verify_files(EditState(model=ModelRef(str(tmp_path / "missing.pt"))))
    with pytest.raises(ProjectError, match=r"g\.pt is not the model file this project was made with"):
        verify_files(EditState(model=ModelRef(str(model), sha256="0" * 64)))
    verify_files(EditState(model=ModelRef(str(model))))  # present, not pinned: fine
    verify_files(EditState())  # the embedded default


def _screenshot_cases(tmp_path) -> dict:
    model = tmp_path / "g.pt"
    model.write_bytes(b"weights")
    projects = {name: CASES[name][0] for name in ("invalid JSON", "truncated", "negative seed", "NaN psi",
                                                  "int model path", "5000-digit seed", "nested 100 000 deep")}
    projects["sha256 mismatch"] = json.dumps(_with("state.model", {"path": str(model), "sha256": "0" * 64}))
    projects["missing model"] = json.dumps(_with("state.model", {"path": str(tmp_path / "gone.pt")}))
    return projects


def test_screenshot_of_a_bad_project_exits_2_with_one_error_line_before_any_window(tmp_path, capsys):
    for name, text in _screenshot_cases(tmp_path).items():
        path = tmp_path / "bad.fproj"
        _write(path, text)
        t0 = time.perf_counter()
        status = main.main(["--project", str(path), "--screenshot", str(tmp_path / "shot.png"),
                            "--settings", str(tmp_path / "s.ini")])
        err = capsys.readouterr().err
        assert status == 2 and time.perf_counter() - t0 < SECONDS, name
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, (name, err)
        assert not (tmp_path / "shot.png").exists()


def test_the_command_line_refuses_a_bad_project_in_one_line_without_a_traceback(tmp_path):
    """One run as a user starts it (the in-process test above covers the cases): nothing waits on a dialog."""
    path = tmp_path / "bad.fproj"
    path.write_text("{not json")
    r = subprocess.run([sys.executable, "main.py", "--project", str(path), "--screenshot", str(tmp_path / "s.png"),
                        "--settings", str(tmp_path / "s.ini")], cwd=REPO, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: bad.fproj is not a readable"), \
        r.stderr


@pytest.mark.parametrize("argv, words", [
    (["invert", "p.png", "--out", "o.fproj", "--box=-1e308,-1e308,1e308,1e308"], "a box of finite size"),
    (["invert", "p.png", "--out", "o.fproj", "--box", "-1e308,-1e308,1e308,1e308"], "a box of finite size"),
    (["invert", "p.png", "--out", "o.fproj", "--box", "1,2,3"], "--box wants x0,y0,x1,y1"),
    (["invert", "p.png", "--out", "o.fproj", "--box", "nan,0,1,1"], "a box of finite size"),
    (["invert", "p.png", "--out", "o.fproj", "--box", "10,10,5,20"], "x1 > x0"),
    (["invert", "p.png", "--out", "o.fproj", "--face", "x"], "invalid int value"),
    (["edit", "--seed", "1e400", "--out", "o.png"], "invalid int value"),
    (["generate", "--seeds", "1", "--trunc", "abc", "--out", "o"], "invalid float value"),
    (["render", "p.fproj", "--size", "-"], "invalid int value"),
])
def test_bad_argument_values_are_one_error_line_and_exit_2(capsys, argv, words):
    with pytest.raises(SystemExit) as info:
        main.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and words in err, err


def test_negative_values_are_values_not_options():
    args = main.build_parser().parse_args(["invert", "p.png", "--out", "o.fproj", "--box", "-10,-10.5,50,50"])
    assert args.box == (-10.0, -10.5, 50.0, 50.0)
    assert main.build_parser().parse_args(["generate", "--seeds", "1", "--trunc", "-1e-1", "--out", "o"]).trunc == -0.1


# -- saves ----------------------------------------------------------------------------------------------------------
_WRITER = """
import sys, time
sys.path.insert(0, {repo!r})
from engine.files.storage import atomic_write
def write(f):
    f.write(b"x" * 65536)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
atomic_write({path!r}, write)
"""


def _temps(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_killed_save_leaves_its_temporary_file_only_until_the_next_save(tmp_path):
    target = tmp_path / "face.fproj"
    save_project(target, EditState(seed=1))
    writer = subprocess.Popen([sys.executable, "-c", _WRITER.format(repo=str(REPO), path=str(target))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        (live,) = _temps(tmp_path)
        assert f".face.fproj.{writer.pid}." in live
        save_project(target, EditState(seed=2))  # another save while that one writes: its file stays
        assert _temps(tmp_path) == [live] and read_project(target)[0].seed == 2
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(SECONDS)
        writer.stdout.close()
    assert _temps(tmp_path) == [live]  # killed mid-save: the temporary file is left behind...
    save_project(target, EditState(seed=3))
    assert _temps(tmp_path) == [] and read_project(target)[0].seed == 3  # ...and the next save removes it


def test_stale_temporary_files_are_told_by_their_writer_or_their_age(tmp_path):
    target = tmp_path / "face.fproj"
    ours = tmp_path / f".face.fproj.{os.getpid()}.abcd1234.tmp"  # this process's pid, but no save of ours writes it
    unnamed_old = tmp_path / ".face.fproj.k2j4h5g6.tmp"  # the older name, without a pid
    unnamed_new = tmp_path / ".face.fproj.q9w8e7r6.tmp"
    other = tmp_path / ".other.fproj.1.abcd1234.tmp"  # another file's
    for p in (ours, unnamed_old, unnamed_new, other):
        p.write_bytes(b"partial")
    old = time.time() - STALE_TEMP_S - 60
    os.utime(unnamed_old, (old, old))
    os.utime(other, (old, old))
    assert sorted(p.name for p in remove_stale_temps(target)) == sorted([ours.name, unnamed_old.name])
    assert unnamed_new.exists() and other.exists()
    seen = []
    atomic_write(target, lambda f: seen.extend(p.name for p in remove_stale_temps(target)) or f.write(b"ok"))
    assert seen == [] and target.read_bytes() == b"ok"  # a save never removes its own file while it writes


# -- photos ---------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="no pipes or devices here")
def test_a_pipe_a_device_or_a_huge_file_as_a_photo_is_refused_unread(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse
    for path, words in ((fifo, "is not a regular file"), ("/dev/zero", "is not a regular file"),
                        (huge, "more than any photo")):
        outcome = []
        reader = threading.Thread(target=lambda p=path: outcome.append(_photo_refusal(p)), daemon=True)
        reader.start()
        reader.join(SECONDS)
        if reader.is_alive():
            with open(fifo, "wb"):
                pass
            pytest.fail(f"reading {path} as a photo blocked")
        assert outcome and words in outcome[0], outcome


def _photo_refusal(path) -> str:
    try:
        load_photo(path)
    except PhotoError as e:
        return str(e)
    return "accepted"
