// File: _gilprobe.cc - how long each thread of a Python worker waited for the GIL.
//
// A thread that wants the GIL in CPython 3.11 waits in take_gil() on the GIL's condition
// variable with pthread_cond_timedwait (COND_TIMED_WAIT, Python/ceval_gil.h, in slices
// of the switch interval). The Python worker (taskrt._worker) preloads this library
// (LD_PRELOAD), which interposes pthread_cond_timedwait: it calls glibc's and adds the
// time spent inside it to a counter of the calling thread. The worker reads the counter
// of a task's thread before and after the task; the difference is the task's GIL wait,
// which turns "4 CPU-bound threads each show cpu/wall = 0.25" back into what they are:
// compute, cpu / (wall - gil_wait) close to 1.
//
// What else is counted: any other timed condition-variable wait of the thread (a C
// extension's). CPython 3.11 itself waits on semaphores (sem_clockwait) for its locks,
// threading.Lock/Condition/queue.Queue and time.sleep, so those are not GIL waits and
// are not counted. pthread_cond_clockwait is not interposed: CPython 3.11 does not call it.
//
// Thread-safety: the counter is thread_local; every exported function is safe to call
// from any thread. The worker reads it through ctypes.PyDLL (holding the GIL).
#include <dlfcn.h>
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

namespace {

using CondTimedWait = int (*)(pthread_cond_t*, pthread_mutex_t*, const timespec*);

// The address-space layout is fixed once the library is loaded: resolved once, then
// read by every thread.
std::atomic<CondTimedWait> real_timedwait{nullptr};

// initial-exec: a preloaded library's TLS is allocated with the program's, so no
// __tls_get_addr call on a path that runs at every GIL hand-off.
__attribute__((tls_model("initial-exec"))) thread_local uint64_t gil_wait_ns = 0;

uint64_t MonotonicNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

CondTimedWait RealTimedWait() {
  CondTimedWait fn = real_timedwait.load(std::memory_order_acquire);
  if (fn == nullptr) {
    // GLIBC_2.3.2 is the current pthread_cond_t ABI (the one CPython links against);
    // plain dlsym could return the GLIBC_2.2.5 compatibility version.
    fn = reinterpret_cast<CondTimedWait>(
        ::dlvsym(RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2"));
    if (fn == nullptr) {
      fn = reinterpret_cast<CondTimedWait>(::dlsym(RTLD_NEXT, "pthread_cond_timedwait"));
    }
    real_timedwait.store(fn, std::memory_order_release);
  }
  return fn;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int pthread_cond_timedwait(pthread_cond_t* cond,
                                                                  pthread_mutex_t* mutex,
                                                                  const timespec* abstime) {
  const CondTimedWait real = RealTimedWait();
  if (real == nullptr) return ENOSYS;  // no libc below us: cannot happen in a dynamic program
  const uint64_t start = MonotonicNs();
  const int rc = real(cond, mutex, abstime);
  gil_wait_ns += MonotonicNs() - start;
  return rc;
}

// The calling thread's total time in pthread_cond_timedwait since it started, in ns.
__attribute__((visibility("default"))) uint64_t taskrt_gil_wait_ns(void) { return gil_wait_ns; }

// Bumped when the meaning of taskrt_gil_wait_ns changes.
__attribute__((visibility("default"))) int taskrt_gil_probe_version(void) { return 1; }

}  // extern "C"
