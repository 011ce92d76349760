"""taskrt.Client: submit tasks to taskrtd and get them back as Python objects.

    import taskrt

    with taskrt.Client() as client:            # finds the daemon like the C++ SDK
        task = client.run("math.primes", {"limit": 100000}, task_class="cpu", check=True)
        print(task.json(), task.decision.executor, task.decision.reason)
        print(taskrt.explain(task))
        for t in client.run_many([taskrt.TaskSpec("sys.sleep", {"ms": 10})] * 100):
            ...

The daemon is found as `taskrt` finds it: `target`, `socket`, $TASKRT_TARGET,
$TASKRT_SOCKET, $XDG_RUNTIME_DIR/taskrt/taskrt.sock, /tmp/taskrt-UID/taskrt.sock,
/run/taskrt/taskrt.sock (see taskrt._connection). The client connects when it is made
and raises taskrt.Unavailable, saying how to start the daemon, when nothing answers.

Errors: every failed call raises a taskrt.Error subclass (InvalidArgument, NotFound,
PermissionDenied, Unavailable, ...; see taskrt._errors). A task that fails is not a
failed call: its Task says why (task.error), and `check=True` / `task.check()` turn
it into taskrt.TaskFailed. Wait and Run outlive a daemon restart: UNAVAILABLE is
retried, 100 ms doubling to 2 s, for up to `reconnect_timeout` seconds.

Thread-safety: a Client may be used from several threads at once (gRPC channels are).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from . import _cluster, _connection, _errors
from ._spec import SpecLike, TaskSpec, to_proto_specs
from ._types import HandlerInfo, Stats, Task, TaskEvent, state_value
from .v1 import service_pb2, task_pb2

__all__ = ["Client", "Watch", "DEFAULT_RECONNECT_TIMEOUT"]

DEFAULT_RECONNECT_TIMEOUT = 60.0
# A Wait or Run call's deadline is its server-side timeout plus this (the C++ SDK's).
WAIT_DEADLINE_SLACK = 5.0
_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 2.0

T = TypeVar("T")


# --- Shared by Client and taskrt.aio.Client: requests, answers, retries ----------------

def run_key() -> str:
    """An idempotency key no other task has, as the C++ SDK makes it for Run."""
    return "run-" + secrets.token_hex(16)


def make_spec(handler: Any, input: Any, spec: dict[str, Any]) -> task_pb2.TaskSpec:
    """The TaskSpec of submit/run's arguments."""
    try:
        return TaskSpec(handler, input, **spec).to_proto()
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise TypeError("%s; the task's options are task_class, priority, timeout, labels, "
                            "max_attempts, retry_backoff, idempotency_key, function" % e) from e
        raise


def wait_timeouts(timeout: float | None) -> tuple[int, float | None]:
    """(timeout_ms for a Wait/Run request, the call's deadline in seconds) for `timeout`
    seconds, None meaning until the task is final. A zero wait is a 1 ms wait (0 on the
    wire means no limit)."""
    if timeout is None:
        return 0, None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be seconds as a number or None, not %s"
                        % type(timeout).__name__)
    timeout = max(0.0, float(timeout))
    return max(1, int(timeout * 1000)), timeout + WAIT_DEADLINE_SLACK


def ids_of(ids: Any, what: str = "ids") -> list[str]:
    if isinstance(ids, str):
        return [ids]
    if isinstance(ids, Task):
        return [ids.id]
    try:
        out = [i.id if isinstance(i, Task) else i for i in ids]
    except TypeError:
        raise TypeError("%s must be a task id (str), a Task or an iterable of them, not %s"
                        % (what, type(ids).__name__)) from None
    for i in out:
        if not isinstance(i, str):
            raise TypeError("%s must hold task ids (str), not %s" % (what, type(i).__name__))
    return out


def id_of(task_id: Any) -> str:
    if isinstance(task_id, Task):
        return task_id.id
    if not isinstance(task_id, str):
        raise TypeError("task_id must be a str (or a Task), not %s" % type(task_id).__name__)
    return task_id


