"""Importing omnipickle has no side effects (checked in a fresh interpreter)."""

from __future__ import annotations

import sys

import pytest

import omnipickle
from conftest import check_python

_SNAPSHOT = """
import copyreg, pickle, sys, warnings
# Standard-library modules may register things when *they* are imported (typing registers
# reducers in copyreg on Python 3.13): import the ones omnipickle uses first, so that only
# omnipickle's own effects are compared.
for name in {stdlib}:
    __import__(name)
before = (dict(copyreg.dispatch_table), dict(copyreg._extension_registry),
          list(warnings.filters), pickle.Pickler, pickle.Unpickler, pickle.dumps, pickle.loads,
          dict(getattr(pickle._Pickler, 'dispatch', {})))
import omnipickle
after = (dict(copyreg.dispatch_table), dict(copyreg._extension_registry),
         list(warnings.filters), pickle.Pickler, pickle.Unpickler, pickle.dumps, pickle.loads,
         dict(getattr(pickle._Pickler, 'dispatch', {})))
print(before == after)
print(sorted(m for m in ('cloudpickle', 'dill', 'zstandard', 'lz4', 'numpy') if m in sys.modules))
"""


def _snapshot() -> list[str]:
    found = check_python(
        code="import sys\nbefore = set(sys.modules)\nimport omnipickle\n"
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('omnipickle')))"
    )
    stdlib = [m for m in eval(found) if m.split(".")[0] in sys.stdlib_module_names]
    return check_python(code=_SNAPSHOT.replace("{stdlib}", repr(stdlib))).split("\n")


def test_import_changes_no_global_state_of_pickle_copyreg_or_warnings() -> None:
    assert _snapshot()[0] == "True"


def test_import_imports_no_optional_package() -> None:
    assert _snapshot()[1] == "[]"


# What ``import dill`` is known to write into (dill/__init__.py calls extend()), and what any
# package could: compared before and after omnipickle uses dill, in a fresh interpreter.
_STDLIB_STATE = """
import copyreg, pickle, sys
def stdlib_state():
    c_table = getattr(pickle.Pickler, "dispatch_table", None)
    return (
        dict(pickle._Pickler.dispatch),
        dict(copyreg.dispatch_table),
        dict(copyreg._extension_registry),
        dict(c_table) if isinstance(c_table, dict) else c_table,
    )
"""

_DILL_TRIGGERS = {
    "auto dumps a weak reference": (
        "import weakref\n"
        "class A: pass\n"
        "a = A()\n"
        "out = omnipickle.loads(omnipickle.dumps([a, weakref.ref(a)]))\n"
        "assert out[1]() is out[0]\n"
        "assert 'dill' in omnipickle.info(omnipickle.dumps(weakref.ref(a))).backends\n"
    ),
    "dill dumps": (
        "f = lambda x: x + 1\n"
        "assert omnipickle.loads(omnipickle.dumps(f, backend='dill'))(1) == 2\n"
    ),
    "dill loads": "assert omnipickle.loads(bytes.fromhex(PAYLOAD)) == {'k': [1, 2]}\n",
    "a dill blob inside an auto stream loads": (
        "from omnipickle._reconstruct import load_dill\n"
        "assert load_dill(bytes.fromhex(RAW)) == {'k': [1, 2]}\n"
    ),
}


def _stdlib_unchanged_after(trigger: str, *, setup: str = "import omnipickle\n") -> str:
    payload = omnipickle.dumps({"k": [1, 2]}, backend="dill")
    raw = omnipickle.dumps({"k": [1, 2]}, backend="dill", raw=True)
    code = (
        _STDLIB_STATE
        + f"PAYLOAD = {payload.hex()!r}\nRAW = {raw.hex()!r}\n"
        + setup
        + "before = stdlib_state()\n"
        + "assert 'dill' not in sys.modules\n"
        + trigger
        + "assert 'dill' in sys.modules\n"
        + "print(stdlib_state() == before)\n"
    )
    return check_python(code=code).strip()


@pytest.mark.parametrize("trigger", sorted(_DILL_TRIGGERS))
def test_using_dill_leaves_the_stdlib_picklers_as_they_were(trigger: str) -> None:
    assert _stdlib_unchanged_after(_DILL_TRIGGERS[trigger]) == "True"


def test_the_stdlib_check_sees_what_a_plain_import_of_dill_changes() -> None:
    """The check above can fail: importing dill directly grows pickle._Pickler.dispatch."""
    assert _stdlib_unchanged_after("import dill\n", setup="") == "False"


def test_a_program_that_imported_dill_itself_keeps_dills_extension() -> None:
    code = (
        "import pickle, dill, omnipickle\n"
        "extended = dict(pickle._Pickler.dispatch)\n"
        "omnipickle.loads(omnipickle.dumps(lambda: 1, backend='dill'))\n"
        "print(dict(pickle._Pickler.dispatch) == extended and len(extended) > 30)\n"
    )
    assert check_python(code=code).strip() == "True"


def test_import_brings_in_no_module_only_some_payloads_need() -> None:
    """Compression packages, JSON (only headers with an extra field), hashing (only signed
    payloads), mmap, tempfile (only dumps to a path) and importlib.metadata (only
    ``__version__``) are imported when first used, not by ``import omnipickle``."""
    out = check_python(
        code="import sys\nimport omnipickle\n"
        "print(sorted(m for m in ('bz2', 'lzma', 'gzip', 'json', 'hashlib', 'hmac', 'mmap', "
        "'tempfile', 'shutil', 'importlib.metadata') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_import_leaves_restricted_loading_scan_explain_and_sessions_for_first_use() -> None:
    """``import omnipickle`` imports what the default dumps and loads need; the security
    package, explain, sessions (and difflib, decimal, xxhash) wait until a name is used."""
    lazy = (
        "omnipickle.security",
        "omnipickle.explain",
        "omnipickle.session",
        "omnipickle.format.describe",
        "difflib",
        "decimal",
        "xxhash",
    )
    out = check_python(
        code="import sys\nimport omnipickle\n"
        f"print(sorted(m for m in {lazy!r} if m in sys.modules))\n"
        "omnipickle.scan, omnipickle.explain, omnipickle.load_session, omnipickle.ScanReport\n"
        "from omnipickle import dump_session, Explanation, Info, NotASessionError\n"
        "print(sorted(m for m in ('omnipickle.security', 'omnipickle.explain', "
        "'omnipickle.session') if m in sys.modules))"
    )
    assert out.split("\n")[:2] == [
        "[]",
        "['omnipickle.explain', 'omnipickle.security', 'omnipickle.session']",
    ]


def test_version_comes_from_the_installed_metadata() -> None:
    from importlib import metadata

    assert omnipickle.__version__ == metadata.version("omnipickle")
    with pytest.raises(AttributeError):
        omnipickle.no_such_name
