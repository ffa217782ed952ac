#include "deploy/engines.h"

#include <algorithm>

#ifndef QNAS_VERSION
#define QNAS_VERSION "unknown"
#endif
#include <fstream>

#include <fmt/format.h>

#include "core/error.h"
#include "core/progress.h"
#include "data/loader.h"
#include "export/onnx_export.h"
#include "export/ort_harness.h"
#include "runtime/measure.h"
#include "runtime/onednn_plan.h"

namespace qnas::deploy {

using nlohmann::json;
namespace fs = std::filesystem;

DeployedModel lower_for_engines(nn::StaticNetImpl& net, const data::ImageDataset& train,
                                const data::Normalize& normalize, Calibration method, double percentile) {
  std::vector<std::int64_t> calibration;
  for (std::int64_t i = 0; i < std::min<std::int64_t>(256, train.count); ++i) calibration.push_back(i);
  return lower_network(net, normalised_images(train, calibration, normalize, net.spec().resolution), method,
                       percentile);
}

void score(EngineResult& r, const std::vector<std::int64_t>& labels, const EngineResult* reference) {
  std::int64_t top1 = 0, top5 = 0, agree = 0;
  for (size_t i = 0; i < r.logits.size(); ++i) {
    const auto& l = r.logits[i];
    std::vector<size_t> order(l.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::partial_sort(order.begin(), order.begin() + std::min<size_t>(5, order.size()), order.end(),
                      [&](size_t x, size_t y) { return l[x] > l[y]; });
    const auto label = static_cast<size_t>(labels[i]);
    top1 += order[0] == label;
    top5 += std::find(order.begin(), order.begin() + std::min<size_t>(5, order.size()), label) !=
            order.begin() + std::min<size_t>(5, order.size());
    if (reference) {
      const auto& ref = reference->logits[i];
      agree += order[0] == static_cast<size_t>(std::max_element(ref.begin(), ref.end()) - ref.begin());
    }
  }
  const double n = std::max<double>(1, static_cast<double>(r.logits.size()));
  r.top1 = static_cast<double>(top1) / n;
  r.top5 = static_cast<double>(top5) / n;
  if (reference) r.agreement = static_cast<double>(agree) / n;
}

EngineResult run_fakequant(nn::StaticNetImpl& net, const data::ImageDataset& images,
                           const std::vector<std::int64_t>& indices, const data::Normalize& normalize) {
  EngineResult r;
  r.engine = "fakequant";
  data::LoaderOptions options;
  options.batch_size = 500;
  options.shuffle = false;
  options.normalize = normalize;
  data::BatchLoader loader(images, indices, options);
  loader.reset(0);
  torch::NoGradGuard no_grad;
  data::Batch batch;
  while (loader.next(batch)) {
    const torch::Tensor logits = net.forward(batch.images).contiguous();
    for (std::int64_t i = 0; i < logits.size(0); ++i) {
      const float* p = logits[i].data_ptr<float>();
      r.logits.emplace_back(p, p + logits.size(1));
    }
  }
  return r;
}

EngineResult run_onednn(const DeployedModel& m, const std::vector<std::vector<float>>& images, int threads,
                        int runs) {
  EngineResult r;
  r.engine = "onednn";
  runtime::OnednnPlan plan(m.program, m.weights, runtime::Precision::kInt8, threads, &m.quant);
  ProgressLine progress("onednn int8", static_cast<std::int64_t>(images.size()), "images");
  for (const auto& image : images) {
    r.logits.push_back(plan.run(image));
    progress.update(static_cast<std::int64_t>(r.logits.size()));
  }
  progress.finish();
  r.implementations = plan.implementations();
  runtime::MeasureOptions options;
  options.runs = runs;
  const runtime::Timing t = runtime::measure([&] { plan.execute(); }, options);
  r.median_ms = t.median_ms;
  r.p90_ms = t.p90_ms;
  r.min_ms = t.min_ms;
  return r;
}

EngineResult run_ort(const DeployedModel& m, const std::vector<std::vector<float>>& images,
                     const std::string& harness, int threads, int runs, const fs::path& work) {
  EngineResult r;
  r.engine = "ort";
  fs::create_directories(work);
  const fs::path model = work / "model-int8.onnx", input = work / "eval-images.f32";
  exporter::OnnxOptions options;
  options.precision = runtime::Precision::kInt8;
  exporter::write_onnx(model.string(), m.program, m.weights, &m.quant, options);
  {
    std::ofstream out(input, std::ios::binary);
    for (const auto& image : images)
      out.write(reinterpret_cast<const char*>(image.data()), static_cast<std::streamsize>(image.size() * 4));
    if (!out) fail("could not write {}", input.string());
  }
  const json result =
      exporter::run_ort_harness(harness, model.string(), input.string(), m.program, threads, runs);
  for (const auto& o : result.at("outputs")) r.logits.push_back(o.get<std::vector<float>>());
  r.median_ms = result.at("median_ms").get<double>();
  r.p90_ms = result.at("p90_ms").get<double>();
  r.ort_optimization = result.value("optimization", "all");
  fs::remove(input);
  return r;
}

std::vector<std::pair<std::string, std::string>> export_metadata(const DeployedModel& m,
                                                                 const data::ImageDataset& classes,
                                                                 const data::Normalize& normalize,
                                                                 const std::string& precision) {
  const auto& in = m.program.tensors[m.program.input];
  return {
      {"qnas.version", QNAS_VERSION},
      {"qnas.space", m.spec.space},
      {"qnas.subnet", m.spec.subnet},
      {"qnas.precision", precision},
      {"qnas.quantization", precision == "int8" ? m.quant_source : "none"},
      {"input_shape", fmt::format("1,{},{},{}", in.channels, in.hw, in.hw)},
      {"input_layout", "NCHW float32, pixels / 255 then (x - mean) / std per channel"},
      {"input_resize", fmt::format("bilinear (align_corners=false, after normalisation) from the data set's "
                                   "{}x{} to {}x{}",
                                   classes.height, classes.width, in.hw, in.hw)},
      {"normalize_mean", json(normalize.mean).dump()},
      {"normalize_std", json(normalize.std).dump()},
      {"class_names", json(classes.class_names).dump()}};
}

}  // namespace qnas::deploy
