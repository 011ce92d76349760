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
TEST(TaskQueueTest, KeyPushedAgainAfterRemoveComesOutOnceInItsNewPlace) {
  TaskQueue q;
  q.Push(1, 0);
  q.Push(2, 0);
  ASSERT_TRUE(q.Remove(1));
  q.Push(1, 0);  // e.g. a retry requeued: now behind 2
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.Pop(), 2u);
  EXPECT_EQ(q.Pop(), 1u);
  EXPECT_EQ(q.Pop(), std::nullopt);
  EXPECT_TRUE(q.empty());
}

TEST(TaskQueueTest, MassRemovalKeepsOrderOfTheRest) {
  TaskQueue q;
  for (uint64_t k = 0; k < 10000; ++k) q.Push(k, static_cast<int32_t>(k % 3));
  for (uint64_t k = 0; k < 10000; ++k) {
    if (k % 10 != 0) {
      ASSERT_TRUE(q.Remove(k));
    }
  }
  EXPECT_FALSE(q.Remove(5));
  ASSERT_EQ(q.size(), 1000u);
  // Priority 2 first (k % 3 == 2), then 1, then 0; FIFO within each.
  std::vector<uint64_t> expected;
  for (int p = 2; p >= 0; --p) {
    for (uint64_t k = 0; k < 10000; k += 10) {
      if (static_cast<int>(k % 3) == p) expected.push_back(k);
    }
  }
  std::vector<uint64_t> got;
  while (auto k = q.Pop()) got.push_back(*k);
  EXPECT_EQ(got, expected);
}

}  // namespace taskrt::daemon
