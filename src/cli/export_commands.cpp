// `qnas export onnx` and `qnas profile ort`: the ONNX (FP32 / INT8 QDQ) export and the cross-check against
// ONNX Runtime (tools/ort-harness, onnxruntime-node) on latency and outputs.
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/deploy.h"
#include "cli/format.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "export/onnx_export.h"
#include "export/ort_harness.h"
#include "latency/profiling.h"
#include "runtime/reference.h"
#include "space/baselines.h"
#include "space/published.h"

namespace qnas::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct ModelChoice {
  std::string model, space, subnet;
  int resolution = 0;
};

space::ArchSpec resolve_model(const ModelChoice& m) {
  if (!m.model.empty()) return space::find_model(m.model, m.resolution);
  if (m.space.empty() || m.subnet.empty()) fail("give --model NAME, or --space and --subnet");
  return space::build_arch_spec(space::parse_space_or_published(m.space), space::Subnet::parse(m.subnet),
                                m.resolution);
}

std::vector<std::vector<float>> random_images(const runtime::Program& p, int count, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<float>> images(static_cast<size_t>(count));
  for (auto& image : images) {
    image.resize(static_cast<size_t>(p.in_channels) * p.resolution * p.resolution);
    for (auto& x : image) x = static_cast<float>(rng.uniform() * 4.0 - 2.0);
  }
  return images;
}

// Weights are random until trained checkpoints exist; scales come from calibrating on random images, so
// both engines run the same integers.
struct Prepared {
  runtime::Program program;
  runtime::Weights weights;
  runtime::QuantParams quant;
};

Prepared prepare(const space::ArchSpec& spec, std::uint64_t seed) {
  Prepared p;
  p.program = runtime::lower(spec);
  p.weights = runtime::random_weights(p.program, seed);
  p.quant = runtime::calibrate(p.program, p.weights, random_images(p.program, 2, seed + 17));
  return p;
}

void run_export(const ModelChoice& m, const std::string& precision, const std::string& out,
                std::uint64_t seed) {
  const auto spec = resolve_model(m);
  const Prepared p = prepare(spec, seed);
  exporter::OnnxOptions options;
  options.precision = runtime::parse_precision(precision);
  exporter::write_onnx(out, p.program, p.weights, &p.quant, options);
  std::printf("wrote %s (%s, %s, input 1x%dx%dx%d, passes the ONNX checker)\n", out.c_str(),
              spec.subnet.c_str(), precision.c_str(), p.program.in_channels, p.program.resolution,
              p.program.resolution);
}

}  // namespace

namespace {

struct Agreement {
  double max_rel_diff = 0;  // max |ours - ort| / max |ours| over images
  int same_top1 = 0;
  int images = 0;
};

Agreement compare_outputs(const std::vector<std::vector<float>>& ours, const json& theirs) {
  Agreement a;
  for (size_t i = 0; i < ours.size(); ++i) {
    const auto other = theirs.at("outputs").at(i).get<std::vector<float>>();
    if (other.size() != ours[i].size())
      fail("ORT output has {} values, ours {}", other.size(), ours[i].size());
    float range = 1e-12f, diff = 0;
    size_t top_ours = 0, top_theirs = 0;
    for (size_t k = 0; k < other.size(); ++k) {
      range = std::max(range, std::fabs(ours[i][k]));
      diff = std::max(diff, std::fabs(ours[i][k] - other[k]));
      if (ours[i][k] > ours[i][top_ours]) top_ours = k;
      if (other[k] > other[top_theirs]) top_theirs = k;
    }
    a.max_rel_diff = std::max(a.max_rel_diff, static_cast<double>(diff / range));
    a.same_top1 += top_ours == top_theirs;
    a.images++;
  }
  return a;
}

struct OrtArgs {
  std::vector<std::string> models;
  int threads = 1, runs = 50, images = 8;
  std::string out_dir = "runs/profile-ort";
  std::string harness = exporter::default_ort_harness();
};

void run_profile_ort(const OrtArgs& a) {
  const std::vector<std::string> models = a.models.empty() ? space::model_names() : a.models;
  fs::create_directories(a.out_dir);
  const latency::MeasureOptions options{10, a.runs, 0.0};
  Table table({"model", "precision", "ours ms", "ORT ms", "ours/ORT", "top-1 agree", "max rel diff"});
  json j = {{"machine", runtime::to_json(runtime::this_machine(a.threads, "int8"))},
            {"models", json::array()}};
  ProgressLine progress("profile ort", static_cast<std::int64_t>(models.size()), "models");
  for (size_t m = 0; m < models.size(); ++m) {
    const auto spec = space::find_model(models[m]);
    const Prepared p = prepare(spec, 1);
    const auto images = random_images(p.program, a.images, 99);
    std::string raw;
    for (const auto& image : images)
      raw.append(reinterpret_cast<const char*>(image.data()), image.size() * sizeof(float));
    const fs::path images_file = fs::path(a.out_dir) / "images.f32";
    write_file_atomic(images_file.string(), raw);
    for (auto precision : {runtime::Precision::kFp32, runtime::Precision::kInt8}) {
      const std::string name = fmt::format("{}.{}.onnx", models[m], runtime::to_string(precision));
      const fs::path model_file = fs::path(a.out_dir) / name;
      exporter::OnnxOptions export_options;
      export_options.precision = precision;
      exporter::write_onnx(model_file.string(), p.program, p.weights, &p.quant, export_options);
      runtime::OnednnPlan plan(p.program, p.weights, precision, a.threads, &p.quant);
      std::vector<std::vector<float>> ours;
      for (const auto& image : images) ours.push_back(plan.run(image));
      plan.run(images[0]);
      const auto timing = runtime::measure([&] { plan.execute(); }, options);
      const json ort = exporter::run_ort_harness(a.harness, model_file.string(), images_file.string(),
                                                 p.program, a.threads, a.runs);
      const Agreement agree = compare_outputs(ours, ort);
      const double ratio = timing.median_ms / ort.at("median_ms").get<double>();
      table.add_row({models[m], runtime::to_string(precision), fmt::format("{:.2f}", timing.median_ms),
                     fmt::format("{:.2f}", ort.at("median_ms").get<double>()), fmt::format("{:.2f}", ratio),
                     fmt::format("{}/{}", agree.same_top1, agree.images),
                     fmt::format("{:.4f}", agree.max_rel_diff)});
      j["models"].push_back({{"model", models[m]},
                             {"precision", runtime::to_string(precision)},
                             {"ours", runtime::to_json(timing)},
                             {"ort_median_ms", ort.at("median_ms")},
                             {"ort_p90_ms", ort.at("p90_ms")},
                             {"ort_cv", ort.at("cv")},
                             {"ort_engine", ort.at("engine")},
                             {"ours_over_ort", ratio},
                             {"same_top1", agree.same_top1},
                             {"images", agree.images},
                             {"max_rel_diff", agree.max_rel_diff}});
    }
    progress.update(static_cast<std::int64_t>(m + 1), models[m]);
  }
  progress.finish();
  const std::string text = fmt::format(
      "machine: {} | {} threads | batch 1 | ours: {} | ORT: {}\n{}", runtime::cpu_model(), a.threads,
      runtime::onednn_version(), j["models"].empty() ? "-" : j["models"][0]["ort_engine"].get<std::string>(),
      table.render());
  std::printf("%s", text.c_str());
  write_json_atomic((fs::path(a.out_dir) / "ort.json").string(), j);
  write_file_atomic((fs::path(a.out_dir) / "ort.txt").string(), text);
}

}  // namespace

