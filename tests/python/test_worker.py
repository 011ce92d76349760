"""Tests of the Python worker (python3 -m taskrt._worker), driven directly over a
socketpair the way taskrtd drives it: frames of taskrt.v1.internal.WorkerFrame.

Needs PYTHONPATH with the built package (build/python: ctest sets it). Every worker a
test starts is killed by the `py_worker` fixture; every read has a timeout.
"""

import math
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

import taskrt
from taskrt import _registry, _wire
from taskrt.v1 import task_pb2, worker_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import py_handlers_fixture as fixture  # noqa: E402  (the worker imports it the same way)

PYTHON = "/usr/bin/python3"
READ_TIMEOUT = 20.0


class WorkerUnderTest:
    """One worker process and the daemon's end of its socket."""

    def __init__(self, *args, pool="io", threads=4, env_extra=None):
        self.sock, child = socket.socketpair()
        self.sock.settimeout(READ_TIMEOUT)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), HERE) if p)
        env.update(env_extra or {})
        cmd = [PYTHON, "-m", "taskrt._worker", "--pool", pool, "--fd", str(child.fileno()),
               "--threads", str(threads), *args]
        self.proc = subprocess.Popen(cmd, pass_fds=(child.fileno(),), env=env,
                                     stdin=subprocess.DEVNULL)
        child.close()
        self._buffer = b""
        self._seq = 0
        self.hello = self.read().hello

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.sock.close()

    def _read_exactly(self, n):
        while len(self._buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("the worker closed its socket")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read(self):
        (length,) = struct.unpack("<I", self._read_exactly(4))
        frame = worker_pb2.WorkerFrame()
        frame.ParseFromString(self._read_exactly(length))
        return frame

    def send(self, frame):
        body = frame.SerializeToString()
        self.sock.sendall(struct.pack("<I", len(body)) + body)

    def start(self, handler, data, deadline_unix_us=0):
        self._seq += 1
        frame = worker_pb2.WorkerFrame()
        frame.run.seq, frame.run.task_id, frame.run.handler = self._seq, "t%d" % self._seq, handler
        frame.run.input, frame.run.deadline_unix_us = data, deadline_unix_us
        self.send(frame)
        return self._seq

    def cancel(self, seq):
        frame = worker_pb2.WorkerFrame()
        frame.cancel.seq = seq
        self.send(frame)

    def done(self):
        frame = self.read()
        assert frame.HasField("done"), frame
        return frame.done

    def run(self, handler, data, **kwargs):
        seq = self.start(handler, data, **kwargs)
        done = self.done()
        assert done.seq == seq
        return done

    def call(self, fn, *args, handler="py.call", **kwargs):
        return self.run(handler, _wire.encode_call(fn, args, kwargs))


@pytest.fixture
def py_worker():
    """Starts workers (WorkerUnderTest(*args, ...)) and kills them all at the end."""
    started = []

    def start(*args, **kwargs):
        worker = WorkerUnderTest(*args, **kwargs)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


def value_of(done):
    assert done.ok, done.error
    result = _wire.decode_result(done.output)
    assert result["ok"]
    return result["value"]


# --- Hello, start-up and exit ---------------------------------------------------------

def test_hello_lists_builtin_and_named_handlers(py_worker):
    w = py_worker("--module", "py_handlers_fixture")
    assert w.hello.error == ""
    assert w.hello.pid == w.proc.pid
    handlers = {h.name: h for h in w.hello.handlers}
    assert {"py.call", "py.call_async", "fixture.add", "fixture.wait"} <= set(handlers)
    assert all(h.runtime == "python" for h in handlers.values())
    assert getattr(handlers["py.call_async"], "async") and not getattr(handlers["py.call"], "async")
    add = handlers["fixture.add"]
    assert (add.hint, add.source, add.description) == (
        task_pb2.TASK_CLASS_CPU, "python:py_handlers_fixture", "Sums a JSON list of numbers.")
    assert getattr(handlers["fixture.wait"], "async")


def test_bad_module_is_named_in_hello_and_exits_1(py_worker):
    w = py_worker("--module", "no_such_module_for_taskrt")
    assert "no_such_module_for_taskrt" in w.hello.error
    assert "ModuleNotFoundError" in w.hello.error
    assert w.proc.wait(timeout=10) == 1


def test_duplicate_handler_name_is_named_in_hello_and_exits_1(py_worker):
    w = py_worker("--module", "py_handlers_fixture", "--module", "py_handlers_duplicate_fixture")
    assert w.hello.error.startswith("--module py_handlers_duplicate_fixture does not import: "
                                    "ValueError: task name 'fixture.add' is taken by")
    assert w.proc.wait(timeout=10) == 1


def test_eof_exits_0(py_worker):
    w = py_worker()
    w.sock.shutdown(socket.SHUT_WR)
    assert w.proc.wait(timeout=10) == 0


def test_os_exit_in_a_task_ends_the_worker_with_its_code(py_worker):
    w = py_worker()
    w.start("py.call", _wire.encode_call(fixture.exit_worker, (7,), {}))
    assert w.proc.wait(timeout=10) == 7


def test_children_of_tasks_inherit_neither_the_socket_nor_the_probe(py_worker):
    w = py_worker(env_extra={"LD_PRELOAD": ""})
    fds, preload = value_of(w.call(fixture.child_view))
    assert sorted(fds, key=int)[:3] == ["0", "1", "2"]
    assert len(fds) <= 4  # 0, 1, 2 and the listing's own directory fd
    assert preload == ""


def test_unknown_handler_is_invalid_input(py_worker):
    done = py_worker().run("fixture.nope", b"")
    assert done.failure == task_pb2.FAILURE_KIND_INVALID_INPUT
    assert "'fixture.nope' is not registered" in done.error and "py.call" in done.error


# --- py.call --------------------------------------------------------------------------

@pytest.mark.parametrize("pool,executor", [("io", task_pb2.EXECUTOR_THREAD),
                                           ("cpu", task_pb2.EXECUTOR_PROCESS)])
def test_call_by_reference(py_worker, pool, executor):
    done = py_worker(pool=pool).call(math.factorial, 20)
    assert value_of(done) == math.factorial(20)
    assert done.executor == executor
    assert done.finished_unix_us >= done.started_unix_us > 0 and done.peak_rss_kb > 0


def test_call_by_value(py_worker):
    base = 40
    assert value_of(py_worker().call(lambda x, y=0: base + x + y, 1, y=1)) == 42


def test_exception_fails_with_traceback_and_the_exception_in_the_output(py_worker):
    done = py_worker().call(fixture.fail, "boom")
    assert not done.ok and done.failure == task_pb2.FAILURE_KIND_HANDLER_ERROR
    assert done.error.startswith("ValueError: boom\nTraceback (most recent call last):")
    assert "py_handlers_fixture.py" in done.error and "_worker.py" not in done.error
    result = _wire.decode_result(done.output)
    assert not result["ok"] and isinstance(result["exc"], ValueError)
    assert str(result["exc"]) == "boom" and "in fail" in result["traceback"]


def test_system_exit_is_a_task_failure_and_the_worker_goes_on(py_worker):
    w = py_worker()
    done = w.call(fixture.raise_system_exit, 3)
    assert done.failure == task_pb2.FAILURE_KIND_HANDLER_ERROR
    assert "raise_system_exit raised SystemExit(3); a task cannot stop its worker" in done.error
    assert value_of(w.call(math.factorial, 3)) == 6


def test_version_mismatch_is_invalid_input(py_worker):
    envelope = {"taskrt": 1, "python": "2.7", "cloudpickle": "0.1", "by": "value",
                "fn": b"not looked at", "args": pickle.dumps(((), {}))}
    done = py_worker().run("py.call", pickle.dumps(envelope, protocol=5))
    assert done.failure == task_pb2.FAILURE_KIND_INVALID_INPUT
    assert "pickled by value with Python 2.7" in done.error


def test_unpicklable_return_value(py_worker):
    done = py_worker().call(lambda: threading.Lock())
    assert done.failure == task_pb2.FAILURE_KIND_HANDLER_ERROR
    assert "cannot pickle the return value (lock)" in done.error


def test_output_over_the_limit_fails_that_task_only(py_worker):
    w = py_worker("--max-output-bytes", "1000")
    done = w.call(fixture.big, 5000)
    assert done.failure == task_pb2.FAILURE_KIND_OUTPUT_TOO_LARGE and done.output == b""
    assert "exceeds the limit of 1000 bytes (taskrtd --max-output-bytes)" in done.error
    assert value_of(w.call(fixture.big, 10)) == b"x" * 10


def test_memory_error_is_memory_limit(py_worker):
    w = py_worker("--memory-limit", str(2 << 30), pool="cpu")
    done = w.call(bytearray, 8 << 30)
    assert done.failure == task_pb2.FAILURE_KIND_MEMORY_LIMIT
    assert "ran out of memory" in done.error and "--cpu-memory-limit" in done.error
    assert value_of(w.call(math.factorial, 3)) == 6


def test_cancel_sets_the_flag_of_a_sync_task(py_worker):
    w = py_worker()
    seq = w.start("py.call", _wire.encode_call(fixture.cancelled_flag, (10,), {}))
    time.sleep(0.2)
    w.cancel(seq)
    assert value_of(w.done()) is True


# --- Async ----------------------------------------------------------------------------

def test_async_function_runs_on_the_loop(py_worker):
    w = py_worker()
    done = w.call(fixture.async_nap, 0.01, handler="py.call_async")
    assert value_of(done) == 0.01 and done.executor == task_pb2.EXECUTOR_ASYNC
    # py.call runs a coroutine function on its thread; py.call_async a plain one on a thread.
    done = w.call(fixture.async_nap, 0.01)
    assert value_of(done) == 0.01 and done.executor == task_pb2.EXECUTOR_THREAD
    done = w.call(math.factorial, 4, handler="py.call_async")
    assert value_of(done) == 24 and done.executor == task_pb2.EXECUTOR_THREAD


def test_200_async_sleeps_run_together(py_worker):
    w = py_worker(threads=1)
    data = _wire.encode_call(fixture.async_nap, (0.5,), {})
    begin = time.monotonic()
    seqs = {w.start("py.call_async", data) for _ in range(200)}
    dones = [w.done() for _ in seqs]
    elapsed = time.monotonic() - begin
    assert {d.seq for d in dones} == seqs and all(d.ok for d in dones)
    ran = sum(d.finished_unix_us - d.started_unix_us for d in dones) / 1e6
    assert ran >= 200 * 0.5 and elapsed < ran / 10
    assert max(d.peers for d in dones) > 100


def test_cancel_of_an_async_task(py_worker):
    w = py_worker()
    seq = w.start("py.call_async", _wire.encode_call(fixture.async_nap, (30,), {}))
    time.sleep(0.2)
    w.cancel(seq)
    done = w.done()
    assert done.failure == task_pb2.FAILURE_KIND_CANCELLED and done.error == "the task was cancelled"


# The cpu pool runs one task at a time on the main thread: the daemon stops its tasks by
# signal (cancel, timeout), so a coroutine there ends at its deadline or not at all.
def test_cpu_pool_runs_coroutines_and_ends_them_at_their_deadline(py_worker):
    w = py_worker(pool="cpu")
    done = w.call(fixture.async_nap, 0.01, handler="py.call_async")
    assert value_of(done) == 0.01 and done.executor == task_pb2.EXECUTOR_PROCESS
    done = w.run("py.call", _wire.encode_call(fixture.async_nap, (30,), {}),
                 deadline_unix_us=int((time.time() + 0.3) * 1e6))
    assert done.failure == task_pb2.FAILURE_KIND_CANCELLED and "deadline" in done.error


def test_deadline_cancels_an_async_task(py_worker):
    w = py_worker()
    done = w.run("py.call_async", _wire.encode_call(fixture.async_nap, (30,), {}),
                 deadline_unix_us=int((time.time() + 0.3) * 1e6))
    assert done.failure == task_pb2.FAILURE_KIND_CANCELLED and "deadline" in done.error


# --- Named handlers -------------------------------------------------------------------

def test_named_handler_with_json_and_with_python_arguments(py_worker):
    w = py_worker("--module", "py_handlers_fixture")
    assert w.run("fixture.add", b"[1, 2, 3]").output == b"6"
    assert w.run("fixture.add", b"").output == b"0"
    assert value_of(w.run("fixture.add", _wire.encode_call(None, ([4, 5],), {}))) == 9
    done = w.run("fixture.add", b"[1, 2")
    assert done.failure == task_pb2.FAILURE_KIND_INVALID_INPUT
    assert "the input of handler 'fixture.add' is not valid JSON" in done.error
    done = w.run("fixture.wait", b"0.01")
    assert done.output == b"0.01" and done.executor == task_pb2.EXECUTOR_ASYNC
    done = w.run("fixture.add", b'["a"]')
    assert done.failure == task_pb2.FAILURE_KIND_HANDLER_ERROR and done.output == b""
    assert done.error.startswith("TypeError:")


def test_task_decorator():
    def plain(x):
        return x

    assert taskrt.task(plain) is plain
    d = _registry.definition(plain)
    assert d == _registry.TaskDef(name=__name__ + ".test_task_decorator.<locals>.plain",
                                  hint="auto", description="", is_async=False)
    assert d in _registry.registered()
    assert _registry.definition(fixture.nap) is None
    with pytest.raises(ValueError, match="'gpu'"):
        taskrt.task(hint="gpu")
    with pytest.raises(ValueError, match="reserved"):
        taskrt.task(name="py.mine")
    with pytest.raises(ValueError, match="is taken by"):
        taskrt.task(name="fixture.add")(plain)


# --- The GIL probe --------------------------------------------------------------------

def test_gil_probe_separates_waiting_for_the_gil_from_waiting_for_io(py_worker):
    w = py_worker(threads=4)
    spin = _wire.encode_call(fixture.spin, (0.3,), {})
    solo = w.run("py.call", spin)
    assert solo.ok and solo.gil_measured
    solo_ratio = solo.cpu_time_us / (solo.finished_unix_us - solo.started_unix_us)
    seqs = [w.start("py.call", spin) for _ in range(4)]
    nap_seq = w.start("py.call", _wire.encode_call(fixture.nap, (0.3,), {}))
    dones = {d.seq: d for d in (w.done() for _ in range(5))}
    for d in dones.values():
        assert d.ok and d.gil_measured, d.error
    ratios = []
    for seq in seqs + [nap_seq]:
        d = dones[seq]
        wall = d.finished_unix_us - d.started_unix_us
        ratios.append((d.cpu_time_us / wall, d.cpu_time_us / (wall - d.gil_wait_us)))
    print("solo cpu/wall %.2f; (cpu/wall, cpu/(wall-gil)) of 4 spins and a sleep: %s" % (
        solo_ratio, ", ".join("(%.2f, %.2f)" % r for r in ratios)))
    for raw, corrected in ratios[:4]:
        # Four compute threads share one GIL: each looks a quarter busy, but is busy
        # whenever it holds it (relative to a solo run, as the machine may be loaded:
        # time spent runnable but descheduled counts as neither, hence the margin; without
        # the probe's correction `corrected` would equal `raw`).
        assert raw < 0.5 * corrected and corrected >= 0.35 * solo_ratio
    assert ratios[4][1] <= 0.3  # the sleep is no compute, GIL or not


def test_gil_probe_off(py_worker):
    w = py_worker(env_extra={"TASKRT_GIL_PROBE": "0"})
    done = w.call(math.factorial, 5)
    assert value_of(done) == 120 and not done.gil_measured and done.gil_wait_us == 0
