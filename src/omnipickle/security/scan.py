"""The static scan: what a pickle stream would import and call, found without executing it.

:func:`scan_stream` walks an already-decoded pickle stream (the envelope checked and the data
decompressed by :func:`~.entry.scan`) opcode by opcode and simulates the unpickler's stack with
symbolic values. Each opcode's stack effect comes from ``pickletools``' own metadata
(``stack_before`` / ``stack_after``); only the opcodes whose effect on *what* is on the stack
matters to the verdict are simulated by hand: the ones that import globals, call them, change
them, copy values (memo, DUP), name persistent ids, or mark the protocol and the stream's end.
Every verdict comes from the same :class:`~.policy.Policy` restricted loading uses.
"""

from __future__ import annotations

import copyreg
import functools
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple

from ..backends import REGISTRY as BACKENDS
from ..backends import global_prefixes
from ..errors import MALFORMED_STREAM, CorruptPayloadError, TruncatedPayloadError, damaged_stream
from ..format.describe import Info
from .policy import Policy, fix_name

__all__ = ["GlobalUse", "NestedBlob", "ScanReport", "scan_stream"]

# Globals that build code by value: what makes scan() say "code by value".
_CODE_GLOBALS = frozenset(
    {
        *(
            f"cloudpickle.{module}.{name}"
            for module in ("cloudpickle", "cloudpickle_fast")
            for name in ("_make_function", "_make_skeleton_class", "_make_skeleton_enum")
        ),
        "dill._dill._create_code",
        "dill._dill._create_function",
        "dill._dill._create_type",
        "dill._dill._unmarshal",
        "types.CodeType",
        "types.FunctionType",
        "marshal.loads",
    }
)

