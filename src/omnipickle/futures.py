"""Process pools that carry anything: tasks and results travel as omnipickle payloads.

* :class:`ProcessPoolExecutor`: the standard library's executor, whose ``submit`` and ``map``
  take lambdas, closures, bound methods, functions and classes of ``__main__``, and objects that
  hold locks (recreated in the worker) or transient resources. Exceptions raised in a worker
  come back as themselves, with the worker's traceback as their ``__cause__``.
* :class:`ForkingPickler`: multiprocessing's pickler, writing code by value, for programs that
  install it (:func:`install_forking_pickler`) so that every ``multiprocessing`` queue, pipe and
  pool carries code.

Imported only when used: ``import omnipickle`` imports neither this module nor
:mod:`concurrent.futures` or :mod:`multiprocessing`.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import multiprocessing.connection
import multiprocessing.queues
import multiprocessing.reduction
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from multiprocessing.context import BaseContext
from typing import Any

from .backends.auto import AutoPickler
from .codecs import Codec
from .errors import PicklingError
from .format.signing import KeyArgument
from .serializer import Serializer

__all__ = [
    "DEFAULT_COMPRESS_ABOVE",
    "DEFAULT_PREFETCH_PER_WORKER",
    "ForkingPickler",
    "ProcessPoolExecutor",
    "RemoteTraceback",
    "install_forking_pickler",
    "uninstall_forking_pickler",
]

DEFAULT_COMPRESS_ABOVE = 64 * 1024
"""Payloads up to this many bytes are sent uncompressed, whatever ``compression`` says."""

DEFAULT_PREFETCH_PER_WORKER = 8
"""The default ``prefetch`` of :class:`ProcessPoolExecutor`, per worker."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, as text.

    Set as the ``__cause__`` of the exception that ``Future.result()`` raises, so that a
    printed traceback shows where in the worker it happened, then where it was re-raised.

    Attributes:
        tb: the worker's formatted traceback.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class _Payloads:
    """How tasks and results become payloads and back, the same in the caller and in each
    worker: one ``Serializer`` made once per process, and a second one that compresses, for
    payloads larger than ``compress_above``."""

    def __init__(
        self,
        key: KeyArgument | None,
        on_unpicklable: str,
        compression: str | Codec | None,
        level: int | None,
        compress_above: int,
    ) -> None:
        self._args = (key, on_unpicklable, compression, level, compress_above)
        # Only the options that differ from the defaults: a Serializer holding none of them
        # takes the functions' own per-call fast paths.
        held: dict[str, Any] = {}
        if key is not None:
            held["key"] = key
        if on_unpicklable != "raise":
            held["on_unpicklable"] = on_unpicklable
        self.plain = Serializer(**held)
        self.packed: Serializer | None = None
        if compression is not None:
            self.packed = Serializer(**held, compression=compression, level=level)
        self.compress_above = compress_above
        # Validate every option now, in the caller, rather than at the first task.
        self.plain.dumps(None)
        if self.packed is not None:
            self.packed.dumps(None)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Payloads, self._args)

    def dumps(self, obj: Any) -> bytes:
        data = self.plain.dumps(obj)
        if self.packed is not None and len(data) > self.compress_above:
            # The payload itself goes into a compressed one: ``obj`` is pickled once (its
            # reducers run once, a dropped resource is reported once).
            data = self.packed.dumps(_Packed(data))
        return data

    def loads(self, data: bytes) -> Any:
        obj = self.plain.loads(data)
        if type(obj) is _Packed:
            obj = self.plain.loads(obj.data)
        return obj


