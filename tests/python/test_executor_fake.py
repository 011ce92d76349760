"""The Executor's dispatcher against FakeDaemon (no taskrtd): batching, ids, futures,
map, cancel, shutdown, a broken stream, refused batches. Quick: label unit."""
import asyncio
import concurrent.futures
import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import executor_funcs as funcs  # noqa: E402
from fake_daemon import FakeDaemon, wait_until  # noqa: E402

import taskrt  # noqa: E402


@pytest.fixture
def fake():
    d = FakeDaemon()
    yield d
    d.stop()


def executor(d, **kw):
    return taskrt.Executor(socket=d.socket, connect_timeout=5, **kw)


def test_submit_map_and_batching(fake):
    with executor(fake) as ex:
        assert ex.submit(funcs.add, 2, b=3).result(10) == 5
        assert list(ex.map(funcs.square, range(500))) == [x * x for x in range(500)]
    assert sum(fake.batches) == 501
    assert len(fake.batches) < 100, fake.batches  # many tasks share a batch under load


def test_by_value_and_exception_with_traceback(fake):
    offset = 7
    with executor(fake) as ex:
        assert ex.submit(lambda x: x + offset, 1).result(10) == 8
        with pytest.raises(ValueError, match="boom") as info:
            ex.submit(funcs.fail, "boom").result(10)
        assert "executor_funcs.py" in str(info.value.__cause__)
        with pytest.raises(taskrt.RemoteError) as info:
            ex.submit(funcs.raise_unpicklable).result(10)
        assert "Unpicklable" in info.value.type and "cannot come back" in info.value.message


def test_unpicklable_argument_fails_at_submit(fake):
    with executor(fake) as ex:
        with pytest.raises(TypeError, match="cannot pickle the arguments"):
            ex.submit(funcs.add, threading.Lock())


def test_map_chunks_timeout_and_async(fake):
    with executor(fake) as ex:
        assert list(ex.map(funcs.add, range(10), range(10), chunksize=3)) == \
            [2 * x for x in range(10)]
        assert list(ex.map(lambda x: -x, range(5), chunksize=2)) == [0, -1, -2, -3, -4]
        assert list(ex.map(funcs.async_sleep, [0.01] * 4, range(4), chunksize=2)) == \
            [0, 1, 2, 3]
        with pytest.raises(concurrent.futures.TimeoutError):
            list(ex.map(funcs.sleep_then, [2], [1], timeout=0.2))
    assert len(fake.batches) >= 4


def test_futures_work_with_wait_as_completed_asyncio(fake):
    with executor(fake) as ex:
        fs = [ex.submit(funcs.sleep_then, 0.05 * i, i) for i in range(5)]
        assert sorted(f.result() for f in concurrent.futures.as_completed(fs, 10)) == \
            list(range(5))
        done, _ = concurrent.futures.wait(fs, 10)
        assert len(done) == 5 and all(f.task_id for f in fs)
        assert fs[0].task.decision.pool == "fake"

        async def main():
            return await asyncio.wrap_future(ex.submit(funcs.square, 9)), \
                await ex.run(funcs.async_sleep, 0.01, "x")
        assert asyncio.run(main()) == (81, "x")


def test_cancel_and_shutdown_cancel_futures():
    d = FakeDaemon(workers=1)
    try:
        ex = executor(d)
        running = ex.submit(funcs.sleep_then, 1.0, "ran")
        assert wait_until(lambda: running.task_id is not None)
        queued = ex.submit(funcs.square, 3)
        assert wait_until(lambda: queued.task_id is not None)
        time.sleep(0.1)
        assert not running.cancel()
        assert queued.cancel() and queued.cancelled()
        more = [ex.submit(funcs.square, i) for i in range(3)]
        assert wait_until(lambda: all(f.task_id for f in more))
        ex.shutdown(wait=True, cancel_futures=True)
        assert running.result(0) == "ran"
        assert all(f.cancelled() for f in more)
        with pytest.raises(RuntimeError, match="after shutdown"):
            ex.submit(funcs.square, 1)
    finally:
        d.stop()


