"""Test helper: hostile and broken model files, generated on demand (tiny files; nothing of this is stored).

Each maker writes one file into a folder and returns its path. Shared by ``test_hostile_models.py``,
``test_fuzz_models.py`` and ``benchmarks/hostile_models.py``: memo-DAG pickles (a few hundred bytes that unfold into
2^levels paths), architecture bombs (a configuration asking for far more memory than any model needs), corrupted
``torch.save`` archives, wrong types in the project's own format, and raw pickle pieces.
"""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import torch

from engine.files.checkpoints import generator_checkpoint
from engine.models.stylegan2 import Generator, GeneratorConfig

TINY = dict(img_resolution=8, channels=(8, 8), z_dim=8, w_dim=8, mapping_layers=2)


def tiny_generator(seed: int = 1) -> Generator:
    """An 8 px generator with 8 channels (some 3 000 parameters)."""
    return Generator(GeneratorConfig(**TINY), seed=seed).eval()


def tiny_checkpoint(seed: int = 1) -> dict:
    """The project-format checkpoint dict of ``tiny_generator``."""
    return generator_checkpoint(tiny_generator(seed))


def save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


# ---- raw pickle pieces (protocol 2) -------------------------------------------------------------------------------

def text(s: str) -> bytes:
    """BINUNICODE ``s``."""
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def dag(levels: int, *, first_memo: int = 0) -> bytes:
    """Pickle instructions that push one list L_levels, where L_0 = [] and L_k = [L_{k-1}, L_{k-1}]: 8 bytes a level,
    2^levels paths from the top. Uses memo slots ``first_memo`` .. ``first_memo + levels``."""
    ops = bytearray(b"]" + _put(first_memo) + b"0")
    for k in range(first_memo + 1, first_memo + levels + 1):
        ops += b"(" + _get(k - 1) + _get(k - 1) + b"l" + _put(k) + b"0"
    return bytes(ops + _get(first_memo + levels))


def _put(i: int) -> bytes:
    return b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)


def _get(i: int) -> bytes:
    return b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)


def _dict(items: list[tuple[bytes, bytes]]) -> bytes:
    return b"}(" + b"".join(k + v for k, v in items) + b"u"


def persistent_network(state: bytes, *, class_name: str = "Generator") -> bytes:
    """``torch_utils.persistence._reconstruct_persistent_obj({...})`` with ``state`` (pickled dict instructions)."""
    meta = _dict([(text("type"), text("class")), (text("class_name"), text(class_name)),
                  (text("state"), state), (text("module_src"), text("")), (text("version"), b"K\x01")])
    return b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n" + meta + b"\x85R"


def network_pickle(network: bytes) -> bytes:
    """An NVIDIA-style pickle ``{"G_ema": network}``."""
    return b"\x80\x02" + _dict([(text("G_ema"), network)]) + b"."


def dag_network_pickle(levels: int = 64) -> bytes:
    """A network pickle whose network state holds the DAG (in ``_buffers``, as a network's own entry)."""
    state = _dict([(text("_parameters"), b"}"), (text("_buffers"), b"}"), (text("_modules"), b"}"),
                   (text("_extra"), dag(levels, first_memo=10))])
    return network_pickle(persistent_network(state))


def dag_kwargs_pickle(levels: int = 64) -> bytes:
    """A network pickle whose ``_init_kwargs`` hide the DAG (``{"z_dim": 8, "channel_base": L_levels}``)."""
    kwargs = _dict([(text("z_dim"), b"K\x08"), (text("channel_base"), dag(levels, first_memo=10))])
    state = _dict([(text("_parameters"), b"}"), (text("_buffers"), b"}"), (text("_modules"), b"}"),
                   (text("_init_kwargs"), kwargs)])
    return network_pickle(persistent_network(state))


# ---- architecture bombs ------------------------------------------------------------------------------------------

def bomb_checkpoint(kind: str) -> dict:
    """The tiny checkpoint with its architecture asking for: ``resolution`` 65536 px, ``channels`` 16384 each,
    ``z_dim`` 10^9 (its weights stay tiny: the loader must refuse before building)."""
    ck = tiny_checkpoint()
    arch = dict(ck["arch"])
    if kind == "resolution":
        arch.update(img_resolution=65536, channels=tuple(min(512, 1 << (19 - i)) for i in range(15)))
    elif kind == "channels":
        arch.update(channels=(16384, 16384))
    elif kind == "z_dim":
        arch.update(z_dim=10 ** 9)
    else:
        raise ValueError(kind)
    ck["arch"] = arch
    return ck


# ---- archives ------------------------------------------------------------------------------------------------------

def records(path: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as z:
        return z.infolist()


def data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where record ``info``'s data starts in the archive file."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<2H", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def flip_byte(path: Path, offset: int, *, mask: int = 0x10) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))
    return path


def read_record(path: Path, suffix: str) -> bytes:
    """The data of the archive's record whose name ends with ``suffix``."""
    with zipfile.ZipFile(path) as z:
        return z.read(next(i for i in z.infolist() if i.filename.endswith(suffix)))


def replace_record(path: Path, suffix: str, data: bytes) -> Path:
    """Rewrite the archive with the record whose name ends with ``suffix`` replaced (valid CRCs throughout)."""
    with zipfile.ZipFile(path) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name, content in entries:
            z.writestr(name, data if name.endswith(suffix) else content)
    path.write_bytes(buf.getvalue())
    return path


def short_persistent_id_pickle() -> bytes:
    """A ``data.pkl`` whose only tensor has the persistent id ``('storage',)`` (torch writes five fields)."""
    return b"\x80\x02" + _dict([(text("w"), b"(" + text("storage") + b"tQ")]) + b"."
