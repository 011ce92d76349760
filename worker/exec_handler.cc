// sys.exec: runs a command as a child of the worker and waits for it on the event loop
// (a pidfd and the output pipes are watched by the loop; no thread is held while the
// command runs; starting it happens on a two-thread spawner pool).
//
// Input:  {"argv": ["cmd", "arg"...], "env": {"K": "V"}, "cwd": "/dir", "stdin": "..."}
// Output: {"exit_code", "signal", "signal_name", "stdout", "stderr", "stdout_truncated",
//          "stderr_truncated", "stdout_bytes", "stderr_bytes", "cpu_time_us",
//          "peak_rss_kb"}
// The task succeeds whenever the command was started and waited for, whatever its exit
// status (like subprocess.run without check); a command that cannot be started is
// invalid input.
//
// Output limit (taskrtd --max-output-bytes): at most that many bytes of each of stdout
// and stderr are kept; the rest is read and dropped, so the command never blocks on a
// full pipe. The kept text is then trimmed (at a character boundary) until the JSON
// result, escapes included, fits in the limit. "stdout_truncated" says text was left
// out, "stdout_bytes" how many bytes the command wrote in all (same for stderr).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "asio/posix/stream_descriptor.hpp"
#include "asio/post.hpp"
#include "asio/steady_timer.hpp"
#include "asio/thread_pool.hpp"
#include "asio/write.hpp"
#include "common/util.h"
#include "nlohmann/json.hpp"
#include "worker/builtin_inputs.h"
#include "worker/registry.h"

extern char** environ;

namespace taskrt::worker {
namespace {

using json = nlohmann::json;

// An upper bound of the bytes the ASCII byte `c` takes inside a JSON string.
size_t JsonAsciiCost(unsigned char c) {
  if (c == '"' || c == '\\') return 2;
  if (c >= 0x20) return 1;
  return (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') ? 2 : 6;  // \u00XX
}

struct JsonFit {
  size_t bytes = 0;  // leading bytes of the text that fit
  size_t cost = 0;   // what they take inside a JSON string
};

// How much of `text` fits in `budget` bytes of a JSON string, cut at a character
// boundary. An invalid UTF-8 byte counts as the U+FFFD (3 bytes) that replaces it.
JsonFit FitJson(std::string_view text, size_t budget) {
  JsonFit fit;
  while (fit.bytes < text.size()) {
    const auto c = static_cast<unsigned char>(text[fit.bytes]);
    size_t len = 1, cost = 0;
    if (c < 0x80) {
      cost = JsonAsciiCost(c);
    } else {
      len = internal::Utf8SequenceLength(text.substr(fit.bytes));
      cost = len == 0 ? 3 : len;
      len = std::max<size_t>(len, 1);
    }
    if (fit.cost + cost > budget) break;
    fit.cost += cost;
    fit.bytes += len;
  }
  return fit;
}

// One running child and everything the loop watches for it.
struct Child : std::enable_shared_from_this<Child> {
  Child(asio::io_context& loop, std::shared_ptr<AsyncCall> call, size_t max_output_bytes)
      : call(std::move(call)),
        max_output_bytes(max_output_bytes),
        out(loop),
        err(loop),
        in(loop),
        pidfd(loop),
        grace(loop) {}

  std::shared_ptr<AsyncCall> call;
  const size_t max_output_bytes;  // kept of each stream, and of the whole JSON result
  pid_t pid = -1;
  asio::posix::stream_descriptor out, err, in, pidfd;
  asio::steady_timer grace;
  std::string stdout_data, stderr_data, stdin_data;
  uint64_t stdout_bytes = 0, stderr_bytes = 0;  // written by the command, kept or not
  bool out_open = true, err_open = true, exited = false;
  int status = 0;
  struct rusage usage {};
  // Output is read on the loop thread, one handler at a time, into one buffer shared by
  // every child of this worker: a Child costs a few hundred bytes, not two 64 KiB
  // buffers to allocate and zero per command.
  static std::array<char, 65536>& ReadBuffer() {
    static std::array<char, 65536> buf;
    return buf;
  }

  void ReadPipe(bool is_out) {
    auto& desc = is_out ? out : err;
    desc.async_wait(asio::posix::descriptor_base::wait_read, [self = shared_from_this(),
                                                              is_out](std::error_code ec) {
      auto& d = is_out ? self->out : self->err;
      auto& data = is_out ? self->stdout_data : self->stderr_data;
      auto& seen = is_out ? self->stdout_bytes : self->stderr_bytes;
      const size_t cap = self->max_output_bytes;
      auto& buf = ReadBuffer();
      // A bounded number of reads per wake-up, so a child that writes without pause
      // cannot hold the loop.
      for (int i = 0; i < 16 && !ec; ++i) {
        const size_t n = d.read_some(asio::buffer(buf), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) break;
        // Past the cap, bytes are read and dropped: the command must
        // never block on a full pipe.
        seen += n;
        const size_t room = cap - std::min(cap, data.size());
        data.append(buf.data(), std::min(n, room));
        // Live output (taskrt exec --wait, taskrt logs -f): what is kept.
        self->call->EmitOutput(!is_out, std::string_view(buf.data(), std::min(n, room)));
      }
      if (!ec || ec == asio::error::would_block || ec == asio::error::try_again) {
        self->ReadPipe(is_out);
        return;
      }
      // End of file, or the grace timer closed the pipe.
      (is_out ? self->out_open : self->err_open) = false;
      self->MaybeFinish();
    });
  }

  void WaitExit() {
    pidfd.async_wait(asio::posix::descriptor_base::wait_read,
                     [self = shared_from_this()](const std::error_code& ec) {
                       if (ec == asio::error::operation_aborted) return;
                       self->Reap();
                     });
  }

  void Reap() {
    const pid_t r = ::wait4(pid, &status, WNOHANG, &usage);
    if (r == 0) return WaitExit();  // spurious wake-up
    exited = true;
    std::error_code ignored;
    pidfd.close(ignored);
    if (!out_open && !err_open) return MaybeFinish();
    // A grandchild may hold the pipes open; do not wait for it forever.
    grace.expires_after(std::chrono::milliseconds(200));
    grace.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (ec) return;
      std::error_code ignored2;
      self->out.close(ignored2);
      self->err.close(ignored2);
    });
    MaybeFinish();
  }

