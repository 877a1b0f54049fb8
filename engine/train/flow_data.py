"""Training data for the StyleFlow flow: W+ latents with their 17-value conditions.

Two sources, one layout — ``{"w": float32 [N, num_ws, w_dim], "cond": float32 [N, 17]}`` (numpy), the condition in
the flow's order (``flow_edit.CONDITION_NAMES``: 9 SH lighting coefficients, then gender, glasses, yaw, pitch,
baldness, beard, age, expression in raw units):

* ``sample_flow_data``: latents sampled from a generator, their images labelled by the attribute estimator (the role
  Microsoft's Face API and an SH lighting estimator play for StyleFlow).
* ``read_styleflow_data``: StyleFlow's released files (FACTS §8) — ``sg2latents.pickle`` (a pickled dict
  ``{'Latent': [1000 x (1, 18, 512) arrays]}``), ``attributes.npy`` (1000, 8, 1) and ``light.npy``
  (1000, 1, 9, 1, 1). The pickle is read by a restricted unpickler that resolves only numpy's array rebuilders and
  refuses every other global before anything can run; ``.npy`` files are read with ``allow_pickle=False``.

``save_flow_data`` / ``load_flow_data`` keep the layout in an ``.npz`` file (no pickles) with the column names.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from engine.algorithms.flow_edit import ALIASES, ATTRIBUTES, COND_DIM, CONDITION_NAMES, LIGHTING_PRESETS, NUM_LIGHT
from engine.errors import describe, unreadable_reason
from engine.files.pickles import RestrictedUnpickler
from engine.files.storage import atomic_write
from engine.train.release.generator import quantised

STYLEFLOW_FILES = {"latents": "sg2latents.pickle", "attributes": "attributes.npy", "light": "light.npy"}

# The globals a pickle of plain numpy arrays needs: the array rebuilders (protocols 0-4, and 5's in-band buffers)
# and, for protocol 2 written by Python 3, ``_codecs.encode`` for the raw bytes.
_ARRAY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})


class FlowDataError(ValueError):
    """A flow training-data file that cannot be read; the message says which file and why."""


class _Refused(Exception):
    """Raised inside the unpickler for a global that is not an array rebuilder."""


class ArrayUnpickler(RestrictedUnpickler):
    """The project's restricted unpickler narrowed to pickles of numpy arrays in plain containers."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ARRAY_GLOBALS:
            raise _Refused(f"the pickle asks for the global '{module}.{name}'; a latent file needs only numpy arrays")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise _Refused("the pickle refers to an external object (a persistent id); a latent file is self-contained")


def condition_columns(output_names: tuple[str, ...] | list[str]) -> list[int]:
    """Index of each flow condition column (``CONDITION_NAMES`` order) among an estimator's ``output_names``;
    the estimator's ``'smile'`` is StyleFlow's expression."""
    names = [ALIASES.get(n, n) for n in output_names]
    missing = [n for n in CONDITION_NAMES if n not in names]
    if missing:
        raise ValueError(f"the estimator does not predict {missing} (it predicts {list(output_names)}); the flow's "
                         f"condition needs {list(CONDITION_NAMES)}")
    return [names.index(n) for n in CONDITION_NAMES]


@torch.no_grad()
def label_images(estimator, images: torch.Tensor) -> torch.Tensor:
    """Estimator readings of images [B, 3, H, W] in [-1, 1] as flow conditions [B, 17] (raw units, flow order)."""
    columns = condition_columns(estimator.cfg.output_names)
    values = estimator.to_units(estimator(images))  # [B, K] in the estimator's output order
    return values[:, columns]


