"""The bytes of a Python call and of its result.

This is the contract between the SDK (taskrt.Executor, named handlers called with
Python arguments) and the Python worker (taskrt._worker). Both sides use only these
functions.

A *call payload* is the input of a task for a Python handler when the arguments are
Python objects. It is a pickle (so it starts with the byte 0x80, which JSON never does:
the daemon tells the two apart by that byte, and treats a pickled input as code that
needs the exec privilege). Its envelope holds only plain types, so the worker can check
versions before it unpickles anything the caller made:

    {"taskrt": 1, "python": "3.11", "cloudpickle": "2.2.0" | None,
     "by": "ref" | "value" | "handler",
     "fn": ("module", "qualname") | <cloudpickle bytes> | None,
     "args": <pickle bytes of (args, kwargs)>}

A *result payload* is the output of such a task: on success the pickled return value,
on failure (the task FAILED; the output still carries it) the pickled exception with
its remote traceback text:

    {"taskrt": 1, "ok": True, "value": <pickle bytes>}
    {"taskrt": 1, "ok": False, "type": "builtins.ValueError", "message": "...",
     "traceback": "Traceback (most recent call last): ...", "exc": <pickle bytes> | None}
"""

from __future__ import annotations

import importlib
import pickle
import sys
import traceback as _traceback
from typing import Any, Callable

try:  # Debian's python3-cloudpickle: functions by value (lambdas, closures, __main__)
    import cloudpickle as _cloudpickle
except ImportError:  # pragma: no cover - the set-up installs it
    _cloudpickle = None

FORMAT = 1
PICKLE_MAGIC = 0x80  # pickle's PROTO opcode, the first byte of every payload here
_PROTOCOL = 5


class WireError(Exception):
    """A payload that cannot be used: wrong format, version mismatch, cannot unpickle."""


class VersionMismatch(WireError):
    """A function sent by value needs the same Python (major.minor) and cloudpickle."""


def python_version() -> str:
    return "%d.%d" % sys.version_info[:2]


def cloudpickle_version() -> str | None:
    return None if _cloudpickle is None else _cloudpickle.__version__


def is_pickled(data: bytes) -> bool:
    return len(data) > 0 and data[0] == PICKLE_MAGIC


def function_name(fn: Callable) -> str:
    """'module:qualname', the name the daemon learns a function's class under."""
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return "%s:%s" % (module, qualname)


