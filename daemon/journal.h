// Journal: the durable record of accepted tasks and their state changes, so that an
// accepted task survives a daemon crash or restart.
//
// An embedded SQLite database in WAL mode, one row per task (the serialized v1::Task,
// keyed by its sequence number). Writes are queued by Put/Erase and committed by one
// writer thread in batches: every write queued while a commit is in progress goes into
// the next transaction (group commit), so many submits share one fsync. Callers that
// must not act before their write is durable (answering a Submit, starting a task)
// register an AfterCommit callback for their ticket.
//
// Beside the tasks, a second table holds the classifier's learned statistics per
// (handler, function), so that a restart keeps what earlier runs taught (PutLearned,
// LoadLearned). Schema version 2 added it; Open upgrades a version-1 journal in place.
//
// Durability per write: under Durability::kFull a commit is fsync'd (synchronous=FULL)
// when any write in its group was queued with `sync` true, and only written to the WAL
// (synchronous=NORMAL, no fsync) when none was. An unsynced commit survives a daemon
// crash or kill -9 (the WAL is in the OS's page cache) but may be lost on a power
// failure; the next synced commit's fsync of the WAL covers it too. Its AfterCommit
// callbacks fire after the unsynced commit. The daemon uses `sync` false for the
// acceptance of a task that a synchronous Run executes at once: that Run returns only
// after the task's final state is fsync'd.
//
// The files are private: the directory holding the journal is 0700 and journal.db (and
// the -wal and -shm files SQLite derives from it, with its mode) 0600, whatever the
// umask. The database is marked as a taskrt journal (PRAGMA application_id kApplicationId,
// user_version the schema version) so that Open can tell it from any other file.
//
// Thread-safety: all methods may be called from any thread. Callbacks run on the
// writer thread, in ticket order, without any Journal lock held.
#ifndef TASKRT_DAEMON_JOURNAL_H_
#define TASKRT_DAEMON_JOURNAL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "daemon/classifier.h"
#include "taskrt/v1/task.pb.h"

struct sqlite3;
struct sqlite3_stmt;

namespace taskrt::daemon {

enum class Durability {
  kNone,     // no journal: fastest; a daemon crash loses queued and running tasks
  kProcess,  // committed to the OS (WAL, synchronous=NORMAL): survives a daemon crash
             // or kill -9, not a power failure
  kFull,     // fsync'd at every commit (synchronous=FULL): survives a power failure
};

// Parses "none", "process", "full".
absl::StatusOr<Durability> ParseDurability(const std::string& text);

// Makes the existing directory `dir` private before journal files are created in it:
// one owned by another user is refused (PERMISSION_DENIED); one of ours with group or
// other permission bits loses them (0755 becomes 0700), and a line on stderr says so.
absl::Status SecureStateDir(const std::string& dir);

// Learned statistics by (handler, function), as the task manager keeps them.
using LearnedKey = std::pair<std::string, std::string>;
using LearnedMap = std::map<LearnedKey, LearnedStats>;

struct StoredTask {
  uint64_t seq = 0;
  v1::Task task;
};

class Journal {
 public:
  // PRAGMA application_id of a taskrt journal: "tskr".
  static constexpr uint32_t kApplicationId = 0x74736b72;
  // PRAGMA user_version: the schema this taskrt reads and writes.
  // Version 1: the tasks table. Version 2 (this one): also the learned table.
  static constexpr int kSchemaVersion = 2;

  // Opens (creating if needed) the journal at `path`, after SecureStateDir on its
  // directory. An existing file is checked through a read-only connection that changes
  // no byte and creates no file (so the caller must hold the journal's lock file): it
  // must be a regular file of this user, an SQLite database with kApplicationId, a
  // schema version of 1 or 2 and exactly that version's tables, pass SQLite's
  // quick_check, hold a task in every row of tasks and valid statistics in every row of
  // learned. Anything else is refused with an error that names the file, says what
  // is wrong and how to salvage it (docs/RELIABILITY.md), and leaves the files as they
  // were: DATA_LOSS for a damaged journal or a file that is not SQLite,
  // FAILED_PRECONDITION for another program's database or an unknown schema version,
  // PERMISSION_DENIED for a file of another user. A journal of an earlier taskrt
  // (application_id 0, schema version 1 and exactly the journal's table) is adopted:
  // its application_id is set. A version-1 journal is upgraded to version 2 (the learned
  // table is created, in one transaction with the new user_version). Only then are group and other
  // permission bits cleared from the existing files and the database opened for writing. Cost: the
  // check reads and parses every row, as LoadAll does again afterwards.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& path,
                                                       Durability durability);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Every stored task in sequence order (for recovery at start-up).
  absl::StatusOr<std::vector<StoredTask>> LoadAll();
  // Every stored learned-statistics row (for recovery at start-up).
  absl::StatusOr<LearnedMap> LoadLearned();

