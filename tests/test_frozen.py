"""macvland.frozen: the value classes behave as frozen, slotted dataclasses do."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from macvland.frozen import FrozenInstanceError, field, fields, frozen, replace


@frozen
class Point:
    """A point."""

    x: int
    y: int = 0
    tags: frozenset[str] = field(default_factory=frozenset)
    note: str = field(default="", compare=False)

    unit = "mm"  # not annotated: a class attribute, not a field

    def moved(self, by: int) -> Point:
        return replace(self, x=self.x + by)


@frozen
class Labelled(Point):
    label: str = "p"


@frozen(eq=False)
class Handle:
    number: int


@frozen
class Empty:
    pass


@frozen
class One:
    only: str


def test_fields_in_order_a_base_class_first() -> None:
    assert [f.name for f in fields(Labelled)] == ["x", "y", "tags", "note", "label"]
    assert [f.name for f in fields(Point(1))] == ["x", "y", "tags", "note"]
    assert Labelled.__match_args__ == ("x", "y", "tags", "note", "label")


@pytest.mark.parametrize(("made", "expected"), [
    (Point(1), {"x": 1, "y": 0, "tags": frozenset(), "note": ""}),
    (Point(1, 2, frozenset({"a"}), "n"), {"x": 1, "y": 2, "tags": frozenset({"a"}), "note": "n"}),
    (Point(x=3, note="n"), {"x": 3, "y": 0, "tags": frozenset(), "note": "n"}),
    (Labelled(1, label="q"), {"x": 1, "y": 0, "tags": frozenset(), "note": "", "label": "q"}),
    (One("a"), {"only": "a"}),
    (Empty(), {}),
])
def test_construction_and_defaults(made: Any, expected: dict[str, object]) -> None:
    assert {f.name: getattr(made, f.name) for f in fields(made)} == expected


def test_a_factory_makes_a_new_default_for_each_instance() -> None:
    @frozen
    class Bag:
        items: list[int] = field(default_factory=list)

    assert Bag().items is not Bag().items
    assert Bag([1]).items == [1]


@pytest.mark.parametrize(("a", "b", "equal"), [
    (Point(1, 2), Point(1, 2), True),
    (Point(1, 2), Point(1, 3), False),
    (Point(1, note="a"), Point(1, note="b"), True),  # compare=False
    (Point(1), Labelled(1), False),  # another class, even with the same values
    (Labelled(1, label="a"), Labelled(1, label="b"), False),
    (One("a"), One("a"), True),
    (Empty(), Empty(), True),
    (Handle(1), Handle(1), False),  # eq=False: identity
])
def test_equality_and_hash(a: object, b: object, equal: bool) -> None:
    assert (a == b) is equal
    assert (a != b) is not equal
    if equal:
        assert hash(a) == hash(b)


def test_eq_false_keeps_identity() -> None:
    handle = Handle(1)
    assert handle == handle
    assert {handle: 1}[handle] == 1


def test_repr_names_every_field() -> None:
    assert repr(Point(1, note="n")) == "Point(x=1, y=0, tags=frozenset(), note='n')"
    assert repr(One("a")) == "One(only='a')"
    assert repr(Empty()) == "Empty()"


@pytest.mark.parametrize("change", [
    lambda p: setattr(p, "x", 2),
    lambda p: setattr(p, "other", 2),
    lambda p: delattr(p, "x"),
])
def test_instances_are_frozen(change: Any) -> None:
    point = Point(1)
    with pytest.raises(FrozenInstanceError, match="Point is frozen: cannot"):
        change(point)
    assert point.x == 1


def test_slotted_without_a_dict() -> None:
    assert not hasattr(Point(1), "__dict__")
    assert Point.unit == "mm"
    assert Point.__doc__ == "A point."
    assert Point.__qualname__ == "Point"
    assert Point.__init__.__qualname__ == "Point.__init__"


@pytest.mark.parametrize("value", [Point(1, 2, frozenset({"a"}), "n"), Labelled(4), One("a"),
                                   Empty()])
def test_pickle_and_copy_round_trip(value: object) -> None:
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(value, protocol)) == value
    assert copy.copy(value) == value
    assert copy.deepcopy(value) == value


def test_replace() -> None:
    point = Point(1, 2, note="n")
    assert point.moved(2) == Point(3, 2, note="n")
    assert replace(point) == point and replace(point) is not point
    with pytest.raises(TypeError, match="Point has no field z"):
        replace(point, z=1)


def test_missing_and_unknown_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=2)  # type: ignore[call-arg]


def test_match_by_position_and_keyword() -> None:
    match Labelled(1, 2, label="q"):
        case Labelled(1, y, label=label):
            assert (y, label) == (2, "q")
        case _:
            pytest.fail("no match")
