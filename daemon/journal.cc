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

namespace taskrt::daemon {
namespace {

// The tasks table (schema version 1 and on). Earlier versions created it with CREATE TABLE IF NOT
// EXISTS and this text; SQLite stores it from the table name on, so both read back as this.
constexpr char kCreateTasks[] =
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
constexpr char kCreateLearned[] =
    "CREATE TABLE learned ("
    " handler TEXT NOT NULL,"
    " function TEXT NOT NULL,"
    " cpu_ratio REAL NOT NULL,"
    " samples INTEGER NOT NULL,"
    " gil_samples INTEGER NOT NULL,"
    " wall_us REAL NOT NULL,"
    " runs INTEGER NOT NULL,"
    " PRIMARY KEY (handler, function)) WITHOUT ROWID";
constexpr char kSelectLearned[] =
    "SELECT handler, function, cpu_ratio, samples, gil_samples, wall_us, runs FROM learned";
constexpr std::string_view kSqliteMagic("SQLite format 3\0", 16);
constexpr size_t kSqliteHeaderSize = 100;

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

absl::Status ExecSql(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    // Name the statement by its first words; the full SQL is noise for an operator.
    const std::string_view text(sql);
    return SqliteError(db, std::string(text.substr(0, text.find(" (", 0))));
  }
  return absl::OkStatus();
}

constexpr char kSalvage[] = "docs/RELIABILITY.md, \"Corrupted journal\"";

// The error for an existing journal that Open refuses: `problem` says what is wrong; the
// rest says that nothing was changed and what the operator can do about it.
absl::Status Refusal(absl::StatusCode code, const std::string& path, const std::string& problem) {
  return absl::Status(
      code, absl::StrCat("journal ", path, ": ", problem,
                         "; the files were left untouched. To start anyway, move ", path,
                         "* aside and start with an empty journal (its tasks are then not "
                         "recovered), or restore it from a backup; to salvage the rows of a "
                         "damaged journal, run `sqlite3 journal.db .recover | sqlite3 salvaged.db` "
                         "(or .dump) on a copy (",
                         kSalvage, ")"));
}

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using DbHandle = std::unique_ptr<sqlite3, DbCloser>;
using Statement = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

absl::StatusOr<Statement> Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return SqliteError(db, sql);
  }
  return Statement(stmt);
}

// --- The files, before SQLite sees them -----------------------------------------------

struct FileFacts {
  bool exists = false;
  off_t size = 0;
  mode_t mode = 0;
};

// What lstat says of one journal file: absent, or a regular file of this user (a symbolic
// link, another kind of file, or a file of another user is refused).
absl::StatusOr<FileFacts> InspectFile(const std::string& journal, const std::string& file) {
  struct stat st {};
  if (::lstat(file.c_str(), &st) != 0) {
    if (errno == ENOENT) return FileFacts{};
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open journal ", journal, ": ", file, ": ", std::strerror(errno)));
  }
  if (S_ISLNK(st.st_mode)) {
    return Refusal(
        absl::StatusCode::kFailedPrecondition, journal,
        absl::StrCat(file, " is a symbolic link; a journal file must be a regular file"));
  }
  if (!S_ISREG(st.st_mode)) {
    return Refusal(absl::StatusCode::kFailedPrecondition, journal,
                   absl::StrCat(file, " is not a regular file"));
  }
  if (st.st_uid != ::geteuid()) {
    return Refusal(absl::StatusCode::kPermissionDenied, journal,
                   absl::StrCat(file, " is owned by uid ", st.st_uid, ", not by this user (uid ",
                                ::geteuid(), ")"));
  }
  return FileFacts{true, st.st_size, st.st_mode & 07777};
}

struct JournalFiles {
  FileFacts db, wal, shm;
};

absl::StatusOr<JournalFiles> InspectFiles(const std::string& path) {
  JournalFiles files;
  ASSIGN_OR_RETURN(files.db, InspectFile(path, path));
  ASSIGN_OR_RETURN(files.wal, InspectFile(path, path + "-wal"));
  ASSIGN_OR_RETURN(files.shm, InspectFile(path, path + "-shm"));
  return files;
}

