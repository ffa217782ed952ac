#include "deploy/deploy.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/quant_contract.h"
#include "core/strings.h"
#include "data/loader.h"
#include "nn/mixed_precision.h"
#include "quant/quantizers.h"
#include "runtime/reference.h"
#include "space/sampling.h"

namespace qnas::deploy {
namespace fs = std::filesystem;
using nlohmann::json;
using space::OpKind;

namespace {

std::vector<float> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

runtime::TensorQuant activation_quant(quant::LsqPlusActivationImpl& q, const std::string& what) {
  if (q.bits() > 8 || !q.initialized()) {
    fail(
        "{} is not an initialised LSQ+ quantizer of 8 bits or fewer (bits {}): the engines run INT8; an "
        "FP32 layer inside a quantised network is not deployable yet",
        what, q.bits());
  }
  // Fewer bits: the same scale and zero point on u8 codes, so every value inside the trained range gets the
  // code fake-quant gives it; a value above the range is not clipped to 2^b - 1 (the INT8 kernels saturate at
  // 255). Measured on an AutoQ network with 13 4-bit inputs: 98.7% top-1 agreement with fake-quant, against
  // 89.1% for the alternative of the same range on a 255/Qp times finer grid (docs/mixed-precision.md).
  return runtime::TensorQuant{q.effective_scale(), q.zero_point(), true};
}

// The weight's LSQ codes and per-channel scales with BN's per-channel factor `fold` (gamma / sigma) moved
// into the scales: codes stay the integers training used, a negative factor flips their sign.
void lower_weight(quant::LsqWeightImpl& wq, const torch::Tensor& weight, const std::vector<float>& fold,
                  std::vector<std::int8_t>& codes, std::vector<float>& scales) {
  // A 2-, 3- or 4-bit weight is stored as its own integer codes (|code| <= Qp) in INT8: exact.
  if (wq.bits() > 8) {
    fail(
        "a weight quantizer has {} bits: the engines run INT8; an FP32 layer inside a quantised network is "
        "not deployable yet",
        wq.bits());
  }
  const int qp = wq.qmax();
  const int64_t out = weight.size(0);
  const std::vector<float> w = to_vector(weight);
  const std::vector<float> s = to_vector(wq.scale.narrow(0, 0, std::min<int64_t>(wq.scale.size(0), out)));
  const size_t per = w.size() / static_cast<size_t>(out);
  codes.resize(w.size());
  scales.resize(static_cast<size_t>(out));
  for (int64_t c = 0; c < out; ++c) {
    const float sc = std::max(std::fabs(s.size() == 1 ? s[0] : s[c]), 1e-12f);
    const float f = fold.empty() ? 1.0f : fold[c];
    const int sign = f < 0 ? -1 : 1;
    scales[c] = std::max(sc * std::fabs(f), 1e-12f);
    for (size_t i = 0; i < per; ++i) {
      const int code = quant_contract::quantize(w[c * per + i], sc, 0, -qp, qp);
      codes[c * per + i] = static_cast<std::int8_t>(sign * code);
    }
  }
}

// BN after a conv becomes a per-channel factor on the weights and a bias.
void fold_batch_norm(const nn::StaticLayer& layer, std::vector<float>& weight, std::vector<float>& bias,
                     std::vector<float>& factor) {
  const int cout = layer.spec.cout;
  bias.assign(static_cast<size_t>(cout), 0.0f);
  factor.clear();
  if (!layer.bn) return;
  const auto gamma = to_vector(layer.bn->weight), beta = to_vector(layer.bn->bias);
  const auto mean = to_vector(layer.bn->running_mean), var = to_vector(layer.bn->running_var);
  const double eps = layer.bn->options.eps();
  factor.resize(static_cast<size_t>(cout));
  const size_t per = weight.size() / static_cast<size_t>(cout);
  for (int c = 0; c < cout; ++c) {
    factor[c] = static_cast<float>(gamma[c] / std::sqrt(var[c] + eps));
    bias[c] = beta[c] - mean[c] * factor[c];
    for (size_t i = 0; i < per; ++i) weight[c * per + i] *= factor[c];
  }
}

// One StaticLayer -> the weights (and, for a QAT network, the quantisation) of its Program step.
void lower_layer(nn::StaticLayer& layer, bool trained, runtime::StepWeights& w, runtime::StepQuant& q) {
  switch (layer.spec.op) {
    case OpKind::kConv:
    case OpKind::kDepthwiseConv: {
      w.weight = to_vector(layer.conv->weight);
      std::vector<float> factor;
      fold_batch_norm(layer, w.weight, w.bias, factor);
      if (trained) lower_weight(*layer.weight_quant, layer.conv->weight, factor, q.weight, q.weight_scale);
      return;
    }
    case OpKind::kSqueezeExcite:
      w.weight = to_vector(layer.conv->weight);
      w.bias = to_vector(layer.conv->bias);
      w.weight2 = to_vector(layer.se_expand->weight);
      w.bias2 = to_vector(layer.se_expand->bias);
      if (trained) {
        lower_weight(*layer.weight_quant, layer.conv->weight, {}, q.weight, q.weight_scale);
        lower_weight(*layer.expand_weight_quant, layer.se_expand->weight, {}, q.weight2, q.weight2_scale);
        q.pool = activation_quant(*layer.pool_quant, "an SE pool quantizer");
        q.mid = activation_quant(*layer.mid_quant, "an SE mid quantizer");
      }
      return;
    case OpKind::kLinear:
      w.weight = to_vector(layer.linear->weight);
      w.bias = to_vector(layer.linear->bias);
      if (trained) lower_weight(*layer.weight_quant, layer.linear->weight, {}, q.weight, q.weight_scale);
      return;
    case OpKind::kGlobalAvgPool:
      return;
  }
}

bool quantised(nn::StaticNetImpl& net) {
  return net.input_quant->bits() != quant::kFloatBits;
}

// Percentile of |x| per tensor over the calibration images (a strided sample keeps memory bounded).
std::vector<float> percentile_ranges(const runtime::Program& program, const runtime::Weights& weights,
                                     const std::vector<std::vector<float>>& images, double percentile) {
  constexpr size_t kSamplesPerTensor = 1 << 16;
  std::vector<std::vector<float>> samples(program.tensors.size());
  runtime::ReferenceExecutor fp32(program, weights);
  fp32.set_observer([&](int tensor, const std::vector<float>& v) {
    auto& s = samples[static_cast<size_t>(tensor)];
    const size_t stride = std::max<size_t>(1, v.size() * images.size() / kSamplesPerTensor);
    for (size_t i = 0; i < v.size(); i += stride) s.push_back(std::fabs(v[i]));
  });
  for (const auto& image : images) fp32.run(image);
  std::vector<float> ranges(program.tensors.size(), 0.0f);
  for (size_t t = 0; t < samples.size(); ++t) {
    auto& s = samples[t];
    if (s.empty()) continue;
    const size_t k =
        std::min(s.size() - 1, static_cast<size_t>(percentile / 100.0 * static_cast<double>(s.size())));
    std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(k), s.end());
    ranges[t] = s[k];
  }
  return ranges;
}

}  // namespace

