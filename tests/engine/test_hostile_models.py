"""Hostile and broken model files (issue 22, models): every one is refused with a ``ModelFormatError`` that says
why, fast and in little memory, by the engine's loaders and by ``main.py info``. The files are made here, tiny."""
from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings
from contextlib import contextmanager

import pytest
import torch

import main
from engine import ModelFormatError, inspect_model, load_generator
from engine.errors import PrecisionError
from engine.files import guard, loading, pickles, storage
from engine.files.e4e import load_e4e
from engine.files.flows import load_flow
from engine.files.guard import build_module, check_structure, refuse_broken_files
from engine.files.i2i import load_i2i
from engine.files.storage import read_model_file
from engine.logs import log_path
from engine.models.domains import load_domains
from engine.models.encoder import load_encoder
from engine.models.estimator import load_estimator
from engine.models.stylegan2 import Generator, GeneratorConfig
from tests.conftest import REPO
from tests.engine import hostile_files as H

ASSETS = REPO / "assets"
SECONDS = 10
MEGABYTES = 200  # Python allocations while refusing one file (tracemalloc)


@contextmanager
def bounded(seconds: float = SECONDS, megabytes: float = MEGABYTES):
    """The block must finish within ``seconds`` and allocate at most ``megabytes`` through Python."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t0 < seconds
    assert peak < megabytes * 1e6, f"peak {peak / 1e6:.0f} MB"


# ---- denial of service: the memo DAG -------------------------------------------------------------------------

@pytest.mark.parametrize("make", [H.dag_network_pickle, H.dag_kwargs_pickle], ids=["state", "init_kwargs"])
@pytest.mark.parametrize("load", [load_generator, inspect_model], ids=["load_generator", "inspect_model"])
def test_a_memo_dag_pickle_is_refused_fast(tmp_path, make, load):
    path = tmp_path / "dag.pkl"
    path.write_bytes(make(32))  # 2^32 paths
    assert path.stat().st_size < 600
    with bounded(), pytest.raises(ModelFormatError, match="unfolds into more than 2.1 million items"):
        load(path)


def test_shared_objects_are_counted_per_path_and_walked_once():
    def dag(levels):
        node = []
        for _ in range(levels):
            node = [node, node]
        return node  # 2^(levels + 1) - 1 items unfolded

    check_structure(dag(19), what="x")  # ~1 million items
    t0 = time.perf_counter()
    with pytest.raises(ModelFormatError, match="^x: its content unfolds"):
        check_structure(dag(200), what="x")
    assert time.perf_counter() - t0 < 1


def test_a_structure_that_contains_itself_is_refused(tmp_path):
    loop = {"state_dict": {}}
    loop["state_dict"]["self"] = loop
    with pytest.raises(ModelFormatError, match="contains itself"):
        load_generator(H.save(loop, tmp_path / "loop.pt"))


def test_a_huge_view_of_a_little_data_is_refused(tmp_path):
    ck = H.tiny_checkpoint()
    ck["state_dict"]["mapping.w_avg"] = torch.zeros(1, dtype=torch.float16).expand(1 << 28)  # 2 bytes in the file
    path = H.save(ck, tmp_path / "view.pt")  # 1.1 GB once converted to float32
    assert path.stat().st_size < 100_000
    with bounded(), pytest.raises(ModelFormatError, match="a tensor of 537 MB made from 2 bytes of data"):
        load_generator(path)


def test_nesting_is_bounded():
    deep = []
    for _ in range(guard.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(ModelFormatError, match="nests more than"):
        check_structure(deep, what="x")


def test_the_unpickler_counts_its_instructions(monkeypatch):
    monkeypatch.setattr(pickles, "MAX_PICKLE_OPS", 1000)
    data = b"\x80\x02(" + b"K\x01" * 2000 + b"l."
    with pytest.raises(ModelFormatError, match="more than 1,000 instructions"):
        pickles.read_pickle(data)


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x96", b"\x8d"], ids=["BINBYTES8", "BYTEARRAY8", "BINUNICODE8"])
def test_a_length_field_past_the_end_is_refused_before_allocating(opcode):
    data = b"\x80\x05" + opcode + struct.pack("<Q", 1 << 33) + b"xx."  # 8.6 GB
    with bounded(megabytes=10), pytest.raises(ModelFormatError, match="truncated"):
        pickles.read_pickle(data)


@pytest.mark.parametrize("data, words", [
    (b"\x80\x02cnumpy\nndarray\n(\x8a\x05\x00\x10\xa5\xd4\xe8\x85tR.", "creates a numpy array directly"),
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x05\x00\x10\xa5\xd4\xe8\x85C\x01b\x87R.",
     "starts an array of shape"),
], ids=["ndarray", "_reconstruct"])
def test_the_unpickler_makes_no_array_beyond_the_file(data, words):
    with bounded(megabytes=10), pytest.raises(ModelFormatError, match=words):
        pickles.read_pickle(data)


# ---- architecture bombs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["resolution", "channels", "z_dim"])
@pytest.mark.parametrize("load", [load_generator, inspect_model], ids=["load_generator", "inspect_model"])
def test_architecture_bombs_are_refused_with_the_figures(tmp_path, kind, load):
    path = H.save(H.bomb_checkpoint(kind), tmp_path / f"{kind}.pt")
    with bounded(), pytest.raises(ModelFormatError) as refused:
        load(path)
    message = str(refused.value)
    assert message.startswith(f"{kind}.pt: the architecture is too large to build: it would need ")
    assert " GB (" in message or " TB (" in message
    assert "the editor builds models of up to 8.6 GB (2.15 billion float32 values)" in message


def test_bombs_stay_under_a_gigabyte(tmp_path):
    for kind in ("resolution", "channels", "z_dim"):
        H.save(H.bomb_checkpoint(kind), tmp_path / f"{kind}.pt")
    (tmp_path / "dag.pkl").write_bytes(H.dag_kwargs_pickle(60))
    script = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from engine import ModelFormatError, load_generator
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for path in sorted(Path({str(tmp_path)!r}).iterdir()):
            try:
                load_generator(path)
                sys.exit(f"{{path.name}} was loaded")
            except ModelFormatError:
                pass
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """)
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) < 1024  # MB more than after the imports


