"""The backend registry.

A backend turns objects into a pickle stream and back (see :class:`Backend`). Built-ins are
recorded by dotted path and imported on first use, so ``import omnipickle`` imports neither
cloudpickle nor dill.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._registry import Entry, Registry
from ..errors import BackendNotInstalledError, UnknownBackendError
from .base import Backend, Pickled

__all__ = ["Backend", "Pickled", "backends", "get_backend", "register_backend"]


def _check(impl: object) -> None:
    if not isinstance(impl, Backend):
        raise TypeError(
            f"a backend must be an instance of omnipickle.backends.Backend, "
            f"not {type(impl).__name__}"
        )


REGISTRY: Registry[Backend] = Registry(
    "backend", UnknownBackendError, BackendNotInstalledError, _check
)
REGISTRY.register("auto", "omnipickle.backends.auto:AUTO")
REGISTRY.register("pickle", "omnipickle.backends.pickle_backend:PICKLE")
REGISTRY.register(
    "cloudpickle", "omnipickle.backends.cloudpickle_backend:CLOUDPICKLE", requires="cloudpickle"
)
REGISTRY.register("dill", "omnipickle.backends.dill_backend:DILL", requires="dill")

# The backends whose packages a stream may need at load time, and the bit each has in the
# envelope. Other (registered) names are written out in the envelope's extra field.
BUILTIN_BITS = {"pickle": 1, "cloudpickle": 2, "dill": 4}
LOADER_IDS = {"pickle": 0, "cloudpickle": 1, "dill": 2}
PACKAGES = {"cloudpickle": "cloudpickle", "dill": "dill"}


def register_backend(name: str, backend: Backend | str, *, replace: bool = False) -> None:
    """Register a backend under ``name``.

    Args:
        name: the name callers pass as ``backend=``; an identifier.
        backend: a :class:`Backend` instance, or a ``"package.module:attribute"`` path imported
            on first use.
        replace: allow replacing an existing registration (built-ins included).

    Raises:
        ValueError: the name is taken (and ``replace`` is false) or is not an identifier.
        TypeError: ``backend`` is not a :class:`Backend`.
    """
    REGISTRY.register(name, backend, replace=replace)


def backends() -> Mapping[str, Entry[Backend]]:
    """A read-only mapping of the registered backend names to their entries."""
    return REGISTRY.view()


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``.

    Raises:
        UnknownBackendError: no backend has that name (the message lists those there are).
        BackendNotInstalledError: the backend's package is not installed.
    """
    return REGISTRY.get(name)
