"""Malformed and hostile model files, made on the spot, against the editor's loaders (issue 22, models).

Families: ``dos`` (memo-DAG pickles, in a network's state and in its init kwargs; instruction floods; huge length
fields; array calls; a stride-0 view of one value; an oversized checkpoint pickle), ``bombs`` (architectures asking for
65536 px, 16384 channels, z_dim 1e9, ... with tiny weights), ``corruption`` (bit flips, byte runs and truncations of a
checkpoint and of a network pickle), ``wrong_types`` (state dicts that are lists, strings or tensors, string and float
config fields, empty filters, sparse or quantized weights, short persistent ids, wrong shapes, missing or extra keys,
str values, int keys) and ``info`` (``main.py info`` on the wrong-types and bomb files: exit 2 with one ``error:``
line). For each family: ``tried``, ``refused`` (a ``ModelFormatError`` within 10 s), ``unchanged`` (loaded with weights
identical to the original: only a harmless change such as a flipped bit in padding), ``changed`` (loaded with other
weights: a silent corruption) and ``other`` (any other exception, or too slow). NVIDIA's network pickles carry no
checksum: a bit flipped in their tensor data loads changed (a project's recorded sha256 refuses such a file when the
project is opened); for them ``changed`` is reported, not failed. Also the overheads of the checks on the shipped models
and a full-size generator. Exit status 1 when any file ends as ``other`` or (checksummed) ``changed``.

    python benchmarks/hostile_models.py                 # prints the table and the overheads
    python benchmarks/hostile_models.py --out counts.json --no-overheads
    python benchmarks/hostile_models.py --cases 200     # more corruption cases
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import pickle
import random
import struct
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import main  # noqa: E402
from engine import ModelFormatError, inspect_model, load_generator  # noqa: E402
from engine.convert.nvlabs import generator_to_nvlabs  # noqa: E402
from engine.files import guard, pickles  # noqa: E402
from engine.files.storage import check_zip_records, read_model_file  # noqa: E402
from engine.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig  # noqa: E402
from tests.engine import hostile_files as H  # noqa: E402
from tests.engine import nvlabs_pickle_writer as writer  # noqa: E402

SECONDS = 10
FFHQ1024 = dict(img_resolution=1024, channels=(512, 512, 512, 512, 512, 256, 128, 64, 32))


def _weights(G) -> dict:
    return {k: v.clone() for k, v in G.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def _try(load, path, reference: dict | None) -> str:
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            G = load(path)
    except ModelFormatError:
        return "refused" if time.perf_counter() - t0 < SECONDS else "other"
    except Exception as e:  # noqa: BLE001 - counted: the point of the benchmark
        print(f"  {path.name}: {type(e).__name__}: {e}"[:200], file=sys.stderr)
        return "other"
    if reference is None or not hasattr(G, "state_dict"):
        return "changed"  # nothing hostile should load
    return "unchanged" if _same(_weights(G), reference) else "changed"


def _nvlabs_bytes(G) -> bytes:
    sd, kwargs = generator_to_nvlabs(G.cfg, G.state_dict())
    D = Discriminator(DiscriminatorConfig(img_resolution=8, channels=(8, 8)))
    return writer.nvlabs_pickle_bytes(sd, D.state_dict(), kwargs, {}, protocol=4, module_src="")


def _mutations(data: bytes, n: int, rng: random.Random):
    for i in range(n):
        out = bytearray(data)
        kind = ("flip", "run", "truncate")[i % 3]
        if kind == "flip":
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind == "run":
            start = rng.randrange(len(out))
            out[start:start + 8] = bytes([rng.randrange(256)]) * 8
        else:
            del out[rng.randrange(1, len(out)):]
        yield bytes(out)


def _wrong_type_files(folder: Path) -> list[Path]:
    import tests.engine.test_hostile_models as cases  # the same cases as the tests

    files = []
    for name, change in cases.WRONG.items():
        ck = H.tiny_checkpoint()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            change(ck)
            files.append(H.save(ck, folder / f"wrong-{name.replace(' ', '-')}.pt"))
    for field, value in (("z_dim", 8.5), ("img_resolution", "8"), ("channels", "8,8"), ("mapping_layers", -1),
                         ("w_dim", None), ("resample_filter", [0, 0]), ("conv_clamp", "x")):
        ck = H.tiny_checkpoint()
        ck["arch"] = {**ck["arch"], field: value}
        files.append(H.save(ck, folder / f"arch-{field}.pt"))
    files.append(H.replace_record(H.save(H.tiny_checkpoint(), folder / "short-pid.pt"), "data.pkl",
                                  H.short_persistent_id_pickle()))
    for name, value in (("list", [1, 2]), ("str", "model"), ("tensor", torch.zeros(3)), ("int", 3)):
        files.append(H.save(value, folder / f"top-{name}.pt"))
    return files


def _bomb_files(folder: Path) -> list[Path]:
    files = [H.save(H.bomb_checkpoint(k), folder / f"bomb-{k}.pt") for k in ("resolution", "channels", "z_dim")]
    for name, change in (("mapping", dict(mapping_layers=100_000, mapping_features=4096)),
                         ("w_dim", dict(w_dim=1 << 22)), ("both", dict(z_dim=1 << 20, w_dim=1 << 20))):
        ck = H.tiny_checkpoint()
        ck["arch"] = {**ck["arch"], **change}
        files.append(H.save(ck, folder / f"bomb-{name}.pt"))
    return files


def _dos_files(folder: Path) -> list[Path]:
    files = []
    for levels in (24, 32, 64, 200):
        for make in (H.dag_network_pickle, H.dag_kwargs_pickle):
            path = folder / f"dag-{make.__name__}-{levels}.pkl"
            path.write_bytes(make(levels))
            files.append(path)
    torch_dag = []
    node: list = []
    for _ in range(64):
        node = [node, node]
    torch_dag.append(H.save({"state_dict": {"x": node}}, folder / "dag-torch.pt"))
    flood = folder / "flood.pkl"
    flood.write_bytes(b"\x80\x02(" + b"N" * (pickles.MAX_PICKLE_OPS + 10) + b"l.")
    length = folder / "length.pkl"
    length.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 1 << 45) + b"xx.")
    array = folder / "array.pkl"
    array.write_bytes(b"\x80\x02cnumpy\nndarray\n(\x8a\x05\x00\x10\xa5\xd4\xe8\x85tR.")
    bytearray8 = folder / "bytearray8.pkl"
    bytearray8.write_bytes(b"\x80\x05\x96" + struct.pack("<Q", 1 << 33) + b"xx.")
    ck = H.tiny_checkpoint()
    ck["state_dict"]["mapping.w_avg"] = torch.zeros(1, dtype=torch.float16).expand(1 << 28)
    view = H.save(ck, folder / "view.pt")
    pickled = folder / "pickle-flood.pt"
    H.replace_record(H.save(H.tiny_checkpoint(), pickled), "data.pkl", b"\x80\x02(" + b"N" * (9 << 20) + b"l.")
    return files + torch_dag + [flood, length, array, bytearray8, view, pickled]


def _family(paths: list[Path], reference: dict | None, load=load_generator) -> dict:
    counts = {"tried": 0, "refused": 0, "unchanged": 0, "changed": 0, "other": 0}
    for path in paths:
        counts["tried"] += 1
        counts[_try(load, path, reference)] += 1
    return counts


def _info(paths: list[Path]) -> dict:
    counts = {"tried": 0, "refused": 0, "other": 0}
    for path in paths:
        counts["tried"] += 1
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main.main(["info", str(path)])
        lines = err.getvalue().strip().splitlines()
        clean = status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0]
        counts["refused" if clean else "other"] += 1
    return counts


def _best(f, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def _overheads(folder: Path) -> dict:
    rows = {}
    for path in sorted((ROOT / "assets").glob("*.pt")):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        rows[path.name] = {
            "mb": round(path.stat().st_size / 1e6, 2),
            "torch_load_ms": round(_best(lambda: torch.load(path, map_location="cpu", weights_only=True)) * 1e3, 2),
            "crc_ms": round(_best(lambda: check_zip_records(path)) * 1e3, 2),
            "structure_ms": round(_best(lambda: guard.check_structure(obj, what="x")) * 1e3, 2),
            "read_model_file_ms": round(_best(lambda: read_model_file(path)) * 1e3, 2)}
    gen = ROOT / "assets" / "generator.pt"
    rows["generator.pt"]["load_generator_ms"] = round(_best(lambda: load_generator(gen), 3) * 1e3, 1)
    cfg = GeneratorConfig(**FFHQ1024)
    guard._count_build(Generator, cfg, {"seed": 0})
    big = {"dry_count_ms": round(_best(lambda: guard._count_build(Generator, cfg, {"seed": 0}), 3) * 1e3, 1),
           "plain_build_ms": round(_best(lambda: Generator(cfg, seed=0), 3) * 1e3, 1)}
    G = Generator(GeneratorConfig(img_resolution=256, channels=(512, 512, 512, 512, 512, 256, 128)), seed=0)
    data = _nvlabs_bytes(G)
    big["nvlabs_256px_pickle_mb"] = round(len(data) / 1e6, 1)
    big["c_unpickler_ms"] = round(_best(lambda: _c_unpickle(data), 3) * 1e3, 1)
    big["bounded_unpickler_ms"] = round(_best(lambda: pickles.read_pickle(data), 3) * 1e3, 1)
    return {"assets": rows, "full_size": big}


def _c_unpickle(data: bytes):
    class Fast(pickle.Unpickler):
        find_class = pickles.RestrictedUnpickler.find_class
    return Fast(io.BytesIO(data)).load()


def main_(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=60, help="corruption cases per original file (default 60)")
    p.add_argument("--seed", type=int, default=22)
    p.add_argument("--out", type=Path, help="also write the counts and overheads to this JSON file")
    p.add_argument("--no-overheads", action="store_true")
    args = p.parse_args(argv)
    logging.getLogger("engine").addHandler(logging.NullHandler())  # the loaders' log records are not the output
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        G = H.tiny_generator()
        ck = H.save(H.tiny_checkpoint(), folder / "original.pt")
        reference = _weights(load_generator(ck))
        nv = folder / "original.pkl"
        nv.write_bytes(_nvlabs_bytes(G))
        nv_reference = _weights(load_generator(nv))
        corrupt_pt, corrupt_pkl = [], []
        for i, data in enumerate(_mutations(ck.read_bytes(), args.cases, rng)):
            (path := folder / f"corrupt-{i}.pt").write_bytes(data)
            corrupt_pt.append(path)
        for i, data in enumerate(_mutations(nv.read_bytes(), args.cases, rng)):
            (path := folder / f"corrupt-{i}.pkl").write_bytes(data)
            corrupt_pkl.append(path)
        wrong, bombs = _wrong_type_files(folder), _bomb_files(folder)
        families = {
            "dos": _family(_dos_files(folder), None),
            "bombs": _family(bombs, None),
            "corruption (checkpoint)": _family(corrupt_pt, reference),
            "corruption (network pickle)": _family(corrupt_pkl, nv_reference),
            "wrong_types": _family(wrong, None),
            "wrong_types (inspect_model)": _family(wrong, None, load=inspect_model),
            "info": _info(wrong + bombs),
        }
        result = {"families": families}
        if not args.no_overheads:
            result["overheads"] = _overheads(folder)
    print(f"{'family':30s} {'tried':>6s} {'refused':>8s} {'unchanged':>10s} {'changed':>8s} {'other':>6s}")
    for name, c in families.items():
        print(f"{name:30s} {c['tried']:6d} {c['refused']:8d} {c.get('unchanged', 0):10d} {c.get('changed', 0):8d} "
              f"{c['other']:6d}")
    if "overheads" in result:
        print(json.dumps(result["overheads"], indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    bad = sum(c["other"] + (0 if name == "corruption (network pickle)" else c.get("changed", 0))
              for name, c in families.items())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main_())
