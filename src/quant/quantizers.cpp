#include "quant/quantizers.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "core/error.h"
#include "core/quant_contract.h"
#include "quant/collectives.h"

namespace qnas::quant {

namespace {
thread_local const Collectives* active_collectives = nullptr;
}  // namespace

void set_collectives(const Collectives* c) {
  active_collectives = c;
}

const Collectives* collectives() {
  return active_collectives;
}

namespace {

// [min, max] of x over the batches of all ranks (one all-reduce of [-min, max]).
torch::Tensor global_range(const torch::Tensor& x) {
  torch::Tensor range = torch::stack({-x.detach().min(), x.detach().max()});
  if (active_collectives) active_collectives->max(range);
  return torch::stack({-range[0], range[1]});
}

// BatchQuant's range: per channel (dimension 1; a tensor of one or no such dimension is one channel) the
// minimum and maximum over the batch and positions, widened to include 0, then averaged over the channels.
// Averaging keeps one outlier channel from widening every channel's grid; including 0 keeps 0 exact (ReLU).
// Over all ranks: the per-channel extremes are all-reduced before the average.
torch::Tensor channel_averaged_range(const torch::Tensor& x) {
  const torch::Tensor t = x.detach();
  // Reduced in place over every dimension but the channels (no transposed copy of the activation).
  std::vector<int64_t> others;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d != 1 || t.dim() < 2) others.push_back(d);
  }
  const int64_t channels = t.dim() >= 2 ? t.size(1) : 1;
  const torch::Tensor lo = t.dim() == 0 ? t.reshape({1}) : t.amin(others).reshape({channels});
  const torch::Tensor hi = t.dim() == 0 ? t.reshape({1}) : t.amax(others).reshape({channels});
  torch::Tensor extremes = torch::cat({-lo, hi}).clamp_min(0);
  if (active_collectives) active_collectives->max(extremes);
  return torch::stack(
      {-extremes.narrow(0, 0, channels).mean(), extremes.narrow(0, channels, channels).mean()});
}

// Below 4 bits min-max initialisation leaves most of a bell-shaped tensor in the zero bin (2-bit weights: all
// of |w| < max/2), the next layer's batch norm then divides by a tiny variance, and the scale's first
// gradient is large enough to flip its sign (measured: 5.7 -> -289 in one SGD step of a trained network, NaN
// next). There the scale starts where LSQ (Esser et al. 2020) starts it, 2 <|x - lo|> / sqrt(Qp), never wider
// than min-max; 4 and 8 bits keep min-max, which the reports were measured with.
constexpr int kLsqInitBelowBits = 4;

// <|v|> over the batches of all ranks.
double global_mean_abs(const torch::Tensor& v) {
  torch::Tensor stats =
      torch::stack({v.detach().abs().sum(), torch::full({}, static_cast<double>(v.numel()), v.options())});
  if (active_collectives) active_collectives->sum({stats});
  return stats[0].item<double>() / std::max(stats[1].item<double>(), 1.0);
}

// Every element of one sample shares the activation scale, so LSQ's N is the per-sample element count.
double activation_grad_factor(const torch::Tensor& x, int qmax) {
  const double per_sample = x.dim() > 0 && x.size(0) > 0 ? static_cast<double>(x.numel()) / x.size(0) : 1.0;
  return 1.0 / std::sqrt(per_sample * qmax);
}

// The buffer is read once (after construction or a checkpoint load); afterwards the host flag answers.
bool read_initialized(const torch::Tensor& buffer, bool& known) {
  if (!known) known = buffer.item<bool>();
  return known;
}

}  // namespace

void check_bits(int bits, const char* what) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8 && bits != kFloatBits) {
    fail("{}: bit-width {} is not supported; use 2, 3, 4, 8 or 32 (float)", what, bits);
  }
}

LsqPlusActivationImpl::LsqPlusActivationImpl(int bits) : bits_(bits) {
  check_bits(bits, "LSQ+ activation quantizer");
  scale = register_parameter("scale", torch::ones({1}));
  offset = register_parameter("offset", torch::zeros({1}));
  initialized_ = register_buffer("initialized", torch::zeros({1}, torch::kBool));
}

