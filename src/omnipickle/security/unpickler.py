"""Restricted loading: an unpickler that imports only allow-listed globals, and never changes them.

:func:`restricted_loads` / :class:`RestrictedUnpickler` unpickle a bare pickle stream, but import
only what the :class:`~.policy.Policy` allows (a safe default set of data types,
:data:`~.policy.DEFAULT_ALLOW`, extended with ``allow=``). The first global the payload asks for
that is not allowed raises :class:`~omnipickle.errors.UnsafePayloadError` *before* it is imported
or called. Code serialized by value is accepted only with ``trusted=True``, which callers pass
when the payload's signature verified: signatures are how code is trusted, allow-lists how data
is. A few allowed names are answered by safe stand-ins (below) instead of the real function.
"""

from __future__ import annotations

import collections
import copyreg
import importlib
import io
import pickle
import struct
import sys
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NoReturn

from .._reconstruct import dropped_resource, restore_state
from ..errors import (
    MALFORMED_STREAM,
    BudgetExceededError,
    CorruptPayloadError,
    OmnipickleError,
    TruncatedPayloadError,
    UnpicklingError,
    UnsafePayloadError,
    damaged_stream,
)
from ..format import header as envelope
from . import datapath, numpy_safe
from .budget import Budget, Limits, default_limits, items_of
from .policy import Policy, fix_name, read_allow

__all__ = ["RestrictedUnpickler", "restricted_loads"]


# --- safe stand-ins for a few allowed names ------------------------------------------------------


def _latin1_encode(*args: Any, **kwargs: Any) -> bytes:
    """``codecs.encode`` restricted to what pickle writes for bytes: ``(text, "latin1")``."""
    reason = Policy.check_call("codecs.encode", args, kwargs)
    if reason is not None:
        shown = ", ".join(type(a).__name__ if i == 0 else repr(a) for i, a in enumerate(args))
        raise UnsafePayloadError(f"restricted loading refused codecs.encode({shown}): {reason}")
    text: str = args[0]
    return text.encode("latin-1")


def _bounded_semaphore(value: int, initial: int) -> threading.BoundedSemaphore:
    """``make_bounded_semaphore`` with its arguments checked and no loop over them.

    The original takes back ``initial - value`` permits one at a time: a payload asking for
    ``initial=10**18`` would keep the loader busy for ever.
    """
    if type(value) is not int or type(initial) is not int or not 0 <= value <= initial:
        raise UnsafePayloadError(
            f"restricted loading refused make_bounded_semaphore({value!r}, {initial!r}): "
            f"expected integers 0 <= value <= initial"
        )
    sem = threading.BoundedSemaphore(initial)
    with sem._cond:  # type: ignore[attr-defined]
        sem._value = value
    return sem


# Stand-ins that need the unpickler (its policy, or what it handed out): method names.
_BOUND_SUBSTITUTES = {
    "omnipickle._reconstruct.load_dill": "_load_dill",
    "omnipickle._reconstruct.dropped_resource": "_dropped_resource",
    "omnipickle._reconstruct.restore_state": "_restore_state",
}

_SUBSTITUTES: dict[str, Callable[..., Any]] = {
    "_codecs.encode": _latin1_encode,
    "codecs.encode": _latin1_encode,
    "omnipickle._reconstruct.make_bounded_semaphore": _bounded_semaphore,
}


def _lookup(module: str, name: str) -> Any:
    """The object ``module.name`` names: never importing a dunder module, never through a module.

    pickle names a global by its defining module and its qualified name, so ``name`` walks
    through classes only; a walk through a module attribute (``dill._dill`` then ``os`` then
    ``system``) reaches what that module merely imported.
    """
    full = f"{module}.{name}"
    found: Any = sys.modules.get(module)
    if found is None:
        reason = Policy.may_import(module)
        if reason is not None:
            raise UnsafePayloadError(f"restricted loading refused the global {full}: {reason}")
        try:
            found = importlib.import_module(module)
        except ImportError as exc:
            raise UnpicklingError(
                f"the payload names {full}, but {module!r} cannot be imported here: {exc}"
            ) from exc
    for part in name.split("."):
        parent = found
        try:
            found = getattr(found, part)
        except AttributeError as exc:
            raise UnpicklingError(
                f"the payload names {full}, which does not exist here: {exc}"
            ) from exc
        if isinstance(found, types.ModuleType) and not (
            isinstance(parent, types.ModuleType) and found.__name__ == f"{parent.__name__}.{part}"
        ):
            # A package's own submodule is itself (the policy decides whether a module may be
            # handed out); any other module reached this way was imported from elsewhere.
            raise UnsafePayloadError(
                f"restricted loading refused the global {full}: it is a module ({found.__name__}), "
                f"reached through an attribute of another module"
            )
    return found


