"""End-to-end tests of the Python client (taskrt.Client, taskrt.aio.Client) against a
real taskrtd on a socket in a temporary directory.

Run by ctest as `python_client`; by hand, after a build:
    TASKRT_BUILD_DIR=build PYTHONPATH=build/python /usr/bin/python3 -m pytest -q tests/python/test_client.py
TASKRT_BUILD_DIR is the build tree (daemon/taskrtd, client/taskrt, lib/ with the fault
plugin). Every daemon a test starts is stopped by its pid; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket as socket_module
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

import pytest

import taskrt
import taskrt.aio
from taskrtd_process import TaskrtdProcess

BUILD_DIR = os.environ.get("TASKRT_BUILD_DIR", "build")
CALL_TIMEOUT = 30  # seconds: no test waits longer for anything


def _binary(*candidates: str) -> str:
    for c in candidates:
        path = os.path.join(BUILD_DIR, c)
        if os.access(path, os.X_OK):
            return os.path.abspath(path)
    pytest.fail("none of %s under %s is an executable: set TASKRT_BUILD_DIR to the build tree"
                % (", ".join(candidates), BUILD_DIR))


TASKRTD = _binary("daemon/taskrtd", "bin/taskrtd", "taskrtd")
TASKRT_CLI = _binary("client/taskrt", "bin/taskrt", "taskrt")
FAULT_PLUGIN = os.environ.get("TASKRT_FAULT_PLUGIN") or _binary(
    "lib/libtaskrt_fault_plugin.so", "tests/libtaskrt_fault_plugin.so")


class Daemon(TaskrtdProcess):
    """A taskrtd with the fault plugin and 2 cpu workers; stop() ends it by its pid."""

    def __init__(self, directory: str, *, socket: str | None = None,
                 state_dir: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(TASKRTD, directory,
                         ("--plugin", FAULT_PLUGIN, "--cpu-workers", "2", *extra_args),
                         socket=socket, state_dir=state_dir)


@pytest.fixture(scope="module")
def tmp_root():
    root = tempfile.mkdtemp(prefix="taskrt-py.")
    os.chmod(root, 0o700)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(tmp_root):
    directory = os.path.join(tmp_root, "main")
    os.mkdir(directory, 0o700)
    d = Daemon(directory)
    yield d
    d.stop()


@pytest.fixture
def client(daemon):
    with taskrt.Client(socket=daemon.socket) as c:
        yield c


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TASKRT_CLI, "--socket", daemon.socket, *args], capture_output=True,
                          text=True, timeout=CALL_TIMEOUT)


# --- finding the daemon ---------------------------------------------------------------

def test_package_exports():
    for name in ("Client", "TaskSpec", "Task", "Decision", "TaskError", "TaskEvent", "explain",
                 "Stats", "HandlerInfo", "Error", "InvalidArgument", "NotFound",
                 "PermissionDenied", "Unavailable", "DeadlineExceeded", "TaskFailed",
                 "TaskTimedOut", "TaskCancelled", "ConnectionSetupError"):
        assert hasattr(taskrt, name), name
    assert taskrt.aio.Client
    assert issubclass(taskrt.TaskFailed, taskrt.Error)


def test_finds_the_daemon_through_taskrt_socket(daemon, monkeypatch):
    monkeypatch.setenv("TASKRT_SOCKET", daemon.socket)
    monkeypatch.delenv("TASKRT_TARGET", raising=False)
    with taskrt.Client() as c:
        assert c.target == "unix:" + daemon.socket
        assert c.run("sys.noop", timeout=CALL_TIMEOUT).ok


def test_no_daemon_is_unavailable_with_how_to_start_it(tmp_root):
    path = os.path.join(tmp_root, "nothing-here.sock")
    started = time.monotonic()
    with pytest.raises(taskrt.Unavailable) as e:
        taskrt.Client(socket=path, connect_timeout=0.5)
    assert time.monotonic() - started < 5
    assert e.value.code == "UNAVAILABLE"
    assert "taskrtd is not running at unix:" + path in str(e.value)
    assert "no socket at " + path in str(e.value)
    assert "start it with `taskrtd`" in str(e.value)


def test_socket_in_a_world_writable_directory_is_refused(tmp_root):
    directory = os.path.join(tmp_root, "open")
    os.mkdir(directory)
    os.chmod(directory, 0o777)
    with pytest.raises(taskrt.ConnectionSetupError, match="chmod go-w"):
        taskrt.Client(socket=os.path.join(directory, "taskrt.sock"))


def test_tcp_target_with_the_daemons_token(tmp_root, monkeypatch):
    with socket_module.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    directory = os.path.join(tmp_root, "tcp")
    os.mkdir(directory, 0o700)
    d = Daemon(directory, extra_args=("--listen", "127.0.0.1:%d" % port))
    try:
        token_file = os.path.join(d.state_dir, "token")
        target = "127.0.0.1:%d" % port
        with taskrt.Client(target, token_file=token_file) as c:
            task = c.run("sys.noop", timeout=CALL_TIMEOUT, check=True)
            assert task.owner == "uid:%d" % os.getuid()  # the daemon token is its owner's
        with taskrt.Client(target, token="0123456789abcdef0123456789abcdef") as c:
            with pytest.raises(taskrt.Unauthenticated, match="refused the token from token="):
                c.run("sys.noop", timeout=CALL_TIMEOUT)
        for name in ("TASKRT_TOKEN", "TASKRT_TOKEN_FILE"):
            monkeypatch.delenv(name, raising=False)
        with taskrt.Client(target) as c:
            with pytest.raises(taskrt.Unauthenticated, match="none was sent.*<state-dir>/token"):
                c.stats()
        with pytest.raises(taskrt.ConnectionSetupError, match="clear text"):
            taskrt.Client("192.0.2.1:7070", token="secret")
    finally:
        d.stop()


# --- run, submit, get, wait -------------------------------------------------------------

def test_run_cpu_declared_task_runs_in_a_process(client):
    task = client.run("math.primes", {"below": 100000}, task_class="cpu", timeout=CALL_TIMEOUT)
    assert task.ok and task.done and task.state == "succeeded"
    assert task.json() == {"below": 100000, "count": 9592}
    assert task.handler == "math.primes" and task.input == b'{"below":100000}'
    assert task.task_class == "cpu"
    assert task.idempotency_key.startswith("run-")  # set by run(), as the C++ SDK does
    d = task.decision
    assert (d.requested_class, d.resolved_class) == ("cpu", "cpu")
    assert (d.executor, d.reason, d.pool) == ("process", "client_declared", "cpu")
    assert d.worker_pid > 0 and d.worker_pid != d.daemon_pid == client.stats().daemon_pid
    assert d.attempt == 1 and d.runtime in ("", "native")  # "" from a daemon before runtime
    assert isinstance(d.run_time, float) and d.run_time > 0
    assert isinstance(d.queue_wait, float) and d.queue_wait >= 0
    assert d.submitted.tzinfo == timezone.utc
    assert d.submitted <= d.started <= d.finished <= datetime.now(timezone.utc)
    assert task.error is None and task.owner == "uid:%d" % os.getuid()


def test_io_task_runs_on_the_io_pool(client):
    hinted = client.run("sys.sleep", {"ms": 20}, timeout=CALL_TIMEOUT)
    assert hinted.ok and hinted.json() == {"slept_ms": 20}
    assert hinted.decision.resolved_class == "io"
    assert hinted.decision.reason == "handler_hint"
    assert hinted.decision.executor in ("async", "thread")
    declared = client.run("sys.sleep", {"ms": 1}, task_class="io", timeout=CALL_TIMEOUT)
    assert declared.decision.reason == "client_declared"


def test_bytes_input_is_sent_as_is_and_output_decoded(client):
    data = bytes(range(256))
    task = client.run("hash.sha256", data, timeout=CALL_TIMEOUT, check=True)
    assert task.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert task.input == data
    echo = client.run("test.echo", "héllo", timeout=CALL_TIMEOUT, check=True)
    assert echo.output == '"héllo"'.encode() and echo.json() == "héllo"
    assert echo.text() == '"héllo"'


def test_submit_get_wait(client):
    task_id = client.submit("sys.sleep", {"ms": 50}, labels={"suite": "py"}, priority=3)
    assert isinstance(task_id, str) and task_id
    now = client.get(task_id)
    assert now.id == task_id and now.state in ("queued", "running", "succeeded")
    assert now.labels == {"suite": "py"} and now.priority == 3
    done = client.wait(task_id, timeout=CALL_TIMEOUT)
    assert done.ok and done.json() == {"slept_ms": 50}
    ids = client.submit_many([taskrt.TaskSpec("sys.noop"), ("sys.sleep", {"ms": 1}),
                              {"handler": "math.primes", "input": {"below": 10}}])
    assert len(ids) == 3
    tasks = client.wait_many(ids, timeout=CALL_TIMEOUT)
    assert [t.id for t in tasks] == ids and all(t.ok for t in tasks)
    assert tasks[2].json()["count"] == 4
    assert [t.id for t in client.get_many(ids)] == ids


def test_wait_timeout_cancel(client):
    task_id = client.submit("sys.sleep", {"ms": 20000})
    started = time.monotonic()
    with pytest.raises(taskrt.DeadlineExceeded) as e:
        client.wait(task_id, timeout=0.2)
    assert time.monotonic() - started < 10
    assert task_id in str(e.value)
    cancelled = client.cancel(task_id)
    assert isinstance(cancelled, taskrt.Task) and cancelled.id == task_id
    final = client.wait(task_id, timeout=CALL_TIMEOUT)
    assert final.state == "cancelled" and final.error.kind == "cancelled"
    with pytest.raises(taskrt.TaskCancelled) as e:
        final.check()
    assert e.value.task.id == task_id
    assert isinstance(client.cancel([task_id]), list)


def test_list(client):
    client.run("math.primes", {"below": 1000}, timeout=CALL_TIMEOUT)
    recent = client.list(limit=5)
    assert 1 <= len(recent) <= 5 and all(isinstance(t, taskrt.Task) for t in recent)
    primes = client.list(limit=1000, states="succeeded", handler="math.primes")
    assert primes and all(t.handler == "math.primes" and t.ok for t in primes)
    with pytest.raises(ValueError, match="invalid task state"):
        client.list(states=["finished"])


# --- the decision in words ------------------------------------------------------------

@pytest.mark.parametrize("handler,input,options", [
    ("math.primes", {"below": 50000}, {"task_class": "cpu"}),
    ("sys.sleep", {"ms": 5}, {}),
    ("test.fail", None, {}),
    ("test.crash", None, {}),
    ("sys.sleep", {"ms": 5000}, {"task_timeout": 0.2}),
])
def test_explain_matches_the_cli(client, daemon, handler, input, options):
    task = client.run(handler, input, timeout=CALL_TIMEOUT, **options)
    assert task.done
    # A final task's record may still gain figures (a timed-out task's run time arrives
    # from its worker after Run answered): compare once two CLI runs agree around a Get.
    for _ in range(20):
        before = cli(daemon, "explain", task.id)
        got = client.get(task.id)
        after = cli(daemon, "explain", task.id)
        # `taskrt explain` exits 1 for a final task that did not succeed.
        expected = 0 if task.state == "succeeded" else 1
        assert before.returncode == expected, before.stderr
        if before.stdout == after.stdout:
            break
        time.sleep(0.1)
    assert taskrt.explain(got) == after.stdout
    # Run's answer says the same where it ran and why.
    assert task.explain().splitlines()[:3] == after.stdout.splitlines()[:3]


def test_explain_of_a_queued_task_without_a_daemon():
    pb = taskrt.v1.task_pb2.Task(id="t1", state=taskrt.v1.task_pb2.TASK_STATE_QUEUED)
    pb.spec.handler = "math.primes"
    text = taskrt.explain(taskrt.Task.from_proto(pb))
    assert text == ("task t1 (math.primes): queued\nasked for auto; class not decided yet\n"
                    "executor: not started yet\nnot started yet\n")


# --- errors ---------------------------------------------------------------------------

def test_unknown_handler_is_invalid_argument(client):
    with pytest.raises(taskrt.InvalidArgument) as e:
        client.submit("math.prime", {"below": 10})
    assert e.value.code == "INVALID_ARGUMENT"
    assert "math.prime" in e.value.details and "math.primes" in e.value.details


def test_unknown_id_is_not_found(client):
    with pytest.raises(taskrt.NotFound) as e:
        client.get("no-such-task")
    assert "no-such-task" in str(e.value)
    with pytest.raises(taskrt.NotFound):
        client.wait("no-such-task", timeout=1)


_AS_NOBODY_SCRIPT = """
import sys, taskrt
client = taskrt.Client(socket=sys.argv[1])
try:
    client.submit("sys.exec", {"argv": ["id"]})
