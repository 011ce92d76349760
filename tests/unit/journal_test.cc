#include "daemon/journal.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
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

TEST_F(JournalTest, LearnedStatsSurviveReopenAndLatestWins) {
  LearnedStats a;
  a.cpu_ratio = 0.25;
  a.samples = 7;
  a.gil_samples = 2;
  a.wall_us = 1234.5;
  a.runs = 9;
  LearnedStats b = a;
  b.cpu_ratio = 0.75;
  b.runs = 10;
  {
    auto j = Journal::Open(path_, Durability::kFull);
    ASSERT_TRUE(j.ok()) << j.status();
    (*j)->PutLearned("py.call", "mod.f", a);
    (*j)->Put(1, MakeTask("a", v1::TASK_STATE_SUCCEEDED));
    (*j)->PutLearned("py.call", "mod.f", b);  // replaces the first, pending or committed
    (*j)->PutLearned("sys.exec", "", a);
    ASSERT_TRUE(AwaitCommit(**j, (*j)->last_ticket()).ok());
  }
  auto j = Journal::Open(path_, Durability::kFull);
  ASSERT_TRUE(j.ok()) << j.status();
  auto learned = (*j)->LoadLearned();
  ASSERT_TRUE(learned.ok()) << learned.status();
  ASSERT_EQ(learned->size(), 2u);
  const LearnedStats& f = learned->at({"py.call", "mod.f"});
  EXPECT_EQ(f.cpu_ratio, 0.75);
  EXPECT_EQ(f.samples, 7u);
  EXPECT_EQ(f.gil_samples, 2u);
  EXPECT_EQ(f.wall_us, 1234.5);
  EXPECT_EQ(f.runs, 10u);
  EXPECT_EQ(learned->at({"sys.exec", ""}).runs, 9u);
  auto all = (*j)->LoadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 1u);
}

TEST_F(JournalTest, LearnedStatsRideWithTheNextTaskWriteAndCloseFlushesThem) {
  {
    auto j = Journal::Open(path_, Durability::kFull);
    ASSERT_TRUE(j.ok()) << j.status();
    (*j)->PutLearned("sys.noop", "", LearnedStats{});
    // Alone, with nobody waiting for them, they do not make a commit of their own (a
    // writer that woke for them would commit within microseconds).
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ((*j)->commits(), 0u);
    ASSERT_TRUE(AwaitCommit(**j, (*j)->Put(1, MakeTask("a", v1::TASK_STATE_SUCCEEDED))).ok());
    EXPECT_EQ((*j)->commits(), 1u);
    // Queued last, written at Close.
    LearnedStats s;
    s.runs = 5;
    (*j)->PutLearned("sys.exec", "", s);
  }
  auto j = Journal::Open(path_, Durability::kFull);
  ASSERT_TRUE(j.ok()) << j.status();
  auto learned = (*j)->LoadLearned();
  ASSERT_TRUE(learned.ok()) << learned.status();
  ASSERT_EQ(learned->size(), 2u);
  EXPECT_EQ(learned->at({"sys.exec", ""}).runs, 5u);
}

// Holds the writer thread inside a callback until Release, so that the writes queued
// meanwhile go into one commit group.
// The writer may still be inside the callback when the gate is gone: the callback
// shares the release future and the entered promise instead of using the gate.
class WriterGate {
 public:
  explicit WriterGate(Journal& j) {
    auto entered = std::make_shared<std::promise<void>>();
    std::future<void> in = entered->get_future();
    std::shared_future<void> release = release_.get_future().share();
    j.AfterCommit(j.Put(1000, MakeTaskForGate()), [entered, release](absl::Status) {
      entered->set_value();
      release.wait();
    });
    in.wait();
  }
  void Release() { release_.set_value(); }

 private:
  static v1::Task MakeTaskForGate() {
    v1::Task t;
    t.set_id("gate");
    return t;
  }
  std::promise<void> release_;
};

