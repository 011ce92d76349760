// Writes the seed corpora of tests/fuzz/corpus/<harness>/: a few small valid inputs per
// harness (frames, serialized requests, handler inputs), so the fuzzers start from
// inputs that pass the first checks. Deterministic; the outputs are committed.
//
// Usage: make_fuzz_corpus DIR   (DIR = tests/fuzz/corpus; scripts/fuzz.sh --corpus)
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/frame.h"
#include "taskrt/v1/service.pb.h"

namespace {

namespace fs = std::filesystem;
using namespace taskrt;  // NOLINT: a tool, not library code

void Write(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string Frames(const std::vector<v1::internal::WorkerFrame>& frames) {
  std::string out;
  for (const auto& f : frames) internal::AppendFrame(f, &out);
  return out;
}

void FrameSeeds(const fs::path& dir) {
  using v1::internal::WorkerFrame;
  WorkerFrame hello;
  hello.mutable_hello()->set_pid(4242);
  auto* h = hello.mutable_hello()->add_handlers();
  h->set_name("math.primes");
  h->set_hint(v1::TASK_CLASS_CPU);
  h->set_source("builtin");
  WorkerFrame run;
  run.mutable_run()->set_seq(7);
  run.mutable_run()->set_task_id("a1b2c3-7");
  run.mutable_run()->set_handler("sys.sleep");
  run.mutable_run()->set_input(R"({"ms": 5})");
  run.mutable_run()->set_attempt(1);
  WorkerFrame cancel;
  cancel.mutable_cancel()->set_seq(7);
  WorkerFrame done;
  done.mutable_done()->set_seq(7);
  done.mutable_done()->set_ok(true);
  done.mutable_done()->set_output(R"({"slept_ms":5})");
  done.mutable_done()->set_executor(v1::EXECUTOR_ASYNC);
  WorkerFrame failed;
  failed.mutable_done()->set_seq(8);
  failed.mutable_done()->set_failure(v1::FAILURE_KIND_INVALID_INPUT);
  failed.mutable_done()->set_error("sys.sleep: field \"ms\" is required");
  Write(dir, "hello", Frames({hello}));
  Write(dir, "run", Frames({run}));
  Write(dir, "empty_frame", Frames({WorkerFrame()}));
  Write(dir, "run_cancel_done", Frames({run, cancel, done}));
  Write(dir, "done_failed", Frames({failed}));
  std::string partial = Frames({run});
  partial.resize(partial.size() - 3);  // a frame still waiting for its last bytes
  Write(dir, "partial", partial);
}

v1::TaskSpec Spec(const std::string& handler, const std::string& input) {
  v1::TaskSpec s;
  s.set_handler(handler);
  s.set_input(input);
  return s;
}

void RequestSeeds(const fs::path& dir) {
  v1::SubmitRequest submit;
  *submit.add_tasks() = Spec("math.primes", R"({"below": 1000})");
  v1::TaskSpec full = Spec("sys.sleep", R"({"ms": 10})");
  full.set_requested_class(v1::TASK_CLASS_IO);
  full.set_priority(3);
  full.set_timeout_ms(5000);
  (*full.mutable_labels())["team"] = "infra";
  full.set_max_attempts(3);
  full.set_retry_backoff_ms(100);
  full.set_idempotency_key("key-1");
  *submit.add_tasks() = full;
  Write(dir, "submit", submit.SerializeAsString());
  v1::RunRequest run;
  *run.mutable_spec() = Spec("hash.sha256", R"({"data": "abc"})");
  run.set_timeout_ms(1000);
  Write(dir, "run", run.SerializeAsString());
  v1::StreamRequest stream;
  *stream.add_tasks() = Spec("sys.noop", "");
  *stream.add_tasks() = Spec("no.such.handler", "");
  stream.set_tag(9);
  Write(dir, "stream", stream.SerializeAsString());
  v1::WaitRequest wait;
  wait.add_task_ids("a1b2c3-1");
  wait.add_task_ids("a1b2c3-2");
  wait.set_timeout_ms(250);
  Write(dir, "wait", wait.SerializeAsString());
  v1::GetRequest get;
  get.add_task_ids("a1b2c3-1");
  Write(dir, "get", get.SerializeAsString());
  v1::ListRequest list;
  list.set_limit(10);
  list.add_states(v1::TASK_STATE_FAILED);
  list.set_handler("math.primes");
  Write(dir, "list", list.SerializeAsString());
}

void BuiltinSeeds(const fs::path& dir) {
  Write(dir, "sleep", R"({"ms": 25})");
  Write(dir, "primes", R"({"below": 1000000})");
  Write(dir, "sha256_data", R"({"data": "hello"})");
  Write(dir, "sha256_path", R"({"path": "/etc/hostname"})");
  Write(dir, "read_file", R"({"path": "/etc/hostname", "max_bytes": 4096})");
  Write(dir, "exec",
        R"({"argv": ["echo", "hi"], "env": {"LANG": "C"}, "cwd": "/tmp", "stdin": "x\n"})");
  // Regression: a NUL cut argv[0] to "/bin/true" before the parser refused it.
  Write(dir, "exec_nul", R"({"argv": ["/bin/true\u0000-not-this"], "cwd": "/"})");
  Write(dir, "escapes", R"({"argv": ["a\u00e9\n"], "data": "\ud83d\ude00", "ms": -1})");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (e.g. tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  const fs::path root(argv[1]);
  FrameSeeds(root / "frame_decoder_fuzz");
  RequestSeeds(root / "request_validation_fuzz");
  BuiltinSeeds(root / "builtin_input_fuzz");
  return 0;
}
