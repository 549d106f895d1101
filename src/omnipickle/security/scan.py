"""The static scan: what a pickle stream would import and call, found without executing it.

:class:`Walker` reads a pickle stream from a :class:`ExactReader` (a file or memory, read as the
unpickler reads it: exactly, never past the stream's STOP) opcode by opcode and simulates the
unpickler's stack with symbolic values. Each opcode's stack effect comes from ``pickletools``'
own metadata (``stack_before`` / ``stack_after``); only the opcodes whose effect on *what* is on
the stack matters to the verdict are simulated by hand: the ones that import globals, call them,
change them, copy values (memo, DUP), name persistent ids, or mark the protocol, the frames and
the stream's end. Every verdict comes from the same :class:`~.policy.Policy` restricted loading
uses.

Memory and time are bounded whatever the stream: arguments are skipped, not read, unless the
verdict needs their value (short strings, the bytes a nested blob is loaded from); the stack,
the marks and the memo have limits (:data:`LIMITS`), and a stream past one is refused, not
followed further.
"""

from __future__ import annotations

import copyreg
import functools
import io
from collections.abc import Callable, Iterable
from typing import IO, Any, NamedTuple

from ..backends import REGISTRY as BACKENDS
from ..backends import global_prefixes
from ..errors import MALFORMED_STREAM, CorruptPayloadError, TruncatedPayloadError
from ..format.describe import Info
from .policy import Policy, fix_name
from .report import GlobalUse, NestedBlob, ScanReport, combine
from .source import LIMITS, ExactReader, Refusal, ViewFile

__all__ = [
    "Walker",
    "scan_stream",
    "walk_all",
    "walk_one",
]

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
        "omnipickle._rebuild.function",
    }
)