TEST_F(JournalTest, CommitIsSyncedOnlyWhenAWriteOfItsGroupNeedsIt) {
  auto j = Journal::Open(path_, Durability::kFull);
  ASSERT_TRUE(j.ok()) << j.status();
  // Alone, a sync write's commit is fsync'd and a non-sync one's is not.
  ASSERT_TRUE(AwaitCommit(**j, (*j)->Put(1, MakeTask("a", v1::TASK_STATE_QUEUED))).ok());
  EXPECT_EQ((*j)->synced_commits(), 1u);
  ASSERT_TRUE(
      AwaitCommit(**j, (*j)->Put(2, MakeTask("b", v1::TASK_STATE_QUEUED), /*sync=*/false)).ok());
  EXPECT_EQ((*j)->synced_commits(), 1u);
  EXPECT_EQ((*j)->unsynced_commits(), 1u);
  // Learned statistics never need an fsync.
  ASSERT_TRUE(AwaitCommit(**j, (*j)->PutLearned("sys.noop", "", LearnedStats{})).ok());
  EXPECT_EQ((*j)->unsynced_commits(), 2u);

  // A group of only non-sync writes: one unsynced commit.
  {
    WriterGate gate(**j);  // its own commit is synced
    EXPECT_EQ((*j)->synced_commits(), 2u);
    (*j)->Put(3, MakeTask("c", v1::TASK_STATE_QUEUED), false);
    (*j)->Apply({{4, nullptr}}, false);
    (*j)->PutLearned("sys.noop", "", LearnedStats{});
    gate.Release();
  }
  ASSERT_TRUE(AwaitCommit(**j, (*j)->last_ticket()).ok());
  EXPECT_EQ((*j)->synced_commits(), 2u);
  EXPECT_EQ((*j)->unsynced_commits(), 3u);

  // A mixed group: one synced commit.
  {
    WriterGate gate(**j);
    (*j)->Put(5, MakeTask("d", v1::TASK_STATE_QUEUED), false);
    (*j)->Put(6, MakeTask("e", v1::TASK_STATE_QUEUED), true);
    (*j)->Put(7, MakeTask("f", v1::TASK_STATE_QUEUED), false);
    gate.Release();
  }
  ASSERT_TRUE(AwaitCommit(**j, (*j)->last_ticket()).ok());
  EXPECT_EQ((*j)->synced_commits(), 4u);
  EXPECT_EQ((*j)->unsynced_commits(), 3u);
  EXPECT_EQ((*j)->commits(), 7u);
  // Unsynced commits are still commits: every row is there after a reopen.
  j->reset();
  auto reopened = Journal::Open(path_, Durability::kFull);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto all = (*reopened)->LoadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 7u);  // 1, 2, 3, 5, 6, 7 and the gates' row 1000
}

