"""The functions examples/python/demo.py sends by reference: taskrtd's Python workers
import this module (scripts/demo.sh puts examples/python on the daemon's PYTHONPATH)."""
import asyncio
import time


def spin(n):
    """Pure-Python CPU work: n loop iterations, holding the GIL throughout."""
    total = 0
    for i in range(n):
        total += i % 7
    return total


def blocking_sleep(seconds):
    time.sleep(seconds)  # releases the GIL while it waits
    return seconds


async def async_sleep(seconds):
    await asyncio.sleep(seconds)
    return seconds