except taskrt.PermissionDenied as e:
    print("PermissionDenied", e.code, e.details)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run a client as uid 65534")
def test_exec_as_another_uid_is_permission_denied(tmp_root):
    directory = os.path.join(tmp_root, "shared")
    os.mkdir(directory)
    os.chmod(tmp_root, 0o711)  # uid 65534 may reach the socket, not list the directories
    os.chmod(directory, 0o711)
    d = Daemon(directory, extra_args=("--socket-mode", "0666"))
    try:
        out = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-c", _AS_NOBODY_SCRIPT, d.socket], capture_output=True, text=True,
            timeout=CALL_TIMEOUT, env={"PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                                       "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    finally:
        d.stop()
        os.chmod(tmp_root, 0o700)
    assert out.stdout.startswith("PermissionDenied PERMISSION_DENIED"), (out.stdout, out.stderr)
    assert "sys.exec" in out.stdout, out.stdout


def test_run_check_raises_task_failed(client):
    with pytest.raises(taskrt.TaskFailed) as e:
        client.run("test.fail", timeout=CALL_TIMEOUT, check=True)
    task = e.value.task
    assert task.state == "failed" and task.error.kind == "handler_error"
    assert "failed on purpose" in task.error.message and "failed on purpose" in str(e.value)
    crashed = client.run("test.crash", timeout=CALL_TIMEOUT)
    assert crashed.state == "failed" and crashed.error.kind == "worker_crashed"
    assert crashed.error.signal == signal.SIGSEGV and crashed.error.signal_name == "SIGSEGV"
    with pytest.raises(taskrt.TaskTimedOut) as e:
        client.run("sys.sleep", {"ms": 5000}, task_timeout=0.2, timeout=CALL_TIMEOUT, check=True)
    assert e.value.task.state == "timed_out" and e.value.task.error.kind == "timeout"


def test_wrong_argument_types_raise_type_error(client):
    with pytest.raises(TypeError, match="input"):
        client.submit("sys.noop", object())
    with pytest.raises(TypeError, match="priority"):
        client.submit("sys.noop", priority="high")
    with pytest.raises(TypeError, match="labels"):
        client.submit("sys.noop", labels={"n": 1})
    with pytest.raises(ValueError, match="task class"):
        client.submit("sys.noop", task_class="gpu")
    with pytest.raises(TypeError, match="task_class, priority"):
        client.submit("sys.noop", klass="cpu")


# --- many tasks over Stream -------------------------------------------------------------

def test_run_many_yields_every_result(client):
    specs = [taskrt.TaskSpec("math.primes", {"below": 1000 + i}, labels={"i": str(i)})
             for i in range(300)]
    seen = {}
    for task in client.run_many(specs, batch=64, timeout=CALL_TIMEOUT):
        assert task.ok and task.handler == "math.primes"
        seen[int(task.labels["i"])] = task
    assert sorted(seen) == list(range(300))
    assert seen[0].json() == {"below": 1000, "count": 168}
    assert len({t.id for t in seen.values()}) == 300


def test_run_many_raises_for_a_refused_batch(client):
    specs = [("sys.noop", None)] * 5 + [("no.such.handler", None)] + [("sys.noop", None)] * 2
    got = []
    with pytest.raises(taskrt.InvalidArgument) as e:
        for task in client.run_many(specs, batch=4, timeout=CALL_TIMEOUT):
            got.append(task)
    assert "batch 2 of 2 (tasks 5-8)" in str(e.value)
    assert "no.such.handler" in str(e.value)
    assert len(got) <= 4


def test_run_many_check_and_empty(client):
    assert list(client.run_many([], timeout=CALL_TIMEOUT)) == []
    with pytest.raises(taskrt.TaskFailed):
        list(client.run_many([("test.fail", None)], timeout=CALL_TIMEOUT, check=True))


# --- watch, stats, handlers -------------------------------------------------------------

def test_watch_sees_the_events_of_a_task(client):
    events = []
    with client.watch() as watch:
        timer = threading.Timer(CALL_TIMEOUT, watch.cancel)
        timer.start()
        try:
            task_id = client.submit("sys.sleep", {"ms": 10})
            for event in watch:
                if event.task_id == task_id:
                    events.append(event)
                    if event.done:
                        break
        finally:
            timer.cancel()
    states = [e.state for e in events]
    assert states and states[-1] == "succeeded", states
    assert all(e.handler == "sys.sleep" for e in events)
    assert events[-1].decision.executor in ("async", "thread")
    assert isinstance(events[-1].time, datetime)


def test_watch_of_named_tasks(client):
    other = client.submit("sys.sleep", {"ms": 20000})
    task_id = client.submit("sys.sleep", {"ms": 20000})
    with client.watch(ids=[task_id]) as watch:
        timer = threading.Timer(CALL_TIMEOUT, watch.cancel)
        timer.start()
        try:
            client.cancel([other, task_id])
            event = next(e for e in watch if e.done)
        finally:
            timer.cancel()
    assert event.task_id == task_id and event.state == "cancelled"
    assert event.error.kind == "cancelled"


def test_stats(client):
    client.run("math.primes", {"below": 100}, timeout=CALL_TIMEOUT)
    s = client.stats()
    assert s.daemon_pid > 0 and s.caller == "uid:%d" % os.getuid()
    assert {"cpu", "io"} <= {p.name for p in s.pools}
    assert s.pool("cpu").workers == 2
    assert s.tasks_by_state.get("succeeded", 0) >= 1
    assert all(not k.startswith("TASK_STATE_") for k in s.tasks_by_state)
    assert any(w.pool == "cpu" and w.pid > 0 for w in s.workers)
    assert isinstance(s.learned, tuple) and s.tasks_submitted >= 1


def test_handlers(client):
    handlers = {h.name: h for h in client.handlers()}
    assert handlers["math.primes"].hint == "cpu"
    assert handlers["sys.sleep"].hint == "io" and handlers["sys.sleep"].is_async
    assert handlers["sys.sleep"].source == "builtin" and handlers["sys.sleep"].allowed
    assert handlers["test.fail"].source.endswith(".so")


# --- a daemon restart -------------------------------------------------------------------

def test_run_survives_a_daemon_restart(tmp_root):
    directory = os.path.join(tmp_root, "restart")
    os.mkdir(directory, 0o700)
    first = Daemon(directory)
    second = None
    result: dict = {}
    try:
        with taskrt.Client(socket=first.socket, reconnect_timeout=20) as c:
            def run() -> None:
                try:
                    # Two attempts: the one the kill interrupts, and its re-run.
                    result["task"] = c.run("sys.sleep", {"ms": 1500}, max_attempts=2,
                                           timeout=CALL_TIMEOUT)
                except BaseException as e:  # reported by the assertion below
                    result["error"] = e

            runner = threading.Thread(target=run)
            runner.start()
            deadline = time.monotonic() + 10
            running = []
            while not running and time.monotonic() < deadline:
                running = c.list(states="running")
                time.sleep(0.05)
            assert running, "the task did not start within 10s"
            first.kill()
            second = Daemon(directory, socket=first.socket, state_dir=first.state_dir)
            runner.join(CALL_TIMEOUT + 5)
            assert not runner.is_alive()
        assert "error" not in result, result.get("error")
        task = result["task"]
        assert task.id == running[0].id  # the same task, found again by its key
        assert task.ok and task.json() == {"slept_ms": 1500}
        assert task.decision.recovered and task.decision.attempt == 2
    finally:
        first.stop()
        if second is not None:
            second.stop()


# --- asyncio --------------------------------------------------------------------------

def test_aio_client(daemon):
    async def main() -> None:
        async with taskrt.aio.Client(socket=daemon.socket) as c:
            task = await c.run("math.primes", {"below": 1000}, task_class="cpu",
                               timeout=CALL_TIMEOUT, check=True)
            assert task.json()["count"] == 168 and task.decision.executor == "process"
            task_id = await c.submit("sys.sleep", {"ms": 5})
            assert (await c.get(task_id)).id == task_id
            assert (await c.wait(task_id, timeout=CALL_TIMEOUT)).ok
            ids = await c.submit_many([("sys.noop", None)] * 3)
            assert all(t.ok for t in await c.wait_many(ids, timeout=CALL_TIMEOUT))
            results = [t async for t in c.run_many([("sys.noop", None)] * 50, batch=16,
                                                   timeout=CALL_TIMEOUT)]
            assert len(results) == 50 and all(t.ok for t in results)
            with pytest.raises(taskrt.InvalidArgument, match="batch 1 of 1"):
                async for _ in c.run_many([("no.such.handler", None)], timeout=CALL_TIMEOUT):
                    pass
            with pytest.raises(taskrt.NotFound):
                await c.get("no-such-task")
            with pytest.raises(taskrt.TaskFailed):
                await c.run("test.fail", timeout=CALL_TIMEOUT, check=True)
            assert (await c.stats()).caller == "uid:%d" % os.getuid()
            assert "math.primes" in {h.name for h in await c.handlers()}
            assert len(await c.list(limit=3)) == 3
            long_id = await c.submit("sys.sleep", {"ms": 20000})
            assert (await c.cancel(long_id)).id == long_id
            async with c.watch() as events:
                watched = await c.submit("sys.noop")
                async def final_event():
                    async for e in events:
                        if e.task_id == watched and e.done:
                            return e
                event = await asyncio.wait_for(final_event(), CALL_TIMEOUT)
                assert event.state == "succeeded"

        with pytest.raises(taskrt.Unavailable, match="start it with"):
            await taskrt.aio.Client(socket=daemon.socket + ".none",
                                    connect_timeout=0.3).connect()

    asyncio.run(asyncio.wait_for(main(), 2 * CALL_TIMEOUT))
