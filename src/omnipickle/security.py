"""Trust: restricted loading, static scanning, and signature checks without unpickling.

Three tools, one threat model (``docs/security.md``):

* :func:`restricted_loads` / :class:`RestrictedUnpickler`: unpickle a bare pickle stream, but
  import only allow-listed globals (a safe default set of data types, :data:`DEFAULT_ALLOW`,
  extended with ``allow=``). The first global the payload asks for that is not allowed raises
  :class:`~omnipickle.errors.UnsafePayloadError` *before* it is imported or called. Code
  serialized by value (cloudpickle's and dill's code reconstructors) is accepted only with
  ``trusted=True``, which callers pass when the payload's signature verified: signatures are
  how code is trusted, allow-lists how data is.
* :func:`scan`: a static report of what a payload would import and call, computed from its
  opcodes without executing anything (decompressing is not executing).
* :func:`verify_signature`: check a payload's HMAC-SHA256 tag, and nothing else.

Why the default set is safe: every entry is either a data type whose constructor and
``__setstate__`` only build a value from their arguments, or a reconstructor that only combines
objects the same allow-list already admitted (see the notes on ``copyreg`` below). Anything that
can import a module, look up an attribute by name (``getattr``), evaluate a string, open a file
or build code is left out.
"""

from __future__ import annotations

import _compat_pickle
import copyreg
import hashlib
import hmac
import importlib
import io
import os
import pickle
import struct
import sys
import threading
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, ClassVar

from .codecs import REGISTRY as CODECS
from .codecs import Codec, codec_by_id, codec_for_magic, decompress_foreign
from .errors import (
    CorruptPayloadError,
    IncompatiblePayloadError,
    OmnipickleError,
    SignatureError,
    TruncatedPayloadError,
    UnknownCodecError,
    UnpicklingError,
    UnsafePayloadError,
)
from .files import check_binary_file, is_path
from .format import header as envelope

if TYPE_CHECKING:
    from .api import Info

__all__ = [
    "DEFAULT_ALLOW",
    "TRUSTED_ALLOW",
    "GlobalUse",
    "NestedBlob",
    "RestrictedUnpickler",
    "ScanReport",
    "restricted_loads",
    "scan",
    "verify_signature",
]

Source = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]

# --- the allow-lists ---------------------------------------------------------------------------

_PATHS = ("PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath", "WindowsPath")

DEFAULT_ALLOW: frozenset[str] = frozenset(
    {
        # Built-in data types, under the names pickle writes for them (protocols 0-2 write
        # ``__builtin__.set`` and so on; fix_imports maps those to ``builtins`` first).
        # Left out on purpose: ``getattr`` (reaches any attribute: ``f.__globals__``...),
        # ``type`` (three arguments build a class; pickle only names it for
        # ``type(None)``-style values: allow "builtins.type" if you need those), ``eval``,
        # ``exec``, ``__import__``, ``open``, ``setattr`` and every other function.
        *(
            f"builtins.{name}"
            for name in (
                "bool",
                "bytearray",
                "bytes",
                "complex",
                "dict",
                "float",
                "frozenset",
                "int",
                "list",
                "object",
                "range",
                "set",
                "slice",
                "str",
                "tuple",
                "Ellipsis",
                "NotImplemented",
            )
        ),
        # Protocols 0-2 write bytes as codecs.encode(text, "latin1"); restricted loading
        # substitutes a function that accepts exactly that (see _latin1_encode).
        "_codecs.encode",
        "codecs.encode",
        # copyreg's helpers for plain objects. _reconstructor(cls, base, state) calls
        # base.__new__(cls, state) and base.__init__(obj, state); __newobj__(cls, *args) and
        # __newobj_ex__(cls, args, kwargs) call cls.__new__. None of them can name anything
        # by itself: cls and base are objects already on the unpickler's stack, which got
        # there through this same find_class (or as results of allowed callables, none of
        # which returns a class it was not given). So they only ever combine allowed classes,
        # which the payload could call directly anyway; they add no reach.
        "copyreg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        # dill's name for type(None).
        "__builtin__.NoneType",
        # The standard library's value types.
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.deque",
        "collections.Counter",
        "datetime.date",
        "datetime.datetime",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        *(f"pathlib.{name}" for name in _PATHS),
        # Python 3.13 moved the path classes to pathlib._local, and pickles name them there.
        *(f"pathlib._local.{name}" for name in _PATHS),
        # numpy arrays, dtypes and scalars, under numpy 1.x (numpy.core) and 2.x (numpy._core)
        # names. numpy itself refuses to build object arrays or object scalars from raw bytes,
        # and checks a buffer's size against shape and strides. Listing these names imports
        # nothing: numpy is imported only when a payload names one of them.
        "numpy.ndarray",
        "numpy.dtype",
        *(
            f"numpy.{core}.{name}"
            for core in ("core", "_core")
            for name in ("multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer")
        ),
        # omnipickle's placeholders. dropped_resource(i) is None or the live object the caller
        # itself passed to loads(..., resources=...); restore_state(obj, state) sets the state
        # of an object the stream built (restricted loading refuses to let it touch a global
        # or an object the caller handed in).
        "omnipickle._reconstruct.dropped_resource",
        "omnipickle._reconstruct.restore_state",
        # omnipickle's recreated synchronization primitives. make_barrier takes an action
        # callable, but that action is an object from the same stream, so it can only be
        # something this allow-list admitted, which the payload could have called at load
        # time anyway; the barrier only calls it later, with no arguments. It adds no reach.
        # load_dill (runs dill on a blob), reopen_file (opens files) and std_stream (hands out
        # the process's own sys.stdout...) are not here: see TRUSTED_ALLOW.
        *(
            f"omnipickle._reconstruct.{name}"
            for name in (
                "make_lock",
                "make_rlock",
                "make_condition",
                "make_event",
                "make_semaphore",
                "make_bounded_semaphore",
                "make_barrier",
            )
        ),
    }
)
"""The globals :func:`restricted_loads` accepts with no ``allow=`` (exact dotted names)."""

