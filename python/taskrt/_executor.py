"""taskrt.Executor: a concurrent.futures.Executor whose calls run in taskrtd's Python workers.

    with taskrt.Executor() as ex:
        squares = list(ex.map(square, range(1000), chunksize=50))
        f = ex.options(task_class="io").submit(fetch, url)
        print(f.result(), f.task.decision.executor)   # "thread"

It is a drop-in for ProcessPoolExecutor / ThreadPoolExecutor: submit() returns a real
concurrent.futures.Future (so wait, as_completed and asyncio.wrap_future work), map()
has their semantics, shutdown(wait, cancel_futures) too. The daemon picks a process
(CPU-bound) or a thread / the asyncio loop (I/O-bound) for each call; the future's
`task` says where it ran and why.

What travels: a call is one task of handler "py.call" ("py.call_async" for an async def,
which runs on the worker's asyncio loop), its input the _wire call payload: the function
by import path when a fresh process can import it, else by value with cloudpickle
(__main__, lambdas, closures); arguments and result pickled. A function decorated with
@taskrt.task goes to its named handler when the daemon registered it (taskrtd
--python-module), else to py.call with its hint as the requested class.

Dispatcher thread. One background thread per executor owns ONE long-lived bidirectional
Stream call. submit() encodes the payload in the caller's thread (so an unpicklable
argument raises TypeError there), registers a _Call and queues it. gRPC's request
iterator (_requests, run by gRPC's sending thread) drains the queue into batches: all
that is waiting, up to MAX_BATCH_TASKS / MAX_BATCH_BYTES per StreamRequest. It keeps at
most MAX_INFLIGHT_BATCHES batches unanswered: a lone call goes out at once (latency),
and under load the calls that arrive while the daemon commits one batch share the next
message and journal commit (throughput, like Nagle). The dispatcher thread reads the
responses: an `accepted` entry gives the ids of its batch in order, a result completes
the future of its id (a result that arrives before its ids is kept until they come).
A map with chunksize > 1 runs each chunk as one task (_call_chunk) and splits it back.

Failure handling. Every call carries an idempotency key (executor prefix + counter), so
sending it again never creates a second task. When the stream breaks (daemon restarted,
UNAVAILABLE, connection lost), every unfinished call, accepted or not, is sent again on
a new stream once the channel is ready again: an accepted task is found by its key
(its result comes at once if it is final already), the others are submitted. A batch
refused by the daemon (Accepted.code != 0: no exec privilege, queue full, bad input)
fails exactly its futures with the mapped taskrt error. A call error that a resend
cannot cure (PERMISSION_DENIED, UNAUTHENTICATED, ...), a daemon that stays unreachable
for `connect_timeout`, or a stream that keeps breaking without answering, sets the
exception on every unfinished future: a future is never lost and never hangs.

Threading: Executor, its options() views and its futures may be used from any thread;
the dispatcher's state is guarded by one lock (_Dispatcher._lock). Results are decoded and
futures completed on the dispatcher thread, so done-callbacks run there (as they run on
ProcessPoolExecutor's management thread): keep them short.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import inspect
import itertools
import os
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Mapping

from taskrt import _connection, _errors, _registry, _wire
from taskrt._types import Task

MAX_BATCH_TASKS = 1000
MAX_BATCH_BYTES = 8 << 20  # well under the 64 MiB message limit; one task is always sent
MAX_INFLIGHT_BATCHES = 2
# A stream that breaks this many times in a row without any answer is not retried.
MAX_BARREN_STREAMS = 5
CANCEL_ID_WAIT_S = 10.0  # how long cancel() waits for the id of a sent task

_CLASS_VALUES = {"auto": 0, "cpu": 1, "io": 2}
# task.proto TaskState values
_SUCCEEDED, _FAILED, _CANCELLED, _QUEUED = 3, 4, 5, 1


# --- errors ---------------------------------------------------------------------------

class RemoteError(Exception):
    """A call raised an exception that could not be rebuilt here (its class is not
    importable in the caller, or it does not unpickle): its type name, message and the
    remote traceback text."""

    def __init__(self, type: str, message: str, traceback: str) -> None:
        super().__init__("%s: %s" % (type, message))
        self.type = type
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return "%s: %s\n\nRemote traceback:\n%s" % (self.type, self.message, self.traceback)


class _RemoteTraceback(Exception):
    """The __cause__ of a re-raised exception: its str is the remote traceback, so an
    uncaught exception prints where it was raised in the worker (as ProcessPoolExecutor's
    _RemoteTraceback does)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return '\n"""\n%s"""' % self.tb


