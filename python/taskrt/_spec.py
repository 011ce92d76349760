"""What a client asks for: TaskSpec (a batch entry) and how inputs become bytes.

    specs = [taskrt.TaskSpec("math.primes", {"limit": n}, task_class="cpu") for n in sizes]
    for task in client.run_many(specs):
        ...

Inputs: dict, list, str, int, float and bool are sent JSON-encoded (what the built-in
handlers read); bytes, bytearray and memoryview are sent as they are; None is empty.
Only types are checked here (TypeError naming the argument); the daemon validates the
rest and answers INVALID_ARGUMENT with what to change.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Union

from ._types import class_value
from .v1 import task_pb2

__all__ = ["TaskSpec", "Input", "encode_input", "to_proto_spec", "to_proto_specs"]

Input = Union[None, bytes, bytearray, memoryview, dict, list, str, int, float, bool]


def encode_input(value: Any, what: str = "input") -> bytes:
    """The bytes sent for `value` (JSON for dict/list/str/numbers, bytes as they are)."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (dict, list, tuple, str, int, float, bool)):
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise TypeError("%s cannot be sent as JSON: %s; pass JSON-compatible values or "
                            "bytes" % (what, e)) from e
    raise TypeError("%s must be a dict, list, str, number or bool (sent as JSON), bytes (sent "
                    "as is) or None, not %s" % (what, type(value).__name__))


def _milliseconds(seconds: float | None, what: str) -> int:
    """Seconds -> whole milliseconds for the wire, where 0 means "none": a positive value
    never rounds down to 0."""
    if seconds is None:
        return 0
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError("%s must be seconds as a number or None, not %s"
                        % (what, type(seconds).__name__))
    if seconds < 0 or math.isnan(seconds):
        raise ValueError("%s must not be negative (got %r); use None for the daemon's default"
                         % (what, seconds))
    return max(1, math.ceil(seconds * 1000)) if seconds > 0 else 0


def _check(value: Any, types: type | tuple[type, ...], what: str, expected: str) -> None:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise TypeError("%s must be %s, not bool" % (what, expected))
    if not isinstance(value, types):
        raise TypeError("%s must be %s, not %s" % (what, expected, type(value).__name__))


@dataclass
class TaskSpec:
    """One task to submit: the handler, its input, and how to run it.

    task_class: "auto" (let the daemon decide), "cpu" (a worker process per task) or
    "io" (a thread or the async loop of an io worker). timeout and retry_backoff are
    seconds (None: the daemon's default). max_attempts 0 means one run. A known
    idempotency_key returns the existing task instead of creating one. function names
    what a generic handler (py.call) runs, "module:qualname"; its runs are learned apart.
    """
    handler: str
    input: Input = None
    task_class: str = "auto"
    priority: int = 0
    timeout: float | None = None
    labels: Mapping[str, str] | None = field(default=None)
    max_attempts: int = 0
    retry_backoff: float | None = None
    idempotency_key: str | None = None
    function: str | None = None

    def to_proto(self) -> task_pb2.TaskSpec:
        """The task_pb2.TaskSpec sent; TypeError/ValueError for a wrong argument."""
        _check(self.handler, str, "handler", "a str such as 'math.primes'")
        _check(self.task_class, str, "task_class", "'auto', 'cpu' or 'io'")
        _check(self.priority, int, "priority", "an int")
        _check(self.max_attempts, int, "max_attempts", "an int")
        if self.max_attempts < 0:
            raise ValueError("max_attempts must not be negative (got %d)" % self.max_attempts)
        spec = task_pb2.TaskSpec(
            handler=self.handler, input=encode_input(self.input),
            requested_class=class_value(self.task_class), priority=self.priority,
            timeout_ms=_milliseconds(self.timeout, "timeout"),
            max_attempts=self.max_attempts,
            retry_backoff_ms=_milliseconds(self.retry_backoff, "retry_backoff"))
        if self.labels is not None:
            _check(self.labels, Mapping, "labels", "a mapping of str to str")
            for k, v in self.labels.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    raise TypeError("labels must map str to str, not %s to %s (label %r)"
                                    % (type(k).__name__, type(v).__name__, k))
                spec.labels[k] = v
        if self.idempotency_key is not None:
            _check(self.idempotency_key, str, "idempotency_key", "a str")
            spec.idempotency_key = self.idempotency_key
        if self.function is not None:
            _check(self.function, str, "function", "a str 'module:qualname'")
            spec.function = self.function
        return spec


SpecLike = Union[TaskSpec, task_pb2.TaskSpec, Mapping[str, Any], tuple, str]


def to_proto_spec(spec: SpecLike, what: str = "spec") -> task_pb2.TaskSpec:
    """A TaskSpec, a task_pb2.TaskSpec, a dict of TaskSpec's fields, a (handler, input)
    tuple or a handler name, as the task_pb2.TaskSpec sent."""
    if isinstance(spec, TaskSpec):
        return spec.to_proto()
    if isinstance(spec, task_pb2.TaskSpec):
        return spec
    if isinstance(spec, Mapping):
        try:
            return TaskSpec(**spec).to_proto()
        except TypeError as e:
            raise TypeError("%s: %s (a dict spec takes TaskSpec's fields: handler, input, "
                            "task_class, priority, timeout, labels, ...)" % (what, e)) from e
    if isinstance(spec, tuple) and 1 <= len(spec) <= 2:
        return TaskSpec(*spec).to_proto()
    if isinstance(spec, str):
        return TaskSpec(spec).to_proto()
    raise TypeError("%s must be a taskrt.TaskSpec, a dict of its fields, a (handler, input) "
                    "tuple or a handler name, not %s" % (what, type(spec).__name__))


def to_proto_specs(specs: Iterable[SpecLike]) -> list[task_pb2.TaskSpec]:
    if isinstance(specs, (str, bytes, TaskSpec, Mapping)):
        raise TypeError("specs must be an iterable of specs (a list of taskrt.TaskSpec, "
                        "...), not one %s" % type(specs).__name__)
    return [to_proto_spec(s, "spec %d" % (i + 1)) for i, s in enumerate(specs)]