# Code reconstructors: what cloudpickle, dill and omnipickle write for code serialized by value,
# and the standard-library pieces by-value classes and functions are made of (metaclasses, bases,
# descriptors). They can build functions and classes, import modules and run code while loading,
# so they are accepted only from a payload whose signature verified (trusted=True): the trust is
# in the signature, and these names only keep legitimate signed payloads loading. The packages
# listed as prefixes are accepted whole (any name, any dunder attribute, their modules too).
_TRUSTED_PREFIXES: tuple[str, ...] = (
    "cloudpickle",
    "dill",
    "abc",
    "collections.abc",
    "dataclasses",
    "enum",
    "types",
    "typing",
)

TRUSTED_ALLOW: frozenset[str] = frozenset(
    {
        *(f"{prefix}.*" for prefix in _TRUSTED_PREFIXES),
        "builtins.type",
        "builtins.getattr",
        "builtins.setattr",
        "builtins.delattr",
        "builtins.property",
        "builtins.classmethod",
        "builtins.staticmethod",
        "builtins.super",
        # dill's name for the builtins namespace, and for the __main__ one (the globals of
        # by-value functions).
        "builtins.__dict__",
        "__builtin__.__main__",
        "_operator.getitem",  # generic aliases: Generic[T]
        "operator.getitem",
        "logging.getLogger",
        "weakref.WeakSet",
        "omnipickle._reconstruct.load_dill",
        "omnipickle._reconstruct.reopen_file",
        "omnipickle._reconstruct.std_stream",
    }
)
"""What ``trusted=True`` accepts on top of the allow-list: by-value code and its building blocks.

Entries ending in ``.*`` cover a whole package. These names can build and run code, import
modules and open files: pass ``trusted=True`` only for a payload whose signature verified.
"""

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
_MIN_KEY = 16
_RESTORE_STATE = ("omnipickle._reconstruct", "restore_state")
_INSTANTIATORS = frozenset(
    {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")}
)
_MAX_NESTING = 16


# --- allow entries -----------------------------------------------------------------------------


def _check_dotted(entry: str, text: str) -> None:
    if not text or not all(part.isidentifier() for part in text.split(".")):
        raise ValueError(
            f"invalid allow entry {entry!r}: expected a dotted name 'package.module.Name' or a "
            f"prefix pattern 'package.*' (every part a Python identifier)"
        )


def _parse_allow(allow: Iterable[str] | None) -> tuple[frozenset[str], tuple[str, ...]]:
    """Validate ``allow``; return its exact names and its prefixes (without ``.*``)."""
    if allow is None:
        return frozenset(), ()
    if isinstance(allow, (str, bytes, bytearray)):
        raise TypeError(
            f"allow must be an iterable of names, not a single {type(allow).__name__}: "
            f"write allow=({allow!r},)"
        )
    try:
        entries = list(allow)
    except TypeError:
        raise TypeError(
            f"allow must be an iterable of names such as ('pkg.module.Name', 'pkg.*'), "
            f"not {type(allow).__name__}"
        ) from None
    exact: set[str] = set()
    prefixes: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise TypeError(f"allow entries must be str, not {type(entry).__name__}: {entry!r}")
        if entry != entry.strip() or any(ch.isspace() for ch in entry):
            raise ValueError(f"invalid allow entry {entry!r}: it contains whitespace")
        if entry.endswith(".*"):
            base = entry[:-2]
            if "*" in base:
                raise ValueError(f"invalid allow entry {entry!r}: '*' only as a final '.*'")
            _check_dotted(entry, base)
            prefixes.append(base)
            continue
        if "*" in entry:
            raise ValueError(
                f"invalid allow entry {entry!r}: '*' only as a final '.*' after a package or "
                f"module name ('pkg.*'); a bare '*' would allow everything"
            )
        _check_dotted(entry, entry)
        if "." not in entry:
            raise ValueError(
                f"invalid allow entry {entry!r}: name a global as 'module.Name', or every name "
                f"in a module or package as '{entry}.*'"
            )
        exact.add(entry)
    return frozenset(exact), tuple(dict.fromkeys(prefixes))


def _is_dunder(part: str) -> bool:
    return len(part) > 4 and part.startswith("__") and part.endswith("__")


_CODE_REASON = (
    "it rebuilds code serialized by value (or is a part of such code), which restricted loading "
    "accepts only from a payload whose signature verified (trusted=True)"
)


def _under(full: str, prefixes: Iterable[str]) -> str | None:
    for prefix in prefixes:
        if full.startswith(prefix + "."):
            return prefix
    return None


class _Policy:
    """One set of rules: what a restricted load may import, and how it is checked."""

    __slots__ = ("allow", "exact", "prefixes", "trusted", "user_exact")

    def __init__(self, allow: Iterable[str] | None, trusted: bool) -> None:
        if not isinstance(trusted, bool):
            raise TypeError(f"trusted must be a bool, not {type(trusted).__name__}")
        user_exact, user_prefixes = _parse_allow(allow)
        self.allow: tuple[str, ...] = (*sorted(user_exact), *(f"{p}.*" for p in user_prefixes))
        self.trusted = trusted
        self.user_exact = user_exact
        exact = DEFAULT_ALLOW | user_exact
        if trusted:
            exact |= {e for e in TRUSTED_ALLOW if not e.endswith(".*")}
        self.exact = exact
        self.prefixes = user_prefixes

    def check(self, module: str, name: str) -> tuple[str | None, str | None]:
        """``(reason, prefix)``: why ``module.name`` is refused (``None``: accepted).

        ``prefix`` is the user's pattern that accepted it, if one did: the object found must
        then also be defined under that prefix (see :meth:`check_origin`).
        """
        full = f"{module}.{name}"
        if full in self.exact:
            return None, None
        parts = [*module.split("."), *name.split(".")]
        if not all(part.isidentifier() for part in parts):
            return "it is not a valid dotted name", None
        code = full in TRUSTED_ALLOW or _under(full, _TRUSTED_PREFIXES) is not None
        if code and self.trusted:
            return None, None
        prefix = _under(full, self.prefixes)
        if prefix is not None:
            if any(_is_dunder(part) for part in name.split(".")):
                return (
                    f"it reaches a dunder attribute, which the pattern {prefix}.* does not "
                    f"cover; allow it by its exact name if you mean it"
                ), None
            return None, prefix
        if code:
            return _CODE_REASON, None
        return (
            f"it is not in the allow-list; if you trust this payload, pass allow=({full!r},)"
        ), None

    @staticmethod
    def check_origin(full: str, prefix: str, obj: Any) -> None:
        """Refuse an object a prefix pattern reached that is not defined under that prefix.

        ``pkg.*`` trusts what ``pkg`` defines, not everything its modules import: without this,
        ``pkg.mod.system`` after ``from os import system`` in ``pkg/mod.py`` would pass.
        """
        if isinstance(obj, types.ModuleType):
            raise UnsafePayloadError(
                f"restricted loading refused the global {full}: it is a module, and prefix "
                f"patterns only cover what modules define"
            )
        origin = getattr(obj, "__module__", None)
        if isinstance(origin, str) and (
            origin == prefix or origin.startswith(prefix + ".") or prefix.startswith(origin + ".")
        ):
            return
        raise UnsafePayloadError(
            f"restricted loading refused the global {full}: it is defined in "
            f"{origin or 'an unknown module'}, not under {prefix}.*; allow it by its exact "
            f"name if you trust it"
        )


# --- safe stand-ins for a few allowed names ------------------------------------------------------


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``codecs.encode`` restricted to what pickle writes for bytes: ``(text, "latin1")``."""
    if (
        type(obj) is not str
        or encoding not in ("latin1", "latin-1", "latin_1")
        or errors != "strict"
    ):
        raise UnsafePayloadError(
            f"restricted loading refused codecs.encode({type(obj).__name__}, {encoding!r}): "
            f"only the (text, 'latin1') form that pickle writes for bytes is accepted"
        )
    return obj.encode("latin-1")


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


# --- the unpickler -------------------------------------------------------------------------------

_DILL_NAMES = frozenset({("__builtin__", "NoneType"), ("__builtin__", "__main__")})


def _fix_name(module: str, name: str, protocol: int) -> tuple[str, str]:
    """The name find_class looks up: dill's aliases, then Python 2 names mapped to Python 3.

    Python 2 names are mapped as pickle's own find_class does, for protocols < 3 only.
    """
    if (module, name) in _DILL_NAMES:
        return module, name
    if module == "dill.dill":
        module = "dill._dill"
    if protocol >= 3:
        return module, name
    if (module, name) in _compat_pickle.NAME_MAPPING:
        mapped: tuple[str, str] = _compat_pickle.NAME_MAPPING[(module, name)]
        return mapped
    if module in _compat_pickle.IMPORT_MAPPING:
        return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def _lookup(module: str, name: str) -> Any:
    full = f"{module}.{name}"
    try:
        found: Any = sys.modules.get(module) or importlib.import_module(module)
    except ImportError as exc:
        raise UnpicklingError(
            f"the payload names {full}, but {module!r} cannot be imported here: {exc}"
        ) from exc
    for part in name.split("."):
        try:
            found = getattr(found, part)
        except AttributeError as exc:
            raise UnpicklingError(
                f"the payload names {full}, which does not exist here: {exc}"
            ) from exc
    return found


# The opcodes that change an object already on the stack, by their loader's name.
_MUTATORS = {
    pickle.BUILD[0]: "load_build",
    pickle.APPEND[0]: "load_append",
    pickle.APPENDS[0]: "load_appends",
    pickle.SETITEM[0]: "load_setitem",
    pickle.SETITEMS[0]: "load_setitems",
    pickle.ADDITEMS[0]: "load_additems",
}
# Where each of them finds its target, counted from the top of the stack (or at the mark).
_TARGETS = {"load_build": -2, "load_append": -2, "load_setitem": -3}


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
    a restricted load takes about four times as long as a plain one.

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

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)
    # The pure-Python unpickler's own state, which typeshed does not describe.
    proto: int
    stack: list[Any]
    metastack: list[list[Any]]
    append: Callable[[Any], None]
    read: Callable[[int], bytes]

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
    ) -> None:
        self._policy = _Policy(allow, trusted)
        super().__init__(
            file, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers
        )
        self._fix_imports = fix_imports
        self._encoding = encoding
        self._errors = errors
        # Everything find_class handed out, by id (the list keeps the ids valid).
        self._handed: list[Any] = []
        self._handed_ids: set[int] = set()

    def find_class(self, module: str, name: str) -> Any:
        """Return the global ``module.name`` if the policy allows it, else refuse it."""
        policy = self._policy
        # Without fix_imports, Python 2 names are left alone (as pickle does): protocol "3".
        protocol = self.proto if self._fix_imports else 3
        module, name = _fix_name(module, name, protocol)
        reason, prefix = policy.check(module, name)
        full = f"{module}.{name}"
        if reason is not None:
            raise UnsafePayloadError(f"restricted loading refused the global {full}: {reason}")
        obj: Any
        if full not in policy.user_exact and full in _SUBSTITUTES:
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
        shown = repr(pid)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise UnsafePayloadError(
            f"restricted loading refused a persistent id ({shown}): persistent ids ask the "
            f"loader for objects from outside the payload"
        )

    def _hand_out(self, obj: Any) -> None:
        """Remember ``obj`` as not the payload's own: no opcode may change it."""
        if id(obj) not in self._handed_ids:
            self._handed.append(obj)
            self._handed_ids.add(id(obj))

    def _refuse_change(self, loader: str) -> None:
        stack = self.stack
        at = _TARGETS.get(loader)
        if at is None:  # the opcodes with a mark: the target is just below it
            target = self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None
        else:
            target = stack[at] if len(stack) >= -at else None
        if target is not None and id(target) in self._handed_ids:
            self._refuse_target(target, loader.removeprefix("load_"))

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
        from ._reconstruct import dropped_resource

        found = dropped_resource(index)
        if found is not None:
            self._hand_out(found)
        return found

    def _restore_state(self, obj: Any, state: Any) -> None:
        """Stands in for ``_reconstruct.restore_state``, for objects the stream built only."""
        from ._reconstruct import restore_state

        if id(obj) in self._handed_ids or isinstance(obj, (type, types.ModuleType)):
            self._refuse_target(obj, "restore_state")
        restore_state(obj, state)

    def load_bytearray8(self) -> None:
        """BYTEARRAY8, reading before allocating.

        pickle's own version allocates (and zeroes) the size the stream claims before reading
        a byte: 13 bytes of payload could make it clear gigabytes.
        """
        (size,) = struct.unpack("<Q", self.read(8))
        if size > sys.maxsize:
            raise CorruptPayloadError(f"damaged pickle stream: a bytearray of {size} bytes")
        data = self.read(size)
        if len(data) < size:
            raise TruncatedPayloadError(
                f"truncated pickle stream: a bytearray of {size} bytes, {len(data)} there"
            )
        self.append(bytearray(data))

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
        )


