"""Frozen config and record dataclasses to and from plain dictionaries (JSON, or the ``arch`` of a ``torch.save``).

``to_dict(cfg)`` writes every field, tuples as lists and nested dataclasses as dictionaries. ``from_dict(cls, d)``
reads such a dictionary back strictly: unknown keys are refused (naming them and the known ones) unless
``unknown="ignore"``, fields without a default must be present, and every value is checked against the field's type
and converted: ``int`` (whole numbers, also ``3.0`` up to 2**53; never ``True``), ``float`` (any number), ``bool``,
``str``, ``tuple[X, ...]`` and ``tuple[X, Y]`` (from lists), ``X | None``, unions, nested dataclasses (from
dictionaries) and ``dict`` (free-form data, taken as it is). A reader that could not take a value in (a number of
5000 digits) puts an ``Unreadable`` in its place, refused wherever it stands with the field's path. A nested class
with its own ``from_dict`` / ``to_dict`` (a record with a special encoding, such as base64 bytes) is read and
written by it. The class's ``__post_init__`` then checks the values' meaning.

``DictForm`` is the base that gives a config class both methods; the class names what it is in messages::

    @dataclass(frozen=True)
    class EncoderConfig(DictForm, what="the encoder's architecture"):
        resolution: int
        channels: tuple[int, ...]

    EncoderConfig.from_dict({"resolution": 64, "channels": [8, 8]})

Messages are sentences naming the field by its path in the dictionary (``translation.target.path``,
``sources[2].seed``) and what was found, never a Python class name.
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
import types
import typing

from engine.errors import describe

UNKNOWN_KEYS = ("refuse", "ignore")
_SINGULAR = {int: "a whole number", float: "a number", bool: "true or false", str: "a text string"}
_PLURAL = {int: "whole numbers", float: "numbers", bool: "true/false values", str: "text strings"}


class Unreadable:
    """A value a reader could not take in, in its place in the data: ``words`` say what it was ('a number of 5000
    digits'). Any field holding one is refused with its path."""

    __slots__ = ("words",)

    def __init__(self, words: str):
        self.words = words

    def __repr__(self) -> str:
        return self.words


class _Refused(Exception):
    """A value that does not fit its field: where (the field's path) and why (a sentence fragment)."""

    def __init__(self, path: str, text: str):
        super().__init__(path, text)
        self.path, self.text = path, text


@functools.cache
def _hints(cls) -> dict:
    """Field name -> resolved type of the dataclass ``cls`` (its string annotations evaluated once)."""
    return typing.get_type_hints(cls)


def _init_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _kind(tp, *, plural: bool = False) -> str:
    """What a value of type ``tp`` is, in words: 'a whole number', 'a list of numbers' ('lists of ...' if plural)."""
    table = _PLURAL if plural else _SINGULAR
    if tp in table:
        return table[tp]
    if _is_union(tp):
        args = typing.get_args(tp)
        words = " or ".join(_kind(a, plural=plural) for a in args if a is not type(None))
        return f"{words} or nothing" if type(None) in args else words
    if typing.get_origin(tp) is tuple or tp is tuple:
        head = "lists" if plural else "a list"
        args = typing.get_args(tp)
        if not args:
            return head
        if len(args) == 2 and args[1] is Ellipsis:
            return f"{head} of {_kind(args[0], plural=True)}"
        if len(set(args)) == 1:
            return f"{head} of {len(args)} {_kind(args[0], plural=True)}"
        return f"{head} of {len(args)} values"
    if dataclasses.is_dataclass(tp) or tp is dict:
        return "dictionaries" if plural else "a dictionary"
    return "values of another kind" if plural else "a value of another kind"


def _shown(value) -> str:
    """``value`` for a message: small scalars as written, anything else described ('a list of 3 items')."""
    if value is None:
        return "nothing"
    if isinstance(value, (bool, numbers.Number)) or (isinstance(value, str) and len(value) <= 40):
        return repr(value)
    return describe(value)


def _own_codec(cls, name: str) -> bool:
    """Whether ``cls`` reads or writes itself (``name``: 'from_dict' / 'to_dict') other than through ``DictForm``."""
    method, base = getattr(cls, name, None), getattr(DictForm, name)
    return method is not None and getattr(method, "__func__", method) is not getattr(base, "__func__", base)


def _convert(tp, value, path: str, unknown: str):
    """``value`` as a ``tp`` (converted where the written form differs: lists to tuples, dicts to dataclasses)."""
    if isinstance(value, Unreadable):
        raise _Refused(path, f"is unusable: {value.words}")
    if tp is typing.Any or tp is object:
        return value
    if tp is type(None):
        if value is not None:
            raise _Refused(path, f"must be nothing, got {_shown(value)}")
        return None
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, path, unknown)
        exact = [a for a in options if isinstance(a, type) and type(value) is a]
        for option in exact + [a for a in options if a not in exact]:
            try:
                return _convert(option, value, path, unknown)
            except _Refused:
                continue
        raise _Refused(path, f"must be {_kind(tp)}, got {_shown(value)}")
    if tp is bool:
        if not isinstance(value, bool):
            raise _Refused(path, f"must be true or false, got {_shown(value)}")
        return value
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:  # beyond, a float is no count
            return int(value)
        raise _Refused(path, f"must be a whole number, got {_shown(value)}")
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _Refused(path, f"must be a number, got {_shown(value)}")
    if tp is str:
        if not isinstance(value, str):
            raise _Refused(path, f"must be a text string, got {_shown(value)}")
        return value
    if tp is tuple or typing.get_origin(tp) is tuple:
        return _tuple(tp, value, path, unknown)
    if tp is dict:
        if not isinstance(value, dict):
            raise _Refused(path, f"must be a dictionary, got {_shown(value)}")
        _refuse_unreadable(value, path)
        return dict(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _Refused(path, f"must be a dictionary, got {_shown(value)}")
        if _own_codec(tp, "from_dict"):
            try:
                return tp.from_dict(value)
            except (TypeError, ValueError) as e:
                raise _Refused(path, f"is unusable: {e}") from None
        return _build(tp, value, path, unknown)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _Refused(path, f"must be {_kind(tp)}, got {_shown(value)}")


def _refuse_unreadable(data, path: str) -> None:
    """Refuse free-form ``data`` (nested dictionaries and lists) where it holds an ``Unreadable``, naming where."""
    stack = [(data, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, Unreadable):
            raise _Refused(where, f"is unusable: {value.words}")
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}") for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))


def _tuple(tp, value, path: str, unknown: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise _Refused(path, f"must be {_kind(tp)}, got {_shown(value)}")
    args = typing.get_args(tp)
    if not args:  # a bare ``tuple``: the items as they are, inner lists as tuples
        _refuse_unreadable(value, path)
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if len(args) == 2 and args[1] is Ellipsis:
        args = (args[0],) * len(value)
    elif len(value) != len(args):
        raise _Refused(path, f"must be {_kind(tp)}, got {_shown(value)}")
    return tuple(_convert(a, v, f"{path}[{i}]", unknown) for i, (a, v) in enumerate(zip(args, value)))


def _build(cls, d: dict, path: str, unknown: str):
    """``cls(**converted d)``; a nested class's own checks (``__post_init__``) refuse with the nested path."""
    fields = _init_fields(cls)
    names = [f.name for f in fields]
    extra = [str(k) for k in d if k not in names]
    if extra and unknown == "refuse":
        listed = f"unknown fields {', '.join(sorted(extra))} (known: {', '.join(names)})"
        raise _Refused(path, f"has {listed}" if path else listed)
    missing = [f"{path}.{f.name}" if path else f.name for f in fields if f.name not in d
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise _Refused("", f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")
    hints = _hints(cls)
    values = {f.name: _convert(hints[f.name], d[f.name], f"{path}.{f.name}" if path else f.name, unknown)
              for f in fields if f.name in d}
    if not path:
        return cls(**values)
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise _Refused(path, f"is unusable: {e}") from None


def from_dict(cls, d, *, what: str = "the settings", error: type[Exception] = ValueError, unknown: str = "refuse"):
    """A ``cls`` (a dataclass) from its dictionary form ``d`` (see the module docstring).

    ``what`` names the dictionary in messages ("the encoder's architecture", "model.pt: the architecture");
    ``error``: the exception raised for a dictionary that does not fit (a ``ValueError`` subclass);
    ``unknown``: ``"refuse"`` keys that are no field, or ``"ignore"`` them (files a newer version may have written).
    The checks of ``cls.__post_init__`` raise their own errors unchanged when they are ``error``s (else as
    ``error`` with ``what`` in front)."""
    if unknown not in UNKNOWN_KEYS:
        raise ValueError(f"unknown must be one of {', '.join(UNKNOWN_KEYS)}, got {unknown!r}")
    if not isinstance(d, dict):
        raise error(f"{what}: expected a dictionary, got {describe(d)}")
    try:
        return _build(cls, d, "", unknown)
    except _Refused as e:
        raise error(f"{what}: {e.path} {e.text}" if e.path else f"{what}: {e.text}") from None
    except (TypeError, ValueError) as e:
        if isinstance(e, error):
            raise
        raise error(f"{what}: {e}") from None


def to_dict(cfg) -> dict:
    """The dictionary form of the dataclass ``cfg``: every init field, tuples as lists, nested dataclasses as
    dictionaries (through their own ``to_dict`` where they have one), ready for JSON or ``torch.save``."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in _init_fields(type(cfg))}


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if _own_codec(type(value), "to_dict") else to_dict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class DictForm:
    """Base of frozen config dataclasses: ``to_dict()`` and ``from_dict(d)`` through this module.

    Class keywords: ``what`` (how messages name the dictionary, default "the settings"), ``error`` (the exception
    for a dictionary that does not fit, default ``ValueError``), ``unknown`` ("refuse" or "ignore" unknown keys)."""

    _form = {"what": "the settings", "error": ValueError, "unknown": "refuse"}

    def __init_subclass__(cls, *, what: str | None = None, error: type[Exception] | None = None,
                          unknown: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        given = {"what": what, "error": error, "unknown": unknown}
        cls._form = {**cls._form, **{k: v for k, v in given.items() if v is not None}}

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d, *, what: str | None = None):
        """A config from ``to_dict``'s form; ``what`` names it in messages (default: the class's own words)."""
        form = cls._form
        return from_dict(cls, d, what=what or form["what"], error=form["error"], unknown=form["unknown"])
