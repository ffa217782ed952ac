// The training loop at tiny scale: a kill mid-epoch and a resume end with the same weights as an
// uninterrupted run, bad checkpoints and configs get clear errors, and the plain path learns.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/fs.h"
#include "nn/supernet.h"
#include "space/sampling.h"
#include "test_util.h"
#include "train/train_test_util.h"

using namespace qnas;
namespace fs = std::filesystem;

namespace {

using train_test::synthetic;
using train_test::TempDir;

train::TrainConfig tiny_config() {
  train::TrainConfig c;
  c.epochs = 2;
  c.qat_epochs = 1;
  c.batch_size = 16;
  c.lr = 0.05;
  c.qat_lr = 0.005;
  c.warmup_epochs = 0.5;
  c.random_subnets = 1;
  c.bn_batches = 2;
  c.eval_random_subnets = 1;
  return c;
}

std::shared_ptr<nn::SupernetImpl> fresh_supernet() {
  torch::manual_seed(3);
  return std::make_shared<nn::SupernetImpl>(space::SearchSpace::parse("fmnistw-000000-000000"));
}

double max_state_diff(torch::nn::Module& a, torch::nn::Module& b) {
  double diff = 0;
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& p : pa) {
    const double d = (p.value() - pb[p.key()]).abs().max().item<double>();
    if (d > 1e-5) ADD_FAILURE() << "parameter " << p.key() << " differs by " << d;
    diff = std::max(diff, d);
  }
  const auto ba = a.named_buffers(), bb = b.named_buffers();
  for (const auto& p : ba) {
    const double d =
        (p.value().to(torch::kDouble) - bb[p.key()].to(torch::kDouble)).abs().max().item<double>();
    if (d > 1e-5) ADD_FAILURE() << "buffer " << p.key() << " differs by " << d;
    diff = std::max(diff, d);
  }
  return diff;
}

// A fresh supernet's run of `config`, killed after `steps` steps and started again in `dir`, ends with the
// weights and buffers of `reference` (the same run uninterrupted).
void expect_resumed_run_ends_like(torch::nn::Module& reference, const train::TrainConfig& config,
                                  const data::ImageDataset& train_set, const data::ImageDataset& test_set,
                                  const fs::path& dir, int steps) {
  {
    train::Trainer trainer(config, fresh_supernet(), train_set, test_set, dir);
    trainer.interrupt_after_steps(steps);
    EXPECT_THROW(trainer.run(), train::TrainingInterrupted);
  }
  auto resumed = fresh_supernet();
  train::Trainer(config, resumed, train_set, test_set, dir).run();
  EXPECT_LT(max_state_diff(*resumed, reference), 1e-5);
}

