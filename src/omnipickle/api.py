"""The public functions: ``dumps``, ``loads``, ``dump``, ``load``, ``info`` and ``Serializer``."""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import os
import pickle
import struct
import sys
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from . import envelope
from ._reconstruct import REATTACH
from .backends import BUILTIN_BITS, LOADER_IDS, PACKAGES, Pickled
from .backends import REGISTRY as BACKENDS
from .codecs import REGISTRY as CODECS
from .codecs import (
    Codec,
    codec_by_id,
    codec_for_magic,
    codec_for_suffix,
    decompress_foreign,
    is_foreign,
)
from .envelope import (
    FLAG_BY_VALUE,
    FLAG_OUT_OF_BAND,
    FLAG_SECTIONS,
    FLAG_SIGNED,
    HEADER_SIZE,
    NAMED,
    SIGNATURE_SIZE,
    Header,
)
from .errors import (
    BackendNotInstalledError,
    CorruptPayloadError,
    DroppedResourceWarning,
    IncompatiblePayloadError,
    SignatureError,
    TruncatedPayloadError,
    UnpicklingError,
)
from .files import (
    atomic_writer,
    check_binary_file,
    dump_to_file,
    is_path,
    load_from_path,
    write_parts,
)

__all__ = [
    "DEFAULT_PROTOCOL",
    "HIGHEST_PROTOCOL",
    "Info",
    "Serializer",
    "dump",
    "dumps",
    "info",
    "load",
    "loads",
]

HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL
# Protocol 5 (Python 3.8+) has out-of-band buffers and the most compact framing; every Python
# omnipickle supports reads it.
DEFAULT_PROTOCOL = pickle.HIGHEST_PROTOCOL

Part = bytes | bytearray | memoryview
_ON_UNPICKLABLE = ("raise", "drop")
_MIN_KEY = 16


# --- dumping ---------------------------------------------------------------------------------


def _protocol(protocol: int | None) -> int:
    if protocol is None:
        return DEFAULT_PROTOCOL
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise TypeError(f"protocol must be an int or None, not {type(protocol).__name__}")
    if protocol < 0:
        return HIGHEST_PROTOCOL
    if protocol > HIGHEST_PROTOCOL:
        raise ValueError(f"pickle protocol must be <= {HIGHEST_PROTOCOL}, got {protocol}")
    return protocol


def _one_key(key: Any) -> bytes:
    if isinstance(key, str):
        raise TypeError("key must be bytes, not str: encode it, e.g. key.encode()")
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes or a list of bytes, not {type(key).__name__}")
    raw = bytes(key)
    if len(raw) < _MIN_KEY:
        raise ValueError(f"key must be at least {_MIN_KEY} bytes long, got {len(raw)}")
    return raw


def _keys(key: Any) -> tuple[bytes, ...] | None:
    """``key`` as a tuple of checked keys: one key, or a list (rotation: sign with the first,
    verify with any)."""
    if key is None:
        return None
    if isinstance(key, (list, tuple)):
        if not key:
            raise ValueError("key is an empty list: give at least one key")
        return tuple(_one_key(k) for k in key)
    return (_one_key(key),)


def _key(key: Any) -> bytes | None:
    """The signing key: ``key``, or the first of a list."""
    keys = _keys(key)
    return keys[0] if keys else None


def key_id(key: bytes) -> str:
    """A short public fingerprint of ``key``, written in signed payloads' headers so that the
    right key of a rotation list is tried first (it reveals nothing usable about the key)."""
    return hashlib.sha256(b"omnipickle key id\0" + key).hexdigest()[:8]


def signature_matches(keys: tuple[bytes, ...], kid: Any, chunks: Iterable[Any], tag: bytes) -> bool:
    """Whether one of ``keys`` signed ``chunks`` with ``tag`` (constant-time comparisons); the
    key whose id is ``kid`` is tried first, and every key is fed in one pass."""
    ordered = sorted(keys, key=lambda k: key_id(k) != kid)
    macs = [hmac.new(k, digestmod=hashlib.sha256) for k in ordered]
    for chunk in chunks:
        for mac in macs:
            mac.update(chunk)
    matched = False
    for mac in macs:
        matched |= hmac.compare_digest(mac.digest(), tag)
    return matched


@dataclass(frozen=True)
class _DumpOptions:
    """The keyword options of :func:`dumps` and :func:`dump`, as given."""

    fix_imports: bool
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None
    backend: str
    compression: str | Codec | None
    level: int | None
    key: Any
    on_unpicklable: str
    raw: bool


@dataclass(frozen=True)
class _Prepared:
    """Validated dump options."""

    protocol: int
    codec: Codec | None
    level: int | None
    key: bytes | None
    backend: Any


