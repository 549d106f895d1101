"""Importing omnipickle has no side effects (checked in a fresh interpreter)."""

from __future__ import annotations

import sys

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


def test_using_dill_for_one_object_leaves_stdlib_picklers_alone() -> None:
    code = (
        "import copyreg, pickle, weakref, omnipickle, fractions\n"
        "before = dict(copyreg.dispatch_table)\n"
        "f = fractions.Fraction(1, 2)\n"
        "class A: pass\n"
        "a = A()\n"
        "omnipickle.loads(omnipickle.dumps([a, weakref.ref(a)]))\n"
        "print(before == dict(copyreg.dispatch_table))\n"
    )
    assert check_python(code=code).strip() == "True"
