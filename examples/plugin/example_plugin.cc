// An example taskrt plugin: three handlers registered from a shared object, two
// synchronous and one asynchronous.
//
// Build it with the main build (build/lib/libtaskrt_example_plugin.so), load it with
//   taskrtd --plugin build/lib/libtaskrt_example_plugin.so
// and submit tasks to it like to a built-in handler, e.g. from the SDK:
//   client->Run(taskrt::MakeTask("example.word_count", "the quick brown fox"));
//
// A plugin sees only taskrt/handler.h and Abseil's status and time types (the CMake
// target taskrt::plugin, or pkg-config's taskrt-plugin). Each handler runs in a worker
// process, possibly on several threads of an io-pool worker at once, so the handlers
// below keep no mutable globals.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "taskrt/handler.h"

namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Counts whitespace-separated words, lines and bytes of the input, like `wc`. Output:
// {"words":W,"lines":L,"bytes":B}. Polls cancellation every MiB so a huge input can
// still be cancelled or timed out cooperatively.
absl::StatusOr<std::string> WordCount(taskrt::TaskContext& ctx, std::string_view in) {
  constexpr size_t kPollEvery = 1 << 20;
  uint64_t words = 0;
  uint64_t lines = 0;
  bool in_word = false;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i % kPollEvery == 0 && ctx.cancelled()) {
      return absl::CancelledError("example.word_count: cancelled at byte " + std::to_string(i));
    }
    const char c = in[i];
    if (c == '\n') ++lines;
    if (IsSpace(c)) {
      in_word = false;
    } else if (!in_word) {
      in_word = true;
      ++words;
    }
  }
  return "{\"words\":" + std::to_string(words) + ",\"lines\":" + std::to_string(lines) +
         ",\"bytes\":" + std::to_string(in.size()) + "}";
}

// Length of the UTF-8 sequence that starts with `lead`, or 0 if `lead` cannot start one.
size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 0;
}

// Reverses the input by UTF-8 code point ("héllo" -> "olléh"). Invalid UTF-8 is bad
// input: InvalidArgumentError, which the daemon reports as FAILURE_KIND_INVALID_INPUT.
absl::StatusOr<std::string> Reverse(taskrt::TaskContext&, std::string_view in) {
  std::string out(in.size(), '\0');
  size_t end = in.size();  // `out` is filled from the back
  for (size_t i = 0; i < in.size();) {
    const size_t n = Utf8Length(static_cast<unsigned char>(in[i]));
    bool valid = n != 0 && i + n <= in.size();
    for (size_t k = 1; valid && k < n; ++k) {
      valid = (static_cast<unsigned char>(in[i + k]) >> 6) == 0x2;
    }
    if (!valid) {
      return absl::InvalidArgumentError("example.reverse: input is not valid UTF-8 at byte " +
                                        std::to_string(i) + "; send text");
    }
    end -= n;
    out.replace(end, n, in.substr(i, n));
    i += n;
  }
  return out;
}

// An asynchronous handler: answers "after N ms" once N milliseconds (the input, a plain
// number up to a minute) have passed, holding no thread meanwhile: thousands can wait at
// once on one io worker. A cancel or the task's timeout ends it early with
// CancelledError, which the daemon reports as CANCELLED or TIMED_OUT.
void Delay(std::shared_ptr<taskrt::AsyncTask> task) {
  constexpr int64_t kMaxMs = 60'000;
  int64_t ms = 0;
  if (!absl::SimpleAtoi(task->input(), &ms) || ms < 0 || ms > kMaxMs) {
    return task->Finish(absl::InvalidArgumentError(
        "example.delay: the input must be a number of milliseconds from 0 to 60000, not '" +
        task->input() + "'"));
  }
  task->OnCancel([task] { task->Finish(absl::CancelledError("example.delay: cancelled")); });
  task->After(absl::Milliseconds(ms),
              [task, ms] { task->Finish("after " + std::to_string(ms) + " ms"); });
}

}  // namespace

TASKRT_PLUGIN(registry) {
  // kCpu: word counting computes and never waits, so AUTO tasks go to the cpu pool.
  registry.Register({"example.word_count", taskrt::ClassHint::kCpu,
                     "counts words, lines and bytes of the input (JSON out)", WordCount});
  // kNone: no hint; the daemon learns the class from measured cpu/wall of past runs.
  registry.Register({"example.reverse", taskrt::ClassHint::kNone,
                     "reverses the input text by UTF-8 code point", Reverse});
  // Asynchronous: runs on the worker's event loop, never on a thread of its pool.
  registry.RegisterAsync({"example.delay", taskrt::ClassHint::kIo,
                          "answers after N ms (input \"N\") without holding a thread", Delay});
}