  void MaybeFinish() {
    if (!exited || out_open || err_open) return;
    grace.cancel();
    if (call->cancelled()) {
      return call->Finish({absl::CancelledError("sys.exec: cancelled; the command was killed")});
    }
    const int64_t cpu_us = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1'000'000LL +
                           usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
    AsyncResult r;
    r.output = ResultJson(cpu_us);
    r.cpu_time_us = cpu_us;
    r.peak_rss_kb = usage.ru_maxrss;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.exit_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    call->Finish(std::move(r));
  }

  static std::string Dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  // The result, with stdout and stderr trimmed so that it fits in max_output_bytes.
  std::string ResultJson(int64_t cpu_us) {
    json result;
    result["exit_code"] = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    result["signal"] = sig;
    result["signal_name"] = sig ? internal::SignalName(sig) : "";
    result["stdout"] = "";
    result["stderr"] = "";
    result["stdout_truncated"] = false;  // "false" is the longer: an upper bound
    result["stderr_truncated"] = false;
    result["stdout_bytes"] = stdout_bytes;
    result["stderr_bytes"] = stderr_bytes;
    result["cpu_time_us"] = cpu_us;
    result["peak_rss_kb"] = usage.ru_maxrss;
    const size_t base = Dump(result).size();
    size_t budget = max_output_bytes - std::min(max_output_bytes, base);
    std::string dumped;
    // FitJson's costs are exact or over; a second round only if the replacement of
    // invalid UTF-8 came out longer than counted. Beyond that the worker's own check
    // fails the task with OUTPUT_TOO_LARGE.
    for (int round = 0; round < 3; ++round) {
      TrimToJsonBudget(budget);
      result["stdout"] = stdout_data;
      result["stderr"] = stderr_data;
      result["stdout_truncated"] = stdout_data.size() < stdout_bytes;
      result["stderr_truncated"] = stderr_data.size() < stderr_bytes;
      dumped = Dump(result);
      if (dumped.size() <= max_output_bytes) break;
      budget -= std::min(budget, dumped.size() - max_output_bytes);
    }
    return dumped;
  }

