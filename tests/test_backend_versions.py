"""Payloads record the versions of the backend packages that wrote them (the header's extra
field, ``"versions"``); ``info`` shows them; a load that fails inside a backend's code, read by
another version of it, says which version wrote the payload and which one reads it."""

from __future__ import annotations

import json
import pickle
import weakref
import zlib
from pathlib import Path
from typing import Any

import cloudpickle
import dill
import pytest

import omnipickle
from conftest import check_python, run_python
from helpers import Plain
from omnipickle.format import header as layout

CLI = "import sys; from omnipickle.cli import main; sys.exit(main(sys.argv[1:]))"
OLD = "2.2.1"  # a version of cloudpickle (and of dill) that is not the one installed here


def _rewrite(data: bytes, *, rename: tuple[bytes, bytes] | None = None, **extra: Any) -> bytes:
    """``data`` (uncompressed) with ``extra`` in its header's extra field (``versions=...``),
    and one name in the stream changed for another of the same length; the checksums are made
    to match again."""
    header = layout.parse_header(data)
    lead, stored = data[: header.lead], data[header.payload_offset :]
    if rename is not None:
        assert len(rename[0]) == len(rename[1]) and stored.count(rename[0]) == 1
        stored = stored.replace(*rename)
    rebuilt = layout.build_header(
        flags=header.flags,
        protocol=header.protocol,
        loader=header.loader,
        backend_bits=header.backend_bits,
        codec_id=header.codec_id,
        stored_length=header.stored_length,
        raw_length=header.raw_length,
        checksum=zlib.crc32(stored, zlib.crc32(lead)),
        extra={**header.extra, **extra},
        lead=lead,
    )
    return rebuilt + stored


class FailsInCloudpickle:
    """Loads through cloudpickle's ``_function_setstate`` with a state it cannot use, as a
    payload written for another version of it might give it (the function it is handed is
    importable everywhere, so that the failure is cloudpickle's in any process)."""

    def __reduce__(self) -> Any:
        return (cloudpickle.cloudpickle._function_setstate, (json.dumps, (1, {})))


class FailsInDill:
    """Loads through dill's ``_create_function`` with arguments it cannot use."""

    def __reduce__(self) -> Any:
        return (dill._dill._create_function, (1, 2))


class FailsInItsOwnCode:
    """The user's own ``__setstate__`` raises: nothing to do with the backends' versions."""

    def __reduce__(self) -> Any:
        return (FailsInItsOwnCode, (), {"x": 1})

    def __setstate__(self, state: Any) -> None:
        raise TypeError("the class's own __setstate__ refused the state")


def _by_value_class() -> type:
    """A class that cannot be found by name: the auto backend writes it with cloudpickle's
    reducer (functions by value it rebuilds itself, needing no cloudpickle)."""

    class Local:
        pass

    return Local


# --- what is recorded, and shown -------------------------------------------------------------


def test_a_class_by_value_records_the_cloudpickle_version() -> None:
    payload = omnipickle.dumps(_by_value_class())
    assert omnipickle.info(payload).versions == {"cloudpickle": cloudpickle.__version__}


def test_a_function_by_value_needs_no_cloudpickle_and_records_no_version() -> None:
    payload = omnipickle.dumps(lambda x: x + 1)
    assert omnipickle.info(payload).versions == {}
    assert omnipickle.info(payload).backends == ("pickle",)


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("cloudpickle", {"cloudpickle": cloudpickle.__version__}),
        ("dill", {"dill": dill.__version__}),
    ],
)
def test_each_backend_records_its_own_version(backend: str, expected: dict[str, str]) -> None:
    payload = omnipickle.dumps([1, lambda x: x], backend=backend)
    assert omnipickle.info(payload).versions == expected


def test_a_backend_that_wrote_plain_data_records_no_version() -> None:
    """cloudpickle's backend on plain data writes what pickle writes: nothing of its own."""
    assert omnipickle.info(omnipickle.dumps([1, 2], backend="cloudpickle")).versions == {}


