"""taskrt for Python: submit tasks to taskrtd, and run Python functions where they belong.

CPU-bound Python gains nothing from threads (the GIL lets one thread run Python at a
time): taskrtd runs it in Python worker processes, one task each. I/O-bound Python is
right on threads or asyncio: taskrtd runs it on the thread pool and asyncio loop of a
Python I/O worker. Every result says where it ran and why (task.decision).
"""

__version__ = "0.1.0"

from ._types import Decision, Task, TaskError, TaskEvent, explain
from ._types import HandlerInfo, LearnedClass, PoolInfo, Stats, WorkerInfo
from ._spec import TaskSpec
from ._errors import (AlreadyExists, Cancelled, ConnectionSetupError, DeadlineExceeded, Error,
                      FailedPrecondition, Internal, InvalidArgument, NotFound, PermissionDenied,
                      ResourceExhausted, TaskCancelled, TaskFailed, TaskTimedOut, Unauthenticated,
                      Unavailable)
from ._client import Client, Watch
from . import aio
from ._executor import Executor, ExecutorOptions, RemoteError, TaskFuture
from ._registry import current_task, task
