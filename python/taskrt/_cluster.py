"""taskrt.Client over several daemons (docs/CLUSTER.md): the same rules as the C++ SDK.

The pieces: pure functions (owner_of, fnv1a64, key_owner) that need no daemon; Members,
which knows the daemons, their names, loads and drains, and picks where a new task goes;
and ClusterOps, the Client's calls split over the members.

Thread-safety: Members guards its state with one lock; ClusterOps may be used from several
threads at once, as taskrt.Client.
"""

from __future__ import annotations

import random
import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import _connection, _errors
from ._types import Stats, Task, TaskEvent
from .v1 import service_pb2, task_pb2

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1
# A load report older than this counts as 0 (the daemon may have finished its work).
LOAD_REPORT_TTL = 1.0
# A member that refused new tasks as draining gets none for this long.
DRAIN_PAUSE = 5.0
# A member that did not answer is asked again at most this often.
REPROBE_INTERVAL = 1.0
SPREADS = ("least-loaded", "round-robin")


def fnv1a64(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * _FNV_PRIME) & _MASK64
    return h


def mix64(h: int) -> int:
    """MurmurHash3's 64-bit finalizer: FNV-1a alone mixes names that differ in one
    character too little (30 keys over node-0..node-2 went to two of them)."""
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & _MASK64
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & _MASK64
    h ^= h >> 33
    return h


def key_owner(names: Iterable[str], key: str) -> str:
    """The name that wins rendezvous hashing for `key`: the highest
    Mix64(FNV-1a-64(name + "\\n" + key)), ties to the smaller name (as client/cluster.cc)."""
    return min(names, key=lambda n: (-mix64(fnv1a64((n + "\n" + key).encode("utf-8"))), n))


def owner_of(task_id: str) -> str:
    """The daemon name of a task id: the text before its last '-'."""
    return task_id.rpartition("-")[0]


def is_draining(e: Any) -> bool:
    """Whether a grpc.RpcError is a daemon's refusal while draining (nothing accepted)."""
    import grpc
    if not hasattr(e, "code") or e.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    try:
        trailing = e.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - a call without metadata is not a drain
        return False
    return any(k == "taskrt-not-accepted" and v == "draining" for k, v in trailing)


class Draining(Exception):
    """A Submit/Run refused by a draining member; `error` is the mapped taskrt.Error."""

    def __init__(self, member: "Member", error: _errors.Error) -> None:
        super().__init__(str(error))
        self.member = member
        self.error = error


class Member:
    """One daemon address: its channel (a grpc.aio one when `aio`, opened in the loop that
    uses it), and (under Members' lock) what is known of it."""

    def __init__(self, ep: _connection.Endpoint, connect_timeout: float,
                 aio: bool = False) -> None:
        from .v1 import service_pb2_grpc
        self.endpoint = ep
        self.address = ep.target
        self.connect_timeout = connect_timeout
        self.metadata = ep.metadata or None
        self.channel = (_connection.open_aio_channel(ep) if aio else
                        _connection.open_channel(ep))
        self.stub = service_pb2_grpc.TaskServiceStub(self.channel)
        self.name: str | None = None
        self.probed_at = float("-inf")
        self.load = 0
        self.load_at = float("-inf")
        self.sent = 0  # tasks sent since the last load report
        self.draining_until = float("-inf")

    @property
    def label(self) -> str:
        return self.name or self.address

    def mapped(self, e: Any, refusable: bool) -> Exception:
        """The exception for grpc.RpcError `e` of a call to this member: Draining for a
        refusal while draining when `refusable`, else the mapped taskrt.Error."""
        from ._client import map_rpc_error
        error = map_rpc_error(e, self.endpoint, self.connect_timeout)
        return Draining(self, error) if refusable and is_draining(e) else error

    def call(self, method: str, request: Any, timeout: float | None = None,
             refusable: bool = False) -> Any:
        """The RPC `method` on this member; raises the mapped taskrt.Error, or Draining
        for a refusal while draining when `refusable`."""
        import grpc
        try:
            return getattr(self.stub, method)(request, metadata=self.metadata, timeout=timeout)
        except grpc.RpcError as e:
            raise self.mapped(e, refusable) from None

    def failed(self, error: _errors.Error) -> _errors.Error:
        """`error` (of the same kind) saying it came from this member."""
        return type(error)("daemon %s: %s" % (self.label, error.details))


