"""dump/load with paths and file objects."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import check_python

OBJ = {"rows": [{"i": i, "s": str(i)} for i in range(500)]}


# A small payload of plain data is written from memory in one system call (files.atomic_write);
# anything else goes through the streaming writer (files.atomic_writer). Both must keep every
# promise about files: each test below runs both ways.
WRITE_PATHS = [
    pytest.param(lambda value: value, id="small"),
    pytest.param(lambda value: [value] * 100, id="streamed"),
]


def test_dump_to_a_path_and_load_it_back(tmp_path: Path) -> None:
    path = tmp_path / "obj.pkl"
    omnipickle.dump(OBJ, path)
    assert omnipickle.load(path) == OBJ
    assert omnipickle.load(str(path)) == OBJ


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [
        (".pkl", None),
        (".gz", "gzip"),
        (".bz2", "bz2"),
        (".xz", "lzma"),
        (".lzma", "lzma"),
        (".zst", "zstd"),
        (".lz4", "lz4"),
        (".pkl.zst", "zstd"),
    ],
)
def test_compression_is_inferred_from_the_suffix(tmp_path: Path, suffix: str, codec: Any) -> None:
    path = tmp_path / f"obj{suffix}"
    omnipickle.dump(OBJ, path)
    assert omnipickle.info(path).codec == codec
    assert omnipickle.load(path) == OBJ


def test_explicit_compression_wins_over_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "obj.gz"
    omnipickle.dump(OBJ, path, compression="bz2")
    assert omnipickle.info(path).codec == "bz2"


def test_renamed_compressed_file_loads_by_its_content(tmp_path: Path) -> None:
    path = tmp_path / "obj.zst"
    omnipickle.dump(OBJ, path)
    renamed = path.rename(tmp_path / "misleading.gz")
    assert omnipickle.load(renamed) == OBJ


@pytest.mark.parametrize("wrap", WRITE_PATHS)
def test_dump_replaces_the_file_atomically_and_leaves_no_temporary(
    tmp_path: Path, wrap: Any
) -> None:
    path = tmp_path / "obj.pkl"
    omnipickle.dump(wrap("old"), path)
    omnipickle.dump(wrap("new"), path)
    assert omnipickle.load(path) == wrap("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.pkl"]


def test_failed_dump_leaves_the_old_file_untouched_and_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "obj.pkl"
    omnipickle.dump("old", path)
    before = path.read_bytes()
    with pytest.raises(omnipickle.PicklingError):
        omnipickle.dump({"ok": 1, "bad": (i for i in range(3))}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.pkl"]


def test_failed_dump_to_a_new_path_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(omnipickle.PicklingError):
        omnipickle.dump((i for i in range(3)), tmp_path / "new.pkl")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("wrap", WRITE_PATHS)
def test_new_file_gets_the_usual_permissions(tmp_path: Path, wrap: Any) -> None:
    path = tmp_path / "obj.pkl"
    omnipickle.dump(wrap(1), path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("wrap", WRITE_PATHS)
def test_replaced_file_keeps_its_permissions(tmp_path: Path, wrap: Any) -> None:
    path = tmp_path / "obj.pkl"
    omnipickle.dump(wrap(1), path)
    path.chmod(0o640)
    omnipickle.dump(wrap(2), path)
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("wrap", WRITE_PATHS)
def test_folder_that_cannot_be_written_gives_an_oserror_and_leaves_nothing(
    tmp_path: Path, wrap: Any
) -> None:
    # /proc refuses new files even to root (a chmod-ed folder would not stop root).
    with pytest.raises(OSError):
        omnipickle.dump(wrap(1), "/proc/omnipickle-test.pkl")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(NotADirectoryError):
        omnipickle.dump(wrap(1), not_a_folder / "obj.pkl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("wrap", WRITE_PATHS)
def test_missing_folder_is_a_filenotfounderror(tmp_path: Path, wrap: Any) -> None:
    with pytest.raises(FileNotFoundError):
        omnipickle.dump(wrap(1), tmp_path / "no" / "such" / "obj.pkl")


def test_several_payloads_in_one_file_object_load_in_turn(tmp_path: Path) -> None:
    path = tmp_path / "many.bin"
    with open(path, "wb") as f:
        omnipickle.dump("first", f)
        pickle.dump("plain pickle in between", f, protocol=5)
        omnipickle.dump({"third": 3}, f, compression="gzip")
        pickle.dump(["protocol 0"], f, protocol=0)
        omnipickle.dump(4, f)
    with open(path, "rb") as f:
        out = []
        while True:
            try:
                out.append(omnipickle.load(f))
            except EOFError:
                break
    assert out == ["first", "plain pickle in between", {"third": 3}, ["protocol 0"], 4]


def test_dump_and_load_through_a_pipe() -> None:
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        with os.fdopen(write_fd, "wb") as w:
            omnipickle.dump(OBJ, w)
            omnipickle.dump("second", w)

    t = threading.Thread(target=writer)
    t.start()
    with os.fdopen(read_fd, "rb") as r:
        assert omnipickle.load(r) == OBJ
        assert omnipickle.load(r) == "second"
    t.join()


@pytest.mark.parametrize("mode", ["w", "r"])
def test_text_mode_file_is_a_typeerror(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "t.txt"
    path.write_text("x")
    with open(path, mode, encoding="utf-8") as f, pytest.raises(TypeError, match="binary mode"):
        if mode == "w":
            omnipickle.dump(1, f)
        else:
            omnipickle.load(f)


@pytest.mark.parametrize("target", [42, None, b"bytes", 3.5])
def test_dump_to_something_that_is_not_a_file_is_a_typeerror(target: Any) -> None:
    with pytest.raises(TypeError, match="file"):
        omnipickle.dump(1, target)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_pickle_files_of_every_protocol_load(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "plain.pkl"
    with open(path, "wb") as f:
        pickle.dump(OBJ, f, protocol=protocol)
    assert omnipickle.load(path) == OBJ


@pytest.mark.parametrize(
    "opener",
    [gzip.open, bz2.open, lzma.open],
    ids=["gzip", "bz2", "xz"],
)
def test_pickles_compressed_whole_by_other_tools_load(tmp_path: Path, opener: Any) -> None:
    path = tmp_path / "foreign.bin"
    with opener(path, "wb") as f:
        pickle.dump(OBJ, f)
    assert omnipickle.load(path) == OBJ


def test_zstd_and_lz4_compressed_pickles_from_other_tools_load(tmp_path: Path) -> None:
    import lz4.frame
    import zstandard

    raw = pickle.dumps(OBJ)
    (tmp_path / "a").write_bytes(zstandard.ZstdCompressor().compress(raw))
    (tmp_path / "b").write_bytes(lz4.frame.compress(raw))
    assert omnipickle.load(tmp_path / "a") == OBJ
    assert omnipickle.load(tmp_path / "b") == OBJ


def test_cloudpickle_and_dill_files_load(tmp_path: Path) -> None:
    import cloudpickle
    import dill

    (tmp_path / "c").write_bytes(cloudpickle.dumps(lambda x: x + 1))
    (tmp_path / "d").write_bytes(dill.dumps(lambda x: x + 2))
    assert omnipickle.load(tmp_path / "c")(1) == 2
    assert omnipickle.load(tmp_path / "d")(1) == 3


def test_empty_file_is_an_eoferror(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(omnipickle.TruncatedPayloadError):
        omnipickle.load(path)


def test_truncated_file_object_payload(tmp_path: Path) -> None:
    data = omnipickle.dumps(OBJ)
    with pytest.raises(omnipickle.TruncatedPayloadError, match="truncated"):
        omnipickle.load(io.BytesIO(data[:-5]))


@pytest.mark.parametrize(
    ("compression", "suffix"),
    [
        ("gzip", "gz"),
        ("bz2", "bz"),
        ("lzma", "lzma"),
        ("lz4", "lz4"),
        ("zipfile", "zip"),
        ("pickle", "pkl"),
    ],
)
def test_compress_pickle_files_load(tmp_path: Path, compression: str, suffix: str) -> None:
    import compress_pickle

    path = tmp_path / f"cp.{suffix}"
    compress_pickle.dump(OBJ, path, compression=compression)
    assert omnipickle.load(path) == OBJ
    with open(path, "rb") as f:
        assert omnipickle.load(f) == OBJ


@pytest.mark.parametrize(
    "compress",
    [0, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3), ("lz4", 3)],
    ids=str,
)
def test_joblib_files_of_plain_objects_load(tmp_path: Path, compress: Any) -> None:
    import joblib

    path = tmp_path / "jl.bin"
    joblib.dump(OBJ, path, compress=compress)
    assert omnipickle.load(path) == OBJ


def test_zip_archive_of_several_files_is_refused_clearly(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a", pickle.dumps(1))
        archive.writestr("b", pickle.dumps(2))
    with pytest.raises(omnipickle.CorruptPayloadError, match="2 files"):
        omnipickle.load(path)


# --- writes through links, modes, leftovers, error names ------------------------------------


@pytest.mark.parametrize("wrap", WRITE_PATHS)
def test_dump_to_a_symlink_replaces_its_target_and_keeps_the_link(
    tmp_path: Path, wrap: Any
) -> None:
    target = tmp_path / "real.pkl"
    link = tmp_path / "link.pkl"
    omnipickle.dump(wrap("old"), target)
    link.symlink_to(target)
    omnipickle.dump(wrap("new"), link)
    assert link.is_symlink()
    assert omnipickle.load(target) == wrap("new")
    assert omnipickle.load(link) == wrap("new")


@pytest.mark.parametrize("wrap", WRITE_PATHS)
def test_dump_to_a_dangling_symlink_creates_its_target(tmp_path: Path, wrap: Any) -> None:
    link = tmp_path / "link.pkl"
    link.symlink_to(tmp_path / "missing.pkl")
    omnipickle.dump(wrap([1]), link)
    assert link.is_symlink() and omnipickle.load(tmp_path / "missing.pkl") == wrap([1])


@pytest.mark.parametrize("wrap", WRITE_PATHS)
def test_a_replaced_file_never_gets_setuid_or_setgid_bits(tmp_path: Path, wrap: Any) -> None:
    path = tmp_path / "x.pkl"
    omnipickle.dump(wrap(1), path)
    os.chmod(path, 0o6755)
    omnipickle.dump(wrap(2), path)
    mode = path.stat().st_mode & 0o7777
    assert mode == 0o755


@pytest.mark.parametrize("wrap", WRITE_PATHS)
def test_errors_name_the_target_not_the_temporary_file(tmp_path: Path, wrap: Any) -> None:
    missing = tmp_path / "no-such-folder" / "x.pkl"
    with pytest.raises(FileNotFoundError) as caught:
        omnipickle.dump(wrap(1), missing)
    assert caught.value.filename == str(missing)
    folder = tmp_path / "adir"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as caught_dir:
        omnipickle.dump(wrap(1), folder)
    assert caught_dir.value.filename == str(folder)
    assert sorted(os.listdir(tmp_path)) == ["adir"]


def test_a_killed_writers_leftover_is_removed_by_the_next_dump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omnipickle import files

    path = tmp_path / "x.pkl"
    leftover = tmp_path / f".x.pkl.abc123{files.TEMP_SUFFIX}"
    leftover.write_bytes(b"half a payload")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    omnipickle.dump(1, path)
    assert not leftover.exists()
    assert sorted(os.listdir(tmp_path)) == ["x.pkl"]


def test_a_live_writers_temporary_file_is_never_removed(tmp_path: Path) -> None:
    """A writer in another process holds its temporary file's lock: a sweep leaves it."""
    from omnipickle import files

    path = tmp_path / "x.pkl"
    code = (
        "import sys, time, omnipickle.files as f\n"
        "with f.atomic_writer(sys.argv[1]) as out:\n"
        "    out.write(b'x'); out.flush(); print('ready', flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(files.__file__).parents[1])},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        (live,) = [p for p in tmp_path.iterdir() if p.name.endswith(files.TEMP_SUFFIX)]
        old = time.time() - 3600
        os.utime(live, (old, old))
        omnipickle.dump(1, path)
        assert live.exists()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("wrap", WRITE_PATHS)
def test_durable_false_still_replaces_atomically(tmp_path: Path, wrap: Any) -> None:
    path = tmp_path / "x.pkl"
    omnipickle.dump(wrap("old"), path, durable=False)
    omnipickle.dump(wrap("new"), path, durable=False)
    assert omnipickle.load(path) == wrap("new")
    assert sorted(os.listdir(tmp_path)) == ["x.pkl"]


def test_a_folder_is_swept_for_leftovers_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing the folder on every dump would make a cache of many small files quadratic."""
    listed: list[str] = []
    real = os.listdir

    def counting(path: Any = ".") -> list[str]:
        listed.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "listdir", counting)
    for i in range(20):
        omnipickle.dump(i, tmp_path / f"entry{i}.pkl", durable=False)
    assert listed.count(str(tmp_path)) == 1


@pytest.mark.parametrize("umask", [0o077, 0o002, 0o027])
def test_a_new_file_gets_the_mode_open_would_give_under_any_umask(
    tmp_path: Path, umask: int
) -> None:
    out = check_python(
        code=f"""
import os, omnipickle
os.umask({umask})
omnipickle.dump([1], {str(tmp_path / "new.pkl")!r}, durable=False)
with open({str(tmp_path / "by_open")!r}, "wb"):
    pass
print(oct(os.stat({str(tmp_path / "new.pkl")!r}).st_mode & 0o777),
      oct(os.stat({str(tmp_path / "by_open")!r}).st_mode & 0o777))
"""
    )
    ours, opened = out.split()
    assert ours == opened == oct(0o666 & ~umask)


def test_the_two_write_paths_are_the_ones_the_tests_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import omnipickle.api

    def no_stream(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the streaming writer was used")

    monkeypatch.setattr(omnipickle.api, "atomic_writer", no_stream)
    small, streamed = (param.values[0] for param in WRITE_PATHS)
    omnipickle.dump(small(1), tmp_path / "small.pkl", durable=False)
    assert omnipickle.load(tmp_path / "small.pkl") == 1
    with pytest.raises(AssertionError, match="streaming writer"):
        omnipickle.dump(streamed(1), tmp_path / "streamed.pkl")


def test_a_small_write_that_fails_leaves_the_old_file_and_names_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    path = tmp_path / "x.pkl"
    omnipickle.dump("old", path)
    before = path.read_bytes()

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError) as caught:
        omnipickle.dump("new", path, durable=False)
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["x.pkl"]
