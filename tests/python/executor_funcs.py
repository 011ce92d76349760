"""Module-level functions the Executor tests send by reference: the daemon's Python
workers import this module (the tests put tests/python on taskrtd's PYTHONPATH)."""
import asyncio
import ctypes
import os
import threading
import time


def square(x):
    return x * x


def add(a, b=0):
    return a + b


def noop():
    return None


def fail(message):
    raise ValueError(message)  # the remote traceback names this line


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def exit_hard(status):
    os._exit(status)


def segfault():
    ctypes.string_at(0)


def system_exit(code):
    raise SystemExit(code)


def hang():
    while True:
        time.sleep(0.1)


def spin(n):
    """Pure-Python CPU work: n loop iterations (3,000,000 take about 0.2 s)."""
    total = 0
    for i in range(n):
        total += i % 7
    return total


def where():
    return os.getpid(), threading.current_thread().name


async def async_sleep(seconds, value):
    await asyncio.sleep(seconds)
    return value


class Unpicklable(Exception):
    """An exception the caller cannot rebuild: its __init__ needs two arguments."""

    def __init__(self, a, b):
        super().__init__(a)
        self.b = b

    def __reduce__(self):
        return (Unpicklable, (self.args[0],))  # rebuilding fails: b is missing


def raise_unpicklable():
    raise Unpicklable("cannot come back", 2)

