"""A taskrtd started by a test and stopped by it, by pid: the Python tests' one daemon
helper (test_client.py and test_executor.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import time


class TaskrtdProcess:
    """`binary` serving unix socket `socket` with its journal in `state_dir` (both in
    `directory` unless given), its output in a log file there. Ready once the daemon
    logged that it serves and the socket exists; AssertionError (with the log) if it
    exits or takes longer than `timeout` seconds."""

    def __init__(self, binary: str, directory: str, args: tuple[str, ...] = (), *,
                 socket: str | None = None, state_dir: str | None = None,
                 env: dict | None = None, timeout: float = 20) -> None:
        if not os.access(binary, os.X_OK):
            raise AssertionError("%s is not an executable: build first (or set the test's "
                                 "TASKRT_BIN_DIR / TASKRT_BUILD_DIR)" % binary)
        self.dir = directory
        self.socket = socket or os.path.join(directory, "taskrt.sock")
        self.state_dir = state_dir or os.path.join(directory, "state")
        self.log_path = os.path.join(directory, "taskrtd.%d.log" % time.monotonic_ns())
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "--socket", self.socket, "--state-dir", self.state_dir, *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise AssertionError("taskrtd exited %s: %s" % (self.proc.returncode,
                                                               self.output()))
            if "serving unix:" in self.output() and os.path.exists(self.socket):
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError("taskrtd did not serve %s within %gs: %s"
                             % (self.socket, timeout, self.output()))

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def kill(self) -> None:
        """Ends the daemon at once, as a crash would (SIGKILL by pid)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM by pid (SIGKILL after 15 s), and closes the log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
