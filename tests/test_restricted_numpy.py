"""Legitimate numpy payloads still load restricted, through the validating stand-ins.

A matrix of dtypes x protocols x memory orders x shapes (0-d, empty, larger), out-of-band
buffers, scalars, and the sizes the budget must let through.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import omnipickle
from omnipickle.errors import BudgetExceededError, UnsafePayloadError
from omnipickle.security import Policy, restricted_loads
from omnipickle.security.budget import Limits, default_limits, set_default_limits

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)

DTYPES: list[Any] = [
    "?",
    "i1",
    "<i2",
    ">i4",
    "i8",
    "u1",
    ">u2",
    "u4",
    "u8",
    "f2",
    ">f4",
    "f8",
    "g",
    "c8",
    ">c16",
    "S5",
    "<U3",
    ">U2",
    "M8[s]",
    ">m8[10ms]",
    "M8[D]",
    "M8",
    [("a", "<i4"), ("b", "S3"), ("c", ">f8")],
    [("x", "f8", (2, 3)), ("y", "u1")],
    [("outer", [("inner", "i2"), ("t", "M8[us]")])],
    {"names": ["a", "b"], "formats": ["i4", "i1"], "offsets": [4, 0], "itemsize": 12},
    np.dtype([("a", "i1"), ("b", "<i8")], align=True),
]
SHAPES = [(), (0,), (3, 0), (7,), (4, 5), (2, 3, 4)]


def _sample(dtype: Any, shape: tuple[int, ...], order: str) -> Any:
    dt = np.dtype(dtype)
    count = int(np.prod(shape))
    raw = (np.arange(count * dt.itemsize, dtype=np.uint64) * 37 % 251).astype(np.uint8)
    if dt.kind in "mM":
        raw[:] = 0  # NaT-free values
    return np.frombuffer(raw.tobytes(), dtype=dt).reshape(shape).copy(order=order)


def _same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype.names is None:
        assert a.tobytes(order="A") == b.tobytes(order="A")
    else:  # numpy does not keep the padding between fields
        for name in a.dtype.names:
            assert a[name].tobytes() == b[name].tobytes()
    assert a.flags.f_contiguous == b.flags.f_contiguous
    assert a.flags.c_contiguous == b.flags.c_contiguous


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(np.dtype(d)))
def test_every_closed_set_array_loads_restricted(
    dtype: Any, shape: tuple[int, ...], order: str, protocol: int
) -> None:
    array = _sample(dtype, shape, order)
    loaded = restricted_loads(pickle.dumps(array, protocol))
    _same(loaded, array)
    assert loaded.flags.writeable


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(np.dtype(d)))
def test_dtypes_and_scalars_load_restricted(dtype: Any, protocol: int) -> None:
    dt = np.dtype(dtype)
    scalar = _sample(dt, (1,), "C")[0]
    loaded_dt, loaded_scalar, again = restricted_loads(pickle.dumps([dt, scalar, dt], protocol))
    assert loaded_dt == dt and again is loaded_dt
    assert loaded_dt.isalignedstruct == dt.isalignedstruct or dt.names is None
    assert type(loaded_scalar) is type(scalar)
    assert loaded_scalar.tobytes() == scalar.tobytes()


def test_shared_arrays_and_dtypes_stay_shared() -> None:
    a = np.arange(4, dtype=">i4")
    loaded = restricted_loads(pickle.dumps([a, a, a.dtype, np.zeros(2, ">i4")], 2))
    assert loaded[0] is loaded[1]
    assert loaded[2] == np.dtype(">i4") and loaded[3].dtype == np.dtype(">i4")


@pytest.mark.parametrize("order", ["C", "F"])
def test_out_of_band_buffers_load_restricted(order: str) -> None:
    arrays = [_sample(d, (6, 4), order) for d in ("f8", "<U3", [("a", "i4"), ("b", "S2")])]
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(arrays, 5, buffer_callback=buffers.append)
    for raw in (buffers, [b.raw().tobytes() for b in buffers], [bytearray(b) for b in buffers]):
        for loaded, array in zip(restricted_loads(data, buffers=raw), arrays, strict=True):
            assert loaded.dtype == array.dtype and (loaded == array).all()


def test_a_400_mib_array_through_buffers_loads_without_a_copy() -> None:
    array = np.zeros(400 * 1024 * 1024, dtype=np.uint8)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(array, 5, buffer_callback=buffers.append)
    loaded = restricted_loads(data, buffers=buffers)
    assert loaded.shape == array.shape and np.shares_memory(loaded, array)


def test_omnipickle_sections_of_numpy_arrays_load_restricted() -> None:
    arrays = {"x": np.arange(10**6, dtype="f4").reshape(1000, 1000, order="F"), "t": np.ones(3)}
    loaded = omnipickle.loads(omnipickle.dumps(arrays), restricted=True)
    assert (loaded["x"] == arrays["x"]).all() and (loaded["t"] == 1).all()


def test_two_hundred_thousand_dicts_load_within_the_default_budget() -> None:
    data = [{"id": i, "name": f"n{i}", "tags": ("a", "b")} for i in range(200_000)]
    for protocol in (2, 5):
        assert restricted_loads(pickle.dumps(data, protocol)) == data


def test_a_big_set_and_counter_load_within_the_default_budget() -> None:
    import collections

    data = [set(range(100_000)), collections.Counter(range(50_000)), frozenset("abc")]
    for protocol in PROTOCOLS:
        assert restricted_loads(pickle.dumps(data, protocol)) == data


def test_limits_can_be_set_per_call_and_per_process() -> None:
    data = pickle.dumps(set(range(1000)), 2)  # builtins.set(list of 1000)
    tight = Limits(objects=10, objects_per_byte=0)
    with pytest.raises(BudgetExceededError, match="limit"):
        restricted_loads(data, limits=tight)
    previous = set_default_limits(tight)
    try:
        assert default_limits() is tight
        with pytest.raises(BudgetExceededError):
            restricted_loads(data)
    finally:
        set_default_limits(previous)
    assert restricted_loads(data) == set(range(1000))


@pytest.mark.parametrize("bad", [-1, 1.5, "1"])
def test_limits_must_be_non_negative_ints(bad: Any) -> None:
    with pytest.raises(ValueError, match="non-negative int"):
        Limits(objects=bad)


def test_a_numpy_prefix_still_goes_through_the_stand_ins() -> None:
    payload = pickle.dumps(np.array(["x", 1], dtype=object))
    with pytest.raises(UnsafePayloadError, match=r"numpy\.dtype"):
        restricted_loads(payload, allow=("numpy.*",))


@pytest.mark.parametrize(
    ("name", "args", "refused"),
    [
        ("_codecs.encode", ("x", "latin1"), False),
        ("_codecs.encode", ("x", "rot13"), True),
        ("codecs.encode", (b"x", "zlib"), True),
        ("_codecs.encode", None, True),
        ("builtins.str", (b"x",), False),
        ("builtins.str", (b"x", "utf-8"), False),
        ("builtins.str", (b"x", "punycode"), True),
        ("builtins.bytes", ("x", "idna"), True),
        ("fractions.Fraction", ("-3/4",), False),
        ("fractions.Fraction", ("1e999999999",), True),
        ("fractions.Fraction", (3, 4), False),
        ("fractions.Fraction", (1 << 100_000, 3), True),
        ("builtins.list", None, False),
        ("collections.OrderedDict", ([],), False),
    ],
)
def test_policy_check_call_is_the_one_place_argument_rules_live(
    name: str, args: Any, refused: bool
) -> None:
    assert (Policy.check_call(name, args) is not None) is refused
