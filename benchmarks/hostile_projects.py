"""Broken and hostile inputs, tried as a hostile or unlucky user would (issue 22): malformed project files, bad photos
and argument values, and saves killed midway. Prints (and with ``--out`` writes) JSON counts per family.

Families and outcomes:

* ``projects``: every case is written to a file and read with ``read_project``. ``refused`` is a ``ProjectError``
  with a one-line message within ``--limit-s`` (and the peak traced allocation under 1 GB); ``unchanged`` is a file
  accepted as the very state it was made from (a harmless change: an unknown key, white space); ``changed`` a file
  accepted as another state that is still usable (its arrays decode, it saves and reads back equal: a bit flip
  inside a number, say); ``failed`` anything else (another exception, a hang, an unusable state).
  Cases: syntax damage (invalid JSON, truncations, bit flips, bytes that are not UTF-8, not an object), every field
  of a full state set to values of the wrong kind or range, structure bombs (nesting 100 000 deep, a zlib bomb in
  the noise maps, shapes of 16 GiB or beyond int64, 5000 attribute edits, 5000-digit numbers), extras of the wrong
  kind, and what is no project file at all (a folder, a FIFO, /dev/zero, a sparse 1 GiB file, a missing path).
* ``command_line``: ``main.py --project BAD --screenshot X`` as a subprocess for the issue's cases: ``refused`` is
  exit status 2 with exactly one ``error:`` line on stderr, no traceback, within ``--limit-s``.
* ``photos``: photo files (not images, empty, truncated, damaged, 1 px, a decompression bomb header, a pipe, a device,
  a folder, valid ones of odd modes) through ``load_photo``: ``refused`` a ``PhotoError`` with one line, ``unchanged``
  a photo that loads.
* ``arguments``: bad values for the commands' options through ``main.py``'s parser: ``refused`` is exit status 2 with
  one ``error:`` line.
* ``saves_killed_any_time`` / ``saves_killed_mid_write``: ``--kills`` subprocesses (half each) saving a project of
  about 13 MB (an inversion's 1024 px noise maps) in a loop, killed (SIGKILL) at a random moment of the loop, or
  while one writes its temporary file: ``intact`` when the project file then reads as a project,
  ``temps_after_kill`` the temporary files left, ``temps_after_next_save`` those left once the next save ran.

    python benchmarks/hostile_projects.py [--kills 20] [--limit-s 10] [--seed 0] [--out counts.json] [--no-cli]

Measured (2 shared CPU cores, --kills 20): projects 100 tried, 93 refused, 3 unchanged, 4 changed but usable, 0
failed (slowest 0.56 s, peak 64 MB); command line 10/10 refused (slowest 5.9 s); photos 25: 17 refused, 8 loaded;
arguments 31/31 refused; saves killed any time 10: 10 intact, 0 temporary files; killed mid-write 10: 10 intact,
10 temporary files left, 0 after the next save.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.algorithms.flow_edit import AttributeEdit  # noqa: E402
from engine.errors import PhotoError  # noqa: E402
from engine.photos.read import load_photo  # noqa: E402
from engine.project import (  # noqa: E402
    EditState,
    ModelRef,
    NoiseMaps,
    PhotoRef,
    ProjectError,
    Source,
    Translation,
    project_dict,
    read_project,
    save_project,
)

PEAK_BYTES = 1 << 30
WRONG = [None, True, -1, 2**32, 2**64, 1e308, float("nan"), float("inf"), "", "x", [], [1, 2], {}, {"a": 1}]


def full_state() -> EditState:
    latent = Source.from_latent(np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8), name="ref")
    return EditState(model=ModelRef("g.pt", "ab" * 32), seed=3, psi=-0.5, cutoff=2, noise_mode="random", noise_seed=9,
                     sources=(Source(seed=4), latent), rows=(0, 1, 2, 0), base=latent,
                     noise_maps=NoiseMaps.from_arrays([np.ones((4, 4), np.float32), np.zeros((8, 8), np.float32)]),
                     edits=(AttributeEdit("attribute", "age", 40.0), AttributeEdit("lighting", 1, 0.5)),
                     locks=("yaw",), photo=PhotoRef("me.jpg", "cd" * 32, ((10, 20), (10, 84), (74, 84), (74, 20)), 32),
                     translation=Translation(ModelRef("t.pt"), depth=8, blend=1.0, style=latent))


def _leaves(obj, path=()):
    """Every path to a value in the JSON tree (containers included)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path + (k,)
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield path + (i,)
            yield from _leaves(v, path + (i,))


