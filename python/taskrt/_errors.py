"""The exceptions of taskrt's Python client: one class per gRPC status the daemon uses.

    try:
        client.run("math.prime", {"limit": 10})
    except taskrt.InvalidArgument as e:    # "handler 'math.prime' is not registered ..."
        print(e.code, e.details)

Every call error is a taskrt.Error with `.code` (the gRPC status name, e.g.
"INVALID_ARGUMENT") and `.details` (the daemon's message, which says what to do).
TaskFailed (and its TaskTimedOut / TaskCancelled) is not a call error: the call worked,
the task did not; `.task` is the final Task. ConnectionSetupError (a target, socket or
token that must not be used) is raised before any call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._connection import ConnectionSetupError

if TYPE_CHECKING:
    from ._types import Task

__all__ = ["Error", "InvalidArgument", "NotFound", "AlreadyExists", "PermissionDenied",
           "Unauthenticated", "ResourceExhausted", "DeadlineExceeded", "Unavailable",
           "Cancelled", "FailedPrecondition", "Internal", "TaskFailed", "TaskTimedOut",
           "TaskCancelled", "ConnectionSetupError", "from_rpc_error", "from_code",
           "task_failed"]


class Error(Exception):
    """A taskrt call failed. `code`: the gRPC status name; `details`: the daemon's words."""

    code: str = "UNKNOWN"

    def __init__(self, details: str, *, code: str | None = None) -> None:
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.details


class InvalidArgument(Error):
    """The request was wrong (unknown handler, bad input, bad option); nothing was queued."""
    code = "INVALID_ARGUMENT"


class NotFound(Error):
    """No such task (or not one the caller may see)."""
    code = "NOT_FOUND"


class AlreadyExists(Error):
    """An idempotency key already names a task with a different spec."""
    code = "ALREADY_EXISTS"


class PermissionDenied(Error):
    """The caller may not do this (a privileged handler, another owner's task)."""
    code = "PERMISSION_DENIED"


class Unauthenticated(Error):
    """A TCP call without a valid token."""
    code = "UNAUTHENTICATED"


class ResourceExhausted(Error):
    """A queue or quota is full, or a message too large: retry later or send less."""
    code = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(Error):
    """A wait gave up before the task was final (the task keeps running)."""
    code = "DEADLINE_EXCEEDED"


class Unavailable(Error):
    """The daemon is not running or went away (the message says how to start it)."""
    code = "UNAVAILABLE"


class Cancelled(Error):
    """The call was cancelled (the client closed, or the daemon is shutting down)."""
    code = "CANCELLED"


class FailedPrecondition(Error):
    """The daemon is not in a state to do this."""
    code = "FAILED_PRECONDITION"


class Internal(Error):
    """A bug in the daemon or the client: please report it with the message."""
    code = "INTERNAL"


class TaskFailed(Error):
    """The task ended without succeeding; `.task` is the final Task (its error, decision)."""
    code = "TASK_FAILED"

    def __init__(self, task: "Task") -> None:
        what = str(task.error) if task.error is not None else "error: none reported"
        super().__init__("task %s (%s) %s: %s; `taskrt explain %s` says where it ran"
                         % (task.id or "?", task.handler or "?", task.state.replace("_", " "),
                            what, task.id or "ID"))
        self.task = task


class TaskTimedOut(TaskFailed):
    """The task ran past its timeout."""
    code = "TASK_TIMED_OUT"


class TaskCancelled(TaskFailed):
    """A client cancelled the task."""
    code = "TASK_CANCELLED"


_BY_CODE: dict[str, type[Error]] = {
    cls.code: cls for cls in (InvalidArgument, NotFound, AlreadyExists, PermissionDenied,
                              Unauthenticated, ResourceExhausted, DeadlineExceeded,
                              Unavailable, Cancelled, FailedPrecondition, Internal)
}

# google.rpc.Code numbers (StreamResponse.Accepted.code) -> names.
_CODE_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
               "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
               "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
               "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


def from_code(code: int | str, details: str) -> Error:
    """The Error for a status code (its number or name) and message."""
    if isinstance(code, int):
        name = _CODE_NAMES[code] if 0 <= code < len(_CODE_NAMES) else "UNKNOWN"
    else:
        name = code
    cls = _BY_CODE.get(name)
    return cls(details) if cls is not None else Error(details, code=name)


def from_rpc_error(e: Any, unavailable_message: str | None = None) -> Error:
    """The Error for a grpc.RpcError (or grpc.aio.AioRpcError).

    `unavailable_message` replaces gRPC's own words for UNAVAILABLE (e.g. "failed to
    connect to all addresses") with what to do, when the caller knows nothing answers.
    """
    code = e.code() if hasattr(e, "code") else None
    name = getattr(code, "name", "UNKNOWN")
    details = (e.details() if hasattr(e, "details") else None) or str(e)
    if name == "UNAVAILABLE" and unavailable_message:
        details = "%s (%s)" % (unavailable_message, details)
    return from_code(name, details)


def task_failed(task: "Task") -> TaskFailed:
    """The TaskFailed (TaskTimedOut, TaskCancelled) for a task that ended without success."""
    if task.state == "timed_out":
        return TaskTimedOut(task)
    if task.state == "cancelled":
        return TaskCancelled(task)
    return TaskFailed(task)
