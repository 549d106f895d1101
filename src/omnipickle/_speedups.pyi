# The C fast path of omnipickle.loads (src/omnipickle/_speedups.c), optional.
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

# The callable it returns is called as ``fallback`` is (it passes every call it does not take
# to ``fallback``), so it is typed as ``fallback``.
def accelerate_loads(
    fallback: _F,
    unpickle: Callable[[bytes], Any],
    hooks: ContextVar[Any],
    defaults: object,
    magics: object,
    tables: Callable[[frozenset[int]], dict[bytes, tuple[int, int, int]]],
    failure: Callable[[BaseException, bytes, bool], BaseException | None],
    modules: dict[str, Any],
    layout: Mapping[str, int],
    /,
) -> _F: ...
def crc32(data: bytes | bytearray | memoryview, value: int = 0, /) -> int: ...
def accelerate_dumps(fallback: _F, config: dict[str, Any], /) -> _F: ...