def _prepare(protocol: int | None, opts: _DumpOptions) -> _Prepared:
    proto = _protocol(protocol)
    if opts.on_unpicklable not in _ON_UNPICKLABLE:
        raise ValueError(
            f"on_unpicklable must be one of {', '.join(map(repr, _ON_UNPICKLABLE))}, "
            f"got {opts.on_unpicklable!r}"
        )
    if opts.buffer_callback is not None and not callable(opts.buffer_callback):
        raise TypeError("buffer_callback must be callable or None")
    if opts.buffer_callback is not None and proto < 5:
        raise ValueError("buffer_callback needs protocol 5 or higher")
    codec = _codec(opts.compression)
    signing_key = _key(opts.key)
    if opts.raw and (codec is not None or signing_key is not None):
        raise ValueError("raw=True writes a plain pickle stream: it cannot be compressed or signed")
    level = opts.level
    if codec is not None:
        level = codec.check_level(level)
    elif level is not None:
        raise ValueError("level is only meaningful with compression")
    impl = BACKENDS.get(opts.backend)
    if opts.on_unpicklable == "drop" and not impl.supports_drop:
        raise ValueError(
            f'on_unpicklable="drop" needs the auto backend; the {impl.name!r} backend '
            "cannot leave objects out"
        )
    return _Prepared(proto, codec, level, signing_key, impl)


def _pickle_with(
    obj: Any, prep: _Prepared, opts: _DumpOptions, buffer_callback: Any, sink: Any = None
) -> Pickled:
    """Run the backend: the stream goes to ``sink`` when the backend streams."""
    options: dict[str, Any] = {
        "protocol": prep.protocol,
        "fix_imports": opts.fix_imports,
        "buffer_callback": buffer_callback,
    }
    if sink is not None:
        options["sink"] = sink
    if opts.on_unpicklable == "drop":
        options["on_unpicklable"] = "drop"
    pickled: Pickled = prep.backend.dumps(obj, **options)
    if opts.on_unpicklable == "drop":
        _warn_dropped(pickled.extra.get("dropped", ()))
    return pickled


def _encode(obj: Any, protocol: int | None, opts: _DumpOptions) -> list[Part]:
    """The payload as a list of parts to be written (or joined) in order."""
    prep = _prepare(protocol, opts)
    pickled = _pickle_with(obj, prep, opts, opts.buffer_callback)
    if opts.raw:
        return pickled.chunks
    return _wrap(
        pickled, prep.protocol, prep.codec, prep.level, prep.key, opts.buffer_callback is not None
    )


def _warn_dropped(dropped: Any) -> None:
    if not dropped:
        return
    shown = ", ".join(f"{d['path']} ({d['type']})" for d in dropped[:10])
    more = f" and {len(dropped) - 10} more" if len(dropped) > 10 else ""
    warnings.warn(
        f"{len(dropped)} live resource(s) left out, they will load as None: {shown}{more}",
        DroppedResourceWarning,
        stacklevel=5,
    )


def _header(
    pickled: Pickled,
    protocol: int,
    codec: Codec | None,
    *,
    key: bytes | None,
    out_of_band: bool,
    stored_length: int,
    checksum: int,
    extra: dict[str, Any] | None = None,
    sections: bool = False,
    size: int | None = None,
) -> bytes:
    """The envelope header for ``pickled`` (see docs/format.md)."""
    fields: dict[str, Any] = dict(pickled.extra)
    fields.update(extra or {})
    signed = key is not None
    if key is not None:
        fields["kid"] = key_id(key)
    bits = 0
    named = []
    for name in sorted(pickled.uses):
        if name in BUILTIN_BITS:
            bits |= BUILTIN_BITS[name]
        else:
            named.append(name)
    if named:
        fields["backends"] = named
    loader = LOADER_IDS.get(pickled.loader, NAMED)
    if loader == NAMED:
        fields["loader"] = pickled.loader
    codec_id = 0
    if codec is not None:
        codec_id = codec.codec_id if codec.codec_id is not None else NAMED
        if codec_id == NAMED:
            fields["codec"] = codec.name
    flags = (FLAG_BY_VALUE if pickled.by_value else 0) | (FLAG_OUT_OF_BAND if out_of_band else 0)
    flags |= (FLAG_SIGNED if signed else 0) | (FLAG_SECTIONS if sections else 0)
    return envelope.build_header(
        flags=flags,
        protocol=protocol,
        loader=loader,
        backend_bits=bits,
        codec_id=codec_id,
        stored_length=stored_length,
        raw_length=pickled.length,
        checksum=checksum,
        extra=fields or None,
        size=size,
    )