def _by_reference(fn: Callable) -> tuple[str, str] | None:
    """(module, qualname) when a fresh process can import `fn` by name, else None."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None  # __main__, lambdas, closures (<locals>): by value
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    target = getattr(fn, "__wrapped_taskrt__", fn)
    return (module, qualname) if obj is fn or obj is target else None


def _dumps(obj: Any) -> bytes:
    if _cloudpickle is not None:
        return _cloudpickle.dumps(obj, protocol=_PROTOCOL)
    return pickle.dumps(obj, protocol=_PROTOCOL)


def encode_call(fn: Callable | None, args: tuple, kwargs: dict) -> bytes:
    """The payload that makes a worker call fn(*args, **kwargs).

    fn=None: the task's handler is a named Python handler (@taskrt.task) and is called
    with these arguments. Raises TypeError (naming the argument) for what cannot be
    pickled, so that Executor.submit fails at once, as the issue of a bad argument is
    the caller's.
    """
    envelope: dict[str, Any] = {
        "taskrt": FORMAT,
        "python": python_version(),
        "cloudpickle": cloudpickle_version(),
    }
    if fn is None:
        envelope["by"], envelope["fn"] = "handler", None
    else:
        ref = _by_reference(fn)
        if ref is not None:
            envelope["by"], envelope["fn"] = "ref", ref
        else:
            if _cloudpickle is None:
                raise TypeError(
                    "%s is not importable by name (defined in __main__, a lambda or a "
                    "closure) and cloudpickle is not installed to send it by value: "
                    "install python3-cloudpickle or move it to a module" % function_name(fn))
            try:
                envelope["by"], envelope["fn"] = "value", _cloudpickle.dumps(fn, protocol=_PROTOCOL)
            except Exception as e:
                raise TypeError("cannot pickle the function %s: %s" % (function_name(fn), e)) from e
    try:
        envelope["args"] = _dumps((tuple(args), dict(kwargs)))
    except Exception as e:
        raise TypeError("cannot pickle the arguments of %s: %s" % (
            "the handler" if fn is None else function_name(fn), e)) from e
    return pickle.dumps(envelope, protocol=_PROTOCOL)


def _load_envelope(data: bytes) -> dict:
    if not is_pickled(data):
        raise WireError("not a pickled payload (it does not start with 0x80)")
    try:
        env = pickle.loads(data)
    except Exception as e:
        raise WireError("unreadable payload: %s" % e) from e
    if not isinstance(env, dict) or env.get("taskrt") != FORMAT:
        raise WireError("payload of an unknown format (want taskrt format %d)" % FORMAT)
    return env


def decode_call(data: bytes) -> tuple[Callable | None, tuple, dict]:
    """(fn, args, kwargs) of a call payload; fn is None for a named handler's call.

    Raises VersionMismatch before unpickling a function sent by value from another
    Python or cloudpickle, and WireError for anything else that cannot be decoded.
    """
    env = _load_envelope(data)
    by = env.get("by")
    if by == "value" and (env.get("python") != python_version() or
                          env.get("cloudpickle") != cloudpickle_version()):
        raise VersionMismatch(
            "the function was pickled by value with Python %s and cloudpickle %s, but this "
            "worker runs Python %s and cloudpickle %s: by-value functions (defined in "
            "__main__, lambdas, closures) need the same Python major.minor and cloudpickle "
            "on both sides; start taskrtd with --python pointing at a matching interpreter, "
            "or define the function in a module the worker can import (it is then sent by "
            "reference)" % (env.get("python"), env.get("cloudpickle"), python_version(),
                            cloudpickle_version()))
    fn: Callable | None = None
    if by == "ref":
        module, qualname = env["fn"]
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except Exception as e:
            raise WireError(
                "cannot import %s:%s in the worker (%s: %s): the worker imports functions "
                "sent by reference; make the module importable there (PYTHONPATH of taskrtd, "
                "or install it into the interpreter of taskrtd --python)" % (
                    module, qualname, type(e).__name__, e)) from e
        fn = obj
    elif by == "value":
        try:
            fn = pickle.loads(env["fn"])
        except Exception as e:
            raise WireError("cannot unpickle the function: %s: %s" % (type(e).__name__, e)) from e
    elif by != "handler":
        raise WireError("payload with an unknown 'by': %r" % (by,))
    try:
        args, kwargs = pickle.loads(env["args"])
    except Exception as e:
        raise WireError("cannot unpickle the arguments: %s: %s" % (type(e).__name__, e)) from e
    return fn, tuple(args), dict(kwargs)


def encode_result(value: Any) -> bytes:
    """The payload of a successful call. Raises TypeError when the value cannot be pickled.

    The worker's results are plain pickles when they can be (the C pickler: most values),
    cloudpickle when not (a function or class made by the call, pickled by value)."""
    try:
        try:
            blob = pickle.dumps(value, protocol=_PROTOCOL)
        except Exception:
            blob = _dumps(value)
    except Exception as e:
        raise TypeError("cannot pickle the return value (%s): %s" % (type(value).__name__, e)) from e
    return pickle.dumps({"taskrt": FORMAT, "ok": True, "value": blob}, protocol=_PROTOCOL)


def encode_exception(exc: BaseException) -> bytes:
    """The payload of a call that raised `exc` (with its traceback text)."""
    tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob: bytes | None = _dumps(exc)
        pickle.loads(blob)  # an exception that pickles but cannot be rebuilt is useless
    except Exception:
        blob = None
    return pickle.dumps({
        "taskrt": FORMAT, "ok": False,
        "type": "%s.%s" % (type(exc).__module__, type(exc).__qualname__),
        "message": str(exc), "traceback": tb, "exc": blob,
    }, protocol=_PROTOCOL)


def decode_result(data: bytes) -> dict:
    """The envelope of a result payload: {"ok": True, "value": obj} or {"ok": False,
    "type", "message", "traceback", "exc": the exception object or None}."""
    env = _load_envelope(data)
    if env.get("ok"):
        try:
            return {"ok": True, "value": pickle.loads(env["value"])}
        except Exception as e:
            raise WireError("cannot unpickle the result: %s: %s" % (type(e).__name__, e)) from e
    exc = None
    if env.get("exc") is not None:
        try:
            exc = pickle.loads(env["exc"])
        except Exception:
            exc = None
    return {"ok": False, "type": env.get("type", "?"), "message": env.get("message", ""),
            "traceback": env.get("traceback", ""), "exc": exc}
