#pragma once
// What a `qnas run` directory remembers: RUN_DIR/pipeline.json, one entry per finished stage with the
// settings it ran with, its fingerprint (its settings and the fingerprints of the stages it reads) and its
// result. A stage is skipped when its entry's fingerprint equals today's; otherwise it and every stage that
// reads it run again. The file is rewritten atomically after each stage, so a kill loses at most the stage
// that was running, and that stage resumes from its own checkpoints.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qnas::pipeline {

inline constexpr const char* kRunFormat = "qnas-run-1";

class RunState {
 public:
  // Opens RUN_DIR/pipeline.json or starts an empty state. A directory that holds something else (another
  // command's run, unrelated files, a pipeline.json of another format) is a qnas::Error naming what it is.
  static RunState open(const std::filesystem::path& run_dir);

  static std::string fingerprint(const nlohmann::json& settings,
                                 const std::vector<std::string>& input_fingerprints);
  bool is_complete(const std::string& stage, const std::string& fingerprint) const;
  bool has(const std::string& stage) const;
  // The settings that differ from the recorded ones, as "key: old -> new" (empty for a stage never run).
  std::vector<std::string> changes(const std::string& stage, const nlohmann::json& settings) const;
  const nlohmann::json& result(const std::string& stage) const;  // a qnas::Error when the stage is not done
  double seconds(const std::string& stage) const;
  std::string stage_fingerprint(const std::string& stage) const;

  void complete(const std::string& stage, const std::string& fingerprint, const nlohmann::json& settings,
                const nlohmann::json& result, double seconds);
  void forget(const std::string& stage);
  void save() const;

 private:
  std::filesystem::path file_;
  nlohmann::json state_;
};

}  // namespace qnas::pipeline
