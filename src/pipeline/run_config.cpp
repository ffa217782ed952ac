#include "pipeline/run_config.h"

#include <fmt/format.h>

#include "core/error.h"
#include "search/subnet_search.h"
#include "train/train_config.h"

namespace qnas::pipeline {

using nlohmann::json;

namespace {

// A training section: the trainer's own keys. train_limit 0 means "every training image but the held-out
// ones" (the pipeline fills it in from the data set).
json train_section(int epochs, int qat_epochs, std::int64_t batch, double lr, double qat_lr,
                   int random_subnets, std::int64_t test_limit, int bn_batches) {
  train::TrainConfig c;
  c.epochs = epochs;
  c.qat_epochs = qat_epochs;
  c.batch_size = batch;
  c.lr = lr;
  c.qat_lr = qat_lr;
  c.warmup_epochs = epochs > 1 ? 0.5 : 0.1;
  c.random_subnets = random_subnets;
  c.test_limit = test_limit;
  c.bn_batches = bn_batches;
  c.eval_random_subnets = 0;
  return c.to_json();
}

json block_kd_section(int epochs, int qat_epochs, std::int64_t batch, std::int64_t train_limit,
                      std::int64_t heldout) {
  train::BlockKdConfig c = train::block_kd_preset("tiny");
  c.epochs = epochs;
  c.qat_epochs = qat_epochs;
  c.batch_size = batch;
  c.train_limit = train_limit;
  c.heldout = heldout;
  return c.to_json();
}

json tiny() {
  json finetune = train_section(0, 1, 64, 0.05, 0.002, 0, 250, 2);
  finetune["train_limit"] = 256;
  json teacher = train_section(1, 0, 64, 0.05, 0.005, 0, 250, 2);
  teacher["train_limit"] = 1024;
  json supernet = train_section(1, 1, 32, 0.05, 0.005, 1, 128, 2);
  supernet["train_limit"] = 512;
  supernet["qat_train_limit"] = 256;
  return {
      {"description",
       "every stage on a sliver of the data: a smoke test in minutes, accuracy is not the point"},
      {"data", {{"heldout", 1000}}},
      {"latency",
       {{"threads", 1},
        {"runs", 10},
        {"warmup", 3},
        {"statistic", "min"},
        {"range_samples", 30},
        {"calibration_networks", 4},
        {"limit_quantiles", {0.03, 0.08}}}},
      {"teacher", teacher},
      {"block_kd", block_kd_section(1, 0, 8, 8, 32)},
      {"block_lut", {{"rows", 2}, {"eval_images", 8}, {"fixed_samples", 4}}},
      {"space_search",
       {{"population", 16},
        {"sample", 4},
        {"evaluations", 40},
        {"qt_samples", 500},
        {"top", 5},
        {"max_supernet_mflops", 40}}},
      {"supernet", supernet},
      {"subnet_search",
       {{"algorithm", "evolution"},
        {"population", 6},
        {"generations", 2},
        {"heldout_images", 128},
        {"random_baseline", false}}},
      {"finish",
       {{"finetune", finetune}, {"init", "scratch"}, {"test_images", 256}, {"runs", 10}, {"ort", true}}},
      {"estimates",
       {{"data", 1},
        {"latency", 14},
        {"teacher", 5},
        {"block-kd", 37},
        {"block-lut", 36},
        {"space-search", 1},
        {"supernet", 20},
        {"subnet-search", 20},
        {"finish", 7},
        {"baseline-supernet", 30},
        {"baseline-subnet-search", 60},
        {"baseline-finish", 30},
        {"report", 1}}},
      {"baseline", {{"types", "111111"}, {"windows", "000000"}, {"budget", "flops"}}},
  };
}

json quick() {
  // The finish carries the accuracy: a plain network learns Fashion-MNIST far faster than a supernet.
  // Measured on the chosen 19-MFLOP subnet, 2 FP32 epochs + a 5,000-image QAT epoch: 88.9% INT8 from
  // scratch, 88.2% from the supernet's weights (36% held-out after this preset's supernet schedule), so the
  // finish starts from scratch, and a third epoch (91.1% after three, docs/pipeline.md) buys the last points.
  // All 55,000 images and weight decay 5e-4 (the 30-MFLOP evolved subnet overfits in three epochs): 88.8%
  // INT8 with 40,000 and 5e-5, 90.0% with either change alone, 90.9% with both (docs/pipeline.md).
  json finetune = train_section(3, 1, 128, 0.1, 0.004, 0, 2000, 10);
  finetune["warmup_epochs"] = 0.1;
  finetune["augment"] = false;
  finetune["train_limit"] = 0;
  finetune["qat_train_limit"] = 5000;
  finetune["weight_decay"] = 5e-4;
  json teacher = train_section(1, 0, 128, 0.1, 0.005, 0, 2000, 10);
  teacher["train_limit"] = 10000;
  // The supernet only ranks subnets here (the finish retrains the winners), so it gets one FP32 epoch.
  // 5 BN batches: the subnet searches recalibrate every candidate with them (half the baseline's search).
  json supernet = train_section(1, 1, 128, 0.1, 0.005, 1, 2000, 5);
  supernet["train_limit"] = 12000;
  supernet["qat_train_limit"] = 4000;  // a QAT step costs 2.7x an FP32 one; the scales settle quickly
  return {
      {"description",
       "the default: the whole pipeline on Fashion-MNIST in under 30 minutes on 2 CPU cores, budgets cut to "
       "what that allows"},
      {"data", {{"heldout", 5000}}},
      {"latency",
       {{"threads", 1},
        {"runs", 20},
        {"warmup", 5},
        {"statistic", "min"},
        {"range_samples", 300},
        {"calibration_networks", 24},
        {"limit_quantiles", {0.02, 0.05, 0.2}}}},
      {"teacher", teacher},
      // 1 + 1 steps per block: the blocks keep about their initial NSR, so at this budget the Q-T score ranks
      // block types by their initialisation. Longer schedules that fit (8 + 8 steps on the max and min
      // sub-stages: +227 s) leave the sub-stages the LUT samples untrained as well (docs/pipeline.md).
      {"block_kd", block_kd_section(1, 1, 32, 32, 128)},
      {"block_lut", {{"rows", 8}, {"eval_images", 32}, {"fixed_samples", 30}}},
      {"space_search",
       {{"population", 100},
        {"sample", 25},
        {"evaluations", 600},
        {"qt_samples", 5000},
        {"top", 10},
        {"max_supernet_mflops", 40}}},
      {"supernet", supernet},
      {"subnet_search",
       {{"algorithm", "nsga2"},  // one population for all limits: 48 evaluations serve three
        {"population", 12},
        {"generations", 3},
        {"heldout_images", 1000},
        {"random_baseline", false}}},
      {"finish",
       {{"finetune", finetune}, {"init", "scratch"}, {"test_images", 0}, {"runs", 50}, {"ort", true}}},
      {"estimates",  // quick7: a fresh machine, cold latency cache, 1,356 s (docs/pipeline.md)
       {{"data", 1},
        {"latency", 43},
        {"teacher", 26},
        {"block-kd", 89},
        {"block-lut", 46},
        {"space-search", 1},
        {"supernet", 103},
        {"subnet-search", 41},
        {"finish", 671},
        {"baseline-supernet", 101},
        {"baseline-subnet-search", 87},
        {"baseline-finish", 151},
        {"report", 1}}},
      {"baseline", {{"types", "111111"}, {"windows", "000000"}, {"budget", "flops"}}},
  };
}

json full() {
  json finetune = train_section(0, 3, 128, 0.05, 0.004, 0, 0, 20);
  train::BlockKdConfig kd = train::block_kd_preset("fmnist");
  return {
      {"description",
       "the paper-scale schedule (the fmnist presets of train and block-kd): hours on a CPU, meant for a GPU "
       "or a long run"},
      {"data", {{"heldout", 5000}}},
      {"latency",
       {{"threads", 1},
        {"runs", 50},
        {"warmup", 10},
        {"statistic", "min"},
        {"range_samples", 1000},
        {"calibration_networks", 40},
        {"limit_quantiles", {0.15, 0.4, 0.7}}}},
      {"teacher", train_section(30, 3, 128, 0.1, 0.004, 0, 0, 20)},
      {"block_kd", kd.to_json()},
      {"block_lut", {{"rows", 1000}, {"eval_images", 0}, {"fixed_samples", 200}}},
      {"space_search",
       {{"population", 500},
        {"sample", 125},
        {"evaluations", 5000},
        {"qt_samples", 100000},
        {"top", 50},
        {"max_supernet_mflops", 0}}},
      {"supernet", train_section(30, 3, 128, 0.1, 0.004, 2, 0, 20)},
      {"subnet_search",
       {{"algorithm", "evolution"},
        {"population", 64},
        {"generations", 20},
        {"heldout_images", 0},
        {"random_baseline", true}}},
      {"finish",
       {{"finetune", finetune}, {"init", "supernet"}, {"test_images", 0}, {"runs", 50}, {"ort", true}}},
      {"estimates",
       {{"data", 1},
        {"latency", 300},
        {"teacher", 3600},
        {"block-kd", 7200},
        {"block-lut", 1800},
        {"space-search", 60},
        {"supernet", 36000},
        {"subnet-search", 1800},
        {"finish", 1800},
        {"baseline-supernet", 36000},
        {"baseline-subnet-search", 1800},
        {"baseline-finish", 1800},
        {"report", 1}}},
      {"baseline", {{"types", "111111"}, {"windows", "000000"}, {"budget", "schedule"}}},
  };
}

void require(bool ok, const std::string& what) {
  if (!ok) fail("pipeline config: {}", what);
}

}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = {"tiny", "quick", "full"};
  return names;
}