bool LsqPlusActivationImpl::initialized() const {
  // A BatchQuant range always exists: the running statistics start at [0, 1] and follow training.
  return uses_batch_range() || read_initialized(initialized_, known_initialized_);
}

void LsqPlusActivationImpl::set_bits(int bits) {
  check_bits(bits, "LSQ+ activation quantizer");
  switch_bank(bits);
  bits_ = bits;
  if (uses_batch_range()) batch_range->set_bits(bits);
}

void LsqPlusActivationImpl::use_batch_range() {
  if (uses_batch_range()) return;
  if (has_bit_bank()) fail("activation quantizer: BatchQuant mode must be chosen before the bit bank");
  batch_range = register_module("batch_range", BatchQuantActivation(bits_));
}

void LsqPlusActivationImpl::enable_bit_bank(const std::vector<int>& bits) {
  if (uses_batch_range()) return;
  if (!bank_.empty()) fail("LSQ+ activation quantizer: its bit bank is already enabled");
  bank_[8] = {scale, offset, initialized_, known_initialized_};
  for (int b : bits) {
    check_bits(b, "LSQ+ activation quantizer bank");
    if (b == 8 || b == kFloatBits || bank_.count(b)) continue;
    ScaleBankEntry e;
    e.scale = register_parameter(fmt::format("scale_b{}", b), torch::ones({1}));
    e.offset = register_parameter(fmt::format("offset_b{}", b), torch::zeros({1}));
    e.initialized = register_buffer(fmt::format("initialized_b{}", b), torch::zeros({1}, torch::kBool));
    bank_[b] = e;
  }
  bank_bits_ = 8;
  switch_bank(bits_);
}

void LsqPlusActivationImpl::switch_bank(int bits) {
  if (bank_.empty() || bits == kFloatBits || bits == bank_bits_) return;
  const auto it = bank_.find(bits);
  if (it == bank_.end())
    fail("LSQ+ activation quantizer: {} bits is not in its bit bank: train the supernet with those bits",
         bits);
  bank_[bank_bits_].known_initialized = known_initialized_;
  scale = it->second.scale;
  offset = it->second.offset;
  initialized_ = it->second.initialized;
  known_initialized_ = it->second.known_initialized;
  bank_bits_ = bits;
}

torch::Tensor LsqPlusActivationImpl::forward(const torch::Tensor& x) {
  if (uses_batch_range()) return batch_range->forward(x);
  if (bits_ == kFloatBits) return x;
  const auto [s, zero_point] = scale_and_zero_point(x);
  return fake_quant_zero_point(x, s, zero_point, qmax());
}

torch::Tensor LsqPlusActivationImpl::forward_clamped(const torch::Tensor& x, double lo, double hi) {
  if (uses_batch_range() || bits_ == kFloatBits) return forward(torch::hardtanh(x, lo, hi));
  // Once initialised only x's shape is read: the clamped copy is made for the first batch alone.
  const auto [s, zero_point] = scale_and_zero_point(initialized() ? x : torch::hardtanh(x.detach(), lo, hi));
  return fake_quant_zero_point_clamped(x, s, zero_point, qmax(), lo, hi);
}