TEST_F(JournalTest, EveryCommitIsUnsyncedUnderProcessDurability) {
  auto j = Journal::Open(path_, Durability::kProcess);
  ASSERT_TRUE(j.ok()) << j.status();
  ASSERT_TRUE(AwaitCommit(**j, (*j)->Put(1, MakeTask("a", v1::TASK_STATE_QUEUED))).ok());
  EXPECT_EQ((*j)->synced_commits(), 0u);
  EXPECT_EQ((*j)->unsynced_commits(), 1u);
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

TEST_F(JournalTest, ReopensAtAPathWithUriCharacters) {
  path_ = dir_ + "/a?b#c%41 d.db";
  for (int round = 0; round < 2; ++round) {
    auto j = Journal::Open(path_, Durability::kProcess);
    ASSERT_TRUE(j.ok()) << j.status();
    auto all = (*j)->LoadAll();
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(all->size(), static_cast<size_t>(round));
    ASSERT_TRUE(AwaitCommit(**j, (*j)->Put(1, MakeTask("a", v1::TASK_STATE_QUEUED))).ok());
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/a"));
}

TEST_F(JournalTest, UnwritableLocationIsAClearError) {
  auto j = Journal::Open("/dev/null/journal.db", Durability::kFull);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("/dev/null/journal.db"), std::string::npos);
}

// The journal refuses files that are not its own and leaves them as they were; its own
// files are private. Every test here failed before the journal checked its files.
class JournalSecurityTest : public JournalTest {
 protected:
  // Every file in the journal's directory: name -> owner, mode and all the bytes.
  std::map<std::string, std::string> Snapshot() const {
    std::map<std::string, std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      struct stat st {};
      ::lstat(entry.path().c_str(), &st);
      std::ostringstream bytes;
      bytes << st.st_uid << " " << std::oct << (st.st_mode & 07777) << " ";
      if (S_ISREG(st.st_mode)) bytes << std::ifstream(entry.path(), std::ios::binary).rdbuf();
      files[entry.path().filename().string()] = bytes.str();
    }
    return files;
  }

  // Opens the journal at path_, expects it refused with `code` and every file unchanged,
  // and returns the error message (which must name the file and the way out).
  std::string ExpectRefusedUntouched(absl::StatusCode code) {
    const auto before = Snapshot();
    auto j = Journal::Open(path_, Durability::kFull);
    EXPECT_FALSE(j.ok());
    if (j.ok()) return "";
    EXPECT_EQ(j.status().code(), code) << j.status();
    EXPECT_TRUE(Snapshot() == before) << "the files changed; " << j.status();
    const std::string message(j.status().message());
    for (const std::string& part : {path_, std::string("left untouched"), std::string("move"),
                                    std::string(".recover"), std::string("docs/RELIABILITY.md")}) {
      EXPECT_NE(message.find(part), std::string::npos) << "no '" << part << "' in: " << message;
    }
    return message;
  }

  // Runs `sql` on `path` with a plain SQLite connection.
  static void RunSql(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error != nullptr ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }

  static int64_t PragmaOf(const std::string& path, const std::string& pragma) {
    sqlite3* db = nullptr;
    sqlite3_stmt* stmt = nullptr;
    int64_t value = -1;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK &&
        sqlite3_prepare_v2(db, ("PRAGMA " + pragma).c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      value = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return value;
  }

  // A journal at path_ with `rows` tasks, closed.
  void MakeJournal(int rows) {
    auto j = Journal::Open(path_, Durability::kProcess);
    ASSERT_TRUE(j.ok()) << j.status();
    for (int i = 1; i <= rows; ++i) {
      (*j)->Put(i, MakeTask("task-" + std::to_string(i), v1::TASK_STATE_QUEUED));
    }
    ASSERT_TRUE(AwaitCommit(**j, (*j)->last_ticket()).ok());
  }

  // What an earlier taskrt left: its statements, no application_id, one task.
  void MakeOldJournal() {
    const std::string body = MakeTask("old-1", v1::TASK_STATE_SUCCEEDED).SerializeAsString();
    std::string hex;
    for (unsigned char c : body) {
      static const char kDigits[] = "0123456789abcdef";
      hex += kDigits[c >> 4];
      hex += kDigits[c & 15];
    }
    RunSql(path_,
           "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS tasks ( seq INTEGER PRIMARY KEY,"
           " id TEXT NOT NULL, idempotency_key TEXT, final INTEGER NOT NULL, body BLOB NOT NULL);"
           " PRAGMA user_version=1; INSERT INTO tasks VALUES(7, 'old-1', NULL, 1, x'" +
               hex + "')");
  }

  // Runs `sql` in a child process that dies without closing the database, as a daemon
  // killed with -9 does: the rows stay in journal.db-wal.
  void RunSqlAndCrash(const std::string& sql) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      sqlite3* db = nullptr;
      sqlite3_open(path_.c_str(), &db);
      const int rc = sqlite3_exec(db,
                                  ("PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; "
                                   "PRAGMA wal_autocheckpoint=0; " +
                                   sql)
                                      .c_str(),
                                  nullptr, nullptr, nullptr);
      ::_exit(rc == SQLITE_OK ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT_TRUE(std::filesystem::exists(path_ + "-wal"));
  }

  static mode_t ModeOf(const std::string& path) {
    struct stat st {};
    ::stat(path.c_str(), &st);
    return st.st_mode & 07777;
  }

  // Opens a new journal under `mask` and expects every file private.
  void ExpectPrivateUnderUmask(mode_t mask) {
    ::chmod(dir_.c_str(), 0777 & ~mask);  // as mkdir would have made it under `mask`
    const mode_t old_mask = ::umask(mask);
    auto j = Journal::Open(path_, Durability::kFull);
    ::umask(old_mask);
    ASSERT_TRUE(j.ok()) << j.status();
    ASSERT_TRUE(AwaitCommit(**j, (*j)->Put(1, MakeTask("a", v1::TASK_STATE_QUEUED))).ok());
    EXPECT_EQ(ModeOf(dir_), 0700u);
    EXPECT_TRUE(std::filesystem::exists(path_ + "-wal"));
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      EXPECT_EQ(ModeOf(entry.path()), 0600u) << entry.path();
    }
  }

  static constexpr int64_t kTaskrtApplicationId = 0x74736b72;
};