def _error_for(code: int, message: str) -> Exception:
    """The taskrt error of a gRPC status code, with the daemon's message."""
    return _errors.from_code(code, message)


def _task_view(result_pb: Any, spec_pb: Any) -> Task:
    return Task.from_result(result_pb, spec_pb)


# --- helpers the worker imports by reference ------------------------------------------

def _call_chunk(fn: Callable, chunk: list[tuple]) -> list:
    """Runs fn(*args) for each args of `chunk` in order (one task of a map chunk)."""
    return [fn(*args) for args in chunk]


async def _call_chunk_async(fn: Callable, chunk: list[tuple]) -> list:
    """The async variant: the chunk's calls run concurrently on the worker's loop."""
    return list(await asyncio.gather(*(fn(*args) for args in chunk)))


def _chunks(iterables: tuple[Iterable, ...], chunksize: int) -> Iterator[list[tuple]]:
    it = zip(*iterables)
    while True:
        chunk = list(itertools.islice(it, chunksize))
        if not chunk:
            return
        yield chunk


# --- options and futures --------------------------------------------------------------

@dataclass(frozen=True)
class _Options:
    task_class: str | None = None  # None: the decorator's hint, else the executor's class
    timeout: float | None = None
    max_attempts: int = 0
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)


def _check_class(task_class: str) -> str:
    if task_class not in _CLASS_VALUES:
        raise ValueError("task_class must be 'auto', 'cpu' or 'io', not %r" % (task_class,))
    return task_class


class TaskFuture(concurrent.futures.Future):
    """A concurrent.futures.Future of one task.

    task_id: the daemon's id once it accepted the task (else None).
    task: once done, the taskrt Task view of the result (task.decision.executor says
    where it ran; taskrt.explain(future.task)), else None.
    cancel(): True while the task has not started (not yet sent, or still queued in the
    daemon: it is cancelled there), False once it runs or is done. A task cancelled in
    the daemon by someone else (`taskrt cancel ID`) makes a cancelled future too.
    result() raises what the function raised (its remote traceback as __cause__),
    taskrt.RemoteError when that exception cannot be rebuilt here, taskrt.TaskFailed
    (TaskTimedOut) when the task failed without one (its worker crashed or was killed,
    it timed out), a taskrt.Error (PermissionDenied, InvalidArgument, Unavailable, ...)
    when the daemon refused or could not be reached.
    """

    def __init__(self, dispatcher: "_Dispatcher", call: "_Call") -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._call = call
        self._task: Any = None

    @property
    def task_id(self) -> str | None:
        return self._call.task_id

    @property
    def task(self) -> Any:
        if self._task is None and self._call.result_pb is not None:
            self._task = _task_view(self._call.result_pb, self._call.spec_pb())
        return self._task

    def cancel(self) -> bool:
        if self.done():
            return self.cancelled()
        return self._dispatcher.cancel(self._call)

    def _cancel_locally(self) -> bool:
        return concurrent.futures.Future.cancel(self)


class _Call:
    """One call: what to send (kept to send it again), and its future."""
    __slots__ = ("fields", "size", "future", "task_id", "sent", "finished", "result_pb")

    def __init__(self, fields: dict, dispatcher: "_Dispatcher") -> None:
        self.fields = fields  # TaskSpec fields, idempotency key included
        self.size = len(fields["input"])
        self.future = TaskFuture(dispatcher, self)
        self.task_id: str | None = None
        self.sent = False
        self.finished = False
        self.result_pb: Any = None

    def spec_pb(self) -> Any:
        from taskrt.v1 import task_pb2
        return task_pb2.TaskSpec(**self.fields)


class _StreamState:
    """What one Stream call has sent and not yet had answered."""

    def __init__(self) -> None:
        self.unanswered: dict[int, list[_Call]] = {}  # tag -> batch
        self.dead = False  # the call ended: the request iterator must stop
        self.answered_any = False


