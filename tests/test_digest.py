"""``omnipickle.digest``: the hash of the deterministic pickle, and the adapters built on it
(Dask's tokenize, joblib's hash and Memory, a Beam-style coder)."""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import random
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

import omnipickle
from conftest import check_python
from omnipickle import DeterminismError
from omnipickle.adapters import beam
from omnipickle.adapters import dask as dask_adapter
from omnipickle.adapters import joblib as joblib_adapter

# --- what a digest is -------------------------------------------------------------------------

ALGORITHMS = {
    "blake2b": (hashlib.blake2b, 128),
    "sha256": (hashlib.sha256, 64),
    "xxh3_128": (xxhash.xxh3_128, 32),
}


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_a_digest_is_the_hash_of_the_raw_deterministic_stream(algorithm: str) -> None:
    obj = {"s": {"a", "b", 3}, "f": lambda x: x, "a": np.arange(70_000)}
    make, size = ALGORITHMS[algorithm]
    stream = omnipickle.dumps(obj, protocol=5, deterministic=True, raw=True)
    assert omnipickle.digest(obj, algorithm) == make(stream).hexdigest()
    assert len(omnipickle.digest(obj, algorithm)) == size


def test_the_default_algorithm_is_blake2b() -> None:
    assert omnipickle.digest([1, 2]) == omnipickle.digest([1, 2], "blake2b")


def test_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown digest algorithm 'md4'; choose one of"):
        omnipickle.digest(1, "md4")
    with pytest.raises(TypeError, match="strip_source_info must be True or False"):
        omnipickle.digest(1, strip_source_info="no")  # type: ignore[arg-type]


def test_a_part_without_a_canonical_form_raises_from_digest() -> None:
    class Node:
        pass

    with pytest.raises(DeterminismError, match=r"^root\[1\] is a set of unorderable items"):
        omnipickle.digest([0, {Node(), Node()}])


def _peak_while_digesting(obj: Any) -> int:
    """The most memory Python allocated (numpy reports its own) while ``obj`` was digested."""
    tracemalloc.start()
    try:
        omnipickle.digest(obj)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_array_is_hashed_in_place_without_a_copy() -> None:
    arr = np.random.default_rng(1).random(2_500_000)  # 20 MB
    peak = _peak_while_digesting(arr)
    assert peak < 1 << 20, peak  # a copy would be 20 MB


@pytest.mark.parametrize("kind", ["PickleBuffer", "bytes"])
def test_a_pickle_buffer_and_large_bytes_are_hashed_in_place(kind: str) -> None:
    data = bytearray(b"q" * (8 << 20))
    obj = pickle.PickleBuffer(data) if kind == "PickleBuffer" else bytes(data)
    peak = _peak_while_digesting(obj)
    assert peak < 1 << 20, peak


def test_the_peak_measure_sees_a_copy() -> None:
    """The control for the two tests above: digesting a non-contiguous view copies it."""
    arr = np.random.default_rng(1).random((2_500_000, 2))[:, 0]  # 20 MB, strided
    assert _peak_while_digesting(arr) > 10 << 20


@pytest.mark.parametrize(
    "other",
    [
        np.arange(12.0).reshape(4, 3),  # shape
        np.arange(12, dtype=np.float32).reshape(3, 4),  # dtype
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),  # memory order
        np.arange(1.0, 13.0).reshape(3, 4),  # content
        np.arange(24.0).reshape(3, 8)[:, ::2],  # a strided view (copied: not contiguous)
    ],
    ids=["shape", "dtype", "order", "content", "view"],
)
def test_arrays_that_differ_in_any_way_have_different_digests(other: np.ndarray) -> None:
    base = np.arange(12.0).reshape(3, 4)
    assert omnipickle.digest(base) == omnipickle.digest(base.copy())
    assert omnipickle.digest(other) != omnipickle.digest(base)


def test_strip_source_info_changes_only_code() -> None:
    data = {"k": [1, 2], "s": {"x"}}
    assert omnipickle.digest(data, strip_source_info=True) == omnipickle.digest(data)
    f = lambda: 1  # noqa: E731
    assert omnipickle.digest(f, strip_source_info=True) != omnipickle.digest(f)


# --- properties ---------------------------------------------------------------------------------

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=6)
    | st.binary(max_size=6)
)
_hashables = st.recursive(
    _leaves, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4), max_leaves=6
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4)
        | st.tuples(inner, inner)
        | st.sets(_hashables, max_size=6)
        | st.frozensets(_hashables, max_size=6)
    ),
    max_leaves=24,
)


