"""loads(..., restricted=True): allow-listed data only; code only from verified payloads."""

from __future__ import annotations

import decimal
import os
import pickle
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import omnipickle
from helpers import Plain

KEY = b"restricted-key-0123456789"


class _Touch:
    """A malicious object: unpickling it would create ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.path}",))


def test_plain_data_loads_restricted() -> None:
    data = {"a": [1, 2.5, "x", None], "d": decimal.Decimal("1.5"), "b": b"\x00"}
    assert omnipickle.loads(omnipickle.dumps(data), restricted=True) == data


def test_malicious_payload_is_refused_without_side_effect(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for data in (
        pickle.dumps(_Touch(str(marker))),
        omnipickle.dumps(_Touch(str(marker))),
        omnipickle.dumps({"ok": 1, "bad": [_Touch(str(marker))]}, compression="zstd"),
    ):
        with pytest.raises(omnipickle.UnsafePayloadError, match="system"):
            omnipickle.loads(data, restricted=True)
    assert not marker.exists()


def test_code_by_value_needs_a_verified_signature() -> None:
    unsigned = omnipickle.dumps(lambda x: x + 1)
    with pytest.raises(omnipickle.UnsafePayloadError):
        omnipickle.loads(unsigned, restricted=True)
    signed = omnipickle.dumps(lambda x: x + 1, key=KEY)
    with pytest.raises(omnipickle.UnsafePayloadError):
        omnipickle.loads(signed, restricted=True)  # signed, but not verified: no key given
    assert omnipickle.loads(signed, restricted=True, key=KEY)(1) == 2


def test_allow_extends_the_default_set_exactly_or_by_prefix() -> None:
    data = omnipickle.dumps([Plain(1, 2)])
    with pytest.raises(omnipickle.UnsafePayloadError, match=r"helpers\.Plain"):
        omnipickle.loads(data, restricted=True)
    assert omnipickle.loads(data, restricted=True, allow=["helpers.Plain"]) == [Plain(1, 2)]
    assert omnipickle.loads(data, restricted=True, allow=("helpers.*",)) == [Plain(1, 2)]


@pytest.mark.parametrize("allow", [["helpers*"], ["*"], [""], ["helpers..Plain"], [3]])
def test_a_malformed_allow_entry_raises_before_loading(allow: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        omnipickle.loads(omnipickle.dumps(1), restricted=True, allow=allow)


def test_allow_without_restricted_is_refused() -> None:
    with pytest.raises(ValueError, match="restricted=True"):
        omnipickle.loads(omnipickle.dumps(1), allow=["helpers.Plain"])


def test_dill_handled_parts_are_restricted_too() -> None:
    target = Plain(1, 2)
    data = omnipickle.dumps({"t": target, "r": weakref.ref(target)}, key=KEY)
    with pytest.raises(omnipickle.UnsafePayloadError):
        omnipickle.loads(data, restricted=True, allow=["helpers.Plain"])
    out = omnipickle.loads(data, restricted=True, allow=["helpers.Plain"], key=KEY)
    assert out["r"]() is out["t"]


def test_numpy_arrays_and_sections_load_restricted(tmp_path: Path) -> None:
    arrays = {"a": np.arange(100_000.0), "b": np.ones(3, dtype=np.int8)}
    omnipickle.dump(arrays, tmp_path / "a.bin")
    out = omnipickle.load(tmp_path / "a.bin", restricted=True)
    assert np.array_equal(out["a"], arrays["a"]) and np.array_equal(out["b"], arrays["b"])
    out = omnipickle.loads(omnipickle.dumps(arrays), restricted=True)
    assert np.array_equal(out["a"], arrays["a"])


def test_restricted_file_object_of_plain_pickles(tmp_path: Path) -> None:
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with open(path, "rb") as f:
        assert omnipickle.load(f, restricted=True) == {"a": 1}


def test_serializer_holds_restricted_options() -> None:
    s = omnipickle.Serializer(restricted=True, allow=["helpers.Plain"])
    assert s.loads(omnipickle.dumps(Plain(3, 4))) == Plain(3, 4)
    with pytest.raises(omnipickle.UnsafePayloadError):
        s.loads(omnipickle.dumps(lambda: 1))


def test_scan_is_exported_and_static(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    report = omnipickle.scan(pickle.dumps(_Touch(str(marker))))
    assert not report.accepted
    assert not marker.exists()
