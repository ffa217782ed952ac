#include "latency/latency_lut.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"

namespace qnas::latency {

std::string LatencyLut::block_key(const space::BlockSpec& b) {
  return fmt::format("{} k{} e{} c{}-{} s{} hw{}", b.type->name, b.kernel, space::format_expand(b.expand),
                     b.cin, b.cout, b.stride, b.in_hw);
}

Statistic parse_statistic(const std::string& text) {
  if (text == "median") return Statistic::kMedian;
  if (text == "min") return Statistic::kMin;
  fail("unknown statistic '{}': use median or min", text);
}

const char* to_string(Statistic statistic) {
  return statistic == Statistic::kMin ? "min" : "median";
}

double pick(const runtime::Timing& timing, Statistic statistic) {
  return statistic == Statistic::kMin ? timing.min_ms : timing.median_ms;
}

void LatencyLut::set_statistic(Statistic statistic) {
  if (statistic == statistic_) return;
  statistic_ = statistic;
  slope_ = 1.0;
  intercept_ = 0.0;
  stage_slopes_.clear();
}

double LatencyLut::value(const LutEntry& e) const {
  return statistic_ == Statistic::kMin && e.min_ms > 0 ? e.min_ms : e.median_ms;
}

const LutEntry* LatencyLut::find(const space::BlockSpec& block) const {
  const auto it = entries_.find(block_key(block));
  return it == entries_.end() ? nullptr : &it->second;
}

std::size_t fill_and_save(LatencyLut& lut, const std::vector<space::BlockSpec>& blocks,
                          const MeasureOptions& options, const std::string& path) {
  const std::filesystem::path file(path);
  require_writable_directory(file.has_parent_path() ? file.parent_path() : std::filesystem::path("."),
                             "the LUT's path (--out)");
  std::unique_ptr<ProgressLine> progress;
  const std::size_t measured = lut.fill(blocks, options, [&](std::size_t done, std::size_t total) {
    if (!progress)
      progress = std::make_unique<ProgressLine>("latency LUT", static_cast<std::int64_t>(total), "blocks");
    progress->update(static_cast<std::int64_t>(done));
    if (done % 200 == 0) lut.save(path);
  });
  if (progress) progress->finish();
  lut.save(path);
  return measured;
}

LutEntry measure_block(const space::BlockSpec& block, const runtime::ProfileKey& key,
                       const MeasureOptions& options) {
  const bool reads_image = block.stage == "first_conv";
  const PlanTiming t = time_program(runtime::lower_block(block), runtime::parse_precision(key.precision),
                                    key.threads, options, reads_image, 1, key.activations == "asymmetric");
  return LutEntry{t.timing.median_ms, t.timing.p90_ms, t.timing.cv, t.timing.min_ms};
}

std::size_t LatencyLut::fill(const std::vector<space::BlockSpec>& blocks, const MeasureOptions& options,
                             const std::function<void(std::size_t, std::size_t)>& progress) {
  std::vector<const space::BlockSpec*> missing;
  std::set<std::string> queued;
  for (const auto& b : blocks) {
    const std::string k = block_key(b);
    if (!entries_.count(k) && queued.insert(k).second) missing.push_back(&b);
  }
  for (std::size_t i = 0; i < missing.size(); ++i) {
    entries_[block_key(*missing[i])] = measure_block(*missing[i], key_, options);
    if (progress) progress(i + 1, missing.size());
  }
  return missing.size();
}

double LatencyLut::block_sum(const space::ArchSpec& spec) const {
  double sum = 0;
  for (const auto& [stage, stage_sum] : stage_sums(spec)) sum += stage_sum;
  return sum;
}

std::vector<std::pair<std::string, double>> LatencyLut::stage_sums(const space::ArchSpec& spec) const {
  std::vector<std::pair<std::string, double>> sums;
  for (const auto& b : spec.blocks) {
    const LutEntry* e = find(b);
    if (!e) {
      fail(
          "block '{}' of {} is not in the latency LUT: profile it first (qnas latency-lut build, or "
          "qnas profile subnets --lut, which fills what is missing)",
          block_key(b), spec.subnet);
    }
    if (sums.empty() || sums.back().first != b.stage) sums.emplace_back(b.stage, 0.0);
    sums.back().second += value(*e);
  }
  return sums;
}

double LatencyLut::slope(const std::string& stage) const {
  const auto it = stage_slopes_.find(stage);
  return it == stage_slopes_.end() ? slope_ : it->second;
}

double LatencyLut::predict(const space::ArchSpec& spec) const {
  double total = intercept_;
  for (const auto& [stage, sum] : stage_sums(spec)) total += slope(stage) * sum;
  return total;
}

namespace {

// Solves the small dense system a x = b by Gaussian elimination with partial pivoting.
std::vector<double> solve(std::vector<std::vector<double>> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t c = 0; c < n; ++c) {
    size_t pivot = c;
    for (size_t r = c + 1; r < n; ++r) {
      if (std::fabs(a[r][c]) > std::fabs(a[pivot][c])) pivot = r;
    }
    std::swap(a[c], a[pivot]);
    std::swap(b[c], b[pivot]);
    if (std::fabs(a[c][c]) < 1e-300)
      fail("latency correction: the calibration networks do not determine the fit");
    for (size_t r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (size_t k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  std::vector<double> x(n);
  for (size_t c = n; c-- > 0;) {
    double v = b[c];
    for (size_t k = c + 1; k < n; ++k) v -= a[c][k] * x[k];
    x[c] = v / a[c][c];
  }
  return x;
}

}  // namespace

void LatencyLut::fit_correction(const std::vector<space::ArchSpec>& specs, const std::vector<double>& y) {
  if (specs.size() != y.size() || specs.size() < 2)
    fail("a latency correction needs at least two measured networks");
  // Global line first: it is the prior every stage slope is pulled towards.
  std::vector<double> x;
  for (const auto& spec : specs) x.push_back(block_sum(spec));
  const double n = static_cast<double>(x.size());
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) mx += x[i] / n, my += y[i] / n;
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < x.size(); ++i) sxy += (x[i] - mx) * (y[i] - my), sxx += (x[i] - mx) * (x[i] - mx);
  slope_ = sxx > 0 ? sxy / sxx : 1.0;
  intercept_ = my - slope_ * mx;

