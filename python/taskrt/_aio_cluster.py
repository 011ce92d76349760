"""taskrt.aio.Client over several daemons: taskrt._cluster's rules, with asyncio calls.

Members (what is known of the daemons) and the planning functions are taskrt._cluster's,
so the sync and the asyncio clients put every task and id in the same place; this module
makes their calls as coroutines, several at once with asyncio.gather where the sync
client uses threads. Everything runs on the event loop that connected the client.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from . import _errors
from ._cluster import (Draining, Member, Members, SubmitParts, group_by_owner, merge_lists,
                       merged_event, plan_streams, plan_submit)
from ._types import Stats, Task, TaskEvent
from .v1 import service_pb2, task_pb2


async def call(m: Member, method: str, request: Any, timeout: float | None = None,
               refusable: bool = False) -> Any:
    """The RPC `method` on `m`; raises the mapped taskrt.Error, or Draining for a refusal
    while draining when `refusable`."""
    import grpc
    try:
        return await getattr(m.stub, method)(request, metadata=m.metadata, timeout=timeout)
    except grpc.RpcError as e:
        raise m.mapped(e, refusable) from None


async def _stats(m: Member, timeout: float, wait: bool) -> service_pb2.Stats:
    return await m.stub.GetStats(service_pb2.GetStatsRequest(), metadata=m.metadata,
                                 timeout=timeout, wait_for_ready=wait)


async def probe_all(members: Members, timeout: float, force: bool = False) -> None:
    """Asks the unnamed members due for a probe for their stats, all at once."""
    todo = members.to_probe(force)
    answers = await asyncio.gather(*(_stats(m, timeout, True) for m in todo),
                                   return_exceptions=True)
    for m, answer in zip(todo, answers):
        if isinstance(answer, BaseException):
            continue  # not answering is what a probe finds out
        if not members.probed(m, answer):
            await m.channel.close()


async def close_all(members: Members) -> None:
    await asyncio.gather(*(m.channel.close() for m in members.all()))


class AioClusterOps:
    """taskrt.aio.Client's calls on a cluster target; `client` gives connect_timeout and
    the retry helper (_retrying)."""

    def __init__(self, client: Any, members: Members) -> None:
        self._client = client
        self.members = members

    @property
    def _timeout(self) -> float:
        return self._client.connect_timeout

    # What a decision needs -------------------------------------------------------------

    async def _names(self) -> None:
        """Probes the unnamed members (each at most once a second)."""
        if self.members.unnamed():
            await probe_all(self.members, self._timeout)

    async def _ready(self) -> None:
        """Names, and fresh loads for least-loaded: what choose() decides on."""
        await self._names()
        if self.members.least_loaded:
            stale = self.members.stale()
            answers = await asyncio.gather(
                *(_stats(m, min(self._timeout, 0.5), False) for m in stale),
                return_exceptions=True)
            for m, answer in zip(stale, answers):
                if not isinstance(answer, BaseException):
                    self.members.loaded(m, answer)

    async def _pick(self, count: int = 1, exclude: Sequence[Member] = ()) -> Member:
        await self._ready()
        return self.members.choose(count, exclude)

    async def _key_owner(self, key: str) -> Member:
        await self._names()
        return self.members.key_owner(key)

    async def _groups(self, ids: Sequence[str]) -> list[tuple[Member, list[int]]]:
        from ._cluster import owner_of
        if not {owner_of(i) for i in ids} <= self.members.named().keys():
            await probe_all(self.members, self._timeout)
        return group_by_owner(ids, self.members.lookup)

    # Submitting ----------------------------------------------------------------------

    async def submit_many(self, specs: list[task_pb2.TaskSpec]) -> list[str]:
        if any(s.idempotency_key for s in specs):
            await self._names()
        plan = plan_submit(specs, self.members.key_owner)
        if plan[0][0] is None:
            tried: list[Member] = []
            while True:
                m = await self._pick(len(specs), tried)
                try:
                    return await self._submit_to(m, specs)
                except Draining:
                    self.members.mark_draining(m)
                    tried.append(m)
        parts = SubmitParts(len(specs))
        for m, positions in plan:
            assert m is not None
            try:
                parts.accepted(m, positions,
                               await self._submit_to(m, [specs[i] for i in positions]))
            except Draining as d:
                raise parts.failed(m, d.error) from None
            except _errors.Error as e:
                raise parts.failed(m, e) from None
        return parts.ids()

    async def _submit_to(self, m: Member, specs: list[task_pb2.TaskSpec]) -> list[str]:
        from ._client import expect_count
        response = await call(m, "Submit", service_pb2.SubmitRequest(tasks=specs),
                              refusable=True)
        self.members.report_load(m, response.load)
        expect_count(len(response.task_ids), len(specs), "task ids")
        return list(response.task_ids)

    async def run(self, pb: task_pb2.TaskSpec, user_key: bool, timeout: float | None) -> Task:
        """As ClusterOps.run: a keyed spec on its key's owner, a generated key on the
        member of the spread, moved only on a drain."""
        from ._client import wait_timeouts
        place = [await (self._key_owner(pb.idempotency_key) if user_key else self._pick())]
        tried: list[Member] = []

        async def attempt(left: float | None) -> task_pb2.Task:
            while True:
                ms, deadline = wait_timeouts(left)
                try:
                    return await call(place[0], "Run",
                                      service_pb2.RunRequest(spec=pb, timeout_ms=ms), deadline,
                                      refusable=True)
                except Draining as d:
                    if user_key:
                        raise d.error from None
                    self.members.mark_draining(place[0])
                    tried.append(place[0])
                    place[0] = await self._pick(1, tried)

        return Task.from_proto(await self._client._retrying(timeout, attempt))

    # Reading and changing --------------------------------------------------------------

    async def _by_owner(self, ids: list[str],
                        ask: Callable[[Member, list[str]], Awaitable[Any]]) -> list[Task]:
        """ask(owner, its ids) for each owner at once; the tasks in the order of `ids`."""
        from ._client import expect_count
        groups = await self._groups(ids)
        parts = [[ids[i] for i in positions] for _, positions in groups]
        responses = await asyncio.gather(*(ask(m, part) for (m, _), part in zip(groups, parts)))
        out: list[Task | None] = [None] * len(ids)
        for (_, positions), part, response in zip(groups, parts, responses):
            expect_count(len(response.tasks), len(part), "tasks")
            for i, t in zip(positions, response.tasks):
                out[i] = Task.from_proto(t)
        return out  # type: ignore[return-value]

    async def get_many(self, ids: list[str]) -> list[Task]:
        return await self._by_owner(
            ids, lambda m, part: call(m, "Get", service_pb2.GetRequest(task_ids=part)))

    async def cancel(self, ids: list[str]) -> list[Task]:
        return await self._by_owner(
            ids, lambda m, part: call(m, "Cancel", service_pb2.CancelRequest(task_ids=part)))

    async def wait_many(self, ids: list[str], timeout: float | None) -> list[Task]:
        """Every owner at once, each retried while unreachable within `timeout`."""
        from ._client import wait_timeouts

        async def wait_on(m: Member, part: list[str]) -> service_pb2.WaitResponse:
            async def attempt(left: float | None) -> service_pb2.WaitResponse:
                ms, deadline = wait_timeouts(left)
                return await call(m, "Wait",
                                  service_pb2.WaitRequest(task_ids=part, timeout_ms=ms),
                                  deadline)
            return await self._client._retrying(timeout, attempt)

        return await self._by_owner(ids, wait_on)

    async def list(self, request: service_pb2.ListRequest) -> list[Task]:
        """As ClusterOps.list: every member at once; one that does not answer, or never
        answered, fails the call with its name."""
        await self._names()
        self.members.all_answered("a list of every daemon's tasks")

        async def list_on(m: Member) -> Any:
            try:
                return (await call(m, "List", request, self._timeout)).tasks
            except _errors.Error as e:
                raise m.failed(e) from e

        return merge_lists(request, await asyncio.gather(
            *(list_on(m) for m in self.members.all())))

    async def cluster_stats(self) -> list[tuple[str, Stats | _errors.Error]]:
        members = self.members.all()
        answers = await asyncio.gather(
            *(call(m, "GetStats", service_pb2.GetStatsRequest(), self._timeout)
              for m in members), return_exceptions=True)
        out: list[tuple[str, Stats | _errors.Error]] = []
        for m, answer in zip(members, answers):
            if isinstance(answer, _errors.Error):
                out.append((m.label, answer))
            elif isinstance(answer, BaseException):
                raise answer
            else:
                out.append((m.label, Stats.from_proto(answer)))
        return out

    async def first_answer(self, method: str, request: Any) -> Any:
        """`method` on the first member that answers (stats, handlers)."""
        error: _errors.Error | None = None
        for m in self.members.all():
            try:
                return await call(m, method, request, self._timeout)
            except _errors.Unavailable as e:
                error = e
        raise error or _errors.Unavailable("no daemon answered %s" % method)

    def watch(self, ids: list[str]) -> "ClusterWatch":
        return ClusterWatch(self, ids)

    # run_many ----------------------------------------------------------------------------

    async def run_many(self, specs: Sequence[task_pb2.TaskSpec], batch: int,
                       timeout: float | None, check: bool) -> AsyncIterator[Task]:
        """Specs spread task by task (keyed ones on their owner), one Stream per member, all
        read at once; results in finishing order."""
        from ._client import task_or_raise
        await self._ready()
        keyed = self.members.key_owner

        def place(s: task_pb2.TaskSpec) -> Member:
            return keyed(s.idempotency_key) if s.idempotency_key else self.members.choose()

        results: asyncio.Queue = asyncio.Queue()
        streams = [_Stream(self.members, m, tracker, timeout, results)
                   for m, tracker in plan_streams(specs, place, batch)]
        running = len(streams)
        try:
            while running:
                kind, value = await results.get()
                if kind == "task":
                    yield task_or_raise(value) if check else value
                elif kind == "error":
                    raise value
                else:
                    running -= 1
        finally:
            for s in streams:
                s.cancel()


class _Stream:
    """One member's Stream call of a run_many, read by a task of its own that puts
    ("task", Task), then ("done", None) or ("error", Error) into `results`."""

    def __init__(self, members: Members, m: Member, tracker: Any, timeout: float | None,
                 results: asyncio.Queue) -> None:
        async def requests() -> AsyncIterator[service_pb2.StreamRequest]:
            for r in tracker.requests():
                yield r

        self._members, self._m, self._tracker, self._results = members, m, tracker, results
        self._call = m.stub.Stream(requests(), metadata=m.metadata, timeout=timeout)
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        import grpc
        m, tracker = self._m, self._tracker
        try:
            async for response in self._call:
                for a in response.accepted:
                    if a.code == 0:
                        self._members.report_load(m, a.load)
                for task in tracker.on_response(response):
                    await self._results.put(("task", task))
                if tracker.finished:
                    break
            if not tracker.finished:
                raise tracker.incomplete()
            await self._results.put(("done", None))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                await self._results.put(("done", None))
            else:
                await self._results.put(("error", m.failed(m.mapped(e, False))))  # type: ignore
        except _errors.Error as e:
            await self._results.put(("error", m.failed(e)))

    def cancel(self) -> None:
        self._call.cancel()
        self._task.cancel()


class ClusterWatch:
    """taskrt.aio.Watch over several daemons: one Watch call per owner of the ids (every
    daemon for a watch of all tasks), their events as one async iterator; `async with`
    starts them all (the events of what is submitted afterwards are seen), cancel() or a
    failing call ends them all."""

    def __init__(self, ops: AioClusterOps, ids: list[str]) -> None:
        self._ops = ops
        self._ids = ids
        self._calls: list[tuple[Member, Any]] | None = None
        self._pumps: list[asyncio.Future] = []
        self._events: asyncio.Queue = asyncio.Queue()
        self._open = 0
        self._cancelled = False

    async def _start(self) -> None:
        if self._calls is not None:
            return
        if self._ids:
            targets = [(m, [self._ids[i] for i in positions])
                       for m, positions in await self._ops._groups(self._ids)]
        else:
            targets = [(m, []) for m in self._ops.members.named().values()]
        self._calls = [(m, m.stub.Watch(service_pb2.WatchRequest(task_ids=part),
                                        metadata=m.metadata)) for m, part in targets]
        self._open = len(self._calls)
        try:
            # Sent as each daemon registers its watch.
            await asyncio.gather(*(c.initial_metadata() for _, c in self._calls))
        except BaseException:
            self.cancel()
            raise
        self._pumps = [asyncio.ensure_future(self._pump(m, c)) for m, c in self._calls]

    async def _pump(self, m: Member, watch_call: Any) -> None:
        import grpc
        try:
            async for event in watch_call:
                await self._events.put(("event", event))
            await self._events.put(("done", None))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED and watch_call.cancelled():
                await self._events.put(("done", None))
            else:
                await self._events.put(("error", m.failed(m.mapped(e, False))))  # type: ignore

    def __aiter__(self) -> "ClusterWatch":
        return self

    async def __anext__(self) -> TaskEvent:
        if self._cancelled:
            raise StopAsyncIteration
        await self._start()
        while self._open and not self._cancelled:
            event = merged_event(self, *await self._events.get())
            if event is not None:
                return event
        raise StopAsyncIteration

    def cancel(self) -> None:
        self._cancelled = True
        for _, c in self._calls or ():
            c.cancel()
        for p in self._pumps:
            p.cancel()

    async def __aenter__(self) -> "ClusterWatch":
        await self._start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cancel()
