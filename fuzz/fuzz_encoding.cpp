// Space and subnet encodings, the text a user types most: the first line is a search-space encoding, the
// second a subnet of it. A subnet that parses is checked against the space and expanded into its ArchSpec
// (the arithmetic every later stage trusts).
#include <cstdint>
#include <string>

#include "core/error.h"
#include "space/arch_spec.h"
#include "space/search_space.h"
#include "space/subnet.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto newline = text.find('\n');
  const std::string space_text = text.substr(0, newline);
  const std::string subnet_text = newline == std::string::npos ? std::string() : text.substr(newline + 1);
  try {
    const auto space = qnas::space::SearchSpace::parse(space_text);
    space.encode();
    const auto subnet = qnas::space::Subnet::parse(subnet_text);
    qnas::space::validate(subnet, space);
    const auto spec = qnas::space::build_arch_spec(space, subnet);
    spec.macs();
    spec.params();
  } catch (const qnas::Error&) {
  }
  return 0;
}