  std::vector<std::string> stages;
  std::vector<std::vector<double>> rows;
  for (const auto& spec : specs) {
    std::vector<double> row(stages.size(), 0.0);
    for (const auto& [stage, sum] : stage_sums(spec)) {
      auto it = std::find(stages.begin(), stages.end(), stage);
      if (it == stages.end()) {
        stages.push_back(stage);
        for (auto& r : rows) r.push_back(0.0);
        row.push_back(0.0);
        it = stages.end() - 1;
      }
      row[static_cast<size_t>(it - stages.begin())] += sum;
    }
    rows.push_back(row);
  }
  // Unknowns: one slope per stage, then the intercept. Ridge on the slopes towards the global slope.
  const size_t d = stages.size() + 1;
  std::vector<std::vector<double>> a(d, std::vector<double>(d, 0.0));
  std::vector<double> b(d, 0.0);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<double> f = rows[i];
    f.push_back(1.0);
    for (size_t p = 0; p < d; ++p) {
      for (size_t q = 0; q < d; ++q) a[p][q] += f[p] * f[q];
      b[p] += f[p] * y[i];
    }
  }
  double trace = 0;
  for (size_t p = 0; p + 1 < d; ++p) trace += a[p][p];
  const double lambda = 0.5 * trace / static_cast<double>(d - 1);
  for (size_t p = 0; p + 1 < d; ++p) a[p][p] += lambda, b[p] += lambda * slope_;
  const std::vector<double> solution = solve(a, b);
  stage_slopes_.clear();
  for (size_t p = 0; p + 1 < d; ++p) stage_slopes_[stages[p]] = solution[p];
  intercept_ = solution.back();
  // Latency is a fixed cost plus a positive price per block: a fit with a negative intercept or slope (few
  // networks for many stage slopes; the tiny preset fitted 9 unknowns on 4 and predicted -2.3 ms for the
  // smallest network) would do that for some network, so it falls back to the global line, then to the
  // plain ratio through the origin.
  const auto plausible = [&] {
    if (!(intercept_ >= 0)) return false;
    for (const auto& [stage, s] : stage_slopes_)
      if (!(s > 0)) return false;
    return true;
  };
  if (plausible()) return;
  intercept_ = my - slope_ * mx;
  for (auto& [stage, s] : stage_slopes_) s = slope_;
  if (plausible()) return;
  double sx = 0, sy = 0;
  for (size_t i = 0; i < x.size(); ++i) sx += x[i], sy += y[i];
  slope_ = sy / sx;
  intercept_ = 0;
  for (auto& [stage, s] : stage_slopes_) s = slope_;
}