// The first bytes of a non-empty journal.db are an SQLite header.
absl::Status CheckHeader(const std::string& path, off_t size) {
  if (static_cast<size_t>(size) < kSqliteHeaderSize) {
    return Refusal(absl::StatusCode::kDataLoss, path,
                   absl::StrCat("it is truncated: ", size, " bytes, less than an SQLite header (",
                                kSqliteHeaderSize, " bytes)"));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  char magic[kSqliteMagic.size()];
  const ssize_t n = fd < 0 ? -1 : ::pread(fd, magic, sizeof(magic), 0);
  const int error = errno;
  if (fd >= 0) ::close(fd);
  if (n < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot read journal ", path, ": ", std::strerror(error)));
  }
  if (std::string_view(magic, static_cast<size_t>(n)) != kSqliteMagic) {
    return Refusal(absl::StatusCode::kDataLoss, path,
                   "it is not an SQLite database (it does not begin with \"SQLite format 3\")");
  }
  return absl::OkStatus();
}

// Creates journal.db as an empty file of mode 0600 whatever the umask; SQLite gives the
// -wal and -shm files it creates later the mode of journal.db.
absl::Status CreatePrivateFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 || ::fchmod(fd, 0600) != 0) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create journal ", path, ": ", std::strerror(error)));
  }
  ::close(fd);
  return absl::OkStatus();
}

// Clears the group and other permission bits of an existing journal file.
absl::Status MakeFilePrivate(const std::string& file, const FileFacts& facts) {
  if (!facts.exists || (facts.mode & 077) == 0) return absl::OkStatus();
  const int fd = ::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || ::fchmod(fd, facts.mode & ~mode_t{077}) != 0) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat("cannot make ", file, " private (chmod go-rwx): ", std::strerror(error)));
  }
  ::close(fd);
  return absl::OkStatus();
}

// --- The read-only check of an existing journal ---------------------------------------

// The error for an SQLite failure while checking the journal at `path`.
absl::Status ReadError(const std::string& path, const absl::Status& s) {
  if (absl::IsDataLoss(s)) {
    return Refusal(s.code(), path, absl::StrCat("SQLite cannot read it (", s.message(), ")"));
  }
  return absl::Status(s.code(), absl::StrCat("cannot read journal ", path, ": ", s.message()));
}

absl::StatusOr<int64_t> PragmaInt(sqlite3* db, const char* sql) {
  ASSIGN_OR_RETURN(Statement stmt, Prepare(db, sql));
  if (sqlite3_step(stmt.get()) != SQLITE_ROW) return SqliteError(db, sql);
  return sqlite3_column_int64(stmt.get(), 0);
}

// What marks a database as a taskrt journal.
struct Marks {
  uint32_t application_id = 0;
  int64_t user_version = 0;
  // The schema version whose tables the database has, exactly (1: tasks; 2: tasks and
  // learned); 0 when it has other tables.
  int64_t tables_version = 0;
};

absl::StatusOr<Marks> ReadMarks(sqlite3* db) {
  Marks marks;
  ASSIGN_OR_RETURN(const int64_t id, PragmaInt(db, "PRAGMA application_id"));
  marks.application_id = static_cast<uint32_t>(id);
  ASSIGN_OR_RETURN(marks.user_version, PragmaInt(db, "PRAGMA user_version"));
  ASSIGN_OR_RETURN(Statement stmt, Prepare(db, "SELECT type, name, sql FROM sqlite_schema"));
  int rows = 0, tasks = 0, learned = 0;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    auto text = [&](int i) {
      const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), i));
      return std::string_view(t == nullptr ? "" : t);
    };
    ++rows;
    const bool table = text(0) == "table";
    tasks += table && text(1) == "tasks" && text(2) == kCreateTasks;
    learned += table && text(1) == "learned" && text(2) == kCreateLearned;
  }
  if (rc != SQLITE_DONE) return SqliteError(db, "reading the schema");
  if (rows == 1 && tasks == 1) marks.tables_version = 1;
  if (rows == 2 && tasks == 1 && learned == 1) marks.tables_version = 2;
  return marks;
}

