#include "daemon/journal.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/task_state.h"
#include "daemon/journal_files.h"

namespace taskrt::daemon {
using journal_files::DescribeLearnedRow;
using journal_files::ExecSql;
using journal_files::Found;
using journal_files::kCreateLearned;
using journal_files::kCreateTasks;
using journal_files::kSalvage;
using journal_files::kSelectLearned;
using journal_files::Prepare;
using journal_files::PrepareFiles;
using journal_files::ReadLearnedRow;
using journal_files::SqliteError;
using journal_files::Statement;

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& path,
                                                       Durability durability) {
  // SQLite counts its memory under a global mutex on every allocation unless told not
  // to; that was 4 % of the writer thread. Only possible before SQLite initializes, so
  // once per process and before the first open (a later call would be refused: harmless).
  static const bool memstatus_off = [] {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  }();
  (void)memstatus_off;
  ASSIGN_OR_RETURN(const Found found, PrepareFiles(path));
  // The checks passed: only now is the journal opened for writing. It exists (no CREATE).
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = SqliteError(db, absl::StrCat("cannot open journal ", path));
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<Journal> j(new Journal(db, durability, path));
  absl::Status s = j->Setup(found.fresh, found.existing.adopt, found.existing.version);
  if (!s.ok()) {
    std::string message = absl::StrCat("journal ", path, ": ", s.message());
    if (absl::IsDataLoss(s)) absl::StrAppend(&message, " (", kSalvage, ")");
    return absl::Status(s.code(), message);
  }
  j->writer_ = std::thread([raw = j.get()] { raw->WriterLoop(); });
  return j;
}