TrainedRun load_run(const fs::path& dir) {
  if (!fs::is_directory(dir)) {
    fail("run directory {} does not exist: pass the --run-dir of a finished `qnas train` run", dir.string());
  }
  const fs::path path = dir / "checkpoint.pt";
  if (!fs::exists(path)) {
    fail(
        "{} has no checkpoint.pt: it is not a `qnas train` run directory (train one with `qnas train "
        "--run-dir {}`)",
        dir.string(), dir.string());
  }
  torch::serialize::InputArchive archive;
  const train::CheckpointMeta meta =
      train::open_checkpoint(path, archive, "checkpoint", "run the `qnas train` command again to rewrite it");
  TrainedRun run;
  run.dir = dir;
  run.identity = meta.model;
  run.config = meta.config;
  const int done = meta.epochs_done, total = run.config.epochs + run.config.qat_epochs;
  if (done < total) {
    fail("run {} has finished {} of {} epochs: run the same `qnas train` command again to finish it",
         dir.string(), done, total);
  }
  run.bits = run.config.qat_epochs > 0 ? run.config.qat_bits : quant::kFloatBits;
  char space_text[128] = {}, subnet_text[1024] = {};
  int resolution = 0;
  if (std::sscanf(run.identity.c_str(), "static %127s %1023s r%d", space_text, subnet_text, &resolution) ==
      3) {
    run.space = space::SearchSpace::parse(space_text);
    run.net =
        nn::StaticNet(space::build_arch_spec(*run.space, space::Subnet::parse(subnet_text), resolution));
  } else if (std::sscanf(run.identity.c_str(), "supernet %127s", space_text) == 1) {
    run.space = space::SearchSpace::parse(space_text);
    run.supernet = nn::Supernet(*run.space);
  } else {
    fail("checkpoint {} holds '{}', which qnas cannot deploy", path.string(), run.identity);
  }
  nn::NetworkImpl& model = run.is_supernet() ? static_cast<nn::NetworkImpl&>(*run.supernet) : *run.net;
  train::add_configured_quantizer_parameters(run.config, model);
  try {
    torch::serialize::InputArchive weights;
    archive.read("model", weights);
    model.load(weights);
  } catch (const std::exception& e) {
    fail("checkpoint {} does not fit its own network ({})", path.string(), first_line(e.what()));
  }
  quant::set_bits(model, run.bits);
  if (!meta.bit_assignment.is_null()) {
    if (run.is_supernet())
      fail("checkpoint {} is a supernet with per-layer bits, which qnas cannot load", path.string());
    run.assignment =
        space::BitAssignment::from_json(meta.bit_assignment, run.net->spec(), path.string() + " (meta)");
    nn::apply_bits(*run.net, *run.assignment, nn::Scales::kAsTrained);
  }
  model.eval();
  return run;
}