def _wrap(
    pickled: Pickled,
    protocol: int,
    codec: Codec | None,
    level: int | None,
    key: bytes | None,
    out_of_band: bool,
) -> list[Part]:
    if codec is None:
        stored: list[Part] = pickled.chunks
        checksum = pickled.crc if pickled.crc is not None else _crc(stored)
        stored_length = pickled.length
    else:
        compressed = codec.compress(b"".join(pickled.chunks), level)
        stored = [compressed]
        checksum = _crc(stored)
        stored_length = len(compressed)
    header = _header(
        pickled,
        protocol,
        codec,
        key=key,
        out_of_band=out_of_band,
        stored_length=stored_length,
        checksum=checksum,
    )
    parts: list[Part] = [header, *stored]
    if key is not None:
        mac = hmac.new(key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(part)
        parts.append(mac.digest())
    return parts


def _crc(parts: Iterable[Part]) -> int:
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def _codec(compression: str | Codec | None) -> Codec | None:
    if compression is None:
        return None
    if isinstance(compression, Codec):
        return compression
    if not isinstance(compression, str):
        raise TypeError(
            f"compression must be a codec name or None, not {type(compression).__name__}"
        )
    return CODECS.get(compression)


def dumps(
    obj: Any,
    protocol: int | None = None,
    *,
    fix_imports: bool = True,
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    backend: str = "auto",
    compression: str | None = None,
    level: int | None = None,
    key: bytes | None = None,
    on_unpicklable: str = "raise",
    raw: bool = False,
) -> bytes:
    """Serialize ``obj`` to bytes.

    Args:
        obj: anything: plain data, functions and classes (by value where needed), objects
            holding locks or weak references.
        protocol: the pickle protocol, as for :func:`pickle.dumps` (default
            :data:`DEFAULT_PROTOCOL`, 5; negative means the highest).
        fix_imports: as for :func:`pickle.dumps`.
        buffer_callback: as for :func:`pickle.dumps` (protocol 5 out-of-band buffers); pass
            the same buffers to :func:`loads`.
        backend: ``"auto"`` (the cheapest way per object), ``"pickle"``, ``"cloudpickle"``,
            ``"dill"`` or a registered name.
        compression: a codec name (``"gzip"``, ``"bz2"``, ``"lzma"``/``"xz"``, ``"zstd"``,
            ``"lz4"``) or ``None``.
        level: the codec's compression level (default: the codec's own default).
        key: sign the payload with HMAC-SHA256 under this key (at least 16 bytes).
        on_unpicklable: ``"raise"`` (default): a part that cannot be serialized raises
            :class:`PicklingError`. ``"drop"``: live resources (sockets, connections,
            threads...) and other parts that cannot be serialized are left out and load as
            ``None``; a :class:`DroppedResourceWarning` lists them, and the envelope records
            them (``info(data).dropped``). Only the ``auto`` backend can drop.
        raw: write a plain pickle stream with no envelope (readable by :func:`pickle.loads`
            wherever the backends it used are installed); no compression or signature.

    Returns:
        The payload: an envelope (header, then the possibly compressed pickle stream), or the
        bare pickle stream with ``raw=True``.

    Raises:
        PicklingError: part of ``obj`` cannot be serialized; the message names its path
            (``root['jobs'][3].client._sock``), its type, the reason and a fix.
        UnknownBackendError, UnknownCodecError: no backend or codec has that name.
        BackendNotInstalledError, CodecNotInstalledError: its package is missing.
        ValueError, TypeError: an option is out of range or of the wrong type.
    """
    opts = _DumpOptions(
        fix_imports, buffer_callback, backend, compression, level, key, on_unpicklable, raw
    )
    parts = _encode(obj, protocol, opts)
    if len(parts) == 1 and isinstance(parts[0], bytes):
        return parts[0]
    return b"".join(parts)


def dump(
    obj: Any,
    file: str | os.PathLike[str] | IO[bytes],
    protocol: int | None = None,
    *,
    fix_imports: bool = True,
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    backend: str = "auto",
    compression: str | None = None,
    level: int | None = None,
    key: bytes | None = None,
    on_unpicklable: str = "raise",
    raw: bool = False,
) -> None:
    """Serialize ``obj`` to a file.

    ``file`` is a path (``str`` or ``os.PathLike``) or a binary file object. A path is written
    atomically (a temporary file beside it, fsynced, then renamed over it): a crash or a failed
    dump leaves the previous file intact. For a path, ``compression=None`` means "infer from the
    suffix" (``.gz``, ``.bz2``, ``.xz``, ``.lzma``, ``.zst``, ``.lz4``; anything else:
    uncompressed).

    The other arguments are those of :func:`dumps`.

    Raises:
        TypeError: ``file`` is neither a path nor a binary file object.
        OSError: the file cannot be written (the message names it).
        and everything :func:`dumps` raises.
    """
    if is_path(file):
        if compression is None and not raw:
            found = codec_for_suffix(os.fspath(file))  # type: ignore[arg-type]
            compression = found.name if found is not None else None
    else:
        check_binary_file(file, "w")
    opts = _DumpOptions(
        fix_imports, buffer_callback, backend, compression, level, key, on_unpicklable, raw
    )
    if is_path(file):
        # A failure at any point removes the temporary file and leaves the target as it was.
        with atomic_writer(file) as f:  # type: ignore[arg-type]
            dump_to_file(obj, f, protocol, opts)
    elif _seekable(file):
        dump_to_file(obj, file, protocol, opts)  # type: ignore[arg-type]
    else:
        # Serialize before touching the file: a failure leaves nothing half-written.
        write_parts(file, _encode(obj, protocol, opts))  # type: ignore[arg-type]


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable()) and isinstance(file.tell(), int)
    except (AttributeError, OSError, ValueError):
        return False


# --- loading ---------------------------------------------------------------------------------

# What the C unpickler raises for a stream that is not a well-formed pickle. Only for plain
# (unchecked) streams are these read as "damaged"; in a checksummed payload they propagate.
_MALFORMED = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    struct.error,
    OverflowError,
    UnicodeDecodeError,
    MemoryError,
    TypeError,
    LookupError,
    ArithmeticError,
)
# A plain stream naming a module or attribute this environment lacks: damaged, or written
# where something else is installed. Either way an UnpicklingError, with the cause chained.
_MISSING_NAME = (ImportError, AttributeError)


