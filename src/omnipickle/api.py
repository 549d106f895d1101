"""The public functions: ``dumps``, ``loads``, ``dump``, ``load``, ``info`` and ``Serializer``.

Each function validates its arguments into one options object (:mod:`omnipickle.options`), picks
the payload reader or writer (:mod:`omnipickle.format`), and calls the backend. Nothing below
this module imports it.
"""

from __future__ import annotations

import functools
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import IO, TYPE_CHECKING, Any, TypeVar

from ._reconstruct import LOAD_HOOKS, REATTACH
from ._registry import Remembered
from .backends import DEFAULTS, PICKLE_BIT, PICKLE_LOADER_ID, check_installed
from .backends import REGISTRY as BACKENDS
from .backends.base import BufferRecorder
from .backends.small import ATOMS, MAX_NODES, plain_dumps
from .codecs import MAGICS, Codec, codec_for_suffix
from .errors import (
    LOAD_FAILURES,
    DroppedResourceWarning,
    IncompatiblePayloadError,
    UnpicklingError,
    load_failure,
)
from .files import atomic_write, atomic_writer, check_binary_file, is_path, readable, seekable
from .format import ENVELOPE, as_view
from .format.header import (
    FLAG_OUT_OF_BAND,
    FLAG_SECTIONS,
    PLAIN_LAYOUT,
    Header,
    PlainEnvelopes,
    accepted_first_bytes,
    is_plain_payload,
    plain_stream,
)
from .format.signing import KeyArgument
from .format.writer import FileWriter, Part, encode, write_parts
from .options import (
    DEFAULT_PROTOCOL,
    HIGHEST_PROTOCOL,
    DumpOptions,
    LoadOptions,
    OnUnpicklable,
    check_allow,
    dump_options,
    load_options,
)
from .resources import USER_RULES
from .urls import check_storage_options, is_url, open_url, url_writer

if TYPE_CHECKING:
    from .backends import Pickled
    from .format.describe import Info
    from .format.reader import Payload

__all__ = [
    "DEFAULT_PROTOCOL",
    "HIGHEST_PROTOCOL",
    "dump",
    "dumps",
    "info",
    "load",
    "loads",
]

Compression = str | Codec | None


# --- dumping ---------------------------------------------------------------------------------


def _pickle(obj: Any, opts: DumpOptions, buffer_callback: Any, sink: Any = None) -> Pickled:
    """Run the backend: the stream goes to ``sink`` when the backend streams."""
    options: dict[str, Any] = {
        "protocol": opts.protocol,
        "fix_imports": opts.fix_imports,
        "buffer_callback": buffer_callback,
    }
    if sink is not None:
        options["sink"] = sink
    if opts.drop:
        options["on_unpicklable"] = "drop"
    if opts.deterministic:
        from .backends.deterministic import dumps_deterministic  # only these dumps need it

        options["strip_source_info"] = opts.strip_source_info
        return dumps_deterministic(obj, **options)
    pickled: Pickled = opts.backend.dumps(obj, **options)
    if opts.drop:
        _warn_dropped(pickled.extra.get("dropped", ()))
    return pickled


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


def _encode(obj: Any, opts: DumpOptions) -> list[Part]:
    """The payload as a list of parts to be written (or joined) in order."""
    if opts.raw:
        return _pickle(obj, opts, opts.buffer_callback).chunks
    # Flagged only if a buffer did go out of band: one the callback kept in-band (returning
    # True) is in the stream, and the payload loads without buffers=.
    callback = BufferRecorder(opts.buffer_callback) if opts.buffer_callback is not None else None
    pickled = _pickle(obj, opts, callback)
    out_of_band = callback is not None and callback.out_of_band
    return encode(pickled, opts.protocol, opts.codec, opts.level, opts.key, out_of_band)


