"""What restricted loading may import: the allow-lists, allow entries, and the policy object.

Why the default set is safe: every entry is either a data type whose constructor and
``__setstate__`` only build a value from their arguments, or a reconstructor that only combines
objects the same allow-list already admitted (see the notes on ``copyreg`` below). Anything that
can import a module, look up an attribute by name (``getattr``), evaluate a string, open a file
or build code is left out.

The unpickler (:mod:`.unpickler`) and the static scan (:mod:`.scan`) both decide through one
:class:`Policy`, so a scan's verdict and a restricted load's refusal cannot drift apart.
"""

from __future__ import annotations

import _compat_pickle
import re
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import UnsafePayloadError

__all__ = [
    "ARGUMENT_RULES",
    "DEFAULT_ALLOW",
    "TRUSTED_ALLOW",
    "Policy",
    "fix_name",
    "parse_allow",
    "read_allow",
]

_PATHS = ("PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath", "WindowsPath")

DEFAULT_ALLOW: frozenset[str] = frozenset(
    {
        # Built-in data types, under the names pickle writes for them (protocols 0-2 write
        # ``__builtin__.set`` and so on; fix_imports maps those to ``builtins`` first).
        # Why a hostile argument is harmless: each builds a value from its arguments and runs
        # no code of the payload's choosing (only methods of objects this list admitted). What
        # they cost is bounded by the budget (budget.py: the arguments' expanded size is
        # counted before the call; bytes(n)/bytearray(n) count n), and str/bytes/bytearray
        # with an encoding take only plain text codecs (Policy.check_call: a codec such as
        # punycode is quadratic). Why a BUILD on them is harmless: the classes themselves are
        # never changed (the unpickler refuses BUILD/SETITEM... on anything find_class handed
        # out), and their instances have no __setstate__ and no __dict__ (BUILD fails), or, for
        # subclasses, an instance __dict__ that only holds data.
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
                "int",  # int(Decimal("1e999999999")) is refused by the budget (budget.py)
                "list",
                "object",  # object() with arguments raises; it has no state to BUILD
                "range",  # lazy: its length costs nothing until walked, and walks are counted
                "set",
                "slice",  # lazy, like range
                "str",
                "tuple",
                "Ellipsis",  # constants: calling them raises, BUILD on them is refused
                "NotImplemented",
            )
        ),
        # Protocols 0-2 write bytes as codecs.encode(text, "latin1"); restricted loading
        # substitutes a function that accepts exactly that (Policy.check_call): its output is
        # no longer than its input. Other codecs are refused (punycode is quadratic, and
        # "rot13" or "zlib" are not what pickle writes).
        "_codecs.encode",
        "codecs.encode",
        # copyreg's helpers for plain objects. _reconstructor(cls, base, state) calls
        # base.__new__(cls, state) and base.__init__(obj, state); __newobj__(cls, *args) and
        # __newobj_ex__(cls, args, kwargs) call cls.__new__. None of them can name anything
        # by itself: cls and base are objects already on the unpickler's stack, which got
        # there through this same find_class (or as results of allowed callables, none of
        # which returns a class it was not given). So they only ever combine allowed classes,
        # which the payload could call directly anyway; they add no reach. The budget and
        # Policy.check_call look through them at the class they call. The numpy stand-ins are
        # not classes: cls.__new__ on them raises.
        "copyreg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        # dill's name for type(None): calling it returns None, and None has no state.
        "__builtin__.NoneType",
        # The standard library's value types. Their constructors validate their arguments in
        # C or plain Python and run no code of the payload's (the containers call only methods
        # of admitted objects, counted by the budget). BUILD on their instances sets instance
        # attributes at most (OrderedDict, defaultdict, Counter, deque subclasses), or sets the
        # slots of a UUID or path to other values: a strange value, no reach (nothing runs).
        # defaultdict's factory is an admitted callable, called by the caller's own lookups.
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.deque",
        "collections.Counter",
        "datetime.date",  # the C constructors check the bytes form's length and ranges
        "datetime.datetime",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",  # a huge exponent is stored, not computed (conversions: budget)
        "fractions.Fraction",  # only the forms pickle writes (Policy.check_call): "n/d", ints
        "uuid.UUID",
        *(f"pathlib.{name}" for name in _PATHS),
        # Python 3.13 moved the path classes to pathlib._local, and pickles name them there.
        *(f"pathlib._local.{name}" for name in _PATHS),
        # numpy arrays, dtypes and scalars, under numpy 1.x (numpy.core) and 2.x (numpy._core)
        # names. numpy's own reconstructors trust their input (a dtype's state sets offsets and
        # flags as given; ndarray() takes any buffer and strides), so these names are never
        # answered with numpy's objects: restricted loading substitutes validating constructors
        # of its own (numpy_safe.py) that rebuild only a closed set of dtypes (no objects) and
        # arrays whose bytes match shape and dtype, and a BUILD on a numpy object makes a new,
        # validated one instead of calling numpy's __setstate__. Listing these names imports
        # nothing: numpy is imported only when a payload names one of them.
        "numpy.ndarray",
        "numpy.dtype",
        *(
            f"numpy.{core}.{name}"
            for core in ("core", "_core")
            for name in ("multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer")
        ),
        # omnipickle's placeholders. dropped_resource(i) is None or the live object the caller
        # itself passed to loads(..., resources=...), which no opcode may then change;
        # restore_state(obj, state) sets the state of an object the stream built, like BUILD
        # (restricted loading refuses it on a global, an object the caller handed in, or a
        # numpy object).
        "omnipickle._reconstruct.dropped_resource",
        "omnipickle._reconstruct.restore_state",
        # memory_view(data, format, shape) casts a memoryview over bytes or a bytearray of the
        # stream (anything else is refused) to a layout memoryview.cast checks against the data's
        # length: no copy, nothing called. dict_view(mapping, kind) calls the built-in
        # dict.keys/values/items (or OrderedDict's) on a dict of the stream, never a subclass's
        # method, and refuses any other kind. builtin_type (type objects), descriptor (an
        # attribute of a class, like getattr) and array_state (numpy's __setstate__, which the
        # validating constructors are there to avoid) are not here: see TRUSTED_ALLOW.
        "omnipickle._rebuild.memory_view",
        "omnipickle._rebuild.dict_view",
        # omnipickle's recreated synchronization primitives: each makes a fresh lock,
        # semaphore, event... from ints and flags (make_bounded_semaphore's arguments are
        # checked: see the unpickler). make_condition(lock) only stores its argument.
        # make_barrier takes an action callable, but that action is an object from the same
        # stream, so it can only be something this allow-list admitted, which the payload
        # could have called at load time anyway; the barrier only calls it later, with no
        # arguments. A BUILD on a Condition or Barrier sets instance attributes to admitted
        # objects: no reach. load_dill (runs dill on a blob), reopen_file (opens files) and
        # std_stream (hands out the process's own sys.stdout...) are not here: see
        # TRUSTED_ALLOW.
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
        "marshal.loads",  # code objects by value, as the auto backend writes them
        "omnipickle._rebuild.function",  # functions by value, as the auto backend writes them
        "omnipickle._reconstruct.reopen_file",
        "omnipickle._reconstruct.make_thread",  # takes a class and a target: code
        "threading.Thread",
        "omnipickle._reconstruct.std_stream",
        # A bound method whose name does not lead back (the counterpart of getattr above), and
        # an lru_cache'd function by value.
        "omnipickle._reconstruct.make_method",
        "omnipickle._reconstruct.make_lru_cache",
        # Type objects, class attributes (like getattr) and numpy's __setstate__.
        "omnipickle._rebuild.builtin_type",
        "omnipickle._rebuild.descriptor",
        "omnipickle._rebuild.array_state",
    }
)
"""What ``trusted=True`` accepts on top of the allow-list: by-value code and its building blocks.

Entries ending in ``.*`` cover a whole package. These names can build and run code, import
modules and open files: pass ``trusted=True`` only for a payload whose signature verified.
"""


