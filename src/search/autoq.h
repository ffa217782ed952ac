#pragma once
// AutoQ bit assignment as NNCF does it (precision init "autoq", after HAQ): a DDPG agent walks the quantisers
// of a network one step at a time (a layer's weights, then the tensor it reads), sees the layer's features
// and its own previous action, and emits an action in [0, 1] that picks a bit-width. When an episode has
// chosen bits for every quantiser, the model-size target (quantised size / FP32 size, e.g. 0.15) is enforced
// by lowering weight bits from the last layer back; the caller's accuracy of that assignment (e.g. after BN
// adaptation on a few training batches) rewards every step of the episode. The first episodes explore
// uniformly (warm-up); then the actor's action plus truncated normal noise whose width decays per episode.
//
// Torch-free: the actor and critic are small dense networks with their own backprop (Mlp) and Adam, so the
// search stays beside the other searches. The whole search is a deterministic function of the seed and the
// accuracies it was given: a job resumes by replaying the recorded accuracies (AutoqSearch::replay).
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "space/bit_assignment.h"

namespace qnas::search {

// A dense network: ReLU between layers, the output linear or a sigmoid. Parameters are one flat vector
// (layer by layer: weights row-major [out][in], then biases).
class Mlp {
 public:
  Mlp() = default;
  // Hidden layers start uniform in +-1/sqrt(fan_in), the last layer in +-last_layer_init (NNCF's DDPG).
  Mlp(std::vector<int> sizes, bool sigmoid_output, Rng& rng, double last_layer_init = 3e-3);

  std::vector<double> forward(const std::vector<double>& x) const;
  // Backprop of sum(grad_out * forward(x)): adds the parameter gradients to `param_grads` (when not null) and
  // returns the gradient with respect to x.
  std::vector<double> backward(const std::vector<double>& x, const std::vector<double>& grad_out,
                               std::vector<double>* param_grads) const;

  std::vector<double>& parameters() { return params_; }
  const std::vector<double>& parameters() const { return params_; }
  int inputs() const { return sizes_.front(); }
  // this <- tau * from + (1 - tau) * this (DDPG's target networks).
  void soft_update(const Mlp& from, double tau);

 private:
  // The output of every layer (after its activation), the input first.
  std::vector<std::vector<double>> activations(const std::vector<double>& x) const;
  std::vector<int> sizes_;
  bool sigmoid_output_ = false;
  std::vector<double> params_;
};

class Adam {
 public:
  Adam() = default;
  Adam(size_t parameters, double lr) : lr_(lr), m_(parameters, 0.0), v_(parameters, 0.0) {}
  void step(std::vector<double>& params, const std::vector<double>& grads);

