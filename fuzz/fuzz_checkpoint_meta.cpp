// The metadata inside a training checkpoint (its "meta" entry: format, epochs done, the network, the config,
// the epoch logs, per-layer bits), as `qnas train` resuming and `qnas eval` / block KD loading a run read it.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "train/train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto meta = qnas::train::parse_checkpoint_meta(text, "checkpoint", "fuzz.pt", "fuzz");
    for (const auto& log : meta.logs) {
      if (qnas::train::epoch_log_from_json(qnas::train::to_json(log)).eval.size() != log.eval.size())
        __builtin_trap();
    }
  } catch (const qnas::Error&) {
  }
  return 0;
}
