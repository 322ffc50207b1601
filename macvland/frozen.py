"""Frozen, slotted value classes, made for a sixth of what `dataclasses` costs at import.

`@frozen` is `@dataclass(frozen=True, slots=True)` for the model's value classes, with the
same fields, defaults, `field(default=..., default_factory=..., compare=...)`, equality,
hash and repr. Why not dataclasses itself: a one-shot command's start-up is mostly making
classes, and a frozen slotted dataclass compiles its methods one by one and builds its class
twice, about 0.9 ms a class here (the 55 that `macvland plan` imports were 50 ms of its
137), plus 10 ms to import `dataclasses` (which imports `inspect`). Here only `__init__` is
compiled (it runs for every decoded link, so it is worth it); the rest are closures over
the field names: 0.15 ms a class. The daemon's own mutable state (loop.py) still uses
dataclasses: the daemon starts once.

An instance pickles as its class and its fields' values, so loading one is one call of the
class (the kept parse, parsed.py).
"""

from __future__ import annotations

import operator

TYPE_CHECKING = False  # importing typing costs 5 ms of start-up; only mypy needs it
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_: object) -> Callable[[T], T]:
        return lambda decorated: decorated

MISSING: Any = type("Missing", (), {"__repr__": lambda _: "MISSING"})()
"""No default given."""


class FrozenInstanceError(AttributeError):
    """An attempt to change a field of a frozen instance."""


class Field:
    """One field: its name, its default (or a factory that makes one), and whether equality
    and hash look at it."""

    __slots__ = ("compare", "default", "default_factory", "name")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING,
                 compare: bool = True) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.compare = compare


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | Any = MISSING,
          compare: bool = True) -> Any:
    """A field's default or factory, and whether equality and hash compare it."""
    return Field(default, default_factory, compare)


def fields(cls_or_instance: Any) -> tuple[Field, ...]:
    """The fields of a frozen class, in order (a base class's first)."""
    found: tuple[Field, ...] = cls_or_instance.__frozen_fields__
    return found


def replace(instance: T, **changes: Any) -> T:
    """A copy of `instance` with some fields changed."""
    values = {f.name: getattr(instance, f.name) for f in fields(instance)}
    unknown = changes.keys() - values.keys()
    if unknown:
        raise TypeError(f"{type(instance).__name__} has no field {', '.join(sorted(unknown))}")
    values.update(changes)
    return type(instance)(**values)


def _refuse_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"{type(self).__name__} is frozen: cannot assign to {name!r}")


def _refuse_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"{type(self).__name__} is frozen: cannot delete {name!r}")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: type[T] | None = None, /, *, eq: bool = True) -> Any:
    """Make `cls` a frozen, slotted value class whose fields are its annotated attributes
    (every one: unannotated ones stay class attributes); `eq=False` keeps identity's
    equality and hash (for a class whose instances are compared by `is`)."""
    if cls is None:
        return lambda later: _make(later, eq)
    return _make(cls, eq)


def _make(cls: type[T], eq: bool) -> type[T]:
    inherited: tuple[Field, ...] = getattr(cls, "__frozen_fields__", ())
    own = []
    body = dict(cls.__dict__)
    for name in body.get("__annotations__", {}):
        declared = body.pop(name, MISSING)
        f = declared if isinstance(declared, Field) else Field(declared)
        f.name = name
        own.append(f)
    every = (*inherited, *own)
    names = [f.name for f in every]
    compared = [f.name for f in every if f.compare]
    # Each field is set through its slot's own descriptor (bound below, once the class
    # exists): 40% less than object.__setattr__ by name, for every instance ever made.
    scope: dict[str, Any] = {"_MISSING": MISSING}

    parameters, assignments = [], []
    for f in every:
        if f.default is not MISSING:
            scope[f"_default_{f.name}"] = f.default
            parameters.append(f"{f.name}=_default_{f.name}")
            assignments.append(f"_set_{f.name}(self, {f.name})")
        elif f.default_factory is not MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
            parameters.append(f"{f.name}=_MISSING")
            assignments.append(f"_set_{f.name}(self, _factory_{f.name}() "
                               f"if {f.name} is _MISSING else {f.name})")
        else:
            parameters.append(f.name)
            assignments.append(f"_set_{f.name}(self, {f.name})")
    source = "\n    ".join([f"def __init__(self, {', '.join(parameters)}):",
                                *(assignments or ["pass"])])
    exec(source, scope)  # our own text, as dataclasses does
    methods = {"__init__": scope["__init__"], **_methods(names, compared, eq)}
    for name, method in methods.items():
        method.__name__ = name
        method.__qualname__ = f"{cls.__qualname__}.{name}"
    body.update(methods)
    body.update(__setattr__=_refuse_setattr, __delattr__=_refuse_delattr,
                __frozen_fields__=every, __match_args__=tuple(names),
                __slots__=tuple(f.name for f in own))
    body.pop("__dict__", None)
    body.pop("__weakref__", None)
    metaclass: Any = type(cls)
    made: type[T] = metaclass(cls.__name__, cls.__bases__, body)
    made.__qualname__ = cls.__qualname__
    for name in names:  # a base class's slot descriptor sets a subclass's instances too
        scope[f"_set_{name}"] = getattr(made, name).__set__
    return made


def _methods(names: list[str], compared: list[str], eq: bool) -> dict[str, Any]:
    """repr, pickling, equality and hash, as closures over the field names."""
    values, keys = _tuple_of(names), _tuple_of(compared)
    labels = [f"{name}=" for name in names]

    def __repr__(self: object) -> str:
        pairs = zip(labels, values(self), strict=True)
        shown = ", ".join(label + repr(value) for label, value in pairs)
        return f"{type(self).__qualname__}({shown})"

    def __reduce__(self: object) -> tuple[type, tuple[object, ...]]:
        return type(self), values(self)

    made: dict[str, Any] = {"__repr__": __repr__, "__reduce__": __reduce__}
    if eq:
        def __eq__(self: object, other: object) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return keys(self) == keys(other)

        def __hash__(self: object) -> int:
            return hash(keys(self))

        made.update(__eq__=__eq__, __hash__=__hash__)
    return made


def _tuple_of(names: list[str]) -> Callable[[object], tuple[object, ...]]:
    """A function giving an instance's values of `names`, as a tuple even of one or none."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    if names:
        get = operator.attrgetter(names[0])
        return lambda instance: (get(instance),)
    return lambda _: ()