json preset_config(const std::string& name) {
  if (name == "tiny") return tiny();
  if (name == "quick") return quick();
  if (name == "full") return full();
  fail(
      "unknown preset '{}': use tiny (a smoke test in minutes), quick (the default, under 30 minutes on 2 "
      "cores) or full (paper scale)",
      name);
}

json merge_config(const json& base, const json& overrides, const std::string& source) {
  if (!overrides.is_object())
    fail("{}: a pipeline config must be a JSON object, got {}", source, overrides.type_name());
  json merged = base;
  std::function<void(json&, const json&, const std::string&)> merge = [&](json& into, const json& from,
                                                                          const std::string& path) {
    for (const auto& [key, value] : from.items()) {
      const std::string where = path.empty() ? key : path + "." + key;
      if (!into.contains(key)) {
        std::string keys;
        for (const auto& [k, v] : into.items()) keys += " " + k;
        fail("{}: unknown pipeline config key '{}': {} has{}", source, where,
             path.empty() ? "the config" : path, keys);
      }
      json& target = into[key];
      if (target.is_object()) {
        if (!value.is_object())
          fail("{}: '{}' must be an object of settings, got {}", source, where, value.type_name());
        merge(target, value, where);
      } else if (target.type() != value.type() && !(target.is_number() && value.is_number())) {
        fail("{}: '{}' must be a {}, got {}", source, where, target.type_name(), value.type_name());
      } else {
        target = value;
      }
    }
  };
  merge(merged, overrides, "");
  validate_config(merged);
  return merged;
}

