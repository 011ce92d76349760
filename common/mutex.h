// The mutex the daemon uses: absl::Mutex, or, in ThreadSanitizer builds, an equivalent
// built on std::mutex. Debian's Abseil is not built with TSan, so TSan cannot see
// absl::Mutex's synchronization and would report every guarded access as a race; the
// std::mutex version is visible to it. Both support Await/AwaitWithTimeout on an
// absl::Condition and the thread-safety annotations.
#ifndef TASKRT_COMMON_MUTEX_H_
#define TASKRT_COMMON_MUTEX_H_

#include "absl/synchronization/mutex.h"

#ifdef TASKRT_STD_MUTEX
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#endif

namespace taskrt::internal {

#ifndef TASKRT_STD_MUTEX

using Mutex = absl::Mutex;
using MutexLock = absl::MutexLock;

#else

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    mu_.unlock();
    cv_.notify_all();  // waiters re-check their conditions, as with absl::Mutex
  }
  // For code the analysis cannot follow (a callback its caller runs under the lock).
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}
  void Await(const absl::Condition& cond) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    while (!cond.Eval()) cv_.wait(mu_);
  }
  bool AwaitWithTimeout(const absl::Condition& cond, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
    while (!cond.Eval()) {
      if (cv_.wait_until(mu_, deadline) == std::cv_status::timeout) return cond.Eval();
    }
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable_any cv_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

#endif

}  // namespace taskrt::internal

#endif  // TASKRT_COMMON_MUTEX_H_
