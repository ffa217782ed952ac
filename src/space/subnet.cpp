#include "space/subnet.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/strings.h"

namespace qnas::space {
namespace {

struct Field {
  char tag;
  const char* meaning;
};
constexpr Field kFields[] = {{'d', "depths"}, {'k', "kernels"}, {'w', "widths"}, {'e', "expand ratios"}};

double parse_field_number(const std::string& encoding, const Field& field, const std::string& text,
                          size_t position) {
  const auto value = qnas::parse_number(text);
  if (!value) {
    fail("subnet encoding '{}': {} ('{}' field) entry {} is '{}', not a number", encoding, field.meaning,
         field.tag, position + 1, text);
  }
  return *value;
}

int parse_integer(const std::string& encoding, const Field& field, const std::string& text, size_t position) {
  const double value = parse_field_number(encoding, field, text, position);
  if (value != std::floor(value) || value < 0 || value > 1e6) {
    fail("subnet encoding '{}': {} ('{}' field) entry {} is '{}', expected a non-negative integer", encoding,
         field.meaning, field.tag, position + 1, text);
  }
  return static_cast<int>(value);
}

std::vector<std::string> field_values(const std::string& encoding, const std::string& part,
                                      const Field& field) {
  if (part.size() < 2 || part[0] != field.tag) {
    fail("subnet encoding '{}': expected the {} field to start with '{}', got '{}'", encoding, field.meaning,
         field.tag, part);
  }
  return split(part.substr(1), '#');
}

std::string allowed(const std::vector<int>& values) {
  return fmt::format("{{{}}}", fmt::join(values, ", "));
}
std::string allowed(const std::vector<double>& values) {
  std::vector<std::string> text;
  for (double v : values) text.push_back(format_expand(v));
  return fmt::format("{{{}}}", fmt::join(text, ", "));
}

template <typename T>
bool contains(const std::vector<T>& values, T value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

}  // namespace

std::string format_expand(double expand) {
  if (expand == 0) return "0";
  // Python prints the shortest text that reads back to the same double, with ".0" on whole numbers.
  for (int precision = 1; precision <= 17; ++precision) {
    std::string text = fmt::format("{:.{}g}", expand, precision);
    if (std::strtod(text.c_str(), nullptr) == expand) {
      if (text.find_first_of(".e") == std::string::npos) text += ".0";
      return text;
    }
  }
  return fmt::format("{}", expand);
}

Subnet Subnet::parse(const std::string& encoding) {
  const auto parts = split(encoding, '_');
  if (parts.size() != 5) {
    fail("subnet encoding '{}' is malformed: expected 5 fields d…_k…_w…_e…_r… separated by '_', got {}",
         encoding, parts.size());
  }
  std::vector<std::vector<std::string>> values;
  for (int f = 0; f < 4; ++f) values.push_back(field_values(encoding, parts[f], kFields[f]));

  Subnet subnet;
  std::vector<int> depths;
  for (size_t i = 0; i < values[0].size(); ++i)
    depths.push_back(parse_integer(encoding, kFields[0], values[0][i], i));
  int blocks = 0;
  for (int d : depths) blocks += d;
  for (int f = 1; f < 4; ++f) {
    if (static_cast<int>(values[f].size()) != blocks) {
      fail("subnet encoding '{}': the depths add up to {} blocks but the {} ('{}' field) list has {} entries",
           encoding, blocks, kFields[f].meaning, kFields[f].tag, values[f].size());
    }
  }
  size_t block = 0;
  for (int depth : depths) {
    std::vector<BlockChoice> stage;
    for (int i = 0; i < depth; ++i, ++block) {
      BlockChoice choice;
      choice.kernel = parse_integer(encoding, kFields[1], values[1][block], block);
      choice.width = parse_integer(encoding, kFields[2], values[2][block], block);
      choice.expand = parse_field_number(encoding, kFields[3], values[3][block], block);
      stage.push_back(choice);
    }
    subnet.stages.push_back(std::move(stage));
  }
  const std::string& res = parts[4];
  if (res.size() < 2 || res[0] != 'r') {
    fail("subnet encoding '{}': expected the resolution field 'r<pixels>', got '{}'", encoding, res);
  }
  subnet.resolution = parse_integer(encoding, Field{'r', "resolution"}, res.substr(1), 0);
  return subnet;
}

std::string Subnet::encode() const {
  std::vector<std::string> d, k, w, e;
  for (const auto& stage : stages) {
    d.push_back(std::to_string(stage.size()));
    for (const auto& b : stage) {
      k.push_back(std::to_string(b.kernel));
      w.push_back(std::to_string(b.width));
      e.push_back(format_expand(b.expand));
    }
  }
  return fmt::format("d{}_k{}_w{}_e{}_r{}", fmt::join(d, "#"), fmt::join(k, "#"), fmt::join(w, "#"),
                     fmt::join(e, "#"), resolution);
}

int Subnet::num_blocks() const {
  int total = 0;
  for (const auto& stage : stages) total += static_cast<int>(stage.size());
  return total;
}

void validate(const Subnet& subnet, const SearchSpace& space) {
  const std::string where = fmt::format("subnet {} in space {}", subnet.encode(), space.encode());
  if (static_cast<int>(subnet.stages.size()) != space.num_subnet_stages()) {
    fail("{}: has {} stages, the space has {} (first_conv, stage0..stage6)", where, subnet.stages.size(),
         space.num_subnet_stages());
  }
  const auto& resolutions = space.hyperspace().resolutions;
  if (!contains(resolutions, subnet.resolution)) {
    fail("{}: resolution {} not in {}", where, subnet.resolution, allowed(resolutions));
  }
  for (int s = 0; s < space.num_subnet_stages(); ++s) {
    const StageChoices& st = space.stage(s);
    const auto& blocks = subnet.stages[s];
    const int depth = static_cast<int>(blocks.size());
    if (!contains(st.def->depths, depth)) {
      fail("{}: {} has depth {}, allowed {}", where, st.name(), depth, allowed(st.def->depths));
    }
    for (int b = 0; b < depth; ++b) {
      const BlockChoice& c = blocks[b];
      if (!contains(st.block->kernels, c.kernel)) {
        fail("{}: {} block {} has kernel {}, {} allows {}", where, st.name(), b, c.kernel, st.block->name,
             allowed(st.block->kernels));
      }
      if (!contains(st.widths, c.width)) {
        fail("{}: {} block {} has width {}, window {} allows {}", where, st.name(), b, c.width, st.window,
             allowed(st.widths));
      }
      const bool expand_ok = st.block->has_expand() ? contains(st.block->expands, c.expand) : c.expand == 0;
      if (!expand_ok) {
        fail("{}: {} block {} has expand ratio {}, {} allows {}", where, st.name(), b,
             format_expand(c.expand), st.block->name,
             st.block->has_expand() ? allowed(st.block->expands) : std::string("only 0 (none)"));
      }
    }
  }
}

bool is_valid(const Subnet& subnet, const SearchSpace& space) {
  try {
    validate(subnet, space);
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace qnas::space