def test_broken_stream_resends_without_duplicates():
    d = FakeDaemon(break_after=2)
    try:
        with executor(d) as ex:
            fs = [ex.submit(funcs.sleep_then, 0.02, i) for i in range(20)]
            for i in range(5):  # one batch each: the 3rd breaks the first stream
                time.sleep(0.05)
                fs.append(ex.submit(funcs.square, i))
            assert [f.result(20) for f in fs] == list(range(20)) + [i * i for i in range(5)]
        assert d.streams >= 2
        assert d.next_id == 25  # the idempotency keys found the tasks accepted before
    finally:
        d.stop()


def test_refused_batch_fails_its_futures():
    d = FakeDaemon(refuse_code=7)
    try:
        with executor(d) as ex:
            f = ex.submit(funcs.square, 2)
            with pytest.raises(taskrt.PermissionDenied, match="refused by the fake"):
                f.result(10)
    finally:
        d.stop()


def test_no_daemon_fails_futures_with_what_to_do(tmp_path):
    ex = taskrt.Executor(socket=str(tmp_path / "none.sock"), connect_timeout=0.5)
    with pytest.raises(taskrt.Unavailable, match="taskrtd is not running"):
        ex.submit(funcs.square, 2).result(10)
    ex.shutdown()


def test_options_reach_the_spec_and_max_pending_bounds_submit(fake):
    with executor(fake, task_class="cpu", labels={"team": "a"}, max_pending=3) as ex:
        view = ex.options(task_class="io", timeout=2.5, priority=4, labels={"job": "j"})
        assert view.submit(funcs.square, 2).result(10) == 4
        assert ex.submit(funcs.async_sleep, 0, "x").result(10) == "x"
        fs = [ex.submit(funcs.sleep_then, 0.05, i) for i in range(10)]  # blocks at 3 unfinished
        assert [f.result(10) for f in fs] == list(range(10))
    specs = [t.spec for t in sorted(fake.tasks.values(), key=lambda t: int(t.id.split("-")[1]))]
    first, second = specs[0], specs[1]
    assert (first.handler, first.requested_class, first.timeout_ms, first.priority) == \
        ("py.call", 2, 2500, 4)
    assert dict(first.labels) == {"team": "a", "job": "j"}
    assert first.function == "executor_funcs:square" and first.idempotency_key
    assert (second.handler, second.requested_class) == ("py.call_async", 1)
    assert len({s.idempotency_key for s in specs}) == len(specs)


def test_bad_options_are_refused_at_once(fake):
    with pytest.raises(ValueError, match="task_class"):
        taskrt.Executor(socket=fake.socket, task_class="gpu")
    with executor(fake) as ex:
        with pytest.raises(ValueError, match="task_class"):
            ex.options(task_class="fast")
        with pytest.raises(ValueError, match="chunksize"):
            ex.map(funcs.square, [1], chunksize=0)
        with pytest.raises(TypeError, match="callable"):
            ex.submit(42)


def test_a_forked_child_neither_hangs_nor_uses_the_parents_executor(fake):
    ex = executor(fake)
    assert ex.submit(funcs.square, 2).result(10) == 4
    pid = os.fork()
    if pid == 0:  # the child: exits through the interpreter's exit hooks
        code = 0
        try:
            ex.submit(funcs.square, 3)
            code = 1
        except RuntimeError as e:
            code = 0 if "before a fork" in str(e) else 2
        os._exit(code)  # the hooks are tested by multiprocessing below
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # A ProcessPoolExecutor (fork) child runs threading's exit hooks: they must not wait.
    with concurrent.futures.ProcessPoolExecutor(1) as pp:
        assert pp.submit(funcs.square, 5).result(20) == 25
    assert ex.submit(funcs.square, 6).result(10) == 36
    ex.shutdown()
