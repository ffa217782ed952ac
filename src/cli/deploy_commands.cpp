// `qnas eval` and `qnas export onnx --run-dir`: a trained run directory deployed. Accuracy of the network
// where it will run (LibTorch fake-quant, the oneDNN INT8 engine, ONNX Runtime on the exported file), the
// top-1 agreement between engines, batch-1 INT8 latency, and the ONNX file a deployer ships.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/format.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/deploy.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "data/fashion_mnist.h"
#include "data/loader.h"
#include "deploy/deploy.h"
#include "deploy/engines.h"
#include "export/onnx_export.h"
#include "export/ort_harness.h"
#include "runtime/measure.h"
#include "runtime/onednn_plan.h"

namespace qnas::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The network of a run, lowered for the engines; FP32 runs are calibrated on the first 256 training images.
deploy::DeployedModel lower_for_engines(nn::StaticNetImpl& net, const data::ImageDataset& train,
                                        const data::Normalize& normalize, const DeployArgs& a) {
  deploy::Calibration method = deploy::Calibration::kMinMax;
  if (a.calibration == "percentile") {
    if (!(a.percentile > 50.0 && a.percentile <= 100.0))
      fail("--percentile {} is outside (50, 100]: it is the share of |x| kept inside the range",
           a.percentile);
    method = deploy::Calibration::kPercentile;
  } else if (a.calibration != "minmax") {
    fail("unknown calibration '{}': use minmax or percentile", a.calibration);
  }
  return deploy::lower_for_engines(net, train, normalize, method, a.percentile);
}

struct EvalArgs : DeployArgs {
  std::string engine = "all", split = "test";
  std::string harness = exporter::default_ort_harness();
  int threads = 1, runs = 50;
  std::int64_t limit = 0;
  bool json_output = false;
};

// The data set a run was trained on; today `qnas train` trains on Fashion-MNIST only.
struct EvalData {
  data::ImageDataset train, eval;
  std::vector<std::int64_t> indices;
  data::Normalize normalize = data::Normalize::fashion_mnist();
};

EvalData load_eval_data(const deploy::TrainedRun& run, const EvalArgs& a) {
  EvalData d;
  d.train = data::load_fashion_mnist(a.data_dir, "train");
  if (a.split == "test") {
    d.eval = data::load_fashion_mnist(a.data_dir, "test");
    for (std::int64_t i = 0; i < d.eval.count; ++i) d.indices.push_back(i);
  } else if (a.split == "heldout") {
    // The trainer trains on the first train_limit images; the rest of the training file is held out.
    const std::int64_t used = run.config.train_limit > 0 ? run.config.train_limit : d.train.count;
    if (used >= d.train.count) {
      fail("run {} trained on all {} training images, so none are held out: use --split test", a.run_dir,
           d.train.count);
    }
    d.eval = d.train;
    for (std::int64_t i = used; i < d.train.count; ++i) d.indices.push_back(i);
  } else {
    fail("unknown split '{}': use test or heldout", a.split);
  }
  if (a.limit > 0 && static_cast<std::int64_t>(d.indices.size()) > a.limit) d.indices.resize(a.limit);
  return d;
}

std::vector<std::string> parse_engines(const std::string& engine) {
  if (engine == "all") return {"fakequant", "onednn", "ort"};
  if (engine == "fakequant" || engine == "onednn" || engine == "ort") return {engine};
  fail("unknown engine '{}': use fakequant, onednn, ort or all", engine);
}