def _view(data: Any) -> memoryview:
    if isinstance(data, str):
        raise TypeError("data must be bytes-like, not str (payloads are binary)")
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}") from None
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def _check_backends(header: Header) -> None:
    needed = [name for name, bit in BUILTIN_BITS.items() if header.backend_bits & bit]
    needed += [str(n) for n in header.extra.get("backends", ())]
    for name in needed:
        package = PACKAGES.get(name)
        if package is not None:
            if package not in sys.modules and importlib.util.find_spec(package) is None:
                raise BackendNotInstalledError(
                    f"this payload was written with the {name} backend and needs the "
                    f"{package!r} package to load: pip install {package}"
                )
        elif name not in BUILTIN_BITS:
            BACKENDS.get(name)  # unknown or not installed: the registry says which


def _check_python(header: Header) -> None:
    here = sys.version_info[:2]
    if header.by_value and header.python != here:
        raise IncompatiblePayloadError(
            f"this payload holds code serialized by value under Python "
            f"{header.python[0]}.{header.python[1]}, and this is Python {here[0]}.{here[1]}: "
            f"code objects do not load across Python minor versions; load it with Python "
            f"{header.python[0]}.{header.python[1]}, or dump it with backend='pickle' so that "
            f"code is referenced by name"
        )


def _verify(header: Header, view: memoryview, keys: tuple[bytes, ...] | None) -> None:
    if keys is None:
        return
    if not header.signed:
        raise SignatureError("a key was given but the payload is not signed")
    end = header.body_end
    tag = bytes(view[end : end + SIGNATURE_SIZE])
    if not signature_matches(keys, header.extra.get("kid"), [view[:end]], tag):
        raise SignatureError(
            "the payload's signature does not verify: wrong key, or the payload was altered"
        )


def _loader_name(header: Header) -> str:
    if header.loader == NAMED:
        name = header.extra.get("loader")
        if not isinstance(name, str):
            raise CorruptPayloadError("corrupt header: the loader is named but the name is missing")
        return name
    for name, ident in LOADER_IDS.items():
        if ident == header.loader:
            return name
    raise IncompatiblePayloadError(
        f"payload loader id {header.loader} is unknown to this omnipickle release"
    )


def _header_codec(header: Header) -> Codec | None:
    if header.codec_id == 0:
        return None
    if header.codec_id == NAMED:
        name = header.extra.get("codec")
        if not isinstance(name, str):
            raise CorruptPayloadError("corrupt header: the codec is named but the name is missing")
        return CODECS.get(name)
    codec = codec_by_id(header.codec_id)
    if codec is None:
        raise IncompatiblePayloadError(
            f"payload codec id {header.codec_id} is unknown to this omnipickle release"
        )
    return codec


@dataclass(frozen=True)
class _LoadOptions:
    fix_imports: bool
    encoding: str
    errors: str
    buffers: Any
    key: tuple[bytes, ...] | None
    resources: Mapping[Any, Any] | None = None
    restricted: bool = False
    allow: tuple[str, ...] | None = None


def _check_allow(restricted: Any, allow: Any) -> tuple[bool, tuple[str, ...] | None]:
    if not isinstance(restricted, bool):
        raise TypeError(f"restricted must be True or False, not {restricted!r}")
    if allow is None:
        return restricted, None
    if not restricted:
        raise ValueError("allow= only applies to restricted loading: pass restricted=True too")
    if isinstance(allow, str):
        allow = (allow,)
    from .security import _parse_allow

    _parse_allow(allow)  # a typo in an allow-list raises here, before anything is read
    return restricted, tuple(allow)


def _check_resources(resources: Any) -> Mapping[Any, Any] | None:
    if resources is None:
        return None
    if not isinstance(resources, Mapping):
        raise TypeError(
            f"resources must be a mapping of paths or types to objects, "
            f"not {type(resources).__name__}"
        )
    for key in resources:
        if not isinstance(key, (str, type)):
            raise TypeError(
                f"resources keys must be paths (str, e.g. 'root.client._sock') or types, "
                f"not {type(key).__name__} {key!r}"
            )
    return resources


def _reattach(header: Header, resources: Mapping[Any, Any] | None) -> list[Any] | None:
    """The objects to put back where resources were dropped, by drop index (see
    ``_reconstruct.dropped_resource``). Every key must match: nothing is half-applied."""
    if not resources:
        return None
    dropped = header.extra.get("dropped", [])
    chosen: list[Any] = [None] * len(dropped)
    used: set[Any] = set()
    for i, entry in enumerate(dropped):
        path, tname = entry.get("path"), entry.get("type")
        if path in resources:
            chosen[i] = resources[path]
            used.add(path)
            continue
        for key, value in resources.items():
            if isinstance(key, type) and f"{key.__module__}.{key.__qualname__}" == tname:
                chosen[i] = value
                used.add(key)
                break
    unknown = [key for key in resources if key not in used]
    if unknown:
        listed = ", ".join(f"{d.get('path')} ({d.get('type')})" for d in dropped) or "nothing"
        names = ", ".join(k if isinstance(k, str) else k.__qualname__ for k in unknown)
        raise ValueError(
            f"resources names {names}, which this payload did not drop; it dropped: {listed}"
        )
    return chosen