TEST(Trainer, KilledAndResumedRunEndsWithTheSameWeights) {
  const auto train_set = synthetic(96, 1), test_set = synthetic(32, 2);  // 6 steps per epoch
  TempDir straight("straight"), killed("killed");

  auto reference = fresh_supernet();
  const auto reference_logs =
      train::Trainer(tiny_config(), reference, train_set, test_set, straight.path).run();
  ASSERT_EQ(reference_logs.size(), 3u);
  EXPECT_EQ(reference_logs[2].bits, 8);

  // Killed in the middle of epoch 2 (FP32), then in the middle of epoch 3 (the QAT epoch).
  for (int steps : {8, 8}) {
    auto model = fresh_supernet();
    train::Trainer trainer(tiny_config(), model, train_set, test_set, killed.path);
    trainer.interrupt_after_steps(steps);
    EXPECT_THROW(trainer.run(), train::TrainingInterrupted);
  }
  auto resumed = fresh_supernet();
  const auto logs = train::Trainer(tiny_config(), resumed, train_set, test_set, killed.path).run();
  ASSERT_EQ(logs.size(), 3u);
  EXPECT_LT(max_state_diff(*resumed, *reference), 1e-5);
  for (size_t e = 0; e < logs.size(); ++e) {
    EXPECT_NEAR(logs[e].loss, reference_logs[e].loss, 1e-6) << e;
    EXPECT_NEAR(logs[e].eval[0].accuracy, reference_logs[e].eval[0].accuracy, 1e-9) << e;
  }
  EXPECT_TRUE(fs::exists(killed.path / "log.json"));
  for (const auto& entry : fs::directory_iterator(killed.path)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

// A full disk at the end of an epoch: one clear error, the last complete checkpoint kept byte for byte, and
// the same run resumes from it once there is room again.
TEST(Trainer, ACheckpointThatCannotBeWrittenKeepsTheLastOneAndTheRunResumes) {
  const auto train_set = synthetic(96, 1), test_set = synthetic(32, 2);
  TempDir dir("full-disk");
  {
    train::Trainer trainer(tiny_config(), fresh_supernet(), train_set, test_set, dir.path);
    trainer.interrupt_after_steps(8);  // after epoch 1's checkpoint
    EXPECT_THROW(trainer.run(), train::TrainingInterrupted);
  }
  const fs::path checkpoint = dir.path / "checkpoint.pt";
  const std::string saved = read_text_file(checkpoint);
  std::string message;
  {
    qnas::testing::FileSizeLimit full(2048);
    message = qnas::testing::error_message(
        [&] { train::Trainer(tiny_config(), fresh_supernet(), train_set, test_set, dir.path).run(); });
  }
  EXPECT_CONTAINS(message, "cannot write " + dir.path.string());
  EXPECT_CONTAINS(message, "the file size limit was reached");
  EXPECT_CONTAINS(message, "the previous file is kept as it was");
  EXPECT_EQ(read_text_file(checkpoint), saved);
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
  const auto logs = train::Trainer(tiny_config(), fresh_supernet(), train_set, test_set, dir.path).run();
  EXPECT_EQ(logs.size(), 3u);
}

TEST(Trainer, CorruptCheckpointIsAClearError) {
  const auto train_set = synthetic(32, 1), test_set = synthetic(16, 2);
  TempDir dir("corrupt");
  fs::create_directories(dir.path);
  std::ofstream(dir.path / "checkpoint.pt") << "not a checkpoint";
  train::Trainer trainer(tiny_config(), fresh_supernet(), train_set, test_set, dir.path);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { trainer.run(); }), "unreadable");
}

TEST(Trainer, ResumingWithOtherSettingsNamesTheKey) {
  const auto train_set = synthetic(32, 1), test_set = synthetic(16, 2);
  TempDir dir("settings");
  auto config = tiny_config();
  config.epochs = 1;
  config.qat_epochs = 0;
  train::Trainer(config, fresh_supernet(), train_set, test_set, dir.path).run();
  config.lr = 0.2;
  train::Trainer changed(config, fresh_supernet(), train_set, test_set, dir.path);
  const std::string message = qnas::testing::error_message([&] { changed.run(); });
  EXPECT_CONTAINS(message, "lr = 0.05");
  EXPECT_CONTAINS(message, "--run-dir");
}

TEST(Trainer, PlainPathLearnsAnEasyTask) {
  const auto train_set = synthetic(256, 4), test_set = synthetic(64, 5);
  TempDir dir("plain");
  const space::SearchSpace sp = space::SearchSpace::parse("fmnistw-000000-000000");
  torch::manual_seed(0);
  auto net = std::make_shared<nn::StaticNetImpl>(space::build_arch_spec(sp, space::min_subnet(sp)));
  auto config = tiny_config();
  config.epochs = 3;
  config.qat_epochs = 0;
  const auto logs = train::Trainer(config, net, train_set, test_set, dir.path).run();
  ASSERT_EQ(logs.back().eval.size(), 1u);
  EXPECT_GT(logs.back().eval[0].accuracy, 0.95);
  EXPECT_LT(logs.back().loss, logs.front().loss);
}