@torch.no_grad()
def sample_flow_data(G, estimator, n: int, *, seed: int, batch: int, truncation_psi: float = 1.0,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """``n`` W+ latents of ``G`` and the estimator's reading of their images.

    z ~ N(0, I) from a ``torch.Generator`` seeded with ``seed`` (all n drawn at once, so the data does not depend on
    ``batch``), mapped with ``truncation_psi``, rendered with constant noise, quantised to the 8-bit levels the editor
    shows and labelled by ``estimator`` (which resizes to its own input size). ``progress(done, n)`` after each batch.
    -> {"w": float32 [n, num_ws, w_dim], "cond": float32 [n, 17]}
    """
    if n < 1 or batch < 1:
        raise ValueError(f"need n >= 1 and batch >= 1, got n={n}, batch={batch}")
    condition_columns(estimator.cfg.output_names)
    if estimator.training:
        raise ValueError("the estimator is in training mode; call eval() first (batch norm would use batch statistics)")
    g_device = G.w_avg.device
    e_device = next(estimator.parameters()).device
    z_all = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(int(seed)))  # [n, z_dim]
    ws_out, cond_out = [], []
    for start in range(0, n, batch):
        z = z_all[start:start + batch].to(g_device)
        ws = G.mapping(z, truncation_psi=truncation_psi)  # [b, num_ws, w_dim]
        images = quantised(G.synthesis(ws, noise_mode="const")).to(e_device)  # [b, 3, R, R] in [-1, 1]
        values = label_images(estimator, images)  # [b, 17]
        ws_out.append(ws.to("cpu", torch.float32).numpy())
        cond_out.append(values.to("cpu", torch.float32).numpy())
        if progress is not None:
            progress(min(start + batch, n), n)
    return {"w": np.concatenate(ws_out), "cond": np.concatenate(cond_out)}


def check_flow_data(data: dict, *, what: str = "flow data") -> dict[str, np.ndarray]:
    """Validated float32 copies of ``data['w']`` [N, num_ws, w_dim] and ``data['cond']`` [N, 17]."""
    try:
        w, cond = np.asarray(data["w"]), np.asarray(data["cond"])
    except KeyError as e:
        raise FlowDataError(f"{what}: missing {e.args[0]!r} (need 'w' and 'cond')") from None
    if w.ndim != 3 or cond.ndim != 2 or cond.shape[1] != COND_DIM or w.shape[0] != cond.shape[0]:
        raise FlowDataError(f"{what}: need w [N, num_ws, w_dim] and cond [N, {COND_DIM}], got shapes "
                            f"{w.shape} and {cond.shape}")
    if w.shape[0] == 0:
        raise FlowDataError(f"{what}: no samples")
    for name, a in (("w", w), ("cond", cond)):
        if a.dtype.kind != "f":
            raise FlowDataError(f"{what}: {name} has dtype {a.dtype}, expected floating point")
        if not np.isfinite(a).all():
            raise FlowDataError(f"{what}: {name} contains NaN or infinite values")
    return {"w": w.astype(np.float32), "cond": cond.astype(np.float32)}


def save_flow_data(path: str | os.PathLike, data: dict) -> Path:
    """Write ``data`` (w, cond) to an ``.npz`` with the condition names, atomically. Returns the path."""
    data = check_flow_data(data)
    return atomic_write(path, lambda f: np.savez(f, w=data["w"], cond=data["cond"],
                                                 cond_names=np.array(CONDITION_NAMES)))