class _Fatal(Exception):
    """An error no resend can cure: every unfinished future gets `error`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


# --- the dispatcher -------------------------------------------------------------------

class _Dispatcher:
    """The stream, the queue of calls to send and the calls awaiting results.

    Threading: the public methods are called from any thread; _run is the dispatcher
    thread and _requests gRPC's sending thread. All state is guarded by _lock; futures
    are completed outside it. Two conditions share it, so that a finished call does not
    wake the sender: _cv (something to send, the stream ended, closing) and _changed (a
    call finished or got its id: submit() waiting under max_pending, cancel()).
    """

    def __init__(self, ep: _connection.Endpoint, *, batch_window: float,
                 max_pending: int | None, connect_timeout: float) -> None:
        from taskrt.v1 import service_pb2, service_pb2_grpc  # generated by the build
        self._pb = service_pb2
        self._ep = ep
        self._channel = _connection.open_channel(ep)
        self._stub = service_pb2_grpc.TaskServiceStub(self._channel)
        self._batch_window = batch_window
        self._max_pending = max_pending
        self._connect_timeout = connect_timeout
        self._pid = os.getpid()
        self._key_prefix = "py-%s-" % uuid.uuid4().hex
        self._keys = itertools.count(1)
        self._tags = itertools.count(1)
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._changed = threading.Condition(self._lock)
        # Guarded by _lock:
        self._queue: deque[_Call] = deque()  # to send (cancelled ones are skipped)
        self._by_id: dict[str, _Call] = {}   # accepted, result not yet received
        self._early: dict[str, Any] = {}     # results that came before their ids
        self._unfinished: set[_Call] = set()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._handlers: set[str] | None = None  # python handlers the daemon registered

    # -- called by the executor (any thread) --

    def new_key(self) -> str:
        return self._key_prefix + str(next(self._keys))

    def add(self, fields: dict) -> TaskFuture:
        if os.getpid() != self._pid:
            raise RuntimeError(
                "this taskrt.Executor was created in process %d, before a fork: its stream "
                "and thread do not exist in this child (pid %d); create an Executor in the "
                "child" % (self._pid, os.getpid()))
        call = _Call(fields, self)
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            while self._max_pending is not None and len(self._unfinished) >= self._max_pending:
                self._changed.wait()
                if self._closing:
                    raise RuntimeError("cannot schedule new futures after shutdown")
            self._unfinished.add(call)
            self._queue.append(call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskrt-executor",
                                                daemon=True)
                self._thread.start()
            # The sender waits for a first call, or for a full batch (batch_window);
            # waking it for every call would cost a thread switch each.
            if len(self._queue) in (1, MAX_BATCH_TASKS):
                self._cv.notify_all()
        return call.future

    def registered(self, name: str) -> bool:
        """Whether the daemon has the Python handler `name` (asked once, then cached)."""
        with self._lock:
            known = self._handlers
        if known is None:
            try:
                response = self._stub.ListHandlers(self._pb.ListHandlersRequest(),
                                                   metadata=self._ep.metadata, timeout=10)
                known = {h.name for h in response.handlers}
            except Exception:  # grpc.RpcError: send by reference instead; not cached
                return False
            with self._lock:
                self._handlers = known
        return name in known

    def cancel(self, call: _Call) -> bool:
        with self._lock:
            if call.finished:
                return call.future.cancelled()
            if not call.sent:
                self._finish_locked(call)
                cancel_now = True
            else:
                cancel_now = False
                self._changed.wait_for(lambda: call.task_id is not None or call.finished,
                                  CANCEL_ID_WAIT_S)
                if call.finished:
                    return call.future.cancelled()
                task_id = call.task_id
        if cancel_now:
            return call.future._cancel_locally()
        if task_id is None:
            return False
        return task_id in self._cancel_queued([call])

    def _cancel_queued(self, calls: list[_Call]) -> set[str]:
        """Cancels those of `calls` (accepted) still queued in the daemon and marks their
        futures cancelled; returns their ids. A task that started meanwhile runs on."""
        by_id = {c.task_id: c for c in calls if c.task_id is not None}
        if not by_id:
            return set()
        try:
            got = self._stub.Get(self._pb.GetRequest(task_ids=list(by_id)),
                                 metadata=self._ep.metadata, timeout=10)
            queued = [t.id for t in got.tasks if t.state == _QUEUED]
            if not queued:
                return set()
            done = self._stub.Cancel(self._pb.CancelRequest(task_ids=queued),
                                     metadata=self._ep.metadata, timeout=10)
        except Exception:  # grpc.RpcError: the task is not known cancelled
            return set()
        cancelled = set()
        for t in done.tasks:
            call = by_id.get(t.id)
            if t.state != _CANCELLED or call is None:
                continue
            with self._lock:
                if not call.finished:
                    self._finish_locked(call)
            # Its CANCELLED result may have come first: then the future is cancelled.
            call.future._cancel_locally()
            if call.future.cancelled():
                cancelled.add(t.id)
        return cancelled

    def shutdown(self, wait: bool, cancel_futures: bool) -> None:
        if os.getpid() != self._pid:
            return  # a forked child: nothing of this executor runs here
        with self._lock:
            self._closing = True
            to_cancel: list[_Call] = []
            accepted: list[_Call] = []
            if cancel_futures:
                to_cancel = [c for c in self._queue if not c.finished]
                for c in to_cancel:
                    self._finish_locked(c)
                self._queue.clear()
                accepted = [c for c in self._by_id.values() if not c.finished]
            thread = self._thread
            self._cv.notify_all()
            self._changed.notify_all()
        for c in to_cancel:
            c.future._cancel_locally()
        self._cancel_queued(accepted)
        if wait and thread is not None:
            thread.join()
        if thread is None or wait:
            self._channel.close()

    # -- the dispatcher thread --

    def _run(self) -> None:
        barren = 0
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closing:
                        self._cv.wait()
                    if not self._unfinished and self._closing:
                        return
                self._wait_connected()
                stream = _StreamState()
                error = self._one_stream(stream)
                if error is None:
                    with self._lock:
                        owed = sum(1 for c in self._unfinished if c.sent)
                    if not owed:
                        barren = 0
                        continue
                    error = "the stream ended with %d results missing" % owed
                self._resend_unfinished(stream)
                barren = 0 if stream.answered_any else barren + 1
                if barren >= MAX_BARREN_STREAMS:
                    raise _Fatal(_error_for(14, "the stream to taskrtd at %s broke %d times "
                                            "without an answer (last: %s); check the daemon's "
                                            "log" % (self._ep.target, barren, error)))
                time.sleep(min(0.05 * 2 ** barren, 1.0))
        except _Fatal as fatal:
            self._fail_all(fatal.error)
        except BaseException as e:  # a bug: never leave a future hanging
            self._fail_all(RuntimeError("taskrt.Executor's dispatcher failed: %r" % (e,)))
            raise
        finally:
            if self._closing:
                self._channel.close()

    def _wait_connected(self) -> None:
        import grpc
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self._connect_timeout)
        except grpc.FutureTimeoutError:
            raise _Fatal(_error_for(14, _connection.not_running_message(
                self._ep.target, self._connect_timeout))) from None

    def _one_stream(self, stream: _StreamState) -> str | None:
        """Runs one Stream call to its end: None when it ended OK, else why it broke
        (resend); raises _Fatal for an error that a resend cannot cure."""
        import grpc
        call = self._stub.Stream(self._requests(stream), metadata=self._ep.metadata)
        try:
            for response in call:
                stream.answered_any = True
                done: list[tuple[_Call, Any]] = []
                with self._lock:
                    for accepted in response.accepted:
                        self._on_accepted_locked(stream, accepted, done)
                    for result in response.results:
                        self._on_result_locked(result, done)
                for c, result in done:
                    self._complete(c, result)
            return None
        except grpc.RpcError as e:
            code = e.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                        grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
                        grpc.StatusCode.ABORTED):
                return "%s: %s" % (code.name, e.details())
            raise _Fatal(_error_for(code.value[0], e.details() or code.name)) from None
        finally:
            with self._lock:
                stream.dead = True
                self._cv.notify_all()
            call.cancel()

    def _requests(self, stream: _StreamState) -> Iterator[Any]:
        """The StreamRequests of one call (run by gRPC's sending thread)."""
        while True:
            with self._lock:
                while True:
                    if stream.dead:
                        return
                    if self._queue and len(stream.unanswered) < MAX_INFLIGHT_BATCHES:
                        break
                    if self._closing and not self._queue:
                        return
                    self._cv.wait()
                end = time.monotonic() + self._batch_window
                while len(self._queue) < MAX_BATCH_TASKS and not stream.dead:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                batch = self._take_batch_locked()
                if not batch:
                    continue
                tag = next(self._tags)
                stream.unanswered[tag] = batch
            request = self._pb.StreamRequest(tag=tag)
            add = request.tasks.add
            for c in batch:
                add(**c.fields)
            yield request

    def _take_batch_locked(self) -> list[_Call]:
        batch: list[_Call] = []
        size = 0
        while self._queue and len(batch) < MAX_BATCH_TASKS:
            c = self._queue[0]
            if c.finished:  # cancelled before it was sent
                self._queue.popleft()
                continue
            if batch and size + c.size > MAX_BATCH_BYTES:
                break
            self._queue.popleft()
            c.sent = True
            batch.append(c)
            size += c.size
        return batch

    def _on_accepted_locked(self, stream: _StreamState, accepted: Any,
                            done: list[tuple[_Call, Any]]) -> None:
        batch = stream.unanswered.pop(accepted.tag, None)
        if batch is None:
            return
        if self._queue:
            self._cv.notify_all()  # one fewer batch in flight
        self._changed.notify_all()  # ids for cancel()
        if accepted.code != 0:
            error = _error_for(accepted.code, accepted.message)
            for c in batch:
                if not c.finished:
                    self._finish_locked(c)
                    done.append((c, error))
            return
        for c, task_id in zip(batch, accepted.task_ids):
            c.task_id = task_id
            self._by_id[task_id] = c
            early = self._early.pop(task_id, None)
            if early is not None:
                self._on_result_locked(early, done)

    def _on_result_locked(self, result: Any, done: list[tuple[_Call, Any]]) -> None:
        c = self._by_id.pop(result.id, None)
        if c is None:
            self._early[result.id] = result
            return
        if c.finished:  # cancelled meanwhile
            return
        self._finish_locked(c)
        c.result_pb = result
        done.append((c, result))

    def _finish_locked(self, c: _Call) -> None:
        c.finished = True
        self._unfinished.discard(c)
        self._changed.notify_all()

    def _resend_unfinished(self, stream: _StreamState) -> None:
        """After a broken stream: every unfinished call goes out again (its idempotency key
        finds the task if the daemon had accepted it), ahead of calls not yet sent."""
        with self._lock:
            again = [c for c in self._unfinished if c.sent]
            again.sort(key=lambda c: int(c.fields["idempotency_key"].rsplit("-", 1)[1]))
            for c in again:
                if c.task_id is not None:
                    self._by_id.pop(c.task_id, None)
                c.sent = False
            self._queue.extendleft(reversed(again))
            self._early.clear()

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            calls = list(self._unfinished)
            for c in calls:
                self._finish_locked(c)
            self._queue.clear()
            self._by_id.clear()
            self._early.clear()
            self._thread = None  # the thread ends; a later submit starts a new one
        for c in calls:
            _set_exception(c.future, error)

    # -- completing a future (outside the lock) --

    @staticmethod
    def _complete(c: _Call, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            _set_exception(c.future, outcome)
            return
        result = outcome
        if result.state == _SUCCEEDED:
            try:
                decoded = _wire.decode_result(result.output)
            except _wire.WireError as e:
                _set_exception(c.future, e)
                return
            if decoded["ok"]:
                try:
                    c.future.set_result(decoded["value"])
                except concurrent.futures.InvalidStateError:
                    pass
                return
            _set_exception(c.future, _exception_of(decoded))
        elif result.state == _CANCELLED:
            c.future._cancel_locally()
        elif result.state == _FAILED and _wire.is_pickled(result.output):
            try:
                decoded = _wire.decode_result(result.output)
            except _wire.WireError:
                _set_exception(c.future, _errors.task_failed(c.future.task))
                return
            _set_exception(c.future, _exception_of(decoded))
        else:  # crashed, timed out, refused...: the daemon's error says what happened
            _set_exception(c.future, _errors.task_failed(c.future.task))


def _exception_of(decoded: dict) -> BaseException:
    exc = decoded.get("exc")
    tb = decoded.get("traceback", "")
    if isinstance(exc, BaseException):
        exc.__cause__ = _RemoteTraceback(tb)
        return exc
    return RemoteError(decoded.get("type", "?"), decoded.get("message", ""), tb)


def _set_exception(future: concurrent.futures.Future, error: BaseException) -> None:
    try:
        future.set_exception(error)
    except concurrent.futures.InvalidStateError:  # cancelled meanwhile
        pass


# --- the public API -------------------------------------------------------------------

class _Submitter:
    """submit/map/run with a set of options (the Executor itself, or an options() view)."""

    _executor: "Executor"
    _opts: _Options

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Schedules fn(*args, **kwargs) as a task; returns its Future.

        Raises TypeError at once when fn or an argument cannot be pickled, RuntimeError
        after shutdown.
        """
        return self._executor._submit(self._opts, fn, args, kwargs)

    def map(self, fn: Callable, *iterables: Iterable, timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]:
        """fn over the zipped iterables, as concurrent.futures.Executor.map: all calls
        are submitted now, the results come in order; TimeoutError when a result is not
        there `timeout` seconds after this call. chunksize > 1 sends that many calls as
        one task (fewer, larger messages for many short calls)."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        end = None if timeout is None else time.monotonic() + timeout
        if chunksize == 1:
            fs = [self.submit(fn, *args) for args in zip(*iterables)]
            return _results(fs, end, chunked=False)
        helper = _call_chunk_async if inspect.iscoroutinefunction(fn) else _call_chunk
        opts = self._opts
        if opts.task_class is None:
            definition = _registry.definition(fn)
            if definition is not None and definition.hint != "auto":
                opts = replace(opts, task_class=definition.hint)
        name = _wire.function_name(fn)
        if _wire._by_reference(fn) is None:
            # By value: the function is the payload's fn, so the worker checks versions.
            chunk_fn: Callable = functools.partial(helper, fn)
            fs = [self._executor._submit(opts, chunk_fn, (chunk,), {}, function=name)
                  for chunk in _chunks(iterables, chunksize)]
        else:
            fs = [self._executor._submit(opts, helper, (fn, chunk), {}, function=name)
                  for chunk in _chunks(iterables, chunksize)]
        return _results(fs, end, chunked=True)

    async def run(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Any:
        """await the result of fn(*args, **kwargs) (the loop is not blocked)."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))


def _results(fs: list[TaskFuture], end: float | None, chunked: bool) -> Iterator[Any]:
    def iterate() -> Iterator[Any]:
        try:
            fs.reverse()  # pop from the end: a yielded future is no longer referenced
            while fs:
                f = fs.pop()
                value = f.result() if end is None else f.result(end - time.monotonic())
                if chunked:
                    yield from value
                else:
                    yield value
        finally:
            for f in fs:
                f.cancel()
    return iterate()


class Executor(_Submitter, concurrent.futures.Executor):
    """A concurrent.futures.Executor whose calls run in taskrtd's Python workers.

    target, and the connection keywords socket, token, token_file, tls, tls_ca_file,
    tls_server_name: where taskrtd is (as taskrt.Client; default: the per-user socket).
    task_class: "auto" (the daemon decides: a process for CPU-bound code, a thread or
    the asyncio loop for I/O-bound code, learned per function), "cpu" or "io"; a
    function decorated with @taskrt.task(hint=...) uses its hint instead; options()
    overrides both for some calls.
    timeout: seconds a task may run (None: the daemon's default); past it the task
    fails with taskrt.TaskFailed (a CPU worker is killed with it).
    max_attempts: runs allowed for a task whose worker crashed or timed out (0 = 1).
    labels: attached to every task (taskrt list / watch show them).
    max_pending: submit() blocks while that many calls are unfinished (None: no bound).
    batch_window: seconds the dispatcher waits after a call for more to batch (0: none;
    batching still happens under load, see the module docstring).
    connect_timeout: how long to wait for an unreachable daemon (at the first call and
    after a restart) before failing the unfinished futures with taskrt.Unavailable.

    Calling a function that needs privilege: py.call runs caller-chosen code, so only the
    daemon's uid, admins and uids granted by `taskrtd --allow-exec` may submit; others
    get taskrt.PermissionDenied from result().
    """

    def __init__(self, target: str | None = None, *, task_class: str = "auto",
                 timeout: float | None = None, max_attempts: int = 0,
                 labels: Mapping[str, str] | None = None, max_pending: int | None = None,
                 batch_window: float = 0.0, connect_timeout: float = 10.0,
                 **connection: Any) -> None:
        _check_class(task_class)
        if max_pending is not None and max_pending < 1:
            raise ValueError("max_pending must be >= 1 or None")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0 seconds or None")
        self._task_class = task_class
        self._opts = _Options(timeout=timeout, max_attempts=max_attempts,
                              labels=dict(labels or {}))
        self._executor = self
        self._dispatcher = _Dispatcher(_connection.endpoint(target, **connection),
                                       batch_window=batch_window, max_pending=max_pending,
                                       connect_timeout=connect_timeout)
        _live.add(self)

    def options(self, *, task_class: str | None = None, timeout: float | None = None,
                max_attempts: int | None = None, priority: int | None = None,
                labels: Mapping[str, str] | None = None) -> "ExecutorOptions":
        """A view of this executor whose calls use these options (the rest as the
        executor's); it shares the executor's stream, shutdown and futures:

            ex.options(task_class="io", timeout=5).submit(fetch, url)
        """
        o = self._opts
        return ExecutorOptions(self, _Options(
            task_class=_check_class(task_class) if task_class is not None else None,
            timeout=timeout if timeout is not None else o.timeout,
            max_attempts=max_attempts if max_attempts is not None else o.max_attempts,
            priority=priority if priority is not None else o.priority,
            labels={**o.labels, **(labels or {})}))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As concurrent.futures: no new calls (submit raises RuntimeError); with
        cancel_futures, calls not yet started are cancelled (in the daemon too); with
        wait, returns once every pending future is done. Idempotent."""
        self._dispatcher.shutdown(wait, cancel_futures)

    def _submit(self, opts: _Options, fn: Callable, args: tuple, kwargs: dict, *,
                function: str | None = None) -> TaskFuture:
        if not callable(fn):
            raise TypeError("fn must be callable, not %s" % type(fn).__name__)
        task_class = opts.task_class
        definition = _registry.definition(fn)
        handler = None
        if definition is not None:
            if task_class is None and definition.hint != "auto":
                task_class = definition.hint
            if self._dispatcher.registered(definition.name):
                handler = definition.name
                payload = _wire.encode_call(None, args, kwargs)
                if opts.task_class is None:
                    task_class = "auto"  # the daemon applies the handler's hint itself
        if handler is None:
            handler = "py.call_async" if inspect.iscoroutinefunction(fn) else "py.call"
            payload = _wire.encode_call(fn, args, kwargs)
        if task_class is None:
            task_class = self._task_class
        fields: dict[str, Any] = {
            "handler": handler, "input": payload,
            "requested_class": _CLASS_VALUES[task_class],
            "function": function or _wire.function_name(fn),
            "idempotency_key": self._dispatcher.new_key(),
        }
        if opts.timeout is not None:
            fields["timeout_ms"] = max(1, round(opts.timeout * 1000))
        if opts.max_attempts:
            fields["max_attempts"] = opts.max_attempts
        if opts.priority:
            fields["priority"] = opts.priority
        if opts.labels:
            fields["labels"] = dict(opts.labels)
        return self._dispatcher.add(fields)


class ExecutorOptions(_Submitter):
    """Executor.options(...): submit, map and run with other options on the same
    executor."""

    def __init__(self, executor: Executor, opts: _Options) -> None:
        self._executor = executor
        self._opts = opts

    def options(self, **kwargs: Any) -> "ExecutorOptions":
        merged = {"task_class": self._opts.task_class, "timeout": self._opts.timeout,
                  "max_attempts": self._opts.max_attempts, "priority": self._opts.priority}
        merged.update({k: v for k, v in kwargs.items() if k != "labels"})
        view = self._executor.options(**merged, labels={**self._opts.labels,
                                                        **(kwargs.get("labels") or {})})
        return view


# Like ThreadPoolExecutor: at interpreter exit, wait for the calls still pending.
_live: "weakref.WeakSet[Executor]" = weakref.WeakSet()


def _at_exit() -> None:
    for ex in list(_live):
        ex.shutdown(wait=True)


def _forget_in_child() -> None:
    # A forked child (multiprocessing, ProcessPoolExecutor) has the parent's executors
    # but not their threads, and gRPC's state is not usable there: it must not wait
    # for them (nor close their channels) when it exits.
    _live.clear()


os.register_at_fork(after_in_child=_forget_in_child)


try:
    threading._register_atexit(_at_exit)  # type: ignore[attr-defined]  # before thread joins
except AttributeError:  # pragma: no cover - not CPython
    atexit.register(_at_exit)