// A static network given a teacher learns the teacher's predictions, not the labels: this teacher swaps the
// two classes of the synthetic task, so the student ends up scoring near 0 on the labels. With distillation
// "none" the same run learns the labels. A supernet refuses a teacher.
TEST(Trainer, AStaticNetworkWithATeacherLearnsItsPredictions) {
  const auto train_set = synthetic(256, 4), test_set = synthetic(64, 5);
  const space::SearchSpace sp = space::SearchSpace::parse("fmnistw-000000-000000");
  const auto swapped_teacher = [](const torch::Tensor& images) {
    // The task's rule: class 0 has the bright half on top. The teacher says class 1 there.
    const torch::Tensor top_brighter =
        images.narrow(2, 0, 14).mean({1, 2, 3}).gt(images.narrow(2, 14, 14).mean({1, 2, 3}));
    torch::Tensor logits = torch::zeros({images.size(0), 10});
    logits.index_put_({torch::arange(images.size(0)), top_brighter.to(torch::kLong)}, 8.0);
    return logits;
  };
  for (const std::string distillation : {"kl", "none"}) {
    TempDir dir("teacher-" + distillation);
    torch::manual_seed(0);
    auto net = std::make_shared<nn::StaticNetImpl>(space::build_arch_spec(sp, space::min_subnet(sp)));
    auto config = tiny_config();
    config.epochs = 3;
    config.qat_epochs = 0;
    config.distillation = distillation;
    train::Trainer trainer(config, net, train_set, test_set, dir.path);
    trainer.set_teacher(swapped_teacher);
    const auto logs = trainer.run();
    ASSERT_EQ(logs.back().eval.size(), 1u);
    if (distillation == "kl") {
      EXPECT_LT(logs.back().eval[0].accuracy, 0.05) << "it learned the teacher's swapped classes";
      EXPECT_GT(logs.back().distill, 0.0);
    } else {
      EXPECT_GT(logs.back().eval[0].accuracy, 0.95) << "without distillation the labels teach";
    }
  }
  TempDir dir("teacher-supernet");
  train::Trainer supernet(tiny_config(), fresh_supernet(), train_set, test_set, dir.path);
  EXPECT_THROW(supernet.set_teacher(swapped_teacher), qnas::Error);
}

// Bit-widths are settings, not checkpoint state: reopening a finished QAT run must evaluate in INT8.
TEST(Trainer, FinishedRunReopensInItsFinalPrecision) {
  const auto train_set = synthetic(64, 6), test_set = synthetic(32, 7);
  TempDir dir("reopen");
  const space::SearchSpace sp = space::SearchSpace::parse("fmnistw-000000-000000");
  auto make_net = [&] {
    torch::manual_seed(0);
    return std::make_shared<nn::StaticNetImpl>(space::build_arch_spec(sp, space::min_subnet(sp)));
  };
  auto config = tiny_config();
  config.epochs = 1;
  config.qat_epochs = 1;
  const auto logs = train::Trainer(config, make_net(), train_set, test_set, dir.path).run();
  ASSERT_EQ(logs.back().eval[0].bits, 8);
  train::Trainer reopened(config, make_net(), train_set, test_set, dir.path);
  EXPECT_EQ(reopened.run().size(), 2u);  // nothing left to train
  const auto again = reopened.evaluate(reopened.evaluation_subnets());
  EXPECT_EQ(again[0].bits, 8);
  EXPECT_NEAR(again[0].accuracy, logs.back().eval[0].accuracy, 1e-12);
}