class _Packed:
    """A payload inside a compressed payload (see ``_Payloads.dumps``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Packed, (self.data,))


# --- in the worker ---------------------------------------------------------------------------

_worker: _Payloads | None = None

# What a failed task sends back: the exception as a payload (None if it cannot be serialized),
# why not, the worker's traceback text, the exception's type name and message.
_Failure = tuple[bytes | None, str, str, str, str]


def _init_worker(payloads: _Payloads, initializer: bytes | None) -> None:
    """Each worker's initializer: keep the options, then run the user's initializer."""
    global _worker
    _worker = payloads
    if initializer is not None:
        fn, args = payloads.loads(initializer)
        fn(*args)


def _run_task(payload: bytes) -> bytes | _Failure:
    """Run one task of ``submit`` in a worker: its result as a payload, or what it raised."""
    payloads = _worker_payloads()
    try:
        task = payloads.loads(payload)
        result = task["fn"](*task["args"], **task["kwargs"])
    except BaseException as exc:  # noqa: BLE001 - as the stdlib's workers: everything goes back
        return _failure(payloads, exc)
    return _result(payloads, result)


def _run_chunk(fn_payload: bytes, chunk_payload: bytes) -> bytes | _Failure:
    """Run one chunk of ``map`` in a worker: the list of its results as a payload."""
    payloads = _worker_payloads()
    try:
        fn = payloads.loads(fn_payload)
        results = [fn(*args) for args in payloads.loads(chunk_payload)]
    except BaseException as exc:  # noqa: BLE001 - as the stdlib's workers: everything goes back
        return _failure(payloads, exc)
    return _result(payloads, results)


def _worker_payloads() -> _Payloads:
    if _worker is None:
        raise RuntimeError("omnipickle.futures: this process was not started by the executor")
    return _worker


def _result(payloads: _Payloads, result: Any) -> bytes | _Failure:
    try:
        return payloads.dumps(result)
    except BaseException as exc:  # noqa: BLE001 - a result that cannot travel is the task's error
        return _failure(payloads, exc)


def _failure(payloads: _Payloads, exc: BaseException) -> _Failure:
    tb = "".join(traceback.format_exception(exc))
    try:
        data: bytes | None = payloads.dumps(exc)
        reason = ""
    except Exception as err:  # noqa: BLE001 - any failure to serialize it is reported as text
        data, reason = None, f"{type(err).__name__}: {err}"
    return (data, reason, tb, _qualified(type(exc)), str(exc))


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --- in the caller ---------------------------------------------------------------------------


def _rebuild(payloads: _Payloads, failure: _Failure) -> BaseException:
    """The exception a worker raised, with its traceback text as ``__cause__``; or, if it
    cannot travel, a ``PicklingError`` that says what it was."""
    data, reason, tb, type_name, message = failure
    exc: BaseException | None = None
    if data is None:
        reason = f"it cannot be serialized: {reason}"
    else:
        try:
            exc = payloads.loads(data)
        except Exception as err:  # noqa: BLE001 - reported in the error below
            reason = f"it cannot be loaded here: {type(err).__name__}: {err}"
    if exc is None:
        exc = PicklingError(
            f"the task raised {type_name}: {message}; that exception cannot come back from the "
            f"worker ({reason}); its traceback in the worker is this error's __cause__",
            type_name=type_name,
        )
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class _TaskFuture(Future[Any]):
    """The future of one task: the standard executor's own future, made an instance of this
    class by ``ProcessPoolExecutor._submit`` while the task is pending (if the executor has
    sent the task already, a second future that follows it). The executor sets what the worker
    sent back (the result's payload, or a failure) as its result; ``set_result`` loads it
    first, and sets the exception instead for a failure (so ``wait(return_when=
    FIRST_EXCEPTION)`` sees it).

    One future per task, rather than a second one settled from the executor's by a callback:
    a second ``Future`` per pending task (with its ``Condition``, lock and callback) doubled
    the objects the garbage collector walks while thousands of tasks are pending; full
    collections took a tenth of the time of a run of tiny tasks (bench_engines.py).
    """

    _payloads: _Payloads

    def set_result(self, result: Any) -> None:
        # Runs in the executor's manager thread: nothing may escape from here.
        ok, value = _outcome(self._payloads, result)
        if ok:
            super().set_result(value)
        else:
            super().set_exception(value)

    def _follow(self, future: Future[Any]) -> None:
        """Settle this future as ``future`` was, the executor's future of the same task (see
        ``ProcessPoolExecutor._follower``)."""
        error = future.exception()
        if error is not None:  # the pool's own failure (a worker died, the pool shut down)
            self.set_exception(error)
        else:
            self.set_result(future.result())


def _outcome(payloads: _Payloads, raw: Any) -> tuple[bool, Any]:
    """What a worker sent back, loaded: ``(True, result)`` or ``(False, exception)``."""
    if type(raw) is not bytes:
        return False, _rebuild(payloads, raw)
    try:
        return True, payloads.loads(raw)
    except BaseException as exc:  # noqa: BLE001 - the caller gets it from result()
        return False, exc


def _context(mp_context: BaseContext | str | None) -> BaseContext | None:
    if isinstance(mp_context, str):
        return multiprocessing.get_context(mp_context)
    return mp_context


class ProcessPoolExecutor(concurrent.futures.ProcessPoolExecutor):
    """A :class:`concurrent.futures.ProcessPoolExecutor` whose tasks and results are omnipickle
    payloads.

    ``submit(fn, *args, **kwargs)`` serializes ``(fn, args, kwargs)`` with
    :func:`omnipickle.dumps` at once, in the calling thread: an object that cannot travel
    raises :class:`omnipickle.PicklingError` from ``submit``, naming its path, and the worker
    sees the arguments as they were when ``submit`` was called (the standard executor pickles
    a task later, when it sends it to a worker). The worker loads the task, calls it, and sends
    the result back the same way. ``map`` does the same per chunk. Everything the standard
    executor takes (``max_tasks_per_child``, ...) is passed on to it.

    Args:
        max_workers: the number of worker processes (default: the number of CPUs).
        mp_context: a multiprocessing context, or a start method's name (``"spawn"``,
            ``"forkserver"``, ``"fork"``); default: the platform's.
        initializer, initargs: called in each worker when it starts; may be a lambda.
        key: sign every task and result with this key (bytes, or a list of keys to accept,
            the first signing); each side verifies what it receives before unpickling it.
        on_unpicklable: ``"raise"`` (default) or ``"drop"``, as for :func:`omnipickle.dumps`:
            applies to arguments in the caller and to results in the worker.
        compression: compress payloads larger than ``compress_above`` bytes with this codec
            (``"zstd"``, ``"lz4"``, ...); smaller ones are sent as they are.
        level: the codec's level.
        compress_above: see ``compression`` (default :data:`DEFAULT_COMPRESS_ABOVE`).
        prefetch: how many tasks are sent ahead into the queue the workers take their tasks
            from, on top of the one each worker runs (default
            :data:`DEFAULT_PREFETCH_PER_WORKER` per worker; the standard executor's is
            ``max_workers + 1``). A task sent ahead is running as far as its future is
            concerned: ``cancel()`` and ``shutdown(cancel_futures=True)`` no longer stop it.
            More keeps the workers busy with tiny tasks; less leaves more tasks cancellable.
        **kwargs: passed to :class:`concurrent.futures.ProcessPoolExecutor`.

    Raises:
        TypeError, ValueError, omnipickle.UnknownCodecError: an option is not valid.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: BaseContext | str | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        key: KeyArgument | None = None,
        on_unpicklable: str = "raise",
        compression: str | Codec | None = None,
        level: int | None = None,
        compress_above: int = DEFAULT_COMPRESS_ABOVE,
        prefetch: int | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(compress_above, bool) or not isinstance(compress_above, int):
            raise TypeError(f"compress_above must be an int, not {type(compress_above).__name__}")
        if prefetch is not None:
            if isinstance(prefetch, bool) or not isinstance(prefetch, int):
                raise TypeError(f"prefetch must be an int, not {type(prefetch).__name__}")
            if prefetch < 1:
                raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        payloads = _Payloads(key, on_unpicklable, compression, level, compress_above)
        init = None if initializer is None else payloads.dumps((initializer, tuple(initargs)))
        super().__init__(
            max_workers,
            _context(mp_context),
            _init_worker,
            (payloads, init),
            **kwargs,
        )
        self._payloads = payloads
        _resize_call_queue(self, prefetch)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker; return its future.

        Raises:
            omnipickle.PicklingError: ``fn`` or an argument cannot be serialized.
            RuntimeError: the executor was shut down (as the standard executor's).
            concurrent.futures.process.BrokenProcessPool: a worker died.
        """
        # A dict, so that an error names its place as root['args'][0], not root[1][0].
        task = {"fn": fn, "args": args, "kwargs": kwargs}
        return self._submit(_run_task, self._payloads.dumps(task))

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        **kwargs: Any,
    ) -> Iterator[Any]:
        """``map(fn, *iterables)`` in the workers, ``chunksize`` calls per task, as the standard
        executor's (results in order; the first exception is raised when its result is reached,
        and cancels the calls not yet started).

        ``fn`` is serialized once for the whole call, each chunk of arguments once.

        Raises:
            omnipickle.PicklingError: ``fn`` or an argument cannot be serialized.
            ValueError: ``chunksize`` is less than 1.
        """
        if chunksize < 1:
            raise ValueError(f"chunksize must be at least 1, got {chunksize}")
        chunks = _ChunkSubmitter(self, self._payloads.dumps(fn))
        # Executor.map does the waiting, the timeout and the cancelling, through submit().
        results: Iterator[list[Any]] = concurrent.futures.Executor.map(
            chunks,  # type: ignore[arg-type]  # only its submit() is used
            _no_function,
            _chunked(iterables, chunksize),
            timeout=timeout,
            **kwargs,
        )
        return _flattened(results, chunks)

    def _submit(self, runner: Callable[..., Any], *payloads: bytes) -> Future[Any]:
        future = super().submit(runner, *payloads)
        # The executor's manager thread calls set_result only after it has marked the future
        # running (set_running_or_notify_cancel, under the future's lock, as this check): a
        # future still pending here gets every set_result as a _TaskFuture.
        with future._condition:
            pending = not (future.running() or future.done())
            if pending:
                future.__class__ = _TaskFuture
                future._payloads = self._payloads  # type: ignore[attr-defined]
        if pending:
            return future
        # The task was sent, maybe settled, before this thread got the GIL back (rare).
        return self._follower(future)

    def _follower(self, future: Future[Any]) -> Future[Any]:
        """A second future, settled as ``future`` is (or was), as a plain Future."""
        follower = _TaskFuture()
        follower._payloads = self._payloads
        if future.cancelled():  # by shutdown(cancel_futures=True) in another thread
            follower.cancel()
            follower.set_running_or_notify_cancel()
        else:
            follower.set_running_or_notify_cancel()  # so cancel() says False, as for future
            future.add_done_callback(follower._follow)
        return follower


def _resize_call_queue(
    executor: concurrent.futures.ProcessPoolExecutor, prefetch: int | None
) -> bool:
    """Make the executor's call queue (the tasks sent ahead to the workers) hold ``prefetch``
    tasks (default: :data:`DEFAULT_PREFETCH_PER_WORKER` per worker); ``False`` if this Python's
    executor is not built as expected (it keeps its own size).

    The standard executor's call queue holds ``max_workers + 1`` tasks (its module constant
    ``EXTRA_QUEUED_CALLS``, read once in ``__init__``, with no argument to change it). With
    tiny tasks the workers then wait on the caller's process, whose threads (the one calling
    ``submit``, the executor's manager and feeder threads) share one GIL, and the manager
    thread waits for it. 10,000 lambdas through ``submit`` on 2 workers ran at 0.9x to 1.2x
    loky's throughput (loky's queue holds ``2 * max_workers + 1``), at 1.1x to 1.7x with 16
    (8 per worker; 32 gained 3% to 7% more; bench_engines.py, docs/integrations.md).

    The size is a ``multiprocessing.Queue``'s bounded semaphore (``_sem``, with ``_maxsize``),
    unchanged from Python 3.4 to 3.14, as are the executor's ``_call_queue``, ``_mp_context``
    and ``_max_workers``. It is replaced only while nothing holds it: no worker has started (each
    gets a copy of the queue, semaphore included, when it starts: at the first ``submit``) and
    the queue's feeder thread (which is given the semaphore too) has not started (no task was
    sent). tests/test_futures.py checks it on the real executor.
    """
    queue = getattr(executor, "_call_queue", None)
    context = getattr(executor, "_mp_context", None)
    workers = getattr(executor, "_max_workers", None)
    if (
        not isinstance(queue, multiprocessing.queues.Queue)
        or not isinstance(workers, int)
        or not isinstance(context, BaseContext)
        or getattr(executor, "_processes", None) != {}
        or getattr(queue, "_thread", True) is not None
        or not hasattr(queue, "_sem")
        or not hasattr(queue, "_maxsize")
    ):
        return False
    size = DEFAULT_PREFETCH_PER_WORKER * workers if prefetch is None else prefetch
    queue._sem = context.BoundedSemaphore(size)
    queue._maxsize = size
    return True


def _no_function(*args: Any) -> Any:
    """What ``Executor.map`` is given as the function: ``_ChunkSubmitter.submit`` ignores it."""
    raise AssertionError("never called")


class _ChunkSubmitter:
    """Submits the chunks of one ``map`` call, each with the function's payload made once."""

    __slots__ = ("__weakref__", "_executor", "_fn_payload")  # Executor.map may weakref it

    def __init__(self, executor: ProcessPoolExecutor, fn_payload: bytes) -> None:
        self._executor = executor
        self._fn_payload = fn_payload

    def submit(self, _fn: object, chunk: tuple[tuple[Any, ...], ...]) -> Future[Any]:
        executor = self._executor
        return executor._submit(_run_chunk, self._fn_payload, executor._payloads.dumps(chunk))