def _preflight(header: Header, opts: _LoadOptions) -> Codec | None:
    """Checks made before anything is decompressed or unpickled; returns the codec."""
    _check_python(header)
    _check_backends(header)
    codec = _header_codec(header)
    if codec is None and header.raw_length != header.stored_length:
        raise CorruptPayloadError(
            f"corrupt header: uncompressed payload of {header.stored_length} bytes but a "
            f"stream length of {header.raw_length}"
        )
    if header.flags & FLAG_OUT_OF_BAND and opts.buffers is None:
        raise UnpicklingError(
            "this payload was written with a buffer_callback: pass the same out-of-band "
            "buffers to loads(..., buffers=...)"
        )
    if header.flags & FLAG_SECTIONS and opts.buffers is not None:
        raise ValueError(
            "this payload carries its own out-of-band buffers (sections): do not pass buffers="
        )
    return codec


def _section_buffers(
    header: Header, view: memoryview, codec: Codec | None, mapped: bool
) -> list[Any] | None:
    """The out-of-band buffers stored in ``view``'s sections.

    Mapped (``mmap_mode``): views of the file itself, checksums not checked (that would read
    every byte). Otherwise: checked, and copied (or decompressed) into writable memory.
    """
    found = envelope.sections(header)
    if not found:
        return None
    buffers: list[Any] = []
    for section in found:
        if mapped:
            stored = view[section.offset : section.offset + section.stored]
        else:
            stored = envelope.check_section(section, view)
        if codec is not None:
            buffers.append(bytearray(codec.decompress(stored, section.raw)))
        elif section.stored != section.raw:
            raise CorruptPayloadError(
                f"corrupt header: an uncompressed section of {section.stored} bytes claims "
                f"{section.raw}"
            )
        else:
            buffers.append(stored if mapped else bytearray(stored))
    return buffers


def _unpickle(header: Header, opts: _LoadOptions, stream: Any, buffers: Any) -> Any:
    """Run the payload's loader on ``stream`` (bytes-like, or a readable file)."""
    backend = BACKENDS.get(_loader_name(header))
    token = REATTACH.set(_reattach(header, opts.resources))
    try:
        if opts.restricted:
            from .security import restricted_loads

            if not isinstance(stream, (bytes, bytearray, memoryview)):
                stream = stream.read()
            # Code by value is trusted only through a signature that verified (a key was
            # given, so it did, or loading stopped before here).
            return restricted_loads(
                stream,
                allow=opts.allow,
                trusted=opts.key is not None and header.signed,
                fix_imports=opts.fix_imports,
                encoding=opts.encoding,
                errors=opts.errors,
                buffers=buffers,
            )
        if not isinstance(stream, (bytes, bytearray, memoryview)):
            if backend.name in ("auto", "pickle"):
                return pickle.Unpickler(
                    stream,
                    fix_imports=opts.fix_imports,
                    encoding=opts.encoding,
                    errors=opts.errors,
                    buffers=buffers,
                ).load()
            stream = memoryview(stream.read())
        return backend.loads(
            stream,
            fix_imports=opts.fix_imports,
            encoding=opts.encoding,
            errors=opts.errors,
            buffers=buffers,
        )
    except EOFError as exc:
        raise UnpicklingError(f"the pickle stream inside the payload ends early: {exc}") from exc
    except pickle.UnpicklingError as exc:
        if isinstance(exc, UnpicklingError):
            raise
        raise UnpicklingError(f"the pickle stream inside the payload is invalid: {exc}") from exc
    finally:
        REATTACH.reset(token)


def _load_envelope(view: memoryview, opts: _LoadOptions, *, mapped: bool = False) -> Any:
    header = envelope.parse_header(view)
    payload = envelope.check_payload(header, view)
    _verify(header, view, opts.key)
    codec = _preflight(header, opts)
    stream: Any = payload
    if codec is not None:
        stream = memoryview(codec.decompress(payload, header.raw_length))
    buffers = _section_buffers(header, view, codec, mapped)
    return _unpickle(header, opts, stream, buffers if buffers is not None else opts.buffers)


def _load_plain(view: memoryview, opts: _LoadOptions) -> Any:
    if opts.resources:
        raise ValueError(
            "resources were given but the data is a plain pickle stream, which records no "
            "dropped resources"
        )
    if opts.key is not None:
        raise SignatureError(
            "a key was given but the data is a plain pickle stream, which cannot be signed"
        )
    codec = codec_for_magic(view)
    stream: Any = view
    if codec is not None:
        stream = codec.decompress(view)
    else:
        foreign = decompress_foreign(view)
        if foreign is not None:
            stream = foreign
    if opts.restricted:
        from .security import restricted_loads

        return restricted_loads(
            stream,
            allow=opts.allow,
            trusted=False,  # a plain stream carries no signature
            fix_imports=opts.fix_imports,
            encoding=opts.encoding,
            errors=opts.errors,
            buffers=opts.buffers,
        )
    try:
        return pickle.loads(
            stream,
            fix_imports=opts.fix_imports,
            encoding=opts.encoding,
            errors=opts.errors,
            buffers=opts.buffers,
        )
    except _MISSING_NAME as exc:
        raise _missing_name(exc) from exc
    except _MALFORMED as exc:
        raise _malformed(exc, view) from exc


def _missing_name(exc: BaseException) -> UnpicklingError:
    return UnpicklingError(
        f"the pickle stream names something this environment lacks ({type(exc).__name__}: "
        f"{exc}): the stream is damaged, or was written where other packages are installed"
    )


