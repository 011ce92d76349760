#include "daemon/task_queue.h"

#include <gtest/gtest.h>

namespace taskrt::daemon {
namespace {

TEST(TaskQueueTest, FifoWithinPriority) {
  TaskQueue q;
  q.Push(1, 0);
  q.Push(2, 0);
  q.Push(3, 0);
  EXPECT_EQ(q.Pop(), 1u);
  EXPECT_EQ(q.Pop(), 2u);
  EXPECT_EQ(q.Pop(), 3u);
  EXPECT_EQ(q.Pop(), std::nullopt);
}

TEST(TaskQueueTest, HigherPriorityFirstIncludingNegative) {
  TaskQueue q;
  q.Push(1, 0);
  q.Push(2, 5);
  q.Push(3, -3);
  q.Push(4, 5);
  EXPECT_EQ(q.Peek(), 2u);
  EXPECT_EQ(q.Pop(), 2u);
  EXPECT_EQ(q.Pop(), 4u);
  EXPECT_EQ(q.Pop(), 1u);
  EXPECT_EQ(q.Pop(), 3u);
  EXPECT_TRUE(q.empty());
}

TEST(TaskQueueTest, RemoveAndDuplicates) {
  TaskQueue q;
  q.Push(1, 0);
  q.Push(2, 0);
  q.Push(2, 9);  // already queued: ignored
  EXPECT_EQ(q.size(), 2u);
  EXPECT_TRUE(q.Remove(1));
  EXPECT_FALSE(q.Remove(1));
  EXPECT_FALSE(q.Remove(42));
  EXPECT_EQ(q.Pop(), 2u);
  EXPECT_TRUE(q.empty());
}

TEST(TaskQueueTest, ManyKeysStayOrdered) {
  TaskQueue q;
  for (uint64_t i = 0; i < 10000; ++i) q.Push(i, static_cast<int32_t>(i % 3));
  int32_t last_priority = 2;
  uint64_t last_key = 0;
  bool first = true;
  while (auto k = q.Pop()) {
    const int32_t p = static_cast<int32_t>(*k % 3);
    ASSERT_LE(p, last_priority);
    if (!first && p == last_priority) {
      ASSERT_GT(*k, last_key);
    }
    last_priority = p;
    last_key = *k;
    first = false;
  }
}

}  // namespace
}  // namespace taskrt::daemon