absl::Status Journal::Setup(bool fresh, bool adopt, int64_t version) {
  // One process owns the journal (journal.lock): exclusive locking spares the per-commit
  // shared-memory locking. Set before the first access, it also keeps the WAL index in
  // memory, so there is no journal.db-shm.
  RETURN_IF_ERROR(Exec("PRAGMA locking_mode=EXCLUSIVE"));
  // A new journal gets its table and its marks in one transaction, so that an
  // interrupted creation leaves an empty file rather than an unmarked database.
  if (fresh) {
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status s = Exec(kCreateTasks);
    if (s.ok()) s = Exec(kCreateLearned);
    if (s.ok()) s = Exec(absl::StrCat("PRAGMA user_version=", kSchemaVersion).c_str());
    if (s.ok()) s = Exec(absl::StrCat("PRAGMA application_id=", kApplicationId).c_str());
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return s;
    }
  } else if (adopt) {
    RETURN_IF_ERROR(Exec(absl::StrCat("PRAGMA application_id=", kApplicationId).c_str()));
  }
  if (!fresh) RETURN_IF_ERROR(Upgrade(version));
  RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
  // FULL until the writer commits a group with no write that needs an fsync (kFull).
  synchronous_full_ = durability_ == Durability::kFull;
  RETURN_IF_ERROR(
      Exec(synchronous_full_ ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  // A checkpoint every 1000 pages (4 MiB of WAL) keeps the WAL small enough to be
  // rewritten from its start: fdatasync after overwriting blocks the file already has is
  // cheaper than after growing it (no size change to journal in the filesystem). With
  // 10000 pages a Run's p50 was ~25 % higher for the first 40 MiB; throughput is the same.
  RETURN_IF_ERROR(Exec("PRAGMA wal_autocheckpoint=1000"));
  // 16 MiB of page cache (default 2 MiB): the pages of recently accepted tasks, which
  // their results rewrite, stay in memory instead of being read back from the WAL.
  RETURN_IF_ERROR(Exec("PRAGMA cache_size=-16384"));
  if (sqlite3_prepare_v2(db_,
                         "INSERT OR REPLACE INTO tasks(seq, id, idempotency_key, final, body)"
                         " VALUES(?, ?, ?, ?, ?)",
                         -1, &put_, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db_, "DELETE FROM tasks WHERE seq BETWEEN ? AND ?", -1, &erase_,
                         nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db_,
                         "INSERT OR REPLACE INTO learned(handler, function, cpu_ratio, samples,"
                         " gil_samples, wall_us, runs) VALUES(?, ?, ?, ?, ?, ?, ?)",
                         -1, &put_learned_, nullptr) != SQLITE_OK) {
    return SqliteError(db_, "cannot prepare journal statements");
  }
  return absl::OkStatus();
}

// Version 1 -> 2: the learned table, in one transaction with the new version, so an
// interrupted upgrade leaves a version-1 journal.
absl::Status Journal::Upgrade(int64_t version) {
  if (version == kSchemaVersion) return absl::OkStatus();
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Status s = Exec(kCreateLearned);
  if (s.ok()) s = Exec(absl::StrCat("PRAGMA user_version=", kSchemaVersion).c_str());
  if (s.ok()) s = Exec("COMMIT");
  if (!s.ok()) {
    Exec("ROLLBACK").IgnoreError();
    return absl::Status(s.code(), absl::StrCat("upgrading the journal from schema version ",
                                               version, ": ", s.message()));
  }
  return absl::OkStatus();
}

Journal::Journal(sqlite3* db, Durability durability, std::string path)
    : db_(db), durability_(durability), path_(std::move(path)) {}

Journal::~Journal() {
  Close();
  sqlite3_finalize(put_);
  sqlite3_finalize(erase_);
  sqlite3_finalize(put_learned_);
  sqlite3_close(db_);
}

absl::Status Journal::Exec(const char* sql) { return ExecSql(db_, sql); }

absl::StatusOr<std::vector<StoredTask>> Journal::LoadAll() {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT seq, body FROM tasks ORDER BY seq", -1, &stmt, nullptr) !=
      SQLITE_OK) {
    return SqliteError(db_, "cannot read the journal");
  }
  std::vector<StoredTask> out;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    StoredTask t;
    t.seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 0));
    const void* blob = sqlite3_column_blob(stmt, 1);
    const int size = sqlite3_column_bytes(stmt, 1);
    if (!t.task.ParseFromArray(blob, size)) {
      sqlite3_finalize(stmt);
      return absl::DataLossError(absl::StrCat("journal ", path_, ": row ", t.seq,
                                              " does not hold a task (", size, " bytes; ", kSalvage,
                                              ")"));
    }
    out.push_back(std::move(t));
  }
  absl::Status s = rc == SQLITE_DONE ? absl::OkStatus() : SqliteError(db_, "reading the journal");
  sqlite3_finalize(stmt);
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<LearnedMap> Journal::LoadLearned() {
  ASSIGN_OR_RETURN(Statement stmt, Prepare(db_, kSelectLearned));
  LearnedMap out;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    LearnedKey key;
    LearnedStats stats;
    const std::string problem = ReadLearnedRow(stmt.get(), key, stats);
    if (!problem.empty()) {
      return absl::DataLossError(absl::StrCat("journal ", path_, ": ", DescribeLearnedRow(key),
                                              " does not hold valid statistics (", problem, "; ",
                                              kSalvage, ")"));
    }
    out[std::move(key)] = stats;
  }
  if (rc != SQLITE_DONE) return SqliteError(db_, "reading the learned rows");
  return out;
}

Journal::Write Journal::MakeWrite(const Change& change) {
  if (change.task == nullptr) return Write{change.seq, true, "", "", false, ""};
  const v1::Task& task = *change.task;
  return Write{change.seq,
               false,
               task.id(),
               task.spec().idempotency_key(),
               internal::IsFinal(task.state()),
               task.SerializeAsString()};
}

uint64_t Journal::Put(uint64_t seq, const v1::Task& task, bool sync) {
  return Apply({{seq, &task}}, sync);
}