_CODE_REASON = (
    "it rebuilds code serialized by value (or is a part of such code), which restricted loading "
    "accepts only from a payload whose signature verified (trusted=True)"
)


# --- allow entries -----------------------------------------------------------------------------


def _check_dotted(entry: str, text: str) -> None:
    if not text or not all(part.isidentifier() for part in text.split(".")):
        raise ValueError(
            f"invalid allow entry {entry!r}: expected a dotted name 'package.module.Name' or a "
            f"prefix pattern 'package.*' (every part a Python identifier)"
        )


def read_allow(allow: Any) -> Any:
    """``allow`` read into a tuple once, if it is an iterable other than a string, so that a
    generator or an iterator gives every later parse the same entries; anything else as it
    is, for :func:`parse_allow` to accept (``None``) or refuse."""
    if allow is None or type(allow) is tuple or isinstance(allow, (str, bytes, bytearray)):
        return allow
    try:
        return tuple(allow)
    except TypeError:
        return allow


def parse_allow(allow: Iterable[str] | None) -> tuple[frozenset[str], tuple[str, ...]]:
    """Validate an ``allow=`` argument and split it into exact names and prefixes.

    Args:
        allow: exact dotted names (``"pkg.module.Name"``) and prefix patterns (``"pkg.*"``),
            or ``None`` for none.

    Returns:
        ``(exact, prefixes)``: the exact names, and the prefixes without their ``.*``
        (duplicates removed, in the order given).

    Raises:
        TypeError: ``allow`` is a single string, not iterable, or holds a non-str entry.
        ValueError: an entry is malformed (empty, whitespace, ``"*"``, ``"pkg*"``, an empty
            dotted part, a bare module name).
    """
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