// QFA: the QAT epochs train bit-width as an elastic dimension (max at the largest bits, min at the smallest,
// random subnets at random per-layer bits), every bit-width on its own scales, and a killed run resumes to
// the same weights, bank included.
TEST(Trainer, ElasticBitsTrainPerLayerBitsAndResume) {
  const auto train_set = synthetic(64, 8), test_set = synthetic(32, 9);  // 4 steps per epoch
  TempDir straight("elastic"), killed("elastic-killed");
  auto config = tiny_config();
  config.epochs = 1;
  config.qat_epochs = 1;
  config.elastic_bits = {2, 4};
  config.grad_clip = 5;
  auto reference = fresh_supernet();
  const auto logs = train::Trainer(config, reference, train_set, test_set, straight.path).run();
  ASSERT_EQ(logs.size(), 2u);
  const auto& eval = logs[1].eval;
  ASSERT_EQ(eval.size(), 3u);
  EXPECT_EQ(eval[0].bits, 4);
  EXPECT_EQ(eval[1].bits, 2);
  EXPECT_EQ(eval[2].bits, 0);  // per-layer
  EXPECT_FALSE(eval[2].bits_code.empty());
  EXPECT_TRUE(std::isfinite(logs[1].loss) && std::isfinite(logs[1].distill));
  const auto params = reference->named_parameters();
  EXPECT_TRUE(params.contains("input_aq.scale_b2") && params.contains("input_aq.scale_b4"));

  expect_resumed_run_ends_like(*reference, config, train_set, test_set, killed.path, 6);  // in the QAT epoch
}

// QFA with BatchQuant activations (`activation_quantizer: batchquant`): the checkpoint holds the BatchQuant
// parameters and statistics, not LSQ+ scales, and a killed run resumes to the same weights.
TEST(Trainer, BatchQuantSupernetTrainsAndResumes) {
  const auto train_set = synthetic(64, 10), test_set = synthetic(32, 11);
  TempDir straight("batchquant"), killed("batchquant-killed");
  auto config = tiny_config();
  config.epochs = 1;
  config.qat_epochs = 1;
  config.elastic_bits = {2, 4};
  config.grad_clip = 5;
  config.activation_quantizer = "batchquant";
  auto reference = fresh_supernet();
  const auto logs = train::Trainer(config, reference, train_set, test_set, straight.path).run();
  ASSERT_EQ(logs.size(), 2u);
  EXPECT_TRUE(std::isfinite(logs[1].loss) && std::isfinite(logs[1].distill));
  for (const auto& e : logs[1].eval) EXPECT_GT(e.accuracy, 0.0) << e.name;
  const auto params = reference->named_parameters();
  EXPECT_TRUE(params.contains("input_aq.batch_range.multiplier_logit"));
  EXPECT_FALSE(params.contains("input_aq.scale_b2"));
  // The weights keep their bank (a scale per bit-width); activations need none.
  int weight_banks = 0, activation_banks = 0;
  for (const auto& p : params) {
    if (p.key().find("scale_b2") == std::string::npos) continue;
    ++(p.key().find("_aq.") == std::string::npos ? weight_banks : activation_banks);
  }
  EXPECT_GT(weight_banks, 0);
  EXPECT_EQ(activation_banks, 0);
  expect_resumed_run_ends_like(*reference, config, train_set, test_set, killed.path, 6);  // in the QAT epoch
}

TEST(Trainer, ADivergingRunStopsWithAClearError) {
  const auto train_set = synthetic(64, 1), test_set = synthetic(16, 2);
  TempDir dir("diverge");
  auto config = tiny_config();
  config.lr = 1e12;
  config.warmup_epochs = 0;
  const std::string message = qnas::testing::error_message(
      [&] { train::Trainer(config, fresh_supernet(), train_set, test_set, dir.path).run(); });
  EXPECT_CONTAINS(message, "training diverged at epoch 1");
  EXPECT_CONTAINS(message, "grad_clip");
}

TEST(Trainer, ElasticBitsNeedASupernet) {
  const space::SearchSpace sp = space::SearchSpace::parse("fmnistw-000000-000000");
  auto net = std::make_shared<nn::StaticNetImpl>(space::build_arch_spec(sp, space::min_subnet(sp)));
  auto config = tiny_config();
  config.elastic_bits = {2, 4};
  const auto train_set = synthetic(32, 1);
  EXPECT_CONTAINS(
      qnas::testing::error_message([&] { train::Trainer(config, net, train_set, train_set, "/tmp/unused"); }),
      "elastic_bits needs a supernet");
}

}  // namespace