void validate_config(const json& c) {
  (void)train::TrainConfig::from_json(c.at("teacher"));
  (void)train::TrainConfig::from_json(c.at("supernet"));
  (void)train::TrainConfig::from_json(c.at("finish").at("finetune"));
  (void)train::BlockKdConfig::from_json(c.at("block_kd"));
  (void)search::parse_algorithm(c.at("subnet_search").at("algorithm").get<std::string>());
  const json& l = c.at("latency");
  require(l.at("threads").get<int>() >= 1, "latency.threads must be at least 1");
  require(l.at("runs").get<int>() >= 1, "latency.runs must be at least 1");
  require(l.at("range_samples").get<int>() >= 10, "latency.range_samples must be at least 10");
  require(l.at("calibration_networks").get<int>() >= 2, "latency.calibration_networks must be at least 2");
  const auto q = l.at("limit_quantiles").get<std::vector<double>>();
  require(!q.empty(), "latency.limit_quantiles needs at least one quantile");
  for (double v : q) require(v > 0 && v <= 1, fmt::format("latency.limit_quantiles: {} is not in (0, 1]", v));
  require(c.at("data").at("heldout").get<std::int64_t>() >= 1, "data.heldout must be at least 1");
  require(c.at("block_lut").at("rows").get<int>() >= 1, "block_lut.rows must be at least 1");
  const json& s = c.at("space_search");
  require(s.at("population").get<int>() >= 2 && s.at("sample").get<int>() >= 1 &&
              s.at("sample").get<int>() <= s.at("population").get<int>(),
          "space_search needs population >= 2 and 1 <= sample <= population");
  require(s.at("evaluations").get<int>() >= s.at("population").get<int>(),
          "space_search.evaluations must be at least its population");
  require(s.at("max_supernet_mflops").get<double>() >= 0,
          "space_search.max_supernet_mflops must be >= 0 (0: no cap)");
  require(c.at("subnet_search").at("population").get<int>() >= 2,
          "subnet_search.population must be at least 2");
  const std::string init = c.at("finish").at("init").get<std::string>();
  require(init == "supernet" || init == "scratch",
          fmt::format("finish.init '{}' is unknown: use supernet (fine-tune the subnet's shared weights) or "
                      "scratch (train the chosen architecture anew)",
                      init));
  const std::string budget = c.at("baseline").at("budget").get<std::string>();
  require(budget == "flops" || budget == "schedule",
          fmt::format("baseline.budget '{}' is unknown: use flops (training images scaled so both supernets "
                      "cost the same "
                      "FLOPs) or schedule (the same epochs and images)",
                      budget));
  for (const char* key : {"types", "windows"}) {
    const std::string v = c.at("baseline").at(key).get<std::string>();
    require(!v.empty() && v.find_first_not_of("0123456789") == std::string::npos,
            fmt::format("baseline.{} must be digits, one per choosable stage, got '{}'", key, v));
  }
}

