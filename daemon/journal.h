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
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
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

struct StoredTask {
  uint64_t seq = 0;
  v1::Task task;
};

class Journal {
 public:
  // PRAGMA application_id of a taskrt journal: "tskr".
  static constexpr uint32_t kApplicationId = 0x74736b72;
  // PRAGMA user_version: the schema this taskrt reads and writes.
  static constexpr int kSchemaVersion = 1;

  // Opens (creating if needed) the journal at `path`, after SecureStateDir on its
  // directory. An existing file is checked through a read-only connection that changes
  // no byte and creates no file (so the caller must hold the journal's lock file): it
  // must be a regular file of this user, an SQLite database with kApplicationId and
  // kSchemaVersion and the journal's table, pass SQLite's quick_check, and hold a task
  // in every row. Anything else is refused with an error that names the file, says what
  // is wrong and how to salvage it (docs/RELIABILITY.md), and leaves the files as they
  // were: DATA_LOSS for a damaged journal or a file that is not SQLite,
  // FAILED_PRECONDITION for another program's database or an unknown schema version,
  // PERMISSION_DENIED for a file of another user. A journal of an earlier taskrt
  // (application_id 0, schema version 1 and exactly the journal's table) is adopted:
  // its application_id is set. Only then are group and other permission bits cleared
  // from the existing files and the database opened for writing. Cost: the check reads
  // and parses every row, as LoadAll does again afterwards.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& path,
                                                       Durability durability);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Every stored task in sequence order (for recovery at start-up).
  absl::StatusOr<std::vector<StoredTask>> LoadAll();

  // One row change: store `task` (insert or replace), or erase the row when null.
  struct Change {
    uint64_t seq;
    const v1::Task* task;
  };
  // Queues `changes` in order, serializing the tasks before returning; returns the
  // ticket of the last one. A row changed again before the writer took its previous
  // change is written once, with its latest content.
  uint64_t Apply(const std::vector<Change>& changes);
  // Queues an insert-or-replace of `task`; returns its ticket.
  uint64_t Put(uint64_t seq, const v1::Task& task);
  // Queues the removal of a task (retention); returns its ticket.
  uint64_t Erase(uint64_t seq);
  // The ticket of the latest queued write (0 before any).
  uint64_t last_ticket();

  // Runs `fn` once every write up to `ticket` is committed, with the commit's status
  // (an error when the write failed, e.g. a full disk).
  void AfterCommit(uint64_t ticket, std::function<void(absl::Status)> fn);

  // Commits what is queued and stops the writer. Idempotent.
  void Close();

  // Figures for stats and the benchmark: transactions committed, and row changes
  // folded into a later change of the same row before they reached the database.
  uint64_t commits();
  uint64_t coalesced();

 private:
  Journal(sqlite3* db, Durability durability, std::string path);
  // Sets the connection up; creates the schema when `fresh`, marks an adopted journal.
  absl::Status Setup(bool fresh, bool adopt);
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

  // Used by the writer thread only (and by Open/LoadAll before any write is queued),
  // so the connection is opened without SQLite's own mutex.
  sqlite3* const db_;
  const Durability durability_;
  const std::string path_;
  sqlite3_stmt* put_ = nullptr;
  sqlite3_stmt* erase_ = nullptr;
  std::thread writer_;

  internal::Mutex mu_;
  std::vector<Write> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, size_t> pending_index_ ABSL_GUARDED_BY(mu_);  // seq -> pending_
  uint64_t coalesced_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t committed_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  uint64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace taskrt::daemon

#endif  // TASKRT_DAEMON_JOURNAL_H_