def rebuild(x: Any) -> Any:
    """An equal copy made of new objects: new strings, bytes and containers, sets filled in
    another order."""
    t = type(x)
    if t is str:
        return "".join(list(x))
    if t is bytes:
        return bytes(bytearray(x))
    if t is int:
        return int(str(x))
    if t is list:
        return [rebuild(v) for v in x]
    if t is tuple:
        return tuple(rebuild(v) for v in x)
    if t is dict:
        return {rebuild(k): rebuild(v) for k, v in x.items()}
    if t in (set, frozenset):
        items = [rebuild(v) for v in x]
        random.Random(len(items)).shuffle(items)
        return t(items)
    return x


def change_first_leaf(x: Any) -> Any:
    """A copy of ``x`` with one leaf changed (or one added to an empty container)."""
    t = type(x)
    if t is list:
        return [change_first_leaf(x[0]), *x[1:]] if x else [0]
    if t is tuple:
        return (change_first_leaf(x[0]), *x[1:])
    if t is dict:
        if not x:
            return {"k": 0}
        first = next(iter(x))
        return {**x, first: change_first_leaf(x[first])}
    if t in (set, frozenset):
        if not x:
            return t({0})
        items = sorted(x, key=repr)
        return t([change_first_leaf(items[0]), *items[1:]])
    if x is None:
        return 0
    if t is bool:
        return not x
    if t is int:
        return x + 1
    if t is float:
        return 0.5 if x != 0.5 else 0.25
    return x + x[:0].__class__("x" if t is str else b"x")  # str and bytes


@settings(max_examples=150, deadline=None)
@given(_values)
def test_equal_inputs_give_equal_digests_and_bytes(value: Any) -> None:
    copy = rebuild(value)
    assert copy == value
    assert omnipickle.digest(copy) == omnipickle.digest(value)
    det = {"deterministic": True}
    assert omnipickle.dumps(copy, **det) == omnipickle.dumps(value, **det)


@settings(max_examples=150, deadline=None)
@given(_values)
def test_a_changed_leaf_changes_the_digest(value: Any) -> None:
    changed = change_first_leaf(value)
    assert changed != value or repr(changed) != repr(value)
    assert omnipickle.digest(changed) != omnipickle.digest(value)


@settings(max_examples=60, deadline=None)
@given(_values)
def test_what_loads_from_a_deterministic_payload_is_equal_and_dumps_the_same(value: Any) -> None:
    data = omnipickle.dumps(value, deterministic=True)
    loaded = omnipickle.loads(data)
    assert loaded == value
    assert omnipickle.dumps(loaded, deterministic=True) == data


# --- Dask -----------------------------------------------------------------------------------

_DASK_SCRIPT = """
import sys, dask.base
import omnipickle.adapters.dask
class Model:
    def __init__(self):
        self.weights = {"w1", "w2", "w3", "w4"}
    def predict(self, x):
        return x
if sys.argv[1] == "register":
    omnipickle.adapters.dask.register()
elif sys.argv[1] == "types":
    omnipickle.adapters.dask.register(Model)
print(dask.base.tokenize(Model(), lambda x: x + 1, {"a", "b", "c", "d", "e"}))
"""


def _dask_tokens(mode: str) -> set[str]:
    seeds = ("1", "2", "3")
    return {
        check_python(mode, code=_DASK_SCRIPT, env_overrides={"PYTHONHASHSEED": s}).strip()
        for s in seeds
    }


def test_dask_tokenizes_main_objects_identically_in_every_process_once_registered() -> None:
    assert len(_dask_tokens("register")) == 1


def test_registering_only_some_types_is_enough_for_those() -> None:
    assert len(_dask_tokens("types")) == 1


def test_dask_alone_gives_those_objects_a_different_token_in_each_process() -> None:
    """The control for the test above."""
    assert len(_dask_tokens("plain")) > 1


def test_the_tokenize_mixin_needs_no_registration() -> None:
    import dask.base

    class Config(dask_adapter.TokenizeMixin):
        def __init__(self, names: set[str]) -> None:
            self.names = names

    names = [f"n{i}" for i in range(30)]
    one, two = Config(set(names)), Config(set(reversed(names)))
    assert dask.base.tokenize(one) == dask.base.tokenize(two)
    assert dask.base.tokenize(one) != dask.base.tokenize(Config({"other"}))


def test_normalize_keeps_an_objects_own_dask_tokenize() -> None:
    class Own:
        def __dask_tokenize__(self) -> str:
            return "mine"

    assert dask_adapter.normalize(Own()) == "mine"
    assert dask_adapter.normalize([1])[0] == "omnipickle"


def test_register_refuses_what_is_not_a_type() -> None:
    with pytest.raises(TypeError, match="register\\(\\) takes types"):
        dask_adapter.register(3)  # type: ignore[arg-type]


