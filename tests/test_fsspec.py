"""URLs wherever a path is accepted: ``memory://``, ``file://`` and ``s3://`` on a real S3 API
server on loopback (moto's server mode, read and written with s3fs)."""

from __future__ import annotations

import gzip
import json
import pickle
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import omnipickle
from conftest import check_python, run_python

fsspec = pytest.importorskip("fsspec")
from fsspec.implementations.memory import MemoryFileSystem  # noqa: E402

from omnipickle.cli import main  # noqa: E402

KEY = b"s" * 16


class Moves(MemoryFileSystem):
    """The memory file system, recording each move with what the target held just before it,
    and able to fail a move (as a store that goes away mid-dump would)."""

    protocol = "moves"
    moves: list[tuple[str, str, bytes | None]] = []
    fail = False

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        before = self.cat_file(path2) if self.exists(path2) else None
        type(self).moves.append((path1, path2, before))
        if type(self).fail:
            raise OSError("the store went away")
        super().mv(path1, path2, **kwargs)


@pytest.fixture
def folder() -> Iterator[str]:
    """A fresh ``memory://`` folder, removed after the test."""
    name = f"memory://omnipickle-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        yield name
    finally:
        if fs.exists(name):
            fs.rm(name, recursive=True)


@pytest.fixture
def moves() -> Iterator[type[Moves]]:
    fsspec.register_implementation("moves", Moves, clobber=True)
    Moves.moves, Moves.fail = [], False
    try:
        yield Moves
    finally:
        Moves.fail = False
        sys.modules["fsspec.registry"]._registry.pop("moves", None)


def _names(fs: Any, folder: str) -> list[str]:
    return sorted(path.rsplit("/", 1)[1] for path in fs.ls(folder, detail=False))


def test_a_closure_round_trips_through_a_memory_url(folder: str) -> None:
    base = 5
    omnipickle.dump(lambda x: x + base, f"{folder}/f.pkl")
    assert omnipickle.load(f"{folder}/f.pkl")(1) == 6


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [(".pkl", None), (".pkl.zst", "zstd"), (".pkl.gz", "gzip"), (".xz", "lzma")],
)
def test_the_codec_is_inferred_from_the_urls_suffix(folder: str, suffix: str, codec: str) -> None:
    url = f"{folder}/data{suffix}"
    omnipickle.dump(list(range(100)), url)
    assert omnipickle.info(url).codec == codec
    assert omnipickle.load(url) == list(range(100))


def test_loading_a_url_detects_the_codec_from_magic_bytes_not_the_name(folder: str) -> None:
    omnipickle.dump({"a": 1}, f"{folder}/misnamed.pkl", compression="zstd")
    assert omnipickle.info(f"{folder}/misnamed.pkl").codec == "zstd"
    with fsspec.open(f"{folder}/foreign.bin", "wb") as f:  # another tool's gzipped pickle
        f.write(gzip.compress(pickle.dumps([1, 2])))
    assert omnipickle.load(f"{folder}/foreign.bin") == [1, 2]
    assert omnipickle.load(f"{folder}/misnamed.pkl") == {"a": 1}


def test_info_and_scan_read_a_url(folder: str) -> None:
    url = f"{folder}/code.pkl"
    omnipickle.dump(lambda: 1, url, key=KEY)
    assert omnipickle.info(url).signed is True
    assert omnipickle.scan(url).accepted is False  # code by value, untrusted
    assert omnipickle.scan(url, key=KEY).accepted is True
    assert omnipickle.load(url, key=KEY)() == 1


def test_a_url_write_goes_to_a_temporary_key_moved_over_the_target(
    moves: type[Moves], folder: str
) -> None:
    url = f"moves://{uuid.uuid4().hex}/obj.pkl"
    omnipickle.dump("old", url)
    omnipickle.dump("new", url)
    (tmp, target, before), *_ = moves.moves[1:]
    assert tmp.endswith(".omnipickle-tmp") and target.endswith("/obj.pkl")
    assert omnipickle.loads(before) == "old"  # until the move, readers saw the old object
    assert omnipickle.load(url) == "new"
    assert _names(Moves(), url.rsplit("/", 1)[0]) == ["obj.pkl"]


def test_a_failed_url_dump_leaves_the_old_object_and_no_temporary_key(
    moves: type[Moves],
) -> None:
    url = f"moves://{uuid.uuid4().hex}/obj.pkl"
    omnipickle.dump("old", url)
    moves.fail = True
    with pytest.raises(OSError, match="went away"):
        omnipickle.dump("new", url)
    assert omnipickle.load(url) == "old"
    assert _names(Moves(), url.rsplit("/", 1)[0]) == ["obj.pkl"]


def test_an_unpicklable_object_writes_nothing_to_the_url(folder: str) -> None:
    with pytest.raises(omnipickle.PicklingError):
        omnipickle.dump([1, socket.socket()], f"{folder}/bad.pkl")
    assert not fsspec.filesystem("memory").exists(folder)