# What most memo entries are: built-in types, never numpy's (checked first, as it is cheaper).
_BUILTIN_VALUES = frozenset(
    {str, bytes, bytearray, int, float, complex, bool, type(None), tuple, list, dict, set}
)


class _Memo(dict[Any, Any]):
    """The memo, knowing where numpy objects are kept (a BUILD on one replaces it)."""

    def __init__(self) -> None:
        super().__init__()
        self.numpy_keys: dict[int, list[Any]] = {}

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, key, value)
        if type(value) not in _BUILTIN_VALUES and numpy_safe.is_numpy_object(value):
            self.numpy_keys.setdefault(id(value), []).append(key)

    def replace(self, old: Any, new: Any) -> None:
        for key in self.numpy_keys.pop(id(old), ()):
            if self.get(key) is old:
                self[key] = new


# Opcodes with a length prefix: (struct format, its width, what the bytes become).
_SIZED: dict[int, tuple[str, int, Callable[[Any, bytes | bytearray], Any]]] = {
    pickle.BINSTRING[0]: ("<i", 4, lambda self, data: self._decode_string(data)),
    pickle.BINBYTES[0]: ("<I", 4, lambda self, data: data),
    pickle.BINBYTES8[0]: ("<Q", 8, lambda self, data: data),
    pickle.BINUNICODE[0]: ("<I", 4, lambda self, data: str(data, "utf-8", "surrogatepass")),
    pickle.BINUNICODE8[0]: ("<Q", 8, lambda self, data: str(data, "utf-8", "surrogatepass")),
    pickle.BYTEARRAY8[0]: (
        "<Q",
        8,
        lambda self, data: data if type(data) is bytearray else bytearray(data),  # load_sized
    ),
    pickle.LONG4[0]: ("<i", 4, lambda self, data: pickle.decode_long(data)),
}


_BYTEARRAY8 = pickle.BYTEARRAY8[0]

# The opcodes that change an object already on the stack, by their loader's name.
_MUTATORS = {
    pickle.APPEND[0]: "load_append",
    pickle.APPENDS[0]: "load_appends",
    pickle.SETITEM[0]: "load_setitem",
    pickle.SETITEMS[0]: "load_setitems",
    pickle.ADDITEMS[0]: "load_additems",
}
# Allowed constructors that hash what they are given: which positional argument holds it, and
# whether that holds (key, value) pairs (a mapping gives its keys either way). Looked up by id:
# restricted loading never hashes a payload's object to learn what it is (a tuple holding
# itself twice over 40 levels takes 2**40 steps to hash).
_KEYED: dict[int, tuple[int, bool]] = {
    id(dict): (0, True),
    id(collections.OrderedDict): (0, True),
    id(collections.defaultdict): (1, True),  # defaultdict(factory, pairs or a mapping)
    id(set): (0, False),
    id(frozenset): (0, False),
    id(collections.Counter): (0, False),  # Counter(iterable) counts items, Counter(mapping) keys
}


def _hashed_keys(callee: Any, args: tuple[Any, ...]) -> list[Any]:
    """The keys ``callee(*args)`` hashes, if it is one of :data:`_KEYED`: the items or keys of
    its source, or the first of each pair, whatever container holds them (:func:`items_of`:
    lists, tuples, deques, sets, ranges, dicts and their views). Sources of other types are
    iterated by their own class's code, or hold nothing that can share a hash (str, bytes)."""
    spec = _KEYED.get(id(callee))
    if spec is None or len(args) <= spec[0]:
        return []
    at, pairs = spec
    source = args[at]
    if isinstance(source, dict):  # a mapping: its keys
        return list(dict.keys(source))
    items = items_of(source)
    if items is None:
        return []
    if not pairs:
        return items
    keys = []
    for pair in items:
        inner = pair if type(pair) is tuple or type(pair) is list else items_of(pair)
        if inner is not None and len(inner) == 2:
            keys.append(inner[0])
    return keys


# Where each of them finds its target, counted from the top of the stack (or at the mark).
_TARGETS = {"load_build": -2, "load_append": -2, "load_setitem": -3}
# The methods each of them looks up on its target by name (as both unpicklers do, through the
# target's attributes), and the built-in types on which it looks none up.
_LOOKUPS: dict[str, tuple[tuple[str, ...], type | None]] = {
    "load_build": (("__setstate__",), None),
    "load_append": (("extend", "append"), list),
    "load_appends": (("extend", "append"), list),
    "load_additems": (("add",), set),
}


