"""Lean building blocks for the objects a forward pass builds by the dozen (ops, op times).

A scalar ``hwsim.estimate`` builds and prices about a hundred small frozen dataclasses, so what
Python charges per object shows: a frozen dataclass's generated ``__init__`` stores each field
through ``object.__setattr__`` (a call per field), and before Python 3.12
``functools.cached_property`` takes a per-class lock on every first read. The two tools here
keep the semantics (frozen afterwards, the same fields, defaults and ``replace``) without that
cost: :func:`direct_init` and :class:`cached_attribute`; :func:`per_object` memoises a pure
function of an immutable profile.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
C = TypeVar("C", bound=type)


class cached_attribute(Generic[T]):  # noqa: N801 - named like the decorator it replaces
    """``functools.cached_property`` without the lock: computed on first read, then held in the
    instance ``__dict__``, which answers every later read (this is a non-data descriptor), so
    frozen dataclasses can use it."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> cached_attribute[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


def direct_init(cls: C) -> C:
    """Give frozen dataclass ``cls`` an ``__init__`` that fills the instance ``__dict__``
    directly: the generated one's parameters, defaults and default factories, in the same
    order, and no ``object.__setattr__`` call per field (what ``frozen=True`` costs). Only for
    plain dataclasses: every field in ``__init__``, no InitVar, no keyword-only field, no
    ``__post_init__``."""
    fields = dataclasses.fields(cls)
    plain = all(f.init and not f.kw_only for f in fields)
    if not plain or hasattr(cls, "__post_init__"):
        raise TypeError(f"direct_init supports plain dataclasses only, not {cls.__name__}")
    names: dict[str, Any] = {"_FACTORY": _Factory}
    params, lines = [], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            names[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
            lines.append(f"d[{f.name!r}] = {f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            names[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            lines.append(
                f"d[{f.name!r}] = _factory_{f.name}() if {f.name} is _FACTORY else {f.name}"
            )
        else:
            params.append(f.name)
            lines.append(f"d[{f.name!r}] = {f.name}")
    body = "\n    ".join(["d = self.__dict__", *lines])
    source = f"def __init__(self, {', '.join(params)}):\n    {body}\n"
    exec(source, names)  # the same technique dataclasses uses to write __init__
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]
    return cls


class _Factory:
    """Marks a parameter left to its field's default factory."""


K = TypeVar("K")
PER_OBJECT_CACHE_SIZE = 128


def per_object(fn: Callable[[K], T]) -> Callable[[K], T]:
    """Memoise ``fn(x)``, a pure function of an immutable object (a profile), per object: the
    entry holds ``x``, so its id is not reused while it is cached."""
    held: dict[int, tuple[K, T]] = {}

    @functools.wraps(fn)
    def cached(x: K) -> T:
        entry = held.get(id(x))
        if entry is not None and entry[0] is x:
            return entry[1]
        value = fn(x)
        if len(held) >= PER_OBJECT_CACHE_SIZE:
            held.pop(next(iter(held)))
        held[id(x)] = (x, value)
        return value

    return cached


def lazy_names(
    namespace: dict[str, Any], modules: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` (PEP 562) that import each public name of
    ``modules`` (name -> the module defining it) on first use and keep it in ``namespace``
    (the package's ``globals()``), so later lookups skip the hook; importing the package, or
    one of its submodules, loads none of the others."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's own name
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *modules})

    return __getattr__, __dir__
