#include "daemon/journal.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"

namespace taskrt::daemon {
namespace {

constexpr int kSchemaVersion = 1;

bool IsFinal(v1::TaskState s) {
  return s == v1::TASK_STATE_SUCCEEDED || s == v1::TASK_STATE_FAILED ||
         s == v1::TASK_STATE_CANCELLED || s == v1::TASK_STATE_TIMED_OUT;
}

absl::Status SqliteError(sqlite3* db, const std::string& what) {
  const int code = sqlite3_errcode(db);
  std::string message = absl::StrCat(what, ": ", sqlite3_errmsg(db));
  if (code == SQLITE_FULL) {
    return absl::ResourceExhaustedError(absl::StrCat(message, " (the disk is full)"));
  }
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return absl::DataLossError(message);
  if (code == SQLITE_IOERR) {
    return absl::UnavailableError(
        absl::StrCat(message, " (is the disk full, or a file-size limit reached?)"));
  }
  if (code == SQLITE_READONLY || code == SQLITE_CANTOPEN || code == SQLITE_PERM) {
    return absl::PermissionDeniedError(message);
  }
  return absl::InternalError(message);
}

std::string RecoveryAdvice(const std::string& path) {
  return absl::StrCat("; the journal was left untouched. To start anyway, move ", path,
                      "* aside (its tasks are then not recovered) or restore it from a backup; "
                      "docs/RELIABILITY.md explains how to salvage rows from it");
}

}  // namespace

absl::StatusOr<Durability> ParseDurability(const std::string& text) {
  if (text == "none") return Durability::kNone;
  if (text == "process") return Durability::kProcess;
  if (text == "full") return Durability::kFull;
  return absl::InvalidArgumentError(
      absl::StrCat("durability '", text, "' is not one of none, process, full"));
}

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& path,
                                                       Durability durability) {
  // SQLite counts its memory under a global mutex on every allocation unless told not
  // to; that was 4 % of the writer thread. Only possible before SQLite initializes, so
  // once per process and before the first open (a later call would be refused: harmless).
  static const bool memstatus_off = [] {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  }();
  (void)memstatus_off;
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = SqliteError(db, absl::StrCat("cannot open journal ", path));
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<Journal> j(new Journal(db, durability));
  // The first statements fail on a file that is not a database or is damaged.
  absl::Status s = j->Exec("PRAGMA journal_mode=WAL");
  if (s.ok()) {
    s = j->Exec(durability == Durability::kFull ? "PRAGMA synchronous=FULL"
                                                : "PRAGMA synchronous=NORMAL");
  }
  // One process owns the journal (journal.lock): exclusive locking spares the per-commit
  // shared-memory locking.
  if (s.ok()) s = j->Exec("PRAGMA locking_mode=EXCLUSIVE");
  // A checkpoint every 1000 pages (4 MiB of WAL) keeps the WAL small enough to be
  // rewritten from its start: fdatasync after overwriting blocks the file already has is
  // cheaper than after growing it (no size change to journal in the filesystem). With
  // 10000 pages a Run's p50 was ~25 % higher for the first 40 MiB; throughput is the same.
  if (s.ok()) s = j->Exec("PRAGMA wal_autocheckpoint=1000");
  // 16 MiB of page cache (default 2 MiB): the pages of recently accepted tasks, which
  // their results rewrite, stay in memory instead of being read back from the WAL.
  if (s.ok()) s = j->Exec("PRAGMA cache_size=-16384");
  if (s.ok()) {
    sqlite3_stmt* check = nullptr;
    std::string result = "ok";
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &check, nullptr) == SQLITE_OK) {
      while (sqlite3_step(check) == SQLITE_ROW) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(check, 0));
        if (text != nullptr && std::string(text) != "ok") {
          result = text;
          break;
        }
      }
    } else {
      result = sqlite3_errmsg(db);
    }
    sqlite3_finalize(check);
    if (result != "ok") {
      s = absl::DataLossError(absl::StrCat("integrity check failed: ", result));
    }
  }
  if (s.ok()) {
    sqlite3_stmt* version = nullptr;
    int have = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &version, nullptr) == SQLITE_OK &&
        sqlite3_step(version) == SQLITE_ROW) {
      have = sqlite3_column_int(version, 0);
    }
    sqlite3_finalize(version);
    if (have > kSchemaVersion) {
      s = absl::FailedPreconditionError(absl::StrCat("it was written by a newer taskrt (schema ",
                                                     have, ", this one reads ", kSchemaVersion,
                                                     ")"));
    }
  }
  if (s.ok()) {
    s = j->Exec(
        "CREATE TABLE IF NOT EXISTS tasks ("
        " seq INTEGER PRIMARY KEY,"
        " id TEXT NOT NULL,"
        " idempotency_key TEXT,"
        " final INTEGER NOT NULL,"
        " body BLOB NOT NULL)");
  }
  if (s.ok()) s = j->Exec(absl::StrCat("PRAGMA user_version=", kSchemaVersion).c_str());
  if (s.ok() &&
      (sqlite3_prepare_v2(db,
                          "INSERT OR REPLACE INTO tasks(seq, id, idempotency_key, final, body)"
                          " VALUES(?, ?, ?, ?, ?)",
                          -1, &j->put_, nullptr) != SQLITE_OK ||
       sqlite3_prepare_v2(db, "DELETE FROM tasks WHERE seq BETWEEN ? AND ?", -1, &j->erase_,
                          nullptr) != SQLITE_OK)) {
    s = SqliteError(db, "cannot prepare journal statements");
  }
  if (!s.ok()) {
    std::string message = absl::StrCat("journal ", path, ": ", s.message());
    if (absl::IsDataLoss(s)) message += RecoveryAdvice(path);
    return absl::Status(s.code(), message);
  }
  j->writer_ = std::thread([raw = j.get()] { raw->WriterLoop(); });
  return j;
}