def _set(d: dict, path: tuple, value) -> dict:
    d = copy.deepcopy(d)
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return d


def _bomb(size: int) -> str:
    out = zlib.compressobj(9)
    data = b"".join(out.compress(bytes(1 << 20)) for _ in range(size >> 20)) + out.flush()
    return base64.b64encode(data).decode("ascii")


def project_cases(rng: random.Random) -> dict[str, bytes | str]:
    """Name -> file bytes (or a special path: 'folder', 'fifo', '/dev/zero', 'sparse', 'missing')."""
    good = json.loads(json.dumps(project_dict(full_state())))
    text = json.dumps(good, indent=1)
    raw = text.encode()
    cases: dict[str, bytes | str] = {"unchanged: the good file": raw, "unchanged: an unknown key": json.dumps(
        {**good, "future": {"x": 1}}).encode(), "unchanged: no white space": json.dumps(good).encode()}
    cases["invalid JSON"] = b"{not json"
    cases["empty"] = b""
    cases["not UTF-8"] = raw.replace(b'"ref"', b'"\xff\xfe"')
    cases["a list"] = b"[1, 2]"
    cases["a number"] = b"7"
    for k in range(10):
        cut = rng.randrange(1, len(raw))
        cases[f"truncated at byte {cut}"] = raw[:cut]
    for k in range(15):
        b = bytearray(raw)
        at = rng.randrange(len(b))
        b[at] ^= 1 << rng.randrange(8)
        cases[f"bit flip at byte {at}"] = bytes(b)
    paths = [p for p in _leaves(good) if p[0] in ("state", "extras", "format", "format_version")]
    for p in rng.sample(paths, min(50, len(paths))):
        value = rng.choice(WRONG)
        cases[f"{'.'.join(map(str, p))} = {value!r}"] = json.dumps(_set(good, p, value)).encode()
    cases["seed -1"] = json.dumps(_set(good, ("state", "seed"), -1)).encode()
    cases["psi NaN"] = json.dumps(_set(good, ("state", "psi"), float("nan"))).encode()
    cases["model path 5"] = json.dumps(_set(good, ("state", "model", "path"), 5)).encode()
    cases["seed of 5000 digits"] = text.replace('"seed": 3', '"seed": ' + "9" * 5000, 1).encode()
    cases["extras a list"] = json.dumps(_set(good, ("extras",), [1, 2])).encode()
    cases["extras a string"] = json.dumps(_set(good, ("extras",), "abc")).encode()
    deep = 100_000
    cases["nested 100 000 deep"] = (text[:-2] + ', "x": ' + "[" * deep + "]" * deep + "}").encode()
    cases["zlib bomb of 1 GiB in the noise maps"] = json.dumps(_set(good, ("state", "noise_maps"), {
        "zlib": _bomb(1 << 30), "shapes": [[4, 4], [8, 8]]})).encode()
    cases["noise shapes of 16 GiB"] = json.dumps(_set(good, ("state", "noise_maps"), {
        "zlib": _bomb(1 << 20), "shapes": [[65536, 65536]]})).encode()
    cases["noise shapes beyond int64"] = json.dumps(_set(good, ("state", "noise_maps"), {
        "zlib": _bomb(0), "shapes": [[2**40, 2**40]]})).encode()
    cases["latent shape beyond int64"] = json.dumps(_set(good, ("state", "base"), {
        "latent": "", "shape": [2**40, 2**40]})).encode()
    cases["5000 attribute edits"] = json.dumps(_set(good, ("state", "edits"), [
        {"kind": "attribute", "key": "age", "value": i % 9} for i in range(5000)])).encode()
    for special in ("folder", "fifo", "/dev/zero", "sparse 1 GiB", "missing"):
        cases[special] = special
    return cases


def _usable(state: EditState, folder: Path) -> bool:
    for source in (*state.sources, *((state.base,) if state.base else ())):
        if source.latent is not None and source.array().shape != source.shape:
            return False
    if state.noise_maps is not None:
        state.noise_maps.arrays()
    return read_project(save_project(folder / "again.fproj", state))[0] == state


def _timed(fn, limit_s: float):
    """(outcome, seconds): fn's return value or its exception, in a thread; 'hang' past ``limit_s``."""
    box = []

    def run():
        try:
            box.append(fn())
        except BaseException as e:  # noqa: BLE001 - recorded and classified by the caller
            box.append(e)
    t0 = time.perf_counter()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit_s)
    return (box[0] if box else "hang"), time.perf_counter() - t0


