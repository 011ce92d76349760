"""Module-level functions that bench/python_bench.py and ProcessPoolExecutor send by
reference: taskrtd's Python workers import this module (the bench puts bench/ on the
daemon's PYTHONPATH), as ProcessPoolExecutor's children do."""
import asyncio


def noop(_=None):
    return None


def spin(n):
    """Pure-Python CPU work: n loop iterations, holding the GIL throughout."""
    total = 0
    for i in range(n):
        total += i % 7
    return total


async def async_sleep(seconds):
    await asyncio.sleep(seconds)
    return seconds
