"""Named Python handlers: the @taskrt.task decorator, its registry, and current_task().

    import taskrt

    @taskrt.task(hint="cpu")
    def primes(limit):          # handler "mymod.primes", input JSON or Python arguments
        ...

    @taskrt.task(name="fetch.page", hint="io")
    async def page(url):        # async: runs on a Python I/O worker's asyncio loop
        ...

taskrtd --python-module mymod makes its Python workers import mymod; every function
decorated here that is defined in mymod becomes a handler of the daemon. The decorator
returns the function itself (calling it locally is a plain call), marked with a
TaskDef in its `__taskrt_task__` attribute.

current_task() is how a running function learns its task: id, deadline, and whether it
was cancelled (a synchronous function cannot be interrupted; a long one should check).

Thread-safety: decorating happens at import time (under the import lock); the registry
is a plain dict, read by the worker after its imports. current_task() is per thread and
per asyncio task (a context variable).
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import time
from typing import Callable

HINTS = ("auto", "cpu", "io")
# The daemon's own handler families: a Python handler cannot take these names.
RESERVED_PREFIXES = ("sys.", "py.", "math.", "hash.", "io.")


@dataclasses.dataclass(frozen=True)
class TaskDef:
    """What @taskrt.task declared about a function."""

    name: str         # the handler name clients submit to
    hint: str         # "auto", "cpu" or "io": where the daemon runs it before it learns
    description: str  # shown by ListHandlers; the docstring's first line by default
    is_async: bool    # an `async def`: runs on the asyncio loop of an I/O worker


_tasks: dict[str, Callable] = {}  # name -> the decorated function


def _same_function(a: Callable, b: Callable) -> bool:
    # A module imported again (importlib.reload) re-creates its functions.
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError("a task name must be a non-empty string without surrounding "
                         "spaces, not %r" % (name,))
    for prefix in RESERVED_PREFIXES:
        if name.startswith(prefix):
            raise ValueError("task name %r starts with %r, which is reserved for the daemon's "
                             "own handlers (%s): pick another name" % (
                                 name, prefix, ", ".join(p + "*" for p in RESERVED_PREFIXES)))
    return name


def task(fn: Callable | None = None, *, name: str | None = None, hint: str = "auto",
         description: str | None = None):
    """Registers `fn` as a named handler; usable as @task and as @task(hint="cpu").

    name: the handler name, by default "module.qualname". hint: "auto" (the daemon
    decides and learns), "cpu" or "io". description: by default the docstring's first
    line. Raises ValueError for a bad hint or name, or a name another function took.
    """
    if hint not in HINTS:
        raise ValueError("hint must be one of %s, not %r" % (", ".join(HINTS), hint))
    if name is not None:
        _check_name(name)

    def register(f: Callable) -> Callable:
        if not callable(f) or not hasattr(f, "__qualname__"):
            raise TypeError("@taskrt.task decorates functions, not %r" % (f,))
        handler = _check_name(name if name is not None else "%s.%s" % (f.__module__, f.__qualname__))
        other = _tasks.get(handler)
        if other is not None and not _same_function(other, f):
            raise ValueError("task name %r is taken by %s.%s: give %s.%s another name "
                             "(@taskrt.task(name=...))" % (handler, other.__module__,
                                                          other.__qualname__, f.__module__,
                                                          f.__qualname__))
        doc = inspect.getdoc(f) or ""
        f.__taskrt_task__ = TaskDef(
            name=handler, hint=hint,
            description=description if description is not None else doc.split("\n", 1)[0],
            is_async=inspect.iscoroutinefunction(f))
        _tasks[handler] = f
        return f

    return register if fn is None else register(fn)


def registered() -> list[TaskDef]:
    """The TaskDefs of every function decorated so far in this process."""
    return [f.__taskrt_task__ for f in _tasks.values()]


def definition(fn: Callable) -> TaskDef | None:
    """The TaskDef of a decorated function, None for any other object."""
    d = getattr(fn, "__taskrt_task__", None)
    return d if isinstance(d, TaskDef) else None


def functions() -> dict[str, Callable]:
    """Name -> decorated function, for the worker (a copy)."""
    return dict(_tasks)


class TaskContext:
    """The task a function runs for. Thread-safety: `cancelled` is set by the worker's
    loop thread and read by the task's thread."""

    __slots__ = ("task_id", "deadline", "_cancelled")

    def __init__(self, task_id: str, deadline: float | None):
        self.task_id = task_id
        self.deadline = deadline  # Unix time in seconds, or None
        self._cancelled = False   # a plain flag: one writer, and a bool store is atomic

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled or is past its deadline: stop and return."""
        return self._cancelled or (self.deadline is not None and time.time() >= self.deadline)

    def _set_cancelled(self) -> None:
        self._cancelled = True


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "taskrt_current_task", default=None)


def current_task() -> TaskContext | None:
    """The task the calling code runs for in a taskrt worker, None elsewhere."""
    return _current.get()
