// The training configs, epoch logs and checkpoint metadata, without LibTorch: every key checked by type and
// range (a value of the wrong kind is one error naming the key, never a conversion), round trips, and
// checkpoint metadata damaged field by field.
#include "train/train_config.h"

#include <gtest/gtest.h>

#include "test_util.h"

using namespace qnas;
using nlohmann::json;

namespace {

TEST(TrainConfig, UnknownKeysAndWrongTypesAreNamed) {
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    train::TrainConfig::from_json({{"epoch", 3}});
                  }),
                  "unknown training config key 'epoch'");
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    train::TrainConfig::from_json({{"distillation", 3}});
                  }),
                  "'distillation' must be a string");
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    train::TrainConfig::from_json({{"qat_bits", 6}});
                  }),
                  "6");
  EXPECT_CONTAINS(qnas::testing::error_message([] { train::preset("huge"); }), "tiny");
  const auto c = train::preset("fmnist");
  EXPECT_EQ(train::TrainConfig::from_json(c.to_json()).to_json(), c.to_json());
}

TEST(TrainConfig, QatTrainLimitRoundTripsAndMustNotBeNegative) {
  const auto c = train::TrainConfig::from_json({{"train_limit", 55000}, {"qat_train_limit", 10000}});
  EXPECT_EQ(c.qat_train_limit, 10000);
  EXPECT_EQ(train::TrainConfig::from_json(c.to_json()).qat_train_limit, 10000);
  EXPECT_EQ(train::TrainConfig::from_json(json::object()).qat_train_limit, 0);  // old configs: every image
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    train::TrainConfig::from_json({{"qat_train_limit", -1}});
                  }),
                  "qat_train_limit");
}

TEST(BlockKdConfig, UnknownKeysAndWrongTypesAreNamed) {
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    train::BlockKdConfig::from_json({{"epoch", 1}});
                  }),
                  "unknown block-KD config key 'epoch'");
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    train::BlockKdConfig::from_json({{"lr", "fast"}});
                  }),
                  "'lr' must be a number");
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    train::BlockKdConfig::from_json({{"heldout", 1}});
                  }),
                  "heldout must be at least 2");
  const auto c = train::block_kd_preset("tiny");
  const auto back = train::BlockKdConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_CONTAINS(qnas::testing::error_message([] { train::block_kd_preset("huge"); }), "use tiny");
}

TEST(TrainConfig, ElasticBitsAreChecked) {
  auto config_with = [](json j) {
    return qnas::testing::error_message([&] { train::TrainConfig::from_json(j); });
  };
  EXPECT_CONTAINS(config_with({{"qat_epochs", 1}, {"elastic_bits", {2, 5}}}),
                  "5 bits cannot be an elastic choice");
  EXPECT_CONTAINS(config_with({{"qat_epochs", 0}, {"elastic_bits", {2, 4}}}), "set qat_epochs to 1 or more");
  EXPECT_CONTAINS(config_with({{"qat_epochs", 1}, {"qat_bits", 3}, {"elastic_bits", {2, 4}}}),
                  "qat_bits 3 is not among elastic_bits");
  EXPECT_CONTAINS(config_with({{"grad_clip", -1}}), "grad_clip must be >= 0");
  EXPECT_CONTAINS(config_with({{"qat_epochs", 1}, {"elastic_bits", {2, 4.5}}}),
                  "'elastic_bits' must be a whole number, got 4.5");
  EXPECT_CONTAINS(config_with({{"elastic_bits", 4}}), "'elastic_bits' must be a list of whole numbers");
}

// A number of the wrong kind or out of the field's range is refused, never converted (a float-to-int
// conversion of 1e300 is undefined behaviour).
TEST(TrainConfig, NumbersMustFitTheirField) {
  auto config_with = [](json j) {
    return qnas::testing::error_message([&] { train::TrainConfig::from_json(j); });
  };
  EXPECT_CONTAINS(config_with({{"epochs", 2.5}}), "'epochs' must be a whole number, got 2.5");
  EXPECT_CONTAINS(config_with({{"epochs", 1e300}}), "'epochs' must be a whole number");
  EXPECT_CONTAINS(config_with({{"epochs", 4294967296LL}}), "'epochs' must be a whole number in range");
  EXPECT_CONTAINS(config_with({{"seed", -1}}), "'seed' must be a whole number >= 0 in range");
  EXPECT_CONTAINS(config_with({{"augment", 1}}), "'augment' must be true or false");
  EXPECT_CONTAINS(config_with({{"device", "tpu"}}), "unknown device 'tpu': use cpu or cuda");
  EXPECT_CONTAINS(config_with({{"activation_quantizer", "minmax"}}),
                  "unknown activation quantizer 'minmax': use lsq+ or batchquant");
  EXPECT_EQ(train::TrainConfig::from_json({{"activation_quantizer", "batchquant"}}).activation_quantizer,
            "batchquant");
  EXPECT_EQ(train::TrainConfig::from_json({{"seed", 18446744073709551615ULL}}).seed, 18446744073709551615ULL);
  EXPECT_DOUBLE_EQ(train::TrainConfig::from_json({{"lr", 1}}).lr, 1.0);  // an integer is a fine double
  EXPECT_CONTAINS(qnas::testing::error_message([] { train::TrainConfig::from_json(json::array()); }),
                  "a training config must be a JSON object, got array");
}