uint64_t Journal::PutLearned(const std::string& handler, const std::string& function,
                             const LearnedStats& stats) {
  internal::MutexLock lock(&mu_);
  if (!pending_learned_.insert_or_assign(LearnedKey(handler, function), stats).second) {
    ++coalesced_;
  }
  return ++queued_ticket_;
}

uint64_t Journal::Erase(uint64_t seq) { return Apply({{seq, nullptr}}); }

uint64_t Journal::Apply(const std::vector<Change>& changes, bool sync) {
  std::vector<Write> writes;
  writes.reserve(changes.size());
  for (const Change& c : changes) writes.push_back(MakeWrite(c));
  internal::MutexLock lock(&mu_);
  if (sync && !writes.empty()) pending_sync_ = true;
  for (Write& w : writes) {
    // A row written again before the writer took the first write is written once,
    // with its latest content.
    auto [it, fresh] = pending_index_.try_emplace(w.seq, pending_.size());
    if (fresh) {
      pending_.push_back(std::move(w));
    } else {
      pending_[it->second] = std::move(w);
      ++coalesced_;
    }
  }
  queued_ticket_ += writes.size();
  return queued_ticket_;
}

uint64_t Journal::last_ticket() {
  internal::MutexLock lock(&mu_);
  return queued_ticket_;
}

uint64_t Journal::commits() {
  internal::MutexLock lock(&mu_);
  return commits_;
}

uint64_t Journal::synced_commits() {
  internal::MutexLock lock(&mu_);
  return synced_commits_;
}

uint64_t Journal::unsynced_commits() {
  internal::MutexLock lock(&mu_);
  return commits_ - synced_commits_;
}

uint64_t Journal::coalesced() {
  internal::MutexLock lock(&mu_);
  return coalesced_;
}

void Journal::OnCommit(std::function<void(absl::Duration, bool)> fn) {
  internal::MutexLock lock(&mu_);
  on_commit_ = std::move(fn);
}

void Journal::AfterCommit(uint64_t ticket, std::function<void(absl::Status)> fn) {
  // Never run inline: the caller may hold a lock that `fn` takes.
  internal::MutexLock lock(&mu_);
  waiters_.push_back(Waiter{ticket, std::move(fn)});
}