def _guarded(loader: str) -> Callable[[RestrictedUnpickler], None]:
    original = getattr(pickle._Unpickler, loader)

    def load(self: RestrictedUnpickler) -> None:
        self._refuse_change(loader)
        original(self)

    load.__name__ = loader
    return load


for _code, _loader in _MUTATORS.items():
    RestrictedUnpickler.dispatch[_code] = _guarded(_loader)
del _code, _loader
RestrictedUnpickler.dispatch[pickle.BYTEARRAY8[0]] = RestrictedUnpickler.load_bytearray8


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
)


def restricted_loads(
    stream: bytes | bytearray | memoryview,
    *,
    allow: Iterable[str] | None = (),
    trusted: bool = False,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
) -> Any:
    """Unpickle a bare pickle stream, importing only allow-listed globals.

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

    Returns:
        The object.

    Raises:
        UnsafePayloadError: the payload asks for a global that is not allowed (the message
            names the first one) or for a persistent id, or tries to change a global.
        TruncatedPayloadError: the stream ends early.
        CorruptPayloadError: the stream is not a well-formed pickle.
        UnpicklingError: an allowed constructor refused its arguments, or an allowed global
            cannot be imported here.
        TypeError, ValueError: ``stream`` is not bytes-like, or ``allow`` is malformed.
    """
    if not isinstance(stream, (bytes, bytearray, memoryview)):
        raise TypeError(f"stream must be bytes-like, not {type(stream).__name__}")
    # Built first, so that a malformed allow-list raises whatever the stream holds.
    unpickler = RestrictedUnpickler(
        io.BytesIO(stream),
        allow=allow,
        trusted=trusted,
        fix_imports=fix_imports,
        encoding=encoding,
        errors=errors,
        buffers=buffers,
    )
    if len(stream) == 0:
        raise TruncatedPayloadError("empty pickle stream: 0 bytes")
    if envelope.is_envelope(stream):
        raise CorruptPayloadError(
            "this is an omnipickle payload, not a bare pickle stream: load it with "
            "omnipickle.loads(data, restricted=True), which checks the envelope first"
        )
    try:
        return unpickler.load()
    except UnpicklingError:
        raise
    except EOFError as exc:
        raise TruncatedPayloadError(
            f"truncated pickle stream: the data ({len(stream)} bytes) ends before the stream does"
        ) from exc
    except _MALFORMED as exc:
        if "truncated" in str(exc) or "exhausted" in str(exc):
            raise TruncatedPayloadError(
                f"truncated pickle stream: the data ({len(stream)} bytes) ends before the "
                f"stream does"
            ) from exc
        raise CorruptPayloadError(f"damaged pickle stream: {type(exc).__name__}: {exc}") from exc
    except OmnipickleError:
        raise
    except Exception as exc:
        # Only allow-listed callables ran: whatever they raised means the payload gave them
        # arguments they refuse. Restricted loading promises an UnpicklingError for any input.
        raise UnpicklingError(
            f"the payload could not be rebuilt: {type(exc).__name__}: {exc}"
        ) from exc


