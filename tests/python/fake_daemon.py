"""FakeDaemon: an in-process TaskService (Stream, Get, Cancel, ListHandlers) that runs
py.call / py.call_async payloads with taskrt._wire on local threads.

It tests the Executor's dispatcher (batching, ids, resend after a broken stream, refused
batches) without taskrtd. What it does not model (processes, pools, privilege, the
decision's evidence) is tested against the real daemon in test_executor.py.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import tempfile
import threading
import time

import grpc

from taskrt import _wire
from taskrt.v1 import service_pb2, service_pb2_grpc, task_pb2


class FakeDaemon(service_pb2_grpc.TaskServiceServicer):
    """Serves on a unix socket in a temporary directory; stop() ends it.

    refuse_code: a nonzero gRPC code answers every batch with that code.
    break_after: the first Stream call is aborted (UNAVAILABLE) after that many batches.
    """

    def __init__(self, refuse_code: int = 0, break_after: int | None = None,
                 workers: int = 16) -> None:
        self.dir = tempfile.mkdtemp(prefix="taskrt-fake.")
        os.chmod(self.dir, 0o700)
        self.socket = os.path.join(self.dir, "taskrt.sock")
        self.refuse_code = refuse_code
        self.break_after = break_after
        self.batches: list[int] = []  # size of every batch received
        self.streams = 0
        self.tasks: dict[str, task_pb2.Task] = {}
        self.by_key: dict[str, str] = {}
        self.deliver: dict[str, object] = {}  # task id -> the stream that awaits it
        self.lock = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(8))
        service_pb2_grpc.add_TaskServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port("unix:" + self.socket)
        self.server.start()
        self.next_id = 0

    def stop(self) -> None:
        self.server.stop(0).wait(5)
        self.pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- running a task --

    def _run(self, spec: task_pb2.TaskSpec) -> tuple[int, bytes]:
        try:
            fn, args, kwargs = _wire.decode_call(spec.input)
            if spec.handler == "py.call_async":
                value = asyncio.run(fn(*args, **kwargs))
            else:
                value = fn(*args, **kwargs)
            return task_pb2.TASK_STATE_SUCCEEDED, _wire.encode_result(value)
        except BaseException as e:  # noqa: B902 - reported like the worker does
            return task_pb2.TASK_STATE_FAILED, _wire.encode_exception(e)

    def _start(self, spec: task_pb2.TaskSpec, deliver) -> str:
        with self.lock:
            known = self.by_key.get(spec.idempotency_key)
            if known is not None:
                task = self.tasks[known]
                if task.state >= task_pb2.TASK_STATE_SUCCEEDED:
                    deliver(task)
                return known
            self.next_id += 1
            task_id = "fake-%d" % self.next_id
            self.tasks[task_id] = task_pb2.Task(id=task_id, spec=spec,
                                                state=task_pb2.TASK_STATE_QUEUED)
            if spec.idempotency_key:
                self.by_key[spec.idempotency_key] = task_id
            self.deliver[task_id] = deliver

        def work() -> None:
            with self.lock:
                task = self.tasks[task_id]
                if task.state != task_pb2.TASK_STATE_QUEUED:
                    return
                task.state = task_pb2.TASK_STATE_RUNNING
            state, output = self._run(spec)
            with self.lock:
                task.state, task.output = state, output
                task.decision.executor = task_pb2.EXECUTOR_THREAD
                task.decision.pool = "fake"
            deliver(task)
        self.pool.submit(work)
        return task_id

    # -- the RPCs --

    def Stream(self, request_iterator, context):
        out: list[service_pb2.StreamResponse] = []
        cv = threading.Condition()
        state = {"expected": 0, "delivered": 0, "reads_done": False}
        with self.lock:
            self.streams += 1
            first = self.streams == 1

        def deliver(task: task_pb2.Task) -> None:
            with cv:
                r = service_pb2.StreamResponse()
                r.results.add(id=task.id, state=task.state, output=task.output,
                              decision=task.decision)
                out.append(r)
                state["delivered"] += 1
                cv.notify_all()

        def reader() -> None:
            n = 0
            for req in request_iterator:
                n += 1
                self.batches.append(len(req.tasks))
                if first and self.break_after is not None and n > self.break_after:
                    with cv:
                        state["broken"] = True
                        cv.notify_all()
                    return
                if self.refuse_code:
                    with cv:
                        r = service_pb2.StreamResponse()
                        r.accepted.add(tag=req.tag, code=self.refuse_code,
                                       message="refused by the fake")
                        out.append(r)
                        cv.notify_all()
                    continue
                with cv:
                    state["expected"] += len(req.tasks)
                ids = [self._start(s, deliver) for s in req.tasks]
                with cv:
                    r = service_pb2.StreamResponse()
                    r.accepted.add(tag=req.tag, task_ids=ids)
                    out.insert(0, r)  # answers first: the fake's results may be earlier
                    cv.notify_all()
            with cv:
                state["reads_done"] = True
                cv.notify_all()

        threading.Thread(target=reader, daemon=True).start()
        while True:
            with cv:
                cv.wait_for(lambda: out or state.get("broken") or (
                    state["reads_done"] and state["delivered"] >= state["expected"]), 1)
                if state.get("broken"):
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the fake broke the stream")
                if not out:
                    if state["reads_done"] and state["delivered"] >= state["expected"]:
                        return
                    if not context.is_active():
                        return
                    continue
                batch, out[:] = list(out), []
            for r in batch:
                yield r

    def Get(self, request, context):
        with self.lock:
            return service_pb2.GetResponse(tasks=[self.tasks[i] for i in request.task_ids
                                                  if i in self.tasks])

    def Cancel(self, request, context):
        cancelled = []
        with self.lock:
            for i in request.task_ids:
                t = self.tasks.get(i)
                if t is not None and t.state == task_pb2.TASK_STATE_QUEUED:
                    t.state = task_pb2.TASK_STATE_CANCELLED
                    cancelled.append(t)
        for t in cancelled:
            self.deliver[t.id](t)
        with self.lock:
            return service_pb2.CancelResponse(tasks=[self.tasks[i] for i in request.task_ids
                                                     if i in self.tasks])

    def ListHandlers(self, request, context):
        return service_pb2.ListHandlersResponse(handlers=[
            service_pb2.HandlerInfo(name="py.call", runtime="python"),
            service_pb2.HandlerInfo(name="py.call_async", runtime="python", **{"async": True})])


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
