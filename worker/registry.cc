#include "worker/registry.h"

#include <dlfcn.h>

#include "absl/strings/str_cat.h"
#include "worker/plugin_async.h"

namespace taskrt::worker {
namespace {

v1::TaskClass HintToClass(ClassHint hint) {
  switch (hint) {
    case ClassHint::kCpu:
      return v1::TASK_CLASS_CPU;
    case ClassHint::kIo:
      return v1::TASK_CLASS_IO;
    case ClassHint::kNone:
      break;
  }
  return v1::TASK_CLASS_AUTO;
}

// Plugins built for these ABIs load (taskrt/handler.h: ABI 2 only added to ABI 1).
constexpr int kOldestPluginAbi = 1;

}  // namespace

absl::Status LateResultError() {
  return absl::CancelledError(
      "the handler returned a result after its task was cancelled or passed its deadline; "
      "the result was dropped (taskrt/handler.h: return CancelledError once "
      "ctx.cancelled() is true)");
}

absl::Status Registry::AddEntry(HandlerEntry entry) {
  const std::string name = entry.info.name();
  if (name.empty()) return absl::InvalidArgumentError("a handler has an empty name");
  auto [it, inserted] = handlers_.emplace(name, std::move(entry));
  if (!inserted) {
    return absl::AlreadyExistsError(absl::StrCat("handler '", name, "' from ", source_,
                                                 " is already registered by ",
                                                 it->second.info.source()));
  }
  return absl::OkStatus();
}

void Registry::Register(HandlerDef def) {
  HandlerEntry entry;
  entry.info.set_name(def.name);
  entry.info.set_hint(HintToClass(def.hint));
  entry.info.set_description(def.description);
  entry.info.set_source(source_);
  entry.sync = std::move(def.fn);
  if (!entry.sync) {
    registration_error_.Update(absl::InvalidArgumentError(
        absl::StrCat("handler '", def.name, "' from ", source_, " has no function")));
    return;
  }
  registration_error_.Update(AddEntry(std::move(entry)));
}

void Registry::RegisterAsync(AsyncHandlerDef def) {
  if (!def.fn) {
    registration_error_.Update(absl::InvalidArgumentError(
        absl::StrCat("handler '", def.name, "' from ", source_, " has no function")));
    return;
  }
  RegisterLoop(def.name, def.hint, def.description, AdaptPluginAsync(std::move(def.fn)));
}

void Registry::RegisterLoop(const std::string& name, ClassHint hint, const std::string& description,
                            LoopHandlerFn fn) {
  HandlerEntry entry;
  entry.info.set_name(name);
  entry.info.set_hint(HintToClass(hint));
  entry.info.set_description(description);
  entry.info.set_async(true);
  entry.info.set_source(source_);
  entry.async = std::move(fn);
  registration_error_.Update(AddEntry(std::move(entry)));
}

absl::Status Registry::LoadPlugin(const std::string& path) {
  // RTLD_NODELETE: handlers keep pointing into the object for the life of the process.
  void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (lib == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot load plugin ", path, ": ", ::dlerror()));
  }
  using AbiFn = int (*)();
  using RegisterFn = void (*)(HandlerRegistry*);
  auto abi = reinterpret_cast<AbiFn>(::dlsym(lib, "taskrt_plugin_abi_version"));
  auto reg = reinterpret_cast<RegisterFn>(::dlsym(lib, "taskrt_register_handlers"));
  if (abi == nullptr || reg == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("plugin ", path,
                     " exports no taskrt entry points (taskrt_plugin_abi_version, "
                     "taskrt_register_handlers): define them with TASKRT_PLUGIN from "
                     "taskrt/handler.h, and check them with `nm -D --defined-only ",
                     path, "`"));
  }
  if (const int built_for = abi();
      built_for < kOldestPluginAbi || built_for > TASKRT_PLUGIN_ABI_VERSION) {
    return absl::InvalidArgumentError(absl::StrCat(
        "plugin ", path, " was built for plugin ABI ", built_for, ", this worker speaks ",
        kOldestPluginAbi, " to ", TASKRT_PLUGIN_ABI_VERSION, ": rebuild it against this taskrt"));
  }
  source_ = path;
  registration_error_ = absl::OkStatus();
  try {
    reg(this);
  } catch (const std::exception& e) {
    registration_error_.Update(absl::InternalError(
        absl::StrCat("plugin ", path, " threw during registration: ", e.what())));
  } catch (...) {
    registration_error_.Update(
        absl::InternalError(absl::StrCat("plugin ", path, " threw during registration")));
  }
  source_ = "builtin";
  return registration_error_;
}

const HandlerEntry* Registry::Find(const std::string& name) const {
  auto it = handlers_.find(name);
  return it == handlers_.end() ? nullptr : &it->second;
}

std::vector<v1::HandlerInfo> Registry::List() const {
  std::vector<v1::HandlerInfo> out;
  out.reserve(handlers_.size());
  for (const auto& [name, entry] : handlers_) out.push_back(entry.info);
  return out;
}

}  // namespace taskrt::worker
