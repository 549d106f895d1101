"""The versions of the backend packages a payload was written with.

Code by value names the backends' own functions (cloudpickle's and dill's reconstructors), so a
payload can depend on the version of the package that wrote it. The writer records the
versions in the header's extra field (``"versions"``: ``{package: version}``), ``info`` shows
them, and a load that fails inside such a package's code, read by another version of it, says
which version wrote the payload and which one read it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from .._registry import Remembered
from ..backends import REGISTRY as BACKENDS
from ..backends import package_for
from ..errors import CorruptPayloadError
from .header import Header

__all__ = ["backend_versions", "installed_version", "note_version_change", "recorded_versions"]

# Read once per process: the version of an imported package does not change under it.
_INSTALLED: dict[str, str | None] = {}


def installed_version(package: str) -> str | None:
    """The installed version of the distribution ``package``, or ``None`` if it is missing."""
    try:
        return _INSTALLED[package]
    except KeyError:
        pass
    # The module's own __version__ is free once a payload needed it (it is imported by then);
    # importlib.metadata, which reads the installation's records, is the fallback.
    version = getattr(sys.modules.get(package), "__version__", None)
    if not isinstance(version, str):
        from importlib import metadata

        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = None
    _INSTALLED[package] = version
    return version


def backend_versions(uses: Iterable[str]) -> dict[str, str]:
    """``{package: version}`` of the packages the backends in ``uses`` need (the standard
    library's pickle needs none; a backend without a package is left out)."""
    if isinstance(uses, frozenset):  # what a dump reports: the same few sets, again and again
        return dict(_REMEMBERED(uses))
    return _backend_versions(uses)


def _backend_versions(uses: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in uses:
        package = None if name == "pickle" else package_for(name)
        if package is not None:
            version = installed_version(package)
            if version is not None:
                found[package] = version
    return found


_REMEMBERED: Remembered[frozenset[str], dict[str, str]] = Remembered(BACKENDS, _backend_versions)


def recorded_versions(header: Header) -> dict[str, str]:
    """The versions the header says the payload was written with (``{}`` when it says none:
    plain data, and payloads written before versions were recorded).

    Raises:
        CorruptPayloadError: the field is not a map of package names to versions.
    """
    found = header.extra.get("versions", {})
    if not isinstance(found, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in found.items()
    ):
        raise CorruptPayloadError(
            "corrupt header: the backend versions are not a map of package names to versions"
        )
    return found


def note_version_change(exc: BaseException, header: Header) -> None:
    """Add a note to ``exc``, raised while loading the payload ``header`` describes, naming the
    versions that wrote and read it, when it was raised by the code of a backend package whose
    version differs from the one the payload was written with.

    The exception keeps its type (what pickle would raise stays catchable as such); the note
    (:pep:`678`) is shown with its traceback.
    """
    if "versions" not in header.extra:  # plain data, old payloads: nothing to compare
        return
    try:
        recorded = recorded_versions(header)
    except CorruptPayloadError:
        return  # the load failed for its own reason; a bad field is not worth hiding it
    changed = {
        package: (wrote, installed_version(package))
        for package, wrote in recorded.items()
        if installed_version(package) != wrote
    }
    if not changed or not _raised_by(exc, changed):
        return
    for package, (wrote, reads) in changed.items():
        exc.add_note(
            f"this payload was written with {package} {wrote} and is read with "
            f"{package} {reads or '(not installed)'}: its code by value names {package}'s own "
            f"functions, which may have changed between these versions; load it where "
            f"{package} {wrote} is installed, or dump it again with this version"
        )


def _raised_by(exc: BaseException, packages: Iterable[str]) -> bool:
    """Whether ``exc`` came from one of ``packages``: a module of theirs that cannot be
    imported, or an error raised in their code or by the unpickler itself (a name it could not
    find, a reconstructor that refused the arguments the stream gives it: no Python frame below
    omnipickle's own)."""
    prefixes = tuple(packages)
    if isinstance(exc, ImportError):  # its module is known: another package's is not theirs
        return _within(exc.name, prefixes)
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_globals.get("__name__")
    if _within(where, prefixes):
        return True
    # A reconstructor omnipickle itself provides failed in its own code: not a backend's doing.
    return _within(where, ("omnipickle",)) and not _within(where, ("omnipickle._reconstruct",))


def _within(module: object, prefixes: tuple[str, ...]) -> bool:
    return isinstance(module, str) and any(
        module == prefix or module.startswith(prefix + ".") for prefix in prefixes
    )
