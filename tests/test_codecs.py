"""The codec registry's strict verbs and import side effects (what each codec must do is in
tests/conformance/codec.py, run by tests/test_codec_conformance.py)."""

from __future__ import annotations

from typing import Any

import pytest

import omnipickle
from conftest import check_python
from omnipickle.codecs import (
    REGISTRY,
    Codec,
    GzipCodec,
    codec_by_id,
    get_codec,
    register_codec,
    unregister_codec,
)

CODECS = sorted(omnipickle.codecs())


def test_builtin_codec_ids_are_distinct() -> None:
    ids = [get_codec(name).codec_id for name in CODECS]
    assert len(set(ids)) == len(ids)


def test_every_builtin_codec_has_an_id_a_suffix_and_a_level_range() -> None:
    """What the conformance suite leaves optional (a third-party codec may lack them), ours
    all have."""
    for name in CODECS:
        codec = get_codec(name)
        assert codec.codec_id is not None and codec.suffixes and codec.levels is not None, name


class OtherGzip(GzipCodec):
    """gzip again, keeping gzip's envelope id."""


class NamedCodec(Codec):
    """Identity "compression", with no envelope id (recorded by name)."""

    name = "named"

    def compress(self, data: Any, level: int | None = None) -> bytes:
        return bytes(data)

    def decompress(self, data: Any, max_size: int | None = None) -> bytes:
        return bytes(data)


DUPLICATE = OtherGzip()


@pytest.mark.usefixtures("restore_registries")
def test_a_codec_id_another_codec_has_is_refused() -> None:
    with pytest.raises(ValueError, match=r"codec_id 1.*'gzip'"):
        register_codec("gzip2", OtherGzip())
    assert "gzip2" not in omnipickle.codecs()


@pytest.mark.usefixtures("restore_registries")
def test_replacing_a_codec_may_keep_its_id() -> None:
    replacement = OtherGzip()
    register_codec("gzip", replacement, replace=True)
    assert codec_by_id(1) is replacement
    assert omnipickle.loads(omnipickle.dumps([1, 2], compression="gzip")) == [1, 2]


@pytest.mark.usefixtures("restore_registries")
def test_replace_does_not_allow_taking_another_codecs_id() -> None:
    with pytest.raises(ValueError, match="codec_id"):
        register_codec("bz2", OtherGzip(), replace=True)
    assert isinstance(get_codec("bz2"), Codec) and get_codec("bz2").codec_id == 2


@pytest.mark.usefixtures("restore_registries")
def test_codecs_without_an_id_never_clash() -> None:
    register_codec("named", NamedCodec())
    register_codec("named_too", NamedCodec())
    assert omnipickle.loads(omnipickle.dumps([1], compression="named_too")) == [1]


@pytest.mark.usefixtures("restore_registries")
def test_a_codec_registered_by_path_has_its_id_checked_when_first_loaded() -> None:
    register_codec("lazy_gzip", f"{__name__}:DUPLICATE")
    with pytest.raises(ValueError, match=r"'lazy_gzip' has codec_id 1.*'gzip'"):
        get_codec("lazy_gzip")


@pytest.mark.usefixtures("restore_registries")
def test_unregistered_codec_is_unknown_and_its_other_names_go_with_it() -> None:
    register_codec("named", NamedCodec())
    data = omnipickle.dumps([1], compression="named")
    unregister_codec("named")
    assert "named" not in omnipickle.codecs()
    # A payload naming a codec this environment lacks is a payload it cannot read.
    with pytest.raises(omnipickle.IncompatiblePayloadError, match="named"):
        omnipickle.loads(data)
    unregister_codec("lzma")
    with pytest.raises(omnipickle.UnknownCodecError):
        get_codec("xz")


def test_unregistering_an_unknown_codec_says_which_there_are() -> None:
    with pytest.raises(omnipickle.UnknownCodecError, match=r"'snappy'.*'gzip'"):
        unregister_codec("snappy")


@pytest.mark.usefixtures("restore_registries")
def test_an_id_is_free_again_once_its_codec_is_unregistered() -> None:
    unregister_codec("gzip")
    register_codec("gzip_again", OtherGzip())
    assert codec_by_id(1) is get_codec("gzip_again")


@pytest.mark.usefixtures("restore_registries")
def test_registry_snapshot_and_restore_put_everything_back() -> None:
    saved = REGISTRY.snapshot()
    unregister_codec("lzma")
    register_codec("named", NamedCodec())
    REGISTRY.restore(saved)
    assert sorted(omnipickle.codecs()) == CODECS
    assert get_codec("xz") is get_codec("lzma")


# Import the package's modules without running omnipickle/__init__ (which imports everything):
# what importing the codecs imports, and nothing else.
_IMPORT_ALONE = """
import importlib.util, sys, types
spec = importlib.util.find_spec("omnipickle")
stub = types.ModuleType("omnipickle")
stub.__path__ = list(spec.submodule_search_locations)
sys.modules["omnipickle"] = stub
before = set(sys.modules)
import omnipickle.codecs as codecs
codecs.get_codec("lz4"), codecs.get_codec("zstd"), codecs.codec_for_magic(b"BZh9")
print(sorted(set(sys.modules) - before))
"""


def test_importing_the_codecs_imports_no_compression_package() -> None:
    imported = eval(check_python(code=_IMPORT_ALONE))
    compression = {"bz2", "_bz2", "lzma", "_lzma", "zlib", "gzip", "zipfile", "zstandard", "lz4"}
    assert sorted(compression & {m.split(".")[0] for m in imported}) == []
    assert {m for m in imported if m.startswith("omnipickle")} >= {
        "omnipickle.codecs.gzip_codec",
        "omnipickle.codecs.lz4_codec",
    }