void apply_bits_from(const TrainedRun& run, nn::StaticNetImpl& net, const fs::path& path) {
  if (run.bits != 8)
    fail(
        "--bits-from needs a run trained at 8 bits (QAT), whose trained ranges the new bits keep; run {} "
        "ended in {} bits: fine-tune it in those bits with `qnas mixed-precision` or train with `qnas train "
        "--bits-from`",
        run.dir.string(), run.bits);
  if (run.assignment)
    fail("run {} already has its own per-layer bits (it was trained in them): drop --bits-from",
         run.dir.string());
  nn::apply_bits(net, nn::read_bit_assignment(path, net.spec()), nn::Scales::kKeepRange);
}

nn::StaticNet network_to_deploy(TrainedRun& run, const std::string& subnet, const data::ImageDataset& train,
                                const data::Normalize& normalize, const fs::path& bits_from) {
  if (!run.is_supernet()) {
    if (!subnet.empty() && subnet != run.net->spec().subnet) {
      fail("run {} trained one network ({}); --subnet applies to supernet runs only", run.dir.string(),
           run.net->spec().subnet);
    }
    if (!bits_from.empty()) apply_bits_from(run, *run.net, bits_from);
    return run.net;
  }
  std::string encoding = subnet;
  if (encoding.empty() && !bits_from.empty()) {
    // An assignment names its subnet (what `qnas subnet-search --objective bitops` writes): deploy that one.
    const fs::path file = fs::is_directory(bits_from) ? bits_from / "assignment.json" : bits_from;
    if (fs::exists(file)) {
      const json j = read_json_file(file);
      if (j.is_object() && j.contains("subnet") && j["subnet"].is_string()) encoding = j["subnet"];
    }
  }
  const space::Subnet chosen =
      encoding.empty() ? space::max_subnet(*run.space) : space::Subnet::parse(encoding);
  run.supernet->set_active(chosen);  // validates against the space, naming what is wrong
  // A QFA supernet learned each bit-width's ranges: the network runs on them (BN recalibrated in those bits).
  const bool elastic = !run.config.elastic_bits.empty();
  if (elastic && !bits_from.empty())
    run.supernet->set_active(chosen, nn::read_bit_assignment(bits_from, run.supernet->active_spec()));
  data::LoaderOptions options = train::bn_calibration_options(run.config);
  options.normalize = normalize;
  std::vector<std::int64_t> indices(static_cast<size_t>(
      run.config.train_limit > 0 ? std::min(run.config.train_limit, train.count) : train.count));
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = static_cast<std::int64_t>(i);
  data::BatchLoader loader(train, indices, options);
  loader.reset(0);
  data::Batch batch;
  nn::recalibrate_batch_norm(
      *run.supernet,
      [&](torch::Tensor& images) {
        if (!loader.next(batch)) return false;
        images = batch.images;
        return true;
      },
      run.config.bn_batches);
  nn::StaticNet net = run.supernet->extract_active();
  net->eval();
  if (!elastic && !bits_from.empty()) apply_bits_from(run, *net, bits_from);
  return net;
}

