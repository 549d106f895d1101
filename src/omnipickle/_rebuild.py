"""The constructors payloads call for built-in objects that pickle cannot name or gets wrong.

Type objects of C types without a public name (``type({}.keys())``), descriptors taken from a
class's ``__dict__``, memoryviews, live dict views and the instance attributes of ndarray
subclasses. Like :mod:`omnipickle._reconstruct`, this module is part of the wire format:
payloads name its functions (``omnipickle._rebuild.builtin_type``), so a function here is never
renamed or removed without leaving a shim behind, its signature only ever gains optional
parameters, and the keys of its tables are never renamed. It imports nothing of the package.

Nothing here evaluates text from a payload: a payload names a key of a fixed table, and the
table's entry (written here, never read from the payload) computes the object.
"""

from __future__ import annotations

import builtins
import collections
import marshal
import types
from collections.abc import Callable
from typing import Any

__all__ = [
    "DICT_VIEWS",
    "TYPE_EXPRESSIONS",
    "array_state",
    "builtin_type",
    "descriptor",
    "dict_view",
    "function",
    "memory_view",
]


class _Sequence:
    """Only ``__getitem__``: ``iter()`` of one is the interpreter's plain sequence iterator."""

    def __getitem__(self, index: int) -> Any:
        raise IndexError(index)


def _coroutine_wrapper() -> type:
    async def nothing() -> None:
        return None

    coro = nothing()
    try:
        return type(coro.__await__())
    finally:
        coro.close()


# What each key means: "the type of this expression on builtins", evaluated in the loading
# interpreter. A key is the type's name in the interpreter the table was written for; where a
# later Python merges two of these types (or splits one), both keys still resolve, each to the
# type its own expression has there. The types in the ``types`` module, and every type found by
# its name, are not here: pickle (or cloudpickle's ``_builtin_type``) already writes those.
TYPE_EXPRESSIONS: dict[str, Callable[[], type]] = {
    "dict_keys": lambda: type({}.keys()),
    "dict_values": lambda: type({}.values()),
    "dict_items": lambda: type({}.items()),
    "dict_keyiterator": lambda: type(iter({})),
    "dict_valueiterator": lambda: type(iter({}.values())),
    "dict_itemiterator": lambda: type(iter({}.items())),
    "dict_reversekeyiterator": lambda: type(reversed({})),
    "dict_reversevalueiterator": lambda: type(reversed({}.values())),
    "dict_reverseitemiterator": lambda: type(reversed({}.items())),
    "odict_keys": lambda: type(collections.OrderedDict().keys()),
    "odict_values": lambda: type(collections.OrderedDict().values()),
    "odict_items": lambda: type(collections.OrderedDict().items()),
    "odict_iterator": lambda: type(iter(collections.OrderedDict())),
    "list_iterator": lambda: type(iter([])),
    "list_reverseiterator": lambda: type(reversed([])),
    "tuple_iterator": lambda: type(iter(())),
    "range_iterator": lambda: type(iter(range(0))),
    "longrange_iterator": lambda: type(iter(range(1 << 64))),
    "set_iterator": lambda: type(iter(set())),
    "str_ascii_iterator": lambda: type(iter("")),
    "str_iterator": lambda: type(iter("\u0100")),
    "bytes_iterator": lambda: type(iter(b"")),
    "bytearray_iterator": lambda: type(iter(bytearray())),
    "callable_iterator": lambda: type(iter(int, 1)),
    "iterator": lambda: type(iter(_Sequence())),
    "memory_iterator": lambda: type(iter(memoryview(b""))),
    "coroutine_wrapper": _coroutine_wrapper,
}
"""Keys payloads name, each with the expression whose type it means."""


def builtin_type(key: str) -> type:
    """The built-in type that ``key`` of :data:`TYPE_EXPRESSIONS` names.

    Raises:
        ValueError: ``key`` is not a key of the table (a damaged payload, or one written by a
            later omnipickle with a larger table).
    """
    make = TYPE_EXPRESSIONS.get(key) if type(key) is str else None
    if make is None:
        raise ValueError(f"omnipickle._rebuild.builtin_type: no built-in type is named {key!r}")
    return make()


def descriptor(owner: type, name: str) -> Any:
    """The object ``owner.__dict__[name]`` itself: the member, getset or method descriptor a
    payload refers to by its class and name (``getattr`` would call its ``__get__``, giving the
    attribute's value, or a bound method, instead).

    Raises:
        TypeError: ``owner`` is not a class or ``name`` not a string.
        AttributeError: ``owner`` has no attribute ``name`` of its own.
    """
    if not isinstance(owner, type) or type(name) is not str:
        raise TypeError(
            f"omnipickle._rebuild.descriptor needs a class and a name, not "
            f"{type(owner).__name__} and {type(name).__name__}"
        )
    try:
        return owner.__dict__[name]
    except KeyError:
        raise AttributeError(
            f"{owner.__module__}.{owner.__qualname__} has no attribute {name!r} of its own"
        ) from None


def memory_view(data: bytes | bytearray, format: str, shape: tuple[int, ...] | None) -> memoryview:
    """A memoryview over ``data`` (read-only over ``bytes``, writable over ``bytearray``), cast
    to ``format`` and ``shape`` (``None``: one dimension).

    Raises:
        TypeError: ``data`` is not ``bytes`` or ``bytearray``, or the layout is not a string and
            a tuple of ints.
        ValueError: ``data`` cannot be cast to that layout.
    """
    if type(data) not in (bytes, bytearray) or type(format) is not str:
        raise TypeError(
            f"omnipickle._rebuild.memory_view needs bytes or bytearray and a format string, not "
            f"{type(data).__name__} and {type(format).__name__}"
        )
    view: Any = memoryview(data)  # (typeshed types cast() for literal formats only)
    if shape is None:
        result: memoryview = view if format == "B" else view.cast(format)
        return result
    if type(shape) is not tuple or not all(type(n) is int for n in shape):
        raise TypeError("omnipickle._rebuild.memory_view: a shape is a tuple of ints")
    result = view.cast(format, shape)
    return result


