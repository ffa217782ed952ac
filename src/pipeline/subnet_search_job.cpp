#include "pipeline/subnet_search_job.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/stats.h"
#include "data/fashion_mnist.h"
#include "data/loader.h"
#include "deploy/deploy.h"
#include "latency/latency_lut.h"
#include "latency/profiling.h"
#include "pipeline/search_plot.h"
#include "pipeline/search_support.h"
#include "runtime/onednn_plan.h"
#include "search/accuracy_predictor.h"
#include "space/arch_spec.h"
#include "space/sampling.h"

namespace qnas::pipeline {
namespace {

using nlohmann::json;
using search::Candidate;
using space::Subnet;
namespace fs = std::filesystem;

constexpr std::uint64_t kPredictorStream = 0x9e3779b97f4a7c15ull;
constexpr std::uint64_t kCalibrationNetStream = 0x51ed27052d3c9a5bull;

// --- latency: this CPU's block LUT, complete for the space, with a fitted correction
// A QAT run deploys LSQ+'s zero points, an FP32 run calibrated symmetric scales: each has its kernels.
bool deploys_zero_points(const deploy::TrainedRun& run) {
  return run.bits == 8;
}

latency::LatencyLut prepare_lut(const space::SearchSpace& space, bool asymmetric,
                                const SubnetSearchJobOptions& o) {
  const runtime::ProfileKey key =
      runtime::this_machine(o.threads, "int8", asymmetric ? "asymmetric" : "symmetric");
  latency::LatencyLut lut = fs::exists(o.latency_lut) ? latency::LatencyLut::load(o.latency_lut.string(), key)
                                                      : latency::LatencyLut(key);
  // A correction fitted for another statistic is dropped here and fitted again below.
  lut.set_statistic(latency::parse_statistic(o.statistic));
  latency::fill_and_save(lut, latency::enumerate_blocks(space, space.hyperspace().resolutions), o.measure,
                         o.latency_lut.string());
  if (!lut.has_correction()) {
    // Blocks timed alone run with hot caches; a few whole networks fix the sum (latency_lut.h).
    Rng rng(o.search.seed ^ kCalibrationNetStream);
    std::vector<space::ArchSpec> specs;
    std::vector<double> measured_ms;
    ProgressLine fit("latency correction", o.calibration_networks, "nets");
    for (int i = 0; i < o.calibration_networks; ++i) {
      specs.push_back(space::build_arch_spec(space, space::sample_random(space, rng)));
      const auto timing =
          latency::time_arch(specs.back(), runtime::Precision::kInt8, o.threads, o.measure, asymmetric);
      measured_ms.push_back(latency::pick(timing.timing, lut.statistic()));
      fit.update(i + 1);
    }
    fit.finish();
    lut.fit_correction(specs, measured_ms);
    lut.save(o.latency_lut.string());
  }
  return lut;
}

json lut_identity(const latency::LatencyLut& lut, const fs::path& path) {
  return {{"file", path.string()},       {"key", runtime::to_json(lut.key())},
          {"entries", lut.size()},       {"statistic", latency::to_string(lut.statistic())},
          {"slope", lut.global_slope()}, {"intercept", lut.intercept()}};
}

// --- the accuracy predictor: fitted on supernet evaluations of random subnets under the largest limit
struct Predictor {
  search::RidgePredictor ridge;
  search::PredictorQuality quality;
  json to_json() const {
    return {{"model", ridge.to_json()},
            {"train_subnets", quality.train},
            {"test_subnets", quality.test},
            {"kendall_tau", quality.kendall_tau},
            {"rmse", quality.rmse}};
  }
};

Predictor fit_predictor(const space::SearchSpace& space, const std::function<double(const Subnet&)>& latency,
                        const std::function<double(const Subnet&)>& heldout,
                        const SubnetSearchJobOptions& o) {
  if (o.predictor_train < 10 || o.predictor_test < 2)
    fail("--predictor-train needs at least 10 subnets and --predictor-test at least 2");
  Rng rng(o.search.seed ^ kPredictorStream);
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  const int total = o.predictor_train + o.predictor_test;
  ProgressLine progress("predictor subnets", total, "subnets");
  for (int i = 0; i < total; ++i) {
    const Subnet s = search::random_subnet_within(space, latency, o.search.limits_ms.back(), rng);
    x.push_back(search::one_hot(s, space));
    y.push_back(heldout(s));
    progress.update(i + 1);
  }
  progress.finish();
  Predictor p;
  const auto split = static_cast<std::ptrdiff_t>(o.predictor_train);
  p.ridge.fit({x.begin(), x.begin() + split}, {y.begin(), y.begin() + split});
  std::vector<double> predicted;
  for (size_t i = static_cast<size_t>(split); i < x.size(); ++i) predicted.push_back(p.ridge.predict(x[i]));
  p.quality = search::predictor_quality(predicted, {y.begin() + split, y.end()});
  p.quality.train = o.predictor_train;
  return p;
}

// With the predictor, the searched front and bests carry predicted accuracies: evaluate them for real and
// choose again among those.
void replace_with_heldout(search::SubnetSearchResult& r, const std::function<double(const Subnet&)>& heldout,
                          const std::vector<double>& limits, std::map<std::string, double>* predicted) {
  std::vector<Candidate> chosen = r.front;
  for (const auto& b : r.best) {
    if (b.found) chosen.push_back(b.best);
  }
  std::vector<Candidate> real;
  for (auto c : chosen) {
    if (std::any_of(real.begin(), real.end(), [&](const Candidate& x) { return x.subnet == c.subnet; }))
      continue;
    (*predicted)[c.subnet] = c.accuracy;
    c.accuracy = heldout(Subnet::parse(c.subnet));
    real.push_back(c);
  }
  r.front = search::front_of(real);
  r.best = search::best_per_limit(real, limits);
}

// --- the final subnets where they run
struct Deployed {
  double measured_ms = 0;
  double test_onednn = -1;
};

Deployed deploy_subnet(deploy::TrainedRun& run, const SearchData& d, const std::string& subnet,
                       const SubnetSearchJobOptions& o, latency::Statistic statistic, bool with_test) {
  nn::StaticNet net = deploy::network_to_deploy(run, subnet, d.train, d.normalize);
  const auto calibration =
      deploy::normalised_images(d.train, index_range(0, std::min<std::int64_t>(256, d.train.count)),
                                d.normalize, net->spec().resolution);
  const deploy::DeployedModel m = deploy::lower_network(*net, calibration);
  runtime::OnednnPlan plan(m.program, m.weights, runtime::Precision::kInt8, o.threads, &m.quant);
  Deployed r;
  if (with_test) {
    const auto images =
        deploy::normalised_images(d.test, index_range(0, d.test.count), d.normalize, m.spec.resolution);
    std::int64_t correct = 0;
    for (std::int64_t i = 0; i < d.test.count; ++i) {
      const auto logits = plan.run(images[static_cast<size_t>(i)]);
      correct += std::max_element(logits.begin(), logits.end()) - logits.begin() == d.test.label(i);
    }
    r.test_onednn = static_cast<double>(correct) / static_cast<double>(d.test.count);
  }
  r.measured_ms = latency::pick(runtime::measure([&] { plan.execute(); }, o.measure), statistic);
  return r;
}

json candidate_json(const Candidate& c, const std::map<std::string, double>& predicted) {
  json j = {{"subnet", c.subnet},
            {"heldout_accuracy", c.accuracy},
            {"predicted_latency_ms", c.latency_ms},
            {"mflops", c.mflops}};
  if (auto it = predicted.find(c.subnet); it != predicted.end()) j["predicted_accuracy"] = it->second;
  return j;
}

std::string percent(double v) {
  return v < 0 ? "-" : fmt::format("{:.2f}%", 100 * v);
}

}  // namespace

SubnetSearchJobResult run_subnet_search_job(SubnetSearchJobOptions o) {
  const auto start = std::chrono::steady_clock::now();
  if (o.evaluator != "supernet" && o.evaluator != "predictor")
    fail("unknown evaluator '{}': use supernet or predictor", o.evaluator);
  if (o.latency_lut.empty()) fail("--latency-lut FILE is required (created and filled when missing)");
  deploy::TrainedRun run = deploy::load_run(o.run_dir);
  if (!run.is_supernet()) {
    fail(
        "run {} trained one static network ({}), not a supernet: subnet search needs a `qnas train` supernet "
        "run",
        o.run_dir.string(), run.identity);
  }
  const space::SearchSpace& space = *run.space;
  if (o.out_dir.empty()) o.out_dir = o.run_dir / "subnet-search";
  require_writable_directory(o.out_dir, "--out");
  const SearchData d = load_search_data(run, o.data, o.data_dir, o.test_images, o.heldout_images);
  json seconds;

  auto t = std::chrono::steady_clock::now();
  const latency::LatencyLut lut = prepare_lut(space, deploys_zero_points(run), o);
  seconds["latency_lut"] = seconds_since(t);
  const std::function<double(const Subnet&)> latency = [&](const Subnet& s) {
    return lut.predict(space::build_arch_spec(space, s));
  };

  const json identity = run_identity(run, d, o.data ? o.data->train.source : o.data_dir);
  EvaluationCache cache(o.out_dir / "evaluations.json", identity);
  SupernetAccuracy supernet_heldout(run, d, d.train, d.heldout);
  const std::function<double(const Subnet&)> heldout = [&](const Subnet& s) {
    const std::string encoding = s.encode();
    if (auto hit = cache.find(encoding)) return *hit;
    const double accuracy = supernet_heldout(s);
    cache.put(encoding, accuracy);
    return accuracy;
  };

  search::SubnetObjectives objectives{heldout, latency};
  json predictor_json;
  std::optional<Predictor> predictor;
  if (o.evaluator == "predictor") {
    t = std::chrono::steady_clock::now();
    predictor = fit_predictor(space, latency, heldout, o);
    seconds["predictor"] = seconds_since(t);
    predictor_json = predictor->to_json();
    write_json_atomic(o.out_dir / "predictor.json", predictor_json);
    std::fprintf(stderr, "accuracy predictor: Kendall tau %.3f, RMSE %.2f points on %d held-out subnets\n",
                 predictor->quality.kendall_tau, 100 * predictor->quality.rmse, predictor->quality.test);
    objectives.accuracy = [&](const Subnet& s) {
      return predictor->ridge.predict(search::one_hot(s, space));
    };
  }

  auto run_search = [&](search::Algorithm algorithm) {
    search::SubnetSearchOptions so = o.search;
    so.algorithm = algorithm;
    fs::create_directories(o.out_dir / search::to_string(algorithm));
    so.checkpoint = o.out_dir / search::to_string(algorithm) / "checkpoint.json";
    so.identity = {
        {"run", identity}, {"evaluator", o.evaluator}, {"latency", lut_identity(lut, o.latency_lut)}};
    if (predictor) so.identity["predictor"] = predictor_json.at("model");
    const auto t0 = std::chrono::steady_clock::now();
    auto result = search::search_subnets(space, objectives, so);
    seconds[fmt::format("search_{}", search::to_string(algorithm))] = seconds_since(t0);
    return result;
  };
  const search::Algorithm main_algorithm = o.search.algorithm;
  search::SubnetSearchResult main = run_search(main_algorithm);
  std::optional<search::SubnetSearchResult> baseline;
  if (o.random_baseline && main_algorithm != search::Algorithm::kRandom)
    baseline = run_search(search::Algorithm::kRandom);
  std::vector<double> limits = o.search.limits_ms;
  std::sort(limits.begin(), limits.end());

  std::map<std::string, double> predicted;
  if (predictor) {
    replace_with_heldout(main, heldout, limits, &predicted);
    if (baseline) replace_with_heldout(*baseline, heldout, limits, &predicted);
  }

  // The front on the INT8 engine, with the trained scales and zero points.
  t = std::chrono::steady_clock::now();
  json front = json::array();
  int within_10 = 0;
  {
    ProgressLine progress("measure front on oneDNN INT8", static_cast<std::int64_t>(main.front.size()),
                          "subnets");
    for (const auto& c : main.front) {
      const Deployed dep = deploy_subnet(run, d, c.subnet, o, lut.statistic(), false);
      json j = candidate_json(c, predicted);
      const double error = dep.measured_ms / c.latency_ms - 1.0;
      j["measured_latency_ms"] = dep.measured_ms;
      j["prediction_error"] = error;
      within_10 += std::abs(error) <= 0.10;
      front.push_back(j);
      progress.update(static_cast<std::int64_t>(front.size()));
    }
    progress.finish();
  }
  seconds["measure_front"] = seconds_since(t);
  const double share_within =
      front.empty() ? 0.0 : static_cast<double>(within_10) / static_cast<double>(front.size());

  // The test set, once, for the best subnet per limit.
  t = std::chrono::steady_clock::now();
  SupernetAccuracy supernet_test(run, d, d.test, index_range(0, d.test.count));
  // One subnet is often the best under several limits: it is tested and deployed once.
  std::map<std::string, double> test_fakequant;
  std::map<std::string, Deployed> deployed;
  auto fakequant_on_test = [&](const std::string& subnet) {
    auto it = test_fakequant.find(subnet);
    if (it == test_fakequant.end())
      it = test_fakequant.emplace(subnet, supernet_test(Subnet::parse(subnet))).first;
    return it->second;
  };
  auto onednn_on_test = [&](const std::string& subnet) {
    auto it = deployed.find(subnet);
    if (it == deployed.end())
      it = deployed.emplace(subnet, deploy_subnet(run, d, subnet, o, lut.statistic(), true)).first;
    return it->second;
  };
  json best = json::array();
  std::string table =
      "| limit (ms) | subnet | held-out | test fake-quant | test oneDNN INT8 | predicted / measured INT8 ms "
      "| MFLOPs | "
      "random search: held-out (test) | gain over random (held-out) |\n"
      "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (size_t l = 0; l < limits.size(); ++l) {
    const auto& b = main.best[l];
    json row = {{"limit_ms", limits[l]}, {"found", b.found}};
    double test_fq = -1;
    Deployed dep;
    if (b.found) {
      row[search::to_string(main_algorithm)] = candidate_json(b.best, predicted);
      if (o.final_test) {
        test_fq = fakequant_on_test(b.best.subnet);
        dep = onednn_on_test(b.best.subnet);
        row[search::to_string(main_algorithm)]["test_accuracy_fakequant"] = test_fq;
        row[search::to_string(main_algorithm)]["test_accuracy_onednn"] = dep.test_onednn;
        row[search::to_string(main_algorithm)]["measured_latency_ms"] = dep.measured_ms;
      }
    }
    std::string random_text = "-", gain_text = "-";
    if (baseline && baseline->best[l].found) {
      const auto& rb = baseline->best[l].best;
      json rj = candidate_json(rb, predicted);
      double rtest = -1;
      if (o.final_test) {
        rtest = fakequant_on_test(rb.subnet);
        rj["test_accuracy_fakequant"] = rtest;
      }
      row["random"] = rj;
      random_text = fmt::format("{} ({})", percent(rb.accuracy), percent(rtest));
      if (b.found) {
        row["gain_over_random_heldout"] = b.best.accuracy - rb.accuracy;
        gain_text = fmt::format("{:+.2f} points", 100 * (b.best.accuracy - rb.accuracy));
      }
    }
    best.push_back(row);
    table += b.found ? fmt::format("| {:.3f} | `{}` | {} | {} | {} | {:.3f} / {} | {:.2f} | {} | {} |\n",
                                   limits[l], b.best.subnet, percent(b.best.accuracy), percent(test_fq),
                                   percent(dep.test_onednn), b.best.latency_ms,
                                   o.final_test ? fmt::format("{:.3f}", dep.measured_ms) : std::string("-"),
                                   b.best.mflops, random_text, gain_text)
                     : fmt::format("| {:.3f} | none fits | - | - | - | - | - | {} | - |\n", limits[l],
                                   random_text);
  }
  seconds["final_test"] = seconds_since(t);
  seconds["total"] = seconds_since(start);

