#include "search/autoq.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"

namespace qnas::search {

using space::BitAssignment;

// ---------------------------------------------------------------------------------------------- Mlp, Adam

Mlp::Mlp(std::vector<int> sizes, bool sigmoid_output, Rng& rng, double last_layer_init)
    : sizes_(std::move(sizes)), sigmoid_output_(sigmoid_output) {
  if (sizes_.size() < 2) fail("an MLP needs an input and an output size");
  for (size_t l = 0; l + 1 < sizes_.size(); ++l) {
    const bool last = l + 2 == sizes_.size();
    const double bound = last ? last_layer_init : 1.0 / std::sqrt(static_cast<double>(sizes_[l]));
    const size_t n = static_cast<size_t>(sizes_[l + 1]) * static_cast<size_t>(sizes_[l] + 1);
    for (size_t i = 0; i < n; ++i) params_.push_back((2 * rng.uniform() - 1) * bound);
  }
}

std::vector<std::vector<double>> Mlp::activations(const std::vector<double>& x) const {
  if (static_cast<int>(x.size()) != sizes_.front())
    fail("MLP takes {} inputs, got {}", sizes_.front(), x.size());
  std::vector<std::vector<double>> a = {x};
  size_t offset = 0;
  for (size_t l = 0; l + 1 < sizes_.size(); ++l) {
    const size_t in = static_cast<size_t>(sizes_[l]), out = static_cast<size_t>(sizes_[l + 1]);
    const double* w = params_.data() + offset;
    const double* b = w + in * out;
    std::vector<double> y(out);
    const bool last = l + 2 == sizes_.size();
    for (size_t o = 0; o < out; ++o) {
      double s = b[o];
      for (size_t i = 0; i < in; ++i) s += w[o * in + i] * a.back()[i];
      y[o] = last ? (sigmoid_output_ ? 1.0 / (1.0 + std::exp(-s)) : s) : std::max(0.0, s);
    }
    a.push_back(std::move(y));
    offset += out * (in + 1);
  }
  return a;
}

std::vector<double> Mlp::forward(const std::vector<double>& x) const {
  return activations(x).back();
}

std::vector<double> Mlp::backward(const std::vector<double>& x, const std::vector<double>& grad_out,
                                  std::vector<double>* param_grads) const {
  const auto a = activations(x);
  if (grad_out.size() != a.back().size())
    fail("MLP backward: {} output gradients for {} outputs", grad_out.size(), a.back().size());
  if (param_grads && param_grads->size() != params_.size()) param_grads->assign(params_.size(), 0.0);
  // Layer offsets, to walk backwards.
  std::vector<size_t> offsets;
  size_t offset = 0;
  for (size_t l = 0; l + 1 < sizes_.size(); ++l) {
    offsets.push_back(offset);
    offset += static_cast<size_t>(sizes_[l + 1]) * static_cast<size_t>(sizes_[l] + 1);
  }
  std::vector<double> g = grad_out;
  for (size_t l = sizes_.size() - 1; l-- > 0;) {
    const size_t in = static_cast<size_t>(sizes_[l]), out = static_cast<size_t>(sizes_[l + 1]);
    const bool last = l + 2 == sizes_.size();
    // Through the activation: the output's own value gives the derivative.
    for (size_t o = 0; o < out; ++o) {
      const double y = a[l + 1][o];
      if (last)
        g[o] *= sigmoid_output_ ? y * (1 - y) : 1.0;
      else if (y <= 0)
        g[o] = 0;
    }
    const double* w = params_.data() + offsets[l];
    if (param_grads) {
      double* gw = param_grads->data() + offsets[l];
      double* gb = gw + in * out;
      for (size_t o = 0; o < out; ++o) {
        gb[o] += g[o];
        for (size_t i = 0; i < in; ++i) gw[o * in + i] += g[o] * a[l][i];
      }
    }
    std::vector<double> gin(in, 0.0);
    for (size_t o = 0; o < out; ++o)
      for (size_t i = 0; i < in; ++i) gin[i] += w[o * in + i] * g[o];
    g = std::move(gin);
  }
  return g;
}

void Mlp::soft_update(const Mlp& from, double tau) {
  if (from.params_.size() != params_.size()) fail("soft update between MLPs of different shapes");
  for (size_t i = 0; i < params_.size(); ++i) params_[i] = tau * from.params_[i] + (1 - tau) * params_[i];
}

void Adam::step(std::vector<double>& params, const std::vector<double>& grads) {
  if (grads.size() != params.size() || m_.size() != params.size())
    fail("Adam: {} gradients for {} parameters", grads.size(), params.size());
  ++t_;
  const double c1 = 1 - std::pow(beta1_, static_cast<double>(t_));
  const double c2 = 1 - std::pow(beta2_, static_cast<double>(t_));
  for (size_t i = 0; i < params.size(); ++i) {
    m_[i] = beta1_ * m_[i] + (1 - beta1_) * grads[i];
    v_[i] = beta2_ * v_[i] + (1 - beta2_) * grads[i] * grads[i];
    params[i] -= lr_ * (m_[i] / c1) / (std::sqrt(v_[i] / c2) + eps_);
  }
}

// ------------------------------------------------------------------------------------ steps and the target

std::vector<AutoqStep> autoq_steps(const space::ArchSpec& spec, bool keep_first_and_last) {
  const auto layers = space::quant_layers(spec);
  std::vector<AutoqStep> steps;
  for (size_t i = 0; i < layers.size(); ++i) {
    const space::QuantLayer& q = layers[i];
    if (keep_first_and_last && (q.first || q.classifier)) continue;
    for (bool weight : {true, false}) {
      AutoqStep s;
      s.layer = static_cast<int>(i);
      s.weight = weight;
      s.features = {q.op == space::OpKind::kDepthwiseConv ? 1.0 : 0.0,
                    static_cast<double>(q.cin),
                    static_cast<double>(q.cout),
                    static_cast<double>(q.stride),
                    static_cast<double>(q.kernel),
                    static_cast<double>(q.weights),
                    static_cast<double>(q.in_hw),
                    static_cast<double>(i),
                    weight ? 1.0 : 0.0};
      steps.push_back(std::move(s));
    }
  }
  if (steps.empty()) fail("network {} has no quantiser AutoQ may choose bits for", spec.subnet);
  // Min-max scaling over this network's steps; a constant feature reads 0.
  for (size_t f = 0; f + 1 < kAutoqFeatures; ++f) {
    double lo = steps.front().features[f], hi = lo;
    for (const auto& s : steps) lo = std::min(lo, s.features[f]), hi = std::max(hi, s.features[f]);
    for (auto& s : steps) s.features[f] = hi > lo ? (s.features[f] - lo) / (hi - lo) : 0.0;
  }
  return steps;
}

int action_to_bits(double action, const std::vector<int>& bits) {
  const int n = static_cast<int>(bits.size());
  const int index = std::clamp(static_cast<int>(std::floor(action * n)), 0, n - 1);
  return bits[static_cast<size_t>(index)];
}

double bits_to_action(int bits, const std::vector<int>& choices) {
  const auto it = std::find(choices.begin(), choices.end(), bits);
  if (it == choices.end()) fail("{} bits is not among the AutoQ choices", bits);
  return (static_cast<double>(it - choices.begin()) + 0.5) / static_cast<double>(choices.size());
}

double size_ratio(const space::ArchSpec& spec, const BitAssignment& bits) {
  return static_cast<double>(space::model_size_bits(spec, bits)) /
         static_cast<double>(space::fp32_size_bits(spec));
}

BitAssignment enforce_size_ratio(const space::ArchSpec& spec, BitAssignment bits,
                                 const std::vector<int>& choices, double target, bool keep_first_and_last) {
  const auto layers = space::quant_layers(spec);
  bits.validate(spec);
  std::vector<int> sorted = choices;
  std::sort(sorted.begin(), sorted.end());
  const auto free = [&](size_t i) {
    return !(keep_first_and_last && (layers[i].first || layers[i].classifier));
  };
  BitAssignment lowest = bits;
  for (size_t i = 0; i < layers.size(); ++i)
    if (free(i)) lowest.layers[i].weight = sorted.front();
  const double reachable = size_ratio(spec, lowest);
  if (reachable > target)
    fail(
        "no assignment of bits {{{}}} reaches size ratio {} for {}: the smallest is {:.4f} ({}-bit weights "
        "everywhere{})",
        fmt::join(sorted, ", "), target, spec.subnet, reachable, sorted.front(),
        keep_first_and_last ? " but the stem and classifier, kept at 8" : "");
  // The size is kept as a running total (exact integer bits), so each lowered weight costs O(1) and the ratio
  // compares exactly as size_ratio() would.
  const auto fp32_bits = static_cast<double>(space::fp32_size_bits(spec));
  std::int64_t size = space::model_size_bits(spec, bits);
  const auto over = [&] { return static_cast<double>(size) / fp32_bits > target; };
  while (over()) {
    for (size_t i = layers.size(); i-- > 0;) {
      if (!free(i)) continue;
      int& w = bits.layers[i].weight;
      const auto it = std::lower_bound(sorted.begin(), sorted.end(), w);
      if (it == sorted.begin()) continue;  // already the lowest (a weight outside choices rounds down too)
      size -= layers[i].weights * (w - *(it - 1));
      w = *(it - 1);
      if (!over()) break;
    }
  }
  return bits;
}

// ------------------------------------------------------------------------------------------------ search

namespace {

constexpr double kPi = 3.14159265358979323846;

// A normal draw by Box-Muller (Rng only gives uniforms, identically on every platform).
double normal(Rng& rng) {
  const double u1 = std::max(rng.uniform(), 1e-300), u2 = rng.uniform();
  return std::sqrt(-2 * std::log(u1)) * std::cos(2 * kPi * u2);
}

// A normal around `mean` truncated to [0, 1], by rejection (a mean within [0, 1] accepts half the draws at
// worst).
double truncated_normal(Rng& rng, double mean, double sd) {
  for (int tries = 0; tries < 1000; ++tries) {
    const double x = mean + sd * normal(rng);
    if (x >= 0 && x <= 1) return x;
  }
  return std::clamp(mean, 0.0, 1.0);
}

}  // namespace

AutoqSearch::AutoqSearch(const space::ArchSpec& spec, AutoqOptions options)
    : spec_(spec), options_(std::move(options)), rng_(options_.seed) {
  if (options_.bits.empty()) fail("AutoQ needs at least one bit-width");
  for (int b : options_.bits) space::check_bits(b, "AutoQ bits");
  bits_ = options_.bits;
  std::sort(bits_.begin(), bits_.end());
  bits_.erase(std::unique(bits_.begin(), bits_.end()), bits_.end());
  if (!(options_.size_ratio > 0)) fail("--size-ratio must be positive, got {}", options_.size_ratio);
  if (options_.episodes < 1 || options_.warmup_episodes < 0 || options_.hidden < 1 || options_.batch < 1)
    fail("AutoQ: episodes, hidden size and batch must be positive, warm-up episodes not negative");
  // Out of reach: fails here, before any evaluation.
  enforce_size_ratio(spec_, BitAssignment::uniform(spec_, bits_.back(), bits_.back()), bits_,
                     options_.size_ratio, options_.keep_first_and_last);
  steps_ = autoq_steps(spec_, options_.keep_first_and_last);
  actor_ = Mlp({kAutoqFeatures, options_.hidden, options_.hidden, 1}, true, rng_);
  critic_ = Mlp({kAutoqFeatures + 1, options_.hidden, options_.hidden, 1}, false, rng_);
  actor_target_ = actor_;
  critic_target_ = critic_;
  actor_opt_ = Adam(actor_.parameters().size(), options_.actor_lr);
  critic_opt_ = Adam(critic_.parameters().size(), options_.critic_lr);
  delta_ = options_.init_delta;
}

double AutoqSearch::act(const std::vector<double>& state) {
  if (episode() < options_.warmup_episodes) return rng_.uniform();
  return truncated_normal(rng_, actor_.forward(state)[0], delta_);
}

const BitAssignment& AutoqSearch::propose() {
  if (proposed_) return proposal_;
  if (done()) fail("AutoQ: all {} episodes are done", options_.episodes);
  proposal_ = BitAssignment::uniform(spec_, 8, 8);
  proposal_.subnet = spec_.subnet;
  states_.clear();
  actions_.clear();
  double previous = 0;
  for (const AutoqStep& step : steps_) {
    std::vector<double> state = step.features;
    state.push_back(previous);
    const double a = act(state);
    auto& layer = proposal_.layers[static_cast<size_t>(step.layer)];
    (step.weight ? layer.weight : layer.activation) = action_to_bits(a, bits_);
    states_.push_back(std::move(state));
    actions_.push_back(a);
    previous = a;
  }
  proposal_ = enforce_size_ratio(spec_, proposal_, bits_, options_.size_ratio, options_.keep_first_and_last);
  // The agent learns from what was evaluated: a weight the size target lowered is stored as that bit-width.
  for (size_t t = 0; t < steps_.size(); ++t) {
    if (!steps_[t].weight) continue;
    const int evaluated = proposal_.layers[static_cast<size_t>(steps_[t].layer)].weight;
    if (action_to_bits(actions_[t], bits_) != evaluated) actions_[t] = bits_to_action(evaluated, bits_);
  }
  proposed_ = true;
  return proposal_;
}

void AutoqSearch::record(double accuracy) {
  if (!proposed_) fail("AutoQ: record() before propose()");
  AutoqEpisode e;
  e.assignment = proposal_;
  e.accuracy = accuracy;
  e.size_ratio = size_ratio(spec_, proposal_);
  e.bitops = space::bitops(spec_, proposal_);
  e.explored = episode() < options_.warmup_episodes;
  // Every step shares the episode's reward over a moving baseline (HAQ), so the critic sees the advantage.
  if (!baseline_set_) baseline_ = accuracy, baseline_set_ = true;
  const double reward = accuracy - baseline_;
  baseline_ += options_.baseline_alpha * (accuracy - baseline_);
  for (size_t t = 0; t < steps_.size(); ++t) {
    Transition tr;
    tr.state = states_[t];
    tr.action = actions_[t];
    tr.reward = reward;
    tr.last = t + 1 == steps_.size();
    tr.next_state = tr.last ? states_[t] : states_[t + 1];
    replay_.push_back(std::move(tr));
  }
  episodes_.push_back(std::move(e));
  proposed_ = false;
  if (episode() > options_.warmup_episodes) {
    for (size_t u = 0; u < steps_.size(); ++u) update_agent();
    delta_ *= options_.delta_decay;
  }
}

void AutoqSearch::update_agent() {
  const size_t batch = std::min(replay_.size(), static_cast<size_t>(options_.batch));
  std::vector<const Transition*> sample;
  for (size_t i = 0; i < batch; ++i) sample.push_back(&replay_[rng_.below(replay_.size())]);
  const double scale = 1.0 / static_cast<double>(batch);
  // Critic: (Q(s, a) - (r + discount * Q'(s', mu'(s'))))^2.
  std::vector<double> critic_grads(critic_.parameters().size(), 0.0);
  for (const Transition* t : sample) {
    double target = t->reward;
    if (!t->last) {
      std::vector<double> next = t->next_state;
      next.push_back(actor_target_.forward(t->next_state)[0]);
      target += options_.discount * critic_target_.forward(next)[0];
    }
    std::vector<double> in = t->state;
    in.push_back(t->action);
    const double q = critic_.forward(in)[0];
    critic_.backward(in, {2 * (q - target) * scale}, &critic_grads);
  }
  critic_opt_.step(critic_.parameters(), critic_grads);
  // Actor: ascend Q(s, mu(s)); dQ/da from the critic, then through the actor.
  std::vector<double> actor_grads(actor_.parameters().size(), 0.0);
  for (const Transition* t : sample) {
    std::vector<double> in = t->state;
    in.push_back(actor_.forward(t->state)[0]);
    const std::vector<double> dq = critic_.backward(in, {1.0}, nullptr);
    actor_.backward(t->state, {-dq.back() * scale}, &actor_grads);
  }
  actor_opt_.step(actor_.parameters(), actor_grads);
  actor_target_.soft_update(actor_, options_.tau);
  critic_target_.soft_update(critic_, options_.tau);
}

int AutoqSearch::replay(const std::vector<double>& accuracies,
                        const std::vector<BitAssignment>& assignments) {
  const size_t n = std::min(accuracies.size(), assignments.size());
  int taken = 0;
  for (size_t i = 0; i < n && !done(); ++i) {
    if (!(propose().layers == assignments[i].layers)) break;
    record(accuracies[i]);
    ++taken;
  }
  return taken;
}

int AutoqSearch::best_index() const {
  if (episodes_.empty()) fail("AutoQ: no episode recorded yet");
  size_t best = 0;
  for (size_t i = 1; i < episodes_.size(); ++i)
    if (episodes_[i].accuracy > episodes_[best].accuracy) best = i;
  return static_cast<int>(best);
}

}  // namespace qnas::search