_LOAD_DILL = "omnipickle._reconstruct.load_dill"
_RESTORE_STATE = ("omnipickle._reconstruct", "restore_state")
_INSTANTIATORS = frozenset(
    {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")}
)
_MAX_NESTING = 16


@dataclass(frozen=True)
class GlobalUse:
    """One global a payload references, and what the payload does with it.

    Attributes:
        module: the module (after Python 2 names are mapped), or ``None`` if it could not be
            resolved statically.
        name: the (possibly dotted) name in the module, or ``None`` if unresolved.
        imports: how many times the stream imports it.
        calls: how many times the stream calls it (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ).
        builds: how many times the stream sets the state of an object it made (BUILD, which
            calls the class's ``__setstate__`` if it has one).
        allowed: whether restricted loading with the scan's allow-list accepts it.
        reason: why it is refused (``None`` when allowed).
        code: whether it rebuilds code serialized by value.
        position: where in the stream it is first imported.
    """

    module: str | None
    name: str | None
    imports: int
    calls: int
    builds: int
    allowed: bool
    reason: str | None
    code: bool
    position: int

    @property
    def qualified_name(self) -> str:
        """``module.name``, or ``"<unresolved>"``."""
        if self.module is None or self.name is None:
            return "<unresolved>"
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class NestedBlob:
    """A pickle stream inside the payload, loaded by a reconstructor (a dill blob).

    Attributes:
        position: where the call that loads it is in the outer stream.
        size: the blob's size in bytes.
        loader: the global that loads it (``omnipickle._reconstruct.load_dill``).
        report: the blob's own scan, or ``None`` if it could not be scanned.
        error: why it could not be scanned.
    """

    position: int
    size: int
    loader: str
    report: ScanReport | None
    error: str | None = None


@dataclass(frozen=True)
class ScanReport:
    """What a payload would import and call, found without executing it.

    ``str()`` of a report is a readable table; :meth:`rows` gives the same rows as data.

    Attributes:
        format: ``"omnipickle"``, ``"pickle"`` or ``"compressed pickle"``.
        codec: the compression codec, or ``None``.
        protocol: the pickle protocol of the (first) stream, when it says.
        size: bytes given to :func:`scan`.
        stream_size: bytes of pickle stream scanned (after decompression).
        streams: how many pickle streams follow each other in the data (a file written by
            several ``pickle.dump`` calls holds several).
        envelope: what the envelope says (``omnipickle.info``), or ``None``.
        globals: every global referenced, in order of first use.
        backends: the backends needed to load it, from the envelope and the globals seen.
        by_value: whether it holds code serialized by value.
        nested: pickle streams nested inside it (dill blobs), each scanned too.
        persistent_ids: how many persistent ids it uses (restricted loading refuses them).
        out_of_band_buffers: how many out-of-band buffers it needs.
        mutations: globals the stream tries to change (BUILD, APPEND, SETITEM... applied to
            the global itself rather than to an object made from it).
        refused: what restricted loading would refuse, in stream order: the first is what it
            would name.
        trusted: whether the verdict allows code by value (``scan(..., trusted=True)``).
        notes: anything else worth knowing.
    """

    format: str
    codec: str | None
    protocol: int | None
    size: int
    stream_size: int
    streams: int
    # An omnipickle.Info, typed loosely: Info is defined above this package (in api).
    envelope: Info | None
    globals: tuple[GlobalUse, ...]
    backends: tuple[str, ...]
    by_value: bool
    nested: tuple[NestedBlob, ...]
    persistent_ids: int
    out_of_band_buffers: int
    mutations: tuple[str, ...]
    refused: tuple[str, ...]
    trusted: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def accepted(self) -> bool:
        """Whether :func:`restricted_loads` would accept it (with the same allow-list)."""
        return not self.refused

    def rows(self) -> list[dict[str, Any]]:
        """One dict per global: the table of ``str(report)`` as data."""
        return [
            {
                "global": use.qualified_name,
                "imports": use.imports,
                "calls": use.calls,
                "builds": use.builds,
                "code": use.code,
                "allowed": use.allowed,
                "reason": use.reason,
            }
            for use in self.globals
        ]

    def __str__(self) -> str:
        return "\n".join(self._lines())

    def _lines(self) -> list[str]:
        fmt = self.format
        if self.envelope is not None:
            fmt += f" v{self.envelope.format_version}"
            fmt += ", signed (not verified by scan)" if self.envelope.signed else ", unsigned"
        summary: list[tuple[str, str]] = [
            ("format", fmt),
            ("codec", self.codec or "none"),
            ("protocol", "-" if self.protocol is None else str(self.protocol)),
            ("size", f"{self.size:,} bytes (pickle stream {self.stream_size:,} bytes)"),
            ("backends", ", ".join(self.backends) or "-"),
            ("code by value", "yes" if self.by_value else "no"),
        ]
        if self.streams > 1:
            summary.append(("streams", str(self.streams)))
        if self.persistent_ids:
            summary.append(("persistent ids", str(self.persistent_ids)))
        if self.out_of_band_buffers:
            summary.append(("out-of-band", f"{self.out_of_band_buffers} buffers"))
        mode = "trusted" if self.trusted else "restricted"
        if self.accepted:
            verdict = f"accepted by {mode} loading"
        else:
            shown = ", ".join(self.refused[:5]) + (", ..." if len(self.refused) > 5 else "")
            verdict = f"REFUSED by {mode} loading: {shown}"
        summary.append(("verdict", verdict))
        width = max(len(k) for k, _ in summary)
        lines = [f"{k:<{width}}  {v}" for k, v in summary]
        if self.globals:
            name_w = max(len("global"), *(len(u.qualified_name) for u in self.globals))
            head = f"{'global':<{name_w}}  imports  calls  builds  {mode} loading"
            lines += ["", head, "-" * len(head)]
            for use in self.globals:
                status = "allowed" if use.allowed else f"REFUSED: {use.reason}"
                if use.code:
                    status += " [code by value]"
                lines.append(
                    f"{use.qualified_name:<{name_w}}  {use.imports:>7}  {use.calls:>5}  "
                    f"{use.builds:>6}  {status}"
                )
        else:
            lines += ["", "no globals: plain data only"]
        for name in self.mutations:
            lines.append(f"the stream changes the global {name} itself")
        for blob in self.nested:
            lines += [
                "",
                f"nested {blob.loader} blob at byte {blob.position} ({blob.size:,} bytes):",
            ]
            if blob.report is None:
                lines.append(f"    could not be scanned: {blob.error}")
            else:
                lines += [f"    {line}" if line else "" for line in blob.report._lines()]
        lines += [f"note: {note}" for note in self.notes]
        return lines


# --- the walker ----------------------------------------------------------------------------------


class _Sym:
    """A value on the simulated unpickler stack."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any = None) -> None:
        self.kind = kind  # "str", "bytes", "tuple", "global", "made", "mark", "other"
        self.value = value


_OTHER = _Sym("other")
_MARK = _Sym("mark")


class _Op(NamedTuple):
    """What the walker needs of one opcode, from pickletools' description of it."""

    name: str
    reader: Callable[[IO[bytes]], Any] | None  # reads its argument from the stream
    below: int  # values it pops (below its mark, when it has one)
    to_mark: bool  # it pops a mark and every value above it
    pushes: tuple[str, ...]  # the kind of each value it pushes ("mark", "str", "tuple"...)
    handler: Callable[[_Walker, _Op, Any, int], None]  # how the walker simulates it


@functools.cache
def _opcodes() -> dict[int, _Op]:
    # Imported on the first scan, not with omnipickle (the import test pins it).
    import pickletools

    # The values the verdict needs to see: marks, the strings STACK_GLOBAL joins, the bytes
    # load_dill loads, and the tuples a call's arguments come in. Anything else is opaque.
    kinds = {
        pickletools.markobject: "mark",
        pickletools.pyunicode: "str",
        pickletools.pybytes_or_str: "str",
        pickletools.pybytes: "bytes",
        pickletools.pytuple: "tuple",
    }
    table = {}
    for op in pickletools.opcodes:
        before = op.stack_before
        to_mark = pickletools.markobject in before
        table[ord(op.code)] = _Op(
            name=op.name,
            reader=op.arg.reader if op.arg is not None else None,
            below=before.index(pickletools.markobject) if to_mark else len(before),
            to_mark=to_mark,
            pushes=tuple(kinds.get(item, "other") for item in op.stack_after),
            handler=_HANDLERS.get(op.name, _Walker.generic),
        )
    return table


class _Walker:
    """Simulates the unpickler's stack over pickle streams; executes nothing."""

    def __init__(self, policy: Policy, depth: int) -> None:
        self.policy = policy
        self.depth = depth
        self.uses: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        self.order: list[tuple[str | None, str | None]] = []
        self.refused: list[str] = []
        self.nested: list[NestedBlob] = []
        self.mutations: list[str] = []
        self.persistent_ids = 0
        self.buffers = 0
        self.protocol: int | None = None
        self.first_protocol = 0
        self.unresolved = 0
        self.data = b""
        self.stack: list[_Sym] = []
        self.memo: dict[int, _Sym] = {}

    def walk(self, data: bytes, start: int) -> int:
        """Walk one pickle stream from ``start``; return where it ended (after STOP)."""
        opcodes = _opcodes()
        file = io.BytesIO(data)
        file.seek(start)
        self.data, self.stack, self.memo, self.protocol = data, [], {}, None
        while True:
            pos = file.tell()
            code = file.read(1)
            if not code:
                raise TruncatedPayloadError(
                    f"truncated pickle stream: the data ({len(data)} bytes) ends before its "
                    f"STOP opcode"
                )
            op = opcodes.get(code[0])
            if op is None:
                raise CorruptPayloadError(
                    f"damaged pickle stream: unknown opcode {code!r} at byte {pos}"
                )
            arg: Any = None
            if op.reader is not None:
                try:
                    arg = op.reader(file)
                except MALFORMED_STREAM as exc:
                    raise damaged_stream(
                        exc, size=len(data), ended=file.tell() >= len(data), position=file.tell()
                    ) from exc
            if self.protocol is None:
                # The protocol the stream declares first; no PROTO opcode means 0 or 1.
                self.first_protocol = int(arg) if op.name == "PROTO" else 0
                self.protocol = 0
            op.handler(self, op, arg, pos)
            if op.name == "STOP":
                return file.tell()

    # -- the stack

    def _pop(self, pos: int) -> _Sym:
        if not self.stack or self.stack[-1] is _MARK:
            raise CorruptPayloadError(f"damaged pickle stream: stack underflow at byte {pos}")
        return self.stack.pop()

    def _top(self, pos: int) -> _Sym:
        top = self._pop(pos)
        self.stack.append(top)
        return top

    def _pop_mark(self, pos: int) -> list[_Sym]:
        stack = self.stack
        at = len(stack) - 1
        while at >= 0 and stack[at] is not _MARK:
            at -= 1
        if at < 0:
            raise CorruptPayloadError(f"damaged pickle stream: no MARK for the opcode at {pos}")
        items = stack[at + 1 :]
        del stack[at:]
        return items

    def _pop_args(self, op: _Op, pos: int) -> list[_Sym]:
        """Pop what ``op`` takes, bottom first: the values above its mark, then those below."""
        above = self._pop_mark(pos) if op.to_mark else []
        if not op.below:
            return above
        below = [self._pop(pos) for _ in range(op.below)]
        below.reverse()
        return below + above

    def generic(self, op: _Op, arg: Any, pos: int) -> None:
        """Any opcode the verdict does not hang on: pickletools' stack effect, opaque values."""
        args = self._pop_args(op, pos) if op.below or op.to_mark else []
        for kind in op.pushes:
            if kind == "other":
                self.stack.append(_OTHER)
            elif kind == "tuple":
                self.stack.append(_Sym(kind, args))
            elif kind == "mark":
                self.stack.append(_MARK)
            else:  # a literal str or bytes: its value is its argument
                self.stack.append(_Sym(kind, arg))

    # -- globals: GLOBAL, STACK_GLOBAL, EXT1/2/4, INST, OBJ

    def _use(self, module: str | None, name: str | None, pos: int) -> dict[str, Any]:
        key = (module, name)
        use = self.uses.get(key)
        if use is None:
            if module is None or name is None:
                reason: str | None = "the name could not be resolved statically"
            else:
                reason, _ = self.policy.check(module, name)
            use = {"imports": 0, "calls": 0, "builds": 0, "reason": reason, "position": pos}
            self.uses[key] = use
            self.order.append(key)
        return use

    def _import(self, module: str | None, name: str | None, pos: int) -> _Sym:
        if module is not None and name is not None:
            module, name = fix_name(module, name, self.protocol or 0)
        use = self._use(module, name, pos)
        use["imports"] += 1
        full = f"{module}.{name}" if module is not None else f"<unresolved global at {pos}>"
        if use["reason"] is not None and full not in self.refused:
            self.refused.append(full)
        return _Sym("global", (module, name))

    def _call(self, target: _Sym, kind: str) -> None:
        if target.kind == "global":
            self.uses[target.value][kind] += 1

    def global_(self, op: _Op, arg: Any, pos: int) -> None:
        # Read the two lines as the C unpickler does (UTF-8), not as pickletools shows them.
        data = self.data
        first = data.index(b"\n", pos + 1)
        second = data.index(b"\n", first + 1)
        try:
            module, name = data[pos + 1 : first].decode(), data[first + 1 : second].decode()
        except UnicodeDecodeError as exc:
            raise CorruptPayloadError(
                f"damaged pickle stream: the GLOBAL at byte {pos} is not UTF-8"
            ) from exc
        self.stack.append(self._import(module, name, pos))

    def stack_global(self, op: _Op, arg: Any, pos: int) -> None:
        module, name = self._pop_args(op, pos)
        if module.kind == "str" and name.kind == "str":
            self.stack.append(self._import(module.value, name.value, pos))
        else:
            self.unresolved += 1
            self.stack.append(self._import(None, None, pos))

    def extension(self, op: _Op, arg: Any, pos: int) -> None:
        key = copyreg._inverted_registry.get(int(arg))  # type: ignore[attr-defined]
        if key is None:
            raise CorruptPayloadError(
                f"damaged pickle stream: extension code {arg} at byte {pos} is not "
                f"registered (copyreg.add_extension)"
            )
        self.stack.append(self._import(key[0], key[1], pos))

    def inst(self, op: _Op, arg: Any, pos: int) -> None:
        self._pop_args(op, pos)
        module, name = str(arg).split(" ", 1)
        cls = self._import(module, name, pos)
        self._call(cls, "calls")
        self.stack.append(_Sym("made", cls))

    def obj(self, op: _Op, arg: Any, pos: int) -> None:
        items = self._pop_args(op, pos)
        if not items:
            raise CorruptPayloadError(f"damaged pickle stream: OBJ with no class at {pos}")
        self._call(items[0], "calls")
        self.stack.append(_Sym("made", items[0]))

    # -- calls: REDUCE, NEWOBJ, NEWOBJ_EX

    def reduce(self, op: _Op, arg: Any, pos: int) -> None:
        func, args = self._pop_args(op, pos)
        self._call(func, "calls")
        self._nested(func, args, pos)
        made = func
        first = args.value[0] if args.kind == "tuple" and args.value else _OTHER
        if func.kind == "global" and func.value in _INSTANTIATORS:
            # copyreg._reconstructor(cls, ...), __newobj__(cls, ...): cls is made.
            if first.kind == "global":
                self._call(first, "calls")
                made = first
        elif func.kind == "global" and func.value == _RESTORE_STATE:
            self._mutation(first, "restore_state", pos)
        self.stack.append(_Sym("made", made))

    def new_object(self, op: _Op, arg: Any, pos: int) -> None:
        cls = self._pop_args(op, pos)[0]  # the class, then its arguments
        self._call(cls, "calls")
        self.stack.append(_Sym("made", cls))

    def _nested(self, func: _Sym, args: _Sym, pos: int) -> None:
        if func.kind != "global" or func.value != tuple(_LOAD_DILL.rsplit(".", 1)):
            return
        if args.kind != "tuple" or len(args.value) != 1 or args.value[0].kind != "bytes":
            self.nested.append(NestedBlob(pos, 0, _LOAD_DILL, None, "its bytes are not literal"))
            return
        blob = bytes(args.value[0].value)
        if self.depth >= _MAX_NESTING:
            self.nested.append(NestedBlob(pos, len(blob), _LOAD_DILL, None, "nested too deeply"))
            self.refused.append(f"blobs nested more than {_MAX_NESTING} deep at byte {pos}")
            return
        try:
            report = scan_stream(memoryview(blob), self.policy, fmt="pickle", depth=self.depth + 1)
        except CorruptPayloadError as exc:
            self.nested.append(NestedBlob(pos, len(blob), _LOAD_DILL, None, str(exc)))
            self.refused.append(f"damaged nested blob at byte {pos}")
            return
        self.nested.append(NestedBlob(pos, len(blob), _LOAD_DILL, report))
        if self.policy.trusted:
            self.refused += [f"{name} (in the blob at byte {pos})" for name in report.refused]

    # -- mutations: BUILD, APPEND(S), SETITEM(S), ADDITEMS change their target in place

    def mutate(self, op: _Op, arg: Any, pos: int) -> None:
        if op.to_mark:
            self._pop_mark(pos)
        for _ in range(op.below - 1):  # what it takes above its target (stack_before[0])
            self._pop(pos)
        target = self._top(pos)
        if op.name == "BUILD" and target.kind == "made":
            self._call(target.value, "builds")
        self._mutation(target, op.name, pos)

    def _mutation(self, target: _Sym, opcode: str, pos: int) -> None:
        """An opcode that changes ``target``: refused if the target is a global itself."""
        if target.kind != "global":
            return
        module, name = target.value
        label = f"{module}.{name}" if module is not None else "<unresolved>"
        if label not in self.mutations:
            self.mutations.append(label)
        self.refused.append(f"{opcode} changes the global {label} at byte {pos}")

    # -- copies keep the value itself: the memo, DUP, POP of a mark, READONLY_BUFFER

    def put(self, op: _Op, arg: Any, pos: int) -> None:  # PUT, BINPUT, LONG_BINPUT, MEMOIZE
        self.memo[len(self.memo) if arg is None else int(arg)] = self._top(pos)

    def get(self, op: _Op, arg: Any, pos: int) -> None:
        if int(arg) not in self.memo:
            raise CorruptPayloadError(
                f"damaged pickle stream: memo entry {arg} read at byte {pos} was never set"
            )
        self.stack.append(self.memo[int(arg)])

    def dup(self, op: _Op, arg: Any, pos: int) -> None:
        self.stack.append(self._top(pos))

    def pop(self, op: _Op, arg: Any, pos: int) -> None:
        if self.stack and self.stack[-1] is _MARK:  # as the unpickler does
            self.stack.pop()
        else:
            self._pop(pos)

    def readonly_buffer(self, op: _Op, arg: Any, pos: int) -> None:
        self._top(pos)

    # -- the rest: counted, or marking the stream

    def persistent_id(self, op: _Op, arg: Any, pos: int) -> None:
        self.generic(op, arg, pos)
        self.persistent_ids += 1
        self.refused.append(f"persistent id at byte {pos}")

    def next_buffer(self, op: _Op, arg: Any, pos: int) -> None:
        self.generic(op, arg, pos)
        self.buffers += 1

    def proto(self, op: _Op, arg: Any, pos: int) -> None:
        # As the unpickler does: a later PROTO changes how names are mapped after it.
        self.protocol = int(arg)


_HANDLERS: dict[str, Callable[[_Walker, _Op, Any, int], None]] = {
    "GLOBAL": _Walker.global_,
    "STACK_GLOBAL": _Walker.stack_global,
    **dict.fromkeys(("EXT1", "EXT2", "EXT4"), _Walker.extension),
    "INST": _Walker.inst,
    "OBJ": _Walker.obj,
    "REDUCE": _Walker.reduce,
    **dict.fromkeys(("NEWOBJ", "NEWOBJ_EX"), _Walker.new_object),
    **dict.fromkeys(
        ("BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"), _Walker.mutate
    ),
    **dict.fromkeys(("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"), _Walker.put),
    **dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), _Walker.get),
    "DUP": _Walker.dup,
    "POP": _Walker.pop,
    "READONLY_BUFFER": _Walker.readonly_buffer,
    **dict.fromkeys(("PERSID", "BINPERSID"), _Walker.persistent_id),
    "NEXT_BUFFER": _Walker.next_buffer,
    "PROTO": _Walker.proto,
}
"""The opcodes simulated by hand; every other one is :meth:`_Walker.generic`."""


