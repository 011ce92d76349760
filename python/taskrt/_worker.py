"""The Python worker: runs Python tasks for taskrtd. Started by the daemon, never by hand:

    python3 -m taskrt._worker --pool cpu|io --fd 3 --threads N --max-output-bytes N
        [--memory-limit BYTES] [--module MOD]...

It is the Python twin of taskrt-worker (worker/worker.cc) and speaks the same protocol
(proto/taskrt/v1/worker.proto): length-prefixed WorkerFrames over the socket on --fd; a
WorkerHello first (with `error` set, then exit 1, when a --module does not import), then
RunTask / CancelTask in, TaskDone out. It exits 0 when the daemon closes the socket and
dies with the daemon (PR_SET_PDEATHSIG).

Handlers: py.call and py.call_async run a function sent in a call payload
(taskrt._wire: by reference or by value); each @taskrt.task function defined in a
--module (or its submodules) is a handler of its own name, called with JSON or with a
call payload of its arguments.

The pieces, in order: the GIL probe's re-exec (before the other imports); start-up
(main: limits, the --module imports, hello);
framing (encode_frame, FrameReader); handlers (Handler, load_handlers); one task's call
(prepare, Outcome, succeeded, failed, Meter); the Worker, which owns the socket and runs
tasks.

Threading: in the cpu pool, the main thread alone reads tasks, runs them one at a time
in the order they came (an async function under asyncio.run) and writes each result. In the io pool, the
main thread runs an asyncio loop that alone reads and writes the socket, starts tasks
and runs async tasks; sync tasks run on a ThreadPoolExecutor of --threads threads and
hand their results back with loop.call_soon_threadsafe.

GIL wait: _gilprobe.so (taskrt/_gilprobe.cc), preloaded by re-executing the worker with
LD_PRELOAD (TASKRT_GIL_PROBE=0 turns it off), counts how long each thread waited for the
GIL; each TaskDone carries its task's share, so the daemon learns from cpu / (wall - gil)
rather than mistaking four CPU-bound threads at cpu/wall = 0.25 for I/O.
"""

from __future__ import annotations

import ctypes
import os
import sys

PROBE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_gilprobe.so")
PROBE_ENV = "TASKRT_GIL_PROBE"  # "0": do not preload the GIL probe
# Set across the worker's own re-exec (never loop), holding the LD_PRELOAD to restore.
_REEXEC_ENV = "TASKRT_GIL_PROBE_REEXEC"


def _probe_loaded() -> bool:
    return hasattr(ctypes.PyDLL(None), "taskrt_gil_wait_ns")


def _preload_gil_probe() -> None:
    """Re-executes this worker with the GIL probe preloaded, unless it is loaded already,
    turned off (TASKRT_GIL_PROBE=0), missing, or this is the re-executed worker.

    It runs before the worker's other imports, which cost more than the interpreter's
    start. The daemon's socket survives the exec: the daemon hands it over without
    FD_CLOEXEC (posix_spawn's dup2), Python leaves inherited descriptors alone, and the
    worker sets FD_CLOEXEC only after this.
    """
    if _REEXEC_ENV in os.environ:
        if not _probe_loaded():
            sys.stderr.write("taskrt python worker[%d]: the GIL probe %s did not load (see the "
                             "loader's message above); the tasks' GIL wait is not measured\n" % (
                                 os.getpid(), PROBE_PATH))
        # Done: tasks' child processes get the caller's LD_PRELOAD, not the probe.
        previous = os.environ.pop(_REEXEC_ENV)
        if previous:
            os.environ["LD_PRELOAD"] = previous
        else:
            os.environ.pop("LD_PRELOAD", None)
        return
    if os.environ.get(PROBE_ENV) == "0" or _probe_loaded() or not os.path.exists(PROBE_PATH):
        return
    env = dict(os.environ)
    previous = env.get("LD_PRELOAD", "")
    env[_REEXEC_ENV] = previous
    env["LD_PRELOAD"] = PROBE_PATH + (" " + previous if previous else "")
    try:
        os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)
    except OSError as e:
        sys.stderr.write("taskrt python worker[%d]: cannot re-execute %s to preload the GIL "
                         "probe (%s); running without it\n" % (os.getpid(), sys.executable, e))