def _under(full: str, prefixes: Iterable[str]) -> str | None:
    for prefix in prefixes:
        if full.startswith(prefix + "."):
            return prefix
    return None


# --- the policy --------------------------------------------------------------------------------

_TRUSTED_EXACT = frozenset(e for e in TRUSTED_ALLOW if not e.endswith(".*"))
# Parsed allow= arguments, by (allow, trusted); bounded, so that a caller building many
# different allow-lists keeps no more than this many.
_Parsed = tuple[tuple[str, ...], frozenset[str], frozenset[str], tuple[str, ...]]
_PARSED: dict[tuple[tuple[str, ...], bool], _Parsed] = {}
_PARSED_MAX = 256


def _plain_strs(entries: tuple[Any, ...]) -> bool:
    return all(type(entry) is str for entry in entries)


class Policy:
    """One set of rules: what a restricted load may import, and how it is checked.

    Args:
        allow: extra entries, as for :func:`parse_allow`; :data:`DEFAULT_ALLOW` is always
            included.
        trusted: also accept code serialized by value (:data:`TRUSTED_ALLOW`).

    Attributes:
        allow: the user's entries, normalized (exact names sorted, then ``"prefix.*"``).
        trusted: whether code by value is accepted.
        user_exact: the user's exact names.
        exact: every exact name accepted (defaults, user's, and trusted ones if trusted).
        prefixes: the user's prefixes, without ``.*``.

    Raises:
        TypeError: ``allow`` is not an iterable of str, or ``trusted`` is not a bool.
        ValueError: an ``allow`` entry is malformed.
    """

    __slots__ = ("allow", "exact", "prefixes", "trusted", "user_exact")

    def __init__(self, allow: Iterable[str] | None = (), trusted: bool = False) -> None:
        if not isinstance(trusted, bool):
            raise TypeError(f"trusted must be a bool, not {type(trusted).__name__}")
        # A restricted load builds one Policy per call: the same allow= (a tuple of plain str,
        # as callers write it) is parsed once.
        key = (allow, trusted) if type(allow) is tuple and _plain_strs(allow) else None
        parts: _Parsed | None = _PARSED.get(key) if key is not None else None
        if parts is None:
            parts = self._parse(allow, trusted)
            if key is not None and len(_PARSED) < _PARSED_MAX:
                _PARSED[key] = parts
        self.allow: tuple[str, ...] = parts[0]
        self.user_exact: frozenset[str] = parts[1]
        self.exact: frozenset[str] = parts[2]
        self.prefixes: tuple[str, ...] = parts[3]
        self.trusted = trusted

    @staticmethod
    def _parse(allow: Iterable[str] | None, trusted: bool) -> _Parsed:
        user_exact, user_prefixes = parse_allow(allow)
        normalized = (*sorted(user_exact), *(f"{p}.*" for p in user_prefixes))
        exact = DEFAULT_ALLOW | user_exact
        if trusted:
            exact |= _TRUSTED_EXACT
        return normalized, user_exact, exact, user_prefixes

    def check(self, module: str, name: str) -> tuple[str | None, str | None]:
        """``(reason, prefix)``: why ``module.name`` is refused (``None``: accepted).

        Args:
            module: the global's module, after :func:`fix_name`.
            name: its (possibly dotted) name in the module.

        Returns:
            The reason it is refused, or ``None``; and the pattern (a user's ``allow=`` prefix,
            or a trusted package) that accepted it, if one did: the module must then be under
            that prefix, and the object found must be defined under it too (see
            :meth:`check_origin`).
        """
        full = f"{module}.{name}"
        if full in self.exact:
            return None, None
        parts = [*module.split("."), *name.split(".")]
        if not all(part.isidentifier() for part in parts):
            return "it is not a valid dotted name", None
        code = full in TRUSTED_ALLOW
        prefix = _under(full, _TRUSTED_PREFIXES)
        if prefix is not None:
            code = True
        if code and self.trusted:
            # By-value code needs its packages' dunder attributes (Enum.__new__...).
            reason = self._check_prefixed(module, name, prefix, True) if prefix else None
            return reason, prefix
        prefix = _under(full, self.prefixes)
        if prefix is not None:
            return self._check_prefixed(module, name, prefix, False), prefix
        if code:
            return _CODE_REASON, None
        return (
            f"it is not in the allow-list; if you trust this payload, pass allow=({full!r},)"
        ), None

    @staticmethod
    def _check_prefixed(module: str, name: str, prefix: str, dunders: bool) -> str | None:
        parts = module.split(".") if dunders else (*module.split("."), *name.split("."))
        if any(_is_dunder(part) for part in parts):
            return (
                f"it reaches a dunder module or attribute, which the pattern {prefix}.* does "
                f"not cover; allow it by its exact name if you mean it"
            )
        if not (
            module == prefix or module.startswith(prefix + ".") or prefix.startswith(module + ".")
        ):
            return f"its module {module} is not the package {prefix} or one of its modules"
        return None

    @staticmethod
    def may_import(module: str) -> str | None:
        """Why restricted loading must not import ``module`` (``None``: it may).

        Importing runs the module's code: ``numpy.f2py.__main__`` runs a command-line program,
        ``pkg.__init__`` runs a package's ``__init__`` a second time. A module with a dunder part
        (``__main__``, ``__init__``...) is only ever looked up among those already imported.

        Args:
            module: a dotted module name the payload names.
        """
        if any(_is_dunder(part) for part in module.split(".")):
            return (
                f"importing {module} would run its code (a __main__ or other dunder module), "
                f"and it is not imported yet"
            )
        return None

    def check_origin(self, full: str, prefix: str, obj: Any) -> None:
        """Refuse an object a prefix pattern reached that is not defined under that prefix.

        ``pkg.*`` trusts what ``pkg`` defines, not everything its modules import: without this,
        ``pkg.mod.system`` after ``from os import system`` in ``pkg/mod.py`` would pass, and so
        would ``dill._dill.os.system`` for the trusted package ``dill``. The object's
        ``__module__`` must be ``prefix`` or under it, and, when the object has a qualified
        name, looking that name up in its module must give this very object.

        Args:
            full: the global's dotted name.
            prefix: the pattern that accepted it (without ``.*``).
            obj: the object the name resolved to.

        Raises:
            UnsafePayloadError: ``obj`` is a module (except a trusted package's own modules,
                with ``trusted=True``), or is defined outside ``prefix``.
        """
        if isinstance(obj, types.ModuleType):
            name = obj.__name__
            if self.trusted and prefix in _TRUSTED_PREFIXES and _under(name, (prefix,)):
                return  # dill names its own modules (dill._dill) as values
            raise UnsafePayloadError(
                f"restricted loading refused the global {full}: it is a module, and prefix "
                f"patterns only cover what modules define"
            )
        origin = getattr(obj, "__module__", None)
        if not isinstance(origin, str):
            origin = None
        qualname = getattr(obj, "__qualname__", None)
        if not isinstance(qualname, str):
            qualname = None
        where = f"{origin}.{qualname}" if qualname is not None else origin or ""
        if origin is not None and (prefix in (origin, where) or where.startswith(prefix + ".")):
            found = None if qualname is None else _defined_as(origin, qualname)
            if (
                qualname is None
                or found is obj
                or (isinstance(obj, types.MethodType) and found == obj)
            ):
                return
            raise UnsafePayloadError(
                f"restricted loading refused the global {full}: it claims to be "
                f"{origin}.{qualname}, which is another object"
            )
        raise UnsafePayloadError(
            f"restricted loading refused the global {full}: it is defined in "
            f"{origin or 'an unknown module'}, not under {prefix}.*; allow it by its exact "
            f"name if you trust it"
        )

    @staticmethod
    def check_call(name: str, args: tuple[Any, ...] | None, kwargs: Any = None) -> str | None:
        """Why calling the allowed global ``name`` with these arguments is refused (``None``: ok).

        A few allowed globals accept only the arguments pickle itself writes for them
        (:data:`ARGUMENT_RULES`); every other allowed global accepts any arguments (the
        unpickler's budget bounds what they cost). Restricted loading asks this before each
        call, and :func:`~omnipickle.security.scan` with the arguments it can see statically.

        Args:
            name: the dotted name of what is called: the global itself, or, for copyreg's
                helpers and NEWOBJ, the class they call (``builtins.str`` for
                ``copyreg.__newobj__(str, ...)``).
            args: the positional arguments, or ``None`` when they are not known (a static
                scan that cannot compute them): refused when ``name`` has a rule.
            kwargs: the keyword arguments (``__newobj_ex__``), if any.

        Returns:
            The reason the call is refused, or ``None``.
        """
        rule = ARGUMENT_RULES.get(name)
        if rule is None:
            return None
        if args is None:
            return f"{name} accepts only some arguments, and these are not known"
        return rule(args, dict(kwargs) if kwargs else {})


