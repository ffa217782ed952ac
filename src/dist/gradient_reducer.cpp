#include "dist/gradient_reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <mutex>
#include <unordered_set>

namespace qnas::dist {

using torch::autograd::Node;

struct GradientReducer::Step {
  struct Bucket {
    std::vector<size_t> parameters;  // indices into the reducer's parameter list
    int pending = 0;                 // gradients the last backward has yet to finish
    torch::Tensor flat;
    std::unique_ptr<ProcessGroup::PendingSum> sum;
  };
  ProcessGroup* group = nullptr;
  const std::vector<torch::Tensor>* parameters = nullptr;
  std::vector<Bucket> buckets;
  std::vector<int> bucket_of;  // parameter -> bucket, -1 when it takes no part
  size_t next_to_start = 0;
  bool backward_running = true;
  int started_early = 0;
  std::unique_ptr<ProcessGroup::PendingSum> extra_sum;
  std::vector<std::pair<std::weak_ptr<Node>, std::uintptr_t>> hooks;
  std::mutex mutex;

  void start(Bucket& bucket) {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> parts;
    for (size_t i : bucket.parameters) {
      const torch::Tensor& p = (*parameters)[i];
      parts.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, p.options()));
    }
    bucket.flat = torch::cat(parts);
    bucket.sum = std::make_unique<ProcessGroup::PendingSum>(group->start_sum(bucket.flat));
    if (backward_running) ++started_early;
  }

  // Buckets start in their fixed order only, so every rank issues the same sequence of all-reduces.
  void start_ready() {
    while (next_to_start < buckets.size() && buckets[next_to_start].pending == 0)
      start(buckets[next_to_start++]);
  }

  void gradient_final(size_t parameter) {
    const std::lock_guard<std::mutex> lock(mutex);
    const int b = bucket_of[parameter];
    if (b < 0 || buckets[static_cast<size_t>(b)].pending == 0) return;
    --buckets[static_cast<size_t>(b)].pending;
    start_ready();
  }
};

namespace {

// Runs after a parameter's AccumulateGrad node has added this backward's gradient into .grad().
class GradientFinalHook : public torch::autograd::FunctionPostHook {
 public:
  GradientFinalHook(std::weak_ptr<GradientReducer::Step> step, size_t parameter)
      : step_(std::move(step)), parameter_(parameter) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    if (auto step = step_.lock()) step->gradient_final(parameter_);
    return outputs;
  }

 private:
  std::weak_ptr<GradientReducer::Step> step_;
  size_t parameter_;
};

// Every node backward will run from `root`.
std::unordered_set<const Node*> reachable_from(const std::shared_ptr<Node>& root) {
  std::unordered_set<const Node*> seen;
  if (!root) return seen;
  std::vector<Node*> stack = {root.get()};
  seen.insert(root.get());
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const auto& edge : node->next_edges()) {
      if (edge.function && seen.insert(edge.function.get()).second) stack.push_back(edge.function.get());
    }
  }
  return seen;
}

}  // namespace

GradientReducer::GradientReducer(ProcessGroup& group, std::vector<torch::Tensor> parameters,
                                 std::int64_t bucket_bytes)
    : group_(group),
      parameters_(std::move(parameters)),
      bucket_bytes_(std::max<std::int64_t>(bucket_bytes, 1)) {}

GradientReducer::~GradientReducer() {
  remove_hooks();
}

void GradientReducer::prepare(const torch::Tensor& loss, torch::Tensor extra) {
  remove_hooks();
  step_ = std::make_shared<Step>();
  Step& step = *step_;
  step.group = &group_;
  step.parameters = &parameters_;
  step.bucket_of.assign(parameters_.size(), -1);
  const auto reachable = reachable_from(loss.grad_fn());
  std::vector<std::shared_ptr<Node>> accumulators(parameters_.size());
  std::int64_t bytes = 0;
  // Reverse registration order: the output layers' gradients are final first.
  for (size_t i = parameters_.size(); i-- > 0;) {
    const torch::Tensor& p = parameters_[i];
    auto accumulator = torch::autograd::impl::try_get_grad_accumulator(p);
    const bool coming = accumulator && reachable.count(accumulator.get()) > 0;
    if (!coming && !p.grad().defined()) continue;  // no subnet of this step used it
    const bool new_bucket =
        step.buckets.empty() || bytes >= bucket_bytes_ ||
        parameters_[step.buckets.back().parameters.front()].scalar_type() != p.scalar_type();
    if (new_bucket) {
      step.buckets.emplace_back();
      bytes = 0;
    }
    step.buckets.back().parameters.push_back(i);
    step.bucket_of[i] = static_cast<int>(step.buckets.size() - 1);
    bytes += p.numel() * static_cast<std::int64_t>(p.element_size());
    if (coming) {
      ++step.buckets.back().pending;
      accumulators[i] = std::move(accumulator);
    }
  }
  if (extra.defined()) step.extra_sum = std::make_unique<ProcessGroup::PendingSum>(group_.start_sum(extra));
  for (size_t i = 0; i < accumulators.size(); ++i) {
    if (!accumulators[i]) continue;
    const auto key = accumulators[i]->add_post_hook(std::make_unique<GradientFinalHook>(step_, i));
    step.hooks.emplace_back(accumulators[i], key);
  }
  const std::lock_guard<std::mutex> lock(step.mutex);
  step.start_ready();
}

void GradientReducer::finish() {
  if (!step_) return;
  Step& step = *step_;
  {
    const std::lock_guard<std::mutex> lock(step.mutex);
    step.backward_running = false;
    // A gradient backward did not deliver after all (it was undefined): the bucket goes without it.
    for (auto& bucket : step.buckets) bucket.pending = 0;
    step.start_ready();
  }
  torch::NoGradGuard no_grad;
  const double inverse = 1.0 / group_.world_size();
  for (auto& bucket : step.buckets) {
    bucket.sum->wait();
    bucket.flat.mul_(inverse);
    std::int64_t at = 0;
    for (size_t i : bucket.parameters) {
      torch::Tensor grad = parameters_[i].grad();
      const std::int64_t n = parameters_[i].numel();
      if (grad.defined()) grad.copy_(bucket.flat.narrow(0, at, n).view(grad.sizes()));
      at += n;
    }
  }
  if (step.extra_sum) step.extra_sum->wait();
  buckets_last_step_ = static_cast<int>(step.buckets.size());
  started_early_last_step_ = step.started_early;
  remove_hooks();
  step_.reset();
}

void GradientReducer::remove_hooks() {
  if (!step_) return;
  for (auto& [node, key] : step_->hooks) {
    if (auto alive = node.lock()) alive->del_post_hook(key);
  }
  step_->hooks.clear();
}

}  // namespace qnas::dist
