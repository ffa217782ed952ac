#include "train/train_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/error.h"
#include "search/qfa_genome.h"
#include "space/bit_assignment.h"

namespace qnas::train {

using nlohmann::json;

Distillation parse_distillation(const std::string& name) {
  if (name == "kl") return Distillation::kKl;
  if (name == "alpha") return Distillation::kAlpha;
  if (name == "none") return Distillation::kNone;
  fail("unknown distillation '{}': use kl, alpha or none", name);
}

const char* to_string(Distillation distillation) {
  switch (distillation) {
    case Distillation::kKl:
      return "kl";
    case Distillation::kAlpha:
      return "alpha";
    case Distillation::kNone:
      return "none";
  }
  return "none";
}

void check_device_name(const std::string& name) {
  if (name != "cpu" && name != "cuda") fail("unknown device '{}': use cpu or cuda", name);
}

void check_activation_quantizer_name(const std::string& name) {
  if (name != "lsq+" && name != "batchquant")
    fail("unknown activation quantizer '{}': use lsq+ or batchquant", name);
}

namespace {

// Every key of the config, visited once for both directions, so a key cannot be written but not read.
template <typename Config, typename Visit>
void visit_train_fields(Config& c, Visit&& visit) {
  visit("epochs", c.epochs);
  visit("qat_epochs", c.qat_epochs);
  visit("qat_bits", c.qat_bits);
  visit("batch_size", c.batch_size);
  visit("lr", c.lr);
  visit("qat_lr", c.qat_lr);
  visit("final_lr_fraction", c.final_lr_fraction);
  visit("warmup_epochs", c.warmup_epochs);
  visit("momentum", c.momentum);
  visit("weight_decay", c.weight_decay);
  visit("label_smoothing", c.label_smoothing);
  visit("random_subnets", c.random_subnets);
  visit("distillation", c.distillation);
  visit("alpha_min", c.alpha.alpha_min);
  visit("alpha_max", c.alpha.alpha_max);
  visit("ratio_clip", c.alpha.ratio_clip);
  visit("augment", c.augment);
  visit("train_limit", c.train_limit);
  visit("qat_train_limit", c.qat_train_limit);
  visit("test_limit", c.test_limit);
  visit("bn_batches", c.bn_batches);
  visit("eval_random_subnets", c.eval_random_subnets);
  visit("seed", c.seed);
  visit("device", c.device);
  visit("elastic_bits", c.elastic_bits);
  visit("grad_clip", c.grad_clip);
  visit("activation_quantizer", c.activation_quantizer);
  visit("sync_batch_norm", c.sync_batch_norm);
}

// Every key of the config, visited once for both directions, so a key cannot be written but not read.
template <typename Config, typename Visit>
void visit_block_kd_fields(Config& c, Visit&& visit) {
  visit("epochs", c.epochs);
  visit("qat_epochs", c.qat_epochs);
  visit("qat_bits", c.qat_bits);
  visit("batch_size", c.batch_size);
  visit("lr", c.lr);
  visit("qat_lr", c.qat_lr);
  visit("random_subnets", c.random_subnets);
  visit("train_limit", c.train_limit);
  visit("heldout", c.heldout);
  visit("lut_rows", c.lut_rows);
  visit("stale_seconds", c.stale_seconds);
  visit("seed", c.seed);
  visit("device", c.device);
}

// One field from JSON: the type checked, whole numbers in the field's range (a float or 1e300 given for an
// integer is an error, never a conversion), so a config file cannot reach undefined behaviour.
template <typename T>
void read_field(const json& value, T& field, const char* key, const char* what) {
  const auto wrong = [&](const char* expected) {
    fail("{} config key '{}' must be {}, got {}", what, key, expected, value.dump());
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!value.is_boolean()) wrong("true or false");
    field = value.get<bool>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!value.is_string()) wrong("a string");
    field = value.get<std::string>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!value.is_number()) wrong("a number");
    field = value.get<T>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!value.is_number_integer()) wrong("a whole number");
    const bool fits =
        value.is_number_unsigned()
            ? value.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())
            : std::is_signed_v<T> &&
                  value.get<std::int64_t>() >= static_cast<std::int64_t>(std::numeric_limits<T>::min()) &&
                  value.get<std::int64_t>() <= static_cast<std::int64_t>(std::numeric_limits<T>::max());
    if (!fits) wrong(std::is_signed_v<T> ? "a whole number in range" : "a whole number >= 0 in range");
    field = value.is_number_unsigned() ? static_cast<T>(value.get<std::uint64_t>())
                                       : static_cast<T>(value.get<std::int64_t>());
  } else {  // a list of whole numbers (elastic_bits)
    if (!value.is_array()) wrong("a list of whole numbers");
    field.clear();
    for (const json& element : value) {
      typename T::value_type item{};
      read_field(element, item, key, what);
      field.push_back(item);
    }
  }
}

