// The configs a user writes: `qnas train --config` (TrainConfig), block-KD configs (BlockKdConfig) and `qnas
// run
// --config` overrides (merged into each preset, then every section validated). Any JSON document goes to all
// three; the first byte picks the run preset it is merged into.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "pipeline/run_config.h"
#include "train/train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto& presets = qnas::pipeline::preset_names();
  const std::string& preset = presets[data[0] % presets.size()];
  const nlohmann::json j = nlohmann::json::parse(reinterpret_cast<const char*>(data) + 1,
                                                 reinterpret_cast<const char*>(data) + size, nullptr,
                                                 /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    const auto config = qnas::train::TrainConfig::from_json(j);
    if (qnas::train::TrainConfig::from_json(config.to_json()).to_json() != config.to_json()) __builtin_trap();
  } catch (const qnas::Error&) {
  }
  try {
    const auto config = qnas::train::BlockKdConfig::from_json(j);
    if (qnas::train::BlockKdConfig::from_json(config.to_json()).to_json() != config.to_json())
      __builtin_trap();
  } catch (const qnas::Error&) {
  }
  try {
    qnas::pipeline::validate_config(
        qnas::pipeline::merge_config(qnas::pipeline::preset_config(preset), j, "fuzz"));
  } catch (const qnas::Error&) {
  }
  return 0;
}