# --- reading payloads without unpickling ---------------------------------------------------------


def _read(data_or_path: Source, what: str) -> memoryview:
    if is_path(data_or_path):
        with open(data_or_path, "rb") as f:  # type: ignore[arg-type]
            view = memoryview(f.read())
    elif isinstance(data_or_path, (bytes, bytearray, memoryview)):
        view = memoryview(data_or_path)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
    elif hasattr(data_or_path, "read"):
        check_binary_file(data_or_path, "r")
        data = data_or_path.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"the file's read() returned {type(data).__name__}, not bytes")
        view = memoryview(data)
    else:
        raise TypeError(
            f"{what}() takes bytes, a path or a binary file, not {type(data_or_path).__name__}"
        )
    if len(view) == 0:
        raise TruncatedPayloadError("empty payload: 0 bytes")
    return view


def _envelope_codec(header: envelope.Header) -> Codec | None:
    if header.codec_id == 0:
        return None
    if header.codec_id == envelope.NAMED:
        name = header.extra.get("codec")
        if not isinstance(name, str):
            raise CorruptPayloadError("corrupt header: the codec is named but the name is missing")
        try:
            return CODECS.get(name)
        except UnknownCodecError as exc:
            raise IncompatiblePayloadError(
                f"the payload was compressed with codec {name!r}, which is not registered here"
            ) from exc
    codec = codec_by_id(header.codec_id)
    if codec is None:
        raise IncompatiblePayloadError(
            f"payload codec id {header.codec_id} is unknown to this omnipickle release"
        )
    return codec


