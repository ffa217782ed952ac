#include "pipeline/run_pipeline.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/strings.h"
#include "data/source.h"
#include "deploy/deploy.h"
#include "deploy/engines.h"
#include "export/onnx_export.h"
#include "export/ort_harness.h"
#include "latency/latency_lut.h"
#include "latency/profiling.h"
#include "nn/supernet.h"
#include "pipeline/finish_choice.h"
#include "pipeline/rank_tasks.h"
#include "pipeline/run_config.h"
#include "pipeline/run_report.h"
#include "pipeline/run_state.h"
#include "pipeline/subnet_search_job.h"
#include "search/block_lut.h"
#include "search/qt_score.h"
#include "search/space_evolution.h"
#include "space/arch_spec.h"
#include "space/sampling.h"
#include "train/block_kd.h"
#include "train/block_lut_builder.h"
#include "train/trainer.h"

namespace qnas::pipeline {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kLatencySampleStream = 0x6c6174656e6379ull;  // "latency"

std::vector<std::int64_t> index_range(std::int64_t from, std::int64_t to) {
  std::vector<std::int64_t> v;
  for (std::int64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

// Everything the stages share: the options, the resolved config, the data in memory, the run state.
struct Context {
  RunOptions options;
  json config;
  fs::path dir;
  data::DataSource source;
  data::LoadedData data;
  const space::Hyperspace* hyperspace = nullptr;
  std::int64_t train_images = 0;  // the trainers' train_limit: the rest of the training set is held out
  RunState state;
  data::Normalize normalize;   // the trainer's (Fashion-MNIST statistics), so every stage agrees
  RankTasks* tasks = nullptr;  // under a launcher: how rank 0 hands training stages to the other ranks

  fs::path stage_dir(const std::string& name) const { return dir / name; }
  // A training section with the pipeline's training image count (a preset's non-zero train_limit caps it).
  train::TrainConfig train_config(const json& section) const {
    json j = section;
    const std::int64_t limit = j.value("train_limit", std::int64_t{0});
    j["train_limit"] = limit > 0 ? std::min(limit, train_images) : train_images;
    return train::TrainConfig::from_json(j);
  }
  runtime::MeasureOptions measure() const {
    runtime::MeasureOptions m;
    m.runs = config["latency"]["runs"].get<int>();
    m.warmup = config["latency"]["warmup"].get<int>();
    return m;
  }
  int latency_threads() const { return config["latency"]["threads"].get<int>(); }
  runtime::ProfileKey lut_key() const {
    // LSQ+ training deploys zero points: their kernels are what the searched networks will run.
    return runtime::this_machine(latency_threads(), "int8", "asymmetric");
  }
  fs::path lut_path() const { return fs::path(state.result("latency").at("lut").get<std::string>()); }
  latency::LatencyLut load_lut() const {
    latency::LatencyLut lut = latency::LatencyLut::load(lut_path().string(), lut_key());
    lut.set_statistic(latency::parse_statistic(config["latency"]["statistic"].get<std::string>()));
    return lut;
  }
  std::vector<double> limits() const {
    return state.result("latency").at("limits_ms").get<std::vector<double>>();
  }
  std::vector<std::int64_t> heldout_indices(std::int64_t count) const {
    const std::int64_t end = count > 0 ? std::min(data.train.count, train_images + count) : data.train.count;
    return index_range(train_images, end);
  }
};

// --- 1. data ---------------------------------------------------------------------------------------------

json data_settings(const Context& c) {
  return {{"kind", data::to_string(c.source.kind)},
          {"dir", fs::absolute(c.source.dir).string()},
          {"hyperspace", c.source.hyperspace},
          {"train", c.data.train.count},
          {"test", c.data.test.count},
          {"heldout", c.data.train.count - c.train_images},
          {"seed", c.options.seed}};
}

json run_data(Context& c) {
  std::vector<std::int64_t> per_class(static_cast<size_t>(c.data.train.num_classes()), 0);
  for (auto label : c.data.train.labels) ++per_class[static_cast<size_t>(label)];
  json out = {{"source", c.data.train.source},
              {"classes", c.data.train.class_names},
              {"train_images_per_class", per_class},
              {"shape", {c.data.train.channels, c.data.train.height, c.data.train.width}},
              {"train", c.train_images},
              {"heldout", c.data.train.count - c.train_images},
              {"test", c.data.test.count}};
  write_json_atomic(c.stage_dir("data") / "data.json", out);
  return out;
}

// --- 2. this CPU's INT8 latency ----------------------------------------------------------------------------

space::SearchSpace random_space(const space::Hyperspace& hs, Rng& rng) {
  std::string types, windows;
  for (int i = 0; i < hs.num_choosable_stages(); ++i) {
    types += std::to_string(rng.below(hs.candidates.size()));
    windows += std::to_string(
        rng.below(static_cast<std::uint64_t>(hs.stages[hs.choosable_stage_index(i)].num_windows())));
  }
  return space::SearchSpace::parse(fmt::format("{}-{}-{}", hs.name, types, windows));
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

json run_latency(Context& c) {
  const json& L = c.config["latency"];
  const auto& hs = *c.hyperspace;
  const runtime::ProfileKey key = c.lut_key();
  create_directories_or_fail(cache_dir_for(c.options));
  const fs::path lut_path =
      cache_dir_for(c.options) /
      fmt::format("latency-lut-{}-{:012x}.json", hs.name, stable_hash(key.describe()) & 0xffffffffffffull);
  latency::LatencyLut lut =
      fs::exists(lut_path) ? latency::LatencyLut::load(lut_path.string(), key) : latency::LatencyLut(key);
  lut.set_statistic(latency::parse_statistic(L["statistic"].get<std::string>()));
  const std::size_t cached_entries = lut.size();

  // The extremes (each block type everywhere, narrowest and widest windows) and random networks of random
  // spaces: what the hyperspace's INT8 latency ranges over on this CPU.
  std::vector<space::ArchSpec> extremes, samples;
  for (size_t t = 0; t < hs.candidates.size(); ++t) {
    std::string types, narrow, wide;
    for (int i = 0; i < hs.num_choosable_stages(); ++i) {
      types += std::to_string(t);
      narrow += "0";
      wide += std::to_string(hs.stages[hs.choosable_stage_index(i)].num_windows() - 1);
    }
    const auto lo = space::SearchSpace::parse(fmt::format("{}-{}-{}", hs.name, types, narrow));
    const auto hi = space::SearchSpace::parse(fmt::format("{}-{}-{}", hs.name, types, wide));
    extremes.push_back(space::build_arch_spec(lo, space::min_subnet(lo)));
    extremes.push_back(space::build_arch_spec(hi, space::max_subnet(hi)));
  }
  Rng rng(c.options.seed ^ kLatencySampleStream);
  for (int i = 0; i < L["range_samples"].get<int>(); ++i) {
    const auto s = random_space(hs, rng);
    samples.push_back(space::build_arch_spec(s, space::sample_random(s, rng)));
  }
  std::vector<space::ArchSpec> all = extremes;
  all.insert(all.end(), samples.begin(), samples.end());
  latency::fill_and_save(lut, latency::distinct_blocks(all), c.measure(), lut_path.string());
  bool fitted_now = false;
  if (!lut.has_correction()) {
    // Blocks timed alone run with hot caches; whole networks fix the sum (latency_lut.h).
    const int n = std::min<int>(L["calibration_networks"].get<int>(), static_cast<int>(samples.size()));
    std::vector<space::ArchSpec> specs(samples.begin(), samples.begin() + n);
    std::vector<double> measured;
    ProgressLine fit("latency correction", n, "nets");
    for (const auto& spec : specs) {
      const auto t =
          latency::time_arch(spec, runtime::Precision::kInt8, c.latency_threads(), c.measure(), true);
      measured.push_back(latency::pick(t.timing, lut.statistic()));
      fit.update(static_cast<std::int64_t>(measured.size()));
    }
    fit.finish();
    lut.fit_correction(specs, measured);
    lut.save(lut_path.string());
    fitted_now = true;
  }
  std::vector<double> predicted;
  for (const auto& s : samples) predicted.push_back(lut.predict(s));
  double smallest = 1e300, largest = 0;
  for (const auto& s : extremes)
    smallest = std::min(smallest, lut.predict(s)), largest = std::max(largest, lut.predict(s));
  std::vector<double> limits = c.options.limits_ms;
  std::string origin = "--limits";
  if (limits.empty()) {
    origin = "quantiles of the sampled networks";
    for (double q : L["limit_quantiles"].get<std::vector<double>>()) limits.push_back(quantile(predicted, q));
  }
  std::sort(limits.begin(), limits.end());
  for (double l : limits) {
    if (!(l >= smallest)) {
      fail(
          "latency limit {:.4f} ms is below the smallest network the {} hyperspace can make on this CPU "
          "({:.4f} ms, INT8, {} thread(s)): give --limits of at least {:.4f} ms",
          l, hs.name, smallest, c.latency_threads(), smallest);
    }
  }
  json out = {{"lut", lut_path.string()},
              {"key", runtime::to_json(key)},
              {"entries", lut.size()},
              {"entries_cached_before", cached_entries},
              {"correction_fitted_now", fitted_now},
              {"smallest_ms", smallest},
              {"largest_ms", largest},
              {"sampled_p10_ms", quantile(predicted, 0.1)},
              {"sampled_median_ms", quantile(predicted, 0.5)},
              {"sampled_p90_ms", quantile(predicted, 0.9)},
              {"limits_ms", limits},
              {"limits_from", origin}};
  write_json_atomic(c.stage_dir("latency") / "latency.json", out);
  return out;
}

// --- training on every rank -------------------------------------------------------------------------------

// What a training stage trains, described so that every rank builds the same network.
json static_network(const std::string& space, const std::string& subnet) {
  return {{"kind", "static"}, {"space", space}, {"subnet", subnet}};
}

std::shared_ptr<nn::NetworkImpl> build_network(const Context& c, const json& model) {
  const std::string kind = model.at("kind");
  const auto space = space::SearchSpace::parse(model.at("space").get<std::string>());
  if (kind == "supernet") return std::make_shared<nn::SupernetImpl>(space);
  const auto subnet = space::Subnet::parse(model.at("subnet").get<std::string>());
  if (kind == "static") return std::make_shared<nn::StaticNetImpl>(space::build_arch_spec(space, subnet));
  // "extracted": the subnet with a trained supernet's weights, batch norm recalibrated.
  deploy::TrainedRun run = deploy::load_run(model.at("supernet_dir").get<std::string>());
  return deploy::network_to_deploy(run, subnet.encode(), c.data.train, c.normalize).ptr();
}

struct Trained {
  std::shared_ptr<nn::NetworkImpl> network;
  std::vector<train::EpochLog> logs;
};

// Trains `model` in `dir`, on every rank when launched so: rank 0 hands the same task to the others first,
// and the trainer starts them all from rank 0's weights.
Trained train_on_ranks(Context& c, const json& model, const train::TrainConfig& config, const fs::path& dir) {
  torch::manual_seed(config.seed);  // the initial weights
  Trained t{build_network(c, model), {}};
  train::Trainer trainer(config, t.network, c.data.train, c.data.test, dir);
  if (c.tasks) {
    if (c.tasks->rank() == 0)
      c.tasks->publish({{"kind", "train"}, {"model", model}, {"config", config.to_json()}, {"dir", dir}});
    trainer.set_process_group(&c.tasks->group());
  }
  t.logs = trainer.run();
  return t;
}

// --- 3. teacher --------------------------------------------------------------------------------------------

std::string teacher_space(const Context& c) {
  return fmt::format("{}-{}-{}", c.hyperspace->name,
                     std::string(static_cast<size_t>(c.hyperspace->num_choosable_stages()), '0'),
                     std::string(static_cast<size_t>(c.hyperspace->num_choosable_stages()), '0'));
}

json run_teacher(Context& c) {
  const auto space = space::SearchSpace::parse(teacher_space(c));
  const auto subnet = space::max_subnet(space);
  const train::TrainConfig config = c.train_config(c.config["teacher"]);
  const auto logs =
      train_on_ranks(c, static_network(space.encode(), subnet.encode()), config, c.stage_dir("teacher")).logs;
  return {{"space", space.encode()},
          {"subnet", subnet.encode()},
          {"test_accuracy", logs.back().eval.empty() ? 0.0 : logs.back().eval.front().accuracy},
          {"bits", logs.back().bits}};
}

// --- 4. block-wise distillation, 5. block LUTs -----------------------------------------------------------

train::BlockKdConfig block_kd_config(const Context& c) {
  json j = c.config["block_kd"];
  j["lut_rows"] = c.config["block_lut"]["rows"];
  j["seed"] = c.options.seed;
  return train::BlockKdConfig::from_json(j);
}

// A rank other than 0 distils in a directory of its own and sends each finished block to rank 0's.
fs::path rank_block_kd_dir(const Context& c) {
  return c.dir / "ranks" / fmt::format("rank{}", c.tasks->rank()) / "block-kd";
}

json run_block_kd(Context& c) {
  train::BlockKd kd(block_kd_config(c), train::load_teacher(c.stage_dir("teacher")), c.data.train,
                    c.stage_dir("block-kd"));
  if (c.tasks) {
    c.tasks->publish({{"kind", "block-kd"}});
    kd.set_process_group(&c.tasks->group());
  }
  const auto blocks = kd.blocks();
  const auto trained = kd.run(blocks);
  for (const auto& b : blocks) {
    if (!kd.is_done(b))
      fail("block {} is held by another worker of {}: run again when it finishes", b.name(),
           c.stage_dir("block-kd").string());
  }
  double nsr = 0;
  for (const auto& r : trained) nsr += r.epoch_nsr.empty() ? 0 : r.epoch_nsr.back();
  return {{"blocks", blocks.size()},
          {"trained_now", trained.size()},
          {"mean_final_nsr_trained_now", trained.empty() ? 0.0 : nsr / static_cast<double>(trained.size())}};
}

json run_block_lut(Context& c) {
  train::BlockKd kd(block_kd_config(c), train::load_teacher(c.stage_dir("teacher")), c.data.train,
                    c.stage_dir("block-kd"));
  latency::LatencyLut lut = c.load_lut();
  train::LutBuildOptions options;
  options.rows = c.config["block_lut"]["rows"].get<int>();
  options.seed = c.options.seed;
  options.eval_images = c.config["block_lut"]["eval_images"].get<std::int64_t>();
  options.fixed_samples = c.config["block_lut"]["fixed_samples"].get<int>();
  options.measure = c.measure();
  train::BlockLutBuilder builder(kd, lut, c.lut_path(), options);
  const auto summary = builder.build(kd.blocks(), c.stage_dir("block-lut") / "lut");
  json fixed = json::object();
  for (const auto& [res, ms] : summary.fixed_latency_ms) fixed[std::to_string(res)] = ms;
  return {{"files", summary.files_written + summary.files_kept},
          {"files_kept", summary.files_kept},  // written before a kill, read back instead of rebuilt
          {"rows", options.rows},
          {"blocks_measured", summary.blocks_measured},
          {"fixed_latency_ms", fixed}};
}

// --- 6. space search -------------------------------------------------------------------------------------

std::string baseline_space(const Context& c) {
  const json& b = c.config["baseline"];
  return fmt::format("{}-{}-{}", c.hyperspace->name, b["types"].get<std::string>(),
                     b["windows"].get<std::string>());
}

double max_subnet_mflops(const std::string& space_text) {
  const auto space = space::SearchSpace::parse(space_text);
  return static_cast<double>(space::build_arch_spec(space, space::max_subnet(space)).macs()) / 1e6;
}

json run_space_search(Context& c) {
  const json& S = c.config["space_search"];
  const auto luts = search::BlockLutSet::load(c.stage_dir("block-lut") / "lut", *c.hyperspace);
  search::QtOptions qt;
  qt.latency_limits_ms = c.limits();
  qt.samples = S["qt_samples"].get<std::int64_t>();
  qt.top = S["top"].get<int>();
  qt.seed = c.options.seed;
  qt.threads = c.options.threads;
  for (const auto& [res, ms] : c.state.result("block-lut").at("fixed_latency_ms").items())
    qt.fixed_latency_ms[std::stoi(res)] = ms.get<double>();
  search::EvolutionOptions evo;
  evo.population = S["population"].get<int>();
  evo.sample = S["sample"].get<int>();
  evo.evaluations = S["evaluations"].get<int>();
  evo.seed = c.options.seed;
  evo.checkpoint = c.stage_dir("space-search") / "checkpoint.json";
  evo.checkpoint_every = std::max(1, evo.evaluations / 20);
  const auto result = search::evolve_spaces(luts, qt, evo);
  json top = json::array();
  for (const auto& s : result.top(10)) {
    top.push_back(search::to_json(s));
    top.back()["max_subnet_mflops"] = max_subnet_mflops(s.space);
  }
  // A supernet trains its max subnet every step, so its cost follows that subnet's FLOPs, which the Q-T score
  // (INT8 latency and quality) does not see: under a training budget, the best space whose max subnet fits
  // it.
  const double cap = S["max_supernet_mflops"].get<double>();
  std::optional<search::QtScore> chosen;
  for (const auto& s : result.top(result.history.size())) {
    if (cap <= 0 || max_subnet_mflops(s.space) <= cap) {
      chosen = s;
      break;
    }
  }
  if (!chosen)
    fail("no evaluated space has a max subnet within space_search.max_supernet_mflops {}: raise it", cap);
  const search::QtScore base = search::qt_score(luts, space::SearchSpace::parse(baseline_space(c)), qt);
  const search::QtScore teacher = search::qt_score(luts, space::SearchSpace::parse(teacher_space(c)), qt);
  json chosen_json = search::to_json(*chosen);
  chosen_json["max_subnet_mflops"] = max_subnet_mflops(chosen->space);
  json out = {{"chosen", chosen_json},
              {"best_unconstrained", top.at(0)},
              {"max_supernet_mflops", cap},
              {"baseline", search::to_json(base)},
              {"teacher_space", search::to_json(teacher)},
              {"top", top},
              {"evaluations", result.history.size()},
              {"skipped_duplicates", result.skipped_duplicates}};
  write_json_atomic(c.stage_dir("space-search") / "result.json", out);
  return out;
}

// --- 7. supernet, 8. subnet search, 9. finish (and the same for the baseline) ----------------------------

std::string evolved_space(const Context& c) {
  return c.state.result("space-search").at("chosen").at("space").get<std::string>();
}

// The baseline's supernet section: as many images as the evolved supernet ("schedule"), or as many as give it
// the same training FLOPs ("flops": the sandwich's cost follows its max subnet), so a heavy hand-made space
// cannot take the budget of the whole run. Both phases scale, the FP32 epochs and the (shorter) QAT epochs.
json baseline_supernet_section(const Context& c) {
  json section = c.config["supernet"];
  const train::TrainConfig evolved = c.train_config(section);
  section["train_limit"] = evolved.train_limit;
  if (c.config["baseline"]["budget"] == "schedule") return section;
  const double ratio = max_subnet_mflops(evolved_space(c)) / max_subnet_mflops(baseline_space(c));
  auto scaled = [&](std::int64_t images) {
    const auto n = static_cast<std::int64_t>(std::llround(static_cast<double>(images) * ratio));
    return std::clamp<std::int64_t>(n, evolved.batch_size, c.train_images);
  };
  section["train_limit"] = scaled(evolved.train_limit);
  if (evolved.qat_train_limit > 0) section["qat_train_limit"] = scaled(evolved.qat_train_limit);
  return section;
}

json run_supernet(Context& c, const std::string& space_text, const fs::path& dir, const json& section) {
  const auto space = space::SearchSpace::parse(space_text);
  const train::TrainConfig config = c.train_config(section);
  const auto logs = train_on_ranks(c, {{"kind", "supernet"}, {"space", space.encode()}}, config, dir).logs;
  json epochs = json::array();
  for (const auto& l : logs) epochs.push_back(train::to_json(l));
  write_json_atomic(dir / "results.json",
                    {{"space", space.encode()}, {"config", config.to_json()}, {"epochs", epochs}});
  json last = json::object();
  for (const auto& e : logs.back().eval) last[e.name] = e.accuracy;
  return {
      {"space", space.encode()},
      {"train_images", config.train_limit},
      {"qat_train_images", config.qat_train_limit > 0 ? std::min(config.qat_train_limit, config.train_limit)
                                                      : config.train_limit},
      {"max_subnet_mflops", max_subnet_mflops(space_text)},
      {"final_test_accuracy", last},
      {"bits", logs.back().bits}};
}

// The predicted INT8 latency of a space's smallest subnet: limits below it have no subnet to search.
double smallest_subnet_ms(const Context& c, const std::string& space_text) {
  latency::LatencyLut lut = c.load_lut();
  const auto space = space::SearchSpace::parse(space_text);
  const auto spec = space::build_arch_spec(space, space::min_subnet(space));
  latency::fill_and_save(lut, latency::distinct_blocks({spec}), c.measure(), c.lut_path().string());
  return lut.predict(spec);
}

json run_subnet_search(Context& c, const fs::path& supernet_dir, const fs::path& out_dir) {
  const json& S = c.config["subnet_search"];
  const std::string space = read_json_file(supernet_dir / "results.json").at("space");
  const double floor_ms = smallest_subnet_ms(c, space);
  std::vector<double> searchable;
  for (double l : c.limits())
    if (l >= floor_ms) searchable.push_back(l);
  json best = json::array();
  std::string algorithm = S["algorithm"].get<std::string>();
  std::size_t front_size = 0;
  std::map<double, json> found;
  if (!searchable.empty()) {
    SubnetSearchJobOptions o;
    o.run_dir = supernet_dir;
    o.latency_lut = c.lut_path();
    o.out_dir = out_dir;
    o.data = &c.data;
    o.search.algorithm = search::parse_algorithm(algorithm);
    o.search.limits_ms = searchable;
    o.search.population = S["population"].get<int>();
    o.search.generations = S["generations"].get<int>();
    o.search.seed = c.options.seed;
    o.search.seed_extremes = true;
    o.evaluator = "supernet";
    o.random_baseline = S["random_baseline"].get<bool>();
    o.heldout_images = S["heldout_images"].get<std::int64_t>();
    o.threads = c.latency_threads();
    o.measure = c.measure();
    o.statistic = c.config["latency"]["statistic"].get<std::string>();
    o.final_test = false;  // the finish stage measures the chosen networks on the test set, once
    const auto result = run_subnet_search_job(o);
    algorithm = result.best.at("algorithm");
    front_size = result.front.at("front").size();
    for (const auto& row : result.best.at("best")) found[row.at("limit_ms").get<double>()] = row;
  }
  for (double l : c.limits()) {
    json b = {{"limit_ms", l}, {"found", false}};
    if (auto it = found.find(l); it != found.end() && it->second.at("found").get<bool>()) {
      b["found"] = true;
      b["subnet"] = it->second.at(algorithm);
    } else if (l < floor_ms) {
      b["why"] = fmt::format("the smallest subnet of {} takes {:.4f} ms", space, floor_ms);
    }
    best.push_back(b);
  }
  return {
      {"algorithm", algorithm}, {"best", best}, {"front_size", front_size}, {"smallest_subnet_ms", floor_ms}};
}

double heldout_accuracy(Context& c, nn::StaticNetImpl& net) {
  const auto indices = c.heldout_indices(c.config["subnet_search"]["heldout_images"].get<std::int64_t>());
  deploy::EngineResult r = deploy::run_fakequant(net, c.data.train, indices, c.normalize);
  std::vector<std::int64_t> labels;
  for (auto i : indices) labels.push_back(c.data.train.label(i));
  deploy::score(r, labels, nullptr);
  return r.top1;
}

// One limit's best subnet: extracted, fine-tuned when that helps on held-out images, exported, evaluated.
json finish_one(Context& c, const fs::path& supernet_dir, const json& best, const fs::path& dir) {
  if (fs::exists(dir / "result.json")) return read_json_file(dir / "result.json");
  const std::string subnet = best.at("subnet").at("subnet");
  deploy::TrainedRun run = deploy::load_run(supernet_dir);
  nn::StaticNet net = deploy::network_to_deploy(run, subnet, c.data.train, c.normalize);
  const double extracted_heldout = heldout_accuracy(c, *net);
  json finetune = {{"ran", false}};
  const json& ft_section = c.config["finish"]["finetune"];
  if (ft_section["epochs"].get<int>() + ft_section["qat_epochs"].get<int>() > 0) {
    const train::TrainConfig config = c.train_config(ft_section);
    const std::string init = c.config["finish"]["init"].get<std::string>();
    const json model = init == "scratch" ? static_network(run.space->encode(), subnet)
                                         : json{{"kind", "extracted"},
                                                {"space", run.space->encode()},
                                                {"subnet", subnet},
                                                {"supernet_dir", supernet_dir}};
    nn::StaticNet tuned(std::static_pointer_cast<nn::StaticNetImpl>(
        train_on_ranks(c, model, config, dir / "finetune").network));
    tuned->eval();
    const double tuned_heldout = heldout_accuracy(c, *tuned);
    finetune = {{"ran", true},
                {"init", init},
                {"heldout_accuracy_before", extracted_heldout},
                {"heldout_accuracy_after", tuned_heldout},
                {"helped", tuned_heldout > extracted_heldout}};
    if (tuned_heldout > extracted_heldout) net = tuned;
  }
  net->eval();
  const deploy::DeployedModel m = deploy::lower_for_engines(*net, c.data.train, c.normalize);
  std::int64_t test_count = c.config["finish"]["test_images"].get<std::int64_t>();
  if (test_count <= 0 || test_count > c.data.test.count) test_count = c.data.test.count;
  const auto indices = index_range(0, test_count);
  std::vector<std::int64_t> labels;
  for (auto i : indices) labels.push_back(c.data.test.label(i));
  const int runs = c.config["finish"]["runs"].get<int>();
  deploy::EngineResult fq = deploy::run_fakequant(*net, c.data.test, indices, c.normalize);
  deploy::score(fq, labels, nullptr);
  const auto images = deploy::normalised_images(c.data.test, indices, c.normalize, m.spec.resolution);
  deploy::EngineResult onednn = deploy::run_onednn(m, images, c.latency_threads(), runs);
  deploy::score(onednn, labels, &fq);
  json ort = nullptr;
  if (c.config["finish"]["ort"].get<bool>()) {
    deploy::EngineResult r = deploy::run_ort(m, images, exporter::default_ort_harness(), c.latency_threads(),
                                             std::max(50, runs), dir / "ort");
    deploy::score(r, labels, &fq);
    ort = {{"top1", r.top1},
           {"agreement_with_fakequant", r.agreement},
           {"latency_ms", r.median_ms},
           {"optimization", r.ort_optimization}};
    fs::remove_all(dir / "ort");
  }
  runtime::MeasureOptions measure = c.measure();
  measure.runs = runs;
  const auto fp32 = latency::time_arch(m.spec, runtime::Precision::kFp32, c.latency_threads(), measure);
  exporter::OnnxOptions onnx;
  onnx.precision = runtime::Precision::kInt8;
  onnx.metadata = deploy::export_metadata(m, c.data.train, c.normalize, "int8");
  const fs::path model = dir / "model-int8.onnx";
  exporter::write_onnx(model.string(), m.program, m.weights, &m.quant, onnx);  // atomic itself
  json out = {
      {"limit_ms", best.at("limit_ms")},
      {"subnet", subnet},
      {"mflops", static_cast<double>(m.spec.macs()) / 1e6},
      {"mparams", static_cast<double>(m.spec.params()) / 1e6},
      {"predicted_latency_ms", best.at("subnet").at("predicted_latency_ms")},
      {"search_heldout_accuracy", best.at("subnet").at("heldout_accuracy")},
      {"extracted_heldout_accuracy", extracted_heldout},
      {"finetune", finetune},
      {"quantization", m.quant_source},
      {"test_images", test_count},
      {"test_accuracy",
       {{"fakequant", fq.top1},
        {"onednn_int8", onednn.top1},
        {"ort_int8", ort.is_null() ? json(nullptr) : ort["top1"]}}},
      {"onednn_agreement_with_fakequant", onednn.agreement},
      {"ort_agreement_with_fakequant", ort.is_null() ? json(nullptr) : ort["agreement_with_fakequant"]},
      {"measured",
       {{"int8_ms", onednn.min_ms},
        {"int8_median_ms", onednn.median_ms},
        {"fp32_ms", fp32.timing.min_ms},
        {"fp32_median_ms", fp32.timing.median_ms},
        {"fp32_over_int8", fp32.timing.min_ms / onednn.min_ms},
        {"ort_int8_median_ms", ort.is_null() ? json(nullptr) : ort["latency_ms"]}}},
      {"ort_graph_optimization", ort.is_null() ? json(nullptr) : ort["optimization"]},
      {"model", model.string()},
      {"model_bytes", fs::file_size(model)}};
  write_json_atomic(dir / "result.json", out);
  return out;
}

json run_finish(Context& c, const std::string& search_stage, const fs::path& supernet_dir,
                const fs::path& dir) {
  json rows = json::array();
  for (const auto& best : c.state.result(search_stage).at("best")) {
    if (!best.at("found").get<bool>()) {
      rows.push_back({{"limit_ms", best.at("limit_ms")},
                      {"found", false},
                      {"why", best.value("why", std::string("the search found no subnet within it"))}});
      continue;
    }
    // A subnet that is the best under several limits is finished once: the larger limits reuse it.
    const std::string subnet = best.at("subnet").at("subnet");
    json r;
    for (const auto& earlier : rows) {
      if (earlier.value("found", false) && earlier.at("subnet") == subnet) r = earlier;
    }
    if (r.is_null()) {
      r = finish_one(c, supernet_dir, best,
                     dir / fmt::format("limit-{:.4f}ms", best.at("limit_ms").get<double>()));
    } else {
      r["same_as_limit_ms"] = r.value("same_as_limit_ms", r.at("limit_ms"));
    }
    r["limit_ms"] = best.at("limit_ms");
    r["found"] = true;
    rows.push_back(r);
  }
  return {{"limits", prefer_better_smaller_networks(rows)}};
}

// --- the stage table -------------------------------------------------------------------------------------

struct Stage {
  std::string name;
  std::vector<std::string> inputs;  // stages whose results this one reads
  std::function<json(const Context&)> settings;
  std::function<json(Context&)> run;
};

std::vector<Stage> stages() {
  auto section = [](const char* key) {
    return [key](const Context& c) { return json{{key, c.config[key]}}; };
  };
  return {
      {"data", {}, data_settings, run_data},
      {"latency",
       {},
       [](const Context& c) {
         return json{{"latency", c.config["latency"]},
                     {"hyperspace", c.hyperspace->name},
                     {"limits_ms", c.options.limits_ms},
                     {"seed", c.options.seed}};
       },
       run_latency},
      {"teacher",
       {"data"},
       [](const Context& c) {
         return json{
             {"teacher", c.config["teacher"]}, {"space", teacher_space(c)}, {"device", c.options.device}};
       },
       run_teacher},
      {"block-kd",
       {"teacher"},
       [](const Context& c) {
         return json{{"block_kd", c.config["block_kd"]},
                     {"rows", c.config["block_lut"]["rows"]},
                     {"seed", c.options.seed}};
       },
       run_block_kd},
      {"block-lut", {"block-kd", "latency"}, section("block_lut"), run_block_lut},
      {"space-search",
       {"block-lut", "latency"},
       [](const Context& c) {
         return json{{"space_search", c.config["space_search"]}, {"baseline", c.config["baseline"]}};
       },
       run_space_search},
      {"supernet",
       {"space-search", "data"},
       section("supernet"),
       [](Context& c) {
         return run_supernet(c, evolved_space(c), c.stage_dir("supernet"), c.config["supernet"]);
       }},
      {"subnet-search",
       {"supernet", "latency"},
       section("subnet_search"),
       [](Context& c) {
         return run_subnet_search(c, c.stage_dir("supernet"), c.stage_dir("subnet-search"));
       }},
      {"finish",
       {"subnet-search"},
       section("finish"),
       [](Context& c) {
         return run_finish(c, "subnet-search", c.stage_dir("supernet"), c.stage_dir("finish"));
       }},
      {"baseline-supernet",
       {"data", "space-search"},
       [](const Context& c) {
         return json{{"supernet", c.config["supernet"]}, {"baseline", c.config["baseline"]}};
       },
       [](Context& c) {
         return run_supernet(c, baseline_space(c), c.stage_dir("baseline") / "supernet",
                             baseline_supernet_section(c));
       }},
      {"baseline-subnet-search",
       {"baseline-supernet", "latency"},
       section("subnet_search"),
       [](Context& c) {
         return run_subnet_search(c, c.stage_dir("baseline") / "supernet",
                                  c.stage_dir("baseline") / "subnet-search");
       }},
      {"baseline-finish",
       {"baseline-subnet-search"},
       section("finish"),
       [](Context& c) {
         return run_finish(c, "baseline-subnet-search", c.stage_dir("baseline") / "supernet",
                           c.stage_dir("baseline") / "finish");
       }},
      {"report",
       {"finish", "baseline-finish", "space-search", "latency", "teacher", "data"},
       [](const Context&) { return json::object(); },
       [](Context& c) { return write_run_report(c.dir, c.state, c.config, stage_names()); }},
  };
}

// What a stage owns on disk, removed before it reruns with other settings.
std::vector<fs::path> stage_outputs(const Context& c, const std::string& name) {
  if (name.rfind("baseline-", 0) == 0) return {c.stage_dir("baseline") / name.substr(9)};
  if (name == "report") return {};
  return {c.stage_dir(name)};
}

std::string eta_text(const std::vector<double>& estimates, size_t next, double elapsed,
                     double expected_so_far) {
  double rest = 0;
  for (size_t i = next; i < estimates.size(); ++i) rest += estimates[i];
  // The preset's estimates, scaled by how this machine has kept to them so far.
  const double scale = expected_so_far > 10 && elapsed > 10 ? elapsed / expected_so_far : 1.0;
  return ProgressLine::format_duration(rest * std::clamp(scale, 0.25, 4.0));
}

// A rank other than 0: trains what rank 0 hands over until it says it is done.
json follow_rank0(Context& c) {
  const int rank = c.tasks->rank();
  std::fprintf(stderr,
               "qnas run: rank %d of %d, %d threads: trains the training stages with rank 0, which runs the "
               "rest\n",
               rank, c.tasks->world_size(), torch::get_num_threads());
  int tasks = 0;
  for (;;) {
    const json task = c.tasks->next();
    const std::string kind = task.at("kind");
    if (kind == "done") break;
    ++tasks;
    if (kind == "train") {
      const fs::path dir = task.at("dir").get<std::string>();
      std::fprintf(stderr, "qnas run: rank %d trains %s with rank 0\n", rank, dir.c_str());
      train_on_ranks(c, task.at("model"), train::TrainConfig::from_json(task.at("config")), dir);
    } else if (kind == "block-kd") {
      const fs::path dir = rank_block_kd_dir(c);
      std::fprintf(stderr, "qnas run: rank %d distils blocks in %s for rank 0\n", rank, dir.c_str());
      fs::create_directories(dir);
      train::BlockKd kd(block_kd_config(c), train::load_teacher(c.stage_dir("teacher")), c.data.train, dir);
      kd.set_process_group(&c.tasks->group());
      kd.run(kd.blocks());
    } else {
      fail("rank {}: rank 0 sent a task of unknown kind '{}': every rank must run the same qnas", rank, kind);
    }
  }
  std::fprintf(stderr, "qnas run: rank %d: rank 0 finished; this rank took part in %d training stages\n",
               rank, tasks);
  return {{"stopped_after", fmt::format("rank {}", rank)}};
}

json run_stages(Context& c, std::chrono::steady_clock::time_point start);

}  // namespace

const std::vector<std::string>& stage_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& s : stages()) n.push_back(s.name);
    return n;
  }();
  return names;
}

