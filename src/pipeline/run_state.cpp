#include "pipeline/run_state.h"

#include <fmt/format.h>

#include <functional>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"

namespace qnas::pipeline {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// What a non-empty directory without pipeline.json looks like, for the error message.
std::string what_it_is(const fs::path& dir) {
  if (fs::exists(dir / "checkpoint.pt")) return "a `qnas train` run (checkpoint.pt)";
  if (fs::exists(dir / "blocks")) return "a `qnas block-kd` run (blocks/)";
  if (fs::exists(dir / "best.json")) return "a `qnas subnet-search` result (best.json)";
  if (fs::exists(dir / "summary.json"))
    return "the output of an older `qnas run` (summary.json, no pipeline.json)";
  return "files that are not a qnas run";
}

void flatten(const json& node, const std::string& path, std::map<std::string, std::string>& out) {
  if (node.is_object()) {
    for (const auto& [k, v] : node.items()) flatten(v, path.empty() ? k : path + "." + k, out);
  } else {
    out[path] = node.dump();
  }
}

}  // namespace

RunState RunState::open(const fs::path& run_dir) {
  RunState s;
  s.file_ = run_dir / "pipeline.json";
  if (fs::exists(run_dir) && !fs::is_directory(run_dir))
    fail("run directory {} is a file: choose another --run-dir", run_dir.string());
  if (fs::exists(s.file_)) {
    json j;
    try {
      j = read_json_file(s.file_);
    } catch (const Error& e) {
      fail("{} is unreadable ({}): it is not a qnas run state; move it away or choose another --run-dir",
           s.file_.string(), e.what());
    }
    if (!j.is_object() || j.value("format", "") != kRunFormat || !j.contains("stages")) {
      fail("{} is not a {} state file (format '{}'): choose another --run-dir", s.file_.string(), kRunFormat,
           j.is_object() ? j.value("format", "none") : "none");
    }
    s.state_ = std::move(j);
    return s;
  }
  if (fs::exists(run_dir) && !fs::is_empty(run_dir)) {
    fail("run directory {} holds {}, not a `qnas run`: choose another --run-dir (nothing there was touched)",
         run_dir.string(), what_it_is(run_dir));
  }
  s.state_ = {{"format", kRunFormat}, {"stages", json::object()}};
  return s;
}

std::string RunState::fingerprint(const json& settings, const std::vector<std::string>& inputs) {
  std::string text = settings.dump();
  for (const auto& f : inputs) text += "|" + f;
  return fmt::format("{:016x}", stable_hash(text));
}

bool RunState::has(const std::string& stage) const {
  return state_.at("stages").contains(stage);
}

bool RunState::is_complete(const std::string& stage, const std::string& fingerprint) const {
  return has(stage) && state_["stages"][stage].value("fingerprint", "") == fingerprint;
}

std::vector<std::string> RunState::changes(const std::string& stage, const json& settings) const {
  std::vector<std::string> out;
  if (!has(stage)) return out;
  std::map<std::string, std::string> before, after;
  flatten(state_["stages"][stage].value("settings", json::object()), "", before);
  flatten(settings, "", after);
  for (const auto& [k, v] : after) {
    auto it = before.find(k);
    if (it == before.end())
      out.push_back(fmt::format("{}: (none) -> {}", k, v));
    else if (it->second != v)
      out.push_back(fmt::format("{}: {} -> {}", k, it->second, v));
  }
  for (const auto& [k, v] : before)
    if (!after.count(k)) out.push_back(fmt::format("{}: {} -> (none)", k, v));
  return out;
}

const json& RunState::result(const std::string& stage) const {
  if (!has(stage)) fail("stage {} has not finished in {}", stage, file_.parent_path().string());
  return state_["stages"][stage].at("result");
}

double RunState::seconds(const std::string& stage) const {
  return has(stage) ? state_["stages"][stage].value("seconds", 0.0) : 0.0;
}

std::string RunState::stage_fingerprint(const std::string& stage) const {
  return has(stage) ? state_["stages"][stage].value("fingerprint", "") : "";
}

void RunState::complete(const std::string& stage, const std::string& fingerprint, const json& settings,
                        const json& result, double seconds) {
  state_["stages"][stage] = {
      {"fingerprint", fingerprint}, {"settings", settings}, {"result", result}, {"seconds", seconds}};
  save();
}

void RunState::forget(const std::string& stage) {
  state_["stages"].erase(stage);
  save();
}

void RunState::save() const {
  write_json_atomic(file_, state_);
}

}  // namespace qnas::pipeline
