"""Importable classes and functions for the tests (importable by name in a child, too)."""

from __future__ import annotations

from typing import Any


class Plain:
    def __init__(self, a: Any, b: Any) -> None:
        self.a = a
        self.b = b

    def __eq__(self, other: object) -> bool:
        return type(other) is Plain and (self.a, self.b) == (other.a, other.b)

    __hash__ = None  # type: ignore[assignment]


class Slotted:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is Slotted and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


class WithState:
    """Keeps ``items`` and a derived ``total``; pickles only ``items``."""

    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.total = sum(items)

    def __getstate__(self) -> dict[str, Any]:
        return {"items": self.items}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.items = state["items"]
        self.total = sum(self.items)

    def __eq__(self, other: object) -> bool:
        return type(other) is WithState and (self.items, self.total) == (other.items, other.total)

    __hash__ = None  # type: ignore[assignment]


def importable_function(x: int) -> int:
    return x + 1


# --- classes holding live resources (importable, so a child process can load them) ---------

import socket  # noqa: E402
import sqlite3  # noqa: E402
import threading  # noqa: E402

import omnipickle  # noqa: E402


class Repository(omnipickle.TransientMixin):
    """A sqlite-backed repository: the connection is transient and reopened on load."""

    __transient__ = ("conn",)

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.conn = sqlite3.connect(path)
        self.conn.execute("create table if not exists items (name text)")

    def __restore__(self) -> None:
        self.conn = sqlite3.connect(self.path)

    def add(self, name: str) -> None:
        with self.lock:
            self.conn.execute("insert into items values (?)", (name,))
            self.conn.commit()

    def names(self) -> list[str]:
        return [row[0] for row in self.conn.execute("select name from items order by name")]


class LazyRepository:
    """The same, with a lazily rebuilt transient attribute instead of a mixin."""

    conn = omnipickle.transient(lambda self: sqlite3.connect(self.path))

    def __init__(self, path: str) -> None:
        self.path = path

    def names(self) -> list[str]:
        return [row[0] for row in self.conn.execute("select name from items order by name")]


class Client:
    """A TCP client that reconnects when its socket is None (what a dropped socket gives)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sent = 0
        self.sock: socket.socket | None = socket.create_connection(address)

    def send(self, data: bytes) -> None:
        if self.sock is None:
            self.sock = socket.create_connection(self.address)
        self.sock.sendall(data)
        self.sent += 1


class AwareClient(omnipickle.ResourceAwareMixin, Client):
    """Client whose live attributes are found by type at dump time."""

    def __restore__(self) -> None:
        self.sock = socket.create_connection(self.address)