def try_projects(folder: Path, rng: random.Random, limit_s: float) -> dict:
    reference = folder / "reference.fproj"
    reference.write_text(json.dumps(project_dict(full_state())))
    original = read_project(reference)[0]  # paths as the reader resolves them
    counts = {"tried": 0, "refused": 0, "unchanged": 0, "changed": 0, "failed": 0, "slowest_s": 0.0,
              "peak_mb": 0.0, "changed_cases": [], "failures": []}
    for name, content in project_cases(rng).items():
        path = folder / "case.fproj"
        if path.exists() or path.is_symlink():
            path.unlink()
        if content == "folder":
            path = folder / "a-folder.fproj"
            path.mkdir(exist_ok=True)
        elif content == "fifo":
            if not hasattr(os, "mkfifo"):
                continue
            path = folder / "pipe.fproj"
            if not path.exists():
                os.mkfifo(path)
        elif content == "/dev/zero":
            if not os.path.exists("/dev/zero"):
                continue
            path = Path("/dev/zero")
        elif content == "sparse 1 GiB":
            with open(path, "wb") as f:
                f.truncate(1 << 30)
        elif content == "missing":
            path = folder / "missing.fproj"
        else:
            path.write_bytes(content)
        counts["tried"] += 1
        tracemalloc.start()
        outcome, seconds = _timed(lambda p=path: read_project(p), limit_s)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        counts["slowest_s"] = max(counts["slowest_s"], round(seconds, 3))
        if peak / 2**20 > counts["peak_mb"]:
            counts["peak_mb"], counts["peak_case"] = round(peak / 2**20, 1), name
        if outcome == "hang" and content == "fifo":
            with open(path, "wb"):
                pass  # let the blocked reader go
        if isinstance(outcome, ProjectError) and "\n" not in str(outcome) and peak < PEAK_BYTES:
            counts["refused"] += 1
        elif isinstance(outcome, tuple) and outcome[0] == original:
            counts["unchanged"] += 1
        elif isinstance(outcome, tuple) and _usable(outcome[0], folder):
            counts["changed"] += 1
            counts["changed_cases"].append(name)
        else:
            counts["failed"] += 1
            counts["failures"].append(f"{name}: {type(outcome).__name__}: {str(outcome)[:200]}")
    return counts


def try_command_line(folder: Path, limit_s: float) -> dict:
    model = folder / "g.pt"
    model.write_bytes(b"weights")
    good = json.loads(json.dumps(project_dict(EditState(seed=5))))
    text = json.dumps(good)
    cases = {"invalid JSON": "{not json", "truncated": text[:60],
             "negative seed": json.dumps(_set(good, ("state", "seed"), -1)),
             "NaN psi": text.replace('"psi": 0.7', '"psi": NaN'),
             "sha256 mismatch": json.dumps(_set(good, ("state", "model"), {"path": str(model), "sha256": "0" * 64})),
             "missing model": json.dumps(_set(good, ("state", "model"), {"path": str(folder / "gone.pt")})),
             "int model path": json.dumps(_set(good, ("state", "model", "path"), 5)),
             "not a model file": json.dumps(_set(good, ("state", "model"), {"path": str(model)})),
             "seed of 5000 digits": text.replace('"seed": 5', '"seed": ' + "9" * 5000),
             "nested 100 000 deep": text[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"}
    counts = {"tried": 0, "refused": 0, "failed": 0, "slowest_s": 0.0, "failures": []}
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    for name, content in cases.items():
        path = folder / "bad.fproj"
        path.write_text(content)
        counts["tried"] += 1
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, "main.py", "--project", str(path), "--screenshot",
                                str(folder / "shot.png"), "--settings", str(folder / "s.ini")], cwd=ROOT,
                               capture_output=True, text=True, timeout=limit_s * 3, env=env)
        except subprocess.TimeoutExpired:
            counts["failed"] += 1
            counts["failures"].append(f"{name}: hangs")
            continue
        seconds = time.perf_counter() - t0
        counts["slowest_s"] = max(counts["slowest_s"], round(seconds, 2))
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        if r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr and seconds < limit_s:
            counts["refused"] += 1
        else:
            counts["failed"] += 1
            counts["failures"].append(f"{name}: exit {r.returncode} in {seconds:.1f} s: {r.stderr[-300:]}")
    return counts