// What CheckExisting found in a journal this taskrt reads.
struct Existing {
  bool adopt = false;   // an earlier taskrt's journal, without the application_id
  int64_t version = 0;  // its schema version, 1 or kSchemaVersion
};

// Whether `marks` are those of a journal this taskrt reads (of schema version 1, to be
// upgraded, or kSchemaVersion); adopt for one of an earlier taskrt, which did not set
// the application_id (0) and had schema version 1.
absl::StatusOr<Existing> JudgeMarks(const Marks& marks, const std::string& path) {
  const std::string ours = absl::StrFormat("0x%08x \"tskr\"", Journal::kApplicationId);
  const int64_t version = marks.user_version;
  if (marks.application_id == 0) {
    if (marks.tables_version == 1 && version == 1) return Existing{true, 1};
    return Refusal(absl::StatusCode::kFailedPrecondition, path,
                   absl::StrCat("it is an SQLite database but not a taskrt journal (its "
                                "application_id is 0, not ",
                                ours, ", and its tables are not the journal's)"));
  }
  if (marks.application_id != Journal::kApplicationId) {
    return Refusal(absl::StatusCode::kFailedPrecondition, path,
                   absl::StrFormat("it is the SQLite database of another program (application_id "
                                   "0x%08x; a taskrt journal has %s)",
                                   marks.application_id, ours));
  }
  if (version != 1 && version != Journal::kSchemaVersion) {
    return Refusal(
        absl::StatusCode::kFailedPrecondition, path,
        absl::StrCat(
            "it has schema version ", version,
            ", which this taskrt does not know (it reads versions 1 to ", Journal::kSchemaVersion,
            ")",
            version > Journal::kSchemaVersion ? ": a newer taskrt wrote it, run that one" : ""));
  }
  if (marks.tables_version != version) {
    return Refusal(absl::StatusCode::kDataLoss, path,
                   absl::StrCat("it is marked as a taskrt journal of schema version ", version,
                                " but its tables are not that version's"));
  }
  return Existing{false, version};
}

absl::Status CheckIntegrity(sqlite3* db, const std::string& path) {
  absl::StatusOr<Statement> stmt = Prepare(db, "PRAGMA quick_check");
  if (!stmt.ok()) return ReadError(path, stmt.status());
  std::string problem;
  int rc = SQLITE_DONE;
  while (problem.empty() && (rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt->get(), 0));
    if (text != nullptr && std::string_view(text) != "ok") problem = text;
  }
  if (problem.empty() && rc != SQLITE_DONE) problem = sqlite3_errmsg(db);
  if (problem.empty()) return absl::OkStatus();
  return Refusal(absl::StatusCode::kDataLoss, path,
                 absl::StrCat("it fails SQLite's integrity check (", problem, ")"));
}

absl::Status CheckRows(sqlite3* db, const std::string& path) {
  absl::StatusOr<Statement> stmt = Prepare(db, "SELECT seq, body FROM tasks");
  if (!stmt.ok()) return ReadError(path, stmt.status());
  v1::Task task;
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
    const int size = sqlite3_column_bytes(stmt->get(), 1);
    if (!task.ParseFromArray(sqlite3_column_blob(stmt->get(), 1), size)) {
      return Refusal(
          absl::StatusCode::kDataLoss, path,
          absl::StrCat("row ", sqlite3_column_int64(stmt->get(), 0), " does not hold a task (its ",
                       size, " bytes do not parse as ", task.GetTypeName(), ")"));
    }
  }
  if (rc != SQLITE_DONE) return ReadError(path, SqliteError(db, "reading the tasks"));
  return absl::OkStatus();
}

