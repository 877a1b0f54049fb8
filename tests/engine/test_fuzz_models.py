"""Seeded fuzzing of the model loaders (issue 22): bit flips, truncations and byte runs in real (tiny) model files,
mutated pickles behind valid ZIP checksums, and random pickle instructions. Every outcome must be a clean load or a
``ModelFormatError``: never another exception, a hang or a crash. Bounded in time (about 15 s in all)."""
from __future__ import annotations

import random
import time

import pytest

from engine import ModelFormatError, load_generator
from engine.convert.nvlabs import generator_to_nvlabs
from engine.files import pickles
from engine.models.stylegan2 import Discriminator, DiscriminatorConfig
from tests.engine import hostile_files as H
from tests.engine import nvlabs_pickle_writer as writer

SEED = 0x22F0
CASE_SECONDS = 5  # any one file
BUDGET_SECONDS = 3.5  # each fuzz test stops drawing cases after this


def _nvlabs_bytes() -> bytes:
    G = H.tiny_generator()
    sd, kwargs = generator_to_nvlabs(G.cfg, G.state_dict())
    D = Discriminator(DiscriminatorConfig(img_resolution=8, channels=(8, 8)))
    return writer.nvlabs_pickle_bytes(sd, D.state_dict(), kwargs, {}, protocol=4, module_src="")


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    kind = rng.choice(["flip", "flip", "truncate", "run", "splice"])
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del out[rng.randrange(1, len(out)):]
    elif kind == "run":
        start = rng.randrange(len(out))
        out[start:start + rng.randint(1, 16)] = bytes([rng.choice([0, 0xFF, rng.randrange(256)])]) * rng.randint(1, 16)
    else:
        a, b = sorted(rng.randrange(len(out)) for _ in range(2))
        out[a:a] = out[a:b][:64]
    return bytes(out)


def _outcome(load, source) -> str:
    t0 = time.perf_counter()
    try:
        load(source)
        result = "loaded"
    except ModelFormatError:
        result = "refused"
    assert time.perf_counter() - t0 < CASE_SECONDS
    return result


def _fuzz(make, load, rng: random.Random) -> dict[str, int]:
    counts = {"loaded": 0, "refused": 0}
    end = time.perf_counter() + BUDGET_SECONDS
    while time.perf_counter() < end:
        counts[_outcome(load, make(rng))] += 1
    assert sum(counts.values()) >= 10
    return counts


def test_mutated_checkpoint_files(tmp_path):
    path = H.save(H.tiny_checkpoint(), tmp_path / "original.pt")
    original = path.read_bytes()

    def make(rng):
        out = tmp_path / "case.pt"
        out.write_bytes(_mutate(original, rng))
        return out

    counts = _fuzz(make, load_generator, random.Random(SEED))
    assert counts["refused"] > 0


def test_mutated_pickles_behind_valid_checksums(tmp_path):
    path = H.save(H.tiny_checkpoint(), tmp_path / "original.pt")
    pickled = H.read_record(path, "data.pkl")

    def make(rng):
        out = tmp_path / "case.pt"
        out.write_bytes(path.read_bytes())
        return H.replace_record(out, "data.pkl", _mutate(pickled, rng))

    counts = _fuzz(make, load_generator, random.Random(SEED + 1))
    assert counts["refused"] > 0


def test_mutated_network_pickles(tmp_path):
    original = _nvlabs_bytes()
    assert _outcome(load_generator, _write(tmp_path, original)) == "loaded"
    counts = _fuzz(lambda rng: _write(tmp_path, _mutate(original, rng)), load_generator, random.Random(SEED + 2))
    assert counts["refused"] > 0


def _write(folder, data: bytes):
    path = folder / "case.pkl"
    path.write_bytes(data)
    return path


# opcodes with well-formed arguments, so that random programs get past the first few bytes
_OPS = [b"(", b")", b"]", b"}", b"N", b"\x88", b"\x89", b"0", b"2", b"t", b"l", b"d", b"e", b"a", b"s", b"u",
        b"\x85", b"\x86", b"\x87", b"R", b"b", b"\x94", b"\x8f", b"\x90", b"\x91"]


_GLOBALS = [b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n", b"cbuiltins\nset\n",
            b"ccollections\nOrderedDict\n", b"cnumpy\ndtype\n", b"ctorch._utils\n_rebuild_tensor_v2\n",
            b"cnumpy.core.multiarray\n_reconstruct\n", b"cnumpy\nndarray\n", b"cos\nsystem\n"]


def _random_program(rng: random.Random) -> bytes:
    out = bytearray(b"\x80" + bytes([rng.choice([2, 4])]))
    for _ in range(rng.randint(1, 60)):
        pick = rng.random()
        if pick < 0.5:
            out += rng.choice(_OPS)
        elif pick < 0.6:
            out += b"K" + bytes([rng.randrange(256)])
        elif pick < 0.7:
            out += H.text(rng.choice(["G_ema", "state", "_modules", "class_name", "x"]))
        elif pick < 0.8:
            out += b"h" + bytes([rng.randrange(8)])
        elif pick < 0.87:
            out += b"q" + bytes([rng.randrange(8)])
        elif pick < 0.95:
            out += rng.choice(_GLOBALS)
        else:
            out += bytes([rng.randrange(256)])
    return bytes(out + b".")


def test_random_pickle_programs():
    rng = random.Random(SEED + 3)
    counts = _fuzz(_random_program, pickles.read_pickle, rng)
    assert counts["refused"] > 0


@pytest.mark.parametrize("levels", [20, 60])
def test_random_memo_dags_in_random_places(tmp_path, levels):
    rng = random.Random(SEED + levels)
    for _ in range(5):
        make = rng.choice([H.dag_network_pickle, H.dag_kwargs_pickle])
        assert _outcome(load_generator, _write(tmp_path, make(levels))) == "refused"
