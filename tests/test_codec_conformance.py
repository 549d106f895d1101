"""Every registered codec runs the conformance suite (tests/conformance/codec.py), and so does a
codec defined here the way a third party would write one."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from typing import Any

import pytest

import omnipickle
from conformance.codec import CodecConformance
from omnipickle.codecs import Buffer, Codec, register_codec

# Known bugs, for the codec's owner to fix: strict, so a fixed one fails until it is taken off.
_KNOWN_FAILURES: dict[tuple[str, str], str] = {
    ("zstd", "test_reader_refuses_a_truncated_stream"): (
        # The payload reader still refuses such a stream: it checks the size the header gives.
        "zstandard's stream_reader ends a truncated frame as if it were whole"
    ),
}


def _expected_failure(test: Callable[..., Any], reason: str) -> Callable[..., Any]:
    # A wrapper carries the mark, so that the suite's own method stays unmarked for the others.
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return test(*args, **kwargs)

    return pytest.mark.xfail(reason=reason, strict=True)(wrapper)


def _suite(name: str) -> type[CodecConformance]:
    attrs: dict[str, Any] = {"codec": name, "__module__": __name__}
    for (codec, test), reason in _KNOWN_FAILURES.items():
        if codec == name:
            attrs[test] = _expected_failure(getattr(CodecConformance, test), reason)
    return type(f"Test{name.title()}Codec", (CodecConformance,), attrs)


# omnipickle.codecs() lists registered names only, not other names such as "xz".
for _name in omnipickle.codecs():
    globals()[f"Test{_name.title()}Codec"] = _suite(_name)
del _name


def test_every_registered_codec_runs_the_suite() -> None:
    suites = {
        cls.codec
        for cls in globals().values()
        if isinstance(cls, type)
        and issubclass(cls, CodecConformance)
        and cls is not CodecConformance
        and cls is not TestThirdPartyCodec
    }
    assert suites == set(omnipickle.codecs())


# --- a third-party codec -------------------------------------------------------------------------


class MagicDeflateCodec(Codec):
    """Raw deflate behind 4 magic bytes, with no envelope id: what a plug-in might register.

    It implements only ``compress`` and ``decompress``, so the suite also covers the base
    class's ``compressobj``, ``writer`` and ``reader``.
    """

    name = "magic_deflate"
    magic = b"MDF\x01"
    suffixes = (".mdf",)
    default_level = 6
    levels = range(0, 10)

    def compress(self, data: Buffer, level: int | None = None) -> bytes:
        compressor = zlib.compressobj(self.check_level(level), zlib.DEFLATED, -zlib.MAX_WBITS)
        return self.magic + compressor.compress(data) + compressor.flush()

    def decompress(self, data: Buffer, max_size: int | None = None) -> bytes:
        view = memoryview(data).cast("B")
        if view[: len(self.magic)] != self.magic:
            raise omnipickle.CorruptPayloadError("not a magic_deflate stream")
        if max_size is not None and not 0 <= max_size < 2**62:
            raise omnipickle.CorruptPayloadError(f"no magic_deflate stream has {max_size} bytes")
        decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            # One byte more than promised, so that a longer stream is caught, not trusted.
            out = decompressor.decompress(
                view[len(self.magic) :], 0 if max_size is None else max_size + 1
            )
        except zlib.error as exc:
            raise omnipickle.CorruptPayloadError(f"damaged magic_deflate stream: {exc}") from exc
        if not decompressor.eof:
            raise omnipickle.CorruptPayloadError("truncated magic_deflate stream")
        if max_size is not None and len(out) != max_size:
            raise omnipickle.CorruptPayloadError(
                f"magic_deflate stream of {len(out)} bytes, {max_size} promised"
            )
        return out


class TestThirdPartyCodec(CodecConformance):
    codec = "magic_deflate"

    @pytest.fixture(autouse=True)
    def _registered(self, restore_registries: Any) -> None:
        register_codec(self.codec, MagicDeflateCodec())