def test_a_dill_part_records_the_dill_version() -> None:
    found = omnipickle.info(omnipickle.dumps({"w": weakref.ref(Plain)})).versions
    assert found["dill"] == dill.__version__


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_records_nothing_and_keeps_its_header_size(protocol: int) -> None:
    data = [{"id": i, "name": f"n{i}"} for i in range(100)]
    payload = omnipickle.dumps(data, protocol)
    described = omnipickle.info(payload)
    assert described.versions == {} and described.extra == {}
    assert "written with" not in str(described)
    assert len(payload) - len(pickle.dumps(data, protocol)) == len(omnipickle.dumps(None)) - len(
        pickle.dumps(None, 5)
    )


def test_a_streamed_file_records_the_versions_too(tmp_path: Path) -> None:
    path = tmp_path / "big.pkl"
    omnipickle.dump([_by_value_class(), bytes(2 << 20)], path)  # past the in-memory size
    assert omnipickle.info(path).versions == {"cloudpickle": cloudpickle.__version__}


def test_payloads_written_before_versions_were_recorded_show_none() -> None:
    """They keep loading (tests/test_compat_data.py loads each one)."""
    files = sorted((Path(__file__).parent / "data").glob("*/*.omni"))
    assert len(files) > 10, "no compatibility payloads found"
    for path in files:
        assert omnipickle.info(path).versions == {}, path


def test_info_shows_the_versions_of_a_payload_a_fresh_interpreter_wrote(tmp_path: Path) -> None:
    path = tmp_path / "job.pkl"
    check_python(
        str(path),
        code=(
            "import sys, omnipickle\n"
            "class Local:\n"
            "    def triple(self, x):\n"
            "        return x * 3\n"
            "omnipickle.dump({'f': Local().triple}, sys.argv[1])\n"
        ),
    )
    proc = run_python("info", str(path), code=CLI)
    assert proc.returncode == 0, proc.stderr
    assert f"written with   cloudpickle {cloudpickle.__version__}" in proc.stdout
    assert "extra.versions" not in proc.stdout
    assert omnipickle.load(path)["f"](2) == 6


def test_info_hands_out_copies_of_the_extra_field() -> None:
    payload = omnipickle.dumps(_by_value_class())
    omnipickle.info(payload).extra["versions"]["cloudpickle"] = "spoiled"
    omnipickle.info(payload).versions["cloudpickle"] = "spoiled"
    assert omnipickle.info(payload).versions == {"cloudpickle": cloudpickle.__version__}


def test_a_malformed_versions_field_is_a_corrupt_header() -> None:
    bad = _rewrite(omnipickle.dumps(lambda x: x, protocol=5), versions=["cloudpickle", 3])
    with pytest.raises(omnipickle.CorruptPayloadError, match="backend versions"):
        omnipickle.info(bad)


def test_readers_ignore_extra_keys_they_do_not_know() -> None:
    """docs/format.md: a later release may add keys; this one loads and describes the payload."""
    future = {"from-the-future": [1, {"x": None}]}
    changed = _rewrite(omnipickle.dumps(lambda x: x - 1, protocol=5), **future)
    assert omnipickle.loads(changed)(1) == 0
    assert omnipickle.info(changed).extra["from-the-future"] == [1, {"x": None}]


# --- a load that fails in a backend's code ------------------------------------------------------


def _failure(payload: bytes, expected: type[BaseException]) -> BaseException:
    with pytest.raises(expected) as caught:
        omnipickle.loads(payload)
    return caught.value


def test_a_failure_in_cloudpickle_names_the_version_that_wrote_and_the_one_that_reads() -> None:
    payload = omnipickle.dumps(FailsInCloudpickle(), backend="cloudpickle")
    old = _rewrite(payload, versions={"cloudpickle": OLD})
    error = _failure(old, TypeError)  # the type pickle raises, kept
    (note,) = error.__notes__
    assert f"written with cloudpickle {OLD}" in note
    assert f"read with cloudpickle {cloudpickle.__version__}" in note


