#!/usr/bin/python3
"""The Python benchmarks: taskrt.Executor against concurrent.futures.ProcessPoolExecutor,
measured in the same run on the same machine.

    /usr/bin/python3 bench/python_bench.py [--quick] [--json]
        [--runs N] [--scenario NAME]... [--bin-dir build/bin]

It starts its own taskrtd (from --bin-dir) on a socket in a fresh temporary directory,
with bench/ on the daemon's PYTHONPATH (its Python workers import py_bench_funcs from
there, as ProcessPoolExecutor's children do), runs the scenarios, and stops the daemon by
its pid (SIGTERM, SIGKILL after 10 s) on every path. Each scenario is run --runs times
(default 3) and the median of each figure is reported; the notes give every run.

Scenarios (targets in TARGETS):
  py_noop_map        Executor.map(noop, range(N)) from one client, tasks/s, vs
                     ProcessPoolExecutor(max_workers=cores).map of the same (chunksize=1
                     both; chunksize=100 rows for both as reference)
  py_cpu_map         8 pure-Python calls of ~0.5 s: Executor.map (task_class="cpu") vs
                     the same 8 run serially here -> speedup; ProcessPoolExecutor's
                     speedup (reference); the 8 forced onto threads (task_class="io")
  py_async_sleep     1000 concurrent `await asyncio.sleep(1)` via the Executor, wall s
  py_submit_latency  sequential submit(noop).result() xN, p50/p99 us, next to
                     ProcessPoolExecutor's

Where the time goes: the throughput rows note the CPU seconds spent in this client
process, in taskrtd itself and in its Python workers during the measurement (from
/proc), so a miss can be attributed to the client, the daemon or the workers.
"""
from __future__ import annotations

import argparse
import faulthandler
import concurrent.futures
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
# The build's package unless another taskrt is on PYTHONPATH (or installed).
if os.path.isdir(os.path.join(ROOT, "build", "python", "taskrt")):
    sys.path.append(os.path.join(ROOT, "build", "python"))

import py_bench_funcs as funcs  # noqa: E402

import taskrt  # noqa: E402

CORES = os.cpu_count() or 1
TICK = os.sysconf("SC_CLK_TCK")

# figure -> (direction, target, what the target is relative to or None, text)
TARGETS = {
    "py_noop_map": (">=", 2.0, "ppe_noop_map", ">= 2 x ppe_noop_map"),
    "py_cpu_map_speedup": (">=", 1.9, None, ">= 1.9 x"),
    "py_async_sleep": ("<=", 1.1, None, "<= 1.1 s"),
}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, 0 when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