_LOAD_DILL = ("omnipickle._reconstruct", "load_dill")
_RESTORE_STATE = ("omnipickle._reconstruct", "restore_state")
_INSTANTIATORS = frozenset(
    {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")}
)


class _Sym:
    """A value on the simulated unpickler stack."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any = None) -> None:
        self.kind = kind  # "str", "bytes", "int", "tuple", "global", "made", "other"
        self.value = value


_OTHER = _Sym("other")
# An argument a static scan cannot know (of no type an argument rule accepts).
_UNKNOWN = object()


class _Op(NamedTuple):
    """What the walker needs of one opcode, from pickletools' description of it."""

    name: str
    width: int  # pickletools' ``n``: a fixed size, or how the argument's size is given
    reader: Callable[[IO[bytes]], Any] | None  # decodes its argument
    below: int  # values it pops (below its mark, when it has one)
    to_mark: bool  # it pops a mark and every value above it
    pushes: tuple[str, ...]  # the kind of each value it pushes ("mark", "str", "tuple"...)
    handler: Callable[[Walker, _Op, Any, int], None]  # how the walker simulates it


# pickletools' codes for an argument whose length comes first: the length's size, and whether
# it is signed.
_COUNTED = {-2: (1, False), -3: (4, True), -4: (4, False), -5: (8, False)}


@functools.cache
def _opcodes() -> dict[int, _Op]:
    # Imported on the first scan, not with omnipickle (the import test pins it).
    import pickletools

    # The values the verdict needs to see: marks, the strings STACK_GLOBAL joins, the bytes
    # load_dill loads, the tuples a call's arguments come in, and the small ints and strings the
    # policy's argument rules look at. Anything else is opaque.
    kinds = {
        pickletools.markobject: "mark",
        pickletools.pyunicode: "str",
        pickletools.pybytes_or_str: "str",
        pickletools.pybytes: "bytes",
        pickletools.pytuple: "tuple",
        pickletools.pyint: "int",
        pickletools.pylong: "int",
        pickletools.pyinteger_or_bool: "int",
    }
    table = {}
    for op in pickletools.opcodes:
        before = op.stack_before
        to_mark = pickletools.markobject in before
        table[ord(op.code)] = _Op(
            name=op.name,
            width=op.arg.n if op.arg is not None else 0,
            reader=op.arg.reader if op.arg is not None else None,
            below=before.index(pickletools.markobject) if to_mark else len(before),
            to_mark=to_mark,
            pushes=tuple(kinds.get(item, "other") for item in op.stack_after),
            handler=_HANDLERS.get(op.name, Walker.generic),
        )
    return table


class Walker:
    """Simulates the unpickler's stack over one pickle stream; executes nothing."""

    def __init__(self, policy: Policy, depth: int = 0) -> None:
        self.policy = policy
        self.depth = depth
        self.uses: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        self.refused: list[str] = []
        self.nested: list[NestedBlob] = []
        self.mutations: list[str] = []
        self.persistent_ids = 0
        self.buffers = 0
        self.protocol: int | None = None
        self.first_protocol = 0
        self.unresolved = 0
        self.notes: list[str] = []
        self.stack: list[_Sym] = []
        self.metastack: list[list[_Sym]] = []
        self.values = 0  # on the stack, under every mark
        self.memo: dict[int, _Sym] = {}  # what the verdict needs of the memo; the rest is opaque
        self.memo_set = bytearray()  # a bit per memo index that was set
        self.memo_count = 0
        self.kept = 0
        self.kept_bytes = 0
        self._globals: dict[tuple[str | None, str | None], _Sym] = {}
        self._made_syms: dict[tuple[str | None, str | None], _Sym] = {}
        self._blobs: dict[_Sym, ScanReport | str] = {}
        self.size = 0

    def walk(self, src: ExactReader) -> None:
        """Walk one pickle stream from ``src``'s position to just after its STOP.

        Raises:
            TruncatedPayloadError, CorruptPayloadError: the stream ends early or is malformed.
            Refusal: it cannot be followed as the unpickler would read it.
        """
        opcodes = _opcodes()
        start = src.pos
        frame_end: int | None = None  # where the current frame ends, from the stream's start
        while True:
            pos = src.pos - start
            if frame_end is not None and pos == frame_end:
                frame_end = None
            code = src.read(1)
            if not code:
                raise TruncatedPayloadError(
                    f"truncated pickle stream: the data ({pos} bytes) ends before its STOP opcode"
                )
            op = opcodes.get(code[0])
            if op is None:
                raise CorruptPayloadError(
                    f"damaged pickle stream: unknown opcode {code!r} at byte {pos}"
                )
            arg: Any = self._argument(op, src, pos) if op.reader is not None else None
            end = src.pos - start
            # C's unpickler reads a frame whole and an opcode that runs past its end afresh
            # from the file, while pickletools (and memory) read straight on: the two would
            # see different opcodes after it.
            if frame_end is not None and end > frame_end:
                raise Refusal(
                    f"the {op.name} at byte {pos} runs past the end of its frame (byte "
                    f"{frame_end}): frames must end between opcodes"
                )
            if op.name == "FRAME":
                if frame_end is not None and end < frame_end:
                    raise Refusal(f"a FRAME at byte {pos} inside the frame ending at {frame_end}")
                frame_end = end + int(arg)
            if self.protocol is None:
                # The protocol the stream declares first; no PROTO opcode means 0 or 1.
                self.first_protocol = int(arg) if op.name == "PROTO" else 0
                self.protocol = 0
            op.handler(self, op, arg, pos)
            if self.values > LIMITS["stack"] or len(self.metastack) > LIMITS["marks"]:
                raise Refusal(
                    f"more than {LIMITS['stack']:,} values or {LIMITS['marks']:,} open marks "
                    f"on the stack at byte {pos}: too large to follow"
                )
            if op.name == "STOP":
                if frame_end is not None and end < frame_end:
                    raise Refusal(f"the stream stops at byte {end}, inside its frame")
                self.size = end
                return

    def _argument(self, op: _Op, src: ExactReader, pos: int) -> Any:
        assert op.reader is not None
        what = f"the argument of {op.name} at byte {pos}"
        try:
            if op.width >= 0:
                return op.reader(io.BytesIO(src.exact(op.width, what)))
            if op.width == -1:  # up to a newline (GLOBAL and INST: two lines)
                lines = src.line(what)
                if op.name in ("GLOBAL", "INST"):
                    return lines, src.line(what)
                return op.reader(io.BytesIO(lines))
            size, signed = _COUNTED[op.width]
            prefix = src.exact(size, what)
            length = int.from_bytes(prefix, "little", signed=signed)
            if length < 0:
                raise CorruptPayloadError(f"damaged pickle stream: {what} has a negative size")
            kind = op.pushes[0] if op.pushes else "other"
            wanted = (kind == "str" and length <= LIMITS["string"]) or kind == "bytes"
            if wanted and self._keep(length):
                return op.reader(io.BytesIO(prefix + src.exact(length, what)))
            src.skip(length, what)
            return None  # followed as an opaque value
        except CorruptPayloadError:
            raise
        except MALFORMED_STREAM as exc:
            raise CorruptPayloadError(f"damaged pickle stream: {what}: {exc}") from exc

    def _keep(self, length: int) -> bool:
        if self.kept >= LIMITS["kept"] or self.kept_bytes + length > LIMITS["kept_bytes"]:
            return False
        self.kept += 1
        self.kept_bytes += length
        return True

    # -- the stack

    def _push(self, value: _Sym) -> None:
        self.stack.append(value)
        self.values += 1

    def _pop(self, pos: int) -> _Sym:
        if not self.stack:
            raise CorruptPayloadError(f"damaged pickle stream: stack underflow at byte {pos}")
        self.values -= 1
        return self.stack.pop()

    def _top(self, pos: int) -> _Sym:
        if not self.stack:
            raise CorruptPayloadError(f"damaged pickle stream: stack underflow at byte {pos}")
        return self.stack[-1]

    def _pop_mark(self, pos: int) -> list[_Sym]:
        if not self.metastack:
            raise CorruptPayloadError(f"damaged pickle stream: no MARK for the opcode at {pos}")
        items, self.stack = self.stack, self.metastack.pop()
        self.values -= len(items)
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
            if kind == "mark":
                self.metastack.append(self.stack)
                self.stack = []
            elif kind == "tuple" and self._keep(0):
                # The length, the first item (a class, a blob), and what a call's argument
                # rules can check: literal strings and bytes as they are, anything else unknown.
                literal = tuple(
                    a.value if a.kind in ("str", "bytes", "int") else _UNKNOWN for a in args
                )
                self._push(_Sym(kind, (len(args), args[0] if args else _OTHER, literal)))
            elif kind in ("str", "bytes", "int") and arg is not None:
                self._push(_Sym(kind, arg))
            else:
                self._push(_OTHER)

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
        return use

    def _import(self, module: str | None, name: str | None, pos: int) -> _Sym:
        if module is not None and name is not None:
            module, name = fix_name(module, name, self.protocol or 0)
        use = self._use(module, name, pos)
        use["imports"] += 1
        full = f"{module}.{name}" if module is not None else f"<unresolved global at {pos}>"
        if use["reason"] is not None and full not in self.refused:
            self.refused.append(full)
        key = (module, name)
        if key not in self._globals:
            self._globals[key] = _Sym("global", key)
        return self._globals[key]

    def _made(self, cls: _Sym) -> _Sym:
        """What calling ``cls`` makes: one value per global (BUILD on it counts as a build)."""
        if cls.kind != "global":
            return _OTHER
        if cls.value not in self._made_syms:
            self._made_syms[cls.value] = _Sym("made", cls)
        return self._made_syms[cls.value]

    def _call(self, target: _Sym, kind: str) -> None:
        if target.kind == "global":
            self.uses[target.value][kind] += 1

    def _names(self, lines: tuple[bytes, bytes], pos: int) -> tuple[str, str]:
        # Read the two lines as the C unpickler does (UTF-8), not as pickletools shows them.
        try:
            return lines[0][:-1].decode(), lines[1][:-1].decode()
        except UnicodeDecodeError as exc:
            raise CorruptPayloadError(
                f"damaged pickle stream: the names at byte {pos} are not UTF-8"
            ) from exc

    def global_(self, op: _Op, arg: Any, pos: int) -> None:
        self._push(self._import(*self._names(arg, pos), pos))

    def stack_global(self, op: _Op, arg: Any, pos: int) -> None:
        module, name = self._pop_args(op, pos)
        if module.kind == "str" and name.kind == "str":
            self._push(self._import(module.value, name.value, pos))
        else:
            self.unresolved += 1
            self._push(self._import(None, None, pos))

    def extension(self, op: _Op, arg: Any, pos: int) -> None:
        key = copyreg._inverted_registry.get(int(arg))  # type: ignore[attr-defined]
        if key is None:
            raise CorruptPayloadError(
                f"damaged pickle stream: extension code {arg} at byte {pos} is not "
                f"registered (copyreg.add_extension)"
            )
        self._push(self._import(key[0], key[1], pos))

    def inst(self, op: _Op, arg: Any, pos: int) -> None:
        self._pop_args(op, pos)
        cls = self._import(*self._names(arg, pos), pos)
        self._call(cls, "calls")
        self._push(self._made(cls))

    def obj(self, op: _Op, arg: Any, pos: int) -> None:
        items = self._pop_args(op, pos)
        if not items:
            raise CorruptPayloadError(f"damaged pickle stream: OBJ with no class at {pos}")
        self._call(items[0], "calls")
        self._push(self._made(items[0]))

    # -- calls: REDUCE, NEWOBJ, NEWOBJ_EX

    def reduce(self, op: _Op, arg: Any, pos: int) -> None:
        func, args = self._pop_args(op, pos)
        self._call(func, "calls")
        self._check_arguments(func, args, pos)
        self._nested(func, args, pos)
        made = func
        first = args.value[1] if args.kind == "tuple" else _OTHER
        if func.kind == "global" and func.value in _INSTANTIATORS:
            # copyreg._reconstructor(cls, ...), __newobj__(cls, ...): cls is made.
            if first.kind == "global":
                self._call(first, "calls")
                made = first
        elif func.kind == "global" and func.value == _RESTORE_STATE:
            self._mutation(first, "restore_state", pos)
        self._push(self._made(made))

    def _check_arguments(self, func: _Sym, args: _Sym, pos: int) -> None:
        """The policy's argument rules (the same method restricted loading asks), with the
        arguments as far as they can be seen: unknown ones fail the rules that look at them."""
        if func.kind != "global" or func.value[0] is None:
            return
        name = f"{func.value[0]}.{func.value[1]}"
        known = args.value[2] if args.kind == "tuple" else None
        reason = self.policy.check_call(name, known)
        if reason is not None:
            refusal = f"{name} called at byte {pos}: {reason}"
            if refusal not in self.refused:
                self.refused.append(refusal)

    def new_object(self, op: _Op, arg: Any, pos: int) -> None:
        cls = self._pop_args(op, pos)[0]  # the class, then its arguments
        self._call(cls, "calls")
        self._push(self._made(cls))

    def _nested(self, func: _Sym, args: _Sym, pos: int) -> None:
        if func.kind != "global" or func.value != _LOAD_DILL:
            return
        loader = ".".join(_LOAD_DILL)
        if args.kind != "tuple" or args.value[0] != 1 or args.value[1].kind != "bytes":
            self.nested.append(NestedBlob(pos, 0, loader, None, "its bytes are not literal"))
            if self.policy.trusted:
                self.refused.append(f"a blob at byte {pos} that could not be scanned")
            return
        blob = args.value[1]
        size = len(blob.value)
        if self.depth >= LIMITS["nesting"]:
            self.nested.append(NestedBlob(pos, size, loader, None, "nested too deeply"))
            self.refused.append(f"blobs nested more than {LIMITS['nesting']} deep at byte {pos}")
            return
        if blob not in self._blobs:  # a blob loaded again from the memo is scanned once
            try:
                self._blobs[blob] = scan_stream(
                    memoryview(blob.value), self.policy, fmt="pickle", depth=self.depth + 1
                )
            except CorruptPayloadError as exc:
                self._blobs[blob] = str(exc)
        report = self._blobs[blob]
        if isinstance(report, str):
            self.nested.append(NestedBlob(pos, size, loader, None, report))
            self.refused.append(f"damaged nested blob at byte {pos}")
            return
        self.nested.append(NestedBlob(pos, size, loader, report))
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
        index = self.memo_count if arg is None else int(arg)
        if index > LIMITS["memo"]:
            raise Refusal(f"memo index {index} at byte {pos} is too large to follow")
        value = self._top(pos)
        byte, bit = divmod(index, 8)
        if byte >= len(self.memo_set):
            self.memo_set += bytes(byte + 1 - len(self.memo_set))
        if not self.memo_set[byte] >> bit & 1:
            self.memo_set[byte] |= 1 << bit
            self.memo_count += 1
        if value is _OTHER:
            self.memo.pop(index, None)
        else:
            self.memo[index] = value

    def get(self, op: _Op, arg: Any, pos: int) -> None:
        index = int(arg)
        byte, bit = divmod(index, 8)
        if index < 0 or byte >= len(self.memo_set) or not self.memo_set[byte] >> bit & 1:
            raise CorruptPayloadError(
                f"damaged pickle stream: memo entry {arg} read at byte {pos} was never set"
            )
        self._push(self.memo.get(index, _OTHER))

    def dup(self, op: _Op, arg: Any, pos: int) -> None:
        self._push(self._top(pos))

    def pop(self, op: _Op, arg: Any, pos: int) -> None:
        if not self.stack and self.metastack:  # as the unpickler does: POP of a mark
            self.stack = self.metastack.pop()
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

    # -- the report

    def report(
        self,
        *,
        fmt: str,
        codec: str | None = None,
        offset: int = 0,
        info: Info | None = None,
        backends: Iterable[str] = (),
        by_value: bool = False,
        damaged: str | None = None,
    ) -> ScanReport:
        """What this walk found, as one stream's report."""
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
            for (module, name), use in self.uses.items()
        )
        names = [g.qualified_name for g in globals_]
        needed = {"pickle", *backends, *_backends_from(names)}
        code = by_value or any(g.code for g in globals_)
        for blob in self.nested:
            if blob.report is not None:
                needed |= set(blob.report.backends)
                code = code or blob.report.by_value
        notes = list(self.notes)
        if self.unresolved:
            notes.append(f"{self.unresolved} global(s) could not be resolved statically")
        refused = list(self.refused)
        if damaged is not None:
            refused.append(f"the stream at byte {offset} is damaged: {damaged}")
        known = [n for n in BACKENDS.names() if n in needed]
        return ScanReport(
            format=fmt,
            codec=codec,
            protocol=self.first_protocol,
            size=self.size,
            stream_size=self.size,
            streams=1,
            envelope=info,
            globals=globals_,
            backends=(*known, *sorted(needed - set(known))),
            by_value=code,
            nested=tuple(self.nested),
            persistent_ids=self.persistent_ids,
            out_of_band_buffers=self.buffers,
            mutations=tuple(self.mutations),
            refused=tuple(refused),
            trusted=self.policy.trusted,
            notes=tuple(notes),
            offset=offset,
            damaged=damaged,
        )