def test_a_failure_in_dill_names_both_dill_versions() -> None:
    payload = omnipickle.dumps(FailsInDill(), backend="dill")
    error = _failure(_rewrite(payload, versions={"dill": OLD}), TypeError)
    assert f"written with dill {OLD} and is read with dill {dill.__version__}" in str(
        error.__notes__
    )


def test_a_reconstructor_this_version_lacks_names_both_versions() -> None:
    """What a payload written by a cloudpickle with other reconstructors gives: the unpickler
    cannot find the name (an AttributeError, as pickle raises it)."""
    payload = omnipickle.dumps(_by_value_class(), protocol=5)
    renamed = _rewrite(
        payload,
        versions={"cloudpickle": OLD},
        rename=(b"_class_setstate", b"_class_setstatX"),
    )
    error = _failure(renamed, AttributeError)
    assert f"written with cloudpickle {OLD}" in error.__notes__[0]


def test_the_same_versions_add_no_note() -> None:
    payload = omnipickle.dumps(FailsInCloudpickle(), backend="cloudpickle")
    error = _failure(payload, TypeError)
    assert not getattr(error, "__notes__", None)


def test_a_failure_in_the_users_own_code_gets_no_note_whatever_the_versions() -> None:
    payload = omnipickle.dumps([lambda x: x, FailsInItsOwnCode()], protocol=5)
    error = _failure(_rewrite(payload, versions={"cloudpickle": OLD}), TypeError)
    assert "refused the state" in str(error)
    assert not getattr(error, "__notes__", None)


def test_a_payload_read_by_another_version_loads_when_nothing_fails() -> None:
    payload = _rewrite(omnipickle.dumps(lambda x: x * 5, protocol=5), versions={"cloudpickle": OLD})
    assert omnipickle.loads(payload)(2) == 10
    assert omnipickle.info(payload).versions == {"cloudpickle": OLD}


def _load_in_a_child(payload: bytes, tmp_path: Path) -> tuple[str, list[str]]:
    """Load ``payload`` in a fresh interpreter: the type and the notes of what it raises."""
    path = tmp_path / "old.pkl"
    path.write_bytes(payload)
    out = check_python(
        str(path),
        code="import json, sys, omnipickle\n"
        "try:\n"
        "    omnipickle.load(sys.argv[1])\n"
        "except Exception as exc:\n"
        "    print(json.dumps([type(exc).__name__, getattr(exc, '__notes__', [])]))\n",
    )
    name, notes = json.loads(out)
    return name, notes


def test_a_fresh_interpreter_says_which_versions_wrote_and_read(tmp_path: Path) -> None:
    payload = omnipickle.dumps(FailsInCloudpickle(), backend="cloudpickle")
    name, notes = _load_in_a_child(_rewrite(payload, versions={"cloudpickle": OLD}), tmp_path)
    assert name == "TypeError"
    assert f"written with cloudpickle {OLD} and is read with cloudpickle" in notes[0]


def test_convert_prints_the_versions_note(tmp_path: Path) -> None:
    source, target = tmp_path / "old.pkl", tmp_path / "new.pkl"
    payload = omnipickle.dumps(FailsInCloudpickle(), backend="cloudpickle")
    source.write_bytes(_rewrite(payload, versions={"cloudpickle": OLD}))
    proc = run_python("convert", str(source), str(target), code=CLI)
    assert proc.returncode == 1
    assert "cannot load it: TypeError" in proc.stderr
    assert f"note: this payload was written with cloudpickle {OLD}" in proc.stderr
    assert not target.exists()


def test_a_missing_module_of_the_users_gets_no_note(tmp_path: Path) -> None:
    """A fresh interpreter without the tests' folder on its path lacks ``helpers``: that is
    the user's module missing, not a backend's, whatever the versions."""
    payload = omnipickle.dumps([lambda x: x, Plain(1, 2)], protocol=5)
    name, notes = _load_in_a_child(_rewrite(payload, versions={"cloudpickle": OLD}), tmp_path)
    assert name.endswith("ModuleNotFoundError") and notes == []  # pickle's type, kept