void LatencyLut::save(const std::string& path) const {
  nlohmann::json entries = nlohmann::json::object();
  for (const auto& [k, e] : entries_) entries[k] = {e.median_ms, e.p90_ms, e.cv, e.min_ms};
  nlohmann::json j = {{"format", "qnas-latency-lut-1"},
                      {"profile", runtime::to_json(key_)},
                      {"correction",
                       {{"statistic", to_string(statistic_)},
                        {"slope", slope_},
                        {"intercept", intercept_},
                        {"stage_slopes", stage_slopes_}}},
                      {"entries", entries}};
  write_json_atomic(path, j);
}

LatencyLut LatencyLut::load(const std::string& path, const runtime::ProfileKey& expected) {
  const nlohmann::json j = read_json_file(path);
  const std::string what = fmt::format("latency LUT {}", path);
  try {
    if (j.at("format").get<std::string>() != "qnas-latency-lut-1") {
      fail("{} has format '{}', expected qnas-latency-lut-1", what, j.at("format").get<std::string>());
    }
    LatencyLut lut(runtime::profile_key_from_json(j.at("profile"), what));
    runtime::require_same_profile(expected, lut.key_, what);
    lut.slope_ = j.at("correction").at("slope").get<double>();
    lut.intercept_ = j.at("correction").at("intercept").get<double>();
    lut.statistic_ = parse_statistic(j.at("correction").value("statistic", std::string("median")));
    lut.stage_slopes_ = j.at("correction").value("stage_slopes", std::map<std::string, double>{});
    for (const auto& [k, v] : j.at("entries").items()) {
      if (!v.is_array() || (v.size() != 3 && v.size() != 4)) {
        fail("{}: entry '{}' is not [median_ms, p90_ms, cv, min_ms]", what, k);
      }
      const LutEntry e{v[0].get<double>(), v[1].get<double>(), v[2].get<double>(),
                       v.size() == 4 ? v[3].get<double>() : 0.0};
      if (!(e.median_ms > 0) || !std::isfinite(e.median_ms)) {
        fail("{}: entry '{}' has latency {} ms; delete the file and profile again", what, k, e.median_ms);
      }
      lut.entries_[k] = e;
    }
    return lut;
  } catch (const nlohmann::json::exception& e) {
    fail("{} is corrupt ({}); delete it and profile again", what, e.what());
  }
}

std::vector<space::BlockSpec> distinct_blocks(const std::vector<space::ArchSpec>& specs) {
  std::vector<space::BlockSpec> out;
  std::set<std::string> seen;
  for (const auto& spec : specs) {
    for (const auto& b : spec.blocks) {
      if (seen.insert(LatencyLut::block_key(b)).second) out.push_back(b);
    }
  }
  return out;
}

std::vector<space::BlockSpec> enumerate_blocks(const space::SearchSpace& space,
                                               const std::vector<int>& resolutions) {
  std::vector<space::BlockSpec> out;
  std::set<std::string> seen;
  auto keep = [&](std::vector<space::BlockSpec> blocks) {
    for (auto& b : blocks) {
      if (seen.insert(LatencyLut::block_key(b)).second) out.push_back(std::move(b));
    }
  };
  const auto& hs = space.hyperspace();
  for (int r : resolutions) {
    std::vector<int> cins{hs.in_channels};
    int hw = r;
    for (int s = 0; s < space.num_stages(); ++s) {
      const space::StageChoices& st = space.stage(s);
      const bool elastic = s < space.num_subnet_stages();
      const std::vector<int> kernels =
          elastic ? st.block->kernels : std::vector<int>{st.block->kernels.front()};
      const std::vector<double> expands =
          elastic && st.block->has_expand() ? st.block->expands : std::vector<double>{0.0};
      const std::vector<int> widths = elastic ? st.widths : std::vector<int>{st.widths.front()};
      const int max_depth = elastic ? st.def->depths.back() : 1;
      int out_hw = hw;
      for (int cin : cins) {
        for (int k : kernels) {
          for (double e : expands) {
            for (int w : widths) {
              auto first = space::build_stage(*st.block, st.name(), s, st.def->stride, cin, hw, {{k, w, e}});
              out_hw = first.front().out_hw;
              keep(first);
              if (max_depth < 2) continue;
              for (int cin2 : widths) {
                auto later = space::build_stage(*st.block, st.name(), s, 1, cin2, out_hw, {{k, w, e}});
                for (auto& b : later) b.block_index = 1;
                keep(later);
              }
            }
          }
        }
      }
      cins = widths;
      hw = out_hw;
    }
  }
  return out;
}

}  // namespace qnas::latency
