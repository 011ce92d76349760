// Small status helpers that Abseil 20220623 lacks. Internal to taskrt.
#ifndef TASKRT_COMMON_STATUS_MACROS_H_
#define TASKRT_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TASKRT_CONCAT_INNER_(a, b) a##b
#define TASKRT_CONCAT_(a, b) TASKRT_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status taskrt_status_ = (expr);          \
    if (!taskrt_status_.ok()) return taskrt_status_; \
  } while (0)

// `lhs = value of expr`, or returns its status when it is not OK.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(TASKRT_CONCAT_(taskrt_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(*tmp)

#endif  // TASKRT_COMMON_STATUS_MACROS_H_