void add_export_commands(CLI::App& app, CLI::App& profile) {
  static ModelChoice model;
  static std::string precision = "int8", out;
  static std::uint64_t seed = 1;
  static bool int4_weights = false;
  auto* exp = app.add_subcommand("export", "Export a network");
  exp->require_subcommand(1);
  auto* onnx = exp->add_subcommand(
      "onnx", "ONNX, FP32 or INT8 QDQ: a trained run (--run-dir) or a network with random weights");
  onnx->add_option("--model", model.model,
                   "published SEQnet or baseline name (e.g. SEQnet@vnni-A0, mobilenet_v2)");
  onnx->add_option("--space", model.space, "space encoding or published name (with --subnet)");
  onnx->add_option("--subnet", model.subnet, "subnet encoding (with --space)");
  onnx->add_option("--resolution", model.resolution, "input size (default: the subnet's)");
  onnx->add_option("--precision", precision, "fp32 or int8 (QDQ)");
  onnx->add_option("--out", out, "output .onnx file")->required();
  onnx->add_option("--seed", seed, "weight seed (random weights: --model or --space)");
#ifdef QNAS_HAVE_DEPLOY
  static DeployArgs trained;
  add_deploy_options(*onnx, trained, /*with_subnet=*/false);
  onnx->add_flag(
      "--int4-weights", int4_weights,
      "with --run-dir and --precision int8: weights trained at 4 bits or fewer stored as INT4 (opset "
      "21; size only, the same codes)");
  onnx->callback([] {
    if (trained.run_dir.empty()) {
      if (int4_weights)
        fail("--int4-weights needs a trained run (--run-dir) with weights of 4 bits or fewer");
      return run_export(model, precision, out, seed);
    }
    if (!model.model.empty() || !model.space.empty())
      fail("--run-dir exports a trained run: drop --model/--space");
    trained.subnet = model.subnet;  // --subnet: for a supernet run, the subnet to export (default the max)
    export_trained_onnx(trained, precision, out, int4_weights);
  });
#else
  onnx->callback([] { run_export(model, precision, out, seed); });
#endif

  static OrtArgs ort;
  auto* cmd =
      profile.add_subcommand("ort", "Our INT8/FP32 engine against ONNX Runtime on the same exported models");
  cmd->add_option("--models", ort.models, "models (default: all published SEQnets and baselines)");
  cmd->add_option("--threads", ort.threads, "threads for both engines");
  cmd->add_option("--runs", ort.runs, "timed runs (at least 50)");
  cmd->add_option("--images", ort.images, "random images whose outputs are compared");
  cmd->add_option("--out", ort.out_dir, "directory for the models, ort.json and ort.txt");
  cmd->add_option("--harness", ort.harness, "path of tools/ort-harness/ort_bench.js");
  cmd->callback([] {
    if (ort.runs < 50) fail("--runs {} is below the protocol's minimum of 50", ort.runs);
    run_profile_ort(ort);
  });
}

}  // namespace qnas::cli