// Every key of `j` must be one of the config's (listed in the error), then each is read with read_field.
template <typename Config, typename Visitor>
void read_config(const json& j, Config& c, const char* what, Visitor&& visit_fields) {
  if (!j.is_object()) fail("a {} config must be a JSON object, got {}", what, j.type_name());
  const json known = c.to_json();
  for (const auto& [key, value] : j.items()) {
    if (known.contains(key)) continue;
    std::string keys;
    for (const auto& [k, v] : known.items()) keys += " " + k;
    fail("unknown {} config key '{}': the keys are{}", what, key, keys);
  }
  visit_fields(c, [&](const char* key, auto& field) {
    if (j.contains(key)) read_field(j.at(key), field, key, what);
  });
}

}  // namespace

json TrainConfig::to_json() const {
  json j = json::object();
  visit_train_fields(*this, [&](const char* key, const auto& field) { j[key] = field; });
  return j;
}

TrainConfig TrainConfig::from_json(const json& j) {
  TrainConfig c;
  read_config(j, c, "training", [](auto& config, auto&& visit) { visit_train_fields(config, visit); });
  c.validate();
  return c;
}

void TrainConfig::validate() const {
  if (epochs < 0 || qat_epochs < 0 || epochs + qat_epochs < 1)
    fail("training needs at least one epoch (epochs {}, qat_epochs {})", epochs, qat_epochs);
  space::check_bits(qat_bits, "qat_bits");
  if (batch_size < 2) fail("batch_size must be at least 2 (batch norm), got {}", batch_size);
  if (lr <= 0 || qat_lr <= 0) fail("learning rates must be positive (lr {}, qat_lr {})", lr, qat_lr);
  if (label_smoothing < 0 || label_smoothing >= 1)
    fail("label_smoothing must be in [0, 1), got {}", label_smoothing);
  if (random_subnets < 0) fail("random_subnets must be >= 0, got {}", random_subnets);
  if (bn_batches < 1) fail("bn_batches must be >= 1, got {}", bn_batches);
  if (train_limit < 0 || qat_train_limit < 0)
    fail("train_limit and qat_train_limit must be >= 0 (0: all), got {} and {}", train_limit,
         qat_train_limit);
  if (!(grad_clip >= 0)) fail("grad_clip must be >= 0 (0: off), got {}", grad_clip);
  check_device_name(device);
  check_activation_quantizer_name(activation_quantizer);
  parse_distillation(distillation);
  if (!elastic_bits.empty()) {
    search::check_elastic_bits(elastic_bits, "elastic_bits");
    if (qat_epochs < 1) fail("elastic_bits trains bit-widths in the QAT epochs: set qat_epochs to 1 or more");
    if (qat_bits != 8 && std::find(elastic_bits.begin(), elastic_bits.end(), qat_bits) == elastic_bits.end())
      fail("qat_bits {} is not among elastic_bits: use 8 or one of them", qat_bits);
  }
}

TrainConfig preset(const std::string& name) {
  TrainConfig c;
  if (name == "tiny") {
    // A couple of minutes on 2 cores: enough to see every part work, not to reach a useful accuracy.
    c.epochs = 2;
    c.qat_epochs = 1;
    c.batch_size = 64;
    c.lr = 0.05;
    c.qat_lr = 0.005;
    c.warmup_epochs = 0.5;
    c.random_subnets = 1;
    c.train_limit = 2048;
    c.test_limit = 1000;
    c.bn_batches = 4;
    return c;
  }
  if (name == "fmnist") {
    c.epochs = 30;
    c.qat_epochs = 3;
    c.batch_size = 128;
    c.lr = 0.1;
    c.qat_lr = 0.004;
    c.warmup_epochs = 1;
    c.random_subnets = 2;
    return c;
  }
  fail("unknown preset '{}': use tiny (CPU, minutes) or fmnist (the full schedule)", name);
}

