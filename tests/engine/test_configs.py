"""engine.files.configs: config dataclasses to dictionaries and back, strictly, with messages in words."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from engine.files.configs import DictForm, from_dict, to_dict


@dataclass(frozen=True)
class Inner(DictForm, what="the inner settings"):
    name: str
    size: int = 4


@dataclass(frozen=True)
class Encoded:
    """A record with its own written form (as project sources have): the helper must use it both ways."""

    value: int

    def to_dict(self) -> dict:
        return {"v": str(self.value)}

    @classmethod
    def from_dict(cls, d: dict) -> Encoded:
        if "v" not in d:
            raise ValueError("an encoded value needs v")
        return cls(int(d["v"]))


@dataclass(frozen=True)
class Outer(DictForm, what="the outer settings"):
    widths: tuple[int, ...]
    scale: float = 1.0
    flag: bool = False
    label: str = "x"
    pair: tuple[float, float] = (0.0, 1.0)
    corners: tuple[tuple[float, float], ...] = ()
    limit: int | None = None
    key: str | int = "a"
    inner: Inner = field(default_factory=lambda: Inner("in"))
    inners: tuple[Inner, ...] = ()
    maybe: Inner | None = None
    encoded: Encoded | None = None
    mixed: tuple = ()

    def __post_init__(self):
        if self.scale < 0:
            raise ValueError(f"scale must be >= 0, got {self.scale}")


FULL = Outer(widths=(8, 16), scale=0.5, flag=True, label="y", pair=(-1.0, 2.0), corners=((0.0, 1.0), (2.0, 3.0)),
             limit=7, key=3, inner=Inner("a", 2), inners=(Inner("b"), Inner("c", 9)), maybe=Inner("m"),
             encoded=Encoded(5), mixed=(64, "M", 128))


def test_round_trip_through_json_restores_tuples_nested_and_own_encodings():
    d = FULL.to_dict()
    assert d["widths"] == [8, 16] and d["corners"] == [[0.0, 1.0], [2.0, 3.0]] and d["encoded"] == {"v": "5"}
    assert d["inner"] == {"name": "a", "size": 2} and d["maybe"] == {"name": "m", "size": 4}
    back = Outer.from_dict(json.loads(json.dumps(d)))
    assert back == FULL and isinstance(back.widths, tuple) and isinstance(back.corners[0], tuple)
    assert hash(back) == hash(FULL)  # every list became a tuple again
    assert to_dict(FULL) == d and from_dict(Outer, d) == FULL


def test_defaults_fill_missing_optional_fields_and_values_are_converted():
    back = Outer.from_dict({"widths": [8.0, 16], "scale": 2, "pair": [0, 3]})
    assert back == Outer(widths=(8, 16), scale=2.0, pair=(0.0, 3.0))
    assert type(back.widths[0]) is int and type(back.scale) is float and type(back.pair[1]) is float
    assert Outer.from_dict({"widths": [], "key": 4}).key == 4 and Outer.from_dict({"widths": [], "key": "b"}).key == "b"


def test_unknown_keys_are_refused_naming_them_and_the_known_ones():
    with pytest.raises(ValueError, match=r"^the outer settings: unknown fields stpes, wings \(known: widths, "
                                         r"scale,") as e:
        Outer.from_dict({"widths": [1], "wings": 2, "stpes": 3})
    assert "Outer" not in str(e.value)
    with pytest.raises(ValueError, match=r"^the outer settings: inner has unknown fields colour"):
        Outer.from_dict({"widths": [1], "inner": {"name": "a", "colour": 1}})


def test_unknown_keys_can_be_ignored_at_every_level():
    d = {"widths": [1], "wings": 2, "inner": {"name": "a", "colour": 1}}
    assert from_dict(Outer, d, unknown="ignore") == Outer(widths=(1,), inner=Inner("a"))
    with pytest.raises(ValueError, match="unknown must be"):
        from_dict(Outer, d, unknown="sometimes")


def test_missing_required_fields_are_refused():
    with pytest.raises(ValueError, match=r"^the outer settings: widths is missing$"):
        Outer.from_dict({"scale": 1.0})
    with pytest.raises(ValueError, match=r"^the outer settings: inners\[1\].name is missing$"):
        Outer.from_dict({"widths": [], "inners": [{"name": "a"}, {"size": 3}]})


@pytest.mark.parametrize("d, message", [
    ({"widths": "8"}, r"widths must be a list of whole numbers, got '8'"),
    ({"widths": [8, 2.5]}, r"widths\[1\] must be a whole number, got 2.5"),
    ({"widths": [True]}, r"widths\[0\] must be a whole number, got True"),
    ({"widths": [], "scale": "1"}, r"scale must be a number, got '1'"),
    ({"widths": [], "scale": False}, r"scale must be a number, got False"),
    ({"widths": [], "flag": 1}, r"flag must be true or false, got 1"),
    ({"widths": [], "label": 3}, r"label must be a text string, got 3"),
    ({"widths": [], "pair": [1, 2, 3]}, r"pair must be a list of 2 numbers, got a list of 3 items"),
    ({"widths": [], "corners": [[0, 1], [2]]}, r"corners\[1\] must be a list of 2 numbers"),
    ({"widths": [], "limit": "7"}, r"limit must be a whole number, got '7'"),
    ({"widths": [], "key": 1.5}, r"key must be a text string or a whole number, got 1.5"),
    ({"widths": [], "inner": [1]}, r"inner must be a dictionary, got a list of 1 items"),
    ({"widths": [], "inner": {"name": 5}}, r"inner.name must be a text string, got 5"),
    ({"widths": [], "encoded": {}}, r"encoded is unusable: an encoded value needs v"),
])
def test_wrong_types_are_refused_with_the_fields_path_and_what_was_found(d, message):
    with pytest.raises(ValueError, match=r"^the outer settings: " + message) as e:
        Outer.from_dict(d)
    assert "Inner" not in str(e.value) and "<class" not in str(e.value)


def test_none_only_where_the_type_allows_it():
    assert Outer.from_dict({"widths": [], "limit": None, "maybe": None}) == Outer(widths=())
    with pytest.raises(ValueError, match=r"inner must be a dictionary, got nothing"):
        Outer.from_dict({"widths": [], "inner": None})


def test_a_non_dictionary_is_refused_in_words():
    with pytest.raises(ValueError, match=r"^the outer settings: expected a dictionary, got a list of 2 items$"):
        Outer.from_dict([1, 2])
    with pytest.raises(ValueError, match=r"^model.pt: invalid architecture: expected a dictionary, got a text string"):
        Outer.from_dict("x" * 50, what="model.pt: invalid architecture")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Strict(DictForm, what="the strict settings", error=SettingsError):
    n: int
    inner: Inner | None = None

    def __post_init__(self):
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")


def test_the_class_checks_still_run_and_errors_take_the_chosen_kind():
    with pytest.raises(ValueError, match=r"^scale must be >= 0, got -1.0$"):
        Outer.from_dict({"widths": [], "scale": -1})
    with pytest.raises(SettingsError, match=r"^the strict settings: n must be >= 0, got -2$"):
        Strict.from_dict({"n": -2})
    with pytest.raises(SettingsError, match=r"^the strict settings: n is missing$"):
        Strict.from_dict({})
    with pytest.raises(SettingsError, match=r"^the strict settings: inner.size must be a whole number"):
        Strict.from_dict({"n": 1, "inner": {"name": "a", "size": "big"}})


@dataclass(frozen=True)
class Positive:
    v: int

    def __post_init__(self):
        if self.v <= 0:
            raise ValueError(f"v must be positive, got {self.v}")


@dataclass(frozen=True)
class Holder(DictForm):
    items: tuple[Positive, ...]


def test_a_nested_class_check_is_reported_at_its_path():
    assert Holder.from_dict({"items": [{"v": 1}]}).items == (Positive(1),)
    with pytest.raises(ValueError, match=r"^the settings: items\[1\] is unusable: v must be positive, got 0$"):
        Holder.from_dict({"items": [{"v": 1}, {"v": 0}]})