  const json common = {{"run_dir", o.run_dir.string()},
                       {"space", space.encode()},
                       {"algorithm", search::to_string(main_algorithm)},
                       {"evaluator", o.evaluator},
                       {"evaluations", search::evaluation_budget(o.search)},
                       {"evaluated", main.evaluated.size()},
                       {"generations", main.generations},
                       {"heldout_images", d.heldout.size()},
                       {"limits_ms", limits},
                       {"latency_lut", lut_identity(lut, o.latency_lut)},
                       {"machine", runtime::to_json(runtime::this_machine(o.threads, "int8"))}};
  SubnetSearchJobResult result;
  result.out_dir = o.out_dir;
  result.front = common;
  result.front["front"] = front;
  result.front["share_within_10_percent"] = share_within;
  result.best = common;
  result.best["best"] = best;
  result.best["seconds"] = seconds;
  if (predictor) result.best["predictor"] = predictor_json;

  FrontPlot plot;
  plot.title = fmt::format("{}: held-out accuracy against INT8 latency ({})", space.encode(),
                           search::to_string(main_algorithm));
  plot.algorithm = search::to_string(main_algorithm);
  plot.evaluated = main.evaluated;
  plot.front = main.front;
  plot.limits = limits;
  if (baseline) {
    plot.baseline_evaluated = baseline->evaluated;
    plot.baseline_best = baseline->best;
  }
  // With the predictor, every evaluated point but the front carries a predicted accuracy: plot the front
  // only.
  if (predictor) plot.evaluated.clear(), plot.baseline_evaluated.clear();