def _dump_to_file(obj: Any, out: IO[bytes], opts: DumpOptions) -> None:
    """Write one payload to the seekable binary file ``out``, streaming when it is large."""
    # Streaming writes the header last, and may read the file back (to sign it, or to make
    # room for a large header): a file we cannot read gets the payload built in memory.
    if opts.raw or not opts.backend.streams or not readable(out):
        write_parts(out, _encode(obj, opts))
        return
    writer = FileWriter(
        out,
        protocol=opts.protocol,
        codec=opts.codec,
        level=opts.level,
        key=opts.key,
        buffer_callback=opts.buffer_callback,
    )
    try:
        pickled = _pickle(obj, opts, writer.buffer_callback, sink=writer.sink)
    except BaseException:
        writer.abort()
        raise
    writer.finish(pickled)


def dumps(
    obj: Any,
    protocol: int | None = None,
    *,
    fix_imports: bool = True,
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    backend: str = "auto",
    compression: Compression = None,
    level: int | None = None,
    key: KeyArgument | None = None,
    on_unpicklable: OnUnpicklable = "raise",
    raw: bool = False,
    deterministic: bool = False,
    strip_source_info: bool = False,
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
        deterministic: equal objects give equal bytes in every process and under every
            ``PYTHONHASHSEED``: sets in a canonical order, classes by value with content
            identities (docs/deterministic.md says what is covered). Loads as any payload.
        strip_source_info: with ``deterministic``, leave line numbers out of code by value.

    Returns:
        The payload: an envelope (header, then the possibly compressed pickle stream), or the
        bare pickle stream with ``raw=True``.

    Raises:
        PicklingError: part of ``obj`` cannot be serialized; the message names its path
            (``root['jobs'][3].client._sock``), its type, the reason and a fix. Where pickle
            raises ``TypeError``, ``AttributeError`` or ``RecursionError``, it is also that
            type (:class:`PicklingTypeError`, :class:`PicklingAttributeError`,
            :class:`PicklingRecursionError`).
        DeterminismError: with ``deterministic``, a part has no canonical form (a
            :class:`PicklingError` naming its path).
        UnknownBackendError, UnknownCodecError: no backend or codec has that name.
        BackendNotInstalledError, CodecNotInstalledError: its package is missing.
        ValueError, TypeError: an option is out of range or of the wrong type.
    """
    if (
        buffer_callback is None
        and key is None
        and compression is None
        and level is None
        and fix_imports is True
        and type(raw) is bool
        and on_unpicklable == "raise"
        and backend == "auto"
        and not (deterministic or strip_source_info)  # pickle's memo and set order vary
        and DEFAULTS.builtin
    ):
        # The per-call fast path: a small graph of plain data is what pickle.dumps writes.
        proto = DEFAULT_PROTOCOL if protocol is None else protocol
        if type(proto) is int and 2 <= proto <= HIGHEST_PROTOCOL:
            stream = plain_dumps(obj, proto)
            if stream is not None:
                return stream if raw else _PLAIN_DATA.wrap(stream, proto)
            # Not plain data: the backend straight away, with the options checked once.
            pickled = _DEFAULT_DUMPS((proto, raw)).backend.dumps(
                obj, protocol=proto, fix_imports=True, buffer_callback=None
            )
            return _joined(
                pickled.chunks if raw else encode(pickled, proto, None, None, None, False)
            )
    opts = dump_options(
        protocol,
        fix_imports=fix_imports,
        buffer_callback=buffer_callback,
        backend=backend,
        compression=compression,
        level=level,
        key=key,
        on_unpicklable=on_unpicklable,
        raw=raw,
        deterministic=deterministic,
        strip_source_info=strip_source_info,
    )
    return dumps_with(obj, opts)


def _default_dump_options(key: tuple[int, bool]) -> DumpOptions:
    protocol, raw = key
    return dump_options(
        protocol,
        fix_imports=True,
        buffer_callback=None,
        backend="auto",
        compression=None,
        level=None,
        key=None,
        on_unpicklable="raise",
        raw=raw,
    )


# The envelope of a small stream of plain data (pickle's loader and backend, nothing else).
_PLAIN_DATA = PlainEnvelopes(PICKLE_LOADER_ID, PICKLE_BIT)

# The options of a dumps given none but the protocol and raw, checked once per backend registry.
_DEFAULT_DUMPS: Remembered[tuple[int, bool], DumpOptions] = Remembered(
    BACKENDS, _default_dump_options
)


def _small_plain(obj: Any, opts: DumpOptions) -> bytes | None:
    """The payload of ``obj`` when the per-call fast path of :func:`dumps` takes it under
    ``opts`` (the defaults but for protocol and raw), else ``None``."""
    if (
        opts.codec is not None
        or opts.key is not None
        or opts.buffer_callback is not None
        or opts.drop
        or opts.deterministic
        or not opts.fix_imports
        or opts.backend.name != "auto"
        or not DEFAULTS.builtin
        or opts.protocol < 2
    ):
        return None
    stream = plain_dumps(obj, opts.protocol)
    if stream is None or opts.raw:
        return stream
    return _PLAIN_DATA.wrap(stream, opts.protocol)


def dumps_with(obj: Any, opts: DumpOptions) -> bytes:
    """:func:`dumps` with options already checked (``Serializer`` checks its own once)."""
    return _joined(_encode(obj, opts))


def _joined(parts: list[Part]) -> bytes:
    if len(parts) == 1 and type(parts[0]) is bytes:
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
    compression: Compression = None,
    level: int | None = None,
    key: KeyArgument | None = None,
    on_unpicklable: OnUnpicklable = "raise",
    raw: bool = False,
    durable: bool = True,
    deterministic: bool = False,
    strip_source_info: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Serialize ``obj`` to a file.

    ``file`` is a path (``str`` or ``os.PathLike``) or a binary file object. A path is written
    atomically (a temporary file beside it, fsynced, then renamed over it): a crash or a failed
    dump leaves the previous file intact. For a path, ``compression=None`` means "infer from the
    suffix" (``.gz``, ``.bz2``, ``.xz``, ``.lzma``, ``.zst``, ``.lz4``; anything else:
    uncompressed).

    A symlink is written through (its target is replaced, the link stays), as ``open(path,
    "wb")`` would.

    A URL (a ``str`` with ``://``: ``memory://``, ``file://``, ``s3://bucket/key``...) is
    written through fsspec, as atomically (a temporary key beside it, then moved over it), with
    the same suffix inference: see docs/integrations.md.

    Args:
        durable: for a path: fsync the file and its folder before returning (the default), so
            the new file survives a power cut. ``False`` skips both (much faster for many small
            files): the replacement stays atomic for every other process, but after a power cut
            the old file may be there instead (never a torn one on journaling file systems).
        storage_options: for a URL: passed to its fsspec file system (credentials, endpoint).
        The others: as for :func:`dumps`.

    Raises:
        TypeError: ``file`` is neither a path nor a binary file object, or ``storage_options``
            is given for something other than a URL.
        OSError: the file cannot be written (the message names it).
        ImportError: ``file`` is a URL and fsspec (or its protocol's package) is missing.
        and everything :func:`dumps` raises.
    """
    check_storage_options(file, storage_options)
    path = is_path(file)
    if path:
        if compression is None and not raw:
            found = codec_for_suffix(os.fspath(file))  # type: ignore[arg-type]
            compression = found.name if found is not None else None
    else:
        check_binary_file(file, "w")
    opts = dump_options(
        protocol,
        fix_imports=fix_imports,
        buffer_callback=buffer_callback,
        backend=backend,
        compression=compression,
        level=level,
        key=key,
        on_unpicklable=on_unpicklable,
        raw=raw,
        deterministic=deterministic,
        strip_source_info=strip_source_info,
    )
    if path:
        # A failure at any point removes the temporary file and leaves the target as it was.
        if is_url(file):
            writer = url_writer(file, storage_options, durable=durable)  # type: ignore[arg-type]
        else:
            small = _small_plain(obj, opts)
            if small is not None:
                atomic_write(file, small, durable=durable)  # type: ignore[arg-type]
                return
            writer = atomic_writer(file, durable=durable)  # type: ignore[arg-type]
        with writer as f:
            _dump_to_file(obj, f, opts)
    elif seekable(file):
        _dump_to_file(obj, file, opts)  # type: ignore[arg-type]
    else:
        # Serialize before touching the file: a failure leaves nothing half-written.
        write_parts(file, _encode(obj, opts))  # type: ignore[arg-type]


# --- loading ---------------------------------------------------------------------------------


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


def _preflight(payload: Payload, opts: LoadOptions) -> None:
    """Checks made before anything is unpickled."""
    header = payload.header
    assert header is not None
    _check_python(header)
    if payload.backends != ("pickle",):  # the standard library: installed wherever we run
        check_installed(payload.backends)
    if header.flags & FLAG_OUT_OF_BAND and opts.buffers is None:
        raise UnpicklingError(
            "this payload was written with a buffer_callback: pass the same out-of-band "
            "buffers to loads(..., buffers=...)"
        )
    if header.flags & FLAG_SECTIONS and opts.buffers is not None:
        raise ValueError(
            "this payload carries its own out-of-band buffers (sections): do not pass buffers="
        )


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


def unpickle(payload: Payload, opts: LoadOptions) -> Any:
    """Rebuild the object from what the reader found (``loads``, ``load`` and
    ``omnipickle.Unpickler`` at an envelope all end here).

    Raises:
        UnpicklingError: an ``omnipickle.Unpickler`` subclass with its own ``find_class`` or
            ``persistent_load`` is loading, and the payload's loader (a backend registered with
            its own ``loads``) cannot put the stream's globals through them.
        and everything :func:`loads` lists.
    """
    if opts.buffers is not None:
        _check_buffers(opts.buffers)
    if payload.kind != ENVELOPE:
        if opts.resources:
            raise ValueError(
                "resources were given but the data is a plain pickle stream, which records no "
                "dropped resources"
            )
        return _unpickle_plain(payload, opts)
    header = payload.header
    assert header is not None and payload.stream is not None
    _preflight(payload, opts)
    buffers = payload.buffers if payload.buffers is not None else opts.buffers
    backend = BACKENDS.get(payload.loader)
    if not backend.defers_hooks and LOAD_HOOKS.get() is not None:
        raise UnpicklingError(
            f"this payload is read by backend {payload.loader!r}, whose loads() does not "
            "put the stream's globals through Unpickler.find_class: refused, as the "
            "unpickler's own find_class could not vet them"
        )
    # What the stream raises comes from the backend's loads, mapped there (the frame that calls
    # the unpickler; see errors.load_failure): the code the stream runs keeps its exceptions.
    token = REATTACH.set(_reattach(header, opts.resources))
    try:
        if opts.restricted:
            # Code by value is trusted only through a signature that verified.
            return _restricted_loads()(
                _bare_stream(payload),
                allow=opts.allow,
                trusted=payload.verified,
                fix_imports=opts.fix_imports,
                encoding=opts.encoding,
                errors=opts.errors,
                buffers=buffers,
            )
        try:
            return backend.loads(
                payload.stream,
                fix_imports=opts.fix_imports,
                encoding=opts.encoding,
                errors=opts.errors,
                buffers=buffers,
            )
        except (TypeError, AttributeError, ImportError) as exc:
            from .format.versions import note_version_change

            note_version_change(exc, header)  # a backend's reconstructors may have changed
            raise
    finally:
        REATTACH.reset(token)


@functools.cache
def _restricted_loads() -> Callable[..., Any]:
    """:func:`omnipickle.security.restricted_loads`, imported on first use: only restricted
    loads need it, and an import in the function that calls it costs ~2.5 us every call."""
    from .security.unpickler import restricted_loads

    return restricted_loads


def _check_buffers(buffers: Any) -> None:
    """A ``buffers`` that is not iterable is the caller's ``TypeError``, as pickle raises it,
    not a damaged stream."""
    try:
        iter(buffers)
    except TypeError:
        raise TypeError(
            f"buffers must be an iterable of buffers, not {type(buffers).__name__}"
        ) from None


def _bare_stream(payload: Payload) -> Any:
    """The pickle stream without format 2's header wrapping: what a restricted load (which
    refuses envelopes, to keep callers from skipping their checks) is given: one copy of it,
    the first two bytes and what follows the header."""
    header, stream = payload.header, payload.stream
    assert header is not None and stream is not None
    if payload.codec is not None or header.stream_start != 0:
        return stream
    view = memoryview(stream)
    return b"".join((view[: header.lead], view[header.payload_offset :]))  # one copy


def _unpickle_plain(payload: Payload, opts: LoadOptions) -> Any:
    source: Any = payload.file
    if opts.restricted:
        data = payload.stream if payload.stream is not None else source.read()
        return _restricted_loads()(
            data,
            allow=opts.allow,
            trusted=False,  # a plain stream carries no signature
            fix_imports=opts.fix_imports,
            encoding=opts.encoding,
            errors=opts.errors,
            buffers=opts.buffers,
        )
    stream = payload.stream
    # Both unpicklers are called from this frame, where what they raise is caught: see
    # errors.load_failure (the code the stream runs keeps its exceptions, the stream's own
    # damage is an UnpicklingError that is also the type pickle raised).
    try:
        if stream is not None:
            return pickle.loads(
                stream,
                fix_imports=opts.fix_imports,
                encoding=opts.encoding,
                errors=opts.errors,
                buffers=opts.buffers,
            )
        try:
            return pickle.Unpickler(
                source,
                fix_imports=opts.fix_imports,
                encoding=opts.encoding,
                errors=opts.errors,
                buffers=opts.buffers,
            ).load()
        finally:
            source.give_back()
    except LOAD_FAILURES as exc:
        if stream is not None:
            # A whole stream ends with STOP; one that does not was cut short.
            error = load_failure(
                exc, size=len(stream), ended=bytes(stream[-1:]) != b".", head=bytes(stream[:8])
            )
        else:
            from .format.source import PrefixedReader

            assert isinstance(source, PrefixedReader)
            error = load_failure(
                exc, size=source.consumed, ended=source.exhausted, head=source.head
            )
        if error is None:
            raise
        raise error from exc


def loads(
    data: bytes | bytearray | memoryview,
    /,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
    key: KeyArgument | None = None,
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
        CorruptPayloadError: wrong checksum, damaged header, bytes after the payload, or not a
            payload at all.
        SignatureError: ``key`` was given and the payload is unsigned or does not verify.
        IncompatiblePayloadError: by-value code from another Python minor version, or a
            format newer than this release.
        BackendNotInstalledError: the payload needs a backend whose package is missing.
        ValueError: ``resources`` names a path or type the payload did not drop (checked
            before anything is unpickled); ``allow`` is malformed or given without
            ``restricted``.
        UnsafePayloadError: restricted loading refused a global.
        UnpicklingError: the stream is damaged (a ``CorruptPayloadError``) or names a module
            or attribute this environment lacks; also an instance of the type pickle raises
            (``ValueError``, ``ModuleNotFoundError``, ``AttributeError``...).
        and whatever your own code raises while the stream runs it (a ``__setstate__``, a
        ``__reduce__`` constructor), unchanged, as under pickle.
    """
    if (
        type(data) is bytes
        and key is None
        and resources is None
        and restricted is False
        and allow is None
        and len(data) > 2
        and data[0] == 0x80  # PROTO: a plain envelope and a plain pickle stream both start so
        and LOAD_HOOKS.get() is None
    ):
        # The per-call fast paths.
        if data[2] == 0x42:  # BINBYTES: format 2's header (or a protocol-3 stream of bytes)
            if (
                buffers is None
                and fix_imports is True
                and encoding == "ASCII"
                and errors == "strict"
                and DEFAULTS.builtin
                and is_plain_payload(
                    data,
                    PICKLE_LOADER_ID,
                    DEFAULTS.fast_bits if "cloudpickle" in sys.modules else DEFAULTS.pickle_only,
                )
            ):
                # An intact envelope that pickle reads as it is (plain data, or code by value
                # from this Python that needs only cloudpickle, which is imported).
                try:
                    return pickle.loads(data)
                except LOAD_FAILURES as exc:
                    # Caught in the frame that called the unpickler: see errors.load_failure.
                    error = load_failure(exc, size=len(data), ended=data[-1:] != b".")
                    if error is None:
                        raise
                    raise error from exc
        elif MAGICS.proto_unclaimed:
            # A plain pickle stream (raw=True): no envelope starts so.
            if buffers is not None:
                _check_buffers(buffers)
            try:
                if (
                    buffers is None
                    and fix_imports is True
                    and encoding == "ASCII"
                    and errors == "strict"
                ):
                    return pickle.loads(data)
                return pickle.loads(
                    data, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
                )
            except LOAD_FAILURES as exc:
                # Caught in the frame that called the unpickler: see errors.load_failure.
                error = load_failure(exc, size=len(data), ended=data[-1:] != b".", head=data[:8])
                if error is None:
                    raise
                raise error from exc
    elif (
        restricted is True
        and type(data) is bytes
        and key is None
        and resources is None
        and buffers is None
        and fix_imports is True
        and encoding == "ASCII"
        and errors == "strict"
        and DEFAULTS.builtin
        and LOAD_HOOKS.get() is None
        and is_plain_payload(data, PICKLE_LOADER_ID, DEFAULTS.pickle_only)
    ):
        # A small restricted load: the intact plain envelope's stream, without the general
        # reader (what the general path hands the restricted unpickler, byte for byte).
        stream = plain_stream(data)
        if stream is not None:
            return _restricted_loads()(stream, allow=check_allow(True, allow)[1])
    opts = load_options(
        fix_imports=fix_imports,
        encoding=encoding,
        errors=errors,
        buffers=buffers,
        key=key,
        resources=resources,
        restricted=restricted,
        allow=allow,
    )
    return loads_with(data, opts)


_F = TypeVar("_F", bound=Callable[..., Any])


def _fast_path_failure(exc: BaseException, data: bytes, raw: bool) -> UnpicklingError | None:
    """What the C fast path of :func:`loads` raises (``from exc``) when ``pickle.loads(data)``
    raised ``exc``, or ``None`` to re-raise it: what the Python fast path raises."""
    if not isinstance(exc, LOAD_FAILURES):
        return None
    head = data[:8] if raw else b""
    return load_failure(exc, size=len(data), ended=data[-1:] != b".", head=head, caught=False)


def _speedups() -> tuple[Any, Any] | None:
    """``accelerate_loads`` and ``accelerate_dumps`` of :mod:`omnipickle._speedups`, or ``None``
    where the extension was not built or when ``OMNIPICKLE_PURE_PYTHON`` is set (to anything
    but ``""`` or ``"0"``)."""
    if os.environ.get("OMNIPICKLE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from ._speedups import accelerate_dumps, accelerate_loads
    except ImportError:
        return None
    return accelerate_loads, accelerate_dumps


def _standing_in_for(fast: _F, python_function: Callable[..., Any]) -> _F:
    """``fast`` (a C callable that hands every call it does not take to ``python_function``),
    with the function's name, docstring, signature and defaults, which introspection (and
    ``Serializer``) read from a function."""
    functools.update_wrapper(
        fast, python_function, (*functools.WRAPPER_ASSIGNMENTS, "__defaults__", "__kwdefaults__")
    )
    return fast


_SPEEDUPS = _speedups()
if _SPEEDUPS is not None:
    _accelerate_loads, _accelerate_dumps = _SPEEDUPS
    loads = _standing_in_for(
        _accelerate_loads(
            loads,
            pickle.loads,
            LOAD_HOOKS,
            DEFAULTS,
            MAGICS,
            functools.partial(accepted_first_bytes, PICKLE_LOADER_ID),
            _fast_path_failure,
            sys.modules,
            PLAIN_LAYOUT,
        ),
        loads,
    )
    dumps = _standing_in_for(
        _accelerate_dumps(
            dumps,
            {
                "pickle": pickle.dumps,
                "defaults": DEFAULTS,
                "user_rules": USER_RULES,
                "atoms": ATOMS,
                "max_nodes": MAX_NODES,
                "default_protocol": DEFAULT_PROTOCOL,
                "highest_protocol": HIGHEST_PROTOCOL,
                "prefix": _PLAIN_DATA.prefix,
                "wrap": _PLAIN_DATA.wrap,
                "layout": PLAIN_LAYOUT,
            },
        ),
        dumps,
    )


def loads_with(data: bytes | bytearray | memoryview, opts: LoadOptions) -> Any:
    """:func:`loads` with options already checked (``Serializer`` checks its own once)."""
    # The reader waits for the first load off the fast path. Absolute: a relative import
    # statement costs more on every call (it resolves the name each time).
    from omnipickle.format import reader

    return unpickle(reader.read_view(as_view(data), keys=opts.keys), opts)


def load(
    file: str | os.PathLike[str] | IO[bytes],
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
    key: KeyArgument | None = None,
    resources: Mapping[str | type, Any] | None = None,
    mmap_mode: str | None = None,
    restricted: bool = False,
    allow: Iterable[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Any:
    """Rebuild an object from a file (a path, a URL or a binary file object).

    The format is found from the data, never from the file name: renamed and compressed files
    load. From a file object, exactly one payload is read, so several can be read in turn; at
    the end of the file :class:`TruncatedPayloadError` (an ``EOFError``) is raised. Each byte is
    read once, into memory this process owns, and checked (signature, checksums) before anything
    is unpickled; large arrays are read straight into the buffers they become.

    Args:
        mmap_mode: ``"r"`` or ``"c"`` (a path only): memory-map the file; large arrays come back
            as read-only (``"r"``) or copy-on-write (``"c"``) views of it, so loading takes
            milliseconds whatever their size. The header and the stream are checked; the
            arrays' own checksums are not (that would read every byte). A compressed file
            cannot be memory-mapped (``ValueError``).
        storage_options: for a URL (``memory://``, ``s3://bucket/key``...: a ``str`` with
            ``://``, read through fsspec): passed to its file system.
        The others: as for :func:`loads`, which lists what is raised.
    """
    from .format import reader

    check_storage_options(file, storage_options)
    opts = load_options(
        fix_imports=fix_imports,
        encoding=encoding,
        errors=errors,
        buffers=buffers,
        key=key,
        resources=resources,
        restricted=restricted,
        allow=allow,
    )
    if is_url(file):
        if mmap_mode is not None:
            raise TypeError(f"mmap_mode needs a local path, not the URL {file!r}")
        with open_url(file, storage_options) as f:  # type: ignore[arg-type]  # is_url said so
            return unpickle(reader.read_file(f, keys=opts.keys, whole=True), opts)
    if is_path(file):
        return unpickle(reader.read(file, keys=opts.keys, mmap_mode=mmap_mode), opts)
    if mmap_mode is not None:
        raise TypeError("mmap_mode needs a path: a file object cannot be memory-mapped here")
    check_binary_file(file, "r")
    payload = reader.read_file(file, keys=opts.keys, whole=opts.restricted)  # type: ignore[arg-type]
    return unpickle(payload, opts)


def info(
    data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Info:
    """Describe a payload from its envelope, without unpickling anything.

    Args:
        data_or_path: the payload's bytes, a path to a file, a URL (read through fsspec), or a
            binary file object (read from its current position, and put back there when the
            file can seek).
        storage_options: for a URL: passed to its fsspec file system.

    Returns:
        An :class:`Info`; ``str()`` of it is a readable table.

    Raises:
        TypeError: the argument is none of those.
        TruncatedPayloadError, CorruptPayloadError: the header is damaged (a payload checksum
            mismatch is reported in the result, not raised).
        IncompatiblePayloadError: the header names a codec, backend or flag this release does
            not know.
    """
    from .format.describe import describe  # only info() needs it

    check_storage_options(data_or_path, storage_options)
    if is_url(data_or_path):
        with open_url(data_or_path, storage_options) as f:  # type: ignore[arg-type]
            return describe(f)
    return describe(data_or_path)