std::pair<torch::Tensor, torch::Tensor> LsqPlusActivationImpl::scale_and_zero_point(const torch::Tensor& x) {
  if (!initialized()) {
    torch::NoGradGuard no_grad;
    const torch::Tensor range = global_range(x);
    const double lo = range[0].item<double>(), hi = range[1].item<double>();
    double s = std::max(hi - lo, 1e-8) / qmax();
    if (bits_ < kLsqInitBelowBits)
      s = std::min(s, std::max(2 * global_mean_abs(x - lo) / std::sqrt(qmax()), 1e-8));
    scale.fill_(s);
    offset.fill_(lo);
    initialized_.fill_(true);
    known_initialized_ = true;
  }
  torch::Tensor s = scale.abs().clamp_min(quant_contract::kMinScale), b = offset;
  if (is_training()) {
    const double g = activation_grad_factor(x, qmax());
    s = grad_scale(s, g);
    b = grad_scale(b, g);
  }
  // The engine stores codes with an integer zero point (core/quant_contract.h), so the offset is rounded to
  // one here too; with the straight-through estimator the offset still learns from the clipped elements,
  // exactly as LSQ+'s continuous offset does.
  const torch::Tensor zero_point = torch::clamp(round_pass(-b / s), 0, qmax());
  return {s, zero_point};
}

void LsqPlusActivationImpl::forget_range() {
  initialized_.fill_(false);
  known_initialized_ = false;
}

float LsqPlusActivationImpl::effective_scale() const {
  if (uses_batch_range()) return batch_range->inference_scale();
  return std::max(std::fabs(scale.item<float>()), quant_contract::kMinScale);
}

int LsqPlusActivationImpl::zero_point() const {
  if (uses_batch_range()) return batch_range->inference_zero_point();
  return quant_contract::zero_point_from_offset(offset.item<float>(), effective_scale(), qmax());
}

LsqWeightImpl::LsqWeightImpl(int out_channels, bool per_channel, int bits)
    : per_channel_(per_channel), bits_(bits) {
  check_bits(bits, "LSQ weight quantizer");
  if (out_channels < 1) fail("LSQ weight quantizer needs at least one output channel, got {}", out_channels);
  scale = register_parameter("scale", torch::ones({per_channel ? out_channels : 1}));
  initialized_ = register_buffer("initialized", torch::zeros({1}, torch::kBool));
}

bool LsqWeightImpl::initialized() const {
  return read_initialized(initialized_, known_initialized_);
}

void LsqWeightImpl::set_bits(int bits) {
  check_bits(bits, "LSQ weight quantizer");
  switch_bank(bits);
  bits_ = bits;
}

void LsqWeightImpl::fit_scale(const torch::Tensor& w) {
  if (bits_ == kFloatBits) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor flat = per_channel_ ? w.detach().flatten(1) : w.detach().reshape({1, -1});
  const torch::Tensor full_range = (flat.abs().amax(1, /*keepdim=*/true) / qmax()).clamp_min(1e-8);
  torch::Tensor best_scale = full_range.clone();
  torch::Tensor best_error = torch::full_like(full_range, std::numeric_limits<float>::infinity());
  // 1% steps down to a fifth of the range: below that even 2-bit weights clip more than they gain.
  for (int percent = 100; percent >= 20; --percent) {
    const torch::Tensor s = full_range * (percent / 100.0);
    const torch::Tensor q = torch::round(flat / s).clamp(-qmax(), qmax()) * s;
    const torch::Tensor error = (q - flat).pow(2).sum(1, /*keepdim=*/true);
    const torch::Tensor better = error < best_error;
    best_error = torch::where(better, error, best_error);
    best_scale = torch::where(better, s, best_scale);
  }
  scale.narrow(0, 0, best_scale.size(0)).copy_(best_scale.reshape({-1}));
  initialized_.fill_(true);
  known_initialized_ = true;
}

void LsqWeightImpl::enable_bit_bank(const std::vector<int>& bits) {
  if (!bank_.empty()) fail("LSQ weight quantizer: its bit bank is already enabled");
  bank_[8] = {scale, {}, initialized_, known_initialized_};
  for (int b : bits) {
    check_bits(b, "LSQ weight quantizer bank");
    if (b == 8 || b == kFloatBits || bank_.count(b)) continue;
    ScaleBankEntry e;
    e.scale = register_parameter(fmt::format("scale_b{}", b), torch::ones_like(scale));
    e.initialized = register_buffer(fmt::format("initialized_b{}", b), torch::zeros({1}, torch::kBool));
    bank_[b] = e;
  }
  bank_bits_ = 8;
  switch_bank(bits_);
}

