// Block-wise distillation at tiny scale: the NSR loss against hand values and finite differences, a teacher
// trained by the plain trainer and loaded back, blocks that learn, a killed worker whose block is taken
// again, a run directory that refuses other settings, and bad teacher checkpoints with clear errors.
#include "train/block_kd.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/fs.h"
#include "core/work_queue.h"
#ifdef QNAS_HAVE_BLOCK_LUT_BUILDER
#include "search/block_lut.h"
#include "train/block_lut_builder.h"
#endif
#include "nn/supernet.h"
#include "space/sampling.h"
#include "test_util.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

using namespace qnas;
namespace fs = std::filesystem;
using train_test::synthetic;
using train_test::TempDir;

namespace {

// The smallest fmnistw network: a teacher trained for one FP32 and one QAT epoch on 128 synthetic images.
const char* const kTeacherSpace = "fmnistw-000000-000000";

fs::path train_teacher(const fs::path& dir, const data::ImageDataset& data, int resolution = 28) {
  const auto sp = space::SearchSpace::parse(kTeacherSpace);
  torch::manual_seed(5);
  space::Subnet subnet = space::min_subnet(sp);
  subnet.resolution = resolution;  // fmnistw's block LUTs are measured at 28
  auto net = std::make_shared<nn::StaticNetImpl>(space::build_arch_spec(sp, subnet));
  train::TrainConfig c;
  c.epochs = 1;
  c.qat_epochs = 1;
  c.batch_size = 32;
  c.bn_batches = 1;
  c.augment = false;
  train::Trainer trainer(c, net, data, data, dir);
  trainer.run();
  return dir;
}

train::BlockKdConfig tiny_kd() {
  train::BlockKdConfig c;
  c.epochs = 2;
  c.qat_epochs = 1;
  c.batch_size = 16;
  c.lr = 5e-3;
  c.train_limit = 96;
  c.heldout = 32;
  c.lut_rows = 4;
  return c;
}

// Mean NSR of a block's max sub-stage on the held-out images, with batch statistics.
double heldout_nsr(train::BlockKd& kd, nn::StageStudent& student, const space::StageSpace& block) {
  const auto [begin, end] = kd.heldout_range();
  const auto [tin, tout] = kd.teacher_io(block.stage_name, begin, end);
  student->train();
  torch::NoGradGuard no_grad;
  return train::nsr_loss(student->forward(tin, space::max_sub_stage(block)), tout).item<double>();
}

}  // namespace

// Outside the anonymous namespace: the TEST_F classes derive from it.
class BlockKdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(1);
    data_ = new data::ImageDataset(synthetic(128, 11));
    teacher_dir_ = new TempDir("block-kd-teacher");
    train_teacher(teacher_dir_->path, *data_);
  }
  static void TearDownTestSuite() {
    delete teacher_dir_;
    delete data_;
  }
  static data::ImageDataset* data_;
  static TempDir* teacher_dir_;
};
data::ImageDataset* BlockKdTest::data_ = nullptr;
TempDir* BlockKdTest::teacher_dir_ = nullptr;

TEST(NsrLoss, MatchesHandValuesAndIsScaleFree) {
  // One sample, one channel, four pixels: t = 1 2 3 4 (variance 1.25), s = t + 0.5 -> 0.25 / 1.25 = 0.2.
  const auto t = torch::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 1, 2, 2});
  EXPECT_NEAR(train::nsr_loss(t + 0.5, t).item<double>(), 0.2, 1e-6);
  EXPECT_NEAR(train::nsr_loss(t, t).item<double>(), 0.0, 1e-12);
  // Scaling teacher and student together leaves the loss unchanged: every stage weighs the same.
  const auto s = torch::randn({2, 3, 4, 4}), u = torch::randn({2, 3, 4, 4});
  EXPECT_NEAR(train::nsr_loss(10 * s, 10 * u).item<double>(), train::nsr_loss(s, u).item<double>(), 1e-5);
}

TEST(NsrLoss, DeadTeacherChannelStaysFinite) {
  auto t = torch::randn({2, 3, 4, 4});
  t.select(1, 1).zero_();  // a channel a ReLU switched off
  const double loss = train::nsr_loss(torch::randn({2, 3, 4, 4}), t).item<double>();
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_LT(loss, 1e4);
}

TEST(NsrLoss, GradientMatchesFiniteDifferences) {
  torch::manual_seed(0);
  const auto t = torch::randn({2, 2, 3, 3}, torch::kDouble);
  auto s = torch::randn({2, 2, 3, 3}, torch::kDouble).requires_grad_(true);
  train::nsr_loss(s, t).backward();
  const auto grad = s.grad().clone();
  const double h = 1e-6;
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < s.numel(); i += 5) {
    auto flat = s.view({-1});
    const double x = flat[i].item<double>();
    flat[i] = x + h;
    const double up = train::nsr_loss(s, t).item<double>();
    flat[i] = x - h;
    const double down = train::nsr_loss(s, t).item<double>();
    flat[i] = x;
    EXPECT_NEAR(grad.view({-1})[i].item<double>(), (up - down) / (2 * h), 1e-6) << "element " << i;
  }
}