_HANDLERS: dict[str, Callable[[Walker, _Op, Any, int], None]] = {
    "GLOBAL": Walker.global_,
    "STACK_GLOBAL": Walker.stack_global,
    **dict.fromkeys(("EXT1", "EXT2", "EXT4"), Walker.extension),
    "INST": Walker.inst,
    "OBJ": Walker.obj,
    "REDUCE": Walker.reduce,
    **dict.fromkeys(("NEWOBJ", "NEWOBJ_EX"), Walker.new_object),
    **dict.fromkeys(
        ("BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"), Walker.mutate
    ),
    **dict.fromkeys(("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"), Walker.put),
    **dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), Walker.get),
    "DUP": Walker.dup,
    "POP": Walker.pop,
    "READONLY_BUFFER": Walker.readonly_buffer,
    **dict.fromkeys(("PERSID", "BINPERSID"), Walker.persistent_id),
    "NEXT_BUFFER": Walker.next_buffer,
    "PROTO": Walker.proto,
}
"""The opcodes simulated by hand; every other one is :meth:`Walker.generic`."""


def _backends_from(names: list[str]) -> set[str]:
    """The backends whose machinery the globals ``names`` are (from the backends' table)."""
    found = {"dill"} if ".".join(_LOAD_DILL) in names else set()
    for backend in BACKENDS.names():
        prefixes = global_prefixes(backend)
        if backend != "auto" and any(_under(name, prefixes) for name in names):
            found.add(backend)
    return found


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def walk_one(
    src: ExactReader, policy: Policy, *, strict: bool, depth: int = 0, **where: Any
) -> ScanReport:
    """Walk the stream at ``src``'s position into its report (``where``: :meth:`Walker.report`'s
    arguments). A stream that cannot be followed is reported ``damaged``; so is a damaged one,
    unless ``strict`` (then its error is raised)."""
    walker = Walker(policy, depth)
    try:
        walker.walk(src)
    except Refusal as exc:
        return walker.report(damaged=str(exc), **where)
    except CorruptPayloadError as exc:
        if strict:
            raise
        return walker.report(damaged=str(exc), **where)
    return walker.report(**where)


def walk_all(
    src: ExactReader, policy: Policy, *, strict: bool, depth: int = 0, **where: Any
) -> list[ScanReport]:
    """Every stream from ``src``'s position to its end, one after the other (what follows a
    damaged one cannot be told apart: the walk stops there)."""
    parts: list[ScanReport] = []
    base = where.pop("offset", 0)
    while src.peek(1):
        offset = base + src.pos
        part = walk_one(
            src, policy, strict=strict and not parts, depth=depth, offset=offset, **where
        )
        parts.append(part)
        if part.damaged is not None:
            break
    return parts


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
    """Scan a pickle stream in memory (one or several streams in a row).

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
        The :class:`ScanReport`, one entry in ``per_stream`` for each stream.

    Raises:
        TruncatedPayloadError: the stream is empty or ends early.
        CorruptPayloadError: the first stream is not a well-formed pickle.
    """
    if not len(stream):
        raise TruncatedPayloadError("empty pickle stream: 0 bytes")
    parts = walk_all(
        ExactReader(ViewFile(stream)),
        policy,
        strict=True,
        depth=depth,
        fmt=fmt,
        codec=codec,
        info=info,
        backends=backends,
        by_value=by_value,
    )
    return combine(parts, len(stream) if size is None else size, [])