if __name__ == "__main__":
    _preload_gil_probe()

# The worker proper, imported once the probe is in place.
import argparse  # noqa: E402
import asyncio  # noqa: E402
import collections  # noqa: E402
import concurrent.futures  # noqa: E402
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import types  # noqa: E402
from typing import Any, Callable  # noqa: E402

from taskrt import _registry, _wire  # noqa: E402
from taskrt.v1 import service_pb2, task_pb2, worker_pb2  # noqa: E402

# Limits of common/frame.h, which the daemon enforces.
MAX_FRAME_BYTES = 256 << 20
MAX_ERROR_BYTES = 64 << 10
FRAME_OVERHEAD_BYTES = MAX_ERROR_BYTES + (1 << 20)
MAX_OUTPUT_BYTES_LIMIT = MAX_FRAME_BYTES - FRAME_OVERHEAD_BYTES
DEFAULT_MAX_OUTPUT_BYTES = 16 << 20
TRACEBACK_FRAMES = 50  # the innermost frames kept in an error's traceback
# The cpu pool sends the results of short tasks waiting in it together: at most this
# many, held at most this long (the daemon sends only short tasks in advance).
SERIAL_BATCH_FRAMES = 64
SERIAL_BATCH_SECONDS = 0.001

_HINTS = {"auto": task_pb2.TASK_CLASS_AUTO, "cpu": task_pb2.TASK_CLASS_CPU,
          "io": task_pb2.TASK_CLASS_IO}
_LENGTH = struct.Struct("<I")


def _log(message: str) -> None:
    sys.stderr.write("taskrt python worker[%d]: %s\n" % (os.getpid(), message))
    sys.stderr.flush()


def bounded_utf8(text: str, max_bytes: int = MAX_ERROR_BYTES) -> str:
    """`text` as at most `max_bytes` of valid UTF-8, cut like common/util.h BoundedUtf8."""
    data = text.encode("utf-8", "replace")  # lone surrogates become '?'
    if len(data) <= max_bytes:
        return data.decode("utf-8")
    note = "... [cut: %d bytes in all]" % len(data)
    return data[:max_bytes - len(note)].decode("utf-8", "ignore") + note


# --- Start-up -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Options:
    pool: str              # "cpu": one task at a time; "io": a thread pool and the loop
    fd: int                # the daemon's socket
    threads: int           # thread-pool size of the io pool
    max_output_bytes: int  # the largest result sent; larger ones fail OUTPUT_TOO_LARGE
    memory_limit: int      # RLIMIT_AS in bytes, 0 = none
    modules: tuple[str, ...]  # imported for their @taskrt.task functions


def parse_options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python3 -m taskrt._worker",
        description="Runs Python tasks for taskrtd. Started by the daemon with a connected "
                    "socket on --fd; running it by hand is only useful for debugging.")
    parser.add_argument("--pool", choices=("cpu", "io"), required=True)
    parser.add_argument("--fd", type=int, required=True, help="the daemon's socket")
    parser.add_argument("--threads", type=int, default=1, help="thread-pool size (io pool)")
    parser.add_argument("--max-output-bytes", type=int, default=DEFAULT_MAX_OUTPUT_BYTES)
    parser.add_argument("--memory-limit", type=int, default=0,
                        help="address-space limit in bytes (0 = none)")
    parser.add_argument("--module", action="append", default=[],
                        help="module whose @taskrt.task functions to serve (repeatable)")
    a = parser.parse_args(argv)
    if not 1 <= a.threads <= 4096:
        parser.error("--threads must be in [1, 4096], not %d" % a.threads)
    if not 1 <= a.max_output_bytes <= MAX_OUTPUT_BYTES_LIMIT:
        parser.error("--max-output-bytes must be in [1, %d], not %d" % (
            MAX_OUTPUT_BYTES_LIMIT, a.max_output_bytes))
    return Options(pool=a.pool, fd=a.fd, threads=a.threads, max_output_bytes=a.max_output_bytes,
                   memory_limit=max(0, a.memory_limit), modules=tuple(a.module))


