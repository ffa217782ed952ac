#include "train/block_lut_builder.h"

#include <fmt/format.h>

#include <chrono>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"
#include "data/transform.h"
#include "search/block_lut.h"
#include "space/sampling.h"
#include "train/trainer.h"

namespace qnas::train {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kRowStream = 41, kFixedStream = 42;

bool is_lut_stage(const space::Hyperspace& hs, const std::string& stage) {
  const int index = hs.stage_index(stage);
  return hs.is_choosable(index);
}

}  // namespace

BlockLutBuilder::BlockLutBuilder(BlockKd& kd, latency::LatencyLut& lut, fs::path latency_lut_path,
                                 LutBuildOptions options)
    : kd_(kd), lut_(lut), lut_path_(std::move(latency_lut_path)), options_(options) {
  if (options_.rows < 1) fail("--rows must be at least 1, got {}", options_.rows);
  if (options_.eval_batch < 2) fail("the evaluation batch must hold at least 2 images");
}

std::vector<space::SubStage> BlockLutBuilder::sample_rows(const space::StageSpace& block) const {
  Rng rng(data::derive_seed(options_.seed ^ stable_hash(block.name()), kRowStream, 0));
  std::vector<space::SubStage> rows;
  for (int i = 0; i < options_.rows; ++i) rows.push_back(space::sample_sub_stage(block, rng));
  return rows;
}

double BlockLutBuilder::latency_ms(const std::vector<space::BlockSpec>& blocks) const {
  space::ArchSpec spec;
  spec.blocks = blocks;
  return lut_.predict(spec) - lut_.intercept();  // the intercept belongs to a whole network: fixed stages
}

// Random subnets of a space of this hyperspace, for the fixed stages only: the choosable stages' picks do not
// matter except through stage6's width, which the heads take as their input.
std::vector<space::BlockSpec> BlockLutBuilder::fixed_stage_samples(
    std::vector<space::ArchSpec>* specs) const {
  const space::Hyperspace& hs = kd_.hyperspace();
  const int choosable = hs.num_choosable_stages();
  std::vector<int> zeros(static_cast<size_t>(choosable), 0), last_windows;
  for (int i = 0; i < choosable; ++i)
    last_windows.push_back(hs.stages[static_cast<size_t>(hs.choosable_stage_index(i))].num_windows() - 1);
  Rng rng(data::derive_seed(options_.seed, kFixedStream, 0));
  std::vector<space::BlockSpec> fixed;
  for (int i = 0; i < options_.fixed_samples; ++i) {
    // Alternate the first and the last stage6 window so the heads see its whole width range.
    const space::SearchSpace sp(hs, zeros, i % 2 == 0 ? zeros : last_windows);
    space::ArchSpec spec = space::build_arch_spec(sp, space::sample_random(sp, rng), kd_.resolution());
    std::vector<space::BlockSpec> kept;
    for (auto& b : spec.blocks)
      if (!is_lut_stage(hs, b.stage)) kept.push_back(b);
    spec.blocks = kept;
    fixed.insert(fixed.end(), kept.begin(), kept.end());
    specs->push_back(std::move(spec));
  }
  return fixed;
}

std::string BlockLutBuilder::csv_of(const space::StageSpace& block,
                                    const std::vector<space::SubStage>& rows) {
  nn::StageStudent student = kd_.load_student(block);
  auto it = heldout_io_.find(block.stage_name);
  if (it == heldout_io_.end()) {
    const auto [begin, end] = kd_.heldout_range();
    it = heldout_io_.emplace(block.stage_name, kd_.teacher_io(block.stage_name, begin, end)).first;
  }
  const auto& [tin, tout] = it->second;
  // Batch statistics of the held-out images stand in for BN recalibration: weight sharing leaves the running
  // statistics meaningless for any one sub-stage.
  student->train();
  torch::NoGradGuard no_grad;
  std::string csv;
  const std::int64_t n = options_.eval_images > 0 ? std::min(options_.eval_images, tin.size(0)) : tin.size(0);
  for (const auto& sub : rows) {
    double loss = 0;
    for (std::int64_t begin = 0; begin < n; begin += options_.eval_batch) {
      const std::int64_t count = std::min(options_.eval_batch, n - begin);
      if (count < 2 && begin > 0) break;  // a 1-image batch has no batch statistics
      const torch::Tensor out = student->forward(tin.narrow(0, begin, count), sub);
      loss += nsr_loss(out, tout.narrow(0, begin, count)).item<double>() * static_cast<double>(count);
    }
    loss /= static_cast<double>(n);
    const auto specs = space::build_sub_stage(block, sub);
    csv += fmt::format("{},1x{}x{}x{},{:.6f},{:.4f},{:.4f},{:.6f}\n", sub.encode(), sub.cin, block.in_hw,
                       block.in_hw, loss, static_cast<double>(space::macs(specs)) / 1e6,
                       static_cast<double>(space::params(specs)) / 1e6, latency_ms(specs));
  }
  return csv;
}

LutBuildSummary BlockLutBuilder::build(const std::vector<space::StageSpace>& blocks,
                                       const fs::path& out_dir) {
  const auto start = std::chrono::steady_clock::now();
  LutBuildSummary summary;
  for (const auto& b : blocks) {
    if (!kd_.is_done(b))
      fail("block {} is not trained yet: run `qnas block-kd` on {} first (it resumes)", b.name(),
           kd_.block_dir().parent_path().string());
  }
  // Every block any row or the fixed stages use, measured once up front.
  std::vector<space::ArchSpec> fixed_specs;
  std::vector<space::BlockSpec> needed = fixed_stage_samples(&fixed_specs);
  std::map<std::string, std::vector<space::SubStage>> rows;
  for (const auto& b : blocks) {
    rows[b.name()] = sample_rows(b);
    for (const auto& sub : rows[b.name()]) {
      auto specs = space::build_sub_stage(b, sub);
      needed.insert(needed.end(), specs.begin(), specs.end());
    }
  }
  space::ArchSpec all;
  all.blocks = std::move(needed);
  // Saved every 200 blocks as it grows: a killed build keeps what it measured.
  summary.blocks_measured =
      latency::fill_and_save(lut_, latency::distinct_blocks({all}), options_.measure, lut_path_.string());

  create_directories_or_fail(out_dir);
  double fixed = 0;
  for (const auto& spec : fixed_specs) fixed += latency_ms(spec.blocks);
  summary.fixed_latency_ms[kd_.resolution()] =
      fixed / static_cast<double>(fixed_specs.size()) + lut_.intercept();
  nlohmann::json fixed_json = nlohmann::json::object();
  for (const auto& [r, ms] : summary.fixed_latency_ms) fixed_json[std::to_string(r)] = ms;
  write_json_atomic(out_dir / "fixed_latency.json", fixed_json);

  ProgressLine progress("block LUTs", static_cast<std::int64_t>(blocks.size()), "files");
  std::int64_t done = 0;
  for (const auto& b : blocks) {
    const fs::path file = out_dir / (b.name() + ".csv");
    if (fs::exists(file)) {
      ++summary.files_kept;
    } else {
      const std::string csv = csv_of(b, rows[b.name()]);
      // Read back what is about to be written with the reader the search uses.
      search::BlockLutSet::parse_row(csv.substr(0, csv.find('\n')), file.string() + ":1");
      write_file_atomic(file, csv);
      ++summary.files_written;
      if (interrupt_after_files_ >= 0 && summary.files_written >= interrupt_after_files_) {
        interrupt_after_files_ = -1;
        throw TrainingInterrupted();
      }
    }
    progress.update(++done, b.name());
  }
  progress.finish();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace qnas::train