def _defined_as(module: str, qualname: str) -> Any:
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


# --- the arguments a few allowed globals accept -------------------------------------------------

_LATIN1 = frozenset({"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"})
# Text codecs whose cost is linear in their input (punycode and idna are not, and the
# bytes-to-bytes codecs are not text).
_TEXT_CODECS = frozenset(
    {"utf-8", "utf8", "utf_8", "ascii", "us-ascii", "utf-16", "utf-32", *_LATIN1}
)
_FRACTION = re.compile(r"[+-]?[0-9]{1,5000}(?:/[0-9]{1,5000})?")
_MAX_FRACTION_BITS = 1 << 16


def _encode_rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    if kwargs or not 1 <= len(args) <= 3 or type(args[0]) is not str:
        return "only codecs.encode(text, 'latin1'), as pickle writes bytes, is accepted"
    encoding = args[1] if len(args) > 1 else "utf-8"
    errors = args[2] if len(args) > 2 else "strict"
    if encoding not in _LATIN1 or errors != "strict":
        return (
            f"only codecs.encode(text, 'latin1'), as pickle writes bytes, is accepted, not "
            f"the codec {encoding!r}"
        )
    return None


def _text_rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    encoding = args[1] if len(args) > 1 else kwargs.get("encoding")
    errors = args[2] if len(args) > 2 else kwargs.get("errors", "strict")
    if len(args) > 3 or set(kwargs) - {"encoding", "errors"}:
        return "too many arguments"
    if encoding is None and "errors" not in kwargs and len(args) < 3:
        return None
    if encoding not in _TEXT_CODECS or errors != "strict":
        return f"only plain text codecs ({', '.join(sorted(_TEXT_CODECS))}) are accepted"
    return None