json BlockKdConfig::to_json() const {
  json j = json::object();
  visit_block_kd_fields(*this, [&](const char* key, const auto& field) { j[key] = field; });
  return j;
}

BlockKdConfig BlockKdConfig::from_json(const json& j) {
  BlockKdConfig c;
  read_config(j, c, "block-KD", [](auto& config, auto&& visit) { visit_block_kd_fields(config, visit); });
  c.validate();
  return c;
}

void BlockKdConfig::validate() const {
  if (epochs < 0 || qat_epochs < 0 || epochs + qat_epochs < 1)
    fail("block KD needs at least one epoch (epochs {}, qat_epochs {})", epochs, qat_epochs);
  space::check_bits(qat_bits, "qat_bits");
  if (batch_size < 2) fail("batch_size must be at least 2 (batch norm), got {}", batch_size);
  if (lr <= 0 || qat_lr <= 0) fail("learning rates must be positive (lr {}, qat_lr {})", lr, qat_lr);
  if (random_subnets < 0) fail("random_subnets must be >= 0, got {}", random_subnets);
  if (train_limit < 0) fail("train_limit must be >= 0, got {}", train_limit);
  if (heldout < 2) fail("heldout must be at least 2 images, got {}", heldout);
  if (lut_rows < 1) fail("lut_rows must be at least 1, got {}", lut_rows);
  if (stale_seconds <= 0) fail("stale_seconds must be positive, got {}", stale_seconds);
  check_device_name(device);
}

BlockKdConfig block_kd_preset(const std::string& name) {
  BlockKdConfig c;
  if (name == "tiny") {
    // About 10 s per block on one core: all 150 blocks of fmnistw in about 15 minutes with two workers.
    // Enough to rank block types roughly, not to distil them well (see docs/spaceevo-fmnist.md).
    c.epochs = 1;
    c.qat_epochs = 1;
    c.batch_size = 32;
    c.lr = 5e-3;
    c.qat_lr = 5e-4;
    c.train_limit = 512;
    c.heldout = 256;
    c.lut_rows = 40;
    return c;
  }
  if (name == "fmnist") {
    c.epochs = 4;
    c.qat_epochs = 1;
    c.batch_size = 128;
    c.train_limit = 0;
    c.heldout = 5000;
    c.lut_rows = 1000;
    return c;
  }
  fail("unknown block-KD preset '{}': use tiny (CPU, minutes) or fmnist (the full schedule)", name);
}

json to_json(const EpochLog& log) {
  json eval = json::array();
  for (const auto& e : log.eval) {
    eval.push_back({{"name", e.name},
                    {"subnet", e.subnet},
                    {"bits", e.bits},
                    {"accuracy", e.accuracy},
                    {"mflops", e.mflops}});
    if (!e.bits_code.empty()) eval.back()["bits_code"] = e.bits_code;
  }
  return {{"epoch", log.epoch},
          {"bits", log.bits},
          {"lr_start", log.lr_start},
          {"loss", log.loss},
          {"distill", log.distill},
          {"train_accuracy", log.train_accuracy},
          {"images_per_second", log.images_per_second},
          {"seconds", log.seconds},
          {"eval", eval}};
}

namespace {
// Fields of a log entry, typed: a log is read back from checkpoints, which may be damaged.
int int_at(const json& j, const char* key) {
  const json& v = j.at(key);
  if (!v.is_number_integer() || v.get<std::int64_t>() < std::numeric_limits<int>::min() ||
      v.get<std::int64_t>() > std::numeric_limits<int>::max())
    fail("'{}' must be a whole number, got {}", key, v.dump());
  return v.get<int>();
}
double number_at(const json& j, const char* key) {
  const json& v = j.at(key);
  if (!v.is_number()) fail("'{}' must be a number, got {}", key, v.dump());
  return v.get<double>();
}
std::string string_at(const json& j, const char* key) {
  const json& v = j.at(key);
  if (!v.is_string()) fail("'{}' must be a string, got {}", key, v.dump());
  return v.get<std::string>();
}
}  // namespace