def load_of(stats: service_pb2.Stats) -> int:
    """The tasks queued or running on a daemon, from its stats."""
    by_state = stats.tasks_by_state
    return by_state.get("TASK_STATE_QUEUED", 0) + by_state.get("TASK_STATE_RUNNING", 0)


class Members:
    """The daemons of a cluster target: names (GetStats at connect, re-asked at most once a
    second for those that did not answer), load estimates, drains and the spread.

    What is known changes only under the lock, in methods that never block: the calls
    they need (probes, load reports) are made by the caller, with threads here (the
    methods below the pure ones) or with asyncio (taskrt._aio_cluster)."""

    def __init__(self, members: list[Member], spread: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._all = members
        self._spread = spread
        self._clock = clock
        self._lock = threading.Lock()
        # At random: else every short-lived client sends its first task to the first daemon.
        self._rr = random.randrange(1 << 30)

    @property
    def least_loaded(self) -> bool:
        return self._spread == "least-loaded"

    # What is known (never blocks) --------------------------------------------------------

    def to_probe(self, force: bool = False) -> list[Member]:
        """The unnamed members due for a probe (each at most once a second unless `force`),
        marked as probed now."""
        now = self._clock()
        with self._lock:
            todo = [m for m in self._all if m.name is None and
                    (force or now - m.probed_at >= REPROBE_INTERVAL)]
            for m in todo:
                m.probed_at = now
        return todo

    def probed(self, m: Member, stats: service_pb2.Stats) -> bool:
        """Records `m`'s answer to a probe; False when it is another address of a daemon
        already known (then it is dropped, and the caller closes its channel)."""
        with self._lock:
            if any(o is not m and o.name == stats.daemon for o in self._all):
                self._all.remove(m)
                return False
            m.name = stats.daemon
            self._report_locked(m, load_of(stats))
            return True

    def stale(self) -> list[Member]:
        """The named members whose load report is LOAD_REPORT_TTL old, their estimate set
        to 0 until a new report (so each is asked once per TTL, even when that fails)."""
        now = self._clock()
        with self._lock:
            stale = [m for m in self._all if m.name is not None and
                     now - m.load_at > LOAD_REPORT_TTL]
            for m in stale:
                self._report_locked(m, 0)
        return stale

    def loaded(self, m: Member, stats: service_pb2.Stats) -> None:
        """Records the load in `m`'s answer to a stale-load refresh."""
        with self._lock:
            m.load = load_of(stats)

    def _report_locked(self, m: Member, load: int) -> None:
        m.load, m.load_at, m.sent = load, self._clock(), 0

    def report_load(self, m: Member, load: int) -> None:
        with self._lock:
            self._report_locked(m, load)

    def mark_draining(self, m: Member) -> None:
        with self._lock:
            m.draining_until = self._clock() + DRAIN_PAUSE

    def all(self) -> list[Member]:
        with self._lock:
            return list(self._all)

    def named(self) -> dict[str, Member]:
        with self._lock:
            return {m.name: m for m in self._all if m.name is not None}

    def unnamed(self) -> list[Member]:
        with self._lock:
            return [m for m in self._all if m.name is None]

    def describe(self) -> str:
        with self._lock:
            return ", ".join(m.name or "%s (not answering)" % m.address for m in self._all)

    def lookup(self, name: str, task_id: str) -> Member:
        """The member called `name`; NotFound naming the daemons known when none is."""
        m = self.named().get(name)
        if m is None:
            raise _errors.NotFound(
                "task %s: its daemon %r is not among the daemons of this client (%s); the id "
                "comes from another cluster, or its daemon was not in the target at connect"
                % (task_id, name, self.describe()))
        return m

    def all_answered(self, what: str) -> None:
        """Unavailable, naming the addresses, while a member has never answered: `what`
        (a key's owner, a list of every daemon) cannot be known without it."""
        missing = self.unnamed()
        if missing:
            raise _errors.Unavailable(
                "%s cannot be known until every daemon has answered once: %s did not; start "
                "it or remove it from the target" % (what, ", ".join(m.address for m in missing)))

    def key_owner(self, key: str) -> Member:
        """The member owning idempotency key `key`; Unavailable while a daemon has no name."""
        self.all_answered("the owner of idempotency key %r" % key)
        named = self.named()
        return named[key_owner(named, key)]

    def choose(self, count: int = 1, exclude: Sequence[Member] = ()) -> Member:
        """Where `count` new unkeyed tasks go (by the spread), counted as sent there."""
        with self._lock:
            now = self._clock()
            ready = [m for m in self._all if m.name is not None and m not in exclude and
                     m.draining_until <= now]
            if not ready:
                raise _errors.Unavailable(
                    "no daemon takes new tasks: every one is draining or not answering (%s)"
                    % ", ".join(m.label for m in self._all))
            if self.least_loaded:
                def estimate(m: Member) -> int:
                    return m.load + m.sent
                # Round-robin among the daemons near the lowest estimate: a load of 1
                # or 2 is noise (a no-op's own), not a reason to starve a daemon.
                low = min(estimate(m) for m in ready)
                ready = [m for m in ready if estimate(m) <= low + max(2, low // 4)]
            chosen = ready[self._rr % len(ready)]
            self._rr += 1
            chosen.sent += count
            return chosen

    # The calls, from the calling thread ----------------------------------------------------

    def probe_all(self, timeout: float, force: bool = False) -> None:
        """Asks the unnamed members due for a probe for their stats, all at once."""
        threads = [threading.Thread(target=self._probe, args=(m, timeout), daemon=True)
                   for m in self.to_probe(force)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _probe(self, m: Member, timeout: float) -> None:
        try:
            stats = m.stub.GetStats(service_pb2.GetStatsRequest(), metadata=m.metadata,
                                    timeout=timeout, wait_for_ready=True)
        except Exception:  # noqa: BLE001 - not answering is what a probe finds out
            return
        if not self.probed(m, stats):
            m.channel.close()

    def refresh_stale_loads(self, timeout: float) -> None:
        """Asks the members with a stale load report for their stats, so that another
        client's tasks count too."""
        for m in self.stale():
            try:
                stats = m.stub.GetStats(service_pb2.GetStatsRequest(), metadata=m.metadata,
                                        timeout=min(timeout, 0.5))
            except Exception:  # noqa: BLE001 - no report: the estimate stays 0
                continue
            self.loaded(m, stats)

    def by_name(self, name: str, task_id: str, timeout: float) -> Member:
        if name not in self.named():
            self.probe_all(timeout)
        return self.lookup(name, task_id)

    def owner_of_key(self, key: str, timeout: float) -> Member:
        if self.unnamed():
            self.probe_all(timeout)
        return self.key_owner(key)

    def pick(self, timeout: float, count: int = 1, exclude: Sequence[Member] = ()) -> Member:
        if self.unnamed():
            self.probe_all(timeout)
        if self.least_loaded:
            self.refresh_stale_loads(timeout)
        return self.choose(count, exclude)

    def close(self) -> None:
        for m in self.all():
            m.channel.close()


# Planning, shared by ClusterOps and taskrt._aio_cluster ------------------------------------

def group_by_owner(ids: Sequence[str],
                   lookup: Callable[[str, str], Member]) -> list[tuple[Member, list[int]]]:
    """The positions of `ids` per owning member (lookup(name, id)), in order of first
    appearance."""
    groups: dict[int, tuple[Member, list[int]]] = {}
    for i, task_id in enumerate(ids):
        m = lookup(owner_of(task_id), task_id)
        groups.setdefault(id(m), (m, []))[1].append(i)
    return list(groups.values())


def plan_submit(specs: Sequence[task_pb2.TaskSpec],
                owner: Callable[[str], Member]) -> list[tuple[Member | None, list[int]]]:
    """The parts of a Submit: keyed specs with their key's owner, the unkeyed ones with
    the first part; one part for the spread (member None) when no spec has a key."""
    parts: dict[int, tuple[Member | None, list[int]]] = {}
    for i, s in enumerate(specs):
        if s.idempotency_key:
            m = owner(s.idempotency_key)
            parts.setdefault(id(m), (m, []))[1].append(i)
    if not parts:
        return [(None, list(range(len(specs))))]
    first = next(iter(parts.values()))
    first[1].extend(i for i, s in enumerate(specs) if not s.idempotency_key)
    for _, positions in parts.values():
        positions.sort()
    return list(parts.values())


class SubmitParts:
    """The ids of a Submit split over daemons, part by part; failed() is the error to raise
    (saying which parts were accepted already)."""

    def __init__(self, count: int) -> None:
        self._ids: list[str | None] = [None] * count
        self._done: list[str] = []

    def accepted(self, m: Member, positions: list[int], ids: list[str]) -> None:
        for i, task_id in zip(positions, ids):
            self._ids[i] = task_id
        self._done.append("%s (%d tasks)" % (m.label, len(positions)))

    def failed(self, m: Member, error: _errors.Error) -> _errors.Error:
        if not self._done:
            return error
        return type(error)("the part for daemon %s failed: %s; the parts already accepted: %s"
                           % (m.label, error.details, ", ".join(self._done)))

    def ids(self) -> list[str]:
        return [i for i in self._ids if i is not None]


def plan_streams(specs: Sequence[task_pb2.TaskSpec], place: Callable[[task_pb2.TaskSpec], Member],
                 batch: int) -> list[tuple[Member, Any]]:
    """One StreamTracker per member for run_many: each spec where place(spec) puts it."""
    from ._client import StreamTracker
    parts: dict[int, tuple[Member, list[task_pb2.TaskSpec]]] = {}
    for s in specs:
        m = place(s)
        parts.setdefault(id(m), (m, []))[1].append(s)
    return [(m, StreamTracker(part, batch)) for m, part in parts.values()]


def merge_lists(request: service_pb2.ListRequest, parts: Iterable[Sequence[Any]]) -> list[Task]:
    """Every member's List merged newest first (Decision.submitted_unix_us), cut to the
    limit (0: 100, as a daemon's)."""
    tasks = [t for part in parts for t in part]
    tasks.sort(key=lambda t: t.decision.submitted_unix_us, reverse=True)
    return [Task.from_proto(t) for t in tasks[:request.limit or 100]]


class ClusterOps:
    """taskrt.Client's calls on a cluster target; `client` gives connect_timeout,
    reconnect_timeout and the retry helper."""

    def __init__(self, client: Any, members: Members) -> None:
        self._client = client
        self.members = members

    @property
    def _timeout(self) -> float:
        return self._client.connect_timeout

    # Submitting ----------------------------------------------------------------------

    def submit_many(self, specs: list[task_pb2.TaskSpec]) -> list[str]:
        plan = plan_submit(specs, lambda key: self.members.owner_of_key(key, self._timeout))
        if plan[0][0] is None:
            return self._submit_unkeyed(specs)
        parts = SubmitParts(len(specs))
        for m, positions in plan:
            assert m is not None
            try:
                parts.accepted(m, positions, self._submit_to(m, [specs[i] for i in positions]))
            except Draining as d:
                raise parts.failed(m, d.error) from None
            except _errors.Error as e:
                raise parts.failed(m, e) from None
        return parts.ids()

    def _submit_to(self, m: Member, specs: list[task_pb2.TaskSpec]) -> list[str]:
        from ._client import expect_count
        response = m.call("Submit", service_pb2.SubmitRequest(tasks=specs), refusable=True)
        self.members.report_load(m, response.load)
        expect_count(len(response.task_ids), len(specs), "task ids")
        return list(response.task_ids)

    def _submit_unkeyed(self, specs: list[task_pb2.TaskSpec]) -> list[str]:
        tried: list[Member] = []
        while True:
            m = self.members.pick(self._timeout, len(specs), tried)
            try:
                return self._submit_to(m, specs)
            except Draining:
                self.members.mark_draining(m)
                tried.append(m)

    def run(self, pb: task_pb2.TaskSpec, user_key: bool, timeout: float | None) -> Task:
        """The Run RPC: a keyed spec on its key's owner (waiting for it); a generated key
        on the member of the spread, kept for the retries, moved only on a drain."""
        from ._client import wait_timeouts
        if user_key:
            place = [self.members.owner_of_key(pb.idempotency_key, self._timeout)]
        else:
            place = [self.members.pick(self._timeout)]
        tried: list[Member] = []

        def attempt(left: float | None) -> task_pb2.Task:
            while True:
                ms, deadline = wait_timeouts(left)
                try:
                    return place[0].call("Run", service_pb2.RunRequest(spec=pb, timeout_ms=ms),
                                         deadline, refusable=True)
                except Draining as d:
                    if user_key:
                        raise d.error from None
                    self.members.mark_draining(place[0])
                    tried.append(place[0])
                    place[0] = self.members.pick(self._timeout, 1, tried)

        return Task.from_proto(self._client._retrying(timeout, attempt))

    # Reading and changing --------------------------------------------------------------

    def _groups(self, ids: Sequence[str]) -> list[tuple[Member, list[int]]]:
        return group_by_owner(ids, lambda name, task_id:
                              self.members.by_name(name, task_id, self._timeout))

    def _by_owner(self, ids: list[str], method: str,
                  make: Callable[[list[str]], Any]) -> list[Task]:
        from ._client import expect_count
        out: list[Task | None] = [None] * len(ids)
        for m, positions in self._groups(ids):
            part = [ids[i] for i in positions]
            response = m.call(method, make(part))
            expect_count(len(response.tasks), len(part), "tasks")
            for i, t in zip(positions, response.tasks):
                out[i] = Task.from_proto(t)
        return out  # type: ignore[return-value]

    def get_many(self, ids: list[str]) -> list[Task]:
        return self._by_owner(ids, "Get", lambda part: service_pb2.GetRequest(task_ids=part))

    def cancel(self, ids: list[str]) -> list[Task]:
        return self._by_owner(ids, "Cancel",
                              lambda part: service_pb2.CancelRequest(task_ids=part))

    def wait_many(self, ids: list[str], timeout: float | None) -> list[Task]:
        """Each owner in turn, with what is left of `timeout`."""
        from ._client import Reconnect, expect_count, wait_timeouts
        out: list[Task | None] = [None] * len(ids)
        clock = Reconnect(timeout, 0.0)  # only its left()
        for m, positions in self._groups(ids):
            part = [ids[i] for i in positions]

            def attempt(left: float | None, m: Member = m,
                        part: list[str] = part) -> service_pb2.WaitResponse:
                ms, deadline = wait_timeouts(left)
                return m.call("Wait", service_pb2.WaitRequest(task_ids=part, timeout_ms=ms),
                              deadline)

            response = self._client._retrying(clock.left(), attempt)
            expect_count(len(response.tasks), len(part), "tasks")
            for i, t in zip(positions, response.tasks):
                out[i] = Task.from_proto(t)
        return out  # type: ignore[return-value]

    def list(self, request: service_pb2.ListRequest) -> list[Task]:
        """Every member's list merged (merge_lists). A member that does not answer, or has
        never answered, fails the call with its name: a list that silently lacks a daemon
        would mislead (as the C++ SDK)."""
        if self.members.unnamed():
            self.members.probe_all(self._timeout)
        self.members.all_answered("a list of every daemon's tasks")
        parts = []
        for m in self.members.all():
            try:
                parts.append(m.call("List", request, self._timeout).tasks)
            except _errors.Error as e:
                raise m.failed(e) from e
        return merge_lists(request, parts)

    def cluster_stats(self) -> list[tuple[str, Stats | _errors.Error]]:
        out: list[tuple[str, Stats | _errors.Error]] = []
        for m in self.members.all():
            try:
                out.append((m.label, Stats.from_proto(
                    m.call("GetStats", service_pb2.GetStatsRequest(), self._timeout))))
            except _errors.Error as e:
                out.append((m.label, e))
        return out

    def first_answer(self, method: str, request: Any) -> Any:
        """`method` on the first member that answers (stats, handlers)."""
        error: _errors.Error | None = None
        for m in self.members.all():
            try:
                return m.call(method, request, self._timeout)
            except _errors.Unavailable as e:
                error = e
        raise error or _errors.Unavailable("no daemon answered %s" % method)

    def watch_calls(self, ids: list[str]) -> list[Any]:
        """One Watch call per owner of `ids` (every member for no ids), each taken up."""
        if ids:
            targets = [(m, [ids[i] for i in pos]) for m, pos in self._groups(ids)]
        else:
            targets = [(m, []) for m in self.members.named().values()]
        calls = []
        for m, part in targets:
            call = m.stub.Watch(service_pb2.WatchRequest(task_ids=part), metadata=m.metadata)
            call.initial_metadata()
            calls.append((m, call))
        return calls

    # run_many ----------------------------------------------------------------------------

    def run_many(self, specs: Sequence[task_pb2.TaskSpec], batch: int, timeout: float | None,
                 check: bool) -> Iterator[Task]:
        """Specs spread task by task (keyed ones on their owner), one Stream per member in a
        thread of its own; results in finishing order on the calling thread."""
        from ._client import task_or_raise

        def place(s: task_pb2.TaskSpec) -> Member:
            return (self.members.owner_of_key(s.idempotency_key, self._timeout)
                    if s.idempotency_key else self.members.pick(self._timeout))

        return self._run_streams(plan_streams(specs, place, batch), timeout, check,
                                 task_or_raise)

    def _run_streams(self, trackers: list[tuple[Member, Any]], timeout: float | None,
                     check: bool, task_or_raise: Callable[[Task], Task]) -> Iterator[Task]:
        results: queue.Queue = queue.Queue()
        calls: list[Any] = []
        for m, tracker in trackers:
            call = m.stub.Stream(tracker.requests(), metadata=m.metadata, timeout=timeout)
            calls.append(call)
            threading.Thread(target=self._pump, args=(m, tracker, call, results),
                             daemon=True).start()
        running = len(trackers)
        try:
            while running:
                kind, value = results.get()
                if kind == "task":
                    yield task_or_raise(value) if check else value
                elif kind == "error":
                    raise value
                else:
                    running -= 1
        finally:
            for call in calls:
                call.cancel()

    def _pump(self, m: Member, tracker: Any, call: Any, results: queue.Queue) -> None:
        import grpc
        try:
            for response in call:
                for a in response.accepted:
                    if a.code == 0:
                        self.members.report_load(m, a.load)
                for task in tracker.on_response(response):
                    results.put(("task", task))
                if tracker.finished:
                    break
            if not tracker.finished:
                raise tracker.incomplete()
            results.put(("done", None))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                results.put(("done", None))
                return
            results.put(("error", m.failed(m.mapped(e, False))))  # type: ignore[arg-type]
        except _errors.Error as e:
            results.put(("error", m.failed(e)))


def merged_event(watch: Any, kind: str, value: Any) -> TaskEvent | None:
    """One item of a merged watch's queue (MultiWatch, the aio ClusterWatch): the event;
    None when one call ended (counted off watch._open); a call's error is raised after
    watch.cancel() ends the others."""
    if kind == "event":
        return TaskEvent.from_proto(value)
    if kind == "error":
        watch.cancel()
        raise value
    watch._open -= 1
    return None


class MultiWatch:
    """The events of several Watch calls (one per daemon) as one iterator; cancel() ends
    them all."""

    def __init__(self, calls: list[tuple[Member, Any]], connect_timeout: float) -> None:
        self._calls = calls
        self._events: queue.Queue = queue.Queue()
        self._cancelled = False
        self._open = len(calls)
        self._timeout = connect_timeout
        for m, call in calls:
            threading.Thread(target=self._pump, args=(m, call), daemon=True).start()

    def _pump(self, m: Member, call: Any) -> None:
        import grpc
        try:
            for event in call:
                self._events.put(("event", event))
            self._events.put(("done", None))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED and call.cancelled():
                self._events.put(("done", None))
            else:
                self._events.put(("error", m.mapped(e, False)))

    def __iter__(self) -> "MultiWatch":
        return self

    def __next__(self) -> TaskEvent:
        while self._open:
            event = merged_event(self, *self._events.get())
            if event is not None:
                return event
        raise StopIteration

    def cancel(self) -> None:
        self._cancelled = True
        for _, call in self._calls:
            call.cancel()

    def __enter__(self) -> "MultiWatch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cancel()
