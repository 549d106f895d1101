"""``omnipickle demo``: a guided tour on an embedded example, in a few seconds.

Each step is a few lines of code, printed as an interactive session and run as printed (by
:func:`run_session`): what the tour shows is what ran. The code meant for another process is
run there, by a fresh interpreter, the same way.
"""

from __future__ import annotations

import ast
import contextlib
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings
from typing import Any, TextIO

import omnipickle

__all__ = ["run", "run_session"]

_WIDTH = 96

# --- the tour: each step's code, exactly as it is shown and run ---------------------------------

_CODE_BY_VALUE = """\
def make_pricer(rate):
    return lambda amount: round(amount * (1 + rate), 2)
jobs = {"double": lambda x: x * 2, "with_tax": make_pricer(0.2)}
omnipickle.dump(jobs, f"{folder}/jobs.pkl.zst")
"""
_CODE_BY_VALUE_THERE = """\
jobs = omnipickle.load(f"{folder}/jobs.pkl.zst")
jobs["double"](10), jobs["with_tax"](10)
"""
_CODE_INFO = """\
print(omnipickle.info(f"{folder}/jobs.pkl.zst"))
"""
_CODE_PLAIN = """\
rows = [{"id": i, "name": f"row{i}"} for i in range(1000)]
data = omnipickle.dumps(rows)
len(data) - len(pickle.dumps(rows, protocol=5))
pickle.loads(data) == rows
"""
_CODE_RESOURCE = """\
class Inventory:
    conn = omnipickle.transient(lambda self: sqlite3.connect(self.path))
    def __init__(self, path):
        self.path = path
inventory = Inventory(f"{folder}/stock.sqlite")
with inventory.conn:
    inventory.conn.execute("create table stock (item text, qty int)")
    inventory.conn.execute("insert into stock values ('apples', 3)")
omnipickle.dump(inventory, f"{folder}/inventory.pkl")
"""
_CODE_RESOURCE_THERE = """\
inventory = omnipickle.load(f"{folder}/inventory.pkl")
inventory.conn.execute("select sum(qty) from stock").fetchone()
"""
_CODE_SOCKET = """\
class Client:
    def __init__(self, sock):
        self.name, self.sock = "orders", sock
sock, peer = socket.socketpair()
omnipickle.dumps({"clients": [Client(sock)]})
data = omnipickle.dumps({"clients": [Client(sock)]}, on_unpicklable="drop")
omnipickle.loads(data)["clients"][0].sock is None
print(omnipickle.explain({"clients": [Client(sock)], "lock": threading.Lock()}))
"""
_CODE_DAMAGE = """\
data = bytearray(omnipickle.dumps({"balance": 100}))
data[-2] ^= 1
omnipickle.loads(data)
"""

# The modules the steps use, imported for them (as a script's first lines would).
_IMPORTS = ("omnipickle", "pickle", "socket", "sqlite3", "threading")

# How the fresh interpreter runs a step: the code and the folder as its arguments.
_CHILD = (
    "import sys; from omnipickle.demo import run_session; "
    "run_session(sys.argv[1], {'folder': sys.argv[2]})"
)


# --- the session: code printed as typed at the prompt, run statement by statement -------------


