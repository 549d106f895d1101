"""The backends as table rows: every fact about a backend, in one place.

A row is read without importing the backend (cloudpickle and dill stay unimported until a payload
needs them). The envelope bit and the loader id are the wire format (``docs/format.md``): a
payload written by any release names its backends by these numbers, so they never change.
"""

from __future__ import annotations

from .._registry import Record

__all__ = ["BUILTIN_ROWS", "BackendRow", "builtin_row"]


class BackendRow(Record):
    """Everything about one backend.

    Attributes:
        name: the name callers pass as ``backend=``.
        target: where the implementation is: a ``"package.module:attribute"`` path imported on
            first use, or the :class:`~omnipickle.backends.Backend` instance itself.
        package: the pip distribution the backend needs, or ``None``.
        bit: the bit that says, in the envelope, that a payload needs this backend to load, or
            ``None``: the name is then written out in the header's extra field.
        loader_id: the envelope's id for this backend as the one whose ``loads`` reads the
            stream, or ``None`` (named in the extra field).
        streams: whether ``dumps`` takes ``sink=`` and writes into it as it goes.
        supports_drop: whether ``dumps`` takes ``on_unpicklable="drop"``.
        global_prefixes: the modules (and their submodules) whose globals this backend's
            payloads name, beyond the standard library and the objects themselves: what a
            restricted loader or a scan must know to tell the backend's machinery from the data.
    """

    __slots__ = (  # noqa: RUF023 - the fields, in order
        "name",
        "target",
        "package",
        "bit",
        "loader_id",
        "streams",
        "supports_drop",
        "global_prefixes",
    )
    name: str
    target: object
    package: str | None
    bit: int | None
    loader_id: int | None
    streams: bool
    supports_drop: bool
    global_prefixes: tuple[str, ...]

    def __init__(
        self,
        name: str,
        target: object,
        package: str | None = None,
        bit: int | None = None,
        loader_id: int | None = None,
        streams: bool = False,
        supports_drop: bool = False,
        global_prefixes: tuple[str, ...] = (),
    ) -> None:
        self._set(name, target, package, bit, loader_id, streams, supports_drop, global_prefixes)


# Found by dumping a lambda, a class, a code object and a weak reference with each backend and
# reading the globals with pickletools. cloudpickle before 3.0 wrote its reducers as
# ``cloudpickle.cloudpickle_fast.*``; dill writes a few through ``dill._shims``. auto's payloads
# name what the backends they used name (their bits say which), plus omnipickle's reconstructors.
BUILTIN_ROWS: tuple[BackendRow, ...] = (
    BackendRow(
        "auto",
        "omnipickle.backends.auto:AUTO",
        streams=True,
        supports_drop=True,
        global_prefixes=("omnipickle._reconstruct", "omnipickle._rebuild"),
    ),
    BackendRow(
        "pickle", "omnipickle.backends.pickle_backend:PICKLE", bit=1, loader_id=0, streams=True
    ),
    BackendRow(
        "cloudpickle",
        "omnipickle.backends.cloudpickle_backend:CLOUDPICKLE",
        package="cloudpickle",
        bit=2,
        loader_id=1,
        global_prefixes=("cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast"),
    ),
    BackendRow(
        "dill",
        "omnipickle.backends.dill_backend:DILL",
        package="dill",
        bit=4,
        loader_id=2,
        global_prefixes=("dill._dill", "dill._shims"),
    ),
)


def builtin_row(name: str) -> BackendRow:
    """The built-in row named ``name`` (``KeyError`` if there is none)."""
    for row in BUILTIN_ROWS:
        if row.name == name:
            return row
    raise KeyError(name)