def _flattened(results: Iterator[list[Any]], keep: _ChunkSubmitter) -> Iterator[Any]:
    # The frame holds ``keep``: with ``buffersize`` (Python 3.14), Executor.map submits later
    # chunks through a weak reference to the submitter, which must live while results are read.
    for batch in results:
        yield from batch


def _chunked(
    iterables: tuple[Iterable[Any], ...], size: int
) -> Iterator[tuple[tuple[Any, ...], ...]]:
    calls = zip(*iterables, strict=False)
    while chunk := tuple(itertools.islice(calls, size)):
        yield chunk


# --- multiprocessing's pickler, writing code by value ----------------------------------------


class ForkingPickler(multiprocessing.reduction.ForkingPickler, AutoPickler):
    """``multiprocessing.reduction.ForkingPickler`` that also writes code by value.

    It keeps multiprocessing's own reducers (connections, sockets and the handles of shared
    memory, as registered with ``ForkingPickler.register``), which are consulted first; every
    other type gets what :class:`omnipickle.Pickler` does: lambdas, closures and ``__main__``
    code by value, locks recreated, live resources refused. Its streams are plain pickle
    streams: the receiving side reads them with ``pickle.loads``, as multiprocessing does.

    Install it with :func:`install_forking_pickler`.
    """