# --- joblib ---------------------------------------------------------------------------------


def test_joblib_hash_has_joblibs_signature_and_hashes_what_joblib_cannot() -> None:
    # In a fresh interpreter: importing dill (other tests do) extends the pure-Python pickler
    # joblib.hash is built on, and then it hashes lambdas through dill.
    refused = check_python(
        code="import pickle, joblib\n"
        "try:\n    joblib.hash(lambda x: x)\nexcept pickle.PicklingError:\n    print('refused')\n"
    )
    assert refused.strip() == "refused"
    assert len(joblib_adapter.hash(lambda x: x)) == 32  # md5, as joblib's default
    assert len(joblib_adapter.hash([1], hash_name="sha1")) == 40
    assert joblib_adapter.hash([1], hash_name="xxh3_128") == omnipickle.digest([1], "xxh3_128")
    words = [f"w{i}" for i in range(40)]
    assert joblib_adapter.hash(set(words)) == joblib_adapter.hash(set(reversed(words)))
    with pytest.raises(ValueError, match="hash_name must be"):
        joblib_adapter.hash(1, hash_name="crc")


_MEMORY_SCRIPT = """
import sys
from pathlib import Path
import joblib
from omnipickle.adapters.joblib import cache
calls = Path(sys.argv[2])
def fit(data, key=None, scale=2):
    with calls.open("a") as f:
        f.write("called\\n")
    return sorted(key(x) * scale for x in data)
fit = cache(joblib.Memory(sys.argv[1], verbose=0), fit)
size = lambda s: len(s)
print(fit({"bb", "a", "ccc", "dddd"}, key=size))
print(fit({"dddd", "ccc", "bb", "a"}, size, 2))
"""


def test_joblib_memory_hits_its_cache_from_another_process_and_seed(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    outputs = [
        check_python(
            str(tmp_path / "cache"),
            str(calls),
            code=_MEMORY_SCRIPT,
            env_overrides={"PYTHONHASHSEED": seed},
        )
        for seed in ("5", "6")
    ]
    assert outputs[0] == outputs[1] == "[2, 4, 6, 8]\n[2, 4, 6, 8]\n"
    # One call computed, in the first process; the same call spelled another way, and both
    # calls in the second process (another hash seed), came from the cache.
    assert calls.read_text() == "called\n"


def test_joblib_cache_distinguishes_different_calls(tmp_path: Path) -> None:
    import joblib

    calls = tmp_path / "calls.txt"

    def double(x: int) -> int:
        with calls.open("a") as f:  # the function reads nothing that changes: its key holds
            f.write(f"{x}\n")
        return 2 * x

    cached = joblib_adapter.cache(joblib.Memory(tmp_path / "cache", verbose=0), double)
    assert [cached(1), cached(2), cached(1), cached(x=2)] == [2, 4, 2, 4]
    assert calls.read_text() == "1\n2\n"


def test_joblib_cache_keys_hold_what_the_function_reads() -> None:
    """A closure's values and a global it reads are part of the function: calls of functions
    that differ there are different calls (a mutable global it changes defeats the cache)."""

    def adder(n: int) -> Any:
        return lambda x: x + n

    one, two = adder(1), adder(2)
    assert joblib_adapter.call_key(one, (1,), {}) != joblib_adapter.call_key(two, (1,), {})
    assert joblib_adapter.call_key(one, (1,), {}) == joblib_adapter.call_key(adder(1), (1,), {})


# --- Beam -----------------------------------------------------------------------------------


def test_the_beam_coder_is_deterministic_and_round_trips() -> None:
    coder = beam.DeterministicCoder()
    words = [f"k{i}" for i in range(50)]
    key = ("user", frozenset(words))
    assert coder.is_deterministic() is True
    assert coder.as_deterministic_coder("GroupByKey") is coder
    assert coder.encode(key) == coder.encode(("user", frozenset(reversed(words))))
    assert coder.decode(coder.encode(key)) == key
    assert coder.estimate_size(key) == len(coder.encode(key))
    assert coder == beam.DeterministicCoder() and hash(coder) == hash(beam.DeterministicCoder())
    assert pickle.loads(pickle.dumps(coder)) == coder  # Beam ships coders to its workers


def test_the_beam_coder_subclasses_beams_coder_only_when_beam_is_installed() -> None:
    installed = importlib.util.find_spec("apache_beam") is not None
    bases = [f"{b.__module__}.{b.__qualname__}" for b in beam.DeterministicCoder.__mro__]
    assert ("apache_beam.coders.coders.Coder" in bases) is installed
