"""Condition layouts of attribute flows: what each value of a flow's condition vector means.

A StyleFlow-style flow is conditioned on a vector of ``num_light`` lighting coefficients followed by attributes in a
fixed order (FACTS §8). The numbers alone do not say which value is which, nor which W+ rows an edit of each may
change (FACTS §9), so an edit needs a ``ConditionLayout``: the number of lighting coefficients and the W+ rows a
lighting edit changes, each attribute's name (in condition order), W+ rows, slider range and degree, and the row
count ``num_ws`` the row numbers are written for (``None``: the generator's own rows).

``STYLEFLOW`` is StyleFlow's released layout: 9 SH coefficients (rows 7-11), then gender, glasses, yaw, pitch,
baldness, beard, age, expression with StyleFlow's rows, slider ranges and degrees, row numbers for 18 W+ rows.

Two written forms, both read by ``parse_layout`` (the editor's ``--flow-layout``, ``main.py info --flow-layout``)
and accepted by the editor's layout dialog:

* JSON, ``ConditionLayout.to_dict()``::

    {"num_light": 4, "lighting_rows": [7, 8], "num_ws": 10,
     "attributes": [{"name": "age", "rows": [4, 5, 6, 7], "range": [0, 65], "degree": 0.93}, ...]}

* a one-line text, ``ConditionLayout.to_text()``, entries separated by ``;``::

    light=4@7-8; ws=10; age@4-7=0..65*0.93; smile@4-5; hat@0-3=-1..1

  ``light=N@ROWS`` (``light=0`` for none), ``ws=N`` optional, then one ``NAME@ROWS[=LO..HI][*DEGREE]`` per attribute
  in condition order; ROWS like ``0-3,8``. An attribute without a range or degree takes StyleFlow's when StyleFlow
  has that attribute, else the range 0..1 and degree 1.

Everything here is plain data and pure functions; nothing imports torch.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from engine.files.configs import DictForm

ALIASES: dict[str, str] = {"smile": "expression"}  # the attribute estimator calls expression 'smile'
DEFAULT_RANGE = (0.0, 1.0)
DEFAULT_DEGREE = 1.0
SH_COEFFICIENTS = 9  # the attribute estimator reads 2nd-order spherical-harmonics lighting: 9 coefficients

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_RESERVED = re.compile(r"light|ws|sh\d+", re.IGNORECASE)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ATTRIBUTE_ENTRY = re.compile(rf"(?P<name>[^@=*]+)@(?P<rows>[^=*]+)(?:=(?P<lo>{_NUMBER})\.\.(?P<hi>{_NUMBER}))?"
                              rf"(?:\*(?P<degree>{_NUMBER}))?")
TEXT_FORM = "'light=N@ROWS; NAME@ROWS[=LO..HI][*DEGREE]; …' (ROWS like 0-3,8; optional 'ws=N')"
FLOW_LAYOUT_HELP = ("what the flow's condition values are, for a flow file that does not say it: a JSON file "
                    "(num_light, lighting_rows, num_ws, attributes: name, rows, range, degree), 'styleflow', or text "
                    "like 'light=9@7-11; ws=18; age@4-7=0..65*0.93; smile@4-5' - the lighting coefficients first "
                    "(light=0 for none), then each attribute in condition order with the W+ rows its edit changes, "
                    "optionally its slider range and degree (default: StyleFlow's for its attributes, else 0..1 and 1)")


class LayoutError(ValueError):
    """A condition layout that is malformed, does not fit its flow, or is missing; the message says what to pass."""


def _rows(rows, what: str, num_ws: int | None) -> tuple[int, ...]:
    try:
        out = tuple(sorted({int(r) for r in rows}))
        if any(isinstance(r, bool) or int(r) != r for r in rows):
            raise TypeError
    except (TypeError, ValueError):
        raise LayoutError(f"the W+ rows of {what} must be whole numbers, got {rows!r}") from None
    if not out:
        raise LayoutError(f"{what} needs at least one W+ row")
    if out[0] < 0:
        raise LayoutError(f"the W+ rows of {what} must be 0 or more, got {out[0]}")
    if num_ws is not None and out[-1] >= num_ws:
        raise LayoutError(f"{what} names W+ row {out[-1]}, but the layout's row numbers are for {num_ws} rows "
                          f"(0..{num_ws - 1})")
    return out


def _number(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LayoutError(f"{what} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise LayoutError(f"{what} must be a finite number, got {value!r}")
    return v


@dataclass(frozen=True)
class AttributeSpec(DictForm, what="the attribute", error=LayoutError):
    """One attribute of a condition: its name, the W+ rows its edit changes, its slider range and degree
    (StyleFlow's target rule ``original + degree * (slider - original)``, FACTS §9). A range or degree left None
    is StyleFlow's for its attributes, else ``DEFAULT_RANGE`` / ``DEFAULT_DEGREE``."""

    name: str
    rows: tuple[int, ...]
    range: tuple[float, float] | None = None
    degree: float | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name) or _RESERVED.fullmatch(self.name):
            raise LayoutError(f"an attribute name must be a letter followed by letters, digits or '_' and not "
                              f"'light', 'ws' or 'sh<number>', got {self.name!r}")
        if self.range is None or self.degree is None:
            rng, degree = _defaults(self.name)
            object.__setattr__(self, "range", rng if self.range is None else self.range)
            object.__setattr__(self, "degree", degree if self.degree is None else self.degree)
        try:
            lo, hi = self.range
        except (TypeError, ValueError):
            raise LayoutError(f"the range of {self.name} must be two numbers (low, high), got {self.range!r}") from None
        lo, hi = _number(lo, f"the low end of {self.name}'s range"), _number(hi, f"the high end of {self.name}'s range")
        if not lo < hi:
            raise LayoutError(f"the range of {self.name} must go from low to high, got {lo:g}..{hi:g}")
        degree = _number(self.degree, f"the degree of {self.name}")
        if degree == 0:
            raise LayoutError(f"the degree of {self.name} must not be 0 (the slider would do nothing)")
        object.__setattr__(self, "rows", _rows(self.rows, f"attribute {self.name}", None))
        object.__setattr__(self, "range", (lo, hi))
        object.__setattr__(self, "degree", degree)


