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


# What ``import omnipickle`` leaves for first use: the modules that only some calls need (the
# general reader, the auto backend, the error reports, the drop-in picklers, the mixins...) and
# the standard-library modules only they import.
_DEFERRED = (
    "omnipickle.backends.auto",
    "omnipickle.codecs.foreign",
    "omnipickle.diagnostics",
    "omnipickle.format.reader",
    "omnipickle.format.sniff",
    "omnipickle.format.source",
    "omnipickle.picklers",
    "omnipickle.resources.mixins",
    "omnipickle.serializer",
    "queue",
    "tempfile",
)


def test_import_leaves_the_general_reader_and_the_auto_backend_for_first_use() -> None:
    out = check_python(
        code="import sys\nimport omnipickle\n"
        f"print(sorted(m for m in {_DEFERRED!r} if m in sys.modules))\n"
    )
    assert out.strip() == "[]"


def test_the_fast_dumps_and_loads_of_plain_data_import_nothing_more() -> None:
    """The first ``dumps``/``loads`` of small plain data import no module at all."""
    out = check_python(
        code="import sys\nimport omnipickle\nbefore = set(sys.modules)\n"
        "assert omnipickle.loads(omnipickle.dumps({'a': [1, 2.5, 'x', None]})) == "
        "{'a': [1, 2.5, 'x', None]}\n"
        "assert omnipickle.loads(omnipickle.dumps((1, 2), raw=True)) == (1, 2)\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    assert out.strip() == "[]"


# Every public name imported on first use, with the module that defines it.
_LAZY_HOMES = {
    "Pickler": "omnipickle.picklers",
    "Unpickler": "omnipickle.picklers",
    "Serializer": "omnipickle.serializer",
    "ResourceAwareMixin": "omnipickle.resources.mixins",
    "ResourceRebuildError": "omnipickle.resources.mixins",
    "ResourceReopenError": "omnipickle.resources.builtin",
    "TransientMixin": "omnipickle.resources.mixins",
    "register_resource": "omnipickle.resources.rules",
    "transient": "omnipickle.resources.mixins",
    "unregister_resource": "omnipickle.resources.rules",
}


@pytest.mark.parametrize("name", sorted(_LAZY_HOMES))
def test_a_name_imported_on_first_use_is_the_one_its_module_defines(name: str) -> None:
    home = _LAZY_HOMES[name]
    out = check_python(
        code=f"import importlib, sys\nimport omnipickle\nprint({home!r} in sys.modules)\n"
        f"from omnipickle import {name}\n"
        f"print({name} is getattr(importlib.import_module({home!r}), {name!r}))\n"
    )
    first, same = out.split()
    assert same == "True"
    # The resource rules (and the built-in ones) are what every dump consults.
    assert first == str(home in ("omnipickle.resources.rules", "omnipickle.resources.builtin"))


def test_every_public_name_resolves_in_a_fresh_interpreter() -> None:
    out = check_python(
        code="import omnipickle\n"
        "missing = [n for n in omnipickle.__all__ if getattr(omnipickle, n, None) is None]\n"
        "ns = {}\nexec('from omnipickle import *', ns)\n"
        "print(missing, sorted(set(omnipickle.__all__) - set(ns)))\n"
    )
    assert out.strip() == "[] []"


def test_the_resource_subpackage_gives_the_mixins_on_first_use() -> None:
    from omnipickle import resources
    from omnipickle.resources import mixins

    assert resources.TransientMixin is mixins.TransientMixin
    assert resources.transient_names is mixins.transient_names
    with pytest.raises(AttributeError, match="no_such_name"):
        resources.no_such_name


def test_the_backend_subpackage_gives_its_base_classes_on_first_use() -> None:
    from omnipickle.backends import base

    backends_module = sys.modules["omnipickle.backends"]
    assert backends_module.Backend is base.Backend
    assert backends_module.Pickled is base.Pickled
    with pytest.raises(AttributeError, match="no_such_name"):
        backends_module.no_such_name