train::EpochLog sample_log(int epoch) {
  train::EpochLog log;
  log.epoch = epoch;
  log.bits = 8;
  log.lr_start = 0.1;
  log.loss = 0.5;
  log.train_accuracy = 0.8;
  log.images_per_second = 400;
  log.seconds = 12;
  log.eval.push_back({"max", "d1_k3", 8, 0.9, 12.5, ""});
  log.eval.push_back({"random1", "d1_k5", 0, 0.7, 8.5, "8844"});
  return log;
}

json sample_meta(int epochs_done) {
  json logs = json::array();
  for (int e = 0; e < epochs_done; ++e) logs.push_back(train::to_json(sample_log(e)));
  return {{"format", train::kCheckpointFormat},
          {"epochs_done", epochs_done},
          {"model", "supernet fmnistw-000000-000000"},
          {"config", train::preset("tiny").to_json()},
          {"logs", logs}};
}

std::string meta_error(const json& meta) {
  return qnas::testing::error_message(
      [&] { train::parse_checkpoint_meta(meta.dump(), "checkpoint", "/run/checkpoint.pt", "delete it"); });
}

TEST(CheckpointMeta, RoundTripsItsFieldsAndFillsNewConfigKeys) {
  json meta = sample_meta(2);
  meta["config"].erase("grad_clip");  // written before the key existed
  const auto m = train::parse_checkpoint_meta(meta.dump(), "checkpoint", "/run/checkpoint.pt", "delete it");
  EXPECT_EQ(m.epochs_done, 2);
  EXPECT_EQ(m.model, "supernet fmnistw-000000-000000");
  EXPECT_EQ(m.config.grad_clip, 0);
  EXPECT_EQ(m.config.to_json(), train::TrainConfig::from_json(sample_meta(2).at("config")).to_json());
  ASSERT_EQ(m.logs.size(), 2u);
  EXPECT_EQ(train::to_json(m.logs[1]), train::to_json(sample_log(1)));
  EXPECT_EQ(m.logs[1].eval[1].bits_code, "8844");
  EXPECT_TRUE(m.bit_assignment.is_null());
}

TEST(CheckpointMeta, DamagedFieldsAreOneErrorNamingTheCheckpointAndTheFix) {
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    train::parse_checkpoint_meta("{\"format\":", "teacher checkpoint", "/t.pt", "retrain it");
                  }),
                  "teacher checkpoint /t.pt has damaged metadata (not valid JSON");
  json other = sample_meta(1);
  other["format"] = "qnas-checkpoint-1";
  EXPECT_CONTAINS(meta_error(other), "has format 'qnas-checkpoint-1', this qnas reads qnas-checkpoint-2");
  other["format"] = 7;
  EXPECT_CONTAINS(meta_error(other), "has format '7'");

  const auto damaged = [](const char* key, const json& value) {
    json meta = sample_meta(1);
    meta[key] = value;
    return meta_error(meta);
  };
  EXPECT_CONTAINS(damaged("epochs_done", "two"), "'epochs_done' must be a whole number");
  EXPECT_CONTAINS(damaged("epochs_done", -1), "epochs_done is -1");
  EXPECT_CONTAINS(damaged("epochs_done", 3), "1 epoch logs for 3 epochs done");
  EXPECT_CONTAINS(damaged("model", json::array()), "'model' must be a string");
  EXPECT_CONTAINS(damaged("config", 5), "'config' is not a JSON object");
  EXPECT_CONTAINS(damaged("config", {{"batch_size", 1}}), "batch_size must be at least 2");
  EXPECT_CONTAINS(damaged("logs", "none"), "'logs' is not a list");
  EXPECT_CONTAINS(damaged("logs", json::array({{{"epoch", 0}}})), "key 'bits' not found");
  EXPECT_CONTAINS(damaged("bit_assignment", 3), "'bit_assignment' is not a JSON object");
  json meta = sample_meta(1);
  meta["logs"][0]["eval"][0]["bits"] = 1e30;
  EXPECT_CONTAINS(meta_error(meta), "'bits' must be a whole number");
  meta.erase("model");
  const std::string message = meta_error(meta);
  EXPECT_CONTAINS(message, "checkpoint /run/checkpoint.pt has damaged metadata");
  EXPECT_CONTAINS(message, "key 'model' not found");
  EXPECT_CONTAINS(message, ": delete it");
}

}  // namespace