@dataclass(frozen=True)
class ConditionLayout(DictForm, what="the layout", error=LayoutError):
    """What a flow's condition vector holds: ``num_light`` lighting coefficients (their edit changes
    ``lighting_rows``), then ``attributes`` in condition order. ``num_ws``: the W+ row count the row numbers are
    written for; a generator with another count maps them by resolution (``flow_edit.rows_mask``); None: they are
    the generator's own row numbers, and a row it does not have is an error."""

    num_light: int
    attributes: tuple[AttributeSpec, ...]
    lighting_rows: tuple[int, ...] = ()
    num_ws: int | None = None

    def __post_init__(self):
        if isinstance(self.num_light, bool) or not isinstance(self.num_light, int) or self.num_light < 0:
            raise LayoutError(f"the number of lighting coefficients must be a whole number >= 0, got "
                              f"{self.num_light!r}")
        if self.num_ws is not None and (isinstance(self.num_ws, bool) or not isinstance(self.num_ws, int)
                                        or self.num_ws < 1):
            raise LayoutError(f"the layout's W+ row count must be a whole number >= 1, got {self.num_ws!r}")
        attributes = tuple(self.attributes)
        if not all(isinstance(a, AttributeSpec) for a in attributes):
            raise LayoutError("the attributes of a layout must be AttributeSpec entries")
        names = [a.name for a in attributes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise LayoutError(f"attribute names must be unique; given more than once: {', '.join(twice)}")
        if self.num_light + len(attributes) == 0:
            raise LayoutError("a layout needs lighting coefficients or attributes")
        for a in attributes:
            _rows(a.rows, f"attribute {a.name}", self.num_ws)
        if self.num_light:
            lighting = _rows(self.lighting_rows, "the lighting", self.num_ws)
        elif self.lighting_rows:
            raise LayoutError("lighting rows were given, but the layout has no lighting coefficients")
        else:
            lighting = ()
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "lighting_rows", lighting)

    # ----- what the condition holds

    @property
    def cond_dim(self) -> int:
        return self.num_light + len(self.attributes)

    @property
    def names(self) -> tuple[str, ...]:
        """Attribute names in condition order."""
        return tuple(a.name for a in self.attributes)

    @property
    def condition_names(self) -> tuple[str, ...]:
        """A name per condition value: ``sh0 .. sh<num_light-1>``, then the attributes."""
        return tuple(f"sh{i}" for i in range(self.num_light)) + self.names

    def canonical(self, name: str) -> str:
        """The layout's name for attribute ``name`` (``'smile'`` and ``'expression'`` name the same attribute);
        LayoutError for an attribute the layout does not have."""
        names = self.names
        if name in names:
            return name
        for a, b in ALIASES.items():
            for given, other in ((a, b), (b, a)):
                if name == given and other in names:
                    return other
        raise LayoutError(f"unknown attribute {name!r}; this flow's attributes: {', '.join(names) or 'none'}")

    def spec(self, name: str) -> AttributeSpec:
        return self.attributes[self.names.index(self.canonical(name))]

    def index(self, name: str) -> int:
        """Position of attribute ``name`` in the condition vector."""
        return self.num_light + self.names.index(self.canonical(name))

    def neutral(self) -> tuple[float, ...]:
        """A starting value per condition entry for a face the estimator cannot measure: lighting 0, each attribute
        the middle of its slider range."""
        return (0.0,) * self.num_light + tuple((a.range[0] + a.range[1]) / 2 for a in self.attributes)

    def match(self, names) -> tuple[int | None, ...]:
        """For each condition entry, its column among an estimator's output ``names`` (None: not read). Attributes
        match by name (``'smile'`` is expression); lighting matches ``sh0..sh8`` only when the layout has exactly 9
        coefficients, the 2nd-order SH lighting the estimator reads."""
        names = list(names)
        columns: list[int | None] = []
        for i in range(self.num_light):
            key = f"sh{i}"
            columns.append(names.index(key) if self.num_light == SH_COEFFICIENTS and key in names else None)
        for a in self.names:
            found = None
            for candidate in (a, ALIASES.get(a), *(k for k, v in ALIASES.items() if v == a)):
                if candidate is not None and candidate in names:
                    found = names.index(candidate)
                    break
            columns.append(found)
        return tuple(columns)

    def check_size(self, cond_dim: int, *, what: str = "the flow") -> None:
        """LayoutError unless the layout describes a condition of ``cond_dim`` values."""
        if self.cond_dim != cond_dim:
            raise LayoutError(f"the layout describes {self.num_light} lighting coefficients and "
                              f"{len(self.attributes)} attributes ({self.cond_dim} values), but {what} takes a "
                              f"condition of {cond_dim} values")

    # ----- written forms (``to_dict`` / ``from_dict``: ``DictForm``)

    def to_text(self) -> str:
        """The one-line form (``parse_layout`` reads it back to an equal layout)."""
        light = f"light={self.num_light}" + (f"@{rows_text(self.lighting_rows)}" if self.num_light else "")
        parts = [light] + ([f"ws={self.num_ws}"] if self.num_ws is not None else [])
        parts += [f"{a.name}@{rows_text(a.rows)}={a.range[0]:g}..{a.range[1]:g}*{a.degree:g}"
                  for a in self.attributes]
        return "; ".join(parts)

    def describe(self) -> str:
        """One line for people: 'light 9 (rows 7-11), then gender (rows 0-7), …'."""
        head = f"{self.num_light} lighting coefficients" + (
            f" (rows {rows_text(self.lighting_rows)})" if self.num_light else "")
        body = ", ".join(f"{a.name} (rows {rows_text(a.rows)})" for a in self.attributes)
        return f"{head}, then {body}" if body else head


