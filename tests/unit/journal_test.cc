#include "daemon/journal.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <vector>

namespace taskrt::daemon {
namespace {

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/taskrt-journal-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/journal.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static v1::Task MakeTask(const std::string& id, v1::TaskState state) {
    v1::Task t;
    t.set_id(id);
    t.set_state(state);
    t.mutable_spec()->set_handler("sys.noop");
    return t;
  }

  // Blocks until `ticket` is committed and returns the commit's status.
  static absl::Status AwaitCommit(Journal& j, uint64_t ticket) {
    std::promise<absl::Status> p;
    j.AfterCommit(ticket, [&p](absl::Status s) { p.set_value(s); });
    return p.get_future().get();
  }

  std::string dir_, path_;
};

TEST_F(JournalTest, PutsSurviveReopenAndLatestWins) {
  {
    auto j = Journal::Open(path_, Durability::kFull);
    ASSERT_TRUE(j.ok()) << j.status();
    (*j)->Put(1, MakeTask("a-1", v1::TASK_STATE_QUEUED));
    (*j)->Put(2, MakeTask("a-2", v1::TASK_STATE_QUEUED));
    (*j)->Put(1, MakeTask("a-1", v1::TASK_STATE_SUCCEEDED));
    const uint64_t t = (*j)->Put(3, MakeTask("a-3", v1::TASK_STATE_RUNNING));
    (*j)->Erase(2);
    EXPECT_EQ(t, 4u);
    ASSERT_TRUE(AwaitCommit(**j, (*j)->last_ticket()).ok());
  }
  auto j = Journal::Open(path_, Durability::kProcess);
  ASSERT_TRUE(j.ok()) << j.status();
  auto all = (*j)->LoadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].seq, 1u);
  EXPECT_EQ((*all)[0].task.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ((*all)[1].seq, 3u);
  EXPECT_EQ((*all)[1].task.id(), "a-3");
}

TEST_F(JournalTest, ManyWritesShareCommits) {
  auto j = Journal::Open(path_, Durability::kFull);
  ASSERT_TRUE(j.ok());
  for (uint64_t i = 1; i <= 2000; ++i) (*j)->Put(i, MakeTask("t", v1::TASK_STATE_QUEUED));
  ASSERT_TRUE(AwaitCommit(**j, (*j)->last_ticket()).ok());
  EXPECT_LT((*j)->commits(), 2000u);  // group commit: far fewer commits than writes
  auto all = (*j)->LoadAll();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2000u);
}

TEST_F(JournalTest, ErasesRunsAndSinglesAndFoldsRepeatedWritesOfARow) {
  auto j = Journal::Open(path_, Durability::kProcess);
  ASSERT_TRUE(j.ok()) << j.status();
  std::vector<Journal::Change> puts;
  std::vector<v1::Task> tasks;
  tasks.reserve(20);
  for (uint64_t seq = 1; seq <= 20; ++seq) {
    tasks.push_back(MakeTask("t-" + std::to_string(seq), v1::TASK_STATE_QUEUED));
  }
  for (uint64_t seq = 1; seq <= 20; ++seq) puts.push_back({seq, &tasks[seq - 1]});
  ASSERT_TRUE(AwaitCommit(**j, (*j)->Apply(puts)).ok());
  // Erase 3..9 (a run) and 12 and 15 (singles), in no particular order, and rewrite 10
  // twice in the same unit: the second write wins and is the only one written.
  const v1::Task ten_running = MakeTask("t-10", v1::TASK_STATE_RUNNING);
  const v1::Task ten_done = MakeTask("t-10", v1::TASK_STATE_SUCCEEDED);
  std::vector<Journal::Change> changes = {
      {9, nullptr}, {15, nullptr}, {3, nullptr}, {4, nullptr}, {10, &ten_running}, {5, nullptr},
      {6, nullptr}, {12, nullptr}, {7, nullptr}, {8, nullptr}, {10, &ten_done}};
  const uint64_t before = (*j)->coalesced();
  ASSERT_TRUE(AwaitCommit(**j, (*j)->Apply(changes)).ok());
  EXPECT_GE((*j)->coalesced(), before + 1);
  auto all = (*j)->LoadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<uint64_t> kept;
  for (const auto& t : *all) {
    kept.push_back(t.seq);
    if (t.seq == 10) {
      EXPECT_EQ(t.task.state(), v1::TASK_STATE_SUCCEEDED);
    }
  }
  EXPECT_EQ(kept, (std::vector<uint64_t>{1, 2, 10, 11, 13, 14, 16, 17, 18, 19, 20}));
}

TEST_F(JournalTest, CallbacksRunInTicketOrderNeverInline) {
  auto j = Journal::Open(path_, Durability::kProcess);
  ASSERT_TRUE(j.ok());
  std::vector<int> order;
  std::promise<void> done;
  const uint64_t t1 = (*j)->Put(1, MakeTask("x", v1::TASK_STATE_QUEUED));
  (*j)->AfterCommit(t1, [&](absl::Status) { order.push_back(1); });
  const uint64_t t2 = (*j)->Put(2, MakeTask("y", v1::TASK_STATE_QUEUED));
  (*j)->AfterCommit(t2, [&](absl::Status) {
    order.push_back(2);
    done.set_value();
  });
  done.get_future().wait();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST_F(JournalTest, CorruptFileIsRefusedAndLeftAlone) {
  {
    std::ofstream out(path_, std::ios::binary);
    out << std::string(8192, 'Z');
  }
  auto j = Journal::Open(path_, Durability::kFull);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find(path_), std::string::npos) << j.status();
  EXPECT_NE(j.status().message().find("move"), std::string::npos) << j.status();
  EXPECT_EQ(std::filesystem::file_size(path_), 8192u);  // untouched
}

TEST_F(JournalTest, UnwritableLocationIsAClearError) {
  auto j = Journal::Open("/dev/null/journal.db", Durability::kFull);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("/dev/null/journal.db"), std::string::npos);
}

TEST(DurabilityTest, Parses) {
  EXPECT_EQ(*ParseDurability("none"), Durability::kNone);
  EXPECT_EQ(*ParseDurability("full"), Durability::kFull);
  EXPECT_FALSE(ParseDurability("fast").ok());
}

}  // namespace
}  // namespace taskrt::daemon