TEST_F(JournalSecurityTest, NotSqliteIsRefusedUntouched) {
  std::ofstream(path_, std::ios::binary) << std::string(8192, 'Z');
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kDataLoss).find("not an SQLite database"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, GarbageHeaderIsRefusedUntouched) {
  MakeJournal(10);
  std::fstream(path_, std::ios::binary | std::ios::in | std::ios::out) << "garbage garbage!";
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kDataLoss).find("not an SQLite database"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, TruncatedHeaderIsRefusedUntouched) {
  MakeJournal(10);
  std::filesystem::resize_file(path_, 60);
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kDataLoss).find("truncated: 60 bytes"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, TruncatedFileIsRefusedUntouched) {
  MakeJournal(2000);
  std::filesystem::resize_file(path_, std::filesystem::file_size(path_) / 2 / 4096 * 4096);
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kDataLoss).find("malformed"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, FailedIntegrityCheckIsRefusedUntouched) {
  MakeJournal(2000);
  // Overwrite the cell pointers of page 4, a leaf of the tasks table.
  std::fstream file(path_, std::ios::binary | std::ios::in | std::ios::out);
  file.seekp(3 * 4096 + 8);
  file << std::string(8, '\xff');
  file.close();
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kDataLoss).find("integrity check"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, RowThatIsNotATaskIsRefusedUntouched) {
  MakeJournal(3);
  RunSql(path_, "UPDATE tasks SET body = x'ffffffff' WHERE seq = 2");
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kDataLoss)
                .find("row 2 does not hold a task (its 4 bytes do not parse as taskrt.v1.Task)"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, BadRowInTheWalOfACrashIsRefusedUntouched) {
  MakeJournal(3);
  RunSqlAndCrash("UPDATE tasks SET body = x'ffffffff' WHERE seq = 3");
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kDataLoss).find("row 3 does not hold"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, ForeignDatabaseIsRefusedUntouched) {
  RunSql(path_, "CREATE TABLE t(a); INSERT INTO t VALUES(1)");
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kFailedPrecondition)
                .find("an SQLite database but not a taskrt journal"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, OtherApplicationIdIsRefusedUntouched) {
  MakeOldJournal();
  RunSql(path_, "PRAGMA application_id=305419896");  // 0x12345678
  // A read-only look leaves an empty journal.db-wal and a journal.db-shm; they stay too.
  ASSERT_EQ(PragmaOf(path_, "application_id"), 0x12345678);
  ASSERT_TRUE(std::filesystem::exists(path_ + "-wal"));
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kFailedPrecondition)
                .find("another program (application_id 0x12345678"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, UnknownSchemaVersionIsRefusedUntouched) {
  MakeJournal(3);
  RunSql(path_, "PRAGMA user_version=3");
  const std::string message = ExpectRefusedUntouched(absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(message.find("schema version 3, which this taskrt does not know"), std::string::npos);
  EXPECT_NE(message.find("a newer taskrt wrote it"), std::string::npos) << message;
}

TEST_F(JournalSecurityTest, WalWithoutItsDatabaseIsRefusedUntouched) {
  MakeJournal(3);
  RunSqlAndCrash("DELETE FROM tasks WHERE seq = 1");
  std::filesystem::remove(path_);
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kFailedPrecondition)
                .find("missing or empty but " + path_ + "-wal holds"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, SymbolicLinkIsRefusedUntouched) {
  const std::string real = path_;
  path_ = dir_ + "/elsewhere.db";
  MakeJournal(3);
  path_ = real;
  std::filesystem::create_symlink(dir_ + "/elsewhere.db", path_);
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kFailedPrecondition).find("symbolic link"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, FileOfAnotherUserIsRefusedUntouched) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the file to another user";
  MakeJournal(3);
  ASSERT_EQ(::chown(path_.c_str(), 12345, 12345), 0);
  ::chmod(path_.c_str(), 0644);
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kPermissionDenied).find("owned by uid 12345"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, DirectoryOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the directory to another user";
  ASSERT_EQ(::chown(dir_.c_str(), 12345, 12345), 0);
  auto j = Journal::Open(path_, Durability::kFull);
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), absl::StatusCode::kPermissionDenied) << j.status();
  EXPECT_NE(j.status().message().find("state directory " + dir_ + " is owned by uid 12345"),
            std::string::npos)
      << j.status();
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(JournalSecurityTest, NewJournalIsMarked) {
  MakeJournal(1);
  EXPECT_EQ(PragmaOf(path_, "application_id"), kTaskrtApplicationId);
  EXPECT_EQ(PragmaOf(path_, "user_version"), 2);
}

TEST_F(JournalSecurityTest, JournalOfAnEarlierTaskrtIsAdopted) {
  MakeOldJournal();
  ASSERT_EQ(PragmaOf(path_, "application_id"), 0);
  {
    auto j = Journal::Open(path_, Durability::kFull);
    ASSERT_TRUE(j.ok()) << j.status();
    auto all = (*j)->LoadAll();
    ASSERT_TRUE(all.ok()) << all.status();
    ASSERT_EQ(all->size(), 1u);
    EXPECT_EQ((*all)[0].seq, 7u);
    EXPECT_EQ((*all)[0].task.id(), "old-1");
  }
  EXPECT_EQ(PragmaOf(path_, "application_id"), kTaskrtApplicationId);
  EXPECT_EQ(PragmaOf(path_, "user_version"), 2);
}