 private:
  double lr_ = 1e-3, beta1_ = 0.9, beta2_ = 0.999, eps_ = 1e-8;
  std::int64_t t_ = 0;
  std::vector<double> m_, v_;
};

struct AutoqOptions {
  std::vector<int> bits = {2, 4, 8};  // the choices of every weight and activation quantiser
  double size_ratio = 0.15;           // target: model size / FP32 model size
  int episodes = 120;                 // warm-up included
  int warmup_episodes = 20;           // uniformly random actions (NNCF: 20)
  int hidden = 64;                    // NNCF: 400 and 300 for networks of hundreds of quantisers
  double actor_lr = 1e-4, critic_lr = 1e-3;
  double tau = 0.01;                // target network update
  double discount = 1.0;            // NNCF/HAQ: every step of an episode shares its reward
  int batch = 64;                   // replay minibatch
  double init_delta = 0.5;          // exploration noise after warm-up
  double delta_decay = 0.99;        // per episode
  double baseline_alpha = 0.5;      // moving-average reward baseline
  bool keep_first_and_last = true;  // the stem conv and the classifier stay at 8 bits
  std::uint64_t seed = 0;
};

// The features of every step (min-max scaled to [0, 1] over the network's steps, previous action excluded):
// depthwise, c_in, c_out, stride, kernel, weights, input size, layer index, weight (1) or activation (0); the
// previous action is the tenth feature, filled in during the rollout.
constexpr int kAutoqFeatures = 10;
struct AutoqStep {
  int layer = 0;                 // index into space::quant_layers(spec)
  bool weight = true;            // the layer's weights, or the tensor it reads
  std::vector<double> features;  // kAutoqFeatures - 1 values
};
std::vector<AutoqStep> autoq_steps(const space::ArchSpec& spec, bool keep_first_and_last);

// An action in [0, 1] as one of `bits` (ascending): equal intervals.
int action_to_bits(double action, const std::vector<int>& bits);
// The middle of the interval of `bits` (the action stored for a step the size constraint changed).
double bits_to_action(int bits, const std::vector<int>& choices);

// Lowers weight bits (one notch among `choices`, layers from the last back) until model size / FP32 size <=
// size_ratio; the stem and classifier stay fixed when keep_first_and_last. Throws naming the smallest ratio
// these bits reach when even the lowest bits everywhere miss the target.
space::BitAssignment enforce_size_ratio(const space::ArchSpec& spec, space::BitAssignment bits,
                                        const std::vector<int>& choices, double size_ratio,
                                        bool keep_first_and_last);
// Model size / FP32 model size.
double size_ratio(const space::ArchSpec& spec, const space::BitAssignment& bits);

struct AutoqEpisode {
  space::BitAssignment assignment;
  double accuracy = 0;
  double size_ratio = 0;
  double bitops = 0;
  bool explored = true;  // a warm-up (random) episode
};

// The search as a create -> propose -> record loop, so the caller owns the (expensive) evaluation:
//   AutoqSearch s(spec, options);
//   while (!s.done()) s.record(accuracy_of(s.propose()));
class AutoqSearch {
 public:
  // Throws when a bit-width is not allowed or the size target is out of reach.
  AutoqSearch(const space::ArchSpec& spec, AutoqOptions options);
  bool done() const { return static_cast<int>(episodes_.size()) >= options_.episodes; }
  int episode() const { return static_cast<int>(episodes_.size()); }
  // The next episode's assignment (the size target holds); the same until record() is called.
  const space::BitAssignment& propose();
  // The accuracy of the proposed assignment: rewards the episode and trains the agent.
  void record(double accuracy);
  // Feeds recorded accuracies in order (a resumed job); returns how many it took: it stops at the first
  // episode whose proposal differs from `assignments` (then the rest is searched again).
  int replay(const std::vector<double>& accuracies, const std::vector<space::BitAssignment>& assignments);

  const std::vector<AutoqEpisode>& episodes() const { return episodes_; }
  // The most accurate episode (the earliest among equals) and its index. Throw before the first record().
  int best_index() const;
  const AutoqEpisode& best() const { return episodes_[static_cast<size_t>(best_index())]; }
  const std::vector<AutoqStep>& steps() const { return steps_; }

 private:
  struct Transition {
    std::vector<double> state, next_state;
    double action = 0, reward = 0;
    bool last = false;
  };
  double act(const std::vector<double>& state);
  void update_agent();

  space::ArchSpec spec_;
  AutoqOptions options_;
  std::vector<int> bits_;  // ascending
  std::vector<AutoqStep> steps_;
  Rng rng_;
  Mlp actor_, critic_, actor_target_, critic_target_;
  Adam actor_opt_, critic_opt_;
  std::vector<Transition> replay_;
  double delta_ = 0, baseline_ = 0;
  bool baseline_set_ = false;
  std::vector<AutoqEpisode> episodes_;
  // The episode under way.
  bool proposed_ = false;
  space::BitAssignment proposal_;
  std::vector<std::vector<double>> states_;
  std::vector<double> actions_;
};

}  // namespace qnas::search
