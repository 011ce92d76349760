"""Functions decorated with @taskrt.task: named handlers when taskrtd is started with
--python-module executor_named (tests/python on its PYTHONPATH)."""
import asyncio

import taskrt


@taskrt.task(hint="cpu", description="squares a number on a process")
def named_square(x):
    return x * x


@taskrt.task(hint="io")
async def named_wait(seconds):
    await asyncio.sleep(seconds)
    return "waited"