// A version-1 journal of this taskrt (marked, without the learned table) is upgraded in
// place: its tasks stay, the learned table is created, and learned rows then persist.
TEST_F(JournalSecurityTest, Version1JournalIsUpgraded) {
  MakeJournal(2);
  RunSql(path_, "DROP TABLE learned; PRAGMA user_version=1");
  ASSERT_EQ(PragmaOf(path_, "user_version"), 1);
  LearnedStats stats;
  stats.samples = 3;
  stats.runs = 4;
  {
    auto j = Journal::Open(path_, Durability::kFull);
    ASSERT_TRUE(j.ok()) << j.status();
    auto all = (*j)->LoadAll();
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(all->size(), 2u);
    auto learned = (*j)->LoadLearned();
    ASSERT_TRUE(learned.ok()) << learned.status();
    EXPECT_TRUE(learned->empty());
    ASSERT_TRUE(AwaitCommit(**j, (*j)->PutLearned("sys.exec", "", stats)).ok());
  }
  EXPECT_EQ(PragmaOf(path_, "user_version"), 2);
  auto j = Journal::Open(path_, Durability::kFull);
  ASSERT_TRUE(j.ok()) << j.status();
  auto learned = (*j)->LoadLearned();
  ASSERT_TRUE(learned.ok()) << learned.status();
  ASSERT_EQ(learned->size(), 1u);
  EXPECT_EQ(learned->begin()->second.runs, 4u);
}

// Marked version 2 but without the learned table: not a journal this taskrt wrote.
TEST_F(JournalSecurityTest, Version2WithoutLearnedTableIsRefusedUntouched) {
  MakeJournal(1);
  RunSql(path_, "DROP TABLE learned");
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kDataLoss)
                .find("schema version 2 but its tables are not that version's"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, DamagedLearnedRowIsRefusedUntouched) {
  MakeJournal(1);
  RunSql(path_,
         "INSERT INTO learned VALUES('py.call', 'mod.f', 0.5, 2, 1, 10.0, 2);"
         "INSERT INTO learned VALUES('py.call', 'mod.g', 0.5, 'lots', 1, 10.0, 2)");
  EXPECT_NE(ExpectRefusedUntouched(absl::StatusCode::kDataLoss)
                .find("learned row (handler 'py.call', function 'mod.g') does not hold valid "
                      "statistics (samples is 'lots', not a non-negative integer)"),
            std::string::npos);
}

TEST_F(JournalSecurityTest, LearnedRowWithMoreGilSamplesThanSamplesIsRefused) {
  MakeJournal(1);
  RunSql(path_, "INSERT INTO learned VALUES('py.call', 'mod.f', 0.5, 2, 3, 10.0, 2)");
  EXPECT_NE(
      ExpectRefusedUntouched(absl::StatusCode::kDataLoss).find("(gil_samples 3 exceeds samples 2)"),
      std::string::npos);
}

TEST_F(JournalSecurityTest, RowsOnlyInTheWalOfACrashAreRecovered) {
  MakeJournal(1);
  RunSqlAndCrash("UPDATE tasks SET id = 'in-wal' WHERE seq = 1");
  auto j = Journal::Open(path_, Durability::kFull);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_FALSE(std::filesystem::exists(path_ + "-shm"));
  auto all = (*j)->LoadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1u);
}

TEST_F(JournalSecurityTest, FilesArePrivateUnderUmask0) { ExpectPrivateUnderUmask(0); }

TEST_F(JournalSecurityTest, FilesArePrivateUnderUmask022) { ExpectPrivateUnderUmask(022); }

TEST_F(JournalSecurityTest, ExistingFilesAreMadePrivate) {
  MakeJournal(3);
  ::chmod(path_.c_str(), 0644);
  ::chmod(dir_.c_str(), 0755);
  auto j = Journal::Open(path_, Durability::kFull);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(ModeOf(dir_), 0700u);
  EXPECT_EQ(ModeOf(path_), 0600u);
  EXPECT_EQ(ModeOf(path_ + "-wal"), 0600u);
}

TEST(DurabilityTest, Parses) {
  EXPECT_EQ(*ParseDurability("none"), Durability::kNone);
  EXPECT_EQ(*ParseDurability("full"), Durability::kFull);
  EXPECT_FALSE(ParseDurability("fast").ok());
}

}  // namespace
}  // namespace taskrt::daemon