def test_a_build_is_counted_dry_and_leaves_the_weights_and_random_state_as_they_were():
    cfg = GeneratorConfig(**H.TINY)
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    built = build_module(Generator, cfg, what="x", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    plain = Generator(cfg, seed=3)
    for (k, a), (_, b) in zip(built.state_dict().items(), plain.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    dry, finished = guard._count_build(Generator, cfg, {"seed": 3})
    assert finished and dry.bytes >= sum(t.numel() * t.element_size() for t in plain.state_dict().values())


def test_a_constructor_refusing_its_config_is_an_invalid_architecture():
    with pytest.raises(ModelFormatError, match="^x: invalid architecture: "):
        build_module(Generator, GeneratorConfig(**H.TINY), what="x", seed="three")


# ---- silent corruption: the ZIP records' CRC-32 -------------------------------------------------------------

@pytest.mark.parametrize("record", ["tensor", "pickle"])
def test_a_flipped_byte_in_a_checkpoint_is_refused(tmp_path, record):
    path = H.save(H.tiny_checkpoint(), tmp_path / "flipped.pt")
    infos = [i for i in H.records(path) if i.filename.endswith(".pkl") == (record == "pickle")]
    info = max(infos, key=lambda i: i.file_size)
    H.flip_byte(path, H.data_offset(path, info) + info.file_size // 2)
    with pytest.raises(ModelFormatError, match="its data is corrupt .* does not match the checksum"):
        load_generator(path)


def test_an_oversized_checkpoint_pickle_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "MAX_PICKLE_RECORD", 1000)
    path = H.replace_record(H.save(H.tiny_checkpoint(), tmp_path / "flood.pt"), "data.pkl",
                            b"\x80\x02(" + b"N" * 2000 + b"l.")
    with pytest.raises(ModelFormatError, match="its pickle takes 2 kB, and the editor reads model files whose pickle "
                                               "takes up to 1 kB"):
        load_generator(path)


def test_a_file_is_checked_once_until_it_changes(tmp_path, monkeypatch):
    path = H.save(H.tiny_checkpoint(), tmp_path / "once.pt")
    checked = []
    real = storage.check_zip_records
    monkeypatch.setattr(storage, "check_zip_records", lambda p: (checked.append(p), real(p))[1])
    load_generator(path)
    load_generator(path)
    assert len(checked) == 1
    info = max(H.records(path), key=lambda i: i.file_size)
    H.flip_byte(path, H.data_offset(path, info) + 1)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # changed a second later
    with pytest.raises(ModelFormatError, match="corrupt"):
        load_generator(path)


def test_the_crc_check_accepts_every_shipped_model():
    for path in sorted(ASSETS.glob("*.pt")):
        assert read_model_file(path)[0] == "torch"


# ---- wrong types: every problem is a ModelFormatError ------------------------------------------------------------

def _sparse(ck):
    key = next(k for k, v in ck["state_dict"].items() if v.ndim == 2)
    ck["state_dict"][key] = ck["state_dict"][key].to_sparse()


def _quantized(ck):
    key = next(iter(ck["state_dict"]))
    ck["state_dict"][key] = torch.quantize_per_tensor(ck["state_dict"][key], 0.1, 0, torch.qint8)


def _set(path, value):
    def change(ck):
        node = ck
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(node[path[-1]]) if callable(value) else value
    return change


def _first_key(change):
    def apply(ck):
        key = next(k for k in ck["state_dict"] if not k.endswith("w_avg"))
        change(ck, key)
    return apply


WRONG = {
    "state_dict list": _set(["state_dict"], lambda sd: list(sd.values())),
    "state_dict str": _set(["state_dict"], "weights"),
    "state_dict tensor": _set(["state_dict"], torch.zeros(3)),
    "string z_dim": _set(["arch", "z_dim"], "8"),
    "empty resample filter": _set(["arch", "resample_filter"], []),
    "sparse weights": _sparse,
    "quantized weights": _quantized,
    "wrong shape": _first_key(lambda ck, k: ck["state_dict"].__setitem__(k, torch.zeros(3, 3))),
    "missing key": _first_key(lambda ck, k: ck["state_dict"].pop(k)),
    "extra key": _set(["state_dict", "extra.weight"], torch.zeros(2)),
    "str value": _first_key(lambda ck, k: ck["state_dict"].__setitem__(k, "weights")),
    "int key": _set(["state_dict", 7], torch.zeros(2)),
}


@pytest.mark.parametrize("case", list(WRONG))
@pytest.mark.parametrize("load", [load_generator, inspect_model], ids=["load_generator", "inspect_model"])
def test_wrong_types_are_model_format_errors(tmp_path, case, load):
    ck = H.tiny_checkpoint()
    with warnings.catch_warnings():  # PyTorch deprecates making and reading quantized tensors
        warnings.simplefilter("ignore", UserWarning)
        WRONG[case](ck)
        with pytest.raises(ModelFormatError):
            load(H.save(ck, tmp_path / "wrong.pt"))


def test_a_short_persistent_id_is_a_model_format_error(tmp_path):
    path = H.replace_record(H.save(H.tiny_checkpoint(), tmp_path / "pid.pt"), "data.pkl",
                            H.short_persistent_id_pickle())
    with pytest.raises(ModelFormatError, match="^cannot read pid.pt: "):
        load_generator(path)


def test_a_bit_flip_in_the_pickle_behind_a_valid_crc_is_a_model_format_error(tmp_path):
    """Flips that keep the pickle readable may load (a changed number in the architecture); nothing else escapes."""
    path = H.save(H.tiny_checkpoint(), tmp_path / "pkl.pt")
    pickled = H.read_record(path, "data.pkl")
    refused = 0
    for offset in range(2, len(pickled), max(1, len(pickled) // 40)):
        data = bytearray(pickled)
        data[offset] ^= 0x20
        flipped = H.replace_record(H.save(H.tiny_checkpoint(), tmp_path / "f.pt"), "data.pkl", bytes(data))
        try:
            load_generator(flipped)
        except ModelFormatError:
            refused += 1
    assert refused > 0


@pytest.mark.parametrize("asset, load", [("flow.pt", load_flow), ("encoder.pt", load_encoder),
                                         ("estimator.pt", load_estimator), ("domains.pt", load_domains),
                                         ("tunit.pt", load_i2i), ("bicyclegan.pt", load_i2i)])
@pytest.mark.parametrize("change", ["list", "str values"])
def test_every_loader_refuses_wrong_types_with_a_model_format_error(tmp_path, asset, load, change):
    obj = read_model_file(ASSETS / asset)[1]
    for key in ("state_dict", "networks"):
        if key in obj:
            value = obj[key]
            obj[key] = list(value.values()) if change == "list" else {k: "weights" for k in value}
    with pytest.raises(ModelFormatError):
        load(H.save(obj, tmp_path / asset))


def test_e4e_refuses_wrong_types_with_a_model_format_error(tmp_path):
    for content in ({"state_dict": {"encoder.body.0.weight": "w"}, "opts": {}}, {"state_dict": [1, 2]},
                    {"state_dict": {"encoder.x": torch.zeros(2)}, "opts": "options"}):
        with pytest.raises(ModelFormatError):
            load_e4e(H.save(content, tmp_path / "e4e.pt"))


def test_unexpected_errors_become_model_format_errors_that_keep_the_cause(caplog, tmp_path):
    @refuse_broken_files
    def load(source):
        return {}["z_dim"]

    with caplog.at_level(logging.WARNING), pytest.raises(ModelFormatError) as refused:
        load(tmp_path / "odd.pt")
    assert str(refused.value).startswith("odd.pt cannot be loaded: its content is damaged")
    assert "Error" not in str(refused.value)
    assert isinstance(refused.value.__cause__, KeyError)
    assert "odd.pt" in caplog.text and "KeyError" in caplog.text

    @refuse_broken_files
    def precise(source):
        raise PrecisionError("float16 changes the images")

    with pytest.raises(PrecisionError):
        precise("x.pt")


# ---- main.py info validates what it reports ---------------------------------------------------------------------

INFO_CASES = ["wrong shape", "missing key", "extra key", "str value", "int key", "string z_dim", "state_dict tensor",
              "quantized weights"]


@pytest.mark.parametrize("case", INFO_CASES)
def test_info_refuses_what_the_loader_refuses(tmp_path, capsys, case):
    ck = H.tiny_checkpoint()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        WRONG[case](ck)
        path = H.save(ck, tmp_path / "wrong.pt")
    assert main.main(["info", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err


def test_info_on_an_unexpected_loader_error_is_one_line_and_the_traceback_goes_to_the_log(tmp_path, capsys,
                                                                                            monkeypatch):
    def trips(*args):
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(loading, "_generator_parts", trips)
    path = H.save(H.tiny_checkpoint(), tmp_path / "odd.pt")
    assert main.main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: odd.pt cannot be loaded: its content is damaged or not laid out as this kind "
                                "of model file is (the details are in the log)"]
    for handler in logging.getLogger().handlers + logging.getLogger("engine").handlers:
        handler.flush()
    assert "odd.pt: inspect_model refused the file on an unexpected TypeError" in log_path().read_text()


def test_info_says_it_built_the_network(tmp_path, capsys):
    path = H.save(H.tiny_checkpoint(), tmp_path / "good.pt")
    assert main.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in H.tiny_generator().parameters())
    assert f"checked:       the generator loads ({params:,} parameters)" in out


def test_info_on_a_hostile_file_is_one_error_line_in_a_real_process(tmp_path):
    path = H.save(H.bomb_checkpoint("channels"), tmp_path / "bomb.pt")
    r = subprocess.run([sys.executable, "main.py", "info", str(path)], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bomb.pt: the architecture is too large to build")