void run_eval(const EvalArgs& a) {
  const std::vector<std::string> engines = parse_engines(a.engine);
  if (a.run_dir.empty()) fail("--run-dir is required");
  deploy::TrainedRun run = deploy::load_run(a.run_dir);
  // A finished run on a read-only disk is still evaluated: the results are printed, not saved, and it says
  // so.
  std::string not_saved_because;
  try {
    require_writable_directory(a.run_dir, "--run-dir");
  } catch (const Error& e) {
    not_saved_because = e.what();
  }
  const fs::path ort_work = not_saved_because.empty()
                                ? fs::path(a.run_dir) / "deploy"
                                : fs::temp_directory_path() / fmt::format("qnas-deploy-{}", ::getpid());
  const EvalData d = load_eval_data(run, a);
  nn::StaticNet net = deploy::network_to_deploy(run, a.subnet, d.train, d.normalize, a.bits_from);
  const deploy::DeployedModel m = lower_for_engines(*net, d.train, d.normalize, a);
  std::vector<std::int64_t> labels;
  for (auto i : d.indices) labels.push_back(d.eval.label(i));

  // Fake-quant is the reference for agreement, so it runs whenever another engine does.
  deploy::EngineResult fakequant = deploy::run_fakequant(*net, d.eval, d.indices, d.normalize);
  deploy::score(fakequant, labels, nullptr);
  // The engines' inputs (normalised, resized to the network's resolution) only when an engine needs them.
  std::vector<std::vector<float>> images;
  if (engines != std::vector<std::string>{"fakequant"})
    images = deploy::normalised_images(d.eval, d.indices, d.normalize, m.spec.resolution);
  std::vector<deploy::EngineResult> results;
  for (const auto& e : engines) {
    if (e == "fakequant") {
      results.push_back(fakequant);
      continue;
    }
    deploy::EngineResult r = e == "onednn"
                                 ? deploy::run_onednn(m, images, a.threads, a.runs)
                                 : deploy::run_ort(m, images, a.harness, a.threads, a.runs, ort_work);
    deploy::score(r, labels, &fakequant);
    results.push_back(std::move(r));
  }

  json out = {{"run_dir", a.run_dir},
              {"network", run.identity},
              {"subnet", m.spec.subnet},
              {"space", m.spec.space},
              {"mflops", static_cast<double>(m.spec.macs()) / 1e6},
              {"split", a.split},
              {"images", d.indices.size()},
              {"quantization", m.quant_source},
              {"threads", a.threads},
              {"machine", runtime::to_json(runtime::this_machine(a.threads, "int8"))},
              {"engines", json::array()}};
  std::string table =
      fmt::format("{} ({}, {:.1f} MFLOPs), {} split, {} images, INT8 from {}\n\n", m.spec.subnet,
                  run.is_supernet() ? "supernet subnet" : "trained network",
                  static_cast<double>(m.spec.macs()) / 1e6, a.split, d.indices.size(), m.quant_source);
  table +=
      "| engine | top-1 | top-5 | top-1 agreement with fake-quant | INT8 latency median (p90), batch 1 |\n";
  table += "| --- | ---: | ---: | ---: | ---: |\n";
  for (const auto& r : results) {
    json e = {{"engine", r.engine}, {"top1", r.top1}, {"top5", r.top5}};
    if (r.agreement >= 0) e["top1_agreement_with_fakequant"] = r.agreement;
    if (r.median_ms >= 0) e["latency_ms"] = {{"median", r.median_ms}, {"p90", r.p90_ms}};
    if (!r.implementations.empty()) e["implementations"] = r.implementations;
    for (const auto& [name, count] : r.implementations) {
      // A reference kernel is correct but slow: the latency then says more about oneDNN than the network.
      if (name.rfind("ref", 0) == 0)
        table += fmt::format("note: {} oneDNN primitive(s) ran {}\n", count, name);
    }
    out["engines"].push_back(e);
    table += fmt::format(
        "| {} | {:.2f}% | {:.2f}% | {} | {} |\n", r.engine, 100 * r.top1, 100 * r.top5,
        r.agreement >= 0 ? fmt::format("{:.2f}%", 100 * r.agreement) : std::string("-"),
        r.median_ms >= 0 ? fmt::format("{:.3f} ms ({:.3f})", r.median_ms, r.p90_ms) : std::string("-"));
  }
  // One file per (split, engines, subnet), so another evaluation of the same run never overwrites this one.
  std::string stem = fmt::format("eval-{}-{}", a.split, a.engine);
  if (!a.subnet.empty()) stem += fmt::format("-subnet-{:08x}", stable_hash(a.subnet) & 0xffffffffu);
  if (!a.bits_from.empty())
    stem += fmt::format("-bits-{:08x}", stable_hash(fs::absolute(a.bits_from).string()) & 0xffffffffu);
  if (not_saved_because.empty()) write_json_atomic(fs::path(a.run_dir) / (stem + ".json"), out);
  if (a.json_output) {
    std::printf("%s\n", out.dump(2).c_str());
  } else if (not_saved_because.empty()) {
    std::printf("%s\nwritten: %s\n", table.c_str(), (fs::path(a.run_dir) / (stem + ".json")).c_str());
  } else {
    std::printf("%s\n", table.c_str());
  }
  if (!not_saved_because.empty()) {
    std::error_code ignored;
    fs::remove_all(ort_work, ignored);
    std::fprintf(stderr, "qnas: results not saved: %s\n", not_saved_because.c_str());
  }
}

}  // namespace