// Reads the current row of kSelectLearned into `key` and `stats`; returns what is wrong
// with it, or an empty string.
std::string ReadLearnedRow(sqlite3_stmt* stmt, LearnedKey& key, LearnedStats& stats) {
  auto text = [stmt](int i) {
    const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
    return std::string(t == nullptr ? "" : t);
  };
  key = {text(0), text(1)};
  const char* kNames[] = {"cpu_ratio", "samples", "gil_samples", "wall_us", "runs"};
  for (int i = 2; i < 7; ++i) {
    const int type = sqlite3_column_type(stmt, i);
    const bool real = i == 2 || i == 5;
    const bool ok = real ? (type == SQLITE_FLOAT || type == SQLITE_INTEGER)
                         : type == SQLITE_INTEGER && sqlite3_column_int64(stmt, i) >= 0;
    if (!ok) {
      return absl::StrCat(kNames[i - 2], " is '", text(i), "', not ",
                          real ? "a number" : "a non-negative integer");
    }
  }
  stats.cpu_ratio = sqlite3_column_double(stmt, 2);
  stats.samples = static_cast<uint64_t>(sqlite3_column_int64(stmt, 3));
  stats.gil_samples = static_cast<uint64_t>(sqlite3_column_int64(stmt, 4));
  stats.wall_us = sqlite3_column_double(stmt, 5);
  stats.runs = static_cast<uint64_t>(sqlite3_column_int64(stmt, 6));
  if (stats.gil_samples > stats.samples) {
    return absl::StrCat("gil_samples ", stats.gil_samples, " exceeds samples ", stats.samples);
  }
  return "";
}

std::string DescribeLearnedRow(const LearnedKey& key) {
  return absl::StrCat("learned row (handler '", key.first, "', function '", key.second, "')");
}

absl::Status CheckLearnedRows(sqlite3* db, const std::string& path) {
  absl::StatusOr<Statement> stmt = Prepare(db, kSelectLearned);
  if (!stmt.ok()) return ReadError(path, stmt.status());
  LearnedKey key;
  LearnedStats stats;
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
    const std::string problem = ReadLearnedRow(stmt->get(), key, stats);
    if (!problem.empty()) {
      return Refusal(
          absl::StatusCode::kDataLoss, path,
          absl::StrCat(DescribeLearnedRow(key), " does not hold valid statistics (", problem, ")"));
    }
  }
  if (rc != SQLITE_DONE) return ReadError(path, SqliteError(db, "reading the learned rows"));
  return absl::OkStatus();
}

// `path` as an SQLite URI with `query`.
std::string UriOf(const std::string& path, const char* query) {
  std::string uri = "file:";
  for (const unsigned char c : path) {
    if (std::isalnum(c) || std::strchr("/-_.~", c) != nullptr) {
      uri += static_cast<char>(c);
    } else {
      absl::StrAppendFormat(&uri, "%%%02X", c);
    }
  }
  return absl::StrCat(uri, "?", query);
}

// Checks the existing journal at `path` without writing to it or creating a file beside
// it; returns what it is (whether to adopt it, its schema version). A read-only connection
// does not write the database, but would create a missing -wal (and -shm). So without a
// -wal, where journal.db is the whole journal, it is read as immutable: no lock, no
// other file. With one, the "unix-none" VFS takes no file locks (the caller holds the
// journal's lock file), so exclusive locking mode, set before the first read, needs no
// write lock on the read-only descriptor and keeps the WAL index in memory: no -shm
// file is created. Without locks SQLite would checkpoint (and delete an empty -wal) at
// close: NO_CKPT_ON_CLOSE prevents that.
absl::StatusOr<Existing> CheckExisting(const std::string& path, bool has_wal) {
  sqlite3* raw = nullptr;
  const int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW;
  const int rc = has_wal ? sqlite3_open_v2(path.c_str(), &raw, flags, "unix-none")
                         : sqlite3_open_v2(UriOf(path, "immutable=1").c_str(), &raw,
                                           flags | SQLITE_OPEN_URI, nullptr);
  DbHandle db(raw);
  if (rc != SQLITE_OK) return ReadError(path, SqliteError(raw, "open"));
  sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  absl::Status s = ExecSql(raw, "PRAGMA locking_mode=EXCLUSIVE");
  if (!s.ok()) return ReadError(path, s);
  absl::StatusOr<Marks> marks = ReadMarks(raw);
  if (!marks.ok()) return ReadError(path, marks.status());
  ASSIGN_OR_RETURN(const Existing existing, JudgeMarks(*marks, path));
  RETURN_IF_ERROR(CheckIntegrity(raw, path));
  RETURN_IF_ERROR(CheckRows(raw, path));
  if (existing.version >= 2) RETURN_IF_ERROR(CheckLearnedRows(raw, path));
  return existing;
}

