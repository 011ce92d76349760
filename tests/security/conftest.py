"""Fixtures of the security tests: real taskrtd processes, and the `taskrt` CLI run as
root (the daemon's owner) or as an attacker with another uid (setpriv 65534).

Every daemon a test starts is stopped by the test, by its pid (SIGTERM, then SIGKILL).
Traffic goes to unix sockets in a fresh temporary directory and to 127.0.0.1 only.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

BIN_DIR = os.environ.get("TASKRT_BIN_DIR", "")
NOBODY = 65534
# Runs a command as uid/gid 65534 with no supplementary groups.
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
CMD_TIMEOUT = 60


def binary(name):
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not an executable: set TASKRT_BIN_DIR to the build's bin/")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A taskrtd process on its own socket; stopped by stop() (the fixture calls it)."""

    def __init__(self, root, name="d", args=(), user=None, umask=None, socket_dir=None,
                 state_dir=None, prlimit=None):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o711)  # others may reach the socket, not list the directory
        sock_dir = socket_dir or self.dir
        self.socket = os.path.join(sock_dir, "taskrt.sock")
        self.state_dir = state_dir or os.path.join(self.dir, "state")
        self.log_path = os.path.join(self.dir, "taskrtd.log")
        cmd = [binary("taskrtd"), "--socket", self.socket, "--state-dir", self.state_dir,
               "--cpu-workers", "1", "--socket-mode", "0666", *args]
        if user is not None:
            cmd = AS_NOBODY + cmd
        if prlimit is not None:
            cmd = ["prlimit", f"--nofile={prlimit}:{prlimit}", "--"] + cmd
        self.log = open(self.log_path, "w")
        preexec = (lambda: os.umask(umask)) if umask is not None else None
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=preexec)

    def wait_ready(self, tcp_port=None, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"taskrtd exited {self.proc.returncode}: {self.output()}")
            if "serving unix:" in self.output() and os.path.exists(self.socket):
                if not tcp_port or "also serving" in self.output():
                    return self
            time.sleep(0.05)
        raise AssertionError(f"taskrtd did not start in {timeout}s: {self.output()}")

    def exited(self, timeout=20):
        """Waits for a daemon that is expected to refuse to start; returns its code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"taskrtd kept running: {self.output()}")

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def tmp_root():
    root = tempfile.mkdtemp(prefix="taskrt-sec.")
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def daemons(tmp_root):
    started = []

    def start(*args, ready=True, **kwargs):
        d = Daemon(tmp_root, name=f"d{len(started)}", args=args, **kwargs)
        started.append(d)
        if ready:
            d.wait_ready(tcp_port="--listen" in args)
        return d

    yield start
    for d in started:
        d.stop()


class Result:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"exit {self.code}\nstdout: {self.out[:2000]}\nstderr: {self.err[:2000]}"


def cli_command(args, nobody=False, env=None):
    """The argv and environment of `taskrt ARGS` (as uid 65534 with nobody=True)."""
    cmd = [binary("taskrt"), *args]
    if nobody:
        cmd = AS_NOBODY + cmd
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    # A sanitizer build's options (TSan's suppressions of the uninstrumented gRPC) go on.
    for name in ("ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS"):
        if name in os.environ:
            full_env[name] = os.environ[name]
    full_env.update(env or {})
    return cmd, full_env


def cli(*args, nobody=False, env=None, stdin=None):
    """Runs `taskrt ARGS` (as uid 65534 with nobody=True); returns its Result."""
    cmd, full_env = cli_command(args, nobody, env)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CMD_TIMEOUT,
                          env=full_env, input=stdin)
    return Result(proc)


def cli_background(*args, nobody=False):
    """Starts `taskrt ARGS` without waiting; the caller stops it by its pid."""
    cmd, full_env = cli_command(args, nobody)
    return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def make_ca(directory):
    """A test CA, a server certificate for 127.0.0.1 and a client certificate."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
            f"{name}.key", "-out", f"{name}.csr")
        with open(os.path.join(directory, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    for f in os.listdir(directory):
        os.chmod(os.path.join(directory, f), 0o644)
    os.chmod(directory, 0o755)
