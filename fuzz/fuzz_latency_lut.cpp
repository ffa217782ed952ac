// Latency LUT files (`qnas latency-lut`'s JSON): the profile key, the per-block entries and the fitted
// correction, then a prediction for the min subnet of the default space from what was read.
#include <cstdint>

#include "core/error.h"
#include "fuzz_input_file.h"
#include "latency/latency_lut.h"
#include "space/sampling.h"
#include "space/search_space.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto spec = [] {
    const auto space = qnas::space::SearchSpace::parse("fmnistw-151122-000000");
    return qnas::space::build_arch_spec(space, qnas::space::min_subnet(space));
  }();
  static const auto key = [] {
    qnas::runtime::ProfileKey k;  // what fuzz/seeds/latency_lut was written with
    k.cpu = "fuzz";
    k.engine = "oneDNN 2.6.3";
    k.isa = "avx512_core_vnni";
    k.threads = 1;
    k.precision = "int8";
    return k;
  }();
  const qnas::fuzz::InputFile file(data, size, ".json");
  try {
    const auto lut = qnas::latency::LatencyLut::load(file.path().string(), key);
    lut.block_sum(spec);
    lut.predict(spec);
  } catch (const qnas::Error&) {
  }
  return 0;
}