void add_deploy_options(CLI::App& cmd, DeployArgs& a, bool with_subnet) {
  cmd.add_option(
      "--run-dir", a.run_dir,
      "a finished `qnas train` run: its weights with BN folded, its trained scales and zero points");
  if (with_subnet) {
    cmd.add_option("--subnet", a.subnet, "for a supernet run: the subnet encoding (default: the max subnet)");
  }
  cmd.add_option("--data-dir", a.data_dir,
                 "Fashion-MNIST directory (BN recalibration, calibration, evaluation)");
  cmd.add_option("--calibration", a.calibration,
                 "FP32 runs: minmax | percentile (QAT runs use their own scales)");
  cmd.add_option("--percentile", a.percentile,
                 "with --calibration percentile: the share of |x| inside the range");
  cmd.add_option("--bits-from", a.bits_from,
                 "per-layer bits (assignment.json of `qnas mixed-precision`, or its directory) for a run "
                 "trained at 8 bits, keeping its trained ranges");
}

void export_trained_onnx(const DeployArgs& a, const std::string& precision, const std::string& out,
                         bool int4_weights) {
  deploy::TrainedRun run = deploy::load_run(a.run_dir);
  const data::ImageDataset train = data::load_fashion_mnist(a.data_dir, "train");
  const data::Normalize normalize = data::Normalize::fashion_mnist();
  nn::StaticNet net = deploy::network_to_deploy(run, a.subnet, train, normalize, a.bits_from);
  const deploy::DeployedModel m = lower_for_engines(*net, train, normalize, a);
  exporter::OnnxOptions options;
  options.precision = runtime::parse_precision(precision);
  options.metadata = deploy::export_metadata(m, train, normalize, precision);
  options.int4_weights = int4_weights;
  exporter::write_onnx(out, m.program, m.weights, &m.quant, options);
  std::printf("wrote %s (%s, %s%s, INT8 from %s, input 1x%d, BN folded, %s)\n", out.c_str(),
              m.spec.subnet.c_str(), precision.c_str(),
              int4_weights ? " with INT4 weights where they fit" : "", m.quant_source.c_str(),
              m.program.resolution,
              int4_weights ? "its INT8 form passes the ONNX checker, opset 21" : "passes the ONNX checker");
}

void add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand(
      "eval",
      "accuracy of a trained run where it will run: fake-quant, the oneDNN INT8 engine, ONNX Runtime");
  add_deploy_options(*cmd, *a);
  cmd->get_option("--run-dir")->required();
  cmd->add_option("--engine", a->engine, "fakequant | onednn | ort | all");
  cmd->add_option("--split", a->split, "test | heldout (training images the run did not train on)");
  cmd->add_option("--threads", a->threads, "threads of the INT8 engines (latency is batch 1)");
  cmd->add_option("--runs", a->runs, "timed runs of the latency protocol (at least 50)");
  cmd->add_option("--limit", a->limit, "evaluate the first N images only (0 = all)");
  cmd->add_option("--harness", a->harness, "path of tools/ort-harness/ort_bench.js");
  cmd->add_flag("--json", a->json_output, "print the result as JSON");
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace qnas::cli