def _die_with_parent() -> None:
    """Be killed when the daemon dies, even before it can close our socket."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() == 1:  # the daemon died before prctl
        os._exit(0)


class GilProbe:
    """The calling thread's GIL wait, when _gilprobe.so is loaded (else `measured` is
    False and wait_ns() is 0). Read through PyDLL: the call keeps the GIL, so reading
    the counter adds no wait of its own."""

    def __init__(self):
        try:
            self._read = ctypes.PyDLL(None).taskrt_gil_wait_ns
            self._read.restype = ctypes.c_uint64
            self._read.argtypes = ()
        except AttributeError:
            self._read = None
        self.measured = self._read is not None

    def wait_ns(self) -> int:
        return self._read() if self._read is not None else 0


def _limit_memory(limit: int) -> None:
    if limit > 0:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError) as e:
            _log("cannot set the memory limit: %s" % e)


def main(argv: list[str] | None = None) -> None:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    _die_with_parent()
    _limit_memory(options.memory_limit)
    try:
        sock = socket.socket(fileno=options.fd)
    except OSError as e:
        _log("--fd %d is not the daemon's socket: %s" % (options.fd, e))
        os._exit(2)
    os.set_inheritable(options.fd, False)  # tasks' child processes must not inherit it
    handlers, error = load_handlers(options.modules)
    hello = worker_pb2.WorkerFrame()
    hello.hello.pid = os.getpid()
    hello.hello.error = error
    hello.hello.runtime = "Python %s (%s), GIL probe %s" % (
        platform.python_version(), sys.executable,
        "on" if _probe_loaded() else "off (TASKRT_GIL_PROBE=0, or no taskrt/_gilprobe.so)")
    for handler in handlers.values():
        hello.hello.handlers.append(handler.info())
    try:
        sock.sendall(encode_frame(hello))
    except OSError as e:
        _log("cannot greet the daemon: %s" % e)
        os._exit(1)
    if error:
        os._exit(1)
    Worker(options, handlers, GilProbe(), sock).run()


# --- Framing --------------------------------------------------------------------------

def encode_frame(frame: worker_pb2.WorkerFrame) -> bytes:
    body = frame.SerializeToString()
    return _LENGTH.pack(len(body)) + body


class FrameError(Exception):
    """A corrupt stream from the daemon."""


class FrameReader:
    """Splits the daemon's byte stream into WorkerFrames. Not thread-safe."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[worker_pb2.WorkerFrame]:
        self._buffer += data
        frames, offset = [], 0
        while len(self._buffer) - offset >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer, offset)
            if length > MAX_FRAME_BYTES:
                raise FrameError("frame of %d bytes exceeds the limit of %d" % (
                    length, MAX_FRAME_BYTES))
            end = offset + _LENGTH.size + length
            if len(self._buffer) < end:
                break
            frame = worker_pb2.WorkerFrame()
            try:
                frame.ParseFromString(bytes(self._buffer[offset + _LENGTH.size:end]))
            except Exception as e:
                raise FrameError("unparsable frame of %d bytes: %s" % (length, e)) from e
            frames.append(frame)
            offset = end
        del self._buffer[:offset]
        return frames


# --- Handlers -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Handler:
    name: str
    hint: int            # a TaskClass
    is_async: bool       # runs on the loop (io pool)
    description: str
    source: str          # "builtin" or "python:MODULE"
    fn: Callable | None  # None: py.call*, the payload brings the function

    def info(self) -> service_pb2.HandlerInfo:
        return service_pb2.HandlerInfo(
            name=self.name, hint=self.hint, description=self.description, source=self.source,
            runtime="python", privileged=self.fn is None, **{"async": self.is_async})


