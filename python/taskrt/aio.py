"""taskrt.aio.Client: taskrt.Client for asyncio, on grpc.aio.

    import taskrt.aio

    async with taskrt.aio.Client() as client:
        task = await client.run("sys.sleep", {"ms": 100}, check=True)
        async for t in client.run_many(specs):
            ...
        async with client.watch() as events:
            async for event in events:
                ...

The same methods, arguments, results and errors as taskrt.Client, as coroutines
(run_many and watch are async iterators). The channel belongs to the event loop that
connects it: `async with` (or `await client.connect()`) inside that loop; a method
called before connects first. Unavailable, with how to start the daemon, when nothing
answers within connect_timeout.

A cluster target ("ipv4:A:P,B:P", "dns:///HOST:PORT", docs/CLUSTER.md) connects to every
daemon and follows taskrt.Client's rules (the same code decides): ids go to their owner,
keyed specs to their key's owner, new tasks are spread by `spread`; calls to several
daemons are made at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, TypeVar

from . import _aio_cluster, _cluster, _connection, _errors
from ._client import (DEFAULT_RECONNECT_TIMEOUT, Reconnect, StreamTracker, expect_count, id_of,
                      ids_of, list_request, make_spec, map_rpc_error, run_key, task_or_raise,
                      wait_timeouts)
from ._spec import SpecLike, to_proto_specs
from ._types import HandlerInfo, Stats, Task, TaskEvent
from .v1 import service_pb2, task_pb2

__all__ = ["Client", "Watch"]

T = TypeVar("T")


class Client:
    """An asyncio connection to taskrtd; the arguments are taskrt.Client's."""

    def __init__(self, target: str | None = None, *, socket: str | None = None,
                 token: str | None = None, token_file: str | None = None,
                 tls: bool | None = None, tls_ca_file: str | None = None,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 tls_server_name: str | None = None, connect_timeout: float = 3.0,
                 reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
                 spread: str = "least-loaded") -> None:
        if spread not in _cluster.SPREADS:
            raise ValueError("spread must be one of %s, not %r" % (", ".join(_cluster.SPREADS),
                                                                  spread))
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self._channel: Any = None
        self._stub: Any = None
        self._connecting: asyncio.Lock | None = None
        self._cluster: _aio_cluster.AioClusterOps | None = None
        self._spread = spread
        # Resolved now: a foreign socket, a clear-text token or a name that does not
        # resolve fails here, before a loop.
        resolved = _connection.resolve_target(target, socket)
        self._members: list[_connection.Endpoint] = []
        if _connection.is_cluster_target(resolved):
            addresses, dns_host = _connection.cluster_members(resolved)
            options = dict(token=token, token_file=token_file, tls=tls, tls_ca_file=tls_ca_file,
                           tls_cert_file=tls_cert_file, tls_key_file=tls_key_file,
                           tls_server_name=tls_server_name or dns_host)
            self._members = [_connection.endpoint(a, **options) for a in addresses]
            self.target = resolved
            self._endpoint = self._members[0]
            self._metadata = self._endpoint.metadata or None
            return
        self._endpoint = _connection.endpoint(
            target, socket=socket, token=token, token_file=token_file, tls=tls,
            tls_ca_file=tls_ca_file, tls_cert_file=tls_cert_file, tls_key_file=tls_key_file,
            tls_server_name=tls_server_name)
        self.target = self._endpoint.target
        self._metadata = self._endpoint.metadata or None

    # Lifetime ------------------------------------------------------------------------

    async def connect(self) -> "Client":
        """Opens the channel and waits until the daemon answers (Unavailable if not)."""
        if self._stub is not None or self._cluster is not None:
            return self
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._stub is not None or self._cluster is not None:
                return self
            if self._members:
                await self._connect_cluster()
                return self
            from .v1 import service_pb2_grpc
            channel = _connection.open_aio_channel(self._endpoint)
            try:
                await asyncio.wait_for(channel.channel_ready(), self.connect_timeout)
            except asyncio.TimeoutError:
                await channel.close()
                raise _errors.Unavailable(
                    _connection.not_running_message(self.target, self.connect_timeout)) from None
            self._channel = channel
            self._stub = service_pb2_grpc.TaskServiceStub(channel)
        return self

    async def _connect_cluster(self) -> None:
        """One channel per daemon (docs/CLUSTER.md); Unavailable when none answers GetStats
        within connect_timeout."""
        members = _cluster.Members([_cluster.Member(ep, self.connect_timeout, aio=True)
                                    for ep in self._members], self._spread)
        await _aio_cluster.probe_all(members, self.connect_timeout, force=True)
        if not members.named():
            await _aio_cluster.close_all(members)
            raise _errors.Unavailable(
                "no taskrtd of the cluster target %s answered within %gs (%s): check that they "
                "run and listen on those addresses" % (
                    self.target, self.connect_timeout,
                    ", ".join(ep.target for ep in self._members)))
        self._cluster = _aio_cluster.AioClusterOps(self, members)

    async def _ops(self) -> _aio_cluster.AioClusterOps | None:
        """The cluster's calls once connected, None for one daemon."""
        if self._members and self._cluster is None:
            await self.connect()
        return self._cluster

    async def close(self) -> None:
        """Closes the channel; calls in flight end with Cancelled."""
        if self._cluster is not None:
            cluster, self._cluster = self._cluster, None
            await _aio_cluster.close_all(cluster.members)
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()

    async def __aenter__(self) -> "Client":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return "taskrt.aio.Client(%r)" % self.target

    # Plumbing ------------------------------------------------------------------------

    async def _stub_ready(self) -> Any:
        if self._stub is None:
            await self.connect()
        return self._stub

    def _map(self, e: Any) -> _errors.Error:
        return map_rpc_error(e, self._endpoint, self.connect_timeout)

    async def _call(self, name: str, request: Any, timeout: float | None = None) -> Any:
        import grpc
        stub = await self._stub_ready()
        try:
            return await getattr(stub, name)(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as e:
            raise self._map(e) from None

    async def _retrying(self, timeout: float | None,
                        attempt: Callable[[float | None], Awaitable[T]]) -> T:
        reconnect = Reconnect(timeout, self.reconnect_timeout)
        while True:
            try:
                return await attempt(reconnect.left())
            except _errors.Unavailable:
                delay = reconnect.next_delay()
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    # Submitting ----------------------------------------------------------------------

    async def submit(self, handler: str, input: Any = None, **spec: Any) -> str:
        """As taskrt.Client.submit."""
        return (await self.submit_many([make_spec(handler, input, spec)]))[0]

    async def submit_many(self, specs: Iterable[SpecLike]) -> list[str]:
        """As taskrt.Client.submit_many."""
        protos = to_proto_specs(specs)
        cluster = await self._ops()
        if cluster is not None:
            return await cluster.submit_many(list(protos))
        request = service_pb2.SubmitRequest(tasks=protos)
        response = await self._call("Submit", request)
        expect_count(len(response.task_ids), len(request.tasks), "task ids")
        return list(response.task_ids)

    # Reading -------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        """As taskrt.Client.get."""
        return (await self.get_many([id_of(task_id)]))[0]

    async def get_many(self, ids: Iterable[str]) -> list[Task]:
        ids = ids_of(ids, "ids")
        if not ids:
            return []
        cluster = await self._ops()
        if cluster is not None:
            return await cluster.get_many(ids)
        response = await self._call("Get", service_pb2.GetRequest(task_ids=ids))
        expect_count(len(response.tasks), len(ids), "tasks")
        return [Task.from_proto(t) for t in response.tasks]

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """As taskrt.Client.wait."""
        return (await self.wait_many([id_of(task_id)], timeout))[0]

    async def wait_many(self, ids: Iterable[str],
                        timeout: float | None = None) -> list[Task]:
        ids = ids_of(ids, "ids")
        if not ids:
            return []
        wait_timeouts(timeout)
        cluster = await self._ops()
        if cluster is not None:
            return await cluster.wait_many(ids, timeout)

        async def attempt(left: float | None) -> service_pb2.WaitResponse:
            ms, deadline = wait_timeouts(left)
            return await self._call("Wait", service_pb2.WaitRequest(task_ids=ids, timeout_ms=ms),
                                    deadline)

        response = await self._retrying(timeout, attempt)
        expect_count(len(response.tasks), len(ids), "tasks")
        return [Task.from_proto(t) for t in response.tasks]

    async def run(self, handler: str, input: Any = None, *, timeout: float | None = None,
                  check: bool = False, task_timeout: float | None = None, **spec: Any) -> Task:
        """As taskrt.Client.run."""
        wait_timeouts(timeout)
        if task_timeout is not None:
            spec["timeout"] = task_timeout
        pb = make_spec(handler, input, spec)
        user_key = bool(pb.idempotency_key)
        if not pb.idempotency_key:
            pb.idempotency_key = run_key()
        cluster = await self._ops()
        if cluster is not None:
            task = await cluster.run(pb, user_key, timeout)
            return task_or_raise(task) if check else task

        async def attempt(left: float | None) -> task_pb2.Task:
            ms, deadline = wait_timeouts(left)
            return await self._call("Run", service_pb2.RunRequest(spec=pb, timeout_ms=ms),
                                    deadline)

        task = Task.from_proto(await self._retrying(timeout, attempt))
        return task_or_raise(task) if check else task

    async def run_many(self, specs: Iterable[SpecLike], *, batch: int = 1000,
                       timeout: float | None = None,
                       check: bool = False) -> AsyncIterator[Task]:
        """As taskrt.Client.run_many, as an async iterator."""
        import grpc
        protos = to_proto_specs(specs)
        tracker = StreamTracker(protos, batch)
        wait_timeouts(timeout)
        if tracker.finished:
            return
        cluster = await self._ops()
        if cluster is not None:
            async for task in cluster.run_many(protos, batch, timeout, check):
                yield task
            return
        stub = await self._stub_ready()

        async def requests() -> AsyncIterator[service_pb2.StreamRequest]:
            for r in tracker.requests():
                yield r

        call = stub.Stream(requests(), metadata=self._metadata, timeout=timeout)
        try:
            async for response in call:
                for task in tracker.on_response(response):
                    yield task_or_raise(task) if check else task
                if tracker.finished:
                    break
        except grpc.RpcError as e:
            raise self._map(e) from None
        finally:
            if not tracker.finished:
                call.cancel()
        if not tracker.finished:
            raise tracker.incomplete()

    # Changing ------------------------------------------------------------------------

    async def cancel(self, ids: str | Task | Iterable[str]) -> Task | list[Task]:
        """As taskrt.Client.cancel."""
        one = isinstance(ids, (str, Task))
        ids = ids_of(ids, "ids")
        if not ids:
            return []
        cluster = await self._ops()
        if cluster is not None:
            tasks = await cluster.cancel(ids)
            return tasks[0] if one else tasks
        response = await self._call("Cancel", service_pb2.CancelRequest(task_ids=ids))
        expect_count(len(response.tasks), len(ids), "tasks")
        tasks = [Task.from_proto(t) for t in response.tasks]
        return tasks[0] if one else tasks

    # Looking around ------------------------------------------------------------------

    async def list(self, limit: int = 100, states: str | Iterable[str] | None = None,
                   handler: str | None = None) -> list[Task]:
        """As taskrt.Client.list."""
        request = list_request(limit, states, handler)
        cluster = await self._ops()
        if cluster is not None:
            return await cluster.list(request)
        response = await self._call("List", request)
        return [Task.from_proto(t) for t in response.tasks]

    def watch(self, ids: Iterable[str] | None = None) -> "Watch":
        """As taskrt.Client.watch: an async iterator of TaskEvent; `async with` or
        cancel() ends it. On a cluster, one Watch per daemon concerned, merged."""
        ids = ids_of(ids, "ids") if ids is not None else []
        return Watch(self, service_pb2.WatchRequest(task_ids=ids))

    async def stats(self) -> Stats:
        """As taskrt.Client.stats (on a cluster: the first daemon that answers)."""
        cluster = await self._ops()
        if cluster is not None:
            return Stats.from_proto(await cluster.first_answer(
                "GetStats", service_pb2.GetStatsRequest()))
        return Stats.from_proto(await self._call("GetStats", service_pb2.GetStatsRequest()))

    async def cluster_stats(self) -> list[tuple[str, Stats | _errors.Error]]:
        """As taskrt.Client.cluster_stats: (daemon name, its Stats or the Error of asking
        it) for each daemon, asked at once; one entry for a single daemon."""
        cluster = await self._ops()
        if cluster is not None:
            return await cluster.cluster_stats()
        try:
            stats = await self.stats()
        except _errors.Error as e:
            return [(self.target, e)]
        return [(stats.daemon or self.target, stats)]

    async def handlers(self) -> list[HandlerInfo]:
        """As taskrt.Client.handlers."""
        cluster = await self._ops()
        if cluster is not None:
            response = await cluster.first_answer("ListHandlers",
                                                  service_pb2.ListHandlersRequest())
        else:
            response = await self._call("ListHandlers", service_pb2.ListHandlersRequest())
        return [HandlerInfo.from_proto(h) for h in response.handlers]


class Watch:
    """An async iterator of TaskEvent from a Watch call, started by `async with` (after
    which the events of what is submitted are seen) or by the first iteration."""

    def __init__(self, client: Client, request: service_pb2.WatchRequest) -> None:
        self._client = client
        self._request = request
        self._call: Any = None
        self._cancelled = False
        self._merged: _aio_cluster.ClusterWatch | None = None  # on a cluster target

    async def _start(self) -> Any:
        if self._call is None and self._merged is None and self._client._members:
            ops = await self._client._ops()
            assert ops is not None
            self._merged = ops.watch(list(self._request.task_ids))
            await self._merged.__aenter__()
        if self._merged is not None:
            return None
        if self._call is None:
            stub = await self._client._stub_ready()
            self._call = stub.Watch(self._request, metadata=self._client._metadata)
            await self._call.initial_metadata()  # sent as the daemon registers the watch
        return self._call

    def __aiter__(self) -> "Watch":
        return self

    async def __anext__(self) -> TaskEvent:
        import grpc
        if self._cancelled:
            raise StopAsyncIteration
        call = await self._start()
        if self._merged is not None:
            return await self._merged.__anext__()
        try:
            pb = await call.read()
        except asyncio.CancelledError:
            if self._cancelled:
                raise StopAsyncIteration from None
            raise
        except grpc.RpcError as e:
            if self._cancelled or e.code() == grpc.StatusCode.CANCELLED and call.cancelled():
                raise StopAsyncIteration from None
            raise self._client._map(e) from None
        if pb is grpc.aio.EOF:
            raise StopAsyncIteration
        return TaskEvent.from_proto(pb)

    def cancel(self) -> None:
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()
        if self._merged is not None:
            self._merged.cancel()

    async def __aenter__(self) -> "Watch":
        await self._start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cancel()