def photo_cases(folder: Path, rng: random.Random) -> dict[str, Path | str]:
    from PIL import Image

    pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    png = folder / "good.png"
    Image.fromarray(pixels).save(png)
    good = png.read_bytes()
    cases: dict[str, Path | str] = {}

    def write(name: str, data: bytes) -> None:
        p = folder / name
        p.write_bytes(data)
        cases[name] = p
    write("text.png", b"hello, not an image")
    write("empty.jpg", b"")
    for k in range(5):
        write(f"truncated-{k}.png", good[:rng.randrange(8, len(good))])
    for k in range(5):
        b = bytearray(good)
        b[rng.randrange(8, len(b))] ^= 0xFF
        write(f"damaged-{k}.png", bytes(b))
    header = bytearray(good[:33])
    header[16:24] = (100_000).to_bytes(4, "big") * 2  # a 100 000 x 100 000 PNG header: a decompression bomb
    write("bomb.png", bytes(header) + good[33:])
    for mode, suffix in (("L", "png"), ("RGBA", "png"), ("P", "png"), ("CMYK", "jpg"), ("1", "png")):
        p = folder / f"mode-{mode}.{suffix}"
        Image.fromarray(pixels).convert(mode).save(p)
        cases[p.name] = p
    deep = folder / "sixteen-bit.tiff"
    Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(deep)
    cases[deep.name] = deep
    Image.fromarray(pixels[:1, :1]).save(folder / "one-pixel.png")
    cases["one-pixel.png"] = folder / "one-pixel.png"
    cases["good.png"] = png
    (folder / "a-folder.png").mkdir(exist_ok=True)
    cases["a folder"] = folder / "a-folder.png"
    cases["missing"] = folder / "missing.png"
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.png")
        cases["a pipe"] = folder / "pipe.png"
    if os.path.exists("/dev/zero"):
        cases["/dev/zero"] = "/dev/zero"
    return cases


def try_photos(folder: Path, rng: random.Random, limit_s: float) -> dict:
    counts = {"tried": 0, "refused": 0, "unchanged": 0, "failed": 0, "failures": []}
    for name, path in photo_cases(folder, rng).items():
        counts["tried"] += 1
        outcome, seconds = _timed(lambda p=path: load_photo(p), limit_s)
        if outcome == "hang" and name == "a pipe":
            with open(path, "wb"):
                pass
        if isinstance(outcome, PhotoError) and "\n" not in str(outcome):
            counts["refused"] += 1
        elif hasattr(outcome, "pixels") and outcome.pixels.dtype == np.uint8 and outcome.pixels.shape[2] == 3:
            counts["unchanged"] += 1
        else:
            counts["failed"] += 1
            counts["failures"].append(f"{name}: {type(outcome).__name__}: {str(outcome)[:200]}")
    return counts


ARGUMENTS = [
    ["invert", "p.png", "--out", "o.fproj", "--box", "-1e308,-1e308,1e308,1e308"],
    ["invert", "p.png", "--out", "o.fproj", "--box=-1e308,-1e308,1e308,1e308"],
    ["invert", "p.png", "--out", "o.fproj", "--box", "1,2,3"], ["invert", "p.png", "--out", "o", "--box", "a,b,c,d"],
    ["invert", "p.png", "--out", "o.fproj", "--box", "nan,0,1,1"], ["invert", "p.png", "--out", "o", "--box", "5,5,1"],
    ["invert", "p.png", "--out", "o.fproj", "--box", "5,5,1,1"],
    ["invert", "p.png", "--out", "o.fproj", "--box", "inf,0,1,1"], ["invert", "p.png", "--out", "o", "--face", "x"],
    ["invert", "p.png", "--out", "o.fproj", "--face", "1e9"], ["invert", "p.png", "--out", "o", "--steps", "-"],
    ["invert", "p.png", "--out", "o.fproj", "--box", "0,0,1,1", "--whole"], ["invert", "p.png"],
    ["edit", "--seed", "1e400", "--out", "o.png"], ["edit", "--seed", "x", "--out", "o.png"],
    ["edit", "--seed", "9" * 5000, "--out", "o.png"], ["edit", "--out"], ["edit", "--psi", "abc", "--out", "o.png"],
    ["generate", "--seeds", "1", "--trunc", "abc", "--out", "o"], ["generate", "--out", "o", "--batch", "1.5"],
    ["generate", "--out", "o", "--device", "cuda", "--precision", "float3"], ["render"],
    ["render", "p.fproj", "--size", "-"], ["render", "p.fproj", "--size", "big"], ["info"], ["nonsense-command"],
    ["--device"], ["--project"], ["attributes"], ["distance", "a.pt"], ["translate"],
]


