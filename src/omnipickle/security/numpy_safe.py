"""numpy under restricted loading: dtypes and arrays rebuilt only through validating constructors.

numpy's own reconstructors trust their input. A dtype's ``__setstate__`` takes flags, field
offsets and an item size as given, so a payload can build a dtype whose fields overlap, run past
the item, or hold objects; ``ndarray(shape, dtype, buffer, offset, strides)`` and ``_frombuffer``
then turn bytes of the payload's choosing into object pointers (a segfault, or code execution).

So restricted loading never hands a payload numpy's reconstructors, classes or ``__setstate__``.
The names numpy's pickles use are answered by the stand-ins in :data:`STAND_INS`, and a BUILD
on a numpy object is answered by :func:`rebuild`, which builds a *new* object from validated
state with numpy's public constructors (the unpickler puts it where the old one was). What they
accept is a closed set of dtypes (:func:`check_dtype`): booleans, signed and unsigned integers,
floats, complex numbers, datetime64/timedelta64 with a unit, fixed-width bytes and text
(``S``/``U``), and structured dtypes made of those (and subarrays of them) whose fields lie inside
the item and do not overlap. Never the object dtype, a dtype holding objects, a plain void, field
titles or metadata. Arrays are checked against their bytes: ``len(data) == prod(shape) *
itemsize``, data a bytes-like object, order C or F.

numpy is imported only when a payload names one of these globals.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable
from typing import Any

from ..errors import UnsafePayloadError

__all__ = ["STAND_INS", "check_dtype", "is_numpy_object", "rebuild"]

# The base type strings numpy's dtype pickles start from (dtype.__reduce__()[1][0]).
_BASE = re.compile(r"b1|[iu][1248]|f(?:2|4|8|10|12|16)|c(?:8|16|20|24|32)|[SUV][1-9][0-9]*|[Mm]8")
_PLAIN_KINDS = frozenset("biufcSUmM")
_UNITS = frozenset(
    {b"Y", b"M", b"W", b"D", b"h", b"m", b"s", b"ms", b"us", b"ns", b"ps", b"fs", b"as"}
)
_MAX_DIMS = 64  # numpy 2's NPY_MAXDIMS (numpy 1.x: 32, which numpy itself then enforces)


def _np() -> Any:
    import numpy  # only when a payload names numpy

    return numpy


def _refuse(what: str, why: str) -> UnsafePayloadError:
    return UnsafePayloadError(f"restricted loading refused {what}: {why}")


def is_numpy_object(obj: Any) -> bool:
    """Whether ``obj`` is an instance of a numpy type (whose state only numpy may set)."""
    return type(obj).__module__.partition(".")[0] == "numpy"


# --- dtypes ------------------------------------------------------------------------------------


def check_dtype(dt: Any, what: str = "a numpy dtype") -> Any:
    """Return ``dt`` if it is a dtype of the closed set, else refuse it.

    Args:
        dt: the object to check.
        what: names it in the message.

    Raises:
        UnsafePayloadError: ``dt`` is not a numpy dtype, or not one of the closed set.
    """
    np = _np()
    if not isinstance(dt, np.dtype):
        raise _refuse(what, f"expected a numpy dtype, got {type(dt).__name__}")
    if dt.hasobject or dt.metadata is not None or dt.itemsize <= 0:
        raise _refuse(what, f"{dt!r} holds objects, carries metadata or has no size")
    if dt.kind in _PLAIN_KINDS:
        if dt.fields is not None or dt.subdtype is not None:
            raise _refuse(what, f"{dt!r} is not a plain dtype")
        return dt
    if dt.kind != "V":
        raise _refuse(what, f"the {dt!r} dtype is not one restricted loading rebuilds")
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        check_dtype(base, what)
        if base.itemsize * math.prod(shape) != dt.itemsize:
            raise _refuse(what, f"the subarray dtype {dt!r} does not match its item size")
        return dt
    if dt.names is None or not dt.names:
        raise _refuse(what, "a plain void dtype (raw bytes) is not one it rebuilds")
    fields = dt.fields
    if len(fields) != len(dt.names):
        raise _refuse(what, f"the structured dtype {dt!r} has field titles")
    spans = []
    for name in dt.names:
        field = fields[name]
        check_dtype(field[0], what)
        spans.append((field[1], field[1] + field[0].itemsize))
    _check_spans(spans, dt.itemsize, what)
    return dt


def _check_spans(spans: list[tuple[int, int]], itemsize: int, what: str) -> None:
    end = 0
    for start, stop in sorted(spans):
        if start < end or stop > itemsize:
            raise _refuse(what, "its fields overlap or run past the end of the item")
        end = stop


def _int(value: Any, what: str, low: int = 0, high: int = 1 << 62) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _refuse(what, f"expected an int in [{low}, {high}], got {value!r}")
    return value


def _dtype(obj: Any, align: Any = False, copy: Any = False) -> Any:
    """Stands in for ``numpy.dtype``: a dtype from a base type string of the closed set."""
    np = _np()
    if type(align) is not bool or type(copy) is not bool:
        raise _refuse("numpy.dtype(...)", "align and copy must be bools")
    if isinstance(obj, np.dtype):
        return check_dtype(obj)
    if type(obj) is not str or _BASE.fullmatch(obj) is None:
        raise _refuse(f"numpy.dtype({obj!r})", "it is not a type string numpy's pickles write")
    return np.dtype(obj)


def _datetime_dtype(base: str, order: str, meta: Any) -> str:
    what = f"the numpy dtype {base}"
    if type(meta) is not tuple or len(meta) != 2 or meta[0] is not None:
        raise _refuse(what, "expected datetime metadata (None, (unit, num, den, events))")
    unit = meta[1]
    if type(unit) is not tuple or len(unit) != 4:
        raise _refuse(what, "expected a datetime unit (unit, num, den, events)")
    name, num = unit[0], _int(unit[1], what, 1, 2**31 - 1)
    _int(unit[2], what, 1, 1)
    _int(unit[3], what, 1, 1)
    if name == b"generic":
        return order + base
    if type(name) is not bytes or name not in _UNITS:  # never hash a payload's tuple
        raise _refuse(what, f"{name!r} is not a datetime unit")
    return f"{order}{base}[{num}{name.decode('ascii')}]"


def _build_dtype(base: str, state: Any) -> Any:
    """The dtype numpy's pickle describes as ``dtype(base)`` + BUILD ``state``, validated."""
    np = _np()
    what = f"the state of the numpy dtype {base}"
    if type(state) is not tuple or len(state) not in (8, 9):
        raise _refuse(what, "expected numpy's 8- or 9-item dtype state")
    version, order, subarray, names, fields, elsize = state[:6]
    meta = state[8] if len(state) == 9 else None
    if version not in (3, 4) or order not in ("<", ">", "|", "="):
        raise _refuse(what, f"unknown version {version!r} or byte order {order!r}")
    order = "" if order == "|" else order
    kind = base[0]
    if kind in "Mm":
        built = np.dtype(_datetime_dtype(base, order, meta))
    elif meta is not None:
        raise _refuse(what, "dtype metadata is not rebuilt")
    elif kind != "V":
        if subarray is not None or names is not None or fields is not None:
            raise _refuse(what, f"a {base} dtype has no fields or subarray")
        built = np.dtype(order + base)
    elif subarray is not None:
        if type(subarray) is not tuple or len(subarray) != 2:
            raise _refuse(what, "expected a subarray (dtype, shape)")
        sub, shape = subarray
        if type(shape) is int:
            shape = (shape,)
        if type(shape) is not tuple or len(shape) > _MAX_DIMS:
            raise _refuse(what, "expected a subarray shape tuple")
        built = np.dtype((check_dtype(sub, what), tuple(_int(n, what) for n in shape)))
    else:
        built = _structured(base, names, fields, elsize, state[7], what)
    if built.__reduce__()[1][0] != base:
        raise _refuse(what, f"it describes {built!r}, which is not a {base} dtype")
    return check_dtype(built, what)