class Daemon:
    """taskrtd on a socket in a temporary directory; stop() stops it by pid."""

    def __init__(self, bin_dir: str, args: list[str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="taskrt-pybench.")
        self.socket = os.path.join(self.dir, "taskrt.sock")
        self.log_path = os.path.join(self.dir, "taskrtd.log")
        package_dir = os.path.dirname(os.path.dirname(os.path.abspath(taskrt.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([package_dir, HERE])
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "taskrtd"), "--socket", self.socket,
             "--state-dir", os.path.join(self.dir, "state"),
             "--python", "/usr/bin/python3", "--python-path", package_dir, *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("taskrtd exited %s: %s" % (self.proc.returncode, self.output()))
            if "serving unix:" in self.output() and os.path.exists(self.socket):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("taskrtd did not start in 30 s: %s" % self.output())

    def output(self) -> str:
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def worker_pids(self) -> list[int]:
        with taskrt.Client(socket=self.socket) as client:
            return [w.pid for w in client.stats().workers if w.pool.startswith("python")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class CpuMeter:
    """CPU seconds of this process, taskrtd and its Python workers over a `with` block."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def __enter__(self) -> "CpuMeter":
        self.pids = self.daemon.worker_pids()
        self.c0 = time.process_time()
        self.d0 = cpu_seconds(self.daemon.proc.pid)
        self.w0 = sum(cpu_seconds(p) for p in self.pids)
        return self

    def __exit__(self, *exc) -> None:
        self.client = time.process_time() - self.c0
        self.taskrtd = cpu_seconds(self.daemon.proc.pid) - self.d0
        self.workers = sum(cpu_seconds(p) for p in self.pids) - self.w0

    def note(self, wall: float) -> str:
        return "cpu s in client %.2f, taskrtd %.2f, python workers %.2f (wall %.2f)" % (
            self.client, self.taskrtd, self.workers, wall)


def ppe() -> concurrent.futures.ProcessPoolExecutor:
    """A warm ProcessPoolExecutor of `cores` workers (every worker started). Its workers
    are started by a forkserver: forking this process, which runs gRPC threads, leaves
    children that hang (gRPC is not fork-safe). Only startup differs; it is not timed."""
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=CORES, mp_context=multiprocessing.get_context("forkserver"))
    list(pool.map(funcs.noop, range(CORES * 4)))
    return pool


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


# --- scenarios: each returns {figure: (value, unit, note)} for one run ----------------

def noop_map(daemon: Daemon, ex: taskrt.Executor, q: bool) -> dict:
    n = 2000 if q else 20000
    out = {}
    for chunk in (1, 100):
        suffix = "" if chunk == 1 else "_chunk100"
        with CpuMeter(daemon) as meter:
            t = time.perf_counter()
            results = list(ex.map(funcs.noop, range(n), chunksize=chunk))
            wall = time.perf_counter() - t
        assert len(results) == n
        out["py_noop_map" + suffix] = (n / wall, "tasks/s",
                                       "%d calls, chunksize=%d; %s" % (n, chunk, meter.note(wall)))
        with ppe() as pool:
            t = time.perf_counter()
            results = list(pool.map(funcs.noop, range(n), chunksize=chunk))
            wall = time.perf_counter() - t
        out["ppe_noop_map" + suffix] = (n / wall, "tasks/s",
                                        "ProcessPoolExecutor(max_workers=%d), chunksize=%d" % (CORES, chunk))
    return out


_SPIN_N: list[int] = []


def spin_size(q: bool) -> int:
    """Iterations of funcs.spin that take ~0.5 s here (quick: ~0.25 s), measured once."""
    if not _SPIN_N:
        probe = 1_000_000
        dt = float("inf")
        for _ in range(3):  # the fastest probe: the one least disturbed by other work
            t = time.perf_counter()
            funcs.spin(probe)
            dt = min(dt, time.perf_counter() - t)
        _SPIN_N.append(int(probe * (0.25 if q else 0.5) / dt))
    return _SPIN_N[0]


def cpu_map(daemon: Daemon, ex: taskrt.Executor, q: bool) -> dict:
    n = spin_size(q)
    sizes = [n] * 8
    t, c = time.perf_counter(), time.process_time()
    for s in sizes:
        funcs.spin(s)
    serial = time.perf_counter() - t
    share = (time.process_time() - c) / serial  # < 1: other work held this core meanwhile
    out = {"py_cpu_map_serial": (serial, "s", "8 x spin(%d) run one after another here; it got "
                                 "%.2f CPU s per wall s" % (n, share))}

    t = time.perf_counter()
    futures = [ex.options(task_class="cpu").submit(funcs.spin, s) for s in sizes]
    concurrent.futures.wait(futures, 120)
    wall = time.perf_counter() - t
    pools = sorted({(f.task.decision.executor, f.task.decision.pool) for f in futures})
    pids = len({f.task.decision.worker_pid for f in futures})
    out["py_cpu_map_speedup"] = (serial / wall, "x", "task_class=cpu: wall %.2f s, ran on %s, %d worker pids"
                                 % (wall, pools, pids))

    t = time.perf_counter()
    list(ex.options(task_class="io").map(funcs.spin, sizes))
    wall = time.perf_counter() - t
    out["py_cpu_map_threads_speedup"] = (serial / wall, "x",
                                         "task_class=io (threads, the GIL): wall %.2f s" % wall)

    with ppe() as pool:
        t = time.perf_counter()
        list(pool.map(funcs.spin, sizes))
        wall = time.perf_counter() - t
    out["ppe_cpu_map_speedup"] = (serial / wall, "x", "ProcessPoolExecutor(max_workers=%d): wall %.2f s"
                                  % (CORES, wall))
    return out


def async_sleep(daemon: Daemon, ex: taskrt.Executor, q: bool) -> dict:
    n = 1000
    with CpuMeter(daemon) as meter:
        t = time.perf_counter()
        futures = [ex.submit(funcs.async_sleep, 1.0) for _ in range(n)]
        submitted = time.perf_counter() - t
        done, _ = concurrent.futures.wait(futures, 120)
        wall = time.perf_counter() - t
    assert len(done) == n and all(f.result() == 1.0 for f in futures)
    executors = sorted({f.task.decision.executor for f in futures})
    ds = [f.task.decision for f in futures]
    return {"py_async_sleep": (wall, "s", "%d x asyncio.sleep(1) on %s; submit loop %.3f s; "
                               "max queue wait %.3f s, max run time %.3f s; %s"
                               % (n, executors, submitted, max(d.queue_wait for d in ds),
                                  max(d.run_time for d in ds), meter.note(wall)))}


def submit_latency(daemon: Daemon, ex: taskrt.Executor, q: bool) -> dict:
    n = 100 if q else 500
    out = {}
    for name, submit in (("py", ex.submit), ("ppe", None)):
        pool = ppe() if submit is None else None
        fn = pool.submit if pool else submit
        fn(funcs.noop).result()
        times, queue, run = [], [], []
        for _ in range(n):
            t = time.perf_counter()
            f = fn(funcs.noop)
            f.result()
            times.append((time.perf_counter() - t) * 1e6)
            if pool is None:
                queue.append(f.task.decision.queue_wait * 1e6)
                run.append(f.task.decision.run_time * 1e6)
        if pool:
            pool.shutdown()
        label = "taskrt.Executor" if pool is None else "ProcessPoolExecutor(max_workers=%d)" % CORES
        split = ("; p50 of the daemon's queue wait (accepted -> started in a worker) %.0f us, "
                 "run time in the worker %.0f us, the rest (client, gRPC, results back) %.0f us"
                 % (pct(queue, 50), pct(run, 50), pct(times, 50) - pct(queue, 50) - pct(run, 50))
                 if queue else "")
        out["%s_submit_latency_p50" % name] = (pct(times, 50), "us", "%s, %d sequential%s"
                                               % (label, n, split))
        out["%s_submit_latency_p99" % name] = (pct(times, 99), "us", label)
    return out


SCENARIOS = {
    "py_noop_map": noop_map,
    "py_cpu_map": cpu_map,
    "py_async_sleep": async_sleep,
    "py_submit_latency": submit_latency,
}


def verdict(figure: str, value: float, medians: dict) -> tuple[float | None, str, bool | None]:
    if figure not in TARGETS:
        return None, "", None
    direction, target, relative, text = TARGETS[figure]
    if relative is not None:
        if relative not in medians:
            return None, text, None
        target = target * medians[relative]
    met = value >= target if direction == ">=" else value <= target
    return target, text, met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (median)")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("daemon_args", nargs="*", help="after --: passed to taskrtd")
    opts = parser.parse_args()
    if os.environ.get("PYBENCH_DUMP_AFTER"):  # debugging a hang: dump every stack
        faulthandler.dump_traceback_later(float(os.environ["PYBENCH_DUMP_AFTER"]))
    selected = opts.scenario or list(SCENARIOS)

    # SIGTERM/SIGHUP unwind like Ctrl-C, so the daemon is stopped on every path.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    daemon = Daemon(opts.bin_dir, opts.daemon_args)
    runs: dict[str, list[tuple[float, str, str]]] = {}
    errors = {}
    try:
        load = os.getloadavg()
        print("# %d cores, load average %.2f %.2f %.2f, %d run(s) per scenario, %s"
              % (CORES, *load, opts.runs, "quick" if opts.quick else "full"), file=sys.stderr)
        with taskrt.Executor(socket=daemon.socket) as ex:
            list(ex.map(funcs.noop, range(CORES * 4), timeout=30))  # warm, as ppe()
            for name in selected:
                for _ in range(opts.runs):
                    try:
                        for figure, row in SCENARIOS[name](daemon, ex, opts.quick).items():
                            runs.setdefault(figure, []).append(row)
                    except Exception as e:  # a failed scenario is reported, not fatal
                        errors[name] = "%s: %s" % (type(e).__name__, e)
                        break
    finally:
        daemon.stop()

    medians = {f: statistics.median(r[0] for r in rows) for f, rows in runs.items()}
    rows = []
    for figure, samples in runs.items():
        value = medians[figure]
        target, text, met = verdict(figure, value, medians)
        every = ", ".join("%.4g" % s[0] for s in samples)
        note = "runs: %s; %s" % (every, samples[len(samples) // 2][2])
        rows.append(dict(scenario=figure, value=value, unit=samples[0][1], target=target,
                         target_text=text, met=met, notes=note))
    for name, error in errors.items():
        rows.append(dict(scenario=name, value=None, unit="", target=None, target_text="",
                         met=None, notes="", error=error))
    if opts.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print("%-30s %12s %-8s %-22s %-7s %s" % ("figure", "median", "unit", "target", "met", "notes"))
        for r in rows:
            met = {True: "met", False: "MISSED", None: "-"}[r["met"]]
            value = "error" if r["value"] is None else "%.4g" % r["value"]
            print("%-30s %12s %-8s %-22s %-7s %s" % (r["scenario"], value, r["unit"],
                                                       r["target_text"] or "reference", met,
                                                       r.get("error") or r["notes"]))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
