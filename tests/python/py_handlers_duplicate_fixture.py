"""Takes the name of a handler of py_handlers_fixture: the worker must refuse to start."""

import taskrt


@taskrt.task(name="fixture.add")
def add():
    return 0
