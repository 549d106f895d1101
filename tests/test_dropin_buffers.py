"""``buffer_callback``: a payload needs ``buffers=`` only if a buffer did go out of band.

pickle serializes a buffer in-band when the callback returns a true value; a callback that keeps
every buffer in-band makes a payload that loads alone, from every backend and way to dump.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import pytest

import omnipickle


def _buffers() -> dict[str, Any]:
    return {
        "small": pickle.PickleBuffer(bytearray(b"x" * 100)),
        "big": pickle.PickleBuffer(bytearray(200_000)),
    }


def _dump_in_memory(obj: Any, backend: str, callback: Any, tmp_path: Path) -> bytes:
    return omnipickle.dumps(obj, backend=backend, buffer_callback=callback)


def _dump_to_a_file(obj: Any, backend: str, callback: Any, tmp_path: Path) -> bytes:
    buf = io.BytesIO()
    omnipickle.dump(obj, buf, backend=backend, buffer_callback=callback)
    return buf.getvalue()


def _dump_to_a_path(obj: Any, backend: str, callback: Any, tmp_path: Path) -> bytes:
    path = tmp_path / "out.pkl"
    omnipickle.dump(obj, path, backend=backend, buffer_callback=callback)
    return path.read_bytes()


DUMPERS = {"dumps": _dump_in_memory, "dump-file": _dump_to_a_file, "dump-path": _dump_to_a_path}


@pytest.mark.parametrize("dumper", sorted(DUMPERS))
@pytest.mark.parametrize("backend", ["auto", "pickle", "cloudpickle", "dill"])
def test_a_callback_that_keeps_every_buffer_in_band_makes_a_payload_that_loads_alone(
    backend: str, dumper: str, tmp_path: Path
) -> None:
    seen: list[Any] = []

    def keep(buf: pickle.PickleBuffer) -> bool:
        seen.append(buf)
        return True

    obj = _buffers()
    data = DUMPERS[dumper](obj, backend, keep, tmp_path)
    assert seen  # the callback was asked
    assert omnipickle.info(data).out_of_band is False
    back = omnipickle.loads(data)
    assert bytes(back["small"]) == bytes(obj["small"])


@pytest.mark.parametrize("dumper", sorted(DUMPERS))
@pytest.mark.parametrize("backend", ["auto", "pickle"])
def test_a_buffer_that_went_out_of_band_still_needs_buffers(
    backend: str, dumper: str, tmp_path: Path
) -> None:
    buffers: list[Any] = []

    def keep_small_only(buf: pickle.PickleBuffer) -> bool:
        if buf.raw().nbytes > 1000:
            buffers.append(buf)
            return False
        return True

    obj = _buffers()
    data = DUMPERS[dumper](obj, backend, keep_small_only, tmp_path)
    assert omnipickle.info(data).out_of_band is True
    with pytest.raises(omnipickle.UnpicklingError, match="buffers="):
        omnipickle.loads(data)
    assert bytes(omnipickle.loads(data, buffers=buffers)["small"]) == bytes(obj["small"])
