"""Fuzzing the project reader (issue 22): random JSON mutations, truncations and bit flips of real project files,
for a bounded time. Every outcome is a usable ``EditState`` (its arrays decode, it writes and reads back equal) or a
``ProjectError``: no other exception, no hang, never a state that breaks later."""
from __future__ import annotations

import copy
import json
import random
import time

import numpy as np

from engine.algorithms.flow_edit import AttributeEdit
from engine.project import (
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

BUDGET_S = 10.0
SEED = 22

ODD_VALUES = [None, True, False, 0, -1, 1, 2**31, 2**32, 2**63, 2**64 + 1, -(2**70), 1e308, -1e308, 1.5, 0.0, -0.0,
              float("nan"), float("inf"), "", "x", "age", "const", "feature", "weights", "ö" * 3, "9" * 50, [], [1],
              [[1, 2]], [-1, 4], [0], {}, {"seed": 1}, {"latent": "", "shape": [0]}, {"zlib": "", "shapes": []}]


def _seed_projects() -> list[bytes]:
    """Valid projects with every part (the fuzzer's starting points), as written to disk."""
    latent = Source.from_latent(np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8), name="ref")
    full = EditState(model=ModelRef("g.pt", "ab" * 32), seed=3, psi=-0.5, cutoff=2, noise_mode="random",
                     noise_seed=9, sources=(Source(seed=4), latent), rows=(0, 1, 2, 0), base=latent,
                     noise_maps=NoiseMaps.from_arrays([np.ones((4, 4), np.float32), np.zeros((8, 8), np.float32)]),
                     edits=(AttributeEdit("attribute", "age", 40.0), AttributeEdit("lighting", 1, 0.5)),
                     locks=("yaw",),
                     photo=PhotoRef("me.jpg", "cd" * 32, ((10, 20), (10, 84), (74, 84), (74, 20)), 32),
                     translation=Translation(ModelRef("t.pt"), depth=8, blend=1.0, style=latent))
    states = [EditState(), EditState(seed=7, psi=1.0), full]
    return [json.dumps(project_dict(s, extras={"note": "fuzz", "n": [1, 2]}), indent=1).encode() for s in states]


def _nodes(obj, path=()):
    """Every (container, key) in the JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield obj, k
            yield from _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield obj, i
            yield from _nodes(v, path + (i,))


def _mutate_json(rng: random.Random, data: bytes) -> bytes:
    d = json.loads(data)
    for _ in range(rng.randint(1, 4)):
        places = list(_nodes(d))
        parent, key = rng.choice(places)
        action = rng.random()
        if action < 0.5:
            parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))  # never the shared list's own objects
        elif action < 0.65 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.8:
            other_parent, other_key = rng.choice(places)
            parent[key] = json.loads(json.dumps(other_parent[other_key]))  # a subtree moved where it does not belong
        elif isinstance(parent[key], str) and parent[key]:
            s = parent[key]
            at = rng.randrange(len(s))
            parent[key] = s[:at] + rng.choice("A=/+!\"\\") + s[at + 1:]  # base64 / zlib data damaged
        elif isinstance(parent[key], list):
            parent[key] = parent[key] * rng.randint(0, 3)
        else:
            parent[key] = [parent[key]]
    return json.dumps(d, allow_nan=True).encode()


def _damage_bytes(rng: random.Random, data: bytes) -> bytes:
    action = rng.random()
    if action < 0.35:
        return data[:rng.randrange(len(data))]
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if action < 0.8:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        else:
            at = rng.randrange(len(b))
            b[at:at] = bytes(rng.choice(b"[]{}\",:0-9eE\\\xff") for _ in range(rng.randint(1, 5)))
    return bytes(b)


def _check_usable(state: EditState, folder) -> None:
    """What the editor does with an accepted state must work: decode its arrays, write it, read it back."""
    for source in (*state.sources, *((state.base,) if state.base else ())):
        if source.latent is not None:
            assert source.array().shape == source.shape
    if state.noise_maps is not None:
        assert [m.shape for m in state.noise_maps.arrays()] == list(state.noise_maps.shapes)
    again = save_project(folder / "again.fproj", state)
    assert read_project(again)[0] == state


def test_mutated_projects_are_read_or_refused_as_project_errors(tmp_path):
    rng = random.Random(SEED)
    seeds = _seed_projects()
    path = tmp_path / "fuzz.fproj"
    counts = {"accepted": 0, "refused": 0}
    deadline = time.monotonic() + BUDGET_S
    tries = 0
    while time.monotonic() < deadline:
        data = rng.choice(seeds)
        data = _mutate_json(rng, data) if rng.random() < 0.6 else _damage_bytes(rng, data)
        path.write_bytes(data)
        tries += 1
        try:
            state, extras = read_project(path)
        except ProjectError as e:
            assert str(e) and "\n" not in str(e), repr(e)
            counts["refused"] += 1
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test: report which input broke the reader
            raise AssertionError(f"try {tries}: {type(e).__name__}: {e} reading {data[:300]!r}") from e
        assert isinstance(state, EditState) and isinstance(extras, dict)
        _check_usable(state, tmp_path)
        counts["accepted"] += 1
    assert tries > 200 and counts["refused"] > 0 and counts["accepted"] > 0, counts