def _signing_keys(key: Any) -> list[bytes]:
    keys = list(key) if isinstance(key, (list, tuple)) else [key]
    if not keys:
        raise ValueError("key is an empty list: give at least one key")
    checked = []
    for one in keys:
        if not isinstance(one, (bytes, bytearray, memoryview)):
            raise TypeError(f"key must be bytes, not {type(one).__name__}")
        raw = bytes(one)
        if len(raw) < _MIN_KEY:
            raise ValueError(f"key must be at least {_MIN_KEY} bytes long, got {len(raw)}")
        checked.append(raw)
    return checked


def verify_signature(
    data_or_path: Source, key: bytes | bytearray | memoryview | Sequence[bytes]
) -> None:
    """Check a payload's HMAC-SHA256 signature without unpickling anything.

    Args:
        data_or_path: the payload's bytes, a path, or a binary file object.
        key: the signing key (bytes, at least 16 of them), or a list of keys (key rotation:
            the payload verifies if one of them signed it).

    Raises:
        SignatureError: the payload is not signed, is a plain pickle stream, or its signature
            does not verify under ``key``.
        TruncatedPayloadError, CorruptPayloadError: the payload is damaged (checked first:
            a damaged payload is reported as such, not as a bad signature).
        TypeError, ValueError: ``key`` is not bytes, or shorter than 16 bytes.
    """
    keys = _signing_keys(key)
    view = _read(data_or_path, "verify_signature")
    if not envelope.is_envelope(view):
        raise SignatureError("not an omnipickle payload: a plain pickle stream cannot be signed")
    header = envelope.parse_header(view)
    envelope.check_payload(header, view)
    if not header.signed:
        raise SignatureError("the payload is not signed")
    end = header.body_end
    tag = bytes(view[end : end + envelope.SIGNATURE_SIZE])
    matched = False
    for one in keys:  # every key is tried: the time taken says nothing about which matched
        matched |= hmac.compare_digest(hmac.new(one, view[:end], hashlib.sha256).digest(), tag)
    if not matched:
        raise SignatureError(
            "the payload's signature does not verify: wrong key, or the payload was altered"
        )