def rows_text(rows: tuple[int, ...]) -> str:
    """(0, 1, 2, 3, 8) -> '0-3,8'."""
    runs, start = [], None
    for i, r in enumerate(rows):
        if start is None:
            start = r
        if i + 1 == len(rows) or rows[i + 1] != r + 1:
            runs.append(f"{start}" if start == r else f"{start}-{r}")
            start = None
    return ",".join(runs)


def parse_rows(text: str, what: str = "the attribute") -> tuple[int, ...]:
    """'0-3,8' -> (0, 1, 2, 3, 8)."""
    rows: list[int] = []
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise LayoutError(f"cannot read the W+ rows {text!r} of {what}: write them like 0-3,8")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise LayoutError(f"the row range {part} of {what} runs backwards")
        rows += range(a, b + 1)
    return tuple(rows)


def _styleflow() -> ConditionLayout:
    spec = [("gender", range(0, 8), (0.0, 1.0), 1.5), ("glasses", (2, 3), (0.0, 1.0), 2.5),
            ("yaw", range(0, 4), (-20.0, 20.0), 1.0), ("pitch", range(0, 4), (-20.0, 20.0), 1.0),
            ("baldness", range(0, 6), (0.0, 1.0), 2.0), ("beard", range(5, 10), (0.0, 1.0), 1.7),
            ("age", range(4, 8), (0.0, 65.0), 0.93), ("expression", (4, 5), (0.0, 1.0), 1.0)]
    return ConditionLayout(num_light=9, attributes=tuple(AttributeSpec(n, tuple(r), g, d) for n, r, g, d in spec),
                           lighting_rows=tuple(range(7, 12)), num_ws=18)