def _walk_all(data: bytes, policy: Policy, depth: int) -> tuple[_Walker, int, int, list[str]]:
    walker = _Walker(policy, depth)
    notes: list[str] = []
    streams = 0
    start = 0
    first_protocol: int | None = None
    while start < len(data):
        try:
            start = walker.walk(data, start)
        except CorruptPayloadError:
            if streams == 0:
                raise
            notes.append(
                f"{len(data) - start} bytes after the pickle stream are not a pickle "
                f"(loading ignores them)"
            )
            break
        streams += 1
        if first_protocol is None:
            first_protocol = walker.first_protocol
    return walker, streams, first_protocol if first_protocol is not None else 0, notes


def _backends_from(names: list[str]) -> set[str]:
    """The backends whose machinery the globals ``names`` are (from the backends' table)."""
    found = {"dill"} if _LOAD_DILL in names else set()
    for backend in BACKENDS.names():
        prefixes = global_prefixes(backend)
        if backend != "auto" and any(_under(name, prefixes) for name in names):
            found.add(backend)
    return found


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def scan_stream(
    stream: memoryview,
    policy: Policy,
    *,
    fmt: str,
    codec: str | None = None,
    size: int | None = None,
    info: Info | None = None,
    backends: Iterable[str] = (),
    by_value: bool = False,
    depth: int = 0,
) -> ScanReport:
    """Scan an already-decoded pickle stream (one or several streams in a row).

    Args:
        stream: the pickle stream: checked, verified and decompressed already.
        policy: the rules the verdict is given under.
        fmt: what the data was, for the report (``"omnipickle"``, ``"pickle"``...).
        codec: the codec it was decompressed with, or ``None``.
        size: the size of the data as given (default: the stream's size).
        info: what the envelope says (``omnipickle.Info``), or ``None``.
        backends: backends the envelope names, on top of those the globals show.
        by_value: whether the envelope says the payload holds code by value.
        depth: how deep in nested blobs this stream is (0: the payload itself).

    Returns:
        The :class:`ScanReport`.

    Raises:
        TruncatedPayloadError: the stream is empty or ends early.
        CorruptPayloadError: the (first) stream is not a well-formed pickle.
    """
    data = bytes(stream)
    if not data:
        raise TruncatedPayloadError("empty pickle stream: 0 bytes")
    walker, streams, protocol, notes = _walk_all(data, policy, depth)
    globals_ = tuple(
        GlobalUse(
            module=module,
            name=name,
            imports=use["imports"],
            calls=use["calls"],
            builds=use["builds"],
            allowed=use["reason"] is None,
            reason=use["reason"],
            code=f"{module}.{name}" in _CODE_GLOBALS,
            position=use["position"],
        )
        for (module, name), use in ((key, walker.uses[key]) for key in walker.order)
    )
    names = [g.qualified_name for g in globals_]
    needed = {"pickle", *backends, *_backends_from(names)}
    code = by_value or any(g.code for g in globals_)
    for blob in walker.nested:
        if blob.report is not None:
            needed |= set(blob.report.backends)
            code = code or blob.report.by_value
    if walker.unresolved:
        notes.append(f"{walker.unresolved} global(s) could not be resolved statically")
    known = [n for n in BACKENDS.names() if n in needed]
    return ScanReport(
        format=fmt,
        codec=codec,
        protocol=protocol,
        size=len(stream) if size is None else size,
        stream_size=len(data),
        streams=streams,
        envelope=info,
        globals=globals_,
        backends=(*known, *sorted(needed - set(known))),
        by_value=code,
        nested=tuple(walker.nested),
        persistent_ids=walker.persistent_ids,
        out_of_band_buffers=walker.buffers,
        mutations=tuple(walker.mutations),
        refused=tuple(walker.refused),
        trusted=policy.trusted,
        notes=tuple(notes),
    )