  // One row change: store `task` (insert or replace), or erase the row when null.
  struct Change {
    uint64_t seq;
    const v1::Task* task;
  };
  // Queues `changes` in order, serializing the tasks before returning; returns the
  // ticket of the last one. A row changed again before the writer took its previous
  // change is written once, with its latest content.
  // `sync` false: these changes alone do not need an fsync (see the file comment).
  uint64_t Apply(const std::vector<Change>& changes, bool sync = true);
  // Queues an insert-or-replace of `task`; returns its ticket.
  uint64_t Put(uint64_t seq, const v1::Task& task, bool sync = true);
  // Queues an insert-or-replace of the learned statistics of (handler, function), into
  // the same group commit as the task writes queued around it; returns its ticket. A key
  // written again before the writer took its previous write is written once, with its
  // latest content. Learned statistics are advice: they never make a commit fsync'd.
  uint64_t PutLearned(const std::string& handler, const std::string& function,
                      const LearnedStats& stats);
  // Queues the removal of a task (retention); returns its ticket.
  uint64_t Erase(uint64_t seq);
  // The ticket of the latest queued write (0 before any).
  uint64_t last_ticket();

  // Runs `fn` once every write up to `ticket` is committed, with the commit's status
  // (an error when the write failed, e.g. a full disk).
  void AfterCommit(uint64_t ticket, std::function<void(absl::Status)> fn);

  // Commits what is queued and stops the writer. Idempotent.
  void Close();

  // Called on the writer thread after each transaction, with how long it took and
  // whether it was fsync'd (the daemon's /metrics). Replaces the previous one; null =
  // none. Must not call into the Journal.
  void OnCommit(std::function<void(absl::Duration took, bool synced)> fn);

  // Figures for stats and the benchmark: transactions committed, and row changes
  // folded into a later change of the same row before they reached the database.
  uint64_t commits();
  uint64_t coalesced();
  // Of commits(): those made with synchronous=FULL (fsync'd) and those made with
  // synchronous=NORMAL (written to the WAL only). Every commit is unsynced under kProcess.
  uint64_t synced_commits();
  uint64_t unsynced_commits();

 private:
  Journal(sqlite3* db, Durability durability, std::string path);
  // Sets the connection up; creates the schema when `fresh`, marks an adopted journal,
  // upgrades one of schema version `version` (when not fresh) to kSchemaVersion.
  absl::Status Setup(bool fresh, bool adopt, int64_t version);
  absl::Status Upgrade(int64_t version);
  void WriterLoop();
  absl::Status Exec(const char* sql);

  struct Write {
    uint64_t seq;
    bool erase;
    std::string id;
    std::string key;
    bool final;
    std::string body;
  };
  struct Waiter {
    uint64_t ticket;
    std::function<void(absl::Status)> fn;
  };

  static Write MakeWrite(const Change& change);
  // Writes `batch` and `learned` in one transaction, fsync'd when `sync`.
  absl::Status Commit(const std::vector<Write>& batch, const LearnedMap& learned, bool sync);
  absl::Status WriteTasks(const std::vector<Write>& batch);
  absl::Status WriteLearned(const LearnedMap& learned);

  // Used by the writer thread only (and by Open/LoadAll before any write is queued),
  // so the connection is opened without SQLite's own mutex.
  sqlite3* const db_;
  const Durability durability_;
  const std::string path_;
  sqlite3_stmt* put_ = nullptr;
  sqlite3_stmt* erase_ = nullptr;
  sqlite3_stmt* put_learned_ = nullptr;
  bool synchronous_full_ = false;  // the connection's current PRAGMA synchronous
  std::thread writer_;

  internal::Mutex mu_;
  std::vector<Write> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, size_t> pending_index_ ABSL_GUARDED_BY(mu_);  // seq -> pending_
  uint64_t coalesced_ ABSL_GUARDED_BY(mu_) = 0;
  LearnedMap pending_learned_ ABSL_GUARDED_BY(mu_);
  bool pending_sync_ ABSL_GUARDED_BY(mu_) = false;  // some pending write needs an fsync
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t committed_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  uint64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t synced_commits_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(absl::Duration, bool)> on_commit_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_JOURNAL_H_
