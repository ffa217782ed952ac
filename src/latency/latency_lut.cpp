#include "latency/latency_lut.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/fs.h"

namespace qnas::latency {

std::string LatencyLut::block_key(const space::BlockSpec& b) {
  return fmt::format("{} k{} e{} c{}-{} s{} hw{}", b.type->name, b.kernel, space::format_expand(b.expand), b.cin,
                     b.cout, b.stride, b.in_hw);
}

const LutEntry* LatencyLut::find(const space::BlockSpec& block) const {
  const auto it = entries_.find(block_key(block));
  return it == entries_.end() ? nullptr : &it->second;
}

LutEntry measure_block(const space::BlockSpec& block, const runtime::ProfileKey& key, const MeasureOptions& options) {
  const bool reads_image = block.stage == "first_conv";
  const PlanTiming t = time_program(runtime::lower_block(block), runtime::parse_precision(key.precision),
                                    key.threads, options, reads_image);
  return LutEntry{t.timing.median_ms, t.timing.p90_ms, t.timing.cv};
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
  for (const auto& b : spec.blocks) {
    const LutEntry* e = find(b);
    if (!e) {
      fail("block '{}' of {} is not in the latency LUT: profile it first (qnas latency-lut build, or "
           "qnas profile subnets --lut, which fills what is missing)",
           block_key(b), spec.subnet);
    }
    sum += e->median_ms;
  }
  return sum;
}

double LatencyLut::predict(const space::ArchSpec& spec) const { return slope_ * block_sum(spec) + intercept_; }

void LatencyLut::fit_correction(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size() || x.size() < 2) fail("a latency correction needs at least two measured networks");
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= static_cast<double>(x.size());
  my /= static_cast<double>(x.size());
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
  }
  slope_ = sxx > 0 ? sxy / sxx : 1.0;
  intercept_ = my - slope_ * mx;
}

void LatencyLut::save(const std::string& path) const {
  nlohmann::json entries = nlohmann::json::object();
  for (const auto& [k, e] : entries_) entries[k] = {e.median_ms, e.p90_ms, e.cv};
  nlohmann::json j = {{"format", "qnas-latency-lut-1"},
                      {"profile", runtime::to_json(key_)},
                      {"correction", {{"slope", slope_}, {"intercept", intercept_}}},
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
    for (const auto& [k, v] : j.at("entries").items()) {
      if (!v.is_array() || v.size() != 3) fail("{}: entry '{}' is not [median_ms, p90_ms, cv]", what, k);
      const LutEntry e{v[0].get<double>(), v[1].get<double>(), v[2].get<double>()};
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

std::vector<space::BlockSpec> enumerate_blocks(const space::SearchSpace& space, const std::vector<int>& resolutions) {
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
      const std::vector<int> kernels = elastic ? st.block->kernels : std::vector<int>{st.block->kernels.front()};
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