std::vector<std::vector<float>> normalised_images(const data::ImageDataset& images,
                                                  const std::vector<std::int64_t>& indices,
                                                  const data::Normalize& normalize, int resolution) {
  const data::PixelNormalizer normalizer(normalize, images.channels);
  const std::int64_t plane = images.height * images.width;
  const bool resize = resolution > 0 && (resolution != images.height || resolution != images.width);
  std::vector<std::vector<float>> out;
  out.reserve(indices.size());
  for (std::int64_t i : indices) {
    const std::uint8_t* pixels = images.image(i);
    std::vector<float> image(static_cast<size_t>(images.image_bytes()));
    for (std::int64_t j = 0; j < images.image_bytes(); ++j) image[j] = normalizer(j / plane, pixels[j]);
    if (resize) {
      torch::NoGradGuard no_grad;
      const torch::Tensor x =
          torch::from_blob(image.data(), {1, images.channels, images.height, images.width});
      const torch::Tensor y = nn::resize_images(x, resolution).contiguous();
      image.assign(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
    }
    out.push_back(std::move(image));
  }
  return out;
}

DeployedModel lower_network(nn::StaticNetImpl& net, const std::vector<std::vector<float>>& calibration,
                            Calibration method, double percentile) {
  torch::NoGradGuard no_grad;
  DeployedModel m;
  m.spec = net.spec();
  m.program = runtime::lower(m.spec);
  const bool trained = quantised(net);
  m.weights.steps.resize(m.program.steps.size());
  std::vector<runtime::StepQuant> steps(m.program.steps.size());
  std::vector<runtime::TensorQuant> tensors(m.program.tensors.size());
  if (trained)
    tensors[static_cast<size_t>(m.program.input)] = activation_quant(*net.input_quant, "the input quantizer");
  // Lowering emits, per block, the projection step first and then the main path (runtime/program.cpp).
  size_t step = 0;
  auto take = [&](nn::StaticLayer& layer) {
    if (step >= m.program.steps.size() || m.program.steps[step].layer.op != layer.spec.op)
      fail("internal: network {} and its lowered program disagree at step {}", m.spec.subnet, step);
    lower_layer(layer, trained, m.weights.steps[step], steps[step]);
    if (trained && layer.output_quant) {
      tensors[static_cast<size_t>(m.program.steps[step].output)] =
          activation_quant(*layer.output_quant, fmt::format("the output quantizer of step {}", step));
    }
    ++step;
  };
  for (auto& block : net.blocks()) {
    if (block.spec.shortcut == space::Shortcut::kProjection) take(*block.projection);
    for (auto& layer : block.layers) take(layer);
  }
  if (step != m.program.steps.size())
    fail("internal: network {} lowered to a different program", m.spec.subnet);
  if (trained) {
    m.quant.tensors = std::move(tensors);
    m.quant.steps = std::move(steps);
    m.quant_source = "lsq+ (trained)";
    int lowest = 8;
    for (const auto& h : nn::quant_layer_handles(net))
      lowest = std::min({lowest, h.weight_quant->bits(), h.input_quant->bits()});
    if (lowest < 8)
      m.quant_source +=
          " with mixed bits (weights below 8 bits stored exactly as INT8 codes, inputs below 8 "
          "bits as 8-bit codes over the same range)";
  } else {
    if (calibration.empty()) fail("an FP32 network needs calibration images for INT8");
    m.quant = runtime::calibrate(m.program, m.weights, calibration);
    m.quant_source = "calibrated min-max";
    if (method == Calibration::kPercentile) {
      runtime::QuantParams p = runtime::make_quant_params(
          m.program, m.weights, percentile_ranges(m.program, m.weights, calibration, percentile));
      for (size_t i = 0; i < p.steps.size(); ++i) p.steps[i].mid = m.quant.steps[i].mid;
      m.quant = std::move(p);
      m.quant_source = fmt::format("calibrated percentile {}", percentile);
    }
  }
  runtime::validate(m.quant, m.program);
  return m;
}

}  // namespace qnas::deploy
