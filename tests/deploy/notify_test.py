#!/usr/bin/python3
"""taskrtd speaks systemd's notification protocol (deploy/taskrtd.service is
Type=notify): started with NOTIFY_SOCKET pointing at a datagram socket of this test, it
sends READY=1 with a STATUS= line once its socket serves, WATCHDOG=1 when
WATCHDOG_USEC is set, STATUS= updates with the queue depths, and STOPPING=1 when
SIGTERM starts the drain; then it exits 0. Every message must come from the daemon's
own pid (the unit sets NotifyAccess=main).

Usage: notify_test.py BIN_DIR (holding taskrtd and taskrt). Exits 0 or 1."""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def fail(why, log_path=None):
    """Prints why, with the daemon's output, and exits 1 (main's finally cleans up)."""
    print("FAILED:", why)
    if log_path and os.path.exists(log_path):
        print("--- taskrtd's output ---")
        print(open(log_path).read())
    sys.exit(1)


class Listener:
    """The service manager's end: a SOCK_DGRAM socket read on a thread of its own (as
    systemd always reads: a unix datagram queue holds only ~10 messages, then the
    sender blocks), recording each message with the sender's pid (SCM_CREDENTIALS)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        self.messages = []  # (pid, {key: value}), in arrival order
        self.taken = 0      # messages expect() has looked at
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:12])[0]
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self.cond:
                self.messages.append((pid, fields))
                self.cond.notify_all()

    def expect(self, key, timeout, value_check=None):
        """The fields of the first message (after those already looked at) that has
        `key` (and whose value passes `value_check`), within `timeout` seconds; None if
        none."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                while self.taken < len(self.messages):
                    fields = self.messages[self.taken][1]
                    self.taken += 1
                    if key in fields and (value_check is None or value_check(fields[key])):
                        return fields
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def all(self):
        with self.cond:
            return list(self.messages)


def main():
    bin_dir = sys.argv[1]
    taskrtd = os.path.join(bin_dir, "taskrtd")
    taskrt = os.path.join(bin_dir, "taskrt")
    tmp = tempfile.mkdtemp(prefix="taskrt-notify-")
    notify_path = os.path.join(tmp, "notify.sock")
    daemon_socket = os.path.join(tmp, "d", "taskrt.sock")
    log_path = os.path.join(tmp, "taskrtd.log")
    listener = Listener(notify_path)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="400000")
    env.pop("WATCHDOG_PID", None)
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [taskrtd, "--socket", daemon_socket, "--state-dir", os.path.join(tmp, "state"),
             "--cpu-workers", "1", "--python", ""],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        ready = listener.expect("READY", 20)
        if ready is None:
            fail("no READY=1 within 20 s", log_path)
        if ready.get("READY") != "1":
            fail("READY=%r, expected 1" % ready.get("READY"), log_path)
        if not os.path.exists(daemon_socket):
            fail("READY=1 came before %s existed" % daemon_socket, log_path)
        if ready.get("STATUS") != "serving; 0 queued, 0 running":
            fail("READY=1 came with STATUS=%r, expected 'serving; 0 queued, 0 running'"
                 % ready.get("STATUS"), log_path)
        print("ok: READY=1 with STATUS=%s" % ready["STATUS"])

        # WATCHDOG_USEC=400000: a keep-alive at least every 200 ms.
        if listener.expect("WATCHDOG", 5) is None:
            fail("no WATCHDOG=1 within 5 s although WATCHDOG_USEC is set", log_path)
        print("ok: WATCHDOG=1")

        # A task that runs for 3 s shows in the status line, and the drain waits for it.
        submit = subprocess.run(
            [taskrt, "--socket", daemon_socket, "submit", "sys.sleep", "--json", '{"ms": 3000}'],
            capture_output=True, text=True, timeout=30)
        if submit.returncode != 0:
            fail("taskrt submit failed: %s%s" % (submit.stdout, submit.stderr), log_path)
        status = listener.expect("STATUS", 10, lambda s: s == "serving; 0 queued, 1 running")
        if status is None:
            fail("no STATUS='serving; 0 queued, 1 running' within 10 s of the submit "
                 "(got %r)" % [m for _, m in listener.all() if "STATUS" in m], log_path)
        print("ok: STATUS=%s" % status["STATUS"])

        daemon.send_signal(signal.SIGTERM)
        stopping = listener.expect("STOPPING", 10)
        if stopping is None:
            fail("no STOPPING=1 within 10 s of SIGTERM", log_path)
        if not stopping.get("STATUS", "").startswith("draining;"):
            fail("STOPPING=1 came with STATUS=%r, expected 'draining; ...'"
                 % stopping.get("STATUS"), log_path)
        print("ok: STOPPING=1 with STATUS=%s" % stopping["STATUS"])
        try:
            rc = daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fail("taskrtd did not exit within 30 s of SIGTERM", log_path)
        if rc != 0:
            fail("taskrtd exited %d after SIGTERM, expected 0" % rc, log_path)
        print("ok: exit 0")
        messages = listener.all()
        others = {pid for pid, _ in messages if pid != daemon.pid}
        if others:
            fail("notifications from pids %s, not the daemon's %d (NotifyAccess=main would "
                 "drop them)" % (sorted(others), daemon.pid), log_path)
        print("ok: all %d messages from the daemon's pid" % len(messages))
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
