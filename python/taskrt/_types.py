"""Plain-Python views of taskrt's protos: Task, Decision, TaskError, and explain().

The views hold readable values instead of enum numbers: `task.state == "succeeded"`,
`task.decision.executor == "process"`, `task.decision.reason == "learned"`, times as
float seconds and UTC datetimes. Each view keeps the message it was made from as
`.proto`. `explain(task)` is the text `taskrt explain ID` prints (client/describe.cc's
ExplainDecision, line for line).

Needs only the generated task_pb2/service_pb2 (protobuf), never grpc.

    task = client.run("math.primes", {"limit": 100000}, task_class="cpu")
    task.decision.executor   # "process"
    task.json()              # the handler's JSON output, decoded
    print(taskrt.explain(task))
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import signal as _signal
import time as _time
from dataclasses import dataclass, field
from typing import Any, Mapping

from .v1 import service_pb2, task_pb2

__all__ = ["Decision", "TaskError", "Attempt", "Task", "TaskEvent", "explain", "Stats",
           "PoolInfo", "WorkerInfo", "LearnedClass", "OwnerCount", "HandlerInfo",
           "FINAL_STATES", "CLASSES", "state_value", "class_value"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

# Enum value -> readable name. Unknown values (a newer daemon) read as "class 7" etc.,
# the way the C++ SDK's ClassName/ReasonName/... print them.
_CLASS_NAMES = {task_pb2.TASK_CLASS_AUTO: "auto", task_pb2.TASK_CLASS_CPU: "cpu",
                task_pb2.TASK_CLASS_IO: "io"}
_EXECUTOR_NAMES = {task_pb2.EXECUTOR_PROCESS: "process", task_pb2.EXECUTOR_THREAD: "thread",
                   task_pb2.EXECUTOR_ASYNC: "async"}
_REASON_NAMES = {task_pb2.REASON_CLIENT_DECLARED: "client_declared",
                 task_pb2.REASON_HANDLER_HINT: "handler_hint",
                 task_pb2.REASON_LEARNED: "learned", task_pb2.REASON_DEFAULT: "default"}
_STATE_NAMES = {task_pb2.TASK_STATE_QUEUED: "queued", task_pb2.TASK_STATE_RUNNING: "running",
                task_pb2.TASK_STATE_SUCCEEDED: "succeeded", task_pb2.TASK_STATE_FAILED: "failed",
                task_pb2.TASK_STATE_CANCELLED: "cancelled",
                task_pb2.TASK_STATE_TIMED_OUT: "timed_out"}
_FAILURE_NAMES = {
    task_pb2.FAILURE_KIND_HANDLER_ERROR: "handler_error",
    task_pb2.FAILURE_KIND_WORKER_CRASHED: "worker_crashed",
    task_pb2.FAILURE_KIND_TIMEOUT: "timeout",
    task_pb2.FAILURE_KIND_CANCELLED: "cancelled",
    task_pb2.FAILURE_KIND_INVALID_INPUT: "invalid_input",
    task_pb2.FAILURE_KIND_DAEMON_RESTART: "daemon_restart",
    task_pb2.FAILURE_KIND_MEMORY_LIMIT: "memory_limit",
    task_pb2.FAILURE_KIND_OUTPUT_TOO_LARGE: "output_too_large",
    task_pb2.FAILURE_KIND_PERMISSION_DENIED: "permission_denied",
}

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
CLASSES = ("auto", "cpu", "io")


def _name(names: Mapping[int, str], value: int, unknown: str) -> str:
    return names.get(value, "%s %d" % (unknown, value))


def _value(names: Mapping[int, str], name: str, what: str) -> int:
    lower = name.lower().replace("-", "_")
    for value, n in names.items():
        if n == lower:
            return value
    raise ValueError("invalid %s %r: use one of %s" % (what, name, ", ".join(names.values())))


def class_value(name: str) -> int:
    """TaskClass enum value of "auto", "cpu" or "io" (ValueError otherwise)."""
    return _value(_CLASS_NAMES, name, "task class")


def state_value(name: str) -> int:
    """TaskState enum value of "queued", "running", "succeeded", ... (ValueError otherwise)."""
    return _value(_STATE_NAMES, name, "task state")


def _time_of(us: int) -> _dt.datetime | None:
    return None if us == 0 else _EPOCH + _dt.timedelta(microseconds=us)


def _us_of(when: _dt.datetime | None) -> int:
    return 0 if when is None else (when - _EPOCH) // _dt.timedelta(microseconds=1)


def _seconds(us: int) -> float:
    return us / 1e6


def _us(seconds: float) -> int:
    return round(seconds * 1e6)


@dataclass(frozen=True)
class Decision:
    """Where a task went, why, and what it cost (task.proto Decision).

    requested_class/resolved_class: "auto", "cpu" or "io". executor: "process", "thread",
    "async", or None before the task started. reason: "client_declared", "handler_hint",
    "learned", "default", or None before the class was decided. Durations are float
    seconds; submitted/started/finished are UTC datetimes (None when not reached).
    """
    requested_class: str = "auto"
    resolved_class: str = "auto"
    executor: str | None = None
    reason: str | None = None
    evidence: str = ""
    hint: str = ""
    pool: str = ""
    worker_pid: int = 0
    worker_slot: int = 0
    daemon_pid: int = 0
    attempt: int = 0
    recovered: bool = False
    runtime: str = ""
    gil_wait: float = 0.0
    gil_measured: bool = False
    peers: int = 0
    submitted: _dt.datetime | None = None
    started: _dt.datetime | None = None
    finished: _dt.datetime | None = None
    queue_wait: float = 0.0
    run_time: float = 0.0
    cpu_time: float = 0.0
    peak_rss_kb: int = 0
    proto: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, d: task_pb2.Decision) -> "Decision":
        return cls(
            requested_class=_name(_CLASS_NAMES, d.requested_class, "class"),
            resolved_class=_name(_CLASS_NAMES, d.resolved_class, "class"),
            executor=(None if d.executor == task_pb2.EXECUTOR_UNSPECIFIED
                      else _name(_EXECUTOR_NAMES, d.executor, "executor")),
            reason=(None if d.reason == task_pb2.REASON_UNSPECIFIED
                    else _name(_REASON_NAMES, d.reason, "reason")),
            evidence=d.evidence, hint=d.hint, pool=d.pool, worker_pid=d.worker_pid,
            worker_slot=d.worker_slot, daemon_pid=d.daemon_pid, attempt=d.attempt,
            recovered=d.recovered, runtime=d.runtime, gil_wait=_seconds(d.gil_wait_us),
            gil_measured=d.gil_measured, peers=d.peers,
            submitted=_time_of(d.submitted_unix_us), started=_time_of(d.started_unix_us),
            finished=_time_of(d.finished_unix_us), queue_wait=_seconds(d.queue_wait_us),
            run_time=_seconds(d.run_time_us), cpu_time=_seconds(d.cpu_time_us),
            peak_rss_kb=d.peak_rss_kb, proto=d)

    @property
    def cpu_ratio(self) -> float | None:
        """cpu_time / run_time, or None before the task ran."""
        return self.cpu_time / self.run_time if self.run_time > 0 else None


@dataclass(frozen=True)
class TaskError:
    """Why a task did not succeed (task.proto TaskError).

    kind: "handler_error", "worker_crashed", "timeout", "cancelled", "invalid_input",
    "daemon_restart", "memory_limit", "output_too_large", "permission_denied" (None
    when unspecified).
    """
    kind: str | None = None
    message: str = ""
    signal: int = 0
    signal_name: str = ""
    exit_code: int = 0
    retryable: bool = False
    proto: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, e: task_pb2.TaskError) -> "TaskError":
        return cls(kind=(None if e.kind == task_pb2.FAILURE_KIND_UNSPECIFIED
                         else _name(_FAILURE_NAMES, e.kind, "failure")),
                   message=e.message, signal=e.signal, signal_name=e.signal_name,
                   exit_code=e.exit_code, retryable=e.retryable, proto=e)

    def __str__(self) -> str:
        return _error_line(self)


@dataclass(frozen=True)
class Attempt:
    """An earlier attempt of a retried task: its decision and why it failed."""
    attempt: int
    decision: Decision
    error: TaskError | None

    @classmethod
    def from_proto(cls, a: task_pb2.Attempt) -> "Attempt":
        return cls(a.attempt, Decision.from_proto(a.decision),
                   TaskError.from_proto(a.error) if a.HasField("error") else None)


@dataclass(frozen=True)
class Task:
    """A task as the daemon reports it (task.proto Task, or a Stream's TaskResult).

    state: "queued", "running", "succeeded", "failed", "cancelled" or "timed_out".
    output: the raw output bytes; json() and text() decode them. error is None unless
    the task failed, timed out or was cancelled. The spec fields (handler, input,
    task_class, priority, timeout, labels, ...) are those submitted; a Stream result
    carries no spec, so they are empty unless the client attached the spec it sent.
    """
    id: str
    state: str
    handler: str = ""
    output: bytes = b""
    error: TaskError | None = None
    decision: Decision = field(default_factory=Decision)
    attempts: tuple[Attempt, ...] = ()
    owner: str = ""
    input: bytes = b""
    task_class: str = "auto"
    priority: int = 0
    timeout: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    max_attempts: int = 0
    retry_backoff: float | None = None
    idempotency_key: str = ""
    function: str = ""
    not_before: _dt.datetime | None = None
    proto: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def _make(cls, pb: Any, spec: task_pb2.TaskSpec | None, **extra: Any) -> "Task":
        spec_fields: dict[str, Any] = {}
        if spec is not None:
            spec_fields = dict(
                handler=spec.handler, input=spec.input,
                task_class=_name(_CLASS_NAMES, spec.requested_class, "class"),
                priority=spec.priority,
                timeout=_seconds(spec.timeout_ms * 1000) if spec.timeout_ms else None,
                labels=dict(spec.labels), max_attempts=spec.max_attempts,
                retry_backoff=(_seconds(spec.retry_backoff_ms * 1000)
                               if spec.retry_backoff_ms else None),
                idempotency_key=spec.idempotency_key, function=spec.function)
        return cls(
            id=pb.id, state=_name(_STATE_NAMES, pb.state, "state") if pb.state else "unspecified",
            output=pb.output,
            error=TaskError.from_proto(pb.error) if pb.HasField("error") else None,
            decision=Decision.from_proto(pb.decision),
            attempts=tuple(Attempt.from_proto(a) for a in pb.attempts), proto=pb,
            **spec_fields, **extra)

    @classmethod
    def from_proto(cls, pb: task_pb2.Task) -> "Task":
        """The view of a task_pb2.Task (Get, Wait, Run, List, Cancel)."""
        return cls._make(pb, pb.spec, owner=pb.owner,
                         not_before=_time_of(pb.not_before_unix_us))

    @classmethod
    def from_result(cls, pb: service_pb2.TaskResult,
                    spec: task_pb2.TaskSpec | None = None) -> "Task":
        """The view of a Stream's TaskResult; `spec`, when given, fills the spec fields."""
        return cls._make(pb, spec)

    @property
    def done(self) -> bool:
        """The task is final: succeeded, failed, cancelled or timed out."""
        return self.state in FINAL_STATES

    @property
    def ok(self) -> bool:
        """The task succeeded."""
        return self.state == "succeeded"

    def json(self) -> Any:
        """The output decoded as JSON (the built-in handlers' format); ValueError if it is
        not JSON."""
        try:
            return _json.loads(self.output)
        except ValueError as e:
            raise ValueError("the output of task %s (%s, %d bytes) is not JSON: %s; read "
                             "task.output for the raw bytes" % (self.id, self.handler or "?",
                                                                len(self.output), e)) from e

    def text(self, encoding: str = "utf-8") -> str:
        """The output decoded as text."""
        return self.output.decode(encoding)

    def check(self) -> "Task":
        """This task, unless it ended without success: then raises taskrt.TaskFailed
        (TaskTimedOut, TaskCancelled) carrying it. A task not final yet is returned."""
        if self.done and not self.ok:
            from ._errors import task_failed
            raise task_failed(self)
        return self

    def explain(self) -> str:
        """Where the task ran and why, as `taskrt explain ID` prints it."""
        return explain(self)

    def __str__(self) -> str:
        return "task %s (%s): %s" % (self.id or "?", self.handler or "?", self.state)


@dataclass(frozen=True)
class TaskEvent:
    """One change of a task's state, as Watch streams it."""
    task_id: str
    handler: str
    state: str
    time: _dt.datetime | None
    decision: Decision
    error: TaskError | None
    proto: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, pb: task_pb2.TaskEvent) -> "TaskEvent":
        return cls(task_id=pb.task_id, handler=pb.handler,
                   state=_name(_STATE_NAMES, pb.state, "state") if pb.state else "unspecified",
                   time=_time_of(pb.unix_us), decision=Decision.from_proto(pb.decision),
                   error=TaskError.from_proto(pb.error) if pb.HasField("error") else None,
                   proto=pb)

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class PoolInfo:
    """A worker pool: "cpu", "io", "python-cpu" or "python-io"."""
    name: str
    workers: int
    queued: int
    running: int
    completed: int
    respawns: int
    recycled: int  # workers replaced on purpose (--worker-max-tasks / --worker-max-rss)


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process: state "starting", "idle" or "busy"."""
    pool: str
    slot: int
    pid: int
    state: str
    tasks_run: int
    running: int
    threads: int
    started: _dt.datetime | None


@dataclass(frozen=True)
class LearnedClass:
    """What the classifier measured for a handler (and function): learned_class is None
    until there are enough samples."""
    handler: str
    function: str
    cpu_ratio: float
    samples: int
    learned_class: str | None
    gil_corrected: bool


@dataclass(frozen=True)
class OwnerCount:
    """Tasks of one owner ("uid:1000", "token:NAME")."""
    owner: str
    queued: int
    running: int
    finished: int


@dataclass(frozen=True)
class Stats:
    """The daemon's pools, workers, queues and what it learned (GetStats).

    tasks_by_state maps readable states ("queued", "succeeded", ...) to counts. owners is
    filled for admins only; caller is who the daemon takes the caller for.
    """
    daemon_pid: int
    started: _dt.datetime | None
    pools: tuple[PoolInfo, ...]
    workers: tuple[WorkerInfo, ...]
    learned: tuple[LearnedClass, ...]
    tasks_by_state: Mapping[str, int]
    tasks_submitted: int
    owners: tuple[OwnerCount, ...]
    caller: str
    caller_is_admin: bool
    proto: Any = field(default=None, repr=False, compare=False)
    # The daemon's name (its --id-prefix): every task id it makes is "<daemon>-<n>".
    daemon: str = ""

    @classmethod
    def from_proto(cls, pb: service_pb2.Stats) -> "Stats":
        by_state = {}
        for name, count in pb.tasks_by_state.items():
            try:
                key = _STATE_NAMES.get(task_pb2.TaskState.Value(name), name)
            except ValueError:
                key = name  # a state this client does not know: the daemon's name
            by_state[key] = count
        return cls(
            daemon_pid=pb.daemon_pid, started=_time_of(pb.started_unix_us),
            pools=tuple(PoolInfo(p.name, p.workers, p.queued, p.running, p.completed,
                                 p.respawns, p.recycled) for p in pb.pools),
            workers=tuple(WorkerInfo(w.pool, w.slot, w.pid, w.state, w.tasks_run, w.running,
                                     w.threads, _time_of(w.started_unix_us))
                          for w in pb.workers),
            learned=tuple(LearnedClass(
                l.handler, l.function, l.cpu_ratio, l.samples,
                None if l.learned_class == task_pb2.TASK_CLASS_AUTO
                else _name(_CLASS_NAMES, l.learned_class, "class"), l.gil_corrected)
                for l in pb.learned),
            tasks_by_state=by_state, tasks_submitted=pb.tasks_submitted,
            owners=tuple(OwnerCount(o.owner, o.queued, o.running, o.finished)
                         for o in pb.owners),
            caller=pb.caller, caller_is_admin=pb.caller_is_admin, proto=pb,
            daemon=pb.daemon)

    def pool(self, name: str) -> PoolInfo | None:
        """The pool called `name`, or None."""
        return next((p for p in self.pools if p.name == name), None)


@dataclass(frozen=True)
class HandlerInfo:
    """A registered handler. hint: "cpu", "io" or None (no hint). is_async: it runs on the
    async loop (the proto's `async`, a Python keyword). allowed: the caller may submit it.
    runtime: "native" or "python"."""
    name: str
    hint: str | None
    is_async: bool
    description: str
    source: str
    privileged: bool
    allowed: bool
    runtime: str
    proto: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, pb: service_pb2.HandlerInfo) -> "HandlerInfo":
        return cls(name=pb.name,
                   hint=(None if pb.hint == task_pb2.TASK_CLASS_AUTO
                         else _name(_CLASS_NAMES, pb.hint, "class")),
                   is_async=getattr(pb, "async"), description=pb.description, source=pb.source,
                   privileged=pb.privileged, allowed=pb.allowed, runtime=pb.runtime, proto=pb)


# --- explain: client/describe.cc's ExplainDecision, line for line ---------------------
# The views use underscores ("timed_out", "client_declared"); the C++ names hyphens.

def _cxx(name: str | None) -> str:
    return "-" if name is None else name.replace("_", "-")


def _cxx_failure(kind: str | None) -> str:
    return _cxx(kind)


def _format_micros(us: int) -> str:
    if us < 0:
        us = 0
    if us < 10_000_000:
        return "%.1f ms" % (us / 1e3)
    if us < 600_000_000:
        return "%.1f s" % (us / 1e6)
    s = us // 1_000_000
    return "%dm %02ds" % (s // 60, s % 60)


def _format_kib(kib: int) -> str:
    if kib < 1024:
        return "%d KiB" % kib
    if kib < 1024 * 1024:
        return "%.1f MiB" % (kib / 1024)
    return "%.1f GiB" % (kib / (1024 * 1024))


# The signals common/util.cc's SignalName names; others read "signal N" as there.
_SIGNAL_NAMES = frozenset({"SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT",
                           "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2",
                           "SIGPIPE", "SIGALRM", "SIGTERM", "SIGXCPU", "SIGXFSZ", "SIGSYS"})


def _signal_name(signum: int) -> str:
    try:
        name = _signal.Signals(signum).name
    except ValueError:
        name = ""
    return name if name in _SIGNAL_NAMES else "signal %d" % signum


def _class_line(task: Task) -> str:
    d = task.decision
    line = "asked for %s; " % d.requested_class
    if d.reason is None:
        line += "class not decided yet"
    else:
        line += ("ran as " if d.executor is not None else "routed as ") + d.resolved_class
        line += " because "
        if d.reason == "client_declared":
            line += "the client declared it"
        elif d.reason == "handler_hint":
            line += "the handler registered the hint " + d.resolved_class.upper()
        elif d.reason == "learned":
            line += "the daemon learned it from past runs of " + (task.handler or "the handler")
        elif d.reason == "default":
            line += "nothing was known about the handler (the daemon's default class)"
        else:
            line += "of reason " + _cxx(d.reason)
    if d.evidence:
        line += " (evidence: %s)" % d.evidence
    return line


def _executor_line(task: Task) -> str:
    d = task.decision
    if d.executor is None:
        if task.state == "queued" or not task.done:
            return "executor: not started yet"
        return "executor: none (the task never started)"
    line = "executor: " + d.executor
    where = []
    if d.worker_pid > 0:
        worker = "worker pid %d" % d.worker_pid
        if d.pool:
            worker += ", slot %d of the %s pool" % (d.worker_slot, d.pool)
        where.append(worker)
    elif d.pool:
        where.append("the %s pool" % d.pool)
    if where:
        line += " \u2014 " + ", ".join(where)
    if d.daemon_pid > 0:
        line += " (daemon pid %d)" % d.daemon_pid
    return line


def _timing_line(task: Task, now_us: int) -> str:
    d = task.decision
    parts = []
    run_us, cpu_us = _us(d.run_time), _us(d.cpu_time)
    if d.started is None:
        if task.done:
            parts.append("never ran")
        elif d.submitted is not None:
            parts.append("not started yet, queued for " +
                         _format_micros(now_us - _us_of(d.submitted)))
        else:
            parts.append("not started yet")
    else:
        parts.append("queued " + _format_micros(_us(d.queue_wait)))
        if task.state == "running" and run_us == 0:
            parts.append("running for " + _format_micros(now_us - _us_of(d.started)))
        else:
            parts.append("ran " + _format_micros(run_us))
        if cpu_us > 0 or run_us > 0:
            cpu = "cpu " + _format_micros(cpu_us)
            if run_us > 0:
                cpu += " (cpu/wall %.2f)" % (cpu_us / run_us)
            parts.append(cpu)
    if d.peak_rss_kb > 0:
        parts.append("peak rss " + _format_kib(d.peak_rss_kb))
    if d.attempt > 0:
        parts.append("attempt %d" % d.attempt)
    return ", ".join(parts)


def _error_line(e: TaskError) -> str:
    line = "error: " + _cxx_failure(e.kind)
    if e.message:
        line += ": " + e.message
    if e.signal_name and e.signal_name not in e.message:
        line += " (%s)" % e.signal_name
    elif e.signal > 0 and not e.signal_name:
        line += " (%s)" % _signal_name(e.signal)
    elif e.kind == "worker_crashed" and e.signal == 0 and e.exit_code != 0:
        line += " (exit code %d)" % e.exit_code
    return line


def explain(task: Task, *, now: float | None = None) -> str:
    """Where `task` ran and why, in the words of `taskrt explain ID` (ends with a newline).

    `now` (seconds since the epoch; default: the clock) only matters for a task that
    is still queued or running ("queued for 1.2 s").
    """
    now_us = _us((_time.time() if now is None else now))
    out = "task %s (%s): %s\n" % (task.id or "?", task.handler or "?",
                                 "-" if task.state == "unspecified" else _cxx(task.state))
    out += _class_line(task) + "\n"
    out += _executor_line(task) + "\n"
    out += _timing_line(task, now_us) + "\n"
    if task.decision.hint:
        out += "hint: %s\n" % task.decision.hint
    if task.decision.recovered:
        out += ("recovered: the daemon restarted while this task was queued or running, and "
                "took it up again from its journal\n")
    for a in task.attempts:
        error = a.error if a.error is not None else TaskError()
        out += "earlier attempt %d: %s pid %d, %s\n" % (a.attempt, _cxx(a.decision.executor),
                                                        a.decision.worker_pid, _error_line(error))
    e = task.error
    if e is not None and (e.kind is not None or e.message):
        out += _error_line(e) + "\n"
    return out
