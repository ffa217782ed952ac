#pragma once
// The budgets of `qnas run`, as data: one JSON object per preset (tiny, quick, full) with a section per
// stage, printed side by side by `qnas run --dry-run`, overridable key by key with `--config F`. The
// training sections are train::TrainConfig / train::BlockKdConfig objects and are checked by them.
// "estimates" holds the seconds each stage took on a 2-core CPU, for the ETA; no stage reads it, so changing
// it reruns nothing.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qnas::pipeline {

// The names, in the order the table lists them.
const std::vector<std::string>& preset_names();
// A qnas::Error naming the presets for an unknown one.
nlohmann::json preset_config(const std::string& name);

// `overrides` merged into `base` key by key (objects recursively). A key `base` lacks, or a value of another
// type, is a qnas::Error naming the key path and what is allowed; then every section is validated.
nlohmann::json merge_config(const nlohmann::json& base, const nlohmann::json& overrides,
                            const std::string& source);
void validate_config(const nlohmann::json& config);

// Every preset's settings side by side, one row per key path (markdown table).
std::string presets_table();

}  // namespace qnas::pipeline
