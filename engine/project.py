"""The edit state of one image and its project file: everything needed to reproduce the picture exactly.

``EditState`` is an immutable snapshot (model reference + sha256, seed, truncation, noise, style-mixing sources and
rows). The editor's document holds one and replaces it on every edit; the engine renders it (``engine.jobs.render``).
Project files are JSON, written atomically; saved latents travel inside them as base64 float32.

Project files are untrusted: ``read_project`` opens regular files only (never a pipe or a device), bounds the size,
the JSON nesting and the digits of a number before parsing, and the noise maps' decompressed size by their shapes;
every field then goes through one schema (``engine.files.configs``): anything else is a ``ProjectError`` naming it.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import re
import shutil
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.algorithms.flow_edit import AttributeEdit
from engine.algorithms.flow_layout import ALIASES, STYLEFLOW, ConditionLayout, LayoutError
from engine.files.configs import DictForm, Unreadable, from_dict
from engine.files.paths import relative_to, resolve_from
from engine.files.storage import atomic_write, file_sha256, write_text_atomic
from engine.models.stylegan2 import NOISE_MODES
from engine.photos.align import AlignTransform

PROJECT_FORMAT = "face-editor/project"
PROJECT_VERSION = 1
PROJECT_FILES_SUFFIX = ".files"  # the folder beside a project with the files saved with it (its tuning)
SEED_LIMIT = 2**32
# Where a face's starting condition (the sliders' originals) comes from: the attribute estimator's reading of the
# rendered face, or the flow's own reading of its latent (engine.algorithms.condition_fit, from the estimator's).
ATTRIBUTE_SOURCES = ("estimator", "flow")
# How attribute edits move the latent (engine.jobs.directions): the model's measured directions when it has them
# ("auto"), always those ("directions"), or StyleFlow's flow ("flow", what projects written before the choice used).
EDIT_METHODS = ("auto", "directions", "flow")
PROJECT_SIZE_LIMIT = 64 << 20  # bytes; a 1024 px inversion's noise maps take about 15 MB
JSON_DEPTH_LIMIT = 32  # a project nests about 6 deep
NUMBER_DIGITS_LIMIT = 40  # a seed has at most 10
NOISE_BYTES_LIMIT = 256 << 20  # decompressed noise maps (a 1024 px model's take 11 MB)
MAX_IMAGE_SIZE = 16384  # px: the side of an aligned face (a model's resolution)
MAX_EDITS = 100  # attribute edits replayed per frame (each is a flow solve: about 30 ms on a CPU, 200 ms exact)


class ProjectError(ValueError):
    """A project file or edit state that cannot be used, with a message meant for the user."""


@dataclass(frozen=True)
class ModelRef(DictForm):
    """Which generator: ``path`` None is the embedded default; ``sha256`` pins the exact file."""

    path: str | None = None
    sha256: str | None = None

    @property
    def is_default(self) -> bool:
        return self.path is None

    def __post_init__(self):
        if self.path is not None and (not isinstance(self.path, str) or not self.path):
            raise ProjectError(f"a model path must be a file name, got {self.path!r}")
        if self.sha256 is not None and not isinstance(self.sha256, str):
            raise ProjectError(f"a model's sha256 must be a text of hexadecimal digits, got {self.sha256!r}")

    def label(self) -> str:
        return "embedded default" if self.path is None else Path(self.path).name


@dataclass(frozen=True)
class Source:
    """A style-mixing source: a seed (mapped and truncated like the base) or a saved latent used as is.

    A latent is W [w_dim] or W+ [num_ws, w_dim], stored as float32 bytes so the state stays hashable.
    """

    seed: int | None = None
    latent: bytes | None = None
    shape: tuple[int, ...] = ()
    name: str = ""

    def __post_init__(self):
        if (self.seed is None) == (self.latent is None):
            raise ProjectError("a mixing source is either a seed or a latent")
        if self.seed is not None and not 0 <= self.seed < SEED_LIMIT:
            raise ProjectError(f"seed {self.seed} is out of range [0, 2**32)")
        if self.latent is not None:
            if len(self.shape) not in (1, 2) or not _sizes(self.shape) or 4 * math.prod(self.shape) != len(self.latent):
                raise ProjectError(f"latent data does not match its shape {self.shape}")

    @classmethod
    def from_latent(cls, array, *, name: str) -> "Source":
        a = np.asarray(array, dtype=np.float32)
        if a.ndim == 3 and a.shape[0] == 1:
            a = a[0]
        if a.ndim not in (1, 2):
            raise ProjectError(f"a latent must be W [w_dim] or W+ [num_ws, w_dim], got shape {a.shape}")
        return cls(latent=np.ascontiguousarray(a).tobytes(), shape=tuple(a.shape), name=name)

    def array(self) -> np.ndarray:
        if self.latent is None:
            raise ProjectError("this source is a seed, not a latent")
        return np.frombuffer(self.latent, dtype=np.float32).reshape(self.shape)

    def label(self) -> str:
        return f"seed {self.seed}" if self.seed is not None else (self.name or "latent")

    def to_dict(self) -> dict:
        if self.seed is not None:
            return {"seed": self.seed}
        return {"latent": base64.b64encode(self.latent).decode("ascii"), "shape": list(self.shape), "name": self.name}

    @classmethod
    def from_dict(cls, d: dict) -> "Source":
        """The inverse of ``to_dict`` (the latent's bytes are base64 there)."""
        if isinstance(d, dict) and isinstance(d.get("latent"), str):
            try:
                d = {**d, "latent": base64.b64decode(d["latent"], validate=True)}
            except ValueError as e:
                raise ProjectError(f"a mixing source's latent is not base64 data ({e})") from None
        return from_dict(cls, d, what="the mixing source", error=ProjectError, unknown="ignore")


@dataclass(frozen=True)
class NoiseMaps:
    """Per-layer noise maps an inversion optimised, in ``G.synthesis`` order: float32 bytes and their shapes."""

    data: bytes
    shapes: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        if not all(_sizes(s) for s in self.shapes) or _noise_bytes(self.shapes) != len(self.data):
            raise ProjectError(f"noise data does not match its {len(self.shapes)} map shapes")

    @classmethod
    def from_arrays(cls, maps) -> "NoiseMaps":
        arrays = [np.ascontiguousarray(np.asarray(m, dtype=np.float32)) for m in maps]
        return cls(b"".join(a.tobytes() for a in arrays), tuple(tuple(a.shape) for a in arrays))

    def arrays(self) -> list[np.ndarray]:
        flat = np.frombuffer(self.data, dtype=np.float32)
        out, at = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape))
            out.append(flat[at:at + n].reshape(shape))
            at += n
        return out

    def to_dict(self) -> dict:
        return {"zlib": base64.b64encode(zlib.compress(self.data, 6)).decode("ascii"),
                "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseMaps":
        """The inverse of ``to_dict`` (the maps' bytes are zlib-compressed base64 there), decompressing no more than
        the shapes hold (and ``NOISE_BYTES_LIMIT`` at most)."""
        stored = _StoredNoise.from_dict(d)
        if not all(_sizes(s) for s in stored.shapes):
            raise ProjectError(f"the noise map shapes {[list(s) for s in stored.shapes]} are not all sizes >= 1")
        size = _noise_bytes(stored.shapes)
        if size > NOISE_BYTES_LIMIT:
            raise ProjectError(f"the noise map shapes ask for {size / 2**20:.0f} MB, more than the "
                               f"{NOISE_BYTES_LIMIT >> 20} MB any model's noise takes")
        try:
            inflate = zlib.decompressobj()
            data = inflate.decompress(base64.b64decode(stored.zlib, validate=True), size + 1)
        except (ValueError, zlib.error) as e:
            raise ProjectError(f"the stored noise maps are unreadable ({e})") from None
        if len(data) > size or inflate.unconsumed_tail:
            raise ProjectError(f"the stored noise maps hold more data than their {len(stored.shapes)} shapes")
        if not inflate.eof:
            raise ProjectError("the stored noise maps are unreadable: their data is cut short")
        return cls(data, stored.shapes)


@dataclass(frozen=True)
class _StoredNoise(DictForm, what="the noise maps", error=ProjectError, unknown="ignore"):
    """Noise maps as a project file stores them: ``zlib`` (base64 of the zlib-compressed float32 bytes) and the
    maps' ``shapes``."""

    zlib: str
    shapes: tuple[tuple[int, ...], ...]


def _sizes(shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` is a list of sizes (whole numbers >= 1)."""
    return all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)


def _noise_bytes(shapes: tuple[tuple[int, ...], ...]) -> int:
    """The float32 bytes that maps of ``shapes`` hold (exact: no overflow for absurd sizes)."""
    return 4 * sum(math.prod(s) for s in shapes)


@dataclass(frozen=True)
class PhotoRef(DictForm):
    """The photo a face was inverted from: its file (path, sha256) and the alignment that cut the face out,
    ``quad`` (4 corners in photo pixels: top-left, bottom-left, bottom-right, top-right) to a ``size`` square
    (checked as an ``AlignTransform``)."""

    path: str
    sha256: str
    quad: tuple[tuple[float, float], ...]
    size: int

    def __post_init__(self):
        if isinstance(self.size, int) and self.size > MAX_IMAGE_SIZE:
            raise ProjectError(f"the photo's aligned size {self.size} is larger than any model's images "
                               f"({MAX_IMAGE_SIZE} px at most)")
        try:
            with np.errstate(over="raise", invalid="raise"):  # corners near the float range
                align = AlignTransform(self.quad, self.size)
        except FloatingPointError:
            reason = "its corners are too far out to compute with"
            raise ProjectError(f"the photo alignment is unusable: {reason}") from None
        except ValueError as e:
            raise ProjectError(f"the photo alignment is unusable: {e}") from None
        object.__setattr__(self, "quad", align.quad)

    @property
    def name(self) -> str:
        return Path(self.path).name


SWAP_MODES = ("feature", "weights")


@dataclass(frozen=True)
class Translation(DictForm):
    """Domain translation of the face by a fine-tuned model (UI2I layer swap).

    ``target``: the fine-tuned generator; ``depth``: the last resolution whose features come from the source model
    (0: none, the target alone); ``blend``: octaves of soft transition above it; ``mode``: ``feature`` (UI2I) or
    ``weights`` (Toonify). ``style`` drives the target's layers: None the face's own latent, a seed an appearance
    sampled from the target (truncated by ``style_psi`` towards its mean), a latent a reference image's code in the
    target."""

    target: ModelRef
    depth: int = 16
    blend: float = 0.0
    mode: str = "feature"
    style: Source | None = None
    style_psi: float = 0.5

    def __post_init__(self):
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 0:
            raise ProjectError(f"the swap depth is a resolution in pixels (or 0), got {self.depth!r}")
        if not (isinstance(self.blend, (int, float)) and 0 <= self.blend <= 8):
            raise ProjectError(f"the blend width must be within [0, 8] octaves, got {self.blend!r}")
        if self.mode not in SWAP_MODES:
            raise ProjectError(f"the swap mode must be one of {SWAP_MODES}, got {self.mode!r}")
        if not -4.0 <= self.style_psi <= 4.0:
            raise ProjectError(f"the style truncation {self.style_psi} is outside [-4, 4]")


@dataclass(frozen=True)
class EditState(DictForm, what="the edit state", error=ProjectError, unknown="ignore"):
    """One image's parameters. ``rows`` picks a source per W+ row (0 = the base seed, k = ``sources[k-1]``);
    empty means no mixing. ``cutoff`` truncates rows ``[:cutoff]`` only (None: all rows). ``edits`` are StyleFlow
    attribute / lighting edits replayed in order on the mixed latent with the ``flow`` model (path None: the embedded
    default's flow); ``flow_layout`` is what that flow's condition holds when the user gave it (None: the layout the
    flow file states or implies, ``load_flow``); ``flow_fast`` picks the fast solver for them; ``locks`` are
    attributes held at their value while the others are edited (``apply_edits``). ``base`` replaces the seed by a
    latent (an inverted photo, from ``photo``); ``noise_maps`` replace the noise of ``noise_mode`` (an inversion's
    optimised maps); ``translation`` renders the edited face through a fine-tuned model; ``encoder`` is an e4e
    encoder file paired with the model (None: the model file's own encoder, if any), which photo inversions start from;
``edit_method`` says how the edits move the latent (``EDIT_METHODS``: measured directions or the flow; a project
written before the choice existed reads as ``'flow'``); ``tuning`` is the "keep the person" tuning of the model
around ``base`` (a file of float16 weight differences, ``engine.algorithms.pivotal``, pinned by sha256), which every
rendering of the state applies.

    Written and read by ``to_dict`` / ``from_dict`` (``engine.files.configs``): a field missing in a file takes its
    default (older files), keys this version does not know are ignored at every level (files of a newer version
    still open), and any other problem is a ``ProjectError`` naming the field."""

    model: ModelRef = field(default_factory=ModelRef)
    seed: int = 0
    psi: float = 0.7
    cutoff: int | None = None
    noise_mode: str = "const"
    noise_seed: int = 0
    sources: tuple[Source, ...] = ()
    rows: tuple[int, ...] = ()
    flow: ModelRef = field(default_factory=ModelRef)
    flow_layout: ConditionLayout | None = None
    edits: tuple[AttributeEdit, ...] = ()
    flow_fast: bool = True
    locks: tuple[str, ...] = ()
    attribute_source: str = "estimator"  # ATTRIBUTE_SOURCES: where the face's starting condition comes from
    edit_method: str = "auto"  # EDIT_METHODS: how attribute edits move the latent
    base: Source | None = None
    noise_maps: NoiseMaps | None = None
    photo: PhotoRef | None = None
    translation: Translation | None = None
    encoder: ModelRef | None = None
    tuning: ModelRef | None = None

    def __post_init__(self):
        if not 0 <= self.seed < SEED_LIMIT:
            raise ProjectError(f"seed {self.seed} is out of range [0, 2**32)")
        if len(self.edits) > MAX_EDITS:
            raise ProjectError(f"{len(self.edits)} attribute edits are more than the {MAX_EDITS} an image can replay "
                               "(each one is a flow solve per frame)")
        if not 0 <= self.noise_seed < SEED_LIMIT:
            raise ProjectError(f"noise seed {self.noise_seed} is out of range [0, 2**32)")
        if not -4.0 <= self.psi <= 4.0:
            raise ProjectError(f"truncation psi {self.psi} is outside [-4, 4]")
        if self.cutoff is not None and self.cutoff < 0:
            raise ProjectError(f"truncation cutoff must be >= 0, got {self.cutoff}")
        if self.noise_mode not in NOISE_MODES:
            raise ProjectError(f"noise mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        if self.attribute_source not in ATTRIBUTE_SOURCES:
            raise ProjectError(f"the attribute source must be 'estimator' or 'flow', got {self.attribute_source!r}")
        if self.edit_method not in EDIT_METHODS:
            raise ProjectError(f"the edit method must be one of {', '.join(EDIT_METHODS)}, got {self.edit_method!r}")
        if any(not 0 <= r <= len(self.sources) for r in self.rows):
            raise ProjectError(f"mixing rows {list(self.rows)} name sources beyond the {len(self.sources)} given")
        object.__setattr__(self, "locks", self._canonical_locks())
        if self.base is not None and self.base.latent is None:
            raise ProjectError("a base latent must be a latent, not a seed (the seed field is for seeds)")

    def _canonical_locks(self) -> tuple[str, ...]:
        """The locks as a sorted set of the layout's names, checked with the edits against the layout when it is
        known here: the user's, or StyleFlow's for the embedded default flow (whose file states it); a user's flow
        file is checked when it loads."""
        if self.flow_layout is not None and not isinstance(self.flow_layout, ConditionLayout):
            raise ProjectError(f"the flow layout must be a condition layout, got {self.flow_layout!r}")
        layout = self.flow_layout or (STYLEFLOW if self.flow.is_default else None)
        if any(not isinstance(a, str) or not a for a in self.locks):
            raise ProjectError(f"cannot lock {list(self.locks)}: locks are attribute names")
        try:
            names = {layout.canonical(a) if layout is not None else ALIASES.get(a, a) for a in self.locks}
            if layout is not None:
                for e in self.edits:
                    if e.kind == "attribute":
                        layout.canonical(e.key)
        except LayoutError as e:
            raise ProjectError(f"the attribute edits do not fit the flow layout: {e}") from e
        order = (layout or STYLEFLOW).names
        return tuple(sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n)))

    def replace(self, **changes) -> "EditState":
        return dataclasses.replace(self, **changes)

    def mixed(self) -> bool:
        return any(r != 0 for r in self.rows)


def project_dict(state: EditState, *, extras: dict | None = None) -> dict:
    return {"format": PROJECT_FORMAT, "format_version": PROJECT_VERSION, "state": state.to_dict(),
            "extras": dict(extras or {})}


def _is_path_key(key) -> bool:
    return isinstance(key, str) and (key == "path" or key.endswith("_path"))


def project_files(path: str | os.PathLike) -> Path:
    """The folder beside project ``path`` that holds the files saved with it: ``<stem>.files``."""
    path = Path(path)
    return path.with_name(path.stem + PROJECT_FILES_SUFFIX)


def bundle_tuning(path: str | os.PathLike, state: EditState) -> EditState:
    """``state`` with its "keep the person" tuning in the project's own files (``project_files``): a tuning file
    outside the project's folder is copied there (atomically, checked against its pinned sha256), so the project
    reopens identically when its folder is moved or sent to someone else. A tuning already in that folder stays."""
    ref = state.tuning
    if ref is None or ref.path is None:
        return state
    source = Path(ref.path).absolute()
    folder = Path(path).absolute().parent
    if source.is_relative_to(folder):
        return state
    if not source.is_file():
        raise ProjectError(f"the 'keep the person' tuning {source} is missing: it cannot be saved with the project")
    sha = file_sha256(source)
    if ref.sha256 is not None and sha != ref.sha256:
        raise ProjectError(f"the 'keep the person' tuning {source} changed since it was made: its sha256 is "
                           "not the one this face was tuned with")
    copy = project_files(path) / source.name
    if not copy.is_file() or file_sha256(copy) != sha:
        with open(source, "rb") as f:
            atomic_write(copy, lambda out: shutil.copyfileobj(f, out))
    return state.replace(tuning=ModelRef(path=str(copy), sha256=sha))


def save_project(path: str | os.PathLike, state: EditState, *, extras: dict | None = None,
                 bundle: bool = True) -> Path:
    """Save ``state`` as a project file (atomic: a crash never leaves a half-written project). Paths of the files
    it names (model, flow, photo, translation target) are stored relative to the project's folder. ``bundle``: the
    "keep the person" tuning is saved with the project first (``bundle_tuning``; off for autosaves)."""
    if bundle:
        state = bundle_tuning(path, state)
    folder = Path(path).absolute().parent
    return write_text_atomic(path, json.dumps(relative_to(project_dict(state, extras=extras), folder), indent=1)
                             + "\n")


def _resolve_paths(obj, folder: Path):
    """``obj`` with every ``path`` / ``*_path`` entry read relative to ``folder`` (see ``engine.files.paths``)."""
    if isinstance(obj, dict):
        return {k: resolve_from(v, folder) if _is_path_key(k) and isinstance(v, str) else _resolve_paths(v, folder)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve_paths(v, folder) for v in obj]
    return obj


@dataclass(frozen=True)
class _ProjectBody(DictForm, error=ProjectError, unknown="ignore"):
    """What a project file holds under its format keys: the edit state and the free-form ``extras``."""

    state: EditState = field(default_factory=EditState)
    extras: dict = field(default_factory=dict)


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str, *, chunk: int = 1 << 20) -> int:
    """How deep the arrays and objects of the JSON ``text`` nest (brackets inside strings do not count), found
    without parsing it: linear time, memory for one ``chunk`` of brackets."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).encode("ascii")
    deepest = level = 0
    for at in range(0, len(brackets), chunk):
        codes = np.frombuffer(brackets, dtype=np.uint8, count=min(chunk, len(brackets) - at), offset=at)
        levels = level + np.cumsum(np.where((codes == ord("[")) | (codes == ord("{")), 1, -1), dtype=np.int64)
        deepest, level = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


def _read_bounded(path: Path, *, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refusing folders, pipes, devices and files over ``limit`` bytes
    before reading (a pipe is opened without waiting, and checked again once open)."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ProjectError(f"{path} is a folder, not a project file")
        if not stat.S_ISREG(info.st_mode):
            raise ProjectError(f"{path} is not a regular file (a device, pipe or socket), so not a project file")
        if info.st_size > limit:
            raise ProjectError(f"{path.name} holds {info.st_size / 2**20:.0f} MB, more than any project "
                               f"({limit >> 20} MB at most)")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ProjectError(f"{path} is not a regular file, so not a project file")
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise ProjectError(f"no project file at {path}") from None
    except OSError as e:
        raise ProjectError(f"{path.name} cannot be read: {e.strerror or e}") from None
    if len(data) > limit:
        raise ProjectError(f"{path.name} holds more than {limit >> 20} MB, more than any project")
    return data


def _whole_number(text: str):
    """A JSON integer: an ``int``, or an ``Unreadable`` beyond ``NUMBER_DIGITS_LIMIT`` digits (refused with the
    field that holds it)."""
    digits = len(text.lstrip("-"))
    return int(text) if digits <= NUMBER_DIGITS_LIMIT else Unreadable(f"a number of {digits} digits")


def parse_project_json(data: bytes, *, name: str) -> dict:
    """The JSON object of a project file's bytes, its nesting bounded (``JSON_DEPTH_LIMIT``) before parsing."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProjectError(f"{name} is not a project file: byte {e.start} is not UTF-8 text") from None
    depth = json_depth(text)
    if depth > JSON_DEPTH_LIMIT:
        raise ProjectError(f"{name} is not a project file: its data nests {depth} deep (a project nests at most "
                           f"{JSON_DEPTH_LIMIT})")
    try:
        d = json.loads(text, parse_int=_whole_number)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno}, column {e.colno}: {e.msg}"
        raise ProjectError(f"{name} is not a readable project file ({where})") from None
    except (ValueError, RecursionError) as e:
        raise ProjectError(f"{name} is not a readable project file ({e})") from None
    if not isinstance(d, dict):
        raise ProjectError(f"{name} is not a face-editor project (it holds no dictionary)")
    return d


def read_project(path: str | os.PathLike) -> tuple[EditState, dict]:
    """Read a project file: (state, extras). Raises ``ProjectError`` with a readable message."""
    path = Path(path)
    d = parse_project_json(_read_bounded(path, limit=PROJECT_SIZE_LIMIT), name=path.name)
    fmt = d.get("format")
    if fmt != PROJECT_FORMAT:
        raise ProjectError(f"{path.name} is not a face-editor project (format {fmt!r})")
    if d.get("format_version") != PROJECT_VERSION:
        raise ProjectError(f"{path.name} has project format version {d.get('format_version')!r}; this editor reads "
                           f"version {PROJECT_VERSION}")
    body = {k: v for k, v in d.items() if k not in ("format", "format_version")}
    if isinstance(body.get("state"), dict) and "edit_method" not in body["state"]:
        body["state"] = {**body["state"], "edit_method": "flow"}  # written before the choice: the flow edited it
    body = _ProjectBody.from_dict(_resolve_paths(body, path.absolute().parent), what=path.name)
    return body.state, body.extras


def verify_files(state: EditState) -> None:
    """Check that the files ``state`` names (model, flow, translation target, tuning) exist and, where pinned, are
    the same files (sha256): ``ProjectError`` for the first that is not. What rendering checks too, told before it
    starts."""
    refs = [("model", state.model), ("attribute flow", state.flow)]
    if state.translation is not None:
        refs.append(("translation target", state.translation.target))
    if state.tuning is not None:
        refs.append(("'keep the person' tuning", state.tuning))
    for what, ref in refs:
        if ref.is_default:
            continue
        path = Path(ref.path)
        if not path.is_file():
            raise ProjectError(f"the {what} file {path} does not exist (moved or deleted?)")
        if ref.sha256 is not None and file_sha256(path) != ref.sha256:
            raise ProjectError(f"{path.name} is not the {what} file this project was made with (sha256 differs)")
