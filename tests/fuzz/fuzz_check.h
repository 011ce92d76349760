// FUZZ_CHECK: the harnesses' invariant check. A failed one prints where and aborts, which
// libFuzzer reports as a crash and keeps the input that caused it.
#ifndef TASKRT_TESTS_FUZZ_FUZZ_CHECK_H_
#define TASKRT_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

#endif  // TASKRT_TESTS_FUZZ_FUZZ_CHECK_H_