def load_flow_data(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``save_flow_data`` file (no pickles). -> {"w": [N, num_ws, w_dim], "cond": [N, 17]} float32"""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise FlowDataError(f"{path}: not a readable .npz file ({e})") from None
    names = arrays.get("cond_names")
    if names is None or tuple(names.tolist()) != CONDITION_NAMES:
        raise FlowDataError(f"{path}: condition columns {None if names is None else names.tolist()} are not the "
                            f"flow's {list(CONDITION_NAMES)}")
    return check_flow_data(arrays, what=str(path))


def _load_npy(path: Path) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise FlowDataError(f"{path}: not a readable .npy array ({e})") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
        found = a.dtype if hasattr(a, "dtype") else describe(a)
        raise FlowDataError(f"{path}: expected a floating-point array, got {found}")
    return a


def _rows(a: np.ndarray, per_row: int, path: Path, layout: str) -> np.ndarray:
    """``a`` [N, ...] with ``per_row`` values per sample -> float32 [N, per_row]."""
    if a.ndim < 1 or a.shape[0] == 0 or int(np.prod(a.shape[1:])) != per_row:
        raise FlowDataError(f"{path}: shape {a.shape} is not {layout} ({per_row} values per image)")
    return a.reshape(a.shape[0], per_row).astype(np.float32)


def read_styleflow_attributes(path: str | os.PathLike) -> np.ndarray:
    """StyleFlow's ``attributes.npy`` (N, 8, 1) float64, in ``ATTRIBUTES`` order. -> float32 [N, 8]"""
    path = Path(path)
    return _rows(_load_npy(path), len(ATTRIBUTES), path, f"(N, {len(ATTRIBUTES)}, 1)")


def read_styleflow_lighting(path: str | os.PathLike) -> np.ndarray:
    """StyleFlow's ``light.npy`` (N, 1, 9, 1, 1) float32. -> float32 [N, 9]"""
    path = Path(path)
    return _rows(_load_npy(path), NUM_LIGHT, path, f"(N, 1, {NUM_LIGHT}, 1, 1)")


def styleflow_lighting_presets(light: np.ndarray) -> np.ndarray:
    """StyleFlow's six lighting presets (``LIGHTING_PRESETS`` order) from its ``light.npy`` rows [N, 9]. -> [6, 9]"""
    rows = list(LIGHTING_PRESETS.values())
    if light.ndim != 2 or light.shape[1] != NUM_LIGHT or light.shape[0] <= max(rows):
        raise FlowDataError(f"StyleFlow's lighting presets are rows {rows} of its light.npy [1000, 9]; got "
                            f"lighting of shape {light.shape}")
    return light[rows].astype(np.float32)


def _unpickle_arrays(path: Path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        return ArrayUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise FlowDataError(f"refusing to load {path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - anything else means the file is damaged or not a pickle
        raise FlowDataError(f"{path} cannot be read: {unreadable_reason(e)}") from None


def read_styleflow_latents(path: str | os.PathLike) -> np.ndarray:
    """StyleFlow's W+ latents -> float32 [N, num_ws, w_dim].

    ``sg2latents.pickle``: a dict whose ``'Latent'`` holds N arrays (1, num_ws, w_dim) (read without executing
    code); or ``train_flow.py``'s ``latents.npy`` (N, 1, num_ws, w_dim).
    """
    path = Path(path)
    if not path.is_file():
        raise FlowDataError(f"{path}: no such file")
    if path.suffix == ".npy":
        latents = _load_npy(path)
    else:
        obj = _unpickle_arrays(path)
        if not isinstance(obj, dict) or "Latent" not in obj:
            found = describe(obj)
            raise FlowDataError(f"{path}: expected a dict with key 'Latent' (StyleFlow's sg2latents.pickle), found "
                                f"{found}")
        entries = obj["Latent"]
        if isinstance(entries, np.ndarray):
            latents = entries
        elif isinstance(entries, (list, tuple)) and entries and all(isinstance(a, np.ndarray) for a in entries):
            shapes = {a.shape for a in entries}
            if len(shapes) != 1:
                raise FlowDataError(f"{path}: the latents have different shapes {sorted(shapes)[:4]}")
            latents = np.stack(entries)
        else:
            raise FlowDataError(f"{path}: 'Latent' must be a non-empty list of numpy arrays")
        if latents.dtype.kind != "f":
            raise FlowDataError(f"{path}: latents have dtype {latents.dtype}, expected floating point")
    if latents.ndim == 4 and latents.shape[1] == 1:
        latents = latents[:, 0]
    if latents.ndim != 3 or latents.shape[0] == 0:
        raise FlowDataError(f"{path}: latents of shape {latents.shape} are not N x (1, num_ws, w_dim)")
    return latents.astype(np.float32)


def read_styleflow_data(folder: str | os.PathLike, *, latents: str = STYLEFLOW_FILES["latents"],
                        attributes: str = STYLEFLOW_FILES["attributes"], light: str = STYLEFLOW_FILES["light"]
                        ) -> dict[str, np.ndarray]:
    """StyleFlow's released data in ``folder`` -> {"w": [N, num_ws, w_dim], "cond": [N, 17] = concat(light,
    attributes)}; row i of every file is the same image."""
    folder = Path(folder)
    w = read_styleflow_latents(folder / latents)
    light_rows = read_styleflow_lighting(folder / light)
    attr_rows = read_styleflow_attributes(folder / attributes)
    if not len(w) == len(light_rows) == len(attr_rows):
        raise FlowDataError(f"{folder}: {len(w)} latents, {len(light_rows)} lightings and {len(attr_rows)} "
                            "attribute rows; the files must describe the same images")
    return check_flow_data({"w": w, "cond": np.concatenate([light_rows, attr_rows], axis=1)}, what=str(folder))


__all__ = ["STYLEFLOW_FILES", "FlowDataError", "ArrayUnpickler", "condition_columns", "label_images",
           "sample_flow_data", "check_flow_data", "save_flow_data", "load_flow_data", "read_styleflow_attributes",
           "read_styleflow_lighting", "styleflow_lighting_presets", "read_styleflow_latents", "read_styleflow_data"]