void Journal::Close() {
  {
    internal::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

void Journal::WriterLoop() {
  while (true) {
    std::vector<Write> batch;
    LearnedMap learned;
    bool sync = false;
    std::vector<Waiter> ready;
    uint64_t upto = 0;
    std::function<void(absl::Duration, bool)> on_commit;
    {
      internal::MutexLock lock(&mu_);
      // Learned statistics alone do not wake the writer (they ride with the task row
      // of the run that taught them, queued in the same operation), unless someone
      // waits for them: a commit of its own would delay that run's result.
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        if (stopping_ || !pending_.empty()) return true;
        for (const auto& w : waiters_) {
          if (w.ticket <= committed_ticket_ || !pending_learned_.empty()) return true;
        }
        return false;
      };
      mu_.Await(absl::Condition(&has_work));
      const bool idle = pending_.empty() && pending_learned_.empty();
      if (idle && stopping_ && waiters_.empty()) return;
      batch.swap(pending_);
      pending_index_.clear();
      learned.swap(pending_learned_);
      sync = pending_sync_;
      pending_sync_ = false;
      upto = queued_ticket_;
      on_commit = on_commit_;
    }
    const bool wrote = !batch.empty() || !learned.empty();
    absl::Status status;
    if (wrote) {
      const absl::Time began = absl::Now();
      status = Commit(batch, learned, sync);
      if (on_commit) on_commit(absl::Now() - began, synchronous_full_);
      if (!status.ok()) {
        std::fprintf(stderr, "taskrtd: journal write failed: %s\n",
                     std::string(status.message()).c_str());
      }
    }
    {
      internal::MutexLock lock(&mu_);
      if (wrote) {
        committed_ticket_ = upto;
        ++commits_;
        if (synchronous_full_) ++synced_commits_;
      }
      std::vector<Waiter> later;
      for (auto& w : waiters_) {
        (w.ticket <= committed_ticket_ ? ready : later).push_back(std::move(w));
      }
      waiters_.swap(later);
    }
    for (auto& w : ready) w.fn(status);
  }
}

absl::Status Journal::Commit(const std::vector<Write>& batch, const LearnedMap& learned,
                             bool sync) {
  // PRAGMA synchronous applies from the next transaction on; outside one it can change
  // at every commit. In WAL mode FULL syncs the WAL at this commit (covering the frames
  // of earlier NORMAL commits too); NORMAL syncs it only at checkpoints.
  const bool full = durability_ == Durability::kFull && sync;
  if (full != synchronous_full_) {
    RETURN_IF_ERROR(Exec(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
    synchronous_full_ = full;
  }
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Status status = WriteTasks(batch);
  if (status.ok()) status = WriteLearned(learned);
  if (status.ok()) return Exec("COMMIT");
  Exec("ROLLBACK").IgnoreError();
  return status;
}

absl::Status Journal::WriteTasks(const std::vector<Write>& batch) {
  std::vector<uint64_t> erased;
  for (const Write& w : batch) {
    if (w.erase) {  // rows differ from every put of this batch: order is free
      erased.push_back(w.seq);
      continue;
    }
    sqlite3_reset(put_);
    sqlite3_bind_int64(put_, 1, static_cast<sqlite3_int64>(w.seq));
    sqlite3_bind_text(put_, 2, w.id.data(), static_cast<int>(w.id.size()), SQLITE_STATIC);
    if (w.key.empty()) {
      sqlite3_bind_null(put_, 3);
    } else {
      sqlite3_bind_text(put_, 3, w.key.data(), static_cast<int>(w.key.size()), SQLITE_STATIC);
    }
    sqlite3_bind_int(put_, 4, w.final ? 1 : 0);
    sqlite3_bind_blob(put_, 5, w.body.data(), static_cast<int>(w.body.size()), SQLITE_STATIC);
    if (sqlite3_step(put_) != SQLITE_DONE) return SqliteError(db_, "journal write");
  }
  // Retention erases old tasks about in the order they were accepted: delete runs
  // of consecutive rows with one statement each.
  std::sort(erased.begin(), erased.end());
  for (size_t i = 0; i < erased.size();) {
    size_t j = i + 1;
    while (j < erased.size() && erased[j] == erased[j - 1] + 1) ++j;
    sqlite3_reset(erase_);
    sqlite3_bind_int64(erase_, 1, static_cast<sqlite3_int64>(erased[i]));
    sqlite3_bind_int64(erase_, 2, static_cast<sqlite3_int64>(erased[j - 1]));
    if (sqlite3_step(erase_) != SQLITE_DONE) return SqliteError(db_, "journal erase");
    i = j;
  }
  return absl::OkStatus();
}

absl::Status Journal::WriteLearned(const LearnedMap& learned) {
  for (const auto& [key, stats] : learned) {
    sqlite3_reset(put_learned_);
    sqlite3_bind_text(put_learned_, 1, key.first.data(), static_cast<int>(key.first.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(put_learned_, 2, key.second.data(), static_cast<int>(key.second.size()),
                      SQLITE_STATIC);
    sqlite3_bind_double(put_learned_, 3, stats.cpu_ratio);
    sqlite3_bind_int64(put_learned_, 4, static_cast<sqlite3_int64>(stats.samples));
    sqlite3_bind_int64(put_learned_, 5, static_cast<sqlite3_int64>(stats.gil_samples));
    sqlite3_bind_double(put_learned_, 6, stats.wall_us);
    sqlite3_bind_int64(put_learned_, 7, static_cast<sqlite3_int64>(stats.runs));
    if (sqlite3_step(put_learned_) != SQLITE_DONE) return SqliteError(db_, "journal learned write");
  }
  return absl::OkStatus();
}

}  // namespace taskrt::daemon