def _fraction_rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    # Fraction.__reduce__ writes (str(self),): "n" or "n/d". Fraction("1e999999999"),
    # Fraction(Decimal(...)) or Fraction of two huge ints would compute for minutes.
    if kwargs or not 1 <= len(args) <= 2:
        pass
    elif len(args) == 1 and type(args[0]) is str:
        if _FRACTION.fullmatch(args[0]):
            return None
    elif all(type(a) is int and a.bit_length() <= _MAX_FRACTION_BITS for a in args):
        return None
    return "only Fraction('n/d') and Fraction(int, int) of moderate size are accepted"


ARGUMENT_RULES: dict[str, Callable[[tuple[Any, ...], dict[str, Any]], str | None]] = {
    "_codecs.encode": _encode_rule,
    "codecs.encode": _encode_rule,
    "builtins.str": _text_rule,
    "builtins.bytes": _text_rule,
    "builtins.bytearray": _text_rule,
    "fractions.Fraction": _fraction_rule,
}
"""Allowed globals that accept only some arguments: name -> rule(args, kwargs) -> reason."""


# --- the names a payload's globals are checked under ----------------------------------------------

_DILL_NAMES = frozenset({("__builtin__", "NoneType"), ("__builtin__", "__main__")})


def fix_name(module: str, name: str, protocol: int) -> tuple[str, str]:
    """The name a global is looked up and checked under, as the unpickler resolves it.

    dill's aliases are kept, then Python 2 names are mapped to Python 3 ones as pickle's own
    ``find_class`` does, for protocols < 3 only.

    Args:
        module: the module the stream names.
        name: the name the stream names.
        protocol: the protocol in force where the stream names it.

    Returns:
        ``(module, name)`` after mapping.
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