std::string DirectoryOf(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// What Open found.
struct Found {
  bool fresh = false;  // a new journal: no schema yet
  Existing existing;   // when not fresh
};

// Checks the files at `path`, creates journal.db if it is missing, and clears group and
// other permission bits once all checks passed.
absl::StatusOr<Found> PrepareFiles(const std::string& path) {
  absl::Status dir = SecureStateDir(DirectoryOf(path));
  if (!dir.ok()) {
    return absl::Status(dir.code(),
                        absl::StrCat("cannot open journal ", path, ": ", dir.message()));
  }
  ASSIGN_OR_RETURN(const JournalFiles files, InspectFiles(path));
  Found found;
  // An empty journal.db is one whose creation was interrupted: it holds nothing to lose.
  found.fresh = files.db.size == 0;
  if (found.fresh && files.wal.size > 0) {
    return Refusal(absl::StatusCode::kFailedPrecondition, path,
                   absl::StrCat("it is missing or empty but ", path, "-wal holds ", files.wal.size,
                                " bytes, the log of a journal that was moved or "
                                "deleted (SQLite would apply or delete it)"));
  }
  if (!files.db.exists) RETURN_IF_ERROR(CreatePrivateFile(path));
  if (!found.fresh) {
    RETURN_IF_ERROR(CheckHeader(path, files.db.size));
    ASSIGN_OR_RETURN(found.existing, CheckExisting(path, files.wal.exists));
  }
  RETURN_IF_ERROR(MakeFilePrivate(path, files.db));
  RETURN_IF_ERROR(MakeFilePrivate(path + "-wal", files.wal));
  RETURN_IF_ERROR(MakeFilePrivate(path + "-shm", files.shm));
  return found;
}

}  // namespace

absl::StatusOr<Durability> ParseDurability(const std::string& text) {
  if (text == "none") return Durability::kNone;
  if (text == "process") return Durability::kProcess;
  if (text == "full") return Durability::kFull;
  return absl::InvalidArgumentError(
      absl::StrCat("durability '", text, "' is not one of none, process, full"));
}

absl::Status SecureStateDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open the state directory ", dir, ": ", std::strerror(error)));
  }
  absl::Status s;
  if (st.st_uid != ::geteuid()) {
    s = absl::PermissionDeniedError(absl::StrCat(
        "the state directory ", dir, " is owned by uid ", st.st_uid, ", not by this user (uid ",
        ::geteuid(),
        "); the journal must be private: give taskrtd a directory of its own with --state-dir"));
  } else if ((st.st_mode & 077) != 0) {
    const mode_t tight = st.st_mode & 07700;
    if (::fchmod(fd, tight) == 0) {
      std::fprintf(stderr,
                   "taskrtd: the state directory %s was mode %04o; made it %04o so that only its "
                   "owner can read the journal\n",
                   dir.c_str(), static_cast<unsigned>(st.st_mode & 07777),
                   static_cast<unsigned>(tight));
    } else {
      s = absl::PermissionDeniedError(
          absl::StrCat("cannot make the state directory ", dir,
                       " private (chmod go-rwx): ", std::strerror(errno)));
    }
  }
  ::close(fd);
  return s;
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
    {
      internal::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        if (stopping_ || !pending_.empty() || !pending_learned_.empty()) return true;
        for (const auto& w : waiters_)
          if (w.ticket <= committed_ticket_) return true;
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
    }
    const bool wrote = !batch.empty() || !learned.empty();
    absl::Status status;
    if (wrote) {
      status = Commit(batch, learned, sync);
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
