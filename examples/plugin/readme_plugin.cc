#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "taskrt/handler.h"

TASKRT_PLUGIN(registry) {
  registry.Register({"demo.upper", taskrt::ClassHint::kCpu, "upper-cases its input",
                     [](taskrt::TaskContext&, std::string_view in) -> absl::StatusOr<std::string> {
                       std::string out(in);
                       absl::AsciiStrToUpper(&out);
                       return out;
                     }});
}