STYLEFLOW = _styleflow()


def _defaults(name: str) -> tuple[tuple[float, float], float]:
    """Range and degree of an attribute written without them: StyleFlow's for its attributes, else 0..1 and 1."""
    if name in STYLEFLOW.names or ALIASES.get(name) in STYLEFLOW.names:
        a = STYLEFLOW.spec(name)
        return a.range, a.degree
    return DEFAULT_RANGE, DEFAULT_DEGREE


def parse_text(text: str) -> ConditionLayout:
    """Read the one-line form (see the module docstring); ``'styleflow'`` is ``STYLEFLOW``."""
    if text.strip().lower() == "styleflow":
        return STYLEFLOW
    num_light, lighting, num_ws, specs = None, (), None, []
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        key = entry.split("=", 1)[0].strip().lower()
        if key == "light":
            m = re.fullmatch(r"light\s*=\s*(\d+)\s*(?:@(.+))?", entry, re.IGNORECASE)
            if not m or num_light is not None:
                raise LayoutError(f"cannot read {entry!r}: write the lighting once, as light=N@ROWS (light=0 for none)")
            num_light = int(m.group(1))
            lighting = parse_rows(m.group(2), "the lighting") if m.group(2) else ()
            if num_light and not lighting:
                raise LayoutError(f"{entry!r}: give the W+ rows a lighting edit changes, e.g. light={num_light}@7-11")
        elif key == "ws":
            m = re.fullmatch(r"ws\s*=\s*(\d+)", entry, re.IGNORECASE)
            if not m:
                raise LayoutError(f"cannot read {entry!r}: write the row count as ws=N")
            num_ws = int(m.group(1))
        else:
            m = _ATTRIBUTE_ENTRY.fullmatch(entry.replace(" ", ""))
            if not m:
                raise LayoutError(f"cannot read {entry!r}: write an attribute as NAME@ROWS[=LO..HI][*DEGREE], "
                                  "e.g. age@4-7=0..65*0.93")
            name = m.group("name")
            rng = None if m.group("lo") is None else (float(m.group("lo")), float(m.group("hi")))
            degree = None if m.group("degree") is None else float(m.group("degree"))
            specs.append(AttributeSpec(name, parse_rows(m.group("rows"), name), rng, degree))
    if num_light is None:
        raise LayoutError(f"the layout text must say how many lighting coefficients come first (light=N@ROWS, or "
                          f"light=0); the form is {TEXT_FORM}")
    return ConditionLayout(num_light=num_light, attributes=tuple(specs), lighting_rows=lighting, num_ws=num_ws)


def parse_layout(value: str) -> ConditionLayout:
    """A layout from a command-line value: a JSON file's path (``to_dict`` form), ``styleflow``, or the one-line
    text form."""
    text = value.strip()
    path = Path(text).expanduser()
    if text.lower().endswith(".json") or (";" not in text and "@" not in text and path.is_file()):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LayoutError(f"no layout file at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LayoutError(f"{path.name} is not a readable JSON layout ({e})") from None
        return ConditionLayout.from_dict(data)
    return parse_text(text)


def missing_layout_message(label: str, cond_dim: int) -> str:
    """What to tell a user whose flow file does not state its layout (and whose size is not StyleFlow's)."""
    light = max(cond_dim - 1, 0)
    example = (f"light={light}@7-11; " if light else "light=0; ") + "attr1@4-7"
    return (f"{label}: the flow takes a condition of {cond_dim} values, but the file does not say what they are "
            f"(how many lighting coefficients come first, then which attributes in which order, and the W+ rows "
            f"each one edits), and it is not StyleFlow's layout of {STYLEFLOW.cond_dim}. Give the layout: with "
            f"--flow-layout, as a JSON file or as text of the form {TEXT_FORM} whose lighting coefficients and "
            f"attributes add up to {cond_dim} (e.g. '{example}'); in the editor, in the layout dialog (File > "
            f"Open attribute flow…, or Layout… in the Attributes panel).")


__all__ = ["ALIASES", "DEFAULT_RANGE", "DEFAULT_DEGREE", "SH_COEFFICIENTS", "TEXT_FORM", "FLOW_LAYOUT_HELP",
           "LayoutError", "AttributeSpec", "ConditionLayout", "STYLEFLOW", "parse_rows", "parse_text", "parse_layout",
           "rows_text", "missing_layout_message"]