def list_request(limit: int, states: Any, handler: str | None) -> service_pb2.ListRequest:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError("limit must be an int, not %s" % type(limit).__name__)
    if limit < 0:
        raise ValueError("limit must not be negative (got %d)" % limit)
    if isinstance(states, str):
        states = [states]
    request = service_pb2.ListRequest(limit=limit, handler=handler or "")
    for s in states or ():
        if not isinstance(s, str):
            raise TypeError("states must be state names such as 'running', not %s"
                            % type(s).__name__)
        request.states.append(state_value(s))
    return request


def expect_count(got: int, want: int, what: str) -> None:
    if got != want:
        raise _errors.Internal("the daemon returned %d %s for %d; this is a bug in taskrtd or "
                               "the client, please report it" % (got, what, want))


def task_or_raise(task: Task) -> Task:
    """`task` if it succeeded, else raises TaskFailed (TaskTimedOut, TaskCancelled)."""
    return task.check()


class Reconnect:
    """How a call outlives a daemon restart (client.cc's Reconnect): after UNAVAILABLE, try
    again after 100 ms doubling up to 2 s, until the daemon was unreachable for
    `reconnect_timeout` or the call's own `timeout` passed. One per call."""

    def __init__(self, timeout: float | None, reconnect_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = timeout
        self._reconnect_timeout = reconnect_timeout
        self._clock = clock
        self._start = clock()
        self._unreachable_since: float | None = None
        self._backoff = _FIRST_BACKOFF

    def left(self) -> float | None:
        """What is left of the call's timeout (None: no limit)."""
        if self._timeout is None:
            return None
        return max(0.0, self._timeout - (self._clock() - self._start))

    def progressed(self) -> None:
        self._unreachable_since = None
        self._backoff = _FIRST_BACKOFF

    def next_delay(self) -> float | None:
        """After an UNAVAILABLE: seconds to wait before trying again, or None to give up."""
        now = self._clock()
        if self._unreachable_since is None:
            self._unreachable_since = now
        if (now - self._unreachable_since >= self._reconnect_timeout or
                (self._timeout is not None and now - self._start >= self._timeout)):
            return None
        delay = self._backoff
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
        return delay


class StreamTracker:
    """The bookkeeping of one run_many call (client.cc's StreamOnce): which batch holds
    which spec, which task id answers which specs, and results that came before the
    Accepted naming their id. Pure; used by both clients."""

    def __init__(self, specs: Sequence[task_pb2.TaskSpec], batch: int) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError("batch must be a positive int (tasks per StreamRequest), not %r"
                             % (batch,))
        self.specs = specs
        self.batch = batch
        self.batches = (len(specs) + batch - 1) // batch
        self._positions: dict[str, list[int]] = {}
        self._early: dict[str, service_pb2.TaskResult] = {}
        self._seen = [False] * len(specs)
        self.done = 0

    @property
    def finished(self) -> bool:
        return self.done == len(self.specs)

    def requests(self) -> Iterator[service_pb2.StreamRequest]:
        for b in range(self.batches):
            yield service_pb2.StreamRequest(
                tasks=self.specs[b * self.batch:(b + 1) * self.batch], tag=b)

    def _deliver(self, position: int, result: service_pb2.TaskResult) -> list[Task]:
        if self._seen[position]:
            return []  # specs sharing an idempotency key get their task's result once each
        self._seen[position] = True
        self.done += 1
        return [Task.from_result(result, self.specs[position])]

    def on_response(self, response: service_pb2.StreamResponse) -> list[Task]:
        """The Tasks finished by `response`; raises the mapped Error for a refused batch."""
        out: list[Task] = []
        for a in response.accepted:
            if a.code != 0:
                first = a.tag * self.batch
                last = min(len(self.specs), (a.tag + 1) * self.batch) - 1
                span = "%d" % (first + 1) if first == last else "%d-%d" % (first + 1, last + 1)
                raise _errors.from_code(a.code, "batch %d of %d (tasks %s): %s"
                                        % (a.tag + 1, self.batches, span, a.message))
            for k, task_id in enumerate(a.task_ids):
                at = a.tag * self.batch + k
                if at >= len(self.specs):
                    break
                self._positions.setdefault(task_id, []).append(at)
                early = self._early.get(task_id)
                if early is not None:
                    out += self._deliver(at, early)
        for r in response.results:
            positions = self._positions.get(r.id)
            if positions is None:
                self._early[r.id] = r
                continue
            for p in positions:
                out += self._deliver(p, r)
        return out

    def incomplete(self) -> _errors.Error:
        return _errors.Internal("the stream ended after %d of %d results; the tasks accepted "
                                "run on (`taskrt list`)" % (self.done, len(self.specs)))


def unavailable_message(target: str, connect_timeout: float, details: str) -> str | None:
    """What to do when a call finds no daemon (gRPC's own words are kept after it); None
    when the daemon itself answered UNAVAILABLE (e.g. it is stopping)."""
    lowered = details.lower()
    if "failed to connect" in lowered or "connection refused" in lowered or \
            "no such file" in lowered or "socket closed" in lowered:
        return _connection.not_running_message(target, connect_timeout)
    return None


def map_rpc_error(e: Any, ep: _connection.Endpoint, connect_timeout: float) -> _errors.Error:
    """The taskrt.Error of a failed call to `ep`, with what to do added where gRPC's words
    do not say it (no daemon; a missing or refused token)."""
    details = (e.details() if hasattr(e, "details") else None) or ""
    error = _errors.from_rpc_error(e, unavailable_message(ep.target, connect_timeout, details))
    if isinstance(error, _errors.Unauthenticated) and ep.unauthenticated_hint:
        error = _errors.Unauthenticated("%s (%s)" % (error.details, ep.unauthenticated_hint))
    return error


# --- The blocking client -----------------------------------------------------------------

class Client:
    """A connection to taskrtd (see the module docstring). Use it as a context manager or
    call close(); one Client serves many threads.

    target: "unix:/path", "host:port" (needs a token); socket: a unix socket path.
    token / token_file: for TCP targets (else $TASKRT_TOKEN, $TASKRT_TOKEN_FILE). tls,
    tls_ca_file (else $TASKRT_TLS_CA), tls_server_name: TLS for TCP; tls_cert_file and
    tls_key_file: a client certificate (taskrtd --tls-client-ca). connect_timeout: seconds to wait for the
    daemon before raising Unavailable. reconnect_timeout: how long wait/run retry while
    the daemon is unreachable (e.g. restarting).

    A cluster target ("ipv4:A:P,B:P", "dns:///HOST:PORT", docs/CLUSTER.md) connects to
    every daemon: ids go to their owner, keyed specs to their key's owner, new tasks are
    spread by `spread` ("least-loaded", the default, or "round-robin"); cluster_stats()
    reports each daemon. Any other target is one daemon, as before.
    """

    def __init__(self, target: str | None = None, *, socket: str | None = None,
                 token: str | None = None, token_file: str | None = None,
                 tls: bool | None = None, tls_ca_file: str | None = None,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 tls_server_name: str | None = None, connect_timeout: float = 3.0,
                 reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
                 spread: str = "least-loaded") -> None:
        import grpc
        from .v1 import service_pb2_grpc

        self._grpc = grpc
        self._closed = False
        self._lock = threading.Lock()
        self._cluster: _cluster.ClusterOps | None = None
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        if spread not in _cluster.SPREADS:
            raise ValueError("spread must be one of %s, not %r" % (", ".join(_cluster.SPREADS),
                                                                  spread))
        resolved = _connection.resolve_target(target, socket)
        if _connection.is_cluster_target(resolved):
            self._connect_cluster(resolved, spread, dict(
                token=token, token_file=token_file, tls=tls, tls_ca_file=tls_ca_file,
                tls_cert_file=tls_cert_file, tls_key_file=tls_key_file,
                tls_server_name=tls_server_name))
            return
        self._endpoint = _connection.endpoint(
            target, socket=socket, token=token, token_file=token_file, tls=tls,
            tls_ca_file=tls_ca_file, tls_cert_file=tls_cert_file, tls_key_file=tls_key_file,
            tls_server_name=tls_server_name)
        self.target = self._endpoint.target
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self._metadata = self._endpoint.metadata or None
        self._channel = _connection.open_channel(self._endpoint)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise _errors.Unavailable(
                _connection.not_running_message(self.target, connect_timeout)) from None
        self._stub = service_pb2_grpc.TaskServiceStub(self._channel)

    def _connect_cluster(self, resolved: str, spread: str, options: dict[str, Any]) -> None:
        """One channel per daemon of a cluster target (docs/CLUSTER.md); Unavailable when
        none answers GetStats within connect_timeout."""
        addresses, dns_host = _connection.cluster_members(resolved)
        if dns_host is not None and not options["tls_server_name"]:
            options["tls_server_name"] = dns_host
        members = [_cluster.Member(_connection.endpoint(a, **options), self.connect_timeout)
                   for a in addresses]
        self.target = resolved
        self._endpoint = members[0].endpoint
        self._metadata = self._endpoint.metadata or None
        group = _cluster.Members(members, spread)
        group.probe_all(self.connect_timeout, force=True)
        if not group.named():
            group.close()
            raise _errors.Unavailable(
                "no taskrtd of the cluster target %s answered within %gs (%s): check that they "
                "run and listen on those addresses" % (resolved, self.connect_timeout,
                                                       ", ".join(addresses)))
        self._cluster = _cluster.ClusterOps(self, group)

    # Lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the channel; calls in flight end with Cancelled."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._cluster is not None:
                    self._cluster.members.close()
                else:
                    self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "taskrt.Client(%r)" % self.target

    # Plumbing ------------------------------------------------------------------------

    def _call(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        try:
            return method(request, metadata=self._metadata, timeout=timeout)
        except self._grpc.RpcError as e:
            raise map_rpc_error(e, self._endpoint, self.connect_timeout) from None

    def _retrying(self, timeout: float | None, attempt: Callable[[float | None], T]) -> T:
        """attempt(time left) until it raises anything but Unavailable, or Reconnect gives
        up (client.cc's RetryWhileUnavailable)."""
        reconnect = Reconnect(timeout, self.reconnect_timeout)
        while True:
            try:
                return attempt(reconnect.left())
            except _errors.Unavailable:
                delay = reconnect.next_delay()
                if delay is None:
                    raise
                time.sleep(delay)

    # Submitting ----------------------------------------------------------------------

    def submit(self, handler: str, input: Any = None, **spec: Any) -> str:
        """Queues one task; returns its id. Options: task_class ("auto", "cpu", "io"),
        priority, timeout (seconds), labels, max_attempts, retry_backoff (seconds),
        idempotency_key, function."""
        return self.submit_many([make_spec(handler, input, spec)])[0]

    def submit_many(self, specs: Iterable[SpecLike]) -> list[str]:
        """Queues tasks atomically (all or none); their ids in the order of `specs`."""
        if self._cluster is not None:
            return self._cluster.submit_many(list(to_proto_specs(specs)))
        request = service_pb2.SubmitRequest(tasks=to_proto_specs(specs))
        response = self._call(self._stub.Submit, request)
        expect_count(len(response.task_ids), len(request.tasks), "task ids")
        return list(response.task_ids)

    # Reading -------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        """The task as it is now (NotFound for an unknown id)."""
        return self.get_many([id_of(task_id)])[0]

    def get_many(self, ids: Iterable[str]) -> list[Task]:
        ids = ids_of(ids, "ids")
        if not ids:
            return []
        if self._cluster is not None:
            return self._cluster.get_many(ids)
        response = self._call(self._stub.Get, service_pb2.GetRequest(task_ids=ids))
        expect_count(len(response.tasks), len(ids), "tasks")
        return [Task.from_proto(t) for t in response.tasks]

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task once it is final; DeadlineExceeded after `timeout` seconds (the task
        keeps running). Survives a daemon restart (see reconnect_timeout)."""
        return self.wait_many([id_of(task_id)], timeout)[0]

    def wait_many(self, ids: Iterable[str], timeout: float | None = None) -> list[Task]:
        """The tasks once all are final, in the order of `ids`."""
        ids = ids_of(ids, "ids")
        if not ids:
            return []
        wait_timeouts(timeout)  # type errors before any call
        if self._cluster is not None:
            return self._cluster.wait_many(ids, timeout)

        def attempt(left: float | None) -> service_pb2.WaitResponse:
            ms, deadline = wait_timeouts(left)
            return self._call(self._stub.Wait,
                              service_pb2.WaitRequest(task_ids=ids, timeout_ms=ms), deadline)

        response = self._retrying(timeout, attempt)
        expect_count(len(response.tasks), len(ids), "tasks")
        return [Task.from_proto(t) for t in response.tasks]

    def run(self, handler: str, input: Any = None, *, timeout: float | None = None,
            check: bool = False, task_timeout: float | None = None, **spec: Any) -> Task:
        """Submits one task and returns it once final (the Run RPC: one round trip).

        timeout: seconds to wait for it (DeadlineExceeded after, the task keeps running);
        task_timeout: the task's own timeout (it is stopped and ends "timed_out").
        check: raise TaskFailed (TaskTimedOut, TaskCancelled) unless it succeeded. The
        other options are submit's. Without an idempotency_key, one "run-<random>" is
        set, so that the call retried after a daemon restart finds the same task.
        """
        wait_timeouts(timeout)
        if task_timeout is not None:
            spec["timeout"] = task_timeout
        pb = make_spec(handler, input, spec)
        user_key = bool(pb.idempotency_key)
        if not pb.idempotency_key:
            pb.idempotency_key = run_key()
        if self._cluster is not None:
            task = self._cluster.run(pb, user_key, timeout)
            return task_or_raise(task) if check else task

        def attempt(left: float | None) -> task_pb2.Task:
            ms, deadline = wait_timeouts(left)
            return self._call(self._stub.Run, service_pb2.RunRequest(spec=pb, timeout_ms=ms),
                              deadline)

        task = Task.from_proto(self._retrying(timeout, attempt))
        return task_or_raise(task) if check else task

    def run_many(self, specs: Iterable[SpecLike], *, batch: int = 1000,
                 timeout: float | None = None, check: bool = False) -> Iterator[Task]:
        """Runs many tasks over one Stream call and yields each Task as it finishes
        (finishing order; each carries the spec it came from: task.input, task.labels).

        Specs go in batches of `batch`, each accepted atomically; a refused batch raises
        its mapped Error ("batch 2 of 3 (tasks 1001-2000): ...") and ends the call (the
        batches accepted before it run on). timeout: seconds for the whole call. check:
        raise TaskFailed at the first task that did not succeed. Closing the iterator
        early cancels the call (the tasks accepted run on).
        """
        if self._cluster is not None:
            protos = to_proto_specs(specs)
            StreamTracker(protos, batch)  # checks batch
            wait_timeouts(timeout)
            return self._cluster.run_many(protos, batch, timeout, check)
        tracker = StreamTracker(to_proto_specs(specs), batch)
        wait_timeouts(timeout)
        return self._run_stream(tracker, timeout, check)

    def _run_stream(self, tracker: StreamTracker, timeout: float | None,
                    check: bool) -> Iterator[Task]:
        if tracker.finished:
            return
        call = self._stub.Stream(tracker.requests(), metadata=self._metadata, timeout=timeout)
        try:
            for response in call:
                for task in tracker.on_response(response):
                    yield task_or_raise(task) if check else task
                if tracker.finished:
                    break
        except self._grpc.RpcError as e:
            raise map_rpc_error(e, self._endpoint, self.connect_timeout) from None
        finally:
            if not tracker.finished:
                call.cancel()
        if not tracker.finished:
            raise tracker.incomplete()

    # Changing ------------------------------------------------------------------------

    def cancel(self, ids: str | Task | Iterable[str]) -> Task | list[Task]:
        """Cancels queued or running tasks (final ones stay as they are). One id: its Task
        after the cancel; an iterable: the list of them."""
        one = isinstance(ids, (str, Task))
        ids = ids_of(ids, "ids")
        if not ids:
            return []
        if self._cluster is not None:
            tasks = self._cluster.cancel(ids)
            return tasks[0] if one else tasks
        response = self._call(self._stub.Cancel, service_pb2.CancelRequest(task_ids=ids))
        expect_count(len(response.tasks), len(ids), "tasks")
        tasks = [Task.from_proto(t) for t in response.tasks]
        return tasks[0] if one else tasks

    # Looking around ------------------------------------------------------------------

    def list(self, limit: int = 100, states: str | Iterable[str] | None = None,
             handler: str | None = None) -> list[Task]:
        """Recent tasks, newest first; states: names such as "running" (None: all)."""
        request = list_request(limit, states, handler)
        if self._cluster is not None:
            return self._cluster.list(request)
        response = self._call(self._stub.List, request)
        return [Task.from_proto(t) for t in response.tasks]

    def watch(self, ids: Iterable[str] | None = None) -> "Watch":
        """Live events of the tasks `ids` (None: every task the caller may see), until
        watch.cancel() or the end of a `with` block. Returns once the daemon took the
        watch up, so the events of what is submitted afterwards are seen."""
        ids = ids_of(ids, "ids") if ids is not None else []
        if self._cluster is not None:
            return _cluster.MultiWatch(self._cluster.watch_calls(ids),  # type: ignore
                                       self.connect_timeout)
        call = self._stub.Watch(service_pb2.WatchRequest(task_ids=ids),
                                metadata=self._metadata)
        call.initial_metadata()  # the daemon sends it as it registers the watch
        return Watch(call, self)

    def stats(self) -> Stats:
        """Pools, workers, queues and what the classifier learned. On a cluster: the first
        daemon that answers (cluster_stats() gives every one)."""
        if self._cluster is not None:
            return Stats.from_proto(self._cluster.first_answer(
                "GetStats", service_pb2.GetStatsRequest()))
        return Stats.from_proto(self._call(self._stub.GetStats, service_pb2.GetStatsRequest()))

    def handlers(self) -> list[HandlerInfo]:
        """The handlers the workers registered (built-ins, plugins, Python)."""
        if self._cluster is not None:
            response = self._cluster.first_answer("ListHandlers",
                                                  service_pb2.ListHandlersRequest())
            return [HandlerInfo.from_proto(h) for h in response.handlers]
        response = self._call(self._stub.ListHandlers, service_pb2.ListHandlersRequest())
        return [HandlerInfo.from_proto(h) for h in response.handlers]


    def cluster_stats(self) -> list[tuple[str, Stats | _errors.Error]]:
        """(daemon name, or address if it never answered; its Stats or the Error of
        asking) for every daemon of the target; one entry for a single daemon."""
        if self._cluster is not None:
            return self._cluster.cluster_stats()
        try:
            stats = self.stats()
        except _errors.Error as e:
            return [(self.target, e)]
        return [(stats.daemon or self.target, stats)]


class Watch:
    """An iterator of TaskEvent from a Watch call; cancel() (or leaving `with`) ends it."""

    def __init__(self, call: Any, client: Client) -> None:
        self._call = call
        self._client = client

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> TaskEvent:
        try:
            return TaskEvent.from_proto(next(self._call))
        except self._client._grpc.RpcError as e:
            if e.code() == self._client._grpc.StatusCode.CANCELLED and self._call.cancelled():
                raise StopIteration from None
            raise map_rpc_error(e, self._client._endpoint, self._client.connect_timeout) from None

    def cancel(self) -> None:
        self._call.cancel()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cancel()