def try_arguments() -> dict:
    import main

    counts = {"tried": 0, "refused": 0, "failed": 0, "failures": []}
    for argv in ARGUMENTS:
        counts["tried"] += 1
        err = io.StringIO()
        code = None
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main.build_parser().parse_args(argv)
            except SystemExit as e:
                code = e.code
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        if code == 2 and len(lines) == 1 and lines[0].startswith("error: "):
            counts["refused"] += 1
        else:
            counts["failed"] += 1
            counts["failures"].append(f"{' '.join(argv)[:80]}: exit {code}: {err.getvalue()[-200:]}")
    return counts


_SAVER = """
import json
import sys
import time
sys.path.insert(0, {root!r})
import numpy as np
from engine.files.storage import atomic_write
from engine.project import EditState, NoiseMaps, project_dict, save_project
rng = np.random.default_rng(0)
maps = NoiseMaps.from_arrays([rng.standard_normal((r, r)).astype(np.float32) for r in {resolutions!r}])
t0 = time.perf_counter()
save_project({path!r}, EditState(seed=0, noise_maps=maps))
print(time.perf_counter() - t0, flush=True)  # one save's seconds: the parent kills within the next few
told = False


def write(f, data):
    global told
    for at in range(0, len(data), 1 << 20):
        f.write(data[at:at + (1 << 20)])
        if not told:
            told = True
            print("writing", flush=True)
        time.sleep({pause!r})


seed = 0
while True:
    seed += 1
    data = (json.dumps(project_dict(EditState(seed=seed, noise_maps=maps)), indent=1) + "\\n").encode()
    atomic_write({path!r}, lambda f: write(f, data))
"""


def try_kills(folder: Path, rng: random.Random, kills: int, *, mid_write: bool) -> dict:
    """``kills`` savers killed at a random moment of their save loop, or (``mid_write``) while one writes its
    temporary file (it writes 1 MB chunks, slowed to 10 ms each, as a slow disk would)."""
    target = folder / "saved.fproj"
    resolutions = [4] + [r for r in (8, 16, 32, 64, 128, 256, 512, 1024) for _ in range(2)]  # a 1024 px model's
    save_project(target, EditState(seed=0))
    counts = {"tried": 0, "intact": 0, "temps_after_kill": 0, "temps_after_next_save": 0, "project_mb": 0.0,
              "save_s": 0.0}
    for _ in range(kills):
        counts["tried"] += 1
        code = _SAVER.format(root=str(ROOT), resolutions=resolutions, path=str(target),
                             pause=0.01 if mid_write else 0.0)
        saver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        save_s = float(saver.stdout.readline())
        if mid_write:
            saver.stdout.readline()  # "writing": its temporary file is open and partly written
            time.sleep(rng.uniform(0.0, 0.1))
        else:
            time.sleep(rng.uniform(0.0, 3 * save_s))
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        saver.stdout.close()
        try:
            state, _ = read_project(target)
            counts["intact"] += isinstance(state, EditState)
        except ProjectError:
            pass
        counts["project_mb"] = max(counts["project_mb"], round(target.stat().st_size / 2**20, 1))
        counts["save_s"] = max(counts["save_s"], round(save_s, 2))
        counts["temps_after_kill"] += sum(1 for p in folder.iterdir() if p.name.endswith(".tmp"))
        save_project(target, EditState(seed=0))  # the next save
        counts["temps_after_next_save"] += sum(1 for p in folder.iterdir() if p.name.endswith(".tmp"))
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--limit-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-cli", action="store_true", help="skip the command line family (a subprocess per case)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for family, run in (("projects", lambda d: try_projects(d, rng, args.limit_s)),
                            ("command_line", None if args.no_cli else lambda d: try_command_line(d, args.limit_s)),
                            ("photos", lambda d: try_photos(d, rng, args.limit_s)),
                            ("arguments", lambda d: try_arguments()),
                            ("saves_killed_any_time", lambda d: try_kills(d, rng, args.kills // 2, mid_write=False)),
                            ("saves_killed_mid_write", lambda d: try_kills(d, rng, args.kills - args.kills // 2,
                                                                           mid_write=True))):
            if run is None:
                continue
            folder = tmp / family
            folder.mkdir()
            t0 = time.perf_counter()
            result[family] = run(folder)
            result[family]["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"{family}: {json.dumps({k: v for k, v in result[family].items() if k != 'failures'})}",
                  file=sys.stderr)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
