"""Synthetic face datasets: a streaming sampler for training and a writer of PNG files plus ``labels.json``.

Sample ``i`` of seed ``s`` is always the same face whatever the batch size or start index, so a dataset can be
written in pieces, resumed, or any image regenerated alone. ``python main.py synth --domain photo --n 10000 --size 64
--out DIR`` (``engine.cli.synth``) writes one.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from engine.files.images import to_uint8
from engine.files.storage import write_text_atomic
from engine.synth.params import (
    ATTRIBUTE_NAMES,
    NUM_PARAMS,
    PARAM_NAMES,
    SH_NAMES,
    attributes,
    draw_params,
    sample_params,
)
from engine.synth.styles import check_domain, check_size, render_faces

LABELS_FILE = "labels.json"
Progress = Callable[[int, int], None]


def sample_batch(batch_size: int, *, size: int, domain: str = "photo",
                 rng_or_seed: int | np.random.Generator = 0, start_index: int = 0):
    """A training batch: ``(images, params, conditions)``.

    images: float32 tensor [B,3,size,size] in [-1,1]; params: float64 array [B, NUM_PARAMS]; conditions:
    float32 array [B,17] (``ATTRIBUTE_NAMES`` then 9 SH lighting coefficients). With an int seed, row ``k`` is
    sample ``start_index + k`` of that seed; with a ``numpy.random.Generator`` the faces are fresh draws from it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    check_domain(domain)
    check_size(size)
    if isinstance(rng_or_seed, np.random.Generator):
        params = np.stack([draw_params(rng_or_seed) for _ in range(batch_size)])
    else:
        params = sample_params(batch_size, seed=int(rng_or_seed), start_index=start_index)
    images = render_faces(params, size=size, domain=domain) * 2.0 - 1.0
    return images, params, attributes(params)


def write_dataset(out_dir, *, domain: str = "photo", n: int, size: int = 64, seed: int = 0, batch: int = 64,
                  start_index: int = 0, progress: Progress | None = None) -> Path:
    """Render ``n`` faces to ``out_dir/NNNNN.png`` and write ``out_dir/labels.json``; returns the labels path.

    labels.json holds the domain, size, seed, the names of parameters, attributes and SH coefficients, and per
    image its file, sample index, attributes, 9 SH lighting coefficients and raw parameter vector.
    ``progress(done, total)`` is called after every batch.
    """
    check_domain(domain)
    check_size(size)
    if n < 1 or batch < 1 or seed < 0 or start_index < 0:
        raise ValueError(f"need n >= 1, batch >= 1, seed >= 0, start_index >= 0; got n={n}, batch={batch}, "
                         f"seed={seed}, start_index={start_index}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digits = max(5, len(str(start_index + n - 1)))
    records = []
    for first in range(0, n, batch):
        count = min(batch, n - first)
        index0 = start_index + first
        params = sample_params(count, seed=seed, start_index=index0)
        pixels = to_uint8(render_faces(params, size=size, domain=domain), value_range=(0.0, 1.0))
        conditions = attributes(params)
        for k in range(count):
            name = f"{index0 + k:0{digits}d}.png"
            Image.fromarray(pixels[k]).save(out / name, compress_level=1)
            records.append({
                "file": name, "index": index0 + k,
                "attributes": dict(zip(ATTRIBUTE_NAMES, conditions[k, :8].tolist())),
                "lighting_sh": conditions[k, 8:].tolist(),
                "params": params[k].tolist(),
            })
        if progress is not None:
            progress(first + count, n)
    labels = {"domain": domain, "size": size, "seed": seed, "param_names": list(PARAM_NAMES),
              "attribute_names": list(ATTRIBUTE_NAMES), "sh_names": list(SH_NAMES), "images": records}
    return write_text_atomic(out / LABELS_FILE, json.dumps(labels))


def read_labels(out_dir) -> dict:
    """labels.json of a written dataset with arrays: ``files`` list, ``params`` [N, NUM_PARAMS] float64,
    ``attributes`` [N,8] and ``lighting_sh`` [N,9] float32, plus the stored ``domain``, ``size`` and ``seed``."""
    path = Path(out_dir) / LABELS_FILE
    data = json.loads(path.read_text())
    if data.get("param_names") != list(PARAM_NAMES):
        raise ValueError(f"{path} was written with a different parameter layout than this version uses")
    images = data["images"]
    return {
        "domain": data["domain"], "size": data["size"], "seed": data["seed"],
        "files": [r["file"] for r in images],
        "params": np.array([r["params"] for r in images], dtype=np.float64).reshape(-1, NUM_PARAMS),
        "attributes": np.array([[r["attributes"][a] for a in ATTRIBUTE_NAMES] for r in images],
                               dtype=np.float32).reshape(-1, len(ATTRIBUTE_NAMES)),
        "lighting_sh": np.array([r["lighting_sh"] for r in images], dtype=np.float32).reshape(-1, 9),
    }
