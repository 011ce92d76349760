#!/usr/bin/python3
"""The Python part of the demo: where taskrt.Executor runs CPU-bound and I/O-bound Python
calls, and what it costs to force them elsewhere, measured here.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/demo.py [--socket PATH]

Needs a running taskrtd whose Python workers can import demo_funcs (examples/python on
the daemon's PYTHONPATH, as scripts/demo.sh does). It prints a claim only when its own
figures support it; otherwise it prints what it measured and that the claim did not hold.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import demo_funcs as funcs  # noqa: E402

import taskrt  # noqa: E402

CPU_CALLS = 8
CPU_SECONDS = 0.5          # run time of one CPU-bound call, calibrated below
IO_CALLS = 200             # 100 time.sleep + 100 asyncio.sleep
IO_SECONDS = 0.5
IO_ON_PROCESSES = 8        # of those, forced onto the process pool (all 200 would take ~50 s)
WAIT = 120                 # seconds: the bound of every wait


def where(futures: list) -> str:
    places = collections.Counter((f.task.decision.executor, f.task.decision.pool) for f in futures)
    pids = sorted({f.task.decision.worker_pid for f in futures})
    return "%s; worker pids %s" % (
        ", ".join("%d on %s/%s" % (n, e, p) for (e, p), n in sorted(places.items())), pids)


def run_all(submit, calls: list) -> tuple[float, list]:
    start = time.perf_counter()
    futures = [submit(fn, *args) for fn, *args in calls]
    done, pending = concurrent.futures.wait(futures, WAIT)
    if pending:
        raise SystemExit("%d calls did not finish in %d s" % (len(pending), WAIT))
    for f in futures:
        f.result()
    return time.perf_counter() - start, futures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", help="taskrtd's socket (default: as taskrt.Client)")
    opts = parser.parse_args()
    cores = os.cpu_count() or 1

    probe, dt = 1_000_000, float("inf")
    for _ in range(3):  # the fastest probe: the one least disturbed by other work
        t = time.perf_counter()
        funcs.spin(probe)
        dt = min(dt, time.perf_counter() - t)
    n = max(1, int(probe * CPU_SECONDS / dt))

    print("== Python: CPU-bound calls (%d x spin(%d), ~%.1f s each, pure Python) ==" % (
        CPU_CALLS, n, CPU_SECONDS))
    t = time.perf_counter()
    for _ in range(CPU_CALLS):
        funcs.spin(n)
    serial = time.perf_counter() - t
    print("serially in this process: %.2f s" % serial)

    with taskrt.Executor(socket=opts.socket, connect_timeout=10) as ex:
        cpu, io = ex.options(task_class="cpu"), ex.options(task_class="io")
        auto_wall, auto = run_all(ex.submit, [(funcs.spin, n)] * CPU_CALLS)
        thread_wall, threaded = run_all(io.submit, [(funcs.spin, n)] * CPU_CALLS)
        p_speed, t_speed = serial / auto_wall, serial / thread_wall
        print("task_class=auto (the daemon decides): %.2f s, speedup %.2f x  [%s]"
              % (auto_wall, p_speed, where(auto)))
        d = auto[0].task.decision
        print("  why: reason=%s resolved=%s  %s" % (d.reason, d.resolved_class, d.evidence))
        print("forced onto threads (task_class=io):  %.2f s, speedup %.2f x  [%s]"
              % (thread_wall, t_speed, where(threaded)))
        g = max((f.task.decision for f in threaded), key=lambda d: d.gil_wait)
        print("  GIL evidence of one of them: gil_measured=%s, waited %.2f s for the GIL of %.2f s run"
              % (g.gil_measured, g.gil_wait, g.run_time))
        print("  evidence: %s" % (g.evidence or "(none)"))
        print("  hint: %s" % (g.hint or "(none)"))
        if p_speed >= 1.5 * t_speed:
            print("=> Threads are slower for CPU-bound Python (GIL); processes run it in parallel "
                  "(%.2f x vs %.2f x on %d cores)" % (p_speed, t_speed, cores))
        else:
            print("=> The claim did not hold here: processes %.2f x vs threads %.2f x (needed "
                  ">= 1.5 x the thread speedup); the cores may be busy with other work "
                  "(load average %.2f)" % (p_speed, t_speed, os.getloadavg()[0]))

        print()
        print("== Python: I/O-bound calls (%d x time.sleep(%.1f) + %d x asyncio.sleep(%.1f)) ==" % (
            IO_CALLS // 2, IO_SECONDS, IO_CALLS // 2, IO_SECONDS))
        calls = ([(funcs.blocking_sleep, IO_SECONDS)] * (IO_CALLS // 2)
                 + [(funcs.async_sleep, IO_SECONDS)] * (IO_CALLS // 2))
        io_wall, overlapped = run_all(io.submit, calls)
        io_overlap = sum(f.task.decision.run_time for f in overlapped) / io_wall
        print("task_class=io (threads / asyncio loop): %.2f s wall, overlap %.0f  [%s]"
              % (io_wall, io_overlap, where(overlapped)))
        few = calls[:IO_ON_PROCESSES // 2] + calls[-(IO_ON_PROCESSES // 2):]
        proc_wall, in_procs = run_all(cpu.submit, few)
        proc_overlap = sum(f.task.decision.run_time for f in in_procs) / proc_wall
        print("forced onto the process pool (task_class=cpu), %d of them: %.2f s wall, overlap %.1f  [%s]"
              % (len(few), proc_wall, proc_overlap, where(in_procs)))
        print("  (overlap = sum of the calls' run times / wall; all %d there would take ~%.0f s)"
              % (IO_CALLS, IO_CALLS * IO_SECONDS / max(1, len({f.task.decision.worker_pid for f in in_procs}))))
        if io_overlap >= 5 * proc_overlap:
            print("=> I/O-bound Python overlaps on threads and the asyncio loop (%.0f at once); "
                  "a process runs one at a time (%.1f)" % (io_overlap, proc_overlap))
        else:
            print("=> The claim did not hold here: overlap %.1f on threads/async vs %.1f on processes"
                  % (io_overlap, proc_overlap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