def _structured(base: str, names: Any, fields: Any, elsize: Any, flags: Any, what: str) -> Any:
    np = _np()
    if type(names) is not tuple or not names or type(fields) is not dict:
        raise _refuse(what, "a void dtype is rebuilt only as a structured dtype")
    if not all(type(n) is str for n in names) or set(fields) != set(names):
        raise _refuse(what, "its field names and fields do not match (titles are not rebuilt)")
    itemsize = _int(elsize, what, 1)
    if itemsize != int(base[1:]):
        raise _refuse(what, f"its item size {itemsize} is not the {base} it names")
    formats, offsets = [], []
    for name in names:
        field = fields[name]
        if type(field) is not tuple or len(field) != 2:
            raise _refuse(what, f"field {name!r} is not (dtype, offset)")
        formats.append(check_dtype(field[0], what))
        offsets.append(_int(field[1], what))
    _check_spans(
        [(o, o + f.itemsize) for o, f in zip(offsets, formats, strict=True)], itemsize, what
    )
    spec = {"names": list(names), "formats": formats, "offsets": offsets, "itemsize": itemsize}
    # NPY_ALIGNED_STRUCT: numpy checks the offsets against the fields' alignment itself.
    aligned = type(flags) is int and bool(flags & 0x80)
    try:
        return np.dtype(spec, align=aligned)
    except ValueError:
        raise _refuse(what, "its offsets are not aligned as it claims") from None


# --- arrays and scalars ------------------------------------------------------------------------


def _shape(shape: Any, what: str) -> tuple[int, ...]:
    if type(shape) is not tuple or len(shape) > _MAX_DIMS:
        raise _refuse(what, f"expected a shape tuple of at most {_MAX_DIMS} ints")
    return tuple(_int(n, what) for n in shape)