def _malformed(exc: BaseException, view: memoryview) -> CorruptPayloadError:
    if isinstance(exc, EOFError) or "truncated" in str(exc):
        return TruncatedPayloadError(
            f"truncated pickle stream: the data ({len(view)} bytes) ends before the stream does"
        )
    head = bytes(view[:1])
    if head and head[0] != 0x80 and isinstance(exc, pickle.UnpicklingError):
        return CorruptPayloadError(
            f"not an omnipickle payload or a pickle stream (it starts with {bytes(view[:8])!r}): "
            f"{exc}"
        )
    return CorruptPayloadError(f"damaged pickle stream: {type(exc).__name__}: {exc}")


def loads(
    data: bytes | bytearray | memoryview,
    /,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
    key: bytes | None = None,
    resources: Mapping[str | type, Any] | None = None,
    restricted: bool = False,
    allow: Iterable[str] | None = None,
) -> Any:
    """Rebuild an object from bytes.

    Reads omnipickle payloads, plain pickle streams of every protocol (from :mod:`pickle`,
    cloudpickle or dill), and pickle streams compressed whole with gzip, bz2, xz, zstd or lz4.

    Args:
        data: the payload (any bytes-like object; it is not copied to strip the header).
        fix_imports, encoding, errors, buffers: as for :func:`pickle.loads`.
        key: verify the payload's HMAC-SHA256 signature with this key before unpickling.
        resources: live objects to put back where ``dumps(..., on_unpicklable="drop")``
            dropped resources, keyed by path (``"root.client._sock"``, as ``info().dropped``
            lists them) or by type (every dropped object of that type). Unmatched dropped
            resources load as ``None``.
        restricted: accept only allow-listed globals (a safe default set of data types,
            extended with ``allow``); the first refused one raises
            :class:`UnsafePayloadError` before it is imported or called. Code serialized by
            value is accepted only if the payload's signature verified with ``key``.
        allow: extra globals for restricted loading: exact names (``"pkg.module.Name"``) and
            prefixes (``"pkg.*"``).

    Returns:
        The object.

    Raises:
        TypeError: ``data`` is not bytes-like.
        TruncatedPayloadError: ``data`` is empty or ends early (also an ``EOFError``).
        CorruptPayloadError: wrong checksum, damaged header, or not a payload at all.
        SignatureError: ``key`` was given and the payload is unsigned or does not verify.
        IncompatiblePayloadError: by-value code from another Python minor version, or a
            format newer than this release.
        BackendNotInstalledError: the payload needs a backend whose package is missing.
        ValueError: ``resources`` names a path or type the payload did not drop (checked
            before anything is unpickled); ``allow`` is malformed or given without
            ``restricted``.
        UnsafePayloadError: restricted loading refused a global.
    """
    opts = _LoadOptions(
        fix_imports,
        encoding,
        errors,
        buffers,
        _keys(key),
        _check_resources(resources),
        *_check_allow(restricted, allow),
    )
    return _loads_view(_view(data), opts)