def run_session(code: str, namespace: dict[str, Any], out: TextIO | None = None) -> list[Any]:
    """Print ``code`` as an interactive session and run it, statement by statement.

    Each statement is printed after ``>>>`` (its other lines after ``...``) and run in
    ``namespace``, made a script's ``__main__`` (so that functions and classes defined there
    travel by value) holding the modules the tour uses. What follows is what the interpreter
    would show: what the statement printed, the value of an expression, the warnings it issued,
    and the last line of an omnipickle error it raised (the session goes on after it, as at the
    prompt).

    Args:
        code: Python statements.
        namespace: the names they see (``folder``), and what they define, afterwards.
        out: where to print (default: stdout).

    Returns:
        For each expression statement, its value (or the omnipickle error it raised), in order.
    """
    out = out or sys.stdout
    namespace["__name__"] = "__main__"
    for module in _IMPORTS:
        namespace.setdefault(module, __import__(module))
    lines = code.splitlines()
    values: list[Any] = []
    for node in ast.parse(code).body:
        shown = lines[node.lineno - 1 : node.end_lineno]
        print(f">>> {shown[0]}", *(f"... {line}" for line in shown[1:]), sep="\n", file=out)
        if len(shown) > 1:
            print("...", file=out)  # a block ends with an empty line at the prompt
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
            warnings.simplefilter("always")
            try:
                value = _run(node, namespace)
            except omnipickle.OmnipickleError as exc:
                value = exc
                _wrapped(out, f"{type(exc).__name__}: {exc}")
        for warning in caught:
            _wrapped(out, f"{warning.category.__name__}: {warning.message}")
        if isinstance(node, ast.Expr):
            values.append(value)
            if value is not None and not isinstance(value, omnipickle.OmnipickleError):
                print(repr(value), file=out)
    return values


def _run(node: ast.stmt, namespace: dict[str, Any]) -> Any:
    """Run one statement; an expression's value is returned."""
    if isinstance(node, ast.Expr):
        return eval(compile(ast.Expression(node.value), "<demo>", "eval"), namespace)
    exec(compile(ast.Module([node], type_ignores=[]), "<demo>", "exec"), namespace)
    return None


def _wrapped(out: TextIO, text: str) -> None:
    print(textwrap.fill(text, width=_WIDTH, subsequent_indent="    "), file=out)


# --- the tour ------------------------------------------------------------------------------------


def _elsewhere(out: TextIO, code: str, folder: str) -> str:
    """Run ``code`` as a session in a fresh interpreter; print and return what it printed."""
    print("\nin a fresh interpreter, another process:", file=out)
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(omnipickle.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, code, folder],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    shown = child.stdout.rstrip()
    print(shown, file=out)
    if child.returncode != 0:
        print(child.stderr.rstrip(), file=out)
        return ""
    return shown


def _section(out: TextIO, title: str) -> None:
    print(f"\n== {title}\n", file=out)


def run(out: TextIO | None = None) -> int:
    """Print the tour to ``out`` (default: stdout); return 0 when every step behaved."""
    out = out or sys.stdout
    ok = True
    with tempfile.TemporaryDirectory(prefix="omnipickle-demo-") as folder:
        print(f"folder = {folder!r}  (a temporary folder, removed when the demo ends)", file=out)
        names: dict[str, Any] = {"folder": folder}  # one session: what a step defines stays

        _section(out, "1. A lambda and a closure travel by value to a fresh process")
        run_session(_CODE_BY_VALUE, names, out)
        ok &= _elsewhere(out, _CODE_BY_VALUE_THERE, folder).endswith("(20, 12.0)")

        _section(out, "2. What the payload says about itself (nothing is unpickled)")
        run_session(_CODE_INFO, names, out)

        _section(out, "3. Plain data: the C pickler's own stream and a small header")
        extra, readable = run_session(_CODE_PLAIN, names, out)
        ok &= isinstance(extra, int) and 0 < extra < 100 and readable is True

        _section(out, "4. An object holding a database connection, saved and reconnected")
        run_session(_CODE_RESOURCE, names, out)
        ok &= _elsewhere(out, _CODE_RESOURCE_THERE, folder).endswith("(3,)")
        names["inventory"].conn.close()

        _section(out, "5. A live socket cannot travel: the error says where, and what to do")
        refused, dropped, _ = run_session(_CODE_SOCKET, names, out)
        ok &= isinstance(refused, omnipickle.PicklingError) and dropped is True
        names["sock"].close()
        names["peer"].close()

        _section(out, "6. Damage is caught before anything is unpickled")
        (damaged,) = run_session(_CODE_DAMAGE, names, out)
        ok &= isinstance(damaged, omnipickle.CorruptPayloadError)

    print("\nDone." if ok else "\nSomething did not behave as expected (see above).", file=out)
    return 0 if ok else 1
