"""Dump an object holding one kind of live resource (in this process), or load one (in a fresh
process) and check what the resource became and that the object still works.

usage: resources_roundtrip.py dump KIND POLICY PAYLOAD WORKDIR
       resources_roundtrip.py load KIND POLICY PAYLOAD WORKDIR

dump prints "raised <message>" when dumps refused, else "dumped". load prints one line of
facts about the loaded object.
"""

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import omnipickle
from helpers import Client, Plain, Repository

STOP = threading.Event()


def build(kind, workdir):
    if kind == "sqlite":
        repo = Repository(os.path.join(workdir, "db.sqlite"))
        repo.add("saved")
        return {"repo": repo, "raw": sqlite3.connect(os.path.join(workdir, "db.sqlite"))}
    if kind == "tcp":
        server = socket.create_server(("127.0.0.1", 0))
        server.listen(4)
        with open(os.path.join(workdir, "port"), "w") as f:
            f.write(str(server.getsockname()[1]))
        return {"client": Client(server.getsockname()), "_server": server}
    if kind == "thread":  # finished: recreated, unstarted
        t = threading.Thread(target=lambda: None, name="finished-worker")
        t.start()
        t.join()
        return {"worker": Plain("w", t), "lock": threading.Lock()}
    if kind == "running_thread":  # running: cannot travel
        t = threading.Thread(target=STOP.wait, daemon=True)
        t.start()
        return {"worker": Plain("w", t), "lock": threading.Lock()}
    if kind == "file":
        path = os.path.join(workdir, "data.txt")
        with open(path, "w") as f:
            f.write("0123456789")
        handle = open(path)  # noqa: SIM115 - it must stay open to be pickled open
        handle.read(4)
        return {"file": handle}
    if kind == "pipe":
        read_fd, _write_fd = os.pipe()  # the write end stays open until exit
        return {"pipe": os.fdopen(read_fd, "rb"), "n": 1}
    if kind == "subprocess":
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        return {"proc": proc, "n": 2}
    raise SystemExit(f"unknown kind {kind}")


def describe(kind, obj, workdir):
    if kind == "sqlite":
        return f"names={obj['repo'].names()} raw={obj['raw']}"
    if kind == "tcp":
        client = obj["client"]
        was = client.sock
        client.send(b"hello")  # reconnects to the still-listening server? it is gone: skip
        return f"sock_was={was} sent={client.sent}"
    if kind == "thread":
        t = obj["worker"].b
        t.start()  # unstarted: it can run again (its target is gone, as after any run)
        t.join()
        return f"worker={type(t).__name__} {t.name} lock_free={obj['lock'].acquire(timeout=1)}"
    if kind == "running_thread":
        return f"worker={obj['worker'].b} lock_free={obj['lock'].acquire(timeout=1)}"
    if kind == "file":
        f = obj["file"]
        return f"file_rest={f.read() if f else None}"
    if kind == "pipe":
        return f"pipe={obj['pipe']} n={obj['n']}"
    if kind == "subprocess":
        return f"proc={obj['proc']} n={obj['n']}"
    raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    mode, kind, policy, payload, workdir = sys.argv[1:6]
    if mode == "dump":
        obj = build(kind, workdir)
        server = obj.pop("_server", None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                omnipickle.dump(obj, payload, on_unpicklable=policy)
        except omnipickle.PicklingError as exc:
            print(f"raised {exc}")
        else:
            print("dumped")
        if server is not None:
            server.close()
        STOP.set()
    else:
        obj = omnipickle.load(payload)
        if kind == "tcp":
            # The original server is gone; stand a new one up at a fresh port and re-point.
            server = socket.create_server(("127.0.0.1", 0))
            obj["client"].address = server.getsockname()
        print(describe(kind, obj, workdir))