# --- the static scan -----------------------------------------------------------------------------


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


class _Sym:
    """A value on the simulated unpickler stack."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any = None) -> None:
        self.kind = kind  # "str", "bytes", "global", "made", "tuple", "other"
        self.value = value


_OTHER = _Sym("other")
_STRINGS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
     "BINUNICODE8"}
)  # fmt: skip
_BYTES = frozenset({"BINBYTES", "SHORT_BINBYTES", "BINBYTES8"})


class _Walker:
    """Simulates the unpickler's stack over ``pickletools.genops``; executes nothing."""

    def __init__(self, policy: _Policy, depth: int) -> None:
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

    # -- bookkeeping

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
            module, name = _fix_name(module, name, self.protocol or 0)
        use = self._use(module, name, pos)
        use["imports"] += 1
        full = f"{module}.{name}" if module is not None else f"<unresolved global at {pos}>"
        if use["reason"] is not None and full not in self.refused:
            self.refused.append(full)
        return _Sym("global", (module, name))

    def _call(self, target: _Sym, kind: str) -> None:
        if target.kind == "global":
            self.uses[target.value][kind] += 1

    # -- the walk

    def walk(self, data: bytes, start: int) -> int:
        """Walk one pickle stream from ``start``; return where it ended (after STOP)."""
        import pickletools

        file = io.BytesIO(data)
        file.seek(start)
        stack: list[_Sym] = []
        marks: list[int] = []
        memo: dict[int, _Sym] = {}
        self.protocol = None

        def pop() -> _Sym:
            if len(stack) <= (marks[-1] if marks else 0):
                raise CorruptPayloadError(f"damaged pickle stream: stack underflow at byte {pos}")
            return stack.pop()

        def pop_mark() -> list[_Sym]:
            if not marks:
                raise CorruptPayloadError(f"damaged pickle stream: no MARK for the opcode at {pos}")
            at = marks.pop()
            items = stack[at:]
            del stack[at:]
            return items

        def top() -> _Sym:
            if len(stack) <= (marks[-1] if marks else 0):
                raise CorruptPayloadError(f"damaged pickle stream: stack underflow at byte {pos}")
            return stack[-1]

        pos = start
        end = start
        arg: Any
        for op, arg, op_pos in pickletools.genops(file):
            pos = op_pos if op_pos is not None else pos
            name = op.name
            if self.protocol is None:
                # The protocol the stream declares first; no PROTO opcode means 0 or 1.
                self.first_protocol = int(arg) if name == "PROTO" else 0
                self.protocol = 0
            if name == "PROTO":
                # As the unpickler does: a later PROTO changes how names are mapped after it.
                self.protocol = int(arg)
            elif name == "STOP":
                pop()
                end = file.tell()
                break
            elif name == "MARK":
                marks.append(len(stack))
            elif name == "POP":
                if marks and marks[-1] == len(stack):
                    marks.pop()
                else:
                    pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(top())
            elif name in _STRINGS:
                stack.append(_Sym("str", arg))
            elif name in _BYTES:
                stack.append(_Sym("bytes", arg))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = top()
            elif name == "MEMOIZE":
                memo[len(memo)] = top()
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if int(arg) not in memo:
                    raise CorruptPayloadError(
                        f"damaged pickle stream: memo entry {arg} read at byte {pos} was never set"
                    )
                stack.append(memo[int(arg)])
            elif name == "GLOBAL":
                module, gname = self._global_arg(data, pos)
                stack.append(self._import(module, gname, pos))
            elif name == "STACK_GLOBAL":
                gname_sym, module_sym = pop(), pop()
                if module_sym.kind == "str" and gname_sym.kind == "str":
                    stack.append(self._import(module_sym.value, gname_sym.value, pos))
                else:
                    self.unresolved += 1
                    stack.append(self._import(None, None, pos))
            elif name in ("EXT1", "EXT2", "EXT4"):
                key = copyreg._inverted_registry.get(int(arg))  # type: ignore[attr-defined]
                if key is None:
                    raise CorruptPayloadError(
                        f"damaged pickle stream: extension code {arg} at byte {pos} is not "
                        f"registered (copyreg.add_extension)"
                    )
                stack.append(self._import(key[0], key[1], pos))
            elif name == "INST":
                pop_mark()
                module, gname = str(arg).split(" ", 1)
                made = self._import(module, gname, pos)
                self._call(made, "calls")
                stack.append(_Sym("made", made))
            elif name == "OBJ":
                items = pop_mark()
                if not items:
                    raise CorruptPayloadError(f"damaged pickle stream: OBJ with no class at {pos}")
                self._call(items[0], "calls")
                stack.append(_Sym("made", items[0]))
            elif name == "REDUCE":
                args, func = pop(), pop()
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
                stack.append(_Sym("made", made))
            elif name == "NEWOBJ":
                pop()
                cls = pop()
                self._call(cls, "calls")
                stack.append(_Sym("made", cls))
            elif name == "NEWOBJ_EX":
                pop()
                pop()
                cls = pop()
                self._call(cls, "calls")
                stack.append(_Sym("made", cls))
            elif name == "BUILD":
                pop()
                target = top()
                if target.kind == "made":
                    self._call(target.value, "builds")
                self._mutation(target, name, pos)
            elif name in ("APPEND", "SETITEM"):
                pop()
                if name == "SETITEM":
                    pop()
                self._mutation(top(), name, pos)
            elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
                pop_mark()
                self._mutation(top(), name, pos)
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                count = int(name[-1])
                items = [pop() for _ in range(count)][::-1]
                stack.append(_Sym("tuple", items))
            elif name == "EMPTY_TUPLE":
                stack.append(_Sym("tuple", []))
            elif name == "TUPLE":
                stack.append(_Sym("tuple", pop_mark()))
            elif name in ("LIST", "DICT", "FROZENSET"):
                pop_mark()
                stack.append(_OTHER)
            elif name == "PERSID":
                self.persistent_ids += 1
                self.refused.append(f"persistent id at byte {pos}")
                stack.append(_OTHER)
            elif name == "BINPERSID":
                pop()
                self.persistent_ids += 1
                self.refused.append(f"persistent id at byte {pos}")
                stack.append(_OTHER)
            elif name == "NEXT_BUFFER":
                self.buffers += 1
                stack.append(_OTHER)
            elif name in ("FRAME", "READONLY_BUFFER"):
                if name == "READONLY_BUFFER":
                    top()
            else:
                # Everything else pushes one plain value (numbers, None, bools, empty
                # containers, bytearrays): checked against pickletools' own stack effects.
                if op.stack_before or len(op.stack_after) != 1:  # pragma: no cover - guard
                    raise CorruptPayloadError(f"unexpected opcode {name} at byte {pos}")
                stack.append(_OTHER)
        else:
            raise TruncatedPayloadError(  # pragma: no cover - genops raises first
                "truncated pickle stream: it ends before its STOP opcode"
            )
        return end

    def _mutation(self, target: _Sym, opcode: str, pos: int) -> None:
        """An opcode that changes ``target``: refused if the target is a global itself."""
        if target.kind != "global":
            return
        module, name = target.value
        label = f"{module}.{name}" if module is not None else "<unresolved>"
        if label not in self.mutations:
            self.mutations.append(label)
        self.refused.append(f"{opcode} changes the global {label} at byte {pos}")

    def _global_arg(self, data: bytes, pos: int) -> tuple[str, str]:
        # Read the two lines as the C unpickler does (UTF-8), not as pickletools shows them.
        first = data.index(b"\n", pos + 1)
        second = data.index(b"\n", first + 1)
        try:
            return (
                data[pos + 1 : first].decode("utf-8"),
                data[first + 1 : second].decode("utf-8"),
            )
        except UnicodeDecodeError as exc:
            raise CorruptPayloadError(
                f"damaged pickle stream: the GLOBAL at byte {pos} is not UTF-8"
            ) from exc

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
            report = _scan_stream(memoryview(blob), self.policy, self.depth + 1, "pickle")
        except CorruptPayloadError as exc:
            self.nested.append(NestedBlob(pos, len(blob), _LOAD_DILL, None, str(exc)))
            self.refused.append(f"damaged nested blob at byte {pos}")
            return
        self.nested.append(NestedBlob(pos, len(blob), _LOAD_DILL, report))
        if self.policy.trusted:
            self.refused += [f"{name} (in the blob at byte {pos})" for name in report.refused]