def _loads_view(view: memoryview, opts: _LoadOptions) -> Any:
    if len(view) == 0:
        raise TruncatedPayloadError("empty payload: 0 bytes")
    if envelope.is_envelope(view):
        return _load_envelope(view, opts)
    if len(view) < len(envelope.MAGIC) and envelope.MAGIC.startswith(view):
        raise TruncatedPayloadError(
            f"truncated payload: {len(view)} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    return _load_plain(view, opts)


def load(
    file: str | os.PathLike[str] | IO[bytes],
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
    key: bytes | None = None,
    resources: Mapping[str | type, Any] | None = None,
    mmap_mode: str | None = None,
    restricted: bool = False,
    allow: Iterable[str] | None = None,
) -> Any:
    """Rebuild an object from a file (a path or a binary file object).

    The format is found from the data, never from the file name: renamed and compressed files
    load. From a file object, exactly one payload is read, so several can be read in turn; at
    the end of the file :class:`TruncatedPayloadError` (an ``EOFError``) is raised. From a path,
    a large payload is checked, then unpickled as the file is read (never held whole in
    memory).

    Args:
        mmap_mode: ``"r"`` or ``"c"`` (a path only): memory-map the file; large arrays come back
            as read-only (``"r"``) or copy-on-write (``"c"``) views of it, so loading takes
            milliseconds whatever their size. The header and the stream are checked; the
            arrays' own checksums are not (that would read every byte). A compressed file
            cannot be memory-mapped (``ValueError``).
        The others: as for :func:`loads`, which lists what is raised.
    """
    opts = _LoadOptions(
        fix_imports,
        encoding,
        errors,
        buffers,
        _keys(key),
        _check_resources(resources),
        *_check_allow(restricted, allow),
    )
    if is_path(file):
        return load_from_path(file, opts, mmap_mode)
    if mmap_mode is not None:
        raise TypeError("mmap_mode needs a path: a file object cannot be memory-mapped here")
    check_binary_file(file, "r")
    return _load_stream(file, opts)  # type: ignore[arg-type]


def _read_exactly(file: IO[bytes], n: int, what: str) -> bytes:
    chunks = []
    remaining = n
    while remaining > 0:
        chunk = file.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    data = b"".join(chunks)
    if len(data) < n:
        raise TruncatedPayloadError(
            f"truncated {what}: expected {n} bytes, the file ended after {len(data)}"
        )
    return data


def _load_stream(file: IO[bytes], opts: _LoadOptions) -> Any:
    head = file.read(len(envelope.MAGIC))
    if not head:
        raise TruncatedPayloadError("empty payload: the file is at its end")
    if head == envelope.MAGIC:
        fixed = head + _read_exactly(file, HEADER_SIZE - len(head), "header")
        extra_size = int.from_bytes(fixed[20:24], "little")
        if extra_size > 1 << 20:
            raise CorruptPayloadError(f"corrupt header: extra field of {extra_size} bytes")
        header_bytes = fixed + _read_exactly(file, extra_size, "header")
        header = envelope.parse_header(header_bytes)
        rest = _read_exactly(file, header.total_length - len(header_bytes), "payload")
        return _load_envelope(memoryview(header_bytes + rest), opts)
    if codec_for_magic(head) is not None or is_foreign(head) or opts.restricted:
        # A pickle compressed whole by another tool: the compressed stream has no inner end
        # mark the unpickler could stop at, so it is read to the end of the file.
        return _load_plain(memoryview(head + file.read()), opts)
    reader = _Prefixed(head, file)
    try:
        return pickle.Unpickler(
            reader,
            fix_imports=opts.fix_imports,
            encoding=opts.encoding,
            errors=opts.errors,
            buffers=opts.buffers,
        ).load()
    except _MISSING_NAME as exc:
        raise _missing_name(exc) from exc
    except _MALFORMED as exc:
        raise _malformed(exc, memoryview(head)) from exc


class _Prefixed:
    """A read-only file that yields ``prefix`` and then the rest of ``file``.

    Only ``read`` and ``readline`` are offered, so the unpickler reads no further than the end
    of its own stream and the next payload in the file stays where it is.
    """

    def __init__(self, prefix: bytes, file: IO[bytes]) -> None:
        self._prefix = prefix
        self._file = file

    def read(self, n: int = -1) -> bytes:
        if not self._prefix:
            return self._file.read(n)
        if n < 0:
            data, self._prefix = self._prefix + self._file.read(), b""
            return data
        data, self._prefix = self._prefix[:n], self._prefix[n:]
        if len(data) < n:
            data += self._file.read(n - len(data))
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(memoryview(buf)))
        memoryview(buf)[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        if not self._prefix:
            return self._file.readline()
        newline = self._prefix.find(b"\n")
        if newline >= 0:
            line, self._prefix = self._prefix[: newline + 1], self._prefix[newline + 1 :]
            return line
        line, self._prefix = self._prefix, b""
        return line + self._file.readline()


# --- info ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Info:
    """What a payload's envelope says, read without unpickling anything.

    Attributes:
        format: ``"omnipickle"``, ``"pickle"`` (a plain stream) or ``"compressed pickle"``.
        format_version: the envelope format version (``None`` for plain streams).
        protocol: the pickle protocol of the stream, when known.
        backends: the backends the payload needs to load.
        loader: the backend whose ``loads`` reads it.
        codec: the compression codec, or ``None``.
        stored_size: bytes of (possibly compressed) payload.
        raw_size: bytes of pickle stream before compression.
        python: the ``major.minor`` Python that wrote it.
        signed: whether it carries an HMAC-SHA256 signature.
        by_value: whether it holds code serialized by value.
        out_of_band: whether it needs out-of-band buffers to load.
        checksum: the payload checksum, as 8 hex digits, and whether it matched.
        extra: the envelope's extra field.
        dropped: the live resources ``on_unpicklable="drop"`` left out: ``{"path", "type"}``
            for each, in the order of the stream.
    """

    format: str
    format_version: int | None
    protocol: int | None
    backends: tuple[str, ...]
    loader: str | None
    codec: str | None
    stored_size: int
    raw_size: int | None
    python: str | None
    signed: bool
    by_value: bool
    out_of_band: bool
    checksum: str | None
    checksum_ok: bool | None
    extra: dict[str, Any]
    dropped: tuple[dict[str, str], ...] = ()

    def __str__(self) -> str:
        rows = [
            ("format", self.format + (f" v{self.format_version}" if self.format_version else "")),
            ("protocol", self.protocol),
            ("backends", ", ".join(self.backends) or "-"),
            ("loader", self.loader or "-"),
            ("codec", self.codec or "none"),
            ("stored size", f"{self.stored_size:,} bytes"),
            ("pickle size", f"{self.raw_size:,} bytes" if self.raw_size is not None else "-"),
            ("python", self.python or "-"),
            ("signed", "yes" if self.signed else "no"),
            ("code by value", "yes" if self.by_value else "no"),
            ("out-of-band", "yes" if self.out_of_band else "no"),
            (
                "checksum",
                "-"
                if self.checksum is None
                else f"crc32 {self.checksum} ({'ok' if self.checksum_ok else 'MISMATCH'})",
            ),
        ]
        if self.dropped:
            rows.append(("dropped", f"{len(self.dropped)} live resource(s), loaded as None"))
            rows += [(f"  {d['path']}", d["type"]) for d in self.dropped]
        rows += [(f"extra.{k}", v) for k, v in sorted(self.extra.items()) if k != "dropped"]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def info(data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]) -> Info:
    """Describe a payload from its envelope, without unpickling anything.

    Args:
        data_or_path: the payload's bytes, a path to a file, or a binary file object (read from
            its current position).

    Returns:
        An :class:`Info`; ``str()`` of it is a readable table.

    Raises:
        TypeError: the argument is none of those.
        TruncatedPayloadError, CorruptPayloadError: the header is damaged (a payload checksum
            mismatch is reported in the result, not raised).
    """
    if is_path(data_or_path):
        with open(data_or_path, "rb") as f:  # type: ignore[arg-type]
            view = memoryview(f.read())
    elif isinstance(data_or_path, (bytes, bytearray, memoryview)):
        view = _view(data_or_path)
    elif hasattr(data_or_path, "read"):
        check_binary_file(data_or_path, "r")
        view = memoryview(data_or_path.read())
    else:
        raise TypeError(
            f"info() takes bytes, a path or a binary file, not {type(data_or_path).__name__}"
        )
    if len(view) == 0:
        raise TruncatedPayloadError("empty payload: 0 bytes")
    if not envelope.is_envelope(view):
        return _plain_info(view)
    header = envelope.parse_header(view)
    try:
        envelope.check_payload(header, view)
        ok = True
    except CorruptPayloadError:
        ok = False
    names = [name for name, bit in BUILTIN_BITS.items() if header.backend_bits & bit]
    names += [str(n) for n in header.extra.get("backends", ())]
    try:
        codec = _header_codec(header)
        codec_name = codec.name if codec is not None else None
    except (IncompatiblePayloadError, CorruptPayloadError, ValueError):
        codec_name = f"unknown (id {header.codec_id})"
    try:
        loader: str | None = _loader_name(header)
    except (IncompatiblePayloadError, CorruptPayloadError):
        loader = None
    return Info(
        format="omnipickle",
        format_version=header.version,
        protocol=header.protocol,
        backends=tuple(names),
        loader=loader,
        codec=codec_name,
        stored_size=header.stored_length,
        raw_size=header.raw_length,
        python=f"{header.python[0]}.{header.python[1]}",
        signed=header.signed,
        by_value=header.by_value,
        out_of_band=bool(header.flags & FLAG_OUT_OF_BAND),
        checksum=f"{header.checksum:08x}",
        checksum_ok=ok,
        extra=dict(header.extra),
        dropped=tuple(header.extra.get("dropped", ())),
    )