Journal::Journal(sqlite3* db, Durability durability) : db_(db), durability_(durability) {}

Journal::~Journal() {
  Close();
  sqlite3_finalize(put_);
  sqlite3_finalize(erase_);
  sqlite3_close(db_);
}

absl::Status Journal::Exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    // Name the statement by its first words; the full SQL is noise for an operator.
    const std::string_view text(sql);
    absl::Status s = SqliteError(db_, std::string(text.substr(0, text.find(" (", 0))));
    sqlite3_free(error);
    return s;
  }
  return absl::OkStatus();
}

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
      return absl::DataLossError(
          absl::StrCat("journal row ", t.seq, " does not hold a task (", size, " bytes)"));
    }
    out.push_back(std::move(t));
  }
  absl::Status s = rc == SQLITE_DONE ? absl::OkStatus() : SqliteError(db_, "reading the journal");
  sqlite3_finalize(stmt);
  if (!s.ok()) return s;
  return out;
}

Journal::Write Journal::MakeWrite(const Change& change) {
  if (change.task == nullptr) return Write{change.seq, true, "", "", false, ""};
  const v1::Task& task = *change.task;
  return Write{change.seq,
               false,
               task.id(),
               task.spec().idempotency_key(),
               IsFinal(task.state()),
               task.SerializeAsString()};
}

uint64_t Journal::Put(uint64_t seq, const v1::Task& task) { return Apply({{seq, &task}}); }

uint64_t Journal::Erase(uint64_t seq) { return Apply({{seq, nullptr}}); }

uint64_t Journal::Apply(const std::vector<Change>& changes) {
  std::vector<Write> writes;
  writes.reserve(changes.size());
  for (const Change& c : changes) writes.push_back(MakeWrite(c));
  internal::MutexLock lock(&mu_);
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

uint64_t Journal::coalesced() {
  internal::MutexLock lock(&mu_);
  return coalesced_;
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
    std::vector<Waiter> ready;
    uint64_t upto = 0;
    {
      internal::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        if (stopping_ || !pending_.empty()) return true;
        for (const auto& w : waiters_)
          if (w.ticket <= committed_ticket_) return true;
        return false;
      };
      mu_.Await(absl::Condition(&has_work));
      if (pending_.empty() && stopping_ && waiters_.empty()) return;
      batch.swap(pending_);
      pending_index_.clear();
      upto = queued_ticket_;
    }
    absl::Status status;
    if (!batch.empty()) {
      status = Exec("BEGIN IMMEDIATE");
      std::vector<uint64_t> erased;
      for (size_t i = 0; status.ok() && i < batch.size(); ++i) {
        const Write& w = batch[i];
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
        if (sqlite3_step(put_) != SQLITE_DONE) status = SqliteError(db_, "journal write");
      }
      // Retention erases old tasks about in the order they were accepted: delete runs
      // of consecutive rows with one statement each.
      std::sort(erased.begin(), erased.end());
      for (size_t i = 0; status.ok() && i < erased.size();) {
        size_t j = i + 1;
        while (j < erased.size() && erased[j] == erased[j - 1] + 1) ++j;
        sqlite3_reset(erase_);
        sqlite3_bind_int64(erase_, 1, static_cast<sqlite3_int64>(erased[i]));
        sqlite3_bind_int64(erase_, 2, static_cast<sqlite3_int64>(erased[j - 1]));
        if (sqlite3_step(erase_) != SQLITE_DONE) status = SqliteError(db_, "journal erase");
        i = j;
      }
      if (status.ok()) {
        status = Exec("COMMIT");
      } else {
        Exec("ROLLBACK").IgnoreError();
      }
      if (!status.ok()) {
        std::fprintf(stderr, "taskrtd: journal write failed: %s\n",
                     std::string(status.message()).c_str());
      }
    }
    {
      internal::MutexLock lock(&mu_);
      if (!batch.empty()) {
        committed_ticket_ = upto;
        ++commits_;
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

}  // namespace taskrt::daemon
