// `qnas space ...`: inspect hyperspaces, search spaces and subnets without training anything.
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/format.h"
#include "core/error.h"
#include "space/arch_spec.h"
#include "space/published.h"
#include "space/sampling.h"

namespace qnas::cli {
namespace {

using namespace qnas::space;
using nlohmann::json;

std::string expands_text(const BlockType& type) {
  if (!type.has_expand()) return "-";
  std::vector<std::string> values;
  for (double e : type.expands) values.push_back(format_expand(e));
  return fmt::format("{}", fmt::join(values, "/"));
}

json space_json(const SearchSpace& space) {
  json stages = json::array();
  for (int s = 0; s < space.num_stages(); ++s) {
    const StageChoices& st = space.stage(s);
    stages.push_back({{"name", st.name()},
                      {"block", st.block->name},
                      {"kernels", st.block->kernels},
                      {"expands", st.block->expands},
                      {"widths", st.widths},
                      {"window", st.window},
                      {"depths", st.def->depths},
                      {"stride", st.def->stride},
                      {"activation", to_string(st.block->activation)},
                      {"se", st.block->has_se()}});
  }
  return {{"encoding", space.encode()},
          {"hyperspace", space.hyperspace().name},
          {"description", space.hyperspace().description},
          {"resolutions", space.hyperspace().resolutions},
          {"num_subnets", space.num_subnets()},
          {"stages", stages}};
}

void show_space(const std::string& text, bool as_json) {
  const SearchSpace space = parse_space_or_published(text);
  if (as_json) {
    std::printf("%s\n", space_json(space).dump(2).c_str());
    return;
  }
  std::printf("space %s  (%s)\n", space.encode().c_str(), space.hyperspace().description.c_str());
  std::printf("input %d channels, resolutions %s, %d classes\n\n", space.hyperspace().in_channels,
              fmt::format("{}", fmt::join(space.hyperspace().resolutions, "/")).c_str(),
              space.hyperspace().num_classes);
  Table table({"stage", "block", "act", "SE", "kernels", "expands", "widths", "depths", "stride"});
  for (int s = 0; s < space.num_stages(); ++s) {
    const StageChoices& st = space.stage(s);
    table.add_row({st.name(), st.block->name, to_string(st.block->activation),
                   st.block->has_se() ? "yes" : "-", fmt::format("{}", fmt::join(st.block->kernels, "/")),
                   expands_text(*st.block), fmt::format("{}", fmt::join(st.widths, "/")),
                   fmt::format("{}", fmt::join(st.def->depths, "/")), std::to_string(st.def->stride)});
  }
  std::printf("%s\nsubnets in this space: %.3g\n", table.render().c_str(), space.num_subnets());
}

json spec_json(const ArchSpec& spec) {
  json stages = json::array();
  const auto macs = spec.macs_per_stage();
  const auto params = spec.params_per_stage();
  for (size_t i = 0; i < macs.size(); ++i) {
    stages.push_back({{"stage", macs[i].first}, {"macs", macs[i].second}, {"params", params[i].second}});
  }
  return {{"space", spec.space},
          {"subnet", spec.subnet},
          {"resolution", spec.resolution},
          {"macs", spec.macs()},
          {"mflops", spec.macs() / 1e6},
          {"params", spec.params()},
          {"mparams", spec.params() / 1e6},
          {"stages", stages}};
}

void print_flops(const ArchSpec& spec, const std::string& label) {
  std::printf("%s\nspace %s, resolution %d\n\n", label.c_str(), spec.space.c_str(), spec.resolution);
  Table table({"stage", "blocks", "output", "MFLOPs", "params (M)"});
  const auto params = spec.params_per_stage();
  size_t p = 0;
  for (const auto& [stage, macs] : spec.macs_per_stage()) {
    int blocks = 0;
    std::string output;
    for (const auto& b : spec.blocks) {
      if (b.stage != stage) continue;
      ++blocks;
      output = b.type->kind == BlockKind::kLogits ? std::to_string(b.cout)
                                                  : fmt::format("{}x{}x{}", b.cout, b.out_hw, b.out_hw);
    }
    table.add_row({stage, std::to_string(blocks), output, format_millions(static_cast<double>(macs), 2),
                   format_millions(static_cast<double>(params[p++].second), 3)});
  }
  table.add_row({"total", "", "", format_millions(static_cast<double>(spec.macs()), 2),
                 format_millions(static_cast<double>(spec.params()), 3)});
  std::printf("%s", table.render().c_str());
}

void show_flops(const std::string& subnet_text, const std::string& space_text, bool as_json) {
  std::string encoding = subnet_text;
  std::string space_name = space_text;
  std::string label = "subnet " + subnet_text;
  for (const auto& published : published_subnets()) {
    if (published.name != subnet_text) continue;
    encoding = published.encoding;
    if (space_name.empty()) space_name = published.space_name;
    label =
        fmt::format("{} (paper: {}M FLOPs)\n{}", published.name, published.paper_mflops, published.encoding);
  }
  if (space_name.empty()) {
    fail("qnas space flops: which space is '{}' in? pass --space ENCODING (e.g. --space onnxw-151122-023231)",
         subnet_text);
  }
  const ArchSpec spec = build_arch_spec(parse_space_or_published(space_name), Subnet::parse(encoding));
  if (as_json) {
    std::printf("%s\n", spec_json(spec).dump(2).c_str());
  } else {
    print_flops(spec, label);
  }
}

void list_published(bool as_json) {
  json rows = json::array();
  Table table({"model", "space", "resolution", "MFLOPs", "paper MFLOPs", "deviation", "params (M)"});
  for (const auto& published : published_subnets()) {
    const ArchSpec spec =
        build_arch_spec(parse_space_or_published(published.space_name), Subnet::parse(published.encoding));
    const double mflops = spec.macs() / 1e6;
    const double deviation = 100.0 * (mflops / published.paper_mflops - 1.0);
    rows.push_back({{"name", published.name},
                    {"space", published.space_name},
                    {"encoding", published.encoding},
                    {"resolution", spec.resolution},
                    {"mflops", mflops},
                    {"paper_mflops", published.paper_mflops},
                    {"mparams", spec.params() / 1e6}});
    table.add_row({published.name, published.space_name, std::to_string(spec.resolution),
                   fmt::format("{:.1f}", mflops), fmt::format("{:.0f}", published.paper_mflops),
                   fmt::format("{:+.1f}%", deviation),
                   format_millions(static_cast<double>(spec.params()), 2)});
  }
  if (as_json) {
    std::printf("%s\n", json{{"subnets", rows}}.dump(2).c_str());
    return;
  }
  std::printf("hyperspaces: %s\n\npublished spaces:\n",
              fmt::format("{}", fmt::join(builtin_hyperspace_names(), ", ")).c_str());
  for (const auto& space : published_spaces())
    std::printf("  %-24s %s\n", space.name.c_str(), space.encoding.c_str());
  std::printf("\npublished subnets:\n%s", table.render().c_str());
}

void sample_subnets(const std::string& space_text, const std::string& kind, int count, std::uint64_t seed,
                    bool as_json) {
  const SearchSpace space = parse_space_or_published(space_text);
  Rng rng(seed);
  json rows = json::array();
  for (int i = 0; i < count; ++i) {
    const Subnet subnet = kind == "max"   ? max_subnet(space)
                          : kind == "min" ? min_subnet(space)
                                          : sample_random(space, rng);
    const ArchSpec spec = build_arch_spec(space, subnet);
    if (as_json) {
      rows.push_back(
          {{"subnet", subnet.encode()}, {"mflops", spec.macs() / 1e6}, {"mparams", spec.params() / 1e6}});
    } else {
      std::printf("%s  %.2f MFLOPs  %.3f Mparams\n", subnet.encode().c_str(), spec.macs() / 1e6,
                  spec.params() / 1e6);
    }
  }
  if (as_json) std::printf("%s\n", json{{"space", space.encode()}, {"subnets", rows}}.dump(2).c_str());
}

}  // namespace

void add_space_commands(CLI::App& app) {
  CLI::App* space = app.add_subcommand("space", "Inspect hyperspaces, search spaces and subnets");
  space->require_subcommand(1);

  struct Options {
    std::string encoding, subnet, space, kind = "random";
    int count = 1;
    std::uint64_t seed = 0;
    bool json = false;
  };
  auto opts = std::make_shared<Options>();

  CLI::App* show = space->add_subcommand("show", "Stages, block types and choices of a search space");
  show->add_option("ENCODING", opts->encoding,
                   "space encoding <hyperspace>-<blocks>-<windows> (e.g. onnxw-151122-023231) or a published "
                   "name (e.g. spaceevo@vnni)")
      ->required();
  show->add_flag("--json", opts->json, "print JSON instead of a table");
  show->callback([opts] { show_space(opts->encoding, opts->json); });

  CLI::App* flops =
      space->add_subcommand("flops", "FLOPs (multiply-adds) and parameters of a subnet, per stage");
  flops
      ->add_option("SUBNET", opts->subnet,
                   "subnet encoding d…_k…_w…_e…_r… or a published name (SEQnet@vnni-A0)")
      ->required();
  flops->add_option("--space", opts->space, "the subnet's space: encoding or published name");
  flops->add_flag("--json", opts->json, "print JSON instead of a table");
  flops->callback([opts] { show_flops(opts->subnet, opts->space, opts->json); });

  CLI::App* list = space->add_subcommand("list", "Built-in hyperspaces and the published SpaceEvo models");
  list->add_flag("--json", opts->json, "print JSON instead of a table");
  list->callback([opts] { list_published(opts->json); });

  CLI::App* sample = space->add_subcommand("sample", "Draw subnets from a space (random, max or min)");
  sample->add_option("--space", opts->space, "space encoding or published name")->required();
  sample->add_option("--kind", opts->kind, "random, max or min")
      ->check(CLI::IsMember({"random", "max", "min"}));
  sample->add_option("--count", opts->count, "how many subnets")->check(CLI::Range(1, 1000000));
  sample->add_option("--seed", opts->seed, "random seed");
  sample->add_flag("--json", opts->json, "print JSON instead of lines");
  sample->callback([opts] { sample_subnets(opts->space, opts->kind, opts->count, opts->seed, opts->json); });
}

}  // namespace qnas::cli