BUILTINS = (
    Handler("py.call", task_pb2.TASK_CLASS_AUTO, False,
            "Calls a Python function with Python arguments (taskrt.Executor.submit): by "
            "reference, or by value for lambdas and closures", "builtin", None),
    Handler("py.call_async", task_pb2.TASK_CLASS_IO, True,
            "Awaits an async Python function on the asyncio loop of a Python I/O worker",
            "builtin", None),
)


def _import_failure(module: str, exc: BaseException) -> str:
    # Where in the module's own code (not importlib's or taskrt's) it failed, if it did.
    machinery = ("<frozen ", os.path.dirname(importlib.__file__),
                 os.path.dirname(os.path.abspath(_registry.__file__)))
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(machinery)]
    if isinstance(exc, SyntaxError) and exc.filename:
        frames.append((exc.filename, exc.lineno or 0))
    where = " (at %s:%d)" % frames[-1] if frames else ""
    return ("--module %s does not import: %s%s; fix it, and make it importable by %s "
            "(PYTHONPATH of taskrtd, or install it into that interpreter)" % (
                module, traceback.format_exception_only(type(exc), exc)[-1].strip(), where,
                sys.executable))


def load_handlers(modules: tuple[str, ...]) -> tuple[dict[str, Handler], str]:
    """The built-in handlers and those of `modules`, and the start-up error ("" if none)."""
    handlers = {h.name: h for h in BUILTINS}
    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException as e:  # SystemExit of a module is its failure too
            return handlers, _import_failure(module, e)
        found = [fn for fn in _registry.functions().values()
                 if fn.__module__ == module or fn.__module__.startswith(module + ".")]
        if not found:
            return handlers, ("--module %s defines no @taskrt.task function: decorate the "
                              "functions to serve, or drop the --module" % module)
        for fn in found:
            d = _registry.definition(fn)
            handlers[d.name] = Handler(d.name, _HINTS[d.hint], d.is_async, d.description,
                                       "python:" + module, fn)
    return handlers, ""


# --- One task's call ------------------------------------------------------------------

class InvalidInput(Exception):
    """The task's input cannot be used (FAILURE_KIND_INVALID_INPUT)."""


@dataclasses.dataclass(frozen=True)
class Call:
    fn: Callable
    args: tuple
    kwargs: dict
    pickled: bool  # the output is a result payload (else JSON)

    def label(self) -> str:
        return _wire.function_name(self.fn)


def _decode(data: bytes) -> tuple[Callable | None, tuple, dict]:
    try:
        return _wire.decode_call(data)
    except _wire.WireError as e:
        raise InvalidInput(str(e)) from None


def prepare(handler: Handler, data: bytes) -> Call:
    """What to call for a task's input. Raises InvalidInput."""
    if handler.fn is None:
        fn, args, kwargs = _decode(data)
        if fn is None:
            raise InvalidInput("%s needs a function, but the payload names none (it is for a "
                               "named handler): submit it to that handler" % handler.name)
        return Call(fn, args, kwargs, pickled=True)
    if _wire.is_pickled(data):
        fn, args, kwargs = _decode(data)
        if fn is not None:
            raise InvalidInput(
                "handler '%s' takes JSON or a call payload of its arguments, but this payload "
                "carries the function %s: submit it to py.call" % (
                    handler.name, _wire.function_name(fn)))
        return Call(handler.fn, args, kwargs, pickled=True)
    if not data:
        return Call(handler.fn, (), {}, pickled=False)
    try:
        value = json.loads(data)
    except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
        raise InvalidInput(
            "the input of handler '%s' is not valid JSON (%s): send a JSON document, or "
            "Python arguments as a call payload (taskrt._wire.encode_call(None, args, "
            "kwargs))" % (handler.name, e)) from None
    return Call(handler.fn, (value,), {}, pickled=False)


@dataclasses.dataclass
class Outcome:
    ok: bool = False
    output: bytes = b""
    failure: int = task_pb2.FAILURE_KIND_UNSPECIFIED
    error: str = ""


