"""Functions the Python worker tests run: named handlers (--module py_handlers_fixture)
and plain functions sent by reference. Imported by the worker, so: no test imports."""

import asyncio
import os
import time

import taskrt


@taskrt.task(name="fixture.add", hint="cpu")
def add(numbers=None):
    """Sums a JSON list of numbers."""
    return sum(numbers or [])


@taskrt.task(name="fixture.wait")
async def wait(seconds):
    await asyncio.sleep(seconds)
    return seconds


def spin(cpu_seconds):
    """Pure-Python compute until this thread has used `cpu_seconds` of CPU."""
    start, n = time.thread_time(), 0
    while time.thread_time() - start < cpu_seconds:
        n += sum(range(200))
    return n


def nap(seconds):
    time.sleep(seconds)
    return seconds


async def async_nap(seconds):
    await asyncio.sleep(seconds)
    return seconds


def fail(message):
    raise ValueError(message)


def exit_worker(code):
    os._exit(code)


def raise_system_exit(code):
    raise SystemExit(code)


def big(n):
    return b"x" * n


def cancelled_flag(seconds):
    """Waits up to `seconds` for its task to be cancelled; returns whether it was."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if taskrt.current_task().cancelled:
            return True
        time.sleep(0.01)
    return False


def child_view():
    """What a child process of a task inherits: its open fds and LD_PRELOAD."""
    import subprocess
    import sys
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.listdir('/proc/self/fd')); "
                               "print(os.environ.get('LD_PRELOAD', ''))"],
        close_fds=False, capture_output=True, text=True, check=True).stdout.splitlines()
    return eval(out[0]), out[1] if len(out) > 1 else ""
