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

struct StoredTask {
  uint64_t seq = 0;
  v1::Task task;
};

class Journal {
 public:
  // Opens (creating if needed) the journal at `path` and checks its integrity. A file
  // that is not a journal or is corrupted is an error that names the file and says how
  // to recover; nothing is changed then.
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
  Journal(sqlite3* db, Durability durability);
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