TEST_F(BlockKdTest, TeacherLoadsWithItsBitsAndStages) {
  train::Teacher t = train::load_teacher(teacher_dir_->path);
  EXPECT_EQ(t.bits, 8);
  EXPECT_CONTAINS(t.identity, kTeacherSpace);
  EXPECT_GT(t.accuracy, 0.0);
  // Stage boundaries: stage3's input is stage2's output, at the stride-2 resolution.
  const auto images = torch::rand({2, 1, 28, 28});
  const auto [in3, out3] = t.net->stage_io(images, "stage3");
  const auto [in4, out4] = t.net->stage_io(images, "stage4");
  EXPECT_TRUE(torch::allclose(out3, in4));
  EXPECT_EQ(in3.size(2), 14);
  EXPECT_EQ(out3.size(2), 7);
  const auto [cin, cout] = t.net->stage_channels("stage3");
  EXPECT_EQ(in3.size(1), cin);
  EXPECT_EQ(out3.size(1), cout);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { t.net->stage_channels("stage9"); }),
                  "has no stage 'stage9'");
}

TEST_F(BlockKdTest, BadTeachersGetClearErrors) {
  EXPECT_CONTAINS(qnas::testing::error_message([] { train::load_teacher("/nonexistent/teacher"); }),
                  "train one with `qnas train --subnet");
  TempDir dir("block-kd-bad-teacher");
  fs::create_directories(dir.path);
  std::ofstream(dir.path / "checkpoint.pt") << "not a checkpoint";
  EXPECT_CONTAINS(qnas::testing::error_message([&] { train::load_teacher(dir.path); }), "unreadable");
  // A supernet checkpoint is not a teacher.
  TempDir super_dir("block-kd-supernet-teacher");
  {
    torch::manual_seed(1);
    auto supernet = std::make_shared<nn::SupernetImpl>(space::SearchSpace::parse(kTeacherSpace));
    train::TrainConfig c;
    c.epochs = 1;
    c.batch_size = 32;
    c.bn_batches = 1;
    c.eval_random_subnets = 0;
    c.random_subnets = 0;
    train::Trainer trainer(c, supernet, *data_, *data_, super_dir.path);
    trainer.run();
  }
  EXPECT_CONTAINS(qnas::testing::error_message([&] { train::load_teacher(super_dir.path); }),
                  "not a static network");
  // A teacher at another resolution than the LUTs' has stage outputs of other sizes.
  TempDir small("block-kd-r20-teacher");
  train_teacher(small.path, *data_, 20);
  TempDir run("block-kd-r20-run");
  EXPECT_CONTAINS(qnas::testing::error_message([&] {
                    train::BlockKd kd(tiny_kd(), train::load_teacher(small.path), *data_, run.path);
                  }),
                  "the teacher runs at 20x20, but fmnistw block LUTs are measured at 28");
}

TEST_F(BlockKdTest, BlocksLearnFromTheTeacher) {
  TempDir run("block-kd-learn");
  train::BlockKd kd(tiny_kd(), train::load_teacher(teacher_dir_->path), *data_, run.path);
  const auto blocks = kd.blocks({"stage1_3_0", "stage3_2_1"});
  for (const auto& block : blocks) {
    // The untrained student, made exactly as train_block makes it, against the trained one.
    const auto [in, out] = train::load_teacher(teacher_dir_->path).net->stage_channels(block.stage_name);
    torch::manual_seed(99);
    nn::StageStudent untrained(block, in, out);
    const double before = heldout_nsr(kd, untrained, block);
    kd.train_block(block);
    auto trained = kd.load_student(block);
    const double after = heldout_nsr(kd, trained, block);
    EXPECT_LT(after, 0.8 * before) << block.name() << ": NSR " << before << " -> " << after;
    EXPECT_TRUE(kd.is_done(block));
  }
  // Every worker that comes later finds nothing left to do.
  EXPECT_TRUE(kd.run(blocks).empty());
}