std::string presets_table() {
  std::vector<json> configs;
  for (const auto& name : preset_names()) configs.push_back(preset_config(name));
  std::string header = "| setting |", rule = "| --- |";
  for (const auto& name : preset_names()) header += " " + name + " |", rule += " --- |";
  std::string table = header + "\n" + rule + "\n";
  std::function<void(const json&, const std::string&)> rows = [&](const json& node, const std::string& path) {
    for (const auto& [key, value] : node.items()) {
      const std::string where = path.empty() ? key : path + "." + key;
      if (where == "description") continue;
      if (value.is_object()) {
        rows(value, where);
        continue;
      }
      std::string row = "| " + where + " |";
      for (const auto& c : configs) {
        const json::json_pointer pointer("/" + [&] {
          std::string p = where;
          for (auto& ch : p)
            if (ch == '.') ch = '/';
          return p;
        }());
        row += " " + (c.contains(pointer) ? c.at(pointer).dump() : std::string("-")) + " |";
      }
      table += row + "\n";
    }
  };
  rows(configs[1], "");
  std::string descriptions;
  for (size_t i = 0; i < configs.size(); ++i)
    descriptions +=
        fmt::format("- {}: {}\n", preset_names()[i], configs[i].at("description").get<std::string>());
  return descriptions + "\n" + table;
}

}  // namespace qnas::pipeline
