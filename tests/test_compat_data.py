"""Payloads written by every earlier release (tests/data/v*/) load in this one.

tests/data/make_payloads.py wrote them; each folder's MANIFEST.json says how to load each file
and what it must give back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import omnipickle

DATA_DIR = Path(__file__).parent / "data"

# The value make_payloads.py serialized as "data"; frozen, since old payloads hold it.
EXPECTED_DATA = {
    "ints": [0, 1, -1, 2**70],
    "text": "héllo ✓",
    "bytes": b"\x00\xff" * 4,
    "nested": {"tuple": (1, 2.5, None), "set": [3, 1, 2], "flag": True},
}


def _cases() -> list[Any]:
    cases = []
    for manifest in sorted(DATA_DIR.glob("v*/MANIFEST.json")):
        for name, spec in json.loads(manifest.read_text()).items():
            cases.append(
                pytest.param(manifest.parent / name, spec, id=f"{manifest.parent.name}/{name}")
            )
    return cases


CASES = _cases()


def test_there_is_data_for_at_least_one_release() -> None:
    assert CASES


@pytest.mark.parametrize(("path", "spec"), CASES)
def test_old_payload_loads(path: Path, spec: dict[str, Any]) -> None:
    options = dict(spec["load"])
    if "key" in options:
        options["key"] = options["key"].encode()
    expect: str = spec["expect"]
    if expect == "data":
        assert omnipickle.load(path, **options) == EXPECTED_DATA
        return
    if expect == "arange":
        import numpy as np

        loaded = omnipickle.load(path, **options)["a"]
        assert np.array_equal(loaded, np.arange(20_000, dtype=np.float64))
        mapped = omnipickle.load(path, mmap_mode="r")["a"]
        assert np.array_equal(mapped, loaded)
        return
    if expect == "rows":
        assert omnipickle.load(path, **options) == [{"i": i} for i in range(150_000)]
        return
    assert expect.startswith("function-times-7-on-python-")
    written_by = expect.rsplit("-", 1)[1]
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if written_by == here:
        assert omnipickle.load(path, **options)(6) == 42
    else:
        with pytest.raises(omnipickle.IncompatiblePayloadError, match=written_by):
            omnipickle.load(path, **options)


@pytest.mark.parametrize(("path", "spec"), CASES)
def test_old_payload_info_is_readable(path: Path, spec: dict[str, Any]) -> None:
    about = omnipickle.info(path)
    assert about.format == "omnipickle"
    assert about.checksum_ok is True
