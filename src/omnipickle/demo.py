"""``omnipickle demo``: a guided tour on an embedded example, in a few seconds."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings
from collections.abc import Callable
from typing import Any, TextIO

import omnipickle

_CHILD = textwrap.dedent(
    """
    import sys, omnipickle
    jobs = omnipickle.load(sys.argv[1])
    results = ", ".join(f"{name}(10) = {fn(10)}" for name, fn in jobs.items())
    print("  in the fresh process:", results)
    """
)


def _make_pricer(rate: float) -> Callable[[float], float]:
    def price(amount: float) -> float:
        return round(amount * (1 + rate), 2)

    return price


class Inventory(omnipickle.TransientMixin):
    """A sqlite-backed class: its connection is left out and reopened after loading."""

    __transient__ = ("conn",)

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = sqlite3.connect(path)
        self.conn.execute("create table if not exists stock (item text, qty int)")

    def __restore__(self) -> None:
        self.conn = sqlite3.connect(self.path)

    def add(self, item: str, qty: int) -> None:
        self.conn.execute("insert into stock values (?, ?)", (item, qty))
        self.conn.commit()

    def total(self) -> int:
        return int(self.conn.execute("select coalesce(sum(qty), 0) from stock").fetchone()[0])


_INVENTORY_CHILD = textwrap.dedent(
    """
    import sys, omnipickle
    inventory = omnipickle.load(sys.argv[1])
    inventory.add("pears", 5)
    print(f"  in the fresh process: reconnected to {inventory.path.rsplit('/', 1)[-1]}, "
          f"total = {inventory.total()}")
    """
)


class _Client:
    """A small client object holding a live TCP socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.name = "orders"
        self.retries = 3
        self._sock = sock


def _run_child(code: str, path: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with ``path`` as its argument."""
    return subprocess.run(
        [sys.executable, "-c", code, path],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _section(out: TextIO, title: str) -> None:
    print(f"\n== {title}", file=out)


def run(out: TextIO | None = None) -> int:
    """Print the tour to ``out`` (default: stdout); return 0 when every step behaved."""
    out = out or sys.stdout
    ok = True
    with tempfile.TemporaryDirectory(prefix="omnipickle-demo-") as folder:
        path = os.path.join(folder, "jobs.pkl.zst")

        _section(out, "1. Code travels by value to a fresh process")
        jobs: dict[str, Any] = {"double": lambda x: x * 2, "with_tax": _make_pricer(0.2)}
        omnipickle.dump(jobs, path)
        print(f"  dumped a lambda and a closure to {os.path.basename(path)}", file=out)
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(omnipickle.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        child = _run_child(_CHILD, path, env)
        print(child.stdout.rstrip() or child.stderr.rstrip(), file=out)
        ok &= child.returncode == 0

        _section(out, "2. What the payload says about itself: omnipickle.info()")
        print(textwrap.indent(str(omnipickle.info(path)), "  "), file=out)

        _section(out, "3. Plain data costs nothing extra")
        rows = [{"id": i, "name": f"row{i}"} for i in range(1000)]
        data = omnipickle.dumps(rows)
        import pickle

        same = data[:2] + data[56:] == pickle.dumps(rows, protocol=5)
        print(f"  {len(data):,} bytes: the C pickler's own stream plus a 54-byte header", file=out)
        print(f"  identical to pickle.dumps but for the header: {same}", file=out)
        # The header rides inside the stream (a bytes opcode, then POP): pickle itself reads it.
        readable = pickle.loads(data) == rows
        print(f"  and pickle.loads reads the payload as it is: {readable}", file=out)
        ok &= same and readable

        _section(out, "4. An object holding a database connection, saved and reconnected")
        inventory = Inventory(os.path.join(folder, "stock.sqlite"))
        inventory.add("apples", 3)
        saved = os.path.join(folder, "inventory.pkl")
        omnipickle.dump(inventory, saved)
        print("  saved an Inventory (TransientMixin, __transient__ = ('conn',))", file=out)
        child = _run_child(_INVENTORY_CHILD, saved, env)
        print(child.stdout.rstrip() or child.stderr.rstrip(), file=out)
        ok &= child.returncode == 0 and child.stdout.rstrip().endswith("total = 8")
        inventory.conn.close()

    _section(out, "5. A live socket cannot travel; the error says where and what to do")
    server = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        omnipickle.dumps({"clients": [_Client(sock)]})
    except omnipickle.PicklingError as exc:
        print(
            textwrap.fill(str(exc), width=96, initial_indent="  ", subsequent_indent="    "),
            file=out,
        )
        ok &= exc.path == "root['clients'][0]._sock"
    else:
        ok = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", omnipickle.DroppedResourceWarning)
        dropped = omnipickle.dumps({"clients": [_Client(sock)]}, on_unpicklable="drop")
    print('  with on_unpicklable="drop" it loads as None, and the payload says so:', file=out)
    for entry in omnipickle.info(dropped).dropped:
        print(f"    dropped {entry['path']} ({entry['type']})", file=out)
    ok &= omnipickle.loads(dropped)["clients"][0]._sock is None
    print("  omnipickle.explain() lists every such part at once:", file=out)
    report = omnipickle.explain({"clients": [_Client(sock)], "lock": threading.Lock()})
    for row in report.rows:
        print(f"    {row.path:<22} {row.type_name:<16} {row.kind}", file=out)
    for s in (peer, sock, server):
        s.close()

    _section(out, "6. Damage is caught before anything is unpickled")
    damaged = bytearray(omnipickle.dumps({"balance": 100}))
    damaged[-2] ^= 0x01
    try:
        omnipickle.loads(bytes(damaged))
    except omnipickle.CorruptPayloadError as exc:
        print(f"  CorruptPayloadError: {exc}", file=out)
    else:
        ok = False

    print("\nDone." if ok else "\nSomething did not behave as expected (see above).", file=out)
    return 0 if ok else 1