def succeeded(call: Call, value: Any) -> Outcome:
    if call.pickled:
        try:
            return Outcome(ok=True, output=_wire.encode_result(value))
        except TypeError as e:
            return Outcome(failure=task_pb2.FAILURE_KIND_HANDLER_ERROR, error=str(e),
                           output=_encode_exception(e))
    try:
        return Outcome(ok=True, output=json.dumps(value, separators=(",", ":")).encode())
    except (TypeError, ValueError) as e:
        return Outcome(failure=task_pb2.FAILURE_KIND_HANDLER_ERROR,
                       error="the return value of %s is not JSON-serializable (%s): return "
                             "JSON data, or call it with Python arguments" % (call.label(), e))


def _encode_exception(exc: BaseException) -> bytes:
    try:
        return _wire.encode_exception(exc)
    except Exception:  # str(exc) itself may raise
        return b""


_OWN_FILES = (os.path.abspath(__file__), os.path.dirname(os.path.abspath(asyncio.__file__)))


def _without_own_frames(exc: BaseException) -> BaseException:
    """The exception with the worker's and asyncio's outermost frames cut off its
    traceback, so that it starts where the task's code does."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_OWN_FILES):
        tb = tb.tb_next
    return exc.with_traceback(tb)


@dataclasses.dataclass(eq=False)
class Running:
    """A task the worker holds. Its flags are set on the loop thread, read on the task's."""

    seq: int
    task_id: str
    handler: Handler
    data: bytes
    deadline_us: int
    executor: int  # an Executor
    context: _registry.TaskContext
    peers: int = 0                 # other tasks running when it started
    cancel_requested: bool = False
    timed_out: bool = False
    cancel_hook: Callable[[], None] | None = None  # cancels its coroutine, from any thread

    def cancel(self) -> None:
        self.cancel_requested = True
        self.context._set_cancelled()
        hook = self.cancel_hook
        if hook is not None:
            hook()


def failed(exc: BaseException, call: Call | None, running: Running) -> Outcome:
    """The outcome of a task whose call raised `exc`."""
    label = call.label() if call is not None else "handler '%s'" % running.handler.name
    if isinstance(exc, asyncio.CancelledError) and (running.cancel_requested or running.timed_out):
        return Outcome(failure=task_pb2.FAILURE_KIND_CANCELLED,
                       error="the task passed its deadline and was cancelled" if running.timed_out
                       else "the task was cancelled")
    exc = _without_own_frames(exc)
    output = _encode_exception(exc) if call is not None and call.pickled else b""
    if isinstance(exc, MemoryError):
        return Outcome(failure=task_pb2.FAILURE_KIND_MEMORY_LIMIT, output=output,
                       error="%s ran out of memory (MemoryError): it exceeded the worker's "
                             "memory limit (taskrtd --cpu-memory-limit) or the machine's" % label)
    if isinstance(exc, (SystemExit, KeyboardInterrupt)):
        summary = "%s raised %r; a task cannot stop its worker" % (label, exc)
    else:
        summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__,
                                            limit=-TRACEBACK_FRAMES))
    return Outcome(failure=task_pb2.FAILURE_KIND_HANDLER_ERROR, output=output,
                   error=bounded_utf8(summary + "\n" + tb))


class Meter:
    """CPU time and GIL wait of one task, summed over the stretches it runs on a thread
    (resume/pause around each). In the cpu pool the task is alone in the process, so the
    process CPU time counts too (threads the task started)."""

    def __init__(self, probe: GilProbe, whole_process: bool):
        self._probe = probe
        self._whole_process = whole_process
        self.cpu_ns = self.process_ns = self.gil_ns = 0

    def resume(self) -> None:
        self._thread0 = time.thread_time_ns()
        self._process0 = time.process_time_ns()
        self._gil0 = self._probe.wait_ns()

    def pause(self) -> None:
        self.cpu_ns += time.thread_time_ns() - self._thread0
        self.process_ns += time.process_time_ns() - self._process0
        self.gil_ns += self._probe.wait_ns() - self._gil0

    def cpu_us(self) -> int:
        return (max(self.cpu_ns, self.process_ns) if self._whole_process else self.cpu_ns) // 1000