  result.report = fmt::format(
      "# Subnet search: {} on {}\n\n{} search{}, {} evaluator, {} of {} evaluations, {} generations, {} "
      "held-out "
      "images; INT8 latency from {} ({} threads).\n\n## Best subnet per limit\n\n{}\n## Front\n\n"
      "{} non-dominated subnets; measured INT8 latency within ±10% of the prediction for {}/{} "
      "({:.0f}%).\n\n",
      search::to_string(main_algorithm), space.encode(), search::to_string(main_algorithm),
      main.resumed ? " (resumed from its checkpoint)" : "", o.evaluator, main.evaluated.size(),
      search::evaluation_budget(o.search), main.generations, d.heldout.size(), o.latency_lut.string(),
      o.threads, table, front.size(), within_10, front.size(), 100 * share_within);
  result.report +=
      "| subnet | held-out | predicted ms | measured ms | error | MFLOPs |\n| --- | ---: | ---: | ---: | "
      "---: | ---: |\n";
  for (const auto& f : front) {
    result.report +=
        fmt::format("| `{}` | {} | {:.3f} | {:.3f} | {:+.1f}% | {:.2f} |\n", f["subnet"].get<std::string>(),
                    percent(f["heldout_accuracy"].get<double>()), f["predicted_latency_ms"].get<double>(),
                    f["measured_latency_ms"].get<double>(), 100 * f["prediction_error"].get<double>(),
                    f["mflops"].get<double>());
  }
  result.report += "\n## Wall time (s)\n\n";
  for (const auto& [stage, s] : seconds.items())
    result.report += fmt::format("- {}: {:.1f}\n", stage, s.get<double>());

  write_json_atomic(o.out_dir / "front.json", result.front);
  write_json_atomic(o.out_dir / "best.json", result.best);
  write_file_atomic(o.out_dir / "front.svg", front_svg(plot));
  write_file_atomic(o.out_dir / "search.md", result.report);
  return result;
}

}  // namespace qnas::pipeline
