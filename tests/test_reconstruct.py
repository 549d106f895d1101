"""``omnipickle._reconstruct``, the functions payloads name: a module that stands alone."""

from __future__ import annotations

import ast
from pathlib import Path

import omnipickle
from conftest import check_python

SOURCE = Path(omnipickle.__file__).parent / "_reconstruct.py"


def test_reconstruct_imports_nothing_of_the_package_anywhere_in_it() -> None:
    """Function-level imports included: loading a payload must not pull the package in."""

    def is_own(node: ast.AST) -> bool:
        if isinstance(node, ast.ImportFrom):
            return node.level > 0 or (node.module or "").split(".")[0] == "omnipickle"
        if isinstance(node, ast.Import):
            return any(a.name.split(".")[0] == "omnipickle" for a in node.names)
        return False

    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    own = [node.lineno for node in ast.walk(tree) if is_own(node)]
    assert own == []


def test_restore_state_runs_with_the_rest_of_the_package_never_imported() -> None:
    code = """
import importlib.util, sys, types
spec = importlib.util.find_spec("omnipickle")
stub = types.ModuleType("omnipickle")
stub.__path__ = list(spec.submodule_search_locations)
sys.modules["omnipickle"] = stub
from omnipickle._reconstruct import restore_state

class Lazy:
    __omnipickle_transient__ = True  # what the transient descriptor carries

class Obj:
    conn = Lazy()

obj = Obj()
restore_state(obj, ({"a": 1}, ("conn", "sock")))
print(obj.a, "conn" in obj.__dict__, obj.sock)
print(sorted(m for m in sys.modules if m.startswith("omnipickle")))
"""
    lines = check_python(code=code).splitlines()
    assert lines == ["1 False None", "['omnipickle', 'omnipickle._reconstruct']"]
