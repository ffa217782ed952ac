// `qnas profile ops|models|subnets` and `qnas latency-lut build`: real FP32/INT8 latency on this CPU with the
// oneDNN engine, under one measurement protocol, with the machine identity recorded in every result.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/format.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/stats.h"
#include "latency/latency_lut.h"
#include "latency/profiling.h"
#include "space/baselines.h"
#include "space/published.h"
#include "space/sampling.h"

namespace qnas::cli {
namespace {

using namespace qnas::latency;
using nlohmann::json;
namespace fs = std::filesystem;

struct ProtocolArgs {
  int threads = 1;
  int runs = 50;
  int warmup = 10;
  MeasureOptions options() const {
    if (runs < 50) fail("--runs {} is below the protocol's minimum of 50 timed runs", runs);
    if (threads < 1) fail("--threads must be at least 1, got {}", threads);
    return MeasureOptions{warmup, runs, 0.0};
  }
};

void add_protocol_options(CLI::App* cmd, ProtocolArgs& p) {
  cmd->add_option("--threads", p.threads, "OpenMP threads for creation and execution (fixed per result)");
  cmd->add_option("--runs", p.runs, "timed runs per measurement (at least 50)");
  cmd->add_option("--warmup", p.warmup, "untimed runs first");
}

json machine_json(int threads) {
  json m = runtime::to_json(runtime::this_machine(threads, "int8"));
  m.erase("precision");
  m["vnni"] = runtime::has_vnni();
  return m;
}

// Every result says where it came from, and warns when INT8 cannot use VNNI here.
std::string machine_line(int threads) {
  std::string line = fmt::format("machine: {} | {} | isa {} | {} thread(s) | batch 1", runtime::cpu_model(),
                                 runtime::onednn_version(), runtime::onednn_isa(), threads);
  if (!runtime::has_vnni())
    line += "\nWARNING: no AVX512-VNNI/AVX-VNNI here: INT8 runs on the slower pre-VNNI path";
  return line;
}

void write_outputs(const std::string& out_dir, const std::string& stem, const json& j,
                   const std::string& text) {
  if (out_dir.empty()) return;
  fs::create_directories(out_dir);
  write_json_atomic((fs::path(out_dir) / (stem + ".json")).string(), j);
  write_file_atomic((fs::path(out_dir) / (stem + ".txt")).string(), text);
  std::fprintf(stderr, "wrote %s/%s.{json,txt}\n", out_dir.c_str(), stem.c_str());
}

std::string speedup_text(double s) {
  return s > 0 ? fmt::format("{:.2f}x", s) : "-";
}

void run_profile_ops(const ProtocolArgs& p, const std::string& out_dir, bool as_json) {
  const auto rows = profile_ops(p.threads, p.options());
  Table table(
      {"operator", "layers", "FP32 ms", "INT8 ms", "INT8 speedup", "paper Intel CPU", "paper Pixel 4"});
  json j = {
      {"machine", machine_json(p.threads)}, {"network", "mobilenet_v3_large@224"}, {"rows", json::array()}};
  for (const auto& r : rows) {
    table.add_row({r.op, std::to_string(r.layers), fmt::format("{:.3f}", r.fp32_ms),
                   fmt::format("{:.3f}", r.int8_ms), speedup_text(r.speedup()), speedup_text(r.paper_intel),
                   speedup_text(r.paper_pixel4)});
    j["rows"].push_back({{"op", r.op},
                         {"layers", r.layers},
                         {"fp32_ms", r.fp32_ms},
                         {"int8_ms", r.int8_ms},
                         {"speedup", r.speedup()},
                         {"paper_intel", r.paper_intel},
                         {"paper_pixel4", r.paper_pixel4},
                         {"note", r.note}});
  }
  const std::string text = machine_line(p.threads) +
                           "\nMobileNetV3-Large @224, summed over its layers of each type "
                           "(median of each layer)\n" +
                           table.render();
  std::printf("%s", as_json ? (j.dump(2) + "\n").c_str() : text.c_str());
  write_outputs(out_dir, "ops", j, text);
}

struct NamedSpec {
  std::string name;
  space::ArchSpec spec;
};

std::vector<NamedSpec> model_zoo(const std::vector<std::string>& only) {
  std::vector<NamedSpec> zoo;
  for (const auto& name : only.empty() ? space::model_names() : only)
    zoo.push_back({name, space::find_model(name)});
  return zoo;
}

void run_profile_models(const ProtocolArgs& p, const std::vector<std::string>& only,
                        const std::string& out_dir, bool as_json) {
  const auto zoo = model_zoo(only);
  Table table({"model", "res", "MFLOPs", "FP32 ms", "INT8 ms", "INT8 p90", "INT8 cv", "speedup",
               "paper speedup", "paper INT8 ms"});
  json j = {{"machine", machine_json(p.threads)}, {"models", json::array()}};
  ProgressLine progress("profile models", static_cast<std::int64_t>(zoo.size()), "models");
  for (size_t i = 0; i < zoo.size(); ++i) {
    const auto& m = zoo[i];
    const auto fp32 = time_arch(m.spec, runtime::Precision::kFp32, p.threads, p.options());
    const auto int8 = time_arch(m.spec, runtime::Precision::kInt8, p.threads, p.options());
    const double speedup = fp32.timing.median_ms / int8.timing.median_ms;
    const PaperLatency paper = paper_latency(m.name);
    table.add_row({m.name, std::to_string(m.spec.resolution), fmt::format("{:.0f}", m.spec.macs() / 1e6),
                   fmt::format("{:.2f}", fp32.timing.median_ms), fmt::format("{:.2f}", int8.timing.median_ms),
                   fmt::format("{:.2f}", int8.timing.p90_ms), fmt::format("{:.3f}", int8.timing.cv),
                   speedup_text(speedup), speedup_text(paper.speedup),
                   paper.int8_ms > 0 ? fmt::format("{:.1f} ({})", paper.int8_ms, paper.device) : "-"});
    j["models"].push_back({{"model", m.name},
                           {"space", m.spec.space},
                           {"subnet", m.spec.subnet},
                           {"resolution", m.spec.resolution},
                           {"macs", m.spec.macs()},
                           {"fp32", runtime::to_json(fp32.timing)},
                           {"int8", runtime::to_json(int8.timing)},
                           {"speedup", speedup},
                           {"int8_reorders", int8.reorders},
                           {"int8_kernels", int8.implementations},
                           {"paper_speedup", paper.speedup},
                           {"paper_int8_ms", paper.int8_ms},
                           {"paper_device", paper.device}});
    progress.update(static_cast<std::int64_t>(i + 1), m.name);
  }
  progress.finish();
  const std::string text = machine_line(p.threads) + "\n" + table.render();
  std::printf("%s", as_json ? (j.dump(2) + "\n").c_str() : text.c_str());
  write_outputs(out_dir, "models", j, text);
}

struct SubnetArgs {
  std::string space, lut, out_dir = "runs/profile-subnets", statistic = "median";
  int count = 300, calibration = 40;
  std::vector<int> resolutions;
  std::uint64_t seed = 0;
};

std::vector<space::ArchSpec> sample_specs(const space::SearchSpace& sp, const std::vector<int>& resolutions,
                                          int count, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<space::ArchSpec> specs;
  for (int i = 0; i < count; ++i) {
    space::Subnet subnet = space::sample_random(sp, rng);
    if (!resolutions.empty()) subnet.resolution = resolutions[rng.below(resolutions.size())];
    specs.push_back(space::build_arch_spec(sp, subnet));
  }
  return specs;
}

struct SubnetRow {
  std::string subnet;
  int resolution = 0;
  double mflops = 0, fp32_ms = 0, int8_ms = 0, int8_cv = 0, predicted_ms = 0, int8_min_ms = 0;
  double drift = 1.0;  // the anchor network's latency now over its latency when the correction was fitted
};

// Resumes from the CSV a killed run left: rows are deterministic for (space, seed, count), so finished ones
// are kept as long as they name the same subnets.
std::vector<SubnetRow> load_rows(const fs::path& csv, const std::vector<space::ArchSpec>& specs) {
  std::vector<SubnetRow> rows;
  if (!fs::exists(csv)) return rows;
  const std::string text = read_text_file(csv.string());
  size_t pos = text.find('\n');
  while (pos != std::string::npos && pos + 1 < text.size() && rows.size() < specs.size()) {
    const size_t end = text.find('\n', pos + 1);
    const std::string line = text.substr(pos + 1, end - pos - 1);
    pos = end;
    if (line.empty()) continue;
    SubnetRow r;
    char subnet[4096];
    if (std::sscanf(line.c_str(), "%4095[^,],%d,%lf,%lf,%lf,%lf,%lf,%lf,%lf", subnet, &r.resolution,
                    &r.mflops, &r.fp32_ms, &r.int8_ms, &r.int8_cv, &r.predicted_ms, &r.int8_min_ms,
                    &r.drift) < 9 ||
        subnet != specs[rows.size()].subnet) {
      std::fprintf(stderr, "%s does not match this run (other space/seed?): starting over\n", csv.c_str());
      return {};
    }
    r.subnet = subnet;
    rows.push_back(r);
  }
  return rows;
}

void save_rows(const fs::path& csv, const std::vector<SubnetRow>& rows) {
  std::string text = "subnet,resolution,mflops,fp32_ms,int8_ms,int8_cv,predicted_int8_ms,int8_min_ms,drift\n";
  for (const auto& r : rows) {
    text += fmt::format("{},{},{:.3f},{:.4f},{:.4f},{:.4f},{:.4f},{:.4f},{:.4f}\n", r.subnet, r.resolution,
                        r.mflops, r.fp32_ms, r.int8_ms, r.int8_cv, r.predicted_ms, r.int8_min_ms, r.drift);
  }
  write_file_atomic(csv.string(), text);
}

void run_profile_subnets(const ProtocolArgs& p, const SubnetArgs& a, bool as_json) {
  const auto sp = space::parse_space_or_published(a.space);
  if (a.count < 2) fail("--count must be at least 2, got {}", a.count);
  const auto specs = sample_specs(sp, a.resolutions, a.count, a.seed);
  fs::create_directories(a.out_dir);
  const fs::path csv = fs::path(a.out_dir) / "subnets.csv";
  const auto options = p.options();
  const runtime::ProfileKey key = runtime::this_machine(p.threads, "int8");
  const Statistic statistic = parse_statistic(a.statistic);

  std::optional<LatencyLut> lut;
  // A 2-core VM's speed drifts by up to ~20% over minutes. An anchor network timed next to every
  // measurement tracks that drift, so the predictor's own error can be told apart from the machine's.
  std::optional<space::ArchSpec> anchor;
  double anchor_ref = 0;
  auto time_anchor = [&] {
    return pick(time_arch(*anchor, runtime::Precision::kInt8, p.threads, options).timing, statistic);
  };
  if (!a.lut.empty()) {
    lut = fs::exists(a.lut) ? LatencyLut::load(a.lut, key) : LatencyLut(key);
    lut->set_statistic(statistic);
    // Calibration networks for the correction are drawn with another seed: never the validation set.
    const auto calibration = sample_specs(sp, a.resolutions, a.calibration, a.seed + 1000003);
    auto all = specs;
    all.insert(all.end(), calibration.begin(), calibration.end());
    const auto blocks = distinct_blocks(all);
    const size_t measured = fill_and_save(*lut, blocks, options, a.lut);
    std::fprintf(stderr, "latency LUT: %zu distinct blocks, %zu measured now, %zu reused\n", blocks.size(),
                 measured, blocks.size() - measured);
    anchor = calibration.front();
    anchor_ref = time_anchor();
    std::vector<double> measured_ms;
    ProgressLine calibration_progress("calibration networks", a.calibration, "nets");
    for (const auto& spec : calibration) {
      const double speed = anchor_ref / time_anchor();
      measured_ms.push_back(
          speed * pick(time_arch(spec, runtime::Precision::kInt8, p.threads, options).timing, statistic));
      calibration_progress.update(static_cast<std::int64_t>(measured_ms.size()));
    }
    calibration_progress.finish();
    lut->fit_correction(calibration, measured_ms);
    lut->save(a.lut);
    std::fprintf(stderr, "correction: global slope %.4f, intercept %.4f ms (from %d networks)\n",
                 lut->global_slope(), lut->intercept(), a.calibration);
  }

  auto rows = load_rows(csv, specs);
  if (!rows.empty())
    std::fprintf(stderr, "resuming: %zu of %d subnets already measured\n", rows.size(), a.count);
  ProgressLine progress("profile subnets", a.count, "subnets");
  for (size_t i = rows.size(); i < specs.size(); ++i) {
    const auto& spec = specs[i];
    SubnetRow r;
    r.subnet = spec.subnet;
    r.resolution = spec.resolution;
    r.mflops = static_cast<double>(spec.macs()) / 1e6;
    r.fp32_ms = time_arch(spec, runtime::Precision::kFp32, p.threads, options).timing.median_ms;
    if (anchor) r.drift = time_anchor() / anchor_ref;
    const auto int8 = time_arch(spec, runtime::Precision::kInt8, p.threads, options).timing;
    r.int8_ms = int8.median_ms;
    r.int8_cv = int8.cv;
    r.int8_min_ms = int8.min_ms;
    r.predicted_ms = lut ? lut->predict(spec) : 0.0;
    rows.push_back(r);
    save_rows(csv, rows);
    progress.update(static_cast<std::int64_t>(rows.size()), fmt::format("int8 {:.2f} ms", r.int8_ms));
  }
  progress.finish();

  std::vector<double> flops, fp32, int8, predicted;
  for (const auto& r : rows) {
    flops.push_back(r.mflops), fp32.push_back(r.fp32_ms), int8.push_back(r.int8_ms),
        predicted.push_back(r.predicted_ms);
  }
  json summary = {{"machine", machine_json(p.threads)},
                  {"space", sp.encode()},
                  {"count", rows.size()},
                  {"seed", a.seed},
                  {"kendall_tau_flops_vs_int8", kendall_tau(flops, int8)},
                  {"kendall_tau_fp32_vs_int8", kendall_tau(fp32, int8)},
                  {"kendall_tau_flops_vs_fp32", kendall_tau(flops, fp32)}};
  std::string text =
      machine_line(p.threads) + "\n" +
      fmt::format(
          "{} random subnets of {}\nKendall tau FLOPs vs INT8 latency: {:.3f}\n"
          "Kendall tau FP32 vs INT8 latency:  {:.3f}\nKendall tau FLOPs vs FP32 latency: {:.3f}\n",
          rows.size(), sp.encode(), summary["kendall_tau_flops_vs_int8"].get<double>(),
          summary["kendall_tau_fp32_vs_int8"].get<double>(),
          summary["kendall_tau_flops_vs_fp32"].get<double>());
  ScatterSeries fl{"FLOPs vs INT8", {}}, fp{"FP32 vs INT8", {}};
  for (const auto& r : rows)
    fl.points.emplace_back(r.mflops, r.int8_ms), fp.points.emplace_back(r.fp32_ms, r.int8_ms);
  write_file_atomic((fs::path(a.out_dir) / "flops_vs_int8.svg").string(),
                    scatter_svg("FLOPs vs INT8 latency", "MFLOPs", "INT8 latency (ms)", {fl}));
  write_file_atomic((fs::path(a.out_dir) / "fp32_vs_int8.svg").string(),
                    scatter_svg("FP32 vs INT8 latency", "FP32 latency (ms)", "INT8 latency (ms)", {fp}));
  if (lut) {
    ScatterSeries raw_points{"as predicted", {}}, adjusted_points{"x machine drift (anchor)", {}};
    for (const bool adjust : {false, true}) {
      int within = 0;
      double se = 0, spe = 0;
      for (const auto& r : rows) {
        const double measured = statistic == Statistic::kMin ? r.int8_min_ms : r.int8_ms;
        const double predicted = r.predicted_ms * (adjust ? r.drift : 1.0);
        const double err = (predicted - measured) / measured;
        within += std::fabs(err) <= 0.10;
        se += (predicted - measured) * (predicted - measured);
        spe += err * err;
        (adjust ? adjusted_points : raw_points).points.emplace_back(measured, predicted);
      }
      const double n = static_cast<double>(rows.size());
      summary[adjust ? "predictor_drift_adjusted" : "predictor"] = {
          {"within_10pct", within / n},          {"rmse_ms", std::sqrt(se / n)},
          {"rmspe", std::sqrt(spe / n)},         {"statistic", a.statistic},
          {"global_slope", lut->global_slope()}, {"intercept", lut->intercept()},
          {"lut_entries", lut->size()}};
      text += fmt::format(
          "predictor{} ({} of runs): {:.1f}% within +-10%, RMSE {:.3f} ms, RMSPE {:.2f}% ({} LUT "
          "entries)\n",
          adjust ? ", drift-adjusted" : "", a.statistic, 100.0 * within / n, std::sqrt(se / n),
          100.0 * std::sqrt(spe / n), lut->size());
    }
    write_file_atomic((fs::path(a.out_dir) / "predicted_vs_measured.svg").string(),
                      scatter_svg("INT8 latency: LUT prediction vs measurement", "measured (ms)",
                                  "predicted (ms)", {raw_points, adjusted_points}, true));
  }
  std::printf("%s", as_json ? (summary.dump(2) + "\n").c_str() : text.c_str());
  write_outputs(a.out_dir, "summary", summary, text);
}

void run_lut_build(const ProtocolArgs& p, const std::string& space_text, std::vector<int> resolutions,
                   const std::string& out, const std::string& precision, const std::string& activations) {
  const auto sp = space::parse_space_or_published(space_text);
  if (resolutions.empty()) resolutions = sp.hyperspace().resolutions;
  const runtime::ProfileKey key =
      runtime::this_machine(p.threads, runtime::to_string(runtime::parse_precision(precision)), activations);
  LatencyLut lut = fs::exists(out) ? LatencyLut::load(out, key) : LatencyLut(key);
  const auto blocks = enumerate_blocks(sp, resolutions);
  std::fprintf(stderr, "%s\n%s: %zu distinct blocks at %zu resolution(s); %zu already in %s\n",
               machine_line(p.threads).c_str(), sp.encode().c_str(), blocks.size(), resolutions.size(),
               lut.size(), out.c_str());
  const size_t measured = fill_and_save(lut, blocks, p.options(), out);
  std::printf("%s: %zu entries (%zu measured now)\n", out.c_str(), lut.size(), measured);
}

}  // namespace

CLI::App& add_profile_commands(CLI::App& app) {
  auto* profile = app.add_subcommand("profile", "Measure FP32 and INT8 latency on this CPU (oneDNN engine)");
  profile->require_subcommand(1);

  static ProtocolArgs protocol;
  static std::string out_dir;
  static bool as_json = false;
  auto* ops = profile->add_subcommand(
      "ops", "INT8 speedup of Conv/DWConv/SE/Hardswish/Swish at MobileNetV3-Large shapes");
  add_protocol_options(ops, protocol);
  ops->add_option("--out", out_dir, "also write ops.{json,txt} into this directory");
  ops->add_flag("--json", as_json, "print JSON");
  ops->callback([] { run_profile_ops(protocol, out_dir, as_json); });

  static std::vector<std::string> models;
  auto* zoo =
      profile->add_subcommand("models", "FP32/INT8 latency of the published SEQnets and MobileNet baselines");
  add_protocol_options(zoo, protocol);
  zoo->add_option("--models", models, "only these (e.g. SEQnet@vnni-A0 mobilenet_v3_large)");
  zoo->add_option("--out", out_dir, "also write models.{json,txt} into this directory");
  zoo->add_flag("--json", as_json, "print JSON");
  zoo->callback([] { run_profile_models(protocol, models, out_dir, as_json); });

  static SubnetArgs subnets;
  auto* sub = profile->add_subcommand(
      "subnets",
      "Random subnets: FLOPs vs FP32 vs INT8 latency (Kendall tau) and, with --lut, the predictor's error");
  add_protocol_options(sub, protocol);
  sub->add_option("--space", subnets.space, "space encoding or published name")->required();
  sub->add_option("--count", subnets.count, "random subnets to measure");
  sub->add_option("--resolutions", subnets.resolutions, "draw resolutions from these (default: the space's)");
  sub->add_option("--lut", subnets.lut,
                  "latency LUT file: filled with what is missing, then used to predict");
  sub->add_option("--calibration", subnets.calibration,
                  "extra subnets (another seed) that fit the LUT correction");
  sub->add_option("--seed", subnets.seed, "sampling seed");
  sub->add_option("--statistic", subnets.statistic,
                  "median (the protocol) or min of the timed runs, for LUT and measurement");
  sub->add_option("--out", subnets.out_dir,
                  "directory for subnets.csv, summary.{json,txt} and the SVG plots");
  sub->add_flag("--json", as_json, "print JSON");
  sub->callback([] { run_profile_subnets(protocol, subnets, as_json); });

  static std::string lut_space, lut_out, lut_precision = "int8", lut_activations = "symmetric";
  static std::vector<int> lut_resolutions;
  auto* lut = app.add_subcommand("latency-lut", "Block-level latency LUT on this machine");
  lut->require_subcommand(1);
  auto* build = lut->add_subcommand(
      "build", "Measure every block a space can produce (resumable: existing entries are kept)");
  add_protocol_options(build, protocol);
  build->add_option("--space", lut_space, "space encoding or published name")->required();
  build->add_option("--resolutions", lut_resolutions, "input resolutions (default: the space's)");
  build->add_option("--precision", lut_precision, "int8 or fp32");
  build->add_option("--out", lut_out, "LUT file (JSON)")->required();
  build->add_option(
      "--activations", lut_activations,
      "symmetric (calibrated, zero points 0) or asymmetric (LSQ+-trained: signed tensors u8 with a "
      "zero point)");
  build->callback(
      [] { run_lut_build(protocol, lut_space, lut_resolutions, lut_out, lut_precision, lut_activations); });
  return *profile;
}

}  // namespace qnas::cli