def _planted_method(target: Any, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that ``target`` holds as *data* (``None``: none does).

    The unpicklers call ``target.__setstate__(state)``, ``target.extend(items)``,
    ``target.append(item)`` and ``target.add(item)`` by attribute lookup, so an entry of the
    instance's ``__dict__`` or a slot (both set by an earlier BUILD) is called as readily as a
    method of its class: a payload that stores ``bytearray`` as an instance's ``__setstate__``
    and BUILDs it again calls ``bytearray(10**10)`` past every policy rule and the budget.
    Methods come from classes; a name held in the instance's own state is refused.
    """
    state = getattr(target, "__dict__", None)
    klass = type(target)
    for name in names:
        if isinstance(state, dict) and name in state:
            return name
        for base in klass.__mro__:
            found = vars(base).get(name)
            if found is not None:
                if isinstance(found, types.MemberDescriptorType):  # a slot
                    return name
                break
    return None


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that imports only allow-listed globals, and never changes them.

    Reads bare pickle streams written by pickle, cloudpickle, dill or omnipickle's backends.
    The first global that is not allowed raises :class:`UnsafePayloadError` naming it
    (``module.name``) before it is imported or called; persistent ids are refused too, and so
    is any opcode that would change a global the payload was handed (setting the state of an
    allowed *class*, ``myapp.User.is_admin = True``, or adding items to an allowed dict):
    a payload may build new objects from allowed globals, never alter the globals themselves.

    It extends the standard library's pure-Python unpickler (``pickle._Unpickler``), not the
    C one, on purpose: the C unpickler gives no hook for those opcodes, looks extension codes up
    in a process-wide cache without asking ``find_class``, and grows its memo to any index a
    payload names (a 7-byte stream makes it allocate and clear gigabytes). That costs speed:
    about 25 times a plain load. :func:`restricted_loads` goes around it where it can: a stream
    that :mod:`.datapath` proves to be plain data and instances of plain classes is loaded by the
    C unpickler with this class's :meth:`find_class` (about twice a plain load).

    Args:
        file: a binary file object, as for :class:`pickle.Unpickler`.
        allow: extra entries: exact dotted names (``"pkg.module.Name"``) and prefix patterns
            (``"pkg.*"``: the classes and functions that package ``pkg`` and its submodules
            define; not their dunder attributes, not what they import from elsewhere).
            :data:`DEFAULT_ALLOW` is always included.
        trusted: also accept code serialized by value (:data:`TRUSTED_ALLOW`). Pass ``True``
            only when the payload's signature verified.
        fix_imports, encoding, errors, buffers: as for :class:`pickle.Unpickler`.

    Raises:
        TypeError: ``allow`` is not an iterable of str, or ``trusted`` is not a bool.
        ValueError: an ``allow`` entry is malformed (empty, whitespace, ``"*"``, ``"pkg*"``,
            an empty dotted part, a bare module name).
    """

    dispatch: ClassVar[dict[int, Callable[[Any], None]]]
    # The pure-Python unpickler's own state, which typeshed does not describe.
    proto: int
    stack: list[Any]
    metastack: list[list[Any]]
    append: Callable[[Any], None]
    read: Callable[[int], bytes]
    readline: Callable[[], bytes]
    readinto: Callable[[Any], int]
    memo: Any
    _unframer: Any
    _file_read: Callable[[int], bytes]
    _file_readline: Callable[[], bytes]

    def __init__(
        self,
        file: Any,
        *,
        allow: Iterable[str] | None = (),
        trusted: bool = False,
        fix_imports: bool = True,
        encoding: str = "ASCII",
        errors: str = "strict",
        buffers: Iterable[Any] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._policy = Policy(allow, trusted)
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits must be a Limits or None, not {type(limits).__name__}")
        super().__init__(
            file, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
        )
        self.memo = _Memo()
        self._file = file
        self._limits = limits if limits is not None else default_limits()
        self._budget = Budget(self._limits, 0)
        self._fix_imports = fix_imports
        self._encoding = encoding
        self._errors = errors
        # Everything find_class handed out, by id (the list keeps the ids valid), and the
        # names it was handed out under.
        self._handed: list[Any] = []
        self._handed_ids: set[int] = set()
        self._names: dict[int, str] = {}

    # --- the opcode loop ------------------------------------------------------------------------

    def _end(self) -> int | None:
        """Where the file ends (``None``: it cannot say)."""
        try:
            here = self._file.tell()
            end = int(self._file.seek(0, io.SEEK_END))
            self._file.seek(here)
        except (AttributeError, OSError, ValueError):
            return None
        return end

    def load(self) -> Any:
        """Read one pickle from the file, within the budget and with frames checked.

        pickle's own loop, plus three checks per opcode: one object counted against the budget;
        an opcode read inside a frame must end inside it (the C unpickler and pickletools read
        frames differently, so a frame that splits an opcode means different things to them);
        and a FRAME inside a frame is refused.
        """
        end = self._end()
        self._stream_end = end
        self._budget = budget = Budget(self._limits, 0 if end is None else end - self._file.tell())
        unframer = self._unframer = pickle._Unframer(  # type: ignore[attr-defined]
            self._file_read, self._file_readline
        )
        self.read = read = unframer.read
        self.readinto = unframer.readinto
        self.readline = unframer.readline
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        dispatch = self.dispatch
        limit = budget.max_objects if budget.max_objects is not None else float("inf")
        frame_code = pickle.FRAME[0]
        try:
            while True:
                # The opcode's byte straight from the frame, where there is one (a C call);
                # at its end, pickle's reader leaves the frame for the file.
                frame = unframer.current_frame
                key = frame.read(1) if frame is not None else b""
                if not key:
                    key = read(1)
                    if not key:
                        raise EOFError
                    frame = unframer.current_frame
                if frame is not None and key[0] == frame_code:
                    raise CorruptPayloadError("damaged pickle stream: a FRAME inside a frame")
                budget.objects += 1
                if budget.objects > limit:
                    budget.charge(0, 0, "parsing the stream")  # raises
                dispatch[key[0]](self)
                if frame is not None and unframer.current_frame is not frame:
                    raise CorruptPayloadError(
                        f"damaged pickle stream: the opcode {key!r} runs past the end of its frame"
                    )
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value

    def _remaining(self) -> int | None:
        """How many bytes the opcode being read can still take (its frame's, or the file's)."""
        frame = self._unframer.current_frame
        if frame is not None:
            with frame.getbuffer() as view:
                left = view.nbytes - frame.tell()
            if left:
                return int(left)
        if self._stream_end is None:
            return None
        return int(self._stream_end - self._file.tell())

    def _check_size(self, size: int, what: str) -> int | None:
        """Refuse ``size`` bytes that the data does not hold; return what it holds (``None``:
        the file cannot say)."""
        remaining = self._remaining()
        if remaining is not None and size > remaining:
            raise TruncatedPayloadError(
                f"truncated pickle stream: {what} of {size} bytes, {remaining} left in the data"
            )
        return remaining

    def load_sized(self, code: int) -> None:
        """An opcode with a length prefix, checking the length against the data before reading."""
        fmt, width, make = _SIZED[code]
        (size,) = struct.unpack(fmt, self.read(width))
        if size < 0:
            raise CorruptPayloadError(f"damaged pickle stream: a negative length ({size})")
        remaining = self._check_size(size, f"an argument of {bytes([code])!r}")
        data: Any
        if code == _BYTEARRAY8 and remaining is not None and not self._unframer.current_frame:
            data, got = self._bytearray_from_file(size)
        else:
            data = self.read(size)
            got = len(data)
        if got < size:
            raise TruncatedPayloadError(
                f"truncated pickle stream: an argument of {size} bytes, {got} there"
            )
        self.append(make(self, data))

    def _bytearray_from_file(self, size: int) -> tuple[bytes | bytearray, int]:
        """``size`` bytes outside any frame, read straight into a new bytearray (one copy:
        pickle's ``readinto`` reads a bytes object and copies that), and how many came. Only
        for a size the data was seen to hold: the buffer is allocated before it is read."""
        file_readinto = getattr(self._file, "readinto", None)
        if file_readinto is None:
            data = self.read(size)
            return data, len(data)
        buffer = bytearray(size)
        return buffer, file_readinto(buffer) or 0

    def load_frame(self) -> None:
        """FRAME, checking its length against the data."""
        (size,) = struct.unpack("<Q", self.read(8))
        self._check_size(size, "a frame")
        self._unframer.load_frame(size)

    def load_mark(self) -> None:
        """MARK, counting the nesting it opens."""
        super().load_mark()  # type: ignore[misc]
        self._budget.check_depth(len(self.metastack), "the stream's marks")

    # --- globals --------------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        """Return the global ``module.name`` if the policy allows it, else refuse it."""
        policy = self._policy
        # Without fix_imports, Python 2 names are left alone (as pickle does): protocol "3".
        protocol = self.proto if self._fix_imports else 3
        module, name = fix_name(module, name, protocol)
        reason, prefix = policy.check(module, name)
        full = f"{module}.{name}"
        if reason is not None:
            raise UnsafePayloadError(f"restricted loading refused the global {full}: {reason}")
        obj: Any
        if full in numpy_safe.STAND_INS:
            # Always, however the name was allowed: numpy's own reconstructors trust their input.
            obj = numpy_safe.STAND_INS[full]
        elif full not in policy.user_exact and full in _SUBSTITUTES:
            obj = _SUBSTITUTES[full]
        elif full not in policy.user_exact and full in _BOUND_SUBSTITUTES:
            obj = getattr(self, _BOUND_SUBSTITUTES[full])
        elif module == "__builtin__" and name == "NoneType":
            obj = type(None)
        elif module == "__builtin__" and name == "__main__":
            # dill names the namespace of __main__ for the globals of by-value functions.
            obj = sys.modules["__main__"].__dict__
        else:
            obj = _lookup(module, name)
            if prefix is not None:
                policy.check_origin(full, prefix, obj)
        self._hand_out(obj)
        self._names.setdefault(id(obj), full)
        return obj

    def get_extension(self, code: int) -> None:
        """An extension code (``copyreg.add_extension``), always through :meth:`find_class`.

        pickle's own version answers from a process-wide cache first, which an unrestricted
        load may have filled with anything.
        """
        key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
        if not key:
            raise CorruptPayloadError(f"damaged pickle stream: unregistered extension code {code}")
        self.append(self.find_class(*key))

    def persistent_load(self, pid: Any) -> Any:
        """Refuse: a persistent id asks the loader for an object from outside the stream."""
        # Shown only as far as it is cheap to: a pid can be any object of the stream, and the
        # repr of a tuple holding itself twice over 40 levels has 2**40 parts.
        if type(pid) is str or type(pid) is bytes:
            shown = repr(pid[:80])
        elif type(pid) is int and pid.bit_length() <= 256:
            shown = repr(pid)
        else:
            shown = f"a {type(pid).__name__}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise UnsafePayloadError(
            f"restricted loading refused a persistent id ({shown}): persistent ids ask the "
            f"loader for objects from outside the payload"
        )

    def unread(self) -> int:
        """How many bytes the unpickler took from its file but has not parsed yet.

        pickle reads a whole frame from the file at once, so the file's position runs ahead of
        the parser's by what is left of the current frame.
        """
        unframer = getattr(self, "_unframer", None)  # set by load()
        frame = unframer.current_frame if unframer is not None else None
        if not frame:
            return 0
        with frame.getbuffer() as view:
            return int(view.nbytes - frame.tell())

    def _hand_out(self, obj: Any) -> None:
        """Remember ``obj`` as not the payload's own: no opcode may change it."""
        if id(obj) not in self._handed_ids:
            self._handed.append(obj)
            self._handed_ids.add(id(obj))

    # --- calls: arguments checked by the policy, their expansion by the budget ------------------

    def _guard_call(self, func: Any, args: Any, kwargs: Any = None) -> None:
        """Check a call the stream makes before it runs (see :meth:`Policy.check_call`).

        copyreg's helpers and NEWOBJ are looked through: the rules of the class they call
        apply.
        """
        if type(args) is not tuple or (kwargs is not None and type(kwargs) is not dict):
            # pickle.py unpacks any iterable (func(*args)); the C unpickler, which pickle.loads
            # uses, takes a tuple and a dict only. Anything else would be read twice here,
            # once by these checks and once by the call, by its own class's code.
            self._refuse_arguments(func, args, kwargs)
        callee, call_args, call_kwargs = func, args, kwargs
        if func is copyreg.__newobj__ and args:  # type: ignore[attr-defined]
            callee, call_args = args[0], args[1:]
        elif func is copyreg.__newobj_ex__ and len(args) == 3:  # type: ignore[attr-defined]
            callee, call_args, call_kwargs = args
            if type(call_args) is not tuple or type(call_kwargs) is not dict:
                self._refuse_arguments(callee, call_args, call_kwargs)
        elif func is copyreg._reconstructor and len(args) == 3:  # type: ignore[attr-defined]
            callee, call_args = args[1], (args[2],)
        name = self._names.get(id(callee))
        shown = name or getattr(callee, "__qualname__", type(callee).__qualname__)
        # The arguments' expanded size first: the argument rules below look at (and may hash)
        # what they are given.
        sizes = isinstance(callee, type) and issubclass(callee, (bytes, bytearray))
        self._budget.call(args, kwargs, shown, sizes=sizes, skip=self._handed_ids)
        if name is not None:
            reason = self._policy.check_call(name, call_args, call_kwargs)
            if reason is not None:
                raise UnsafePayloadError(f"restricted loading refused a call of {name}: {reason}")
        # The allowed constructors that hash what they are given: its keys, counted as keys.
        keys = _hashed_keys(callee, call_args)
        if keys:
            self._guard_keys(keys, f"calling {shown}")

    def _refuse_arguments(self, func: Any, args: Any, kwargs: Any) -> NoReturn:
        shown = self._names.get(id(func)) or type(func).__qualname__
        raise UnsafePayloadError(
            f"restricted loading refused a call of {shown}: its arguments are a "
            f"{type(args).__name__}"
            + ("" if kwargs is None else f" and its keyword arguments a {type(kwargs).__name__}")
            + ", not a tuple and a dict as the C unpickler requires"
        )

    def load_reduce(self) -> None:
        """REDUCE, its call checked first."""
        stack = self.stack
        if len(stack) >= 2:
            self._guard_call(stack[-2], stack[-1])
        super().load_reduce()  # type: ignore[misc]

    def load_newobj(self) -> None:
        """NEWOBJ, its call checked first."""
        stack = self.stack
        if len(stack) >= 2:
            self._guard_call(stack[-2], stack[-1])
        super().load_newobj()  # type: ignore[misc]

    def load_newobj_ex(self) -> None:
        """NEWOBJ_EX, its call checked first."""
        stack = self.stack
        if len(stack) >= 3:
            self._guard_call(stack[-3], stack[-2], stack[-1])
        super().load_newobj_ex()  # type: ignore[misc]

    def _instantiate(self, klass: Any, args: list[Any]) -> None:
        """OBJ and INST, their call checked first."""
        self._guard_call(klass, tuple(args))
        super()._instantiate(klass, args)  # type: ignore[misc]

    def _guard_keys(self, keys: list[Any], how: str, target: Any = None) -> None:
        """Count hashing and comparing ``keys`` as they go into ``target`` (see
        :meth:`Budget.keys`: a tuple's walk, a big int's bytes, collisions)."""
        if keys:
            self._budget.keys(keys, target, f"hashing a key ({how})")

    # --- opcodes that change an object ----------------------------------------------------------

    def _refuse_change(self, loader: str) -> None:
        stack = self.stack
        at = _TARGETS.get(loader)
        if at is None:  # the opcodes with a mark: the target is just below it
            target = self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None
        else:
            target = stack[at] if len(stack) >= -at else None
        if target is not None and id(target) in self._handed_ids:
            self._refuse_target(target, loader.removeprefix("load_"))
        lookups = _LOOKUPS.get(loader)
        if lookups is not None and type(target) is not lookups[1]:
            planted = _planted_method(target, lookups[0])
            if planted is not None:
                raise UnsafePayloadError(
                    f"restricted loading refused the payload: {loader.removeprefix('load_')} "
                    f"would call {type(target).__qualname__}'s {planted!r}, which an earlier "
                    f"opcode stored in the instance itself (methods come from classes)"
                )
        if loader == "load_setitem":
            self._guard_keys(stack[-2:-1], "SETITEM", target)
        elif loader == "load_setitems":
            self._guard_keys(stack[0::2], "SETITEMS", target)
        elif loader == "load_additems":
            self._guard_keys(stack, "ADDITEMS", target)
        elif loader == "load_build" and len(stack) >= 2:
            # A dict state's keys go into the instance's __dict__ (a slot state's are set one
            # by one): hashed and compared again.
            state = stack[-1]
            if type(state) is tuple and len(state) == 2:
                state = state[0]
            if type(state) is dict:
                self._guard_keys(list(state), "BUILD")

    def load_dict(self) -> None:
        """DICT, its keys counted first."""
        self._guard_keys(self.stack[0::2], "DICT")
        super().load_dict()  # type: ignore[misc]

    def load_frozenset(self) -> None:
        """FROZENSET, its items counted first."""
        self._guard_keys(self.stack, "FROZENSET")
        super().load_frozenset()  # type: ignore[misc]

    def load_build(self) -> None:
        """BUILD; on a numpy object, a validated replacement instead of numpy's ``__setstate__``."""
        self._refuse_change("load_build")
        stack = self.stack
        if len(stack) >= 2 and numpy_safe.is_numpy_object(stack[-2]):
            target = stack[-2]
            state = stack.pop()
            # Walked first, as a call's arguments: the validation compares, hashes and shows
            # parts of it (a tuple holding itself twice over 40 levels is 2**40 of each).
            self._budget.walk((state,), "a numpy object's state")
            replacement = numpy_safe.rebuild(target, state)
            stack[-1] = replacement
            self.memo.replace(target, replacement)
            return
        super().load_build()  # type: ignore[misc]

    @staticmethod
    def _refuse_target(target: Any, how: str) -> None:
        shown = getattr(target, "__qualname__", None) or type(target).__qualname__
        module = getattr(target, "__module__", None)
        label = f"{module}.{shown}" if isinstance(module, str) else shown
        raise UnsafePayloadError(
            f"restricted loading refused the payload: it tries to change {label} ({how}), an "
            f"object it did not build; a payload may build objects from allowed globals, not "
            f"alter the globals themselves or objects the caller handed in"
        )

    def _dropped_resource(self, index: Any) -> Any:
        """Stands in for ``_reconstruct.dropped_resource``: the caller's object, kept intact."""
        found = dropped_resource(index)
        if found is not None:
            self._hand_out(found)
        return found

    def _restore_state(self, obj: Any, state: Any) -> None:
        """Stands in for ``_reconstruct.restore_state``, for objects the stream built only."""
        if (
            id(obj) in self._handed_ids
            or isinstance(obj, (type, types.ModuleType))
            or numpy_safe.is_numpy_object(obj)
        ):
            self._refuse_target(obj, "restore_state")
        restore_state(obj, state)

    def load_stop(self) -> None:
        """STOP, refusing an empty stack itself.

        STOP is the last byte of a stream, so pickle's own failure there (an ``IndexError``)
        would stand at the end of the data and read as a truncation; the stream is complete.
        """
        if not self.stack:
            raise CorruptPayloadError("damaged pickle stream: STOP with nothing on the stack")
        super().load_stop()  # type: ignore[misc]

    def _load_dill(self, blob: Any) -> Any:
        """Stands in for ``_reconstruct.load_dill``: the nested blob, loaded under this policy."""
        if not isinstance(blob, (bytes, bytearray)):
            raise UnsafePayloadError(
                f"restricted loading refused load_dill({type(blob).__name__}): expected bytes"
            )
        return restricted_loads(
            blob,
            allow=self._policy.allow,
            trusted=self._policy.trusted,
            fix_imports=self._fix_imports,
            encoding=self._encoding,
            errors=self._errors,
            limits=self._limits,
        )


class _Dispatch(dict[int, Callable[[Any], None]]):
    """The opcode table; an unknown opcode is a damaged stream wherever it stands."""

    def __missing__(self, code: int) -> Callable[[Any], None]:
        raise CorruptPayloadError(f"damaged pickle stream: unknown opcode {bytes([code])!r}")


def _append(self: RestrictedUnpickler) -> None:
    """APPEND as the C unpickler applies it (``pickle.py``'s calls ``append`` even where the C
    unpickler calls ``extend``): a list appends; anything else is extended by a one-item list
    if it has ``extend``, else appended to."""
    stack = self.stack
    value = stack.pop()
    target = stack[-1]
    if type(target) is list:
        target.append(value)
        return
    extend = getattr(target, "extend", None)
    if extend is not None:
        extend([value])
    else:
        target.append(value)


def _guarded(loader: str) -> Callable[[RestrictedUnpickler], None]:
    original = _append if loader == "load_append" else getattr(pickle._Unpickler, loader)

    def load(self: RestrictedUnpickler) -> None:
        self._refuse_change(loader)
        original(self)

    load.__name__ = loader
    return load


def _sized(code: int) -> Callable[[RestrictedUnpickler], None]:
    def load(self: RestrictedUnpickler) -> None:
        self.load_sized(code)

    return load


RestrictedUnpickler.dispatch = _Dispatch(pickle._Unpickler.dispatch)
for _code, _loader in _MUTATORS.items():
    RestrictedUnpickler.dispatch[_code] = _guarded(_loader)
for _code in _SIZED:
    RestrictedUnpickler.dispatch[_code] = _sized(_code)
del _code, _loader
for _opcode, _method in (
    (pickle.BUILD, RestrictedUnpickler.load_build),
    (pickle.STOP, RestrictedUnpickler.load_stop),
    (pickle.FRAME, RestrictedUnpickler.load_frame),
    (pickle.MARK, RestrictedUnpickler.load_mark),
    (pickle.REDUCE, RestrictedUnpickler.load_reduce),
    (pickle.NEWOBJ, RestrictedUnpickler.load_newobj),
    (pickle.NEWOBJ_EX, RestrictedUnpickler.load_newobj_ex),
    (pickle.DICT, RestrictedUnpickler.load_dict),
    (pickle.FROZENSET, RestrictedUnpickler.load_frozenset),
):
    RestrictedUnpickler.dispatch[_opcode[0]] = _method
del _opcode, _method


def restricted_loads(
    stream: bytes | bytearray | memoryview,
    *,
    allow: Iterable[str] | None = (),
    trusted: bool = False,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
    limits: Limits | None = None,
) -> Any:
    """Unpickle a bare pickle stream, importing only allow-listed globals.

    Plain data and instances of plain classes are checked by :mod:`.datapath` and loaded by the
    C unpickler; every other stream by :class:`RestrictedUnpickler`. Both give the same result,
    or the same error.

    Nested unpickling is restricted too: an object omnipickle wrote as a dill blob
    (``omnipickle._reconstruct.load_dill``) is refused, or, with ``trusted=True``, loaded with
    the same rules.

    Args:
        stream: the pickle stream (no envelope: check, verify and decompress it first).
        allow: extra globals, as exact names (``"pkg.module.Name"``) or prefix patterns
            (``"pkg.*"``); :data:`DEFAULT_ALLOW` is always included.
        trusted: also accept code serialized by value; pass ``True`` only when the payload's
            signature verified.
        fix_imports, encoding, errors, buffers: as for :func:`pickle.loads`.
        limits: the budget (:class:`~.budget.Limits`); ``None``: the process default
            (:func:`~.budget.default_limits`, scaled to the stream's size).

    Returns:
        The object.

    Raises:
        BudgetExceededError: the payload needs more memory, objects or nesting than its
            limits allow (also for a MemoryError or RecursionError while loading).
        UnsafePayloadError: the payload asks for a global that is not allowed (the message
            names the first one) or for a persistent id, tries to change a global, or calls an
            allowed global with arguments it does not accept.
        TruncatedPayloadError: the stream ends early.
        CorruptPayloadError: the stream is not a well-formed pickle.
        UnpicklingError: an allowed constructor refused its arguments, or an allowed global
            cannot be imported here.
        TypeError, ValueError: ``stream`` is not bytes-like, or ``allow`` is malformed.
    """
    if not isinstance(stream, (bytes, bytearray, memoryview)):
        raise TypeError(f"stream must be bytes-like, not {type(stream).__name__}")
    file = io.BytesIO(stream)
    allow = read_allow(allow)  # a second unpickler may need it (after the fast path)

    def unpickler_of_this_load() -> RestrictedUnpickler:
        return RestrictedUnpickler(
            file,
            allow=allow,
            trusted=trusted,
            fix_imports=fix_imports,
            encoding=encoding,
            errors=errors,
            buffers=buffers,
            limits=limits,
        )

    # Built first, so that a malformed allow-list raises whatever the stream holds.
    unpickler = unpickler_of_this_load()
    size = memoryview(stream).nbytes
    if size == 0:
        raise TruncatedPayloadError("empty pickle stream: 0 bytes")
    if envelope.is_envelope(stream):
        raise CorruptPayloadError(
            "this is an omnipickle payload, not a bare pickle stream: load it with "
            "omnipickle.loads(data, restricted=True), which checks the envelope first"
        )
    # Plain data and plain instances are proved so by a check that runs in C, then loaded by
    # the C unpickler with this unpickler's find_class; any other stream (or one the C
    # unpickler fails on) is read by the checked unpickler below, from the start.
    resolved: list[str] = []

    def resolve(module: str, name: str) -> Any:
        resolved.append(name)
        return unpickler.find_class(module, name)

    unpickler.proto = datapath.protocol(stream)  # what find_class maps names by
    loaded = datapath.load(stream, unpickler._limits, resolve)
    if loaded is not datapath.NOT_SIMPLE:
        return loaded
    if resolved:  # what find_class handed out to the C unpickler is not this load's
        unpickler = unpickler_of_this_load()
    try:
        return unpickler.load()
    except UnpicklingError:
        raise
    except (MemoryError, RecursionError) as exc:
        kind = "memory" if isinstance(exc, MemoryError) else "nesting (recursion)"
        raise BudgetExceededError(
            f"restricted loading refused the payload: rebuilding it ran out of {kind} before "
            f"its budget did; lower the limits (limits=Limits(...)) to refuse it earlier"
        ) from exc
    except MALFORMED_STREAM as exc:
        position = file.tell() - unpickler.unread()
        raise damaged_stream(exc, size=size, ended=position >= size, position=position) from exc
    except OmnipickleError:
        raise
    except Exception as exc:
        # Only allow-listed callables ran: whatever they raised means the payload gave them
        # arguments they refuse. Restricted loading promises an UnpicklingError for any input.
        raise UnpicklingError(
            f"the payload could not be rebuilt: {type(exc).__name__}: {exc}"
        ) from exc