fs::path cache_dir_for(const RunOptions& options) {
  if (!options.cache_dir.empty()) return options.cache_dir;
  if (const char* env = std::getenv("QNAS_CACHE_DIR"); env && *env) return env;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return fs::path(xdg) / "qnas";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "qnas";
  return fs::path(".qnas-cache");
}

json resolve_run_config(const RunOptions& options) {
  json config = preset_config(options.preset);
  if (!options.config_file.empty()) {
    config = merge_config(config, read_json_file(options.config_file), options.config_file.string());
  }
  for (const char* key : {"teacher", "supernet"})
    config[key]["seed"] = options.seed, config[key]["device"] = options.device;
  config["finish"]["finetune"]["seed"] = options.seed;
  config["finish"]["finetune"]["device"] = options.device;
  config["block_kd"]["device"] = options.device;
  validate_config(config);
  return config;
}

json run_pipeline(const RunOptions& options_in) {
  const auto start = std::chrono::steady_clock::now();
  Context c;
  c.options = options_in;
  if (c.options.run_dir.empty()) c.options.run_dir = fs::path("runs") / c.options.preset;
  if (!c.options.until.empty() &&
      std::find(stage_names().begin(), stage_names().end(), c.options.until) == stage_names().end()) {
    fail("unknown stage '{}' for --until: the stages are {}", c.options.until,
         fmt::join(stage_names(), ", "));
  }
  c.config = resolve_run_config(c.options);
  c.dir = c.options.run_dir;
  // Everything that can fail on bad input fails before the run directory is touched.
  c.state = RunState::open(c.dir);
  c.source = data::resolve_data_source(c.options.data);
  c.hyperspace = &space::find_hyperspace(c.source.hyperspace);
  c.data = data::load_data_source(c.source, c.options.seed);
  const std::int64_t heldout =
      std::min<std::int64_t>(c.config["data"]["heldout"].get<std::int64_t>(), c.data.train.count / 5);
  if (heldout < 1)
    fail("{} has {} training images: too few to hold any out for the search", c.source.describe(),
         c.data.train.count);
  c.train_images = c.data.train.count - heldout;
  if (c.data.train.height != c.hyperspace->block_kd_resolutions.front() ||
      c.data.train.channels != c.hyperspace->in_channels) {
    fail("{}: {}x{}x{} images do not fit the {} hyperspace ({} channels, {}x{})", c.source.describe(),
         c.data.train.channels, c.data.train.height, c.data.train.width, c.hyperspace->name,
         c.hyperspace->in_channels, c.hyperspace->block_kd_resolutions.front(),
         c.hyperspace->block_kd_resolutions.front());
  }
  torch::set_num_threads(c.options.threads > 0
                             ? c.options.threads
                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  // Under a launcher rank 0 runs the stages and the others join its training stages: they write nothing else.
  const dist::Launch launch = dist::launch_from_environment();
  std::unique_ptr<dist::ProcessGroup> group;
  std::unique_ptr<RankTasks> tasks;
  if (launch.distributed()) {
    std::fprintf(stderr, "qnas run: rank %d of %d, rendezvous at %s:%d\n", launch.rank, launch.world_size,
                 launch.master_addr.c_str(), launch.master_port);
    group = std::make_unique<dist::ProcessGroup>(launch);
    tasks = std::make_unique<RankTasks>(*group);
    c.tasks = tasks.get();
    if (launch.rank != 0) return follow_rank0(c);
  }
  try {
    json result = run_stages(c, start);
    if (tasks) tasks->finish();
    return result;
  } catch (const std::exception& e) {
    if (tasks) tasks->stop(first_line(e.what()));
    throw;
  }
}

namespace {

json run_stages(Context& c, std::chrono::steady_clock::time_point start) {
  require_writable_directory(c.dir, "--run-dir");
  write_json_atomic(c.dir / "config.json",
                    {{"preset", c.options.preset}, {"data", c.options.data}, {"config", c.config}});

  const auto all = stages();
  std::vector<double> estimates;
  const json est = c.config.value("estimates", json::object());
  for (const auto& s : all) estimates.push_back(est.value(s.name, 60.0));  // seconds
  std::map<std::string, std::string> fingerprints;
  double expected_so_far = 0;
  std::fprintf(stderr, "qnas run: preset %s, %s, run dir %s, %d threads\n", c.options.preset.c_str(),
               c.source.describe().c_str(), c.dir.c_str(), torch::get_num_threads());
  for (size_t k = 0; k < all.size(); ++k) {
    const Stage& s = all[k];
    const json settings = s.settings(c);
    std::vector<std::string> inputs;
    for (const auto& in : s.inputs) inputs.push_back(fingerprints.at(in));
    const std::string fp = RunState::fingerprint(settings, inputs);
    fingerprints[s.name] = fp;
    const std::string head = fmt::format("qnas run: stage {}/{} {}", k + 1, all.size(), s.name);
    if (c.state.is_complete(s.name, fp)) {
      std::fprintf(stderr, "%s: done earlier (%.1f s), kept\n", head.c_str(), c.state.seconds(s.name));
    } else {
      if (c.state.has(s.name)) {
        auto changes = c.state.changes(s.name, settings);
        std::string why = changes.empty() ? "a stage it reads changed"
                                          : fmt::format("settings changed ({})", fmt::join(changes, "; "));
        std::fprintf(stderr, "%s: %s: running it again, and the stages that read it\n", head.c_str(),
                     why.c_str());
        c.state.forget(s.name);
        for (const auto& p : stage_outputs(c, s.name)) fs::remove_all(p);
      }
      std::fprintf(stderr, "%s: elapsed %s, ETA %s\n", head.c_str(),
                   ProgressLine::format_duration(seconds_since(start)).c_str(),
                   eta_text(estimates, k, seconds_since(start), expected_so_far).c_str());
      const auto t = std::chrono::steady_clock::now();
      fs::create_directories(c.dir / (s.name.rfind("baseline-", 0) == 0 ? "baseline" : ""));
      if (s.name != "report")
        for (const auto& p : stage_outputs(c, s.name)) fs::create_directories(p);
      const json result = s.run(c);
      const double took = seconds_since(t);
      c.state.complete(s.name, fp, settings, result, took);
      std::fprintf(stderr, "%s: finished in %s\n", head.c_str(), ProgressLine::format_duration(took).c_str());
      expected_so_far += estimates[k];
    }
    if (s.name == c.options.until) {
      std::fprintf(stderr, "qnas run: stopped after stage %s (--until)\n", s.name.c_str());
      return {{"stopped_after", s.name}};
    }
  }
  return read_json_file(c.dir / "summary.json");
}

}  // namespace

}  // namespace qnas::pipeline