def _plain_info(view: memoryview) -> Info:
    codec = codec_for_magic(view)
    stream: Any = view
    if codec is not None:
        stream = codec.decompress(view)
    head = bytes(stream[:2])
    protocol = head[1] if len(head) == 2 and head[0] == 0x80 else None
    return Info(
        format="compressed pickle" if codec is not None else "pickle",
        format_version=None,
        protocol=protocol,
        backends=(),
        loader="pickle",
        codec=codec.name if codec is not None else None,
        stored_size=len(view),
        raw_size=len(stream),
        python=None,
        signed=False,
        by_value=False,
        out_of_band=False,
        checksum=None,
        checksum_ok=None,
        extra={},
    )


# --- Serializer ------------------------------------------------------------------------------

_DUMP_OPTIONS = (
    "protocol",
    "fix_imports",
    "buffer_callback",
    "backend",
    "compression",
    "level",
    "key",
    "on_unpicklable",
    "raw",
)
_LOAD_OPTIONS = (
    "fix_imports",
    "encoding",
    "errors",
    "buffers",
    "key",
    "resources",
    "restricted",
    "allow",
)


class Serializer:
    """The options of :func:`dumps`/:func:`loads` held once.

    ``Serializer(compression="zstd", key=K).dumps(obj)`` is ``dumps(obj, compression="zstd",
    key=K)``; options given to a method override the held ones. Options that only one
    direction uses are ignored by the other. Instances are immutable and safe to share
    between threads.

    Raises:
        TypeError: an unknown option name.
    """

    def __init__(self, **defaults: Any) -> None:
        unknown = set(defaults) - set(_DUMP_OPTIONS) - set(_LOAD_OPTIONS)
        if unknown:
            raise TypeError(
                f"unknown Serializer option(s): {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted({*_DUMP_OPTIONS, *_LOAD_OPTIONS}))}"
            )
        if "backend" in defaults:
            BACKENDS.canonical(defaults["backend"])
        if defaults.get("compression") is not None:
            _codec(defaults["compression"])
        if "key" in defaults:
            _keys(defaults["key"])
        self._defaults = dict(defaults)

    def __repr__(self) -> str:
        shown = {k: ("<key>" if k == "key" else v) for k, v in self._defaults.items()}
        return f"Serializer({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def _merged(self, names: tuple[str, ...], given: dict[str, Any]) -> dict[str, Any]:
        merged = {k: v for k, v in self._defaults.items() if k in names}
        merged.update(given)
        return merged

    def dumps(self, obj: Any, **options: Any) -> bytes:
        """:func:`dumps` with this serializer's options."""
        return dumps(obj, **self._merged(_DUMP_OPTIONS, options))

    def dump(self, obj: Any, file: str | os.PathLike[str] | IO[bytes], **options: Any) -> None:
        """:func:`dump` with this serializer's options."""
        dump(obj, file, **self._merged(_DUMP_OPTIONS, options))

    def loads(self, data: bytes | bytearray | memoryview, **options: Any) -> Any:
        """:func:`loads` with this serializer's options."""
        return loads(data, **self._merged(_LOAD_OPTIONS, options))

    def load(self, file: str | os.PathLike[str] | IO[bytes], **options: Any) -> Any:
        """:func:`load` with this serializer's options."""
        return load(file, **self._merged(_LOAD_OPTIONS, options))
