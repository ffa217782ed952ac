// Bit assignments (`qnas mixed-precision`'s assignment.json, read by --bits-from): any JSON document, checked
// against the min subnet of the default space.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "space/bit_assignment.h"
#include "space/sampling.h"
#include "space/search_space.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto spec = [] {
    const auto space = qnas::space::SearchSpace::parse("fmnistw-151122-000000");
    return qnas::space::build_arch_spec(space, qnas::space::min_subnet(space));
  }();
  const nlohmann::json j =
      nlohmann::json::parse(reinterpret_cast<const char*>(data), reinterpret_cast<const char*>(data) + size,
                            nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    const auto bits = qnas::space::BitAssignment::from_json(j, spec, "fuzz input");
    qnas::space::bitops(spec, bits);
    qnas::space::model_size_bits(spec, bits);
    qnas::space::compression_ratio(spec, bits);
  } catch (const qnas::Error&) {
  }
  return 0;
}