def test_a_file_url_is_written_like_a_local_path(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/obj.pkl.zst"
    omnipickle.dump({"k": 1}, url)
    assert [p.name for p in tmp_path.iterdir()] == ["obj.pkl.zst"]
    assert omnipickle.load(tmp_path / "obj.pkl.zst") == {"k": 1}
    assert omnipickle.info(url).codec == "zstd"
    with pytest.raises(TypeError, match="mmap_mode needs a local path"):
        omnipickle.load(url, mmap_mode="r")


def test_a_missing_url_is_a_file_not_found_error(folder: str) -> None:
    with pytest.raises(FileNotFoundError):
        omnipickle.load(f"{folder}/nothing.pkl")


def test_storage_options_need_a_url(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="storage_options applies to URLs"):
        omnipickle.dump(1, tmp_path / "x.pkl", storage_options={"anon": True})
    with pytest.raises(TypeError, match="storage_options applies to URLs"):
        omnipickle.load(str(tmp_path / "x.pkl"), storage_options={})
    with pytest.raises(TypeError, match="storage_options applies to URLs"):
        omnipickle.info(b"", storage_options={})
    with pytest.raises(TypeError, match="storage_options applies to URLs"):
        omnipickle.scan(b"", storage_options={})


def test_fsspec_is_imported_only_for_a_url() -> None:
    code = (
        "import sys, tempfile, os, omnipickle\n"
        "print('fsspec' in sys.modules)\n"
        "path = os.path.join(tempfile.mkdtemp(), 'x.pkl')\n"
        "omnipickle.dump(1, path); omnipickle.load(path); omnipickle.info(path)\n"
        "print('fsspec' in sys.modules)\n"
        "omnipickle.dump(1, 'memory://x/y.pkl')\n"
        "print('fsspec' in sys.modules)\n"
    )
    assert check_python(code=code).split() == ["False", "False", "True"]


def test_without_fsspec_a_url_says_what_to_install() -> None:
    code = (
        "import sys\nsys.modules['fsspec'] = None\nsys.modules['fsspec.core'] = None\n"
        "import omnipickle\n"
        "try:\n    omnipickle.load('s3://bucket/x.pkl')\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = check_python(code=code)
    assert "URLs are opened with fsspec, which is not installed" in out
    assert "pip install 'omnipickle[fsspec]'" in out


def test_the_command_line_reads_and_writes_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = f"file://{tmp_path}/in.pkl"
    omnipickle.dump([1, 2, 3], src)
    assert main(["info", src]) == 0
    assert "omnipickle" in capsys.readouterr().out
    assert main(["scan", "--json", src]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "accepted"
    assert main(["convert", src, f"file://{tmp_path}/out.pkl.zst"]) == 0
    assert omnipickle.info(tmp_path / "out.pkl.zst").codec == "zstd"
    assert main(["convert", src, f"file://{tmp_path}/plain.zst", "--compression", "none"]) == 0
    assert omnipickle.info(tmp_path / "plain.zst").codec is None


# --- a real S3 API on loopback ---------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """A moto S3 server on 127.0.0.1 with a bucket; the storage options that reach it."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket="omnipickle")
        yield {
            "key": "testing",
            "secret": "testing",
            "endpoint_url": endpoint,
            "client_kwargs": {"region_name": "us-east-1"},
        }
    finally:
        server.stop()


def test_s3_round_trip_with_storage_options(s3: dict[str, Any]) -> None:
    url = "s3://omnipickle/model.pkl.zst"
    factor = 3
    omnipickle.dump(lambda x: x * factor, url, storage_options=s3, key=KEY)
    assert omnipickle.load(url, storage_options=s3, key=KEY)(4) == 12
    described = omnipickle.info(url, storage_options=s3)
    assert (described.codec, described.signed) == ("zstd", True)
    assert omnipickle.scan(url, storage_options=s3, key=KEY).accepted is True


def test_s3_failed_dump_keeps_the_old_object_and_leaves_no_key(s3: dict[str, Any]) -> None:
    import s3fs

    url = "s3://omnipickle/keep/obj.pkl"
    omnipickle.dump("old", url, storage_options=s3)
    with pytest.raises(omnipickle.PicklingError):
        omnipickle.dump(["new", socket.socket()], url, storage_options=s3)
    omnipickle.dump("newer", "s3://omnipickle/keep/other.pkl", storage_options=s3)
    fs = s3fs.S3FileSystem(**s3)
    fs.invalidate_cache()
    assert sorted(fs.ls("omnipickle/keep")) == [
        "omnipickle/keep/obj.pkl",
        "omnipickle/keep/other.pkl",
    ]
    assert omnipickle.load(url, storage_options=s3) == "old"


def test_the_command_line_reaches_s3_through_fsspecs_environment_config(
    s3: dict[str, Any],
) -> None:
    omnipickle.dump({"cli": True}, "s3://omnipickle/cli.pkl.gz", storage_options=s3)
    code = (
        "import os, sys\n"
        "os.environ.update(FSSPEC_S3_ENDPOINT_URL=sys.argv[1], FSSPEC_S3_KEY='testing', "
        "FSSPEC_S3_SECRET='testing', AWS_DEFAULT_REGION='us-east-1')\n"
        "from omnipickle.cli import main\n"
        "sys.exit(main(['info', 's3://omnipickle/cli.pkl.gz']))\n"
    )
    done = run_python(s3["endpoint_url"], code=code)
    assert done.returncode == 0, done.stderr
    assert "gzip" in done.stdout


def test_the_docs_example_runs() -> None:
    from pool_children import check_examples

    page = Path(__file__).parent.parent / "docs" / "integrations.md"
    check_examples(page, "Remote and virtual storage (fsspec)")
