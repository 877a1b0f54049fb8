"""The edit state of one image and its project file: everything needed to reproduce the picture exactly.

``EditState`` is an immutable snapshot (model reference + sha256, seed, truncation, noise, style-mixing sources and
rows). The editor's document holds one and replaces it on every edit; the engine renders it (``engine.jobs.render``).
Project files are JSON, written atomically; saved latents travel inside them as base64 float32.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.algorithms.flow_edit import AttributeEdit
from engine.algorithms.flow_layout import ALIASES, STYLEFLOW, ConditionLayout, LayoutError
from engine.files.configs import DictForm, from_dict
from engine.files.paths import relative_to, resolve_from
from engine.files.storage import write_text_atomic
from engine.models.stylegan2 import NOISE_MODES
from engine.photos.align import AlignTransform

PROJECT_FORMAT = "face-editor/project"
PROJECT_VERSION = 1
SEED_LIMIT = 2**32
# Where a face's starting condition (the sliders' originals) comes from: the attribute estimator's reading of the
# rendered face, or the flow's own reading of its latent (engine.algorithms.condition_fit, from the estimator's).
ATTRIBUTE_SOURCES = ("estimator", "flow")


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
            if len(self.shape) not in (1, 2) or 4 * int(np.prod(self.shape)) != len(self.latent):
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
        if 4 * sum(int(np.prod(s)) for s in self.shapes) != len(self.data):
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
        """The inverse of ``to_dict`` (the maps' bytes are zlib-compressed base64 there)."""
        if not isinstance(d, dict) or not isinstance(d.get("zlib"), str):
            raise ProjectError("the stored noise maps lack their data (a base64 text under 'zlib')")
        try:
            data = zlib.decompress(base64.b64decode(d["zlib"], validate=True))
        except (ValueError, zlib.error) as e:
            raise ProjectError(f"the stored noise maps are unreadable ({e})") from None
        rest = {k: v for k, v in d.items() if k != "zlib"}
        return from_dict(cls, rest | {"data": data}, what="the noise maps", error=ProjectError, unknown="ignore")


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
        try:
            align = AlignTransform(self.quad, self.size)
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
    encoder file paired with the model (None: the model file's own encoder, if any), which photo inversions start from.

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
    base: Source | None = None
    noise_maps: NoiseMaps | None = None
    photo: PhotoRef | None = None
    translation: Translation | None = None
    encoder: ModelRef | None = None

    def __post_init__(self):
        if not 0 <= self.seed < SEED_LIMIT:
            raise ProjectError(f"seed {self.seed} is out of range [0, 2**32)")
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


def save_project(path: str | os.PathLike, state: EditState, *, extras: dict | None = None) -> Path:
    """Save ``state`` as a project file (atomic: a crash never leaves a half-written project). Paths of the files
    it names (model, flow, photo, translation target) are stored relative to the project's folder."""
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


def read_project(path: str | os.PathLike) -> tuple[EditState, dict]:
    """Read a project file: (state, extras). Raises ``ProjectError`` with a readable message."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ProjectError(f"no project file at {path}") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProjectError(f"{path.name} is not a readable project file ({e})") from e
    fmt = d.get("format") if isinstance(d, dict) else None
    if fmt != PROJECT_FORMAT:
        raise ProjectError(f"{path.name} is not a face-editor project (format {fmt!r})")
    if d.get("format_version") != PROJECT_VERSION:
        raise ProjectError(f"{path.name} has project format version {d.get('format_version')!r}; this editor reads "
                           f"version {PROJECT_VERSION}")
    state = d.get("state") or {}
    if not isinstance(state, dict):
        raise ProjectError(f"{path.name} holds no edit state")
    folder = path.absolute().parent
    extras = d.get("extras") or {}
    if not isinstance(extras, dict):
        raise ProjectError(f"{path.name} has malformed extras")
    return EditState.from_dict(_resolve_paths(state, folder)), _resolve_paths(extras, folder)