  // Trims stdout and stderr so that their JSON strings take at most `budget` bytes
  // together; a stream that needs less than half leaves the rest to the other.
  void TrimToJsonBudget(size_t budget) {
    if ((stdout_data.size() + stderr_data.size()) * 6 <= budget) return;  // escapes: <= 6x
    const size_t out_cost = FitJson(stdout_data, SIZE_MAX).cost;
    const size_t err_cost = FitJson(stderr_data, SIZE_MAX).cost;
    if (out_cost + err_cost <= budget) return;
    const size_t half = budget / 2;
    size_t out_budget = half, err_budget = budget - half;
    if (err_cost <= err_budget) {
      out_budget = budget - err_cost;
    } else if (out_cost <= out_budget) {
      err_budget = budget - out_cost;
    }
    stdout_data.resize(FitJson(stdout_data, out_budget).bytes);
    stderr_data.resize(FitJson(stderr_data, err_budget).bytes);
  }
};

// Closes both ends of each pipe it holds.
struct Pipes {
  int fds[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
  ~Pipes() {
    for (auto& p : fds)
      for (int fd : p)
        if (fd >= 0) ::close(fd);
  }
};

// What starting one command needs and yields; handed from the loop to a spawner thread
// and back.
struct Launch {
  ExecSpec spec;
  size_t max_output_bytes = 0;  // BuiltinOptions::max_output_bytes
  Pipes pipes;                  // stdin's pipe only when there is input: otherwise /dev/null
  pid_t pid = -1;
  int pipe_errno = 0;
  int spawn_error = 0;  // posix_spawnp's result
  int pidfd = -1;
  int pidfd_errno = 0;
};

// posix_spawn returns only once the child has exec'd (a few hundred microseconds for a
// small program), so commands are started on a small pool of their own: the loop stays
// free for other tasks and two commands can start at once.
asio::thread_pool& Spawners() {
  static asio::thread_pool pool(2);
  return pool;
}

// On a spawner thread: touches only `l`.
//
// The pipes are made here, just before the child, not when the task arrives: every
// open descriptor of the worker is copied into each child at clone and closed again at
// exec, so a batch of 1000 commands whose pipes all existed up front (6000 descriptors)
// made each start of /bin/true ~40 % slower (exec_true in bench/).
void Spawn(Launch& l) {
  const bool has_stdin = !l.spec.stdin_data.empty();
  for (int i = has_stdin ? 0 : 1; i < 3; ++i) {
    if (::pipe2(l.pipes.fds[i], O_CLOEXEC) != 0) {
      l.pipe_errno = errno;
      return;
    }
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (has_stdin) {
    posix_spawn_file_actions_adddup2(&actions, l.pipes.fds[0][0], 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, l.pipes.fds[1][1], 1);
  posix_spawn_file_actions_adddup2(&actions, l.pipes.fds[2][1], 2);
  if (!l.spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, l.spec.cwd.c_str());
  posix_spawnattr_t attr;
  internal::InitCleanSpawnAttr(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);  // own group: cancellation kills the whole tree

  // The worker's environment as is, or a copy with the task's variables set over it.
  std::vector<std::string> env_storage;
  std::vector<char*> envp;
  if (!l.spec.env.empty()) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view kv(*e);
      const std::string key(kv.substr(0, kv.find('=')));
      if (l.spec.env.count(key) == 0) env_storage.emplace_back(kv);
    }
    for (const auto& [k, v] : l.spec.env) env_storage.push_back(absl::StrCat(k, "=", v));
    for (auto& s : env_storage) envp.push_back(s.data());
    envp.push_back(nullptr);
  }
  std::vector<char*> argv;
  for (auto& a : l.spec.argv) argv.push_back(a.data());
  argv.push_back(nullptr);

  l.spawn_error = ::posix_spawnp(&l.pid, argv[0], &actions, &attr, argv.data(),
                                 envp.empty() ? environ : envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (l.spawn_error != 0) return;
  l.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, l.pid, 0));
  if (l.pidfd < 0) l.pidfd_errno = errno;
}

// Back on the loop: watch the started child.
void Started(asio::io_context& loop, const std::shared_ptr<AsyncCall>& call, Launch& l) {
  if (l.pipe_errno != 0) {
    return call->Finish({absl::ResourceExhaustedError(
        absl::StrCat("sys.exec: pipe: ", std::strerror(l.pipe_errno)))});
  }
  if (l.spawn_error != 0) {
    return call->Finish({absl::InvalidArgumentError(
        absl::StrCat("sys.exec: cannot run '", l.spec.argv[0], "'",
                     l.spec.cwd.empty() ? "" : absl::StrCat(" in ", l.spec.cwd), ": ",
                     std::strerror(l.spawn_error)))});
  }
  if (l.pidfd < 0) {
    ::kill(l.pid, SIGKILL);
    ::waitpid(l.pid, nullptr, 0);
    return call->Finish({absl::InternalError(
        absl::StrCat("sys.exec: pidfd_open: ", std::strerror(l.pidfd_errno)))});
  }
  auto child = std::make_shared<Child>(loop, call, l.max_output_bytes);
  child->pid = l.pid;
  child->pidfd.assign(l.pidfd);
  if (l.pipes.fds[0][1] >= 0) child->in.assign(std::exchange(l.pipes.fds[0][1], -1));
  child->out.assign(std::exchange(l.pipes.fds[1][0], -1));
  child->err.assign(std::exchange(l.pipes.fds[2][0], -1));
  // The child's ends are closed by ~Pipes when the Launch goes.
  child->stdin_data = std::move(l.spec.stdin_data);
  const pid_t pid = l.pid;
  call->set_on_cancel([pid] { ::kill(-pid, SIGKILL); });
  if (call->cancelled()) ::kill(-pid, SIGKILL);  // cancelled while it was starting

  child->out.non_blocking(true);
  child->err.non_blocking(true);
  child->ReadPipe(true);
  child->ReadPipe(false);
  child->WaitExit();
  if (!child->in.is_open()) return;  // no input: the child's stdin is /dev/null
  child->in.non_blocking(true);
  asio::async_write(child->in, asio::buffer(child->stdin_data),
                    [child](const std::error_code&, size_t) {
                      std::error_code ignored;
                      child->in.close(ignored);
                    });
}

void Exec(asio::io_context& loop, std::shared_ptr<AsyncCall> call, size_t max_output_bytes) {
  auto spec = ParseExecInput(call->input());
  if (!spec.ok()) return call->Finish({spec.status()});
  auto launch = std::make_shared<Launch>();
  launch->spec = *std::move(spec);
  launch->max_output_bytes = max_output_bytes;
  asio::post(Spawners(), [&loop, call = std::move(call), launch]() mutable {
    Spawn(*launch);
    asio::post(loop, [&loop, call = std::move(call), launch] { Started(loop, call, *launch); });
  });
}

}  // namespace

void RegisterExecHandler(Registry& registry, const BuiltinOptions& options) {
  const size_t max_output_bytes = options.max_output_bytes;
  registry.RegisterLoop(
      "sys.exec", ClassHint::kIo,
      "runs {\"argv\": [...], \"env\", \"cwd\", \"stdin\"}; captures stdout, stderr "
      "(up to taskrtd --max-output-bytes), exit status, CPU time and peak RSS",
      [max_output_bytes](asio::io_context& loop, std::shared_ptr<AsyncCall> call) {
        Exec(loop, std::move(call), max_output_bytes);
      });
}

}  // namespace taskrt::worker
