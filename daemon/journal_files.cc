#include "daemon/journal_files.h"

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
namespace journal_files {

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

}  // namespace journal_files

using journal_files::DirectoryOf;

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

}  // namespace taskrt::daemon