TEST_F(BlockKdTest, CachedTeacherFeaturesTrainTheSameBlocksAsRecomputedOnes) {
  // Two blocks of one stage share the cached features; a third of another stage replaces them.
  const std::vector<std::string> names = {"stage1_3_0", "stage1_0_1", "stage3_2_1"};
  TempDir cached_run("block-kd-cached"), recomputed_run("block-kd-recomputed");
  train::BlockKd cached(tiny_kd(), train::load_teacher(teacher_dir_->path), *data_, cached_run.path);
  train::BlockKd recomputed(tiny_kd(), train::load_teacher(teacher_dir_->path), *data_, recomputed_run.path);
  recomputed.cache_teacher_features_up_to(0);
  for (const auto& block : cached.blocks(names)) {
    const auto a = cached.train_block(block), b = recomputed.train_block(block);
    ASSERT_EQ(a.epoch_nsr.size(), 3u);
    ASSERT_EQ(b.epoch_nsr.size(), 3u);
    // The teacher ran on other groupings of the same images, so its features differ by rounding only, and
    // how much depends on the kernels oneDNN picks for this CPU: the first epoch agreed to 1e-4 on an Intel
    // Xeon, to 1.3e-4 on an AMD EPYC (AVX-512) and 2.5e-4 there with DNNL_MAX_CPU_ISA=AVX2. Features of other
    // images would be off by the NSR itself (about 1). Later epochs drift further (Adam divides by small
    // second moments and the QAT epoch's LSQ+ codes flip on such differences), measured at most 0.5%.
    EXPECT_NEAR(a.epoch_nsr[0], b.epoch_nsr[0], 1e-3 * b.epoch_nsr[0]) << block.name();
    for (size_t e = 1; e < a.epoch_nsr.size(); ++e)
      EXPECT_NEAR(a.epoch_nsr[e], b.epoch_nsr[e], 0.02 * b.epoch_nsr[e]) << block.name() << " epoch " << e;
    EXPECT_LT(a.epoch_nsr[1], a.epoch_nsr[0]) << block.name();  // and it learned
  }
}

TEST_F(BlockKdTest, KilledWorkerLosesOnlyItsBlock) {
  TempDir run("block-kd-killed");
  const auto blocks_named = std::vector<std::string>{"stage2_0_0", "stage2_0_1"};
  {
    train::BlockKd kd(tiny_kd(), train::load_teacher(teacher_dir_->path), *data_, run.path);
    const auto blocks = kd.blocks(blocks_named);
    kd.train_block(blocks[0]);
    kd.interrupt_after_steps(2);
    EXPECT_THROW(kd.run(blocks), train::TrainingInterrupted);
    EXPECT_TRUE(kd.is_done(blocks[0]));
    EXPECT_FALSE(kd.is_done(blocks[1]));
    EXPECT_FALSE(fs::exists(kd.block_dir() / "stage2_0_1.pt"));
  }
  // A worker that died without releasing its lock (same host, pid gone) does not block the others.
  { std::ofstream(run.path / "blocks" / "stage2_0_1.lock") << host_name() << " 999999999\n"; }
  train::BlockKd again(tiny_kd(), train::load_teacher(teacher_dir_->path), *data_, run.path);
  const auto trained = again.run(again.blocks(blocks_named));
  ASSERT_EQ(trained.size(), 1u);
  EXPECT_EQ(trained[0].name, "stage2_0_1");
  EXPECT_FALSE(fs::exists(run.path / "blocks" / "stage2_0_1.lock"));
}

TEST_F(BlockKdTest, RunDirectoryRefusesOtherSettings) {
  TempDir run("block-kd-settings");
  { train::BlockKd kd(tiny_kd(), train::load_teacher(teacher_dir_->path), *data_, run.path); }
  auto other = tiny_kd();
  other.lr = 1e-2;
  EXPECT_CONTAINS(qnas::testing::error_message([&] {
                    train::BlockKd kd(other, train::load_teacher(teacher_dir_->path), *data_, run.path);
                  }),
                  "was made with lr = 0.005");
  // lut_rows does not change what a block learns: it may differ.
  auto rows = tiny_kd();
  rows.lut_rows = 9;
  train::BlockKd ok(rows, train::load_teacher(teacher_dir_->path), *data_, run.path);
  auto overlap = tiny_kd();
  overlap.train_limit = 120;
  EXPECT_CONTAINS(qnas::testing::error_message([&] {
                    train::BlockKd kd(overlap, train::load_teacher(teacher_dir_->path), *data_, run.path);
                  }),
                  "overlaps the 32 held-out images");
}

#ifdef QNAS_HAVE_BLOCK_LUT_BUILDER
// Three rows per block, a few images and timed runs: the LUT tests' settings.
train::LutBuildOptions tiny_lut_options() {
  train::LutBuildOptions options;
  options.rows = 3;
  options.fixed_samples = 4;
  options.eval_batch = 16;
  options.measure.runs = 5;
  options.measure.warmup = 1;
  return options;
}

