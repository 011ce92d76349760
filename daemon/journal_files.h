// The journal's files and schema checks (daemon/journal_files.cc), shared with
// daemon/journal.cc: what Open checks before SQLite writes a byte, and the SQL both use.
// Internal to the journal.
#ifndef TASKRT_DAEMON_JOURNAL_FILES_H_
#define TASKRT_DAEMON_JOURNAL_FILES_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "daemon/journal.h"

namespace taskrt::daemon::journal_files {

// The tasks table (schema version 1 and on). Earlier versions created it with CREATE TABLE IF NOT
// EXISTS and this text; SQLite stores it from the table name on, so both read back as this.
inline constexpr char kCreateTasks[] =
    "CREATE TABLE tasks ("
    " seq INTEGER PRIMARY KEY,"
    " id TEXT NOT NULL,"
    " idempotency_key TEXT,"
    " final INTEGER NOT NULL,"
    " body BLOB NOT NULL)";
// The learned table (schema version 2 and on): one row per (handler, function), in
// fixed columns rather than a serialized message, because LearnedStats is a few numbers
// of the daemon's own (no proto type to evolve with it) and columns can be read and
// checked with the sqlite3 shell. WITHOUT ROWID: the key is the primary index, and
// sqlite_schema holds no separate autoindex.
inline constexpr char kCreateLearned[] =
    "CREATE TABLE learned ("
    " handler TEXT NOT NULL,"
    " function TEXT NOT NULL,"
    " cpu_ratio REAL NOT NULL,"
    " samples INTEGER NOT NULL,"
    " gil_samples INTEGER NOT NULL,"
    " wall_us REAL NOT NULL,"
    " runs INTEGER NOT NULL,"
    " PRIMARY KEY (handler, function)) WITHOUT ROWID";
inline constexpr char kSelectLearned[] =
    "SELECT handler, function, cpu_ratio, samples, gil_samples, wall_us, runs FROM learned";
// Where an error sends the reader to salvage a damaged journal.
inline constexpr char kSalvage[] = "docs/RELIABILITY.md, \"Corrupted journal\"";
inline constexpr std::string_view kSqliteMagic("SQLite format 3\0", 16);

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using DbHandle = std::unique_ptr<sqlite3, DbCloser>;
using Statement = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

absl::Status SqliteError(sqlite3* db, const std::string& what);
absl::Status ExecSql(sqlite3* db, const char* sql);
absl::StatusOr<Statement> Prepare(sqlite3* db, const char* sql);

// One row of the learned table: fills `key` and `stats`, or says what is wrong with it.
std::string ReadLearnedRow(sqlite3_stmt* stmt, LearnedKey& key, LearnedStats& stats);
std::string DescribeLearnedRow(const LearnedKey& key);

struct Existing {
  bool adopt = false;   // an earlier taskrt's journal, without the application_id
  int64_t version = 0;  // its schema version, 1 or kSchemaVersion
};

// What Open found.
struct Found {
  bool fresh = false;  // a new journal: no schema yet
  Existing existing;   // when not fresh
};

// Checks the files at `path`, creates journal.db if it is missing, and clears group and
// other permission bits once all checks passed.
absl::StatusOr<Found> PrepareFiles(const std::string& path);

}  // namespace taskrt::daemon::journal_files

#endif  // TASKRT_DAEMON_JOURNAL_FILES_H_
