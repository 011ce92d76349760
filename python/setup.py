"""Builds the taskrt wheel: python/taskrt plus what the source tree does not hold.

- taskrt/v1/*_pb2.py, *_pb2_grpc.py: generated from ../proto/taskrt/v1/*.proto with
  `protoc` and grpc_python_plugin (Debian: protobuf-compiler, protobuf-compiler-grpc).
  $PROTOC, $TASKRT_GRPC_PYTHON_PLUGIN and $TASKRT_PROTO_DIR override where they are.
- taskrt/_gilprobe.so, when taskrt/_gilprobe.cc exists: compiled with $CXX (default c++).

Metadata lives in pyproject.toml. Offline install with Debian's packages:
    python3 -m venv --system-site-packages venv
    venv/bin/pip install --no-build-isolation ./python
"""

import os
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py
from setuptools.errors import SetupError

HERE = Path(__file__).resolve().parent
PROTOS = ("task", "service", "worker")
GILPROBE = HERE / "taskrt" / "_gilprobe.cc"


def _tool(env: str, name: str, package: str) -> str:
    path = os.environ.get(env) or shutil.which(name) or ("/usr/bin/" + name)
    if not os.access(path, os.X_OK):
        raise SetupError("%s not found (looked at $%s, PATH and /usr/bin): install Debian's %s "
                         "(`apt-get install %s`) or set %s to it" % (name, env, package, package,
                                                                      env))
    return path


def _generate_stubs(build_lib: Path) -> None:
    proto_dir = Path(os.environ.get("TASKRT_PROTO_DIR") or HERE.parent / "proto")
    files = [proto_dir / "taskrt" / "v1" / (p + ".proto") for p in PROTOS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SetupError("the protos are missing (%s): build from the taskrt source tree, "
                         "or set TASKRT_PROTO_DIR to its proto/ directory" % ", ".join(missing))
    protoc = _tool("PROTOC", "protoc", "protobuf-compiler")
    plugin = _tool("TASKRT_GRPC_PYTHON_PLUGIN", "grpc_python_plugin", "protobuf-compiler-grpc")
    (build_lib / "taskrt" / "v1").mkdir(parents=True, exist_ok=True)
    cmd = [protoc, "--proto_path=%s" % proto_dir, "--python_out=%s" % build_lib,
           "--grpc_python_out=%s" % build_lib, "--plugin=protoc-gen-grpc_python=%s" % plugin,
           *map(str, files)]
    print("generating the gRPC stubs:", shlex.join(cmd))
    subprocess.run(cmd, check=True)
    (build_lib / "taskrt" / "v1" / "__init__.py").touch()


def _build_gilprobe(build_lib: Path) -> None:
    out = build_lib / "taskrt" / "_gilprobe.so"
    cxx = shlex.split(os.environ.get("CXX") or "c++")
    cmd = [*cxx, "-std=c++20", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra"]
    include = sysconfig.get_paths().get("include")
    if include and os.path.isfile(os.path.join(include, "Python.h")):
        cmd.append("-I" + include)
    cmd += ["-o", str(out), str(GILPROBE), "-ldl", "-lpthread"]
    print("building the GIL probe:", shlex.join(cmd))
    try:
        subprocess.run(cmd, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise SetupError("building %s failed (%s): install a C++20 compiler (Debian: g++) or "
                         "set CXX" % (GILPROBE, e)) from e


class BuildPy(build_py):
    """build_py that also generates the stubs and builds the GIL probe into build_lib."""

    def run(self) -> None:
        super().run()
        build_lib = Path(self.build_lib)
        _generate_stubs(build_lib)
        if GILPROBE.is_file():
            _build_gilprobe(build_lib)


class TaskrtDistribution(Distribution):
    """A platform wheel when it carries the compiled GIL probe, else a pure one."""

    def has_ext_modules(self) -> bool:
        return GILPROBE.is_file()


setup(cmdclass={"build_py": BuildPy}, distclass=TaskrtDistribution)