def _data(data: Any, nbytes: int, what: str) -> Any:
    """``data`` as a contiguous buffer of exactly ``nbytes`` bytes."""
    if type(data) is str:  # Python 2's str, read as text: numpy encodes it back as latin-1
        try:
            data = data.encode("latin-1")
        except UnicodeEncodeError:
            raise _refuse(what, "its data is text that is not latin-1") from None
    if not isinstance(data, (bytes, bytearray, pickle.PickleBuffer, memoryview)):
        raise _refuse(what, f"expected its data as bytes, got {type(data).__name__}")
    with memoryview(data) as view:
        if not view.contiguous or view.nbytes != nbytes:
            raise _refuse(
                what, f"its data has {view.nbytes} bytes, not the {nbytes} its shape needs"
            )
    return data


def _array(data: Any, dt: Any, shape: tuple[int, ...], order: str, what: str) -> Any:
    np = _np()
    count = math.prod(shape)
    data = _data(data, count * dt.itemsize, what)
    if count == 0:
        return np.empty(shape, dt, order=order)
    return np.frombuffer(data, dtype=dt, count=count).reshape(shape, order=order)


def _build_array(state: Any) -> Any:
    """The array numpy's pickle describes as ``_reconstruct(...)`` + BUILD ``state``."""
    what = "the state of a numpy array"
    if type(state) is tuple and len(state) == 5:
        if state[0] != 1:
            raise _refuse(what, f"unknown version {state[0]!r}")
        state = state[1:]
    if type(state) is not tuple or len(state) != 4:
        raise _refuse(what, "expected (version, shape, dtype, is_fortran, data)")
    shape, dt, fortran, data = state
    if type(fortran) is not bool:
        raise _refuse(what, "is_fortran must be a bool")
    order = "F" if fortran else "C"
    array = _array(data, check_dtype(dt, what), _shape(shape, what), order, what)
    # numpy's own arrays own their data and are writable; copy in the layout they had.
    return array.copy(order=order)


class _NdarrayName:
    """Stands in for ``numpy.ndarray``: a name for ``_reconstruct``, never called itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _refuse(
            "numpy.ndarray(...)", "it builds arrays over any memory; numpy's pickles never call it"
        )

    def __repr__(self) -> str:
        return "<numpy.ndarray, as restricted loading names it>"


_NDARRAY = _NdarrayName()


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> Any:
    """Stands in for ``multiarray._reconstruct``: an empty array, for BUILD to replace."""
    if cls is not _NDARRAY:
        raise _refuse("numpy's _reconstruct", "only plain numpy.ndarray arrays are rebuilt")
    _shape(shape, "numpy's _reconstruct")
    if not isinstance(typecode, (bytes, str)):
        raise _refuse("numpy's _reconstruct", "expected a type code")
    return _np().empty(0, "b")


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> Any:
    """Stands in for ``numeric._frombuffer`` (protocol 5 arrays), checked against its bytes."""
    what = "a numpy array (_frombuffer)"
    if order not in ("C", "F"):
        raise _refuse(what, f"unknown order {order!r}")
    return _array(buf, check_dtype(dtype, what), _shape(shape, what), order, what)


def _scalar(dtype: Any, data: Any = None) -> Any:
    """Stands in for ``multiarray.scalar``: one item of a closed-set dtype from its bytes."""
    what = "a numpy scalar"
    dt = check_dtype(dtype, what)
    data = _data(data, dt.itemsize, what)
    return _np().frombuffer(bytes(data), dtype=dt, count=1)[0]


def rebuild(target: Any, state: Any) -> Any:
    """What a BUILD of ``state`` on the numpy object ``target`` makes: a new, validated object.

    Args:
        target: the numpy object the stream BUILDs (a dtype or an array it made).
        state: the state the stream gives it.

    Returns:
        The replacement, for the unpickler to put wherever ``target`` was.

    Raises:
        UnsafePayloadError: ``target`` is not a dtype or an array, or ``state`` is not one of
            the closed set (:func:`check_dtype`) or does not match its data.
    """
    np = _np()
    if isinstance(target, np.dtype):
        return _build_dtype(target.__reduce__()[1][0], state)
    if type(target) is np.ndarray:
        return _build_array(state)
    raise _refuse(
        f"a BUILD on {type(target).__module__}.{type(target).__qualname__}",
        "only numpy itself may set a numpy object's state",
    )


_NAMES: dict[str, Callable[..., Any] | _NdarrayName] = {
    "numpy.ndarray": _NDARRAY,
    "numpy.dtype": _dtype,
}
for _core in ("core", "_core"):
    _NAMES[f"numpy.{_core}.multiarray._reconstruct"] = _reconstruct
    _NAMES[f"numpy.{_core}.multiarray.scalar"] = _scalar
    _NAMES[f"numpy.{_core}.numeric._frombuffer"] = _frombuffer
del _core

STAND_INS: dict[str, Any] = _NAMES
"""The numpy globals restricted loading answers with its own constructors, by full name."""