@types.coroutine
def _metered(coro, meter: Meter):
    """Awaits `coro`, with `meter` running only while `coro` runs (not while it waits).
    The expansion of `yield from coro` (PEP 380) with the meter around each step."""
    inner = coro.__await__()
    send, value = inner.send, None
    while True:
        meter.resume()
        try:
            signal_ = send(value)
        except StopIteration as stop:
            return stop.value
        finally:
            meter.pause()
        try:
            value, send = (yield signal_), inner.send
        except GeneratorExit:
            inner.close()
            raise
        except BaseException as e:
            value, send = e, inner.throw


async def _watched(coro, running: Running):
    """Awaits `coro` in a task that Running.cancel and the deadline can cancel."""
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    running.cancel_hook = lambda: loop.call_soon_threadsafe(task.cancel)
    if running.cancel_requested:  # cancelled before the hook was in place
        task.cancel()
    timer = None
    if running.deadline_us > 0:
        def expire():
            running.timed_out = True
            task.cancel()
        timer = loop.call_later(max(0.0, running.deadline_us / 1e6 - time.time()), expire)
    try:
        return await coro
    finally:
        running.cancel_hook = None
        if timer is not None:
            timer.cancel()


# --- The worker -----------------------------------------------------------------------

class Worker:
    """The event loop and everything it owns. Its state is touched on the loop thread
    only; the pool's threads post their results back with call_soon_threadsafe."""

    def __init__(self, options: Options, handlers: dict[str, Handler], probe: GilProbe,
                 sock: socket.socket):
        self._options = options
        self._handlers = handlers
        self._probe = probe
        self._sock = sock
        self._is_cpu = options.pool == "cpu"
        self._max_output = min(options.max_output_bytes, MAX_OUTPUT_BYTES_LIMIT)
        self._frame_limit = min(MAX_FRAME_BYTES, self._max_output + FRAME_OVERHEAD_BYTES)
        self._loop = asyncio.new_event_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1 if self._is_cpu else options.threads, thread_name_prefix="task")
        self._reader = FrameReader()
        self._running: dict[int, Running] = {}
        self._outbox = bytearray()
        self._outbox_frames = 0        # TaskDone frames in _outbox
        self._outbox_since = 0.0       # when the oldest of them was added
        self._flush_scheduled = False  # io pool: a _flush is due in this pass of the loop
        self._writing = False

    def run(self) -> None:
        if self._is_cpu:
            return self._run_serially()
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self._loop.run_forever()

    def _run_serially(self) -> None:
        """The cpu pool: one task at a time, on this (the main) thread, in the order they
        came. The daemon sends a task when the worker is idle, or short tasks in advance
        (taskrtd --cpu-prefetch), which wait here; it stops a running task by signal
        (cancel, timeout), and cancels a waiting one with CancelTask, which is read
        between tasks. No thread hand-off per task (measured: ~3x the throughput of
        no-op calls of a loop plus one pool thread)."""
        waiting: collections.deque[worker_pb2.RunTask] = collections.deque()
        cancelled: set[int] = set()
        while True:
            try:
                # Block only when there is nothing to run.
                data = self._sock.recv(1 << 20, 0 if not waiting else socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data is not None:
                for frame in self._frames(data):
                    if frame.HasField("run"):
                        waiting.append(frame.run)
                    elif frame.HasField("cancel"):
                        cancelled.add(frame.cancel.seq)
            if not waiting:
                continue
            run = waiting.popleft()
            if run.seq in cancelled:
                cancelled.discard(run.seq)
                self._send_cancelled(run)
            else:
                self._start(run)
            self._send_serially(more_waiting=bool(waiting))
            if not waiting:
                cancelled.clear()  # cancels of tasks already done

    def _send_cancelled(self, run: worker_pb2.RunTask) -> None:
        now = time.time_ns() // 1000
        frame = worker_pb2.WorkerFrame()
        done = frame.done
        done.seq, done.executor = run.seq, task_pb2.EXECUTOR_PROCESS
        done.started_unix_us = done.finished_unix_us = now
        done.failure, done.error = task_pb2.FAILURE_KIND_CANCELLED, "cancelled before it started"
        self._send(frame)

    def _frames(self, data: bytes) -> list[worker_pb2.WorkerFrame]:
        """The frames `data` completes. Exits at the end of the stream (the daemon closed
        our socket, or died: nothing left to serve) and on a corrupt stream."""
        if not data:
            sys.stderr.flush()
            os._exit(0)
        try:
            return self._reader.feed(data)
        except FrameError as e:
            _log(str(e))
            os._exit(2)

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        for frame in self._frames(data):
            if frame.HasField("run"):
                self._start(frame.run)
            elif frame.HasField("cancel") and frame.cancel.seq in self._running:
                self._running[frame.cancel.seq].cancel()

    def _send(self, frame: worker_pb2.WorkerFrame) -> None:
        if not self._outbox:
            self._outbox_since = time.monotonic()
        self._outbox += encode_frame(frame)
        self._outbox_frames += 1
        if self._is_cpu:  # _run_serially sends, between tasks
            return
        # Results of one pass of the loop go out together, in one write.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _send_serially(self, more_waiting: bool) -> None:
        """The cpu pool's writes: at once when no task waits, else once the results of
        SERIAL_BATCH_FRAMES short tasks (or of 1 ms) are together, so that the daemon handles them in one
        read, one journal commit and one reply. Blocking: nothing else to do meanwhile."""
        if not self._outbox:
            return
        if more_waiting and self._outbox_frames < SERIAL_BATCH_FRAMES and \
                time.monotonic() - self._outbox_since < SERIAL_BATCH_SECONDS:
            return
        try:
            self._sock.sendall(self._outbox)
        except OSError:  # the daemon is gone
            os._exit(0)
        self._outbox.clear()
        self._outbox_frames = 0

    def _flush(self) -> None:
        """Writes what the socket takes now; the rest when it is writable (coalesced)."""
        self._flush_scheduled = False
        self._outbox_frames = 0
        while self._outbox:
            try:
                n = self._sock.send(self._outbox)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the daemon is gone
                os._exit(0)
            del self._outbox[:n]
        if self._outbox and not self._writing:
            self._loop.add_writer(self._sock.fileno(), self._flush)
            self._writing = True
        elif not self._outbox and self._writing:
            self._loop.remove_writer(self._sock.fileno())
            self._writing = False

    # Tasks.

    def _start(self, run: worker_pb2.RunTask) -> None:
        handler = self._handlers.get(run.handler)
        if handler is None:
            now = time.time_ns() // 1000
            done = worker_pb2.WorkerFrame()
            done.done.seq, done.done.started_unix_us, done.done.finished_unix_us = run.seq, now, now
            done.done.failure = task_pb2.FAILURE_KIND_INVALID_INPUT
            done.done.error = "handler '%s' is not registered in this worker (it has: %s)" % (
                run.handler, ", ".join(sorted(self._handlers)))
            return self._send(done)
        on_loop = handler.is_async and not self._is_cpu
        running = Running(
            seq=run.seq, task_id=run.task_id, handler=handler, data=run.input,
            deadline_us=run.deadline_unix_us,
            executor=(task_pb2.EXECUTOR_PROCESS if self._is_cpu else
                      task_pb2.EXECUTOR_ASYNC if on_loop else task_pb2.EXECUTOR_THREAD),
            context=_registry.TaskContext(
                run.task_id, run.deadline_unix_us / 1e6 if run.deadline_unix_us > 0 else None),
            peers=len(self._running))
        self._running[run.seq] = running
        if self._is_cpu:
            self._run_on_thread(running, None)
        elif on_loop:
            self._start_on_loop(running)
        else:
            self._pool.submit(self._run_on_thread, running, None)

    def _start_on_loop(self, running: Running) -> None:
        started = time.time_ns() // 1000
        try:
            call = prepare(running.handler, running.data)
        except InvalidInput as e:
            outcome = Outcome(failure=task_pb2.FAILURE_KIND_INVALID_INPUT, error=str(e))
            return self._finish(running, outcome, Meter(self._probe, False), started)
        except BaseException as e:  # unpickling runs the caller's code
            return self._finish(running, failed(e, None, running), Meter(self._probe, False),
                                started)
        if not inspect.iscoroutinefunction(call.fn):  # py.call_async of a plain function
            running.executor = task_pb2.EXECUTOR_THREAD
            self._pool.submit(self._run_on_thread, running, call)
            return
        self._loop.create_task(self._run_on_loop(running, call, started))

    async def _run_on_loop(self, running: Running, call: Call, started: int) -> None:
        _registry._current.set(running.context)  # this asyncio task's own context
        meter = Meter(self._probe, False)
        try:
            value = await _watched(_metered(call.fn(*call.args, **call.kwargs), meter), running)
            outcome = succeeded(call, value)
        except BaseException as e:  # SystemExit too: a task cannot stop its worker
            outcome = failed(e, call, running)
        self._finish(running, outcome, meter, started)

    def _run_on_thread(self, running: Running, call: Call | None) -> None:
        """A pool thread (the main thread in the cpu pool): prepares (unless given `call`),
        calls and meters one task."""
        token = _registry._current.set(running.context)
        meter = Meter(self._probe, self._is_cpu)
        started = time.time_ns() // 1000
        meter.resume()
        try:
            call = call or prepare(running.handler, running.data)
            value = call.fn(*call.args, **call.kwargs)
            if inspect.iscoroutine(value):
                value = asyncio.run(_watched(value, running))
            outcome = succeeded(call, value)
        except InvalidInput as e:
            outcome = Outcome(failure=task_pb2.FAILURE_KIND_INVALID_INPUT, error=str(e))
        except BaseException as e:  # SystemExit too: a task cannot stop its worker
            outcome = failed(e, call, running)
        finally:
            meter.pause()
            _registry._current.reset(token)
        # The run ends here, not when the loop gets to send its result: the hand-off to the
        # loop is the worker's time, not the task's (it would teach the classifier that a
        # no-op waits).
        finished = time.time_ns() // 1000
        if self._is_cpu:
            self._finish(running, outcome, meter, started, finished)
        else:
            self._loop.call_soon_threadsafe(self._finish, running, outcome, meter, started,
                                            finished)

    def _finish(self, running: Running, outcome: Outcome, meter: Meter, started: int,
                finished: int | None = None) -> None:
        """Loop thread: sends the TaskDone of `running` (`finished`: when it ended, if not now)."""
        frame = worker_pb2.WorkerFrame()
        done = frame.done
        done.seq, done.executor = running.seq, running.executor
        done.started_unix_us = started
        done.finished_unix_us = finished if finished is not None else time.time_ns() // 1000
        done.cpu_time_us, done.peak_rss_kb = meter.cpu_us(), resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss
        done.gil_measured = self._probe.measured
        done.gil_wait_us = meter.gil_ns // 1000
        done.peers = max(running.peers, len(self._running) - 1)
        del self._running[running.seq]
        done.ok, done.failure = outcome.ok, outcome.failure
        done.error = bounded_utf8(outcome.error)
        done.output = outcome.output
        self._enforce_output_limit(frame)
        self._send(frame)

    def _enforce_output_limit(self, frame: worker_pb2.WorkerFrame) -> None:
        """A result the daemon would refuse fails its task alone: the worker goes on."""
        done = frame.done
        output = len(done.output)
        if output <= self._max_output and frame.ByteSize() + _LENGTH.size <= self._frame_limit:
            return
        size = output if output > self._max_output else frame.ByteSize() + _LENGTH.size
        done.output, done.ok = b"", False
        done.failure = task_pb2.FAILURE_KIND_OUTPUT_TOO_LARGE
        done.error = ("the output of %d bytes exceeds the limit of %d bytes (taskrtd "
                      "--max-output-bytes)" % (size, self._max_output))


if __name__ == "__main__":
    main()
