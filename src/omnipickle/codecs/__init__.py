"""Compression codecs: one small module per codec, each registering its codec.

Importing this package registers the built-in codecs (gzip, bz2, lzma with its other name xz,
zstd, lz4) without importing any compression package: each codec imports its package on first
use. A new codec is one module that defines a :class:`Codec` subclass and registers it, plus
one import line here.
"""

from __future__ import annotations

# The codec modules register themselves on import, in this order: the order codecs are listed
# and tried in (by magic bytes, by suffix).
# isort: off
from . import gzip_codec, bz2_codec, lzma_codec, zstd_codec, lz4_codec  # noqa: F401

# isort: on
from .base import (
    INFLATION_FLOOR,
    INFLATION_RATIO,
    MAGICS,
    REGISTRY,
    Buffer,
    Codec,
    IncrementalCodec,
    codec_by_id,
    codec_for_magic,
    codec_for_suffix,
    codecs,
    decompression_limit,
    get_codec,
    register_codec,
    unregister_codec,
)
from .bz2_codec import Bz2Codec
from .gzip_codec import GzipCodec
from .lz4_codec import Lz4Codec
from .lzma_codec import LzmaCodec
from .zstd_codec import ZstdCodec

__all__ = [
    "INFLATION_FLOOR",
    "INFLATION_RATIO",
    "MAGICS",
    "REGISTRY",
    "Buffer",
    "Bz2Codec",
    "Codec",
    "GzipCodec",
    "IncrementalCodec",
    "Lz4Codec",
    "LzmaCodec",
    "ZstdCodec",
    "codec_by_id",
    "codec_for_magic",
    "codec_for_suffix",
    "codecs",
    "decompression_limit",
    "get_codec",
    "register_codec",
    "unregister_codec",
]