TEST_F(BlockKdTest, LutRowsAreMeasuredAndReadBackBySearch) {
  TempDir run("block-kd-lut");
  train::BlockKd kd(tiny_kd(), train::load_teacher(teacher_dir_->path), *data_, run.path);
  const auto blocks = kd.blocks({"stage5_1_0", "stage6_4_2"});
  latency::LatencyLut lut(runtime::this_machine(1, "int8"));
  const train::LutBuildOptions options = tiny_lut_options();
  train::BlockLutBuilder builder(kd, lut, run.path / "latency.json", options);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { builder.build(blocks, run.path / "lut"); }),
                  "block stage5_1_0 is not trained yet");
  for (const auto& b : blocks) kd.train_block(b);
  const auto summary = builder.build(blocks, run.path / "lut");
  EXPECT_EQ(summary.files_written, 2);
  EXPECT_GT(summary.blocks_measured, 0u);
  ASSERT_EQ(summary.fixed_latency_ms.count(28), 1u);
  EXPECT_GT(summary.fixed_latency_ms.at(28), 0.0);
  EXPECT_TRUE(fs::exists(run.path / "latency.json"));

  const auto luts = search::BlockLutSet::load(run.path / "lut", kd.hyperspace());
  EXPECT_EQ(luts.num_files(), 2u);
  EXPECT_EQ(luts.num_rows(), 6u);
  EXPECT_EQ(luts.resolutions(), std::vector<int>{28});
  // Each row's numbers are the sub-stage's own: FLOPs from the space, latency from the latency LUT.
  const auto rows = builder.sample_rows(blocks[0]);
  std::ifstream in(run.path / "lut" / "stage5_1_0.csv");
  std::string line;
  for (const auto& sub : rows) {
    ASSERT_TRUE(std::getline(in, line));
    const auto row = search::BlockLutSet::parse_row(line, "stage5_1_0.csv");
    const auto specs = space::build_sub_stage(blocks[0], sub);
    EXPECT_EQ(row.choice, sub.encode());
    EXPECT_EQ(row.cin, sub.cin);
    EXPECT_EQ(row.hw, 7);
    EXPECT_NEAR(row.mflops, static_cast<double>(space::macs(specs)) / 1e6, 1e-3);
    EXPECT_NEAR(row.latency_ms, builder.latency_ms(specs), 1e-5);
    EXPECT_GT(row.latency_ms, 0.f);
    EXPECT_GT(row.loss, 0.f);
    EXPECT_TRUE(std::isfinite(row.loss));
  }
  // A second build keeps the files it finds and measures nothing new.
  const auto again = builder.build(blocks, run.path / "lut");
  EXPECT_EQ(again.files_kept, 2);
  EXPECT_EQ(again.blocks_measured, 0u);
}

// A build killed after its first file; the next one is a new process (the latency LUT read back from its
// file). It keeps that file byte for byte, measures no block again, and ends with exactly the files of an
// uninterrupted build.
TEST_F(BlockKdTest, InterruptedLutBuildResumesToTheFilesOfAnUninterruptedOne) {
  TempDir run("block-kd-lut-interrupted");
  train::BlockKd kd(tiny_kd(), train::load_teacher(teacher_dir_->path), *data_, run.path);
  const auto blocks = kd.blocks({"stage5_1_0", "stage6_4_2"});
  for (const auto& b : blocks) kd.train_block(b);
  const fs::path latency_path = run.path / "latency.json", out = run.path / "lut";
  const train::LutBuildOptions options = tiny_lut_options();
  const runtime::ProfileKey key = runtime::this_machine(1, "int8");
  {
    latency::LatencyLut lut(key);
    train::BlockLutBuilder builder(kd, lut, latency_path, options);
    builder.interrupt_after_files(1);
    EXPECT_THROW(builder.build(blocks, out), train::TrainingInterrupted);
  }
  ASSERT_TRUE(fs::exists(out / "stage5_1_0.csv"));
  ASSERT_FALSE(fs::exists(out / "stage6_4_2.csv"));
  const std::string first = read_text_file(out / "stage5_1_0.csv");

  latency::LatencyLut reloaded = latency::LatencyLut::load(latency_path.string(), key);
  train::BlockLutBuilder resumed(kd, reloaded, latency_path, options);
  const auto summary = resumed.build(blocks, out);
  EXPECT_EQ(summary.files_kept, 1);
  EXPECT_EQ(summary.files_written, 1);
  EXPECT_EQ(summary.blocks_measured, 0u) << "blocks measured before the interruption were measured again";
  EXPECT_EQ(read_text_file(out / "stage5_1_0.csv"), first);

  train::BlockLutBuilder uninterrupted(kd, reloaded, latency_path, options);
  uninterrupted.build(blocks, run.path / "lut-uninterrupted");
  for (const char* name : {"stage5_1_0.csv", "stage6_4_2.csv", "fixed_latency.json"})
    EXPECT_EQ(read_text_file(out / name), read_text_file(run.path / "lut-uninterrupted" / name)) << name;
  for (const auto& entry : fs::directory_iterator(out))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
}

#endif