EpochLog epoch_log_from_json(const json& j) {
  if (!j.is_object()) fail("an epoch log must be a JSON object, got {}", j.type_name());
  EpochLog log;
  log.epoch = int_at(j, "epoch");
  log.bits = int_at(j, "bits");
  log.lr_start = number_at(j, "lr_start");
  log.loss = number_at(j, "loss");
  log.distill = number_at(j, "distill");
  log.train_accuracy = number_at(j, "train_accuracy");
  log.images_per_second = number_at(j, "images_per_second");
  log.seconds = number_at(j, "seconds");
  const json& eval = j.at("eval");
  if (!eval.is_array()) fail("'eval' must be a list, got {}", eval.type_name());
  for (const auto& e : eval) {
    if (!e.is_object()) fail("an evaluation must be a JSON object, got {}", e.type_name());
    log.eval.push_back({string_at(e, "name"), string_at(e, "subnet"), int_at(e, "bits"),
                        number_at(e, "accuracy"), number_at(e, "mflops"),
                        e.contains("bits_code") ? string_at(e, "bits_code") : ""});
  }
  return log;
}

namespace {
[[noreturn]] void fail_damaged_meta(const std::string& what, const std::string& path,
                                    const std::string& problem, const std::string& fix) {
  fail("{} {} has damaged metadata ({}): {}", what, path, problem, fix);
}

// The fields of a checkpoint's meta; a problem is a qnas::Error (or nlohmann's) describing it alone.
CheckpointMeta read_meta_fields(const json& meta) {
  CheckpointMeta m;
  m.epochs_done = int_at(meta, "epochs_done");
  if (m.epochs_done < 0) fail("epochs_done is {}", m.epochs_done);
  m.model = string_at(meta, "model");
  json config = meta.at("config");
  if (!config.is_object()) fail("'config' is not a JSON object");
  // A key the checkpoint does not have was added since it was written: it trained with that key's default.
  const json defaults = TrainConfig().to_json();
  for (const auto& [key, value] : defaults.items()) {
    if (!config.contains(key)) config[key] = value;
  }
  m.config = TrainConfig::from_json(config);
  const json& logs = meta.at("logs");
  if (!logs.is_array()) fail("'logs' is not a list");
  for (const auto& l : logs) m.logs.push_back(epoch_log_from_json(l));
  if (m.logs.size() != static_cast<std::size_t>(m.epochs_done))
    fail("{} epoch logs for {} epochs done", m.logs.size(), m.epochs_done);
  if (meta.contains("bit_assignment")) {
    m.bit_assignment = meta.at("bit_assignment");
    if (!m.bit_assignment.is_object()) fail("'bit_assignment' is not a JSON object");
  }
  return m;
}
}  // namespace

CheckpointMeta parse_checkpoint_meta(const std::string& text, const std::string& what,
                                     const std::string& path, const std::string& fix) {
  const auto damaged = [&](const std::string& problem) { fail_damaged_meta(what, path, problem, fix); };
  json meta;
  try {
    meta = json::parse(text);
  } catch (const json::exception& e) {
    damaged(fmt::format("not valid JSON: {}", e.what()));
  }
  if (!meta.is_object()) damaged("not a JSON object");
  const json format = meta.contains("format") ? meta.at("format") : json("none");
  if (format != kCheckpointFormat) {
    fail(
        "{} {} has format '{}', this qnas reads {}: retrain it with this version (or choose another "
        "--run-dir)",
        what, path, format.is_string() ? format.get<std::string>() : format.dump(), kCheckpointFormat);
  }
  try {
    return read_meta_fields(meta);
  } catch (const json::exception& e) {
    fail_damaged_meta(what, path, e.what(), fix);
  } catch (const Error& e) {
    fail_damaged_meta(what, path, e.what(), fix);
  }
}

}  // namespace qnas::train
