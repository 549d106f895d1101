"""The backend conformance suite: behaviour every backend must have.

Each subclass sets ``backend`` (a registered name); every test goes through ``omnipickle.dumps``
and ``omnipickle.loads`` with that backend, over every pickle protocol. See the package docstring
for how a third-party backend runs it.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import pickle
import uuid
from pathlib import PurePosixPath
from typing import Any, ClassVar

import pytest

import omnipickle

from .samples import Pair, Slots, Summed, increment

PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))

SAMPLES: dict[str, Any] = {
    "none": None,
    "bools": [True, False],
    "ints": [0, 1, -1, 2**31, -(2**63), 2**200],
    "floats": [0.0, -1.5, 1e308, float("inf")],
    "complex": 3 + 4j,
    "str": "plain ascii",
    "unicode": "ünïcødé ✓ 𝄞",
    "bytes": b"\x00\x01\xff" * 10,
    "bytearray": bytearray(b"mutable"),
    "empty containers": [[], (), {}, set(), frozenset(), "", b""],
    "nested": {"a": [1, (2, 3), {"b": {4, 5}}], "c": frozenset({6})},
    "tuple keys": {(1, 2): "pair", ("x",): "one"},
    "big list": list(range(10_000)),
    "ordered dict": collections.OrderedDict([("z", 1), ("a", 2)]),
    "defaultdict": collections.defaultdict(list, {"k": [1]}),
    "deque": collections.deque([1, 2, 3], maxlen=5),
    "counter": collections.Counter("mississippi"),
    "datetime": datetime.datetime(2026, 11, 27, 12, 30, tzinfo=datetime.UTC),
    "decimal": decimal.Decimal("3.14159"),
    "fraction": fractions.Fraction(22, 7),
    "uuid": uuid.UUID(int=12345),
    "path": PurePosixPath("/tmp/x.pkl"),
    "instance": Pair(1, "two"),
    "slotted instance": Slots(3),
    "instance with __getstate__": Summed([1, 2]),
    "importable function": increment,
    "importable class": Pair,
    "builtin function": len,
    "range": range(1, 10, 2),
    "slice": slice(1, None, 2),
    "ellipsis": ...,
}


def _equal(a: Any, b: Any) -> bool:
    return bool(a == b) and type(a) is type(b)


class BackendConformance:
    """Behaviour every backend must have. Subclasses set ``backend``.

    Attributes:
        backend: the registered name of the backend under test.
        carries_code: whether the backend writes functions that cannot be found by name by
            value (``pickle`` does not: it refuses them).
    """

    backend: ClassVar[str]
    carries_code: ClassVar[bool] = True

    def round_trip(self, obj: Any, protocol: int | None = None) -> Any:
        data = omnipickle.dumps(obj, protocol, backend=self.backend)
        return omnipickle.loads(data)

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    @pytest.mark.parametrize("name", sorted(SAMPLES))
    def test_sample_round_trips_at_every_protocol(self, name: str, protocol: int) -> None:
        obj = SAMPLES[name]
        if name == "slotted instance" and protocol < 2:
            # pickle itself cannot save __slots__ without __getstate__ before protocol 2.
            with pytest.raises(omnipickle.PicklingError, match="at root: "):
                self.round_trip(obj, protocol)
            return
        assert _equal(self.round_trip(obj, protocol), obj)

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_shared_references_stay_shared(self, protocol: int) -> None:
        shared = [1, 2]
        out = self.round_trip({"a": shared, "b": shared, "c": [shared]}, protocol)
        assert out["a"] is out["b"] is out["c"][0]

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_self_referencing_containers_round_trip(self, protocol: int) -> None:
        loop: list[Any] = [1]
        loop.append(loop)
        d: dict[str, Any] = {}
        d["self"] = d
        out_list, out_dict = self.round_trip((loop, d), protocol)
        assert out_list[1] is out_list
        assert out_dict["self"] is out_dict

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_instance_cycle_round_trips(self, protocol: int) -> None:
        a, b = Pair(1, None), Pair(2, None)
        a.b, b.b = b, a
        out = self.round_trip(a, protocol)
        assert out.b.b is out
        assert out.b.a == 2

    def test_out_of_band_buffers_are_passed_to_the_callback(self) -> None:
        big = pickle.PickleBuffer(bytearray(b"x" * 100_000))
        buffers: list[pickle.PickleBuffer] = []
        data = omnipickle.dumps([big, 1], 5, backend=self.backend, buffer_callback=buffers.append)
        assert len(buffers) == 1
        assert len(data) < 10_000  # the buffer is not in the payload
        out = omnipickle.loads(data, buffers=buffers)
        assert bytes(out[0]) == b"x" * 100_000

    def test_out_of_band_payload_without_buffers_is_refused(self) -> None:
        big = pickle.PickleBuffer(bytearray(b"y" * 1000))
        data = omnipickle.dumps(big, 5, backend=self.backend, buffer_callback=lambda b: False)
        with pytest.raises(omnipickle.UnpicklingError, match="buffers"):
            omnipickle.loads(data)

    def test_raw_stream_is_readable_by_pickle(self) -> None:
        data = omnipickle.dumps(SAMPLES["nested"], backend=self.backend, raw=True)
        assert pickle.loads(data) == SAMPLES["nested"]

    def test_envelope_records_the_backend_and_protocol(self) -> None:
        about = omnipickle.info(omnipickle.dumps([1, 2], 3, backend=self.backend))
        assert about.format == "omnipickle"
        assert about.protocol == 3
        assert "pickle" in about.backends

    def test_deep_nesting_round_trips(self) -> None:
        deep: Any = []
        for _ in range(200):
            deep = [deep]
        out = self.round_trip(deep)
        for _ in range(200):
            out = out[0]
        assert out == []

    def test_unpicklable_object_raises_picklingerror_with_path(self) -> None:
        import threading

        holder = Pair(1, {"gen": (i for i in range(3))})
        with pytest.raises(omnipickle.PicklingError) as info:
            omnipickle.dumps({"job": holder, "lock": threading.Lock()}, backend=self.backend)
        assert "root['job'].b['gen']" in str(info.value)
        assert "generator" in str(info.value)
        assert isinstance(info.value, pickle.PicklingError)

    def test_data_naming_backend_internals_is_not_code_by_value(self) -> None:
        """Code by value is what the reducers did, not a word found in the bytes."""
        data = omnipickle.dumps(
            {"tool": "cloudpickle", "x": b"_create_code", "y": "dill._dill"}, backend=self.backend
        )
        assert omnipickle.info(data).by_value is False
        assert omnipickle.loads(data)["tool"] == "cloudpickle"

    def test_importable_function_is_not_code_by_value(self) -> None:
        data = omnipickle.dumps([increment, Pair], backend=self.backend)
        assert omnipickle.info(data).by_value is False

    def test_lambda_is_code_by_value_or_refused(self) -> None:
        def scale(x: int) -> int:
            return x * 3

        if not self.carries_code:
            with pytest.raises(omnipickle.PicklingError, match="at root"):
                omnipickle.dumps(scale, backend=self.backend)
            return
        data = omnipickle.dumps(lambda x: x + 1, backend=self.backend)
        assert omnipickle.info(data).by_value is True
        assert omnipickle.loads(data)(1) == 2
        data = omnipickle.dumps({"f": scale}, backend=self.backend)
        assert omnipickle.info(data).by_value is True
        assert omnipickle.loads(data)["f"](2) == 6