_GENOPS_FAILURES = (ValueError, KeyError, IndexError, struct.error, OverflowError, EOFError)


def _walk_all(data: bytes, policy: _Policy, depth: int) -> tuple[_Walker, int, int, list[str]]:
    walker = _Walker(policy, depth)
    notes: list[str] = []
    streams = 0
    start = 0
    first_protocol: int | None = None
    while start < len(data):
        try:
            start = walker.walk(data, start)
        except (*_GENOPS_FAILURES, CorruptPayloadError) as exc:
            if streams == 0:
                if isinstance(exc, CorruptPayloadError):
                    raise
                raise _damaged(exc) from exc
            notes.append(
                f"{len(data) - start} bytes after the pickle stream are not a pickle "
                f"(loading ignores them)"
            )
            break
        streams += 1
        if first_protocol is None:
            first_protocol = walker.first_protocol
    return walker, streams, first_protocol if first_protocol is not None else 0, notes


def _damaged(exc: BaseException) -> CorruptPayloadError:
    message = str(exc)
    if any(word in message for word in ("remain", "exhausted", "no newline", "not enough")):
        return TruncatedPayloadError(f"truncated pickle stream: {message}")
    return CorruptPayloadError(f"damaged pickle stream: {message}")


def _backends_from(names: Iterable[str]) -> set[str]:
    found = set()
    for full in names:
        top = full.split(".", 1)[0]
        if top in ("cloudpickle", "dill"):
            found.add(top)
        elif full == _LOAD_DILL:
            found.add("dill")
    return found