DICT_VIEWS: dict[str, Callable[[Any], Any]] = {
    "keys": dict.keys,
    "values": dict.values,
    "items": dict.items,
    "odict_keys": collections.OrderedDict.keys,
    "odict_values": collections.OrderedDict.values,
    "odict_items": collections.OrderedDict.items,
}
"""The kinds of view :func:`dict_view` makes, each with the (C) method that makes it."""


def dict_view(mapping: Any, kind: str) -> Any:
    """A live view of ``mapping``: ``dict.keys(mapping)`` and so on (:data:`DICT_VIEWS`).

    The methods are the built-in ones, called unbound: a subclass's own ``keys`` never runs.

    Raises:
        ValueError: ``kind`` is not a key of :data:`DICT_VIEWS`.
        TypeError: ``mapping`` is not a dict (an OrderedDict for the ``odict_`` kinds).
    """
    make = DICT_VIEWS.get(kind) if type(kind) is str else None
    if make is None:
        raise ValueError(f"omnipickle._rebuild.dict_view: no kind of view is named {kind!r}")
    return make(mapping)


def array_state(obj: Any, state: tuple[Any, dict[str, Any]]) -> None:
    """Set the state of an ndarray subclass instance: numpy's own (``inner``, given to the
    class's ``__setstate__``), then the instance's attributes, which numpy's pickle leaves out.
    """
    inner, attrs = state
    if inner is not None:
        obj.__setstate__(inner)
    obj.__dict__.update(attrs)


_FunctionType = types.FunctionType
_CellType = types.CellType
_BUILTINS = builtins.__dict__

# Code objects made from marshal bytes, by those bytes: the functions a payload makes from one
# code object share it, as they did where they were written (and a process that loads the same
# function again and again unmarshals it once). Code objects cannot change, so sharing one
# is safe. Small ones only, and not too many.
_CODES: dict[bytes, types.CodeType] = {}
_CODES_MAX = 256
_CODE_MAX_BYTES = 64 * 1024


def _code(data: bytes) -> types.CodeType:
    code = _CODES.get(data)
    if code is None:
        code = marshal.loads(data)
        if type(code) is not types.CodeType:
            raise TypeError(
                f"omnipickle._rebuild.function: the marshal data holds a "
                f"{type(code).__name__}, not a code object"
            )
        if len(data) <= _CODE_MAX_BYTES:
            if len(_CODES) >= _CODES_MAX:
                _CODES.clear()
            _CODES[data] = code
    return code


def function(code: Any, namespace: Any, name: str | None = None, cells: int | None = None) -> Any:
    """A function written by value: both the constructor and, called again, its state setter.

    ``function(code, namespace, name, cells)`` makes the function from the marshal bytes of its
    code object, the dictionary that becomes its ``__globals__`` (shared by the functions of one
    module in one payload), its ``__name__`` (``None``: the code's) and the number of its closure
    cells (``None``: no closure), empty for now. ``function(func, state)`` then fills in what
    may refer back to the function itself, or to objects built after it: ``state`` is
    ``(extra, defaults, cell_values, globals, qualname, module, doc)``, where ``extra`` (or
    ``None``) holds the other attributes to set (``__dict__``, merged, ``__annotations__``,
    ``__kwdefaults__``...) and ``"submodules"``, the modules the code uses as attributes of a
    package, kept only so that loading imports them; ``cell_values`` are the closure cells'
    contents (or ``None``) and ``globals`` the global names the code uses.

    One function for both roles because a payload then names a single global for it (the
    state setter is the same object, which pickle fetches from its memo): finding a global
    costs the unpickler an import lookup each time.

    Raises:
        TypeError: the arguments have neither shape.
        ValueError, EOFError: the code's bytes are not marshal data of this Python version.
    """
    if type(code) is bytes:
        if type(namespace) is not dict or not (cells is None or type(cells) is int):
            raise TypeError(
                "omnipickle._rebuild.function needs code bytes, a dict of globals, a name and "
                "a number of cells"
            )
        namespace["__builtins__"] = _BUILTINS
        closure = None if cells is None else tuple(_CellType() for _ in range(cells))
        return _FunctionType(_code(code), namespace, name, None, closure)
    if type(code) is not _FunctionType or type(namespace) is not tuple or len(namespace) != 7:
        raise TypeError(
            "omnipickle._rebuild.function sets the state of a function from a 7-tuple, not "
            f"{type(code).__name__} and {type(namespace).__name__}"
        )
    func = code
    extra, defaults, values, refs, qualname, module, doc = namespace
    if refs:
        func.__globals__.update(refs)
    func.__qualname__ = qualname
    func.__module__ = module
    func.__doc__ = doc
    if defaults is not None:
        func.__defaults__ = defaults
    if values is not None:
        for cell, value in zip(func.__closure__ or (), values, strict=True):
            cell.cell_contents = value
    if extra:
        for attribute, value in extra.items():
            if attribute == "__dict__":
                func.__dict__.update(value)
            elif attribute != "submodules":
                setattr(func, attribute, value)
    return None