void LsqWeightImpl::switch_bank(int bits) {
  if (bank_.empty() || bits == kFloatBits || bits == bank_bits_) return;
  const auto it = bank_.find(bits);
  if (it == bank_.end())
    fail("LSQ weight quantizer: {} bits is not in its bit bank: train the supernet with those bits", bits);
  bank_[bank_bits_].known_initialized = known_initialized_;
  scale = it->second.scale;
  initialized_ = it->second.initialized;
  known_initialized_ = it->second.known_initialized;
  bank_bits_ = bits;
}

torch::Tensor LsqWeightImpl::forward(const torch::Tensor& w) {
  if (bits_ == kFloatBits) return w;
  if (per_channel_ && w.size(0) > scale.size(0)) {
    fail("LSQ weight quantizer has {} channel scales but the weight has {} output channels", scale.size(0),
         w.size(0));
  }
  // Elastic width uses the leading output channels, so the leading scales go with them.
  torch::Tensor s = per_channel_ ? scale.narrow(0, 0, w.size(0)) : scale;
  if (!initialized()) {
    // Max |w| maps to Qp: nothing inside the weights' range is clipped.
    torch::NoGradGuard no_grad;
    torch::Tensor m =
        per_channel_ ? w.detach().abs().flatten(1).amax(1) : w.detach().abs().max().reshape({1});
    m = m / qmax();
    if (bits_ < kLsqInitBelowBits) {
      const torch::Tensor mean_abs =
          per_channel_ ? w.detach().abs().flatten(1).mean(1) : w.detach().abs().mean().reshape({1});
      m = torch::minimum(m, 2 * mean_abs / std::sqrt(qmax()));
    }
    s.copy_(m.clamp_min(1e-8));
    initialized_.fill_(true);
    known_initialized_ = true;
  }
  torch::Tensor sv = s.abs().clamp_min(1e-12);
  if (is_training()) {
    const double per_scale = static_cast<double>(w.numel()) / static_cast<double>(sv.numel());
    sv = grad_scale(sv, 1.0 / std::sqrt(per_scale * qmax()));
  }
  return fake_quant_affine(w, sv, torch::zeros({1}, w.options()), -qmax(), qmax());
}

BatchQuantActivationImpl::BatchQuantActivationImpl(int bits, double momentum)
    : bits_(bits), momentum_(momentum) {
  check_bits(bits, "BatchQuant activation quantizer");
  // softplus(logit) / ln 2 == 1 at logit 0: the learned multiplier starts at the batch range itself.
  multiplier_logit = register_parameter("multiplier_logit", torch::zeros({1}));
  offset_shift = register_parameter("offset_shift", torch::zeros({1}));
  running_min = register_buffer("running_min", torch::zeros({1}));
  running_max = register_buffer("running_max", torch::ones({1}));
  batches_seen = register_buffer("batches_seen", torch::zeros({1}));
}

void BatchQuantActivationImpl::set_bits(int bits) {
  check_bits(bits, "BatchQuant activation quantizer");
  bits_ = bits;
}

void BatchQuantActivationImpl::reset_statistics() {
  torch::NoGradGuard no_grad;
  running_min.zero_();
  running_max.fill_(1.0);
  batches_seen.zero_();
}

std::pair<torch::Tensor, torch::Tensor> BatchQuantActivationImpl::scale_and_offset_of(
    const torch::Tensor& lo, const torch::Tensor& hi) const {
  const torch::Tensor multiplier = torch::softplus(multiplier_logit) / std::log(2.0);
  const torch::Tensor scale = (multiplier * (hi - lo)).clamp_min(quant_contract::kMinScale) / qmax();
  return {scale, lo + offset_shift};
}

std::pair<torch::Tensor, torch::Tensor> BatchQuantActivationImpl::scale_and_offset(const torch::Tensor& x) {
  if (is_training() || calibrating_) {
    const torch::Tensor range = channel_averaged_range(x);
    return scale_and_offset_of(range[0].reshape({1}), range[1].reshape({1}));
  }
  return scale_and_offset_of(running_min, running_max);
}