# Where multiprocessing holds the pickler class it uses: ``reduction.dump`` (starting a
# process under spawn and forkserver) reads its module's name at each call, but connections
# (pipes, Pool) and queues bound the class to a name of their own when they were imported.
_PICKLER_SLOTS = (
    (multiprocessing.reduction, "ForkingPickler"),
    (multiprocessing.connection, "_ForkingPickler"),
    (multiprocessing.queues, "_ForkingPickler"),
)
_STDLIB_PICKLER = multiprocessing.reduction.ForkingPickler


def install_forking_pickler() -> None:
    """Make this process's ``multiprocessing`` pickle with :class:`ForkingPickler`.

    Queues, pipes, ``multiprocessing.Pool`` and the standard ``ProcessPoolExecutor`` then carry
    lambdas and closures. It changes global state of this process only: call it in the
    workers too (``Pool(initializer=install_forking_pickler)``) for results that hold code.
    Calling it again does nothing; :func:`uninstall_forking_pickler` undoes it.
    """
    for module, name in _PICKLER_SLOTS:
        setattr(module, name, ForkingPickler)


def uninstall_forking_pickler() -> None:
    """Put the standard library's ``ForkingPickler`` back where
    :func:`install_forking_pickler` replaced it."""
    for module, name in _PICKLER_SLOTS:
        setattr(module, name, _STDLIB_PICKLER)
