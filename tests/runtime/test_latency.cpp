// The latency LUT and predictor: keys, enumeration coverage, file round trip, refusal to mix machines,
// corrupt files, and the correction fit. Timings here are tiny and only checked for sanity, never speed.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "core/fs.h"
#include "latency/latency_lut.h"
#include "latency/profiling.h"
#include "runtime/measure.h"
#include "runtime_fixture.h"
#include "space/arch_spec.h"
#include "space/sampling.h"
#include "test_util.h"

using namespace qnas;
using namespace qnas::latency;
using runtime::Precision;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("qnas-latency-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

const MeasureOptions kQuick{1, 50, 0.0};

TEST(Measure, SummaryStatistics) {
  const Timing t = runtime::summarize({5, 1, 4, 2, 3});
  EXPECT_DOUBLE_EQ(t.median_ms, 3);
  EXPECT_DOUBLE_EQ(t.min_ms, 1);
  EXPECT_DOUBLE_EQ(t.p90_ms, 5);
  EXPECT_DOUBLE_EQ(t.mean_ms, 3);
  EXPECT_NEAR(t.cv, std::sqrt(2.5) / 3.0, 1e-12);
  EXPECT_EQ(t.runs, 5);
}

TEST(Measure, RunsAtLeastTheRequestedCount) {
  int calls = 0;
  const Timing t = runtime::measure([&] { ++calls; }, {3, 50, 0.0});
  EXPECT_EQ(calls, 53);
  EXPECT_EQ(t.runs, 50);
  EXPECT_CONTAINS(qnas::testing::error_message([] { runtime::measure([] {}, {0, 0, 0.0}); }), "at least one");
}

TEST(ProfileKey, RefusesAnotherMachineOrSetting) {
  const auto here = runtime::this_machine(1, "int8");
  auto elsewhere = here;
  elsewhere.cpu = "Some Other CPU";
  runtime::require_same_profile(here, here, "profile");
  EXPECT_CONTAINS(
      qnas::testing::error_message([&] { runtime::require_same_profile(here, elsewhere, "profile x"); }),
      "profile x was measured on [Some Other CPU");
  auto two_threads = here;
  two_threads.threads = 2;
  EXPECT_CONTAINS(
      qnas::testing::error_message([&] { runtime::require_same_profile(here, two_threads, "p"); }),
      "cannot be mixed");
}

// An LSQ+-trained network deploys its signed tensors as u8 with a zero point; the LUT's key says which was
// timed, and a key written before it existed reads as symmetric.
TEST(ProfileKey, RecordsTheActivationQuantisation) {
  const auto symmetric = runtime::this_machine(1, "int8");
  const auto asymmetric = runtime::this_machine(1, "int8", "asymmetric");
  EXPECT_EQ(symmetric.activations, "symmetric");
  EXPECT_CONTAINS(
      qnas::testing::error_message([&] { runtime::require_same_profile(symmetric, asymmetric, "p"); }),
      "asymmetric activations");
  auto old = runtime::to_json(symmetric);
  old.erase("activations");
  EXPECT_EQ(runtime::profile_key_from_json(old, "old LUT"), symmetric);
  EXPECT_CONTAINS(qnas::testing::error_message([] { runtime::this_machine(1, "int8", "lsq"); }),
                  "unknown activation quantisation 'lsq'");
}

TEST(TimingQuant, AsymmetricGivesSignedTensorsAZeroPointAndKeepsTheRest) {
  const auto space = space::SearchSpace::parse("fmnistw-151122-000000");
  const runtime::Program program = runtime::lower(space::build_arch_spec(space, space::max_subnet(space)));
  const runtime::Weights weights = runtime::random_weights(program, 1);
  const auto symmetric = latency::timing_quant(program, weights, false);
  const auto asymmetric = latency::timing_quant(program, weights, true);
  int signed_tensors = 0;
  for (size_t i = 0; i < program.tensors.size(); ++i) {
    const auto& t = program.tensors[i];
    EXPECT_EQ(symmetric.tensors[i].zero_point, 0);
    if (t.non_negative || t.is_logits) {
      EXPECT_EQ(asymmetric.tensors[i], symmetric.tensors[i]) << "tensor " << i;
    } else {
      ++signed_tensors;
      EXPECT_TRUE(asymmetric.tensors[i].is_unsigned);
      EXPECT_EQ(asymmetric.tensors[i].zero_point, 128);
    }
  }
  EXPECT_GT(signed_tensors, 0);  // residual sums and the input at least
}

TEST(LatencyLut, EnumerationCoversEverySampledSubnet) {
  const auto space = space::SearchSpace::parse("fmnistw-151122-000000");
  const auto all = enumerate_blocks(space, {20, 28});
  LatencyLut lut(runtime::this_machine(1, "int8"));
  for (const auto& b : all) lut.put(b, {1.0, 1.0, 0.0});
  EXPECT_EQ(lut.size(), all.size());  // keys are distinct
  Rng rng(3);
  for (int i = 0; i < 200; ++i) {
    space::Subnet subnet = space::sample_random(space, rng);
    subnet.resolution = i % 2 ? 20 : 28;
    const auto spec = space::build_arch_spec(space, subnet);
    EXPECT_DOUBLE_EQ(lut.block_sum(spec), static_cast<double>(spec.blocks.size())) << spec.subnet;
  }
}

TEST(LatencyLut, MissingBlockIsNamed) {
  const auto spec = qnas::testing::random_arch("fmnistw-151122-000000", 1, 20);
  LatencyLut lut(runtime::this_machine(1, "int8"));
  EXPECT_CONTAINS(qnas::testing::error_message([&] { lut.predict(spec); }), "is not in the latency LUT");
}

TEST(LatencyLut, FillMeasuresEachDistinctBlockOnceAndRoundTrips) {
  const auto a = qnas::testing::random_arch("fmnistw-151122-000000", 1, 20);
  const auto b = qnas::testing::random_arch("fmnistw-151122-000000", 2, 20);
  LatencyLut lut(runtime::this_machine(1, "int8"));
  const auto blocks = distinct_blocks({a, b, a});
  EXPECT_EQ(lut.fill(blocks, kQuick), blocks.size());
  EXPECT_EQ(lut.fill(blocks, kQuick), 0u);  // reused, nothing measured again
  EXPECT_GT(lut.block_sum(a), 0.0);
  lut.fit_correction({a, b, a, b}, {lut.block_sum(a) * 1.2 + 0.01, lut.block_sum(b) * 1.2 + 0.01,
                                    lut.block_sum(a) * 1.2 + 0.01, lut.block_sum(b) * 1.2 + 0.01});
  EXPECT_NEAR(lut.global_slope(), 1.2, 1e-6);
  EXPECT_NEAR(lut.predict(a), lut.block_sum(a) * 1.2 + 0.01, 1e-3 * lut.predict(a));
  const auto path = scratch("lut.json");
  lut.save(path.string());
  const LatencyLut loaded = LatencyLut::load(path.string(), lut.key());
  EXPECT_EQ(loaded.size(), lut.size());
  EXPECT_DOUBLE_EQ(loaded.predict(a), lut.predict(a));
  auto fp32 = lut.key();
  fp32.precision = "fp32";
  EXPECT_CONTAINS(qnas::testing::error_message([&] { LatencyLut::load(path.string(), fp32); }),
                  "cannot be mixed");
}

// Measured latencies that a line fits only with a negative intercept (a steep rise from small to large
// networks): the correction must not predict a negative latency for a small network, so it falls back to a
// fit that cannot.
TEST(LatencyLut, ACorrectionNeverPredictsANegativeLatency) {
  std::vector<space::ArchSpec> specs;
  for (std::uint64_t seed = 1; seed <= 4; ++seed)
    specs.push_back(qnas::testing::random_arch("fmnistw-151122-000000", seed, 20));
  LatencyLut lut(runtime::this_machine(1, "int8"));
  lut.fill(distinct_blocks(specs), kQuick);
  double lo = 1e300, hi = 0;
  for (const auto& s : specs) lo = std::min(lo, lut.block_sum(s)), hi = std::max(hi, lut.block_sum(s));
  ASSERT_LT(lo, hi);
  std::vector<double> measured;  // 3x the block sum, minus 2.9x the smallest: a line through (lo, 0.1 lo)
  for (const auto& s : specs) measured.push_back(3.0 * lut.block_sum(s) - 2.9 * lo);
  lut.fit_correction(specs, measured);
  EXPECT_TRUE(lut.has_correction());
  EXPECT_GE(lut.intercept(), 0.0);
  const auto tiny = qnas::testing::random_arch("fmnistw-151122-000000", 99, 20);
  lut.fill(distinct_blocks({tiny}), kQuick);
  for (const auto& s : specs) EXPECT_GT(lut.predict(s), 0.0);
  EXPECT_GT(lut.predict(tiny), 0.0);
}

TEST(Profiling, AMixedPrecisionNetworkRunsAsSegmentsOfOnePrecision) {
  const auto spec = qnas::testing::random_arch("fmnistw-151122-000000", 3, 20);
  std::vector<Precision> precision(spec.blocks.size(), Precision::kInt8);
  const auto int8 = time_mixed(spec, precision, 1, kQuick, true);
  for (size_t b = 1; b < precision.size(); b += 2)
    precision[b] = Precision::kFp32;  // a boundary after every block
  const auto mixed = time_mixed(spec, precision, 1, kQuick, true);
  EXPECT_GT(int8.timing.min_ms, 0.0);
  EXPECT_GT(mixed.timing.min_ms, 0.0);
  int int8_primitives = 0, fp32_primitives = 0;
  for (const auto& [name, count] : mixed.implementations)
    (name.find("int8") != std::string::npos ? int8_primitives : fp32_primitives) += count;
  EXPECT_GT(int8_primitives, 0) << "the INT8 blocks run INT8 kernels";
  EXPECT_GT(fp32_primitives, 0) << "the FP32 blocks run FP32 kernels";
  precision.pop_back();
  EXPECT_CONTAINS(qnas::testing::error_message([&] { time_mixed(spec, precision, 1, kQuick); }),
                  "precisions for");
}

TEST(LatencyLut, CorruptOrMissingFilesAreRefused) {
  const auto key = runtime::this_machine(1, "int8");
  EXPECT_CONTAINS(qnas::testing::error_message([&] { LatencyLut::load("/nonexistent/lut.json", key); }),
                  "/nonexistent/lut.json");
  const auto truncated = scratch("truncated.json");
  write_file_atomic(truncated, "{\"format\": \"qnas-latency-lut-1\", \"profile\": ");
  EXPECT_CONTAINS(qnas::testing::error_message([&] { LatencyLut::load(truncated.string(), key); }),
                  "truncated.json");
  const auto no_entries = scratch("no_entries.json");
  write_json_atomic(no_entries, {{"format", "qnas-latency-lut-1"}, {"profile", runtime::to_json(key)}});
  EXPECT_CONTAINS(qnas::testing::error_message([&] { LatencyLut::load(no_entries.string(), key); }),
                  "is corrupt");
  const auto negative = scratch("negative.json");
  write_json_atomic(negative, {{"format", "qnas-latency-lut-1"},
                               {"profile", runtime::to_json(key)},
                               {"correction", {{"slope", 1.0}, {"intercept", 0.0}}},
                               {"entries", {{"X k3", {-1.0, 1.0, 0.0}}}}});
  EXPECT_CONTAINS(qnas::testing::error_message([&] { LatencyLut::load(negative.string(), key); }),
                  "has latency -1 ms");
}

}  // namespace