std::pair<float, float> BatchQuantActivationImpl::inference_scale_and_offset() const {
  torch::NoGradGuard no_grad;
  const auto [scale, offset] = scale_and_offset_of(running_min, running_max);
  return {std::max(std::fabs(scale.item<float>()), quant_contract::kMinScale), offset.item<float>()};
}

float BatchQuantActivationImpl::inference_scale() const {
  return inference_scale_and_offset().first;
}

int BatchQuantActivationImpl::inference_zero_point() const {
  const auto [scale, offset] = inference_scale_and_offset();
  return quant_contract::zero_point_from_offset(offset, scale, qmax());
}

torch::Tensor BatchQuantActivationImpl::forward(const torch::Tensor& x) {
  if (bits_ == kFloatBits) return x;  // the FP32 phase needs no range
  torch::Tensor lo = running_min, hi = running_max;
  if (calibrating_ || is_training()) {
    torch::NoGradGuard no_grad;
    const torch::Tensor range = channel_averaged_range(x);
    lo = range[0].reshape({1});
    hi = range[1].reshape({1});
    if (calibrating_) {
      const double n = batches_seen.item<double>();
      running_min.mul_(n / (n + 1)).add_(lo / (n + 1));
      running_max.mul_(n / (n + 1)).add_(hi / (n + 1));
      batches_seen.add_(1);
    } else {
      running_min.mul_(1 - momentum_).add_(lo * momentum_);
      running_max.mul_(1 - momentum_).add_(hi * momentum_);
    }
  }
  auto [scale, offset] = scale_and_offset_of(lo, hi);
  if (is_training()) {
    const double g = activation_grad_factor(x, qmax());
    scale = grad_scale(scale, g);
    offset = grad_scale(offset, g);
  }
  // An integer zero point, as LSQ+ rounds it and the engine stores it (core/quant_contract.h), so the
  // calibrated network's fake-quant is the deployed one's arithmetic.
  const torch::Tensor zero_point = torch::clamp(round_pass(-offset / scale), 0, qmax());
  return fake_quant_zero_point(x, scale, zero_point, qmax());
}

void set_bits(torch::nn::Module& module, int bits) {
  for (auto& m : module.modules(/*include_self=*/true)) {
    if (auto* a = m->as<LsqPlusActivationImpl>()) a->set_bits(bits);
    if (auto* w = m->as<LsqWeightImpl>()) w->set_bits(bits);
    if (auto* b = m->as<BatchQuantActivationImpl>()) b->set_bits(bits);
  }
}

void enable_bit_bank(torch::nn::Module& module, const std::vector<int>& bits) {
  for (auto& m : module.modules(/*include_self=*/true)) {
    if (auto* a = m->as<LsqPlusActivationImpl>()) a->enable_bit_bank(bits);
    if (auto* w = m->as<LsqWeightImpl>()) w->enable_bit_bank(bits);
  }
}

int count_quantizers(torch::nn::Module& module) {
  int n = 0;
  for (auto& m : module.modules(true)) {
    const auto* lsq_plus = m->as<LsqPlusActivationImpl>();
    n += (lsq_plus && !lsq_plus->uses_batch_range()) || m->as<LsqWeightImpl>() ||
         m->as<BatchQuantActivationImpl>();
  }
  return n;
}

void use_batch_range(torch::nn::Module& module) {
  for (auto& m : module.modules(/*include_self=*/true)) {
    if (auto* a = m->as<LsqPlusActivationImpl>()) a->use_batch_range();
  }
}

int set_batch_range_calibration(torch::nn::Module& module, bool on) {
  int n = 0;
  for (auto& m : module.modules(/*include_self=*/true)) {
    if (auto* b = m->as<BatchQuantActivationImpl>()) {
      if (on) b->reset_statistics();
      b->set_calibrating(on);
      ++n;
    }
  }
  return n;
}

}  // namespace qnas::quant