def _ordered_backends(names: set[str]) -> tuple[str, ...]:
    known = [n for n in ("pickle", "cloudpickle", "dill") if n in names]
    return (*known, *sorted(names - set(known)))


def _scan_stream(
    stream: memoryview,
    policy: _Policy,
    depth: int,
    fmt: str,
    *,
    codec: str | None = None,
    size: int | None = None,
    info: Info | None = None,
    backends: Iterable[str] = (),
    by_value: bool = False,
) -> ScanReport:
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
    return ScanReport(
        format=fmt,
        codec=codec,
        protocol=protocol,
        size=len(stream) if size is None else size,
        stream_size=len(data),
        streams=streams,
        envelope=info,
        globals=globals_,
        backends=_ordered_backends(needed),
        by_value=code,
        nested=tuple(walker.nested),
        persistent_ids=walker.persistent_ids,
        out_of_band_buffers=walker.buffers,
        mutations=tuple(walker.mutations),
        refused=tuple(walker.refused),
        trusted=policy.trusted,
        notes=tuple(notes),
    )


def _decompress(codec: Codec, data: memoryview, size: int | None) -> memoryview:
    try:
        return memoryview(codec.decompress(data, size))
    except OmnipickleError:
        raise
    except Exception as exc:
        # Whatever a codec's package raises on bad input (lzma.LZMAError, OverflowError for
        # an absurd length...), for scan it means one thing: the compressed stream is damaged.
        raise CorruptPayloadError(
            f"the {codec.name}-compressed payload is damaged: {type(exc).__name__}: {exc}"
        ) from exc


def scan(
    data_or_path: Source, *, allow: Iterable[str] | None = (), trusted: bool = False
) -> ScanReport:
    """Report what a payload would import and call, without executing anything.

    Reads omnipickle payloads (the envelope is checked and the stream decompressed), plain
    pickle streams (several in a row, as ``pickle.dump`` writes them to one file), and pickle
    streams compressed whole. Every global the stream imports is listed with what the stream
    does with it, and checked against the rules of :func:`restricted_loads`: the report's
    ``refused`` lists what a restricted load would refuse, ``accepted`` says whether it would
    load. Dill blobs nested inside are scanned too.

    The verdict is conservative: a stream that changes a global itself, or that builds a
    global's name in a way that cannot be followed without running it, is reported as
    refused. Prefix patterns are checked by name only (a restricted load also checks that
    the object is defined under the prefix).

    Args:
        data_or_path: the payload's bytes, a path, or a binary file object (read from its
            current position to its end).
        allow: extra allowed globals, as for :func:`restricted_loads`.
        trusted: give the verdict of a trusted load (code by value accepted).

    Returns:
        A :class:`ScanReport`; ``str()`` of it is a table.

    Raises:
        TruncatedPayloadError: the payload is empty or ends early.
        CorruptPayloadError: the header, the checksum, the compression or the pickle stream
            is damaged.
        IncompatiblePayloadError: a format, flag or codec this release does not know.
        CodecNotInstalledError: the payload's codec needs a package that is not installed.
        TypeError, ValueError: the argument is of the wrong type, or ``allow`` is malformed.
    """
    policy = _Policy(allow, trusted)
    view = _read(data_or_path, "scan")
    if envelope.is_envelope(view):
        header = envelope.parse_header(view)
        payload = envelope.check_payload(header, view)
        codec = _envelope_codec(header)
        stream: memoryview = payload
        if codec is not None:
            stream = _decompress(codec, payload, header.raw_length)
        elif header.raw_length != header.stored_length:
            raise CorruptPayloadError(
                f"corrupt header: uncompressed payload of {header.stored_length} bytes but a "
                f"stream length of {header.raw_length}"
            )
        # Large buffers stored after the stream: data only, but a damaged one fails the load.
        for section in envelope.sections(header):
            envelope.check_section(section, view)
        from .format.describe import describe as info

        described = info(view)
        return _scan_stream(
            stream,
            policy,
            0,
            "omnipickle",
            codec=codec.name if codec is not None else None,
            size=len(view),
            info=described,
            backends=described.backends,
            by_value=header.by_value,
        )
    if len(view) < len(envelope.MAGIC) and envelope.MAGIC.startswith(view):
        raise TruncatedPayloadError(
            f"truncated payload: {len(view)} bytes, shorter than the "
            f"{envelope.HEADER_SIZE}-byte header"
        )
    found = codec_for_magic(view)
    if found is not None:
        return _scan_stream(
            _decompress(found, view, None),
            policy,
            0,
            "compressed pickle",
            codec=found.name,
            size=len(view),
        )
    # Formats other tools write that omnipickle only reads (compress_pickle's zip, joblib's).
    try:
        foreign = decompress_foreign(view)
    except OmnipickleError:
        raise
    except Exception as exc:
        # As in _decompress: whatever the format's decoder raises means damaged data.
        raise CorruptPayloadError(f"the compressed data is damaged: {exc}") from exc
    if foreign is not None:
        return _scan_stream(memoryview(foreign), policy, 0, "compressed pickle", size=len(view))
    return _scan_stream(view, policy, 0, "pickle")


parse_allow = _parse_allow  # the public name (the security package split keeps it)
