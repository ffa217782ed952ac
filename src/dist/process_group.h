#pragma once
// Data-parallel training across processes with torch.distributed's C++ core (c10d), as Debian's LibTorch
// ships it: a TCPStore for rendezvous and ProcessGroupGloo for collectives on CPU tensors. The launch
// settings come from the environment torchrun and Slurm set, so `scripts/launch-local.sh`, torchrun-style
// launchers and `srun` all work unchanged. Every wait has a timeout and ends in one qnas::Error that names
// what did not arrive, never in a hang.
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qnas::dist {

struct Launch {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};

  bool distributed() const { return world_size > 1; }
};

using Getenv = std::function<const char*(const char*)>;

// RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT (torchrun); without them SLURM_PROCID /
// SLURM_NTASKS / SLURM_LOCALID (srun, with MASTER_ADDR defaulting to the first host of SLURM_NODELIST when
// it is a plain name); QNAS_DIST_TIMEOUT in seconds. Nothing set: one process. A value that is not a number,
// or a rank outside [0, WORLD_SIZE), is a qnas::Error naming the variable.
Launch launch_from_environment(const Getenv& getenv = [](const char* name) { return std::getenv(name); });

class ProcessGroup {
 public:
  // Joins the group: rank 0 serves the store on MASTER_PORT, the others connect to it; all then check that
  // every rank was started with the same WORLD_SIZE.
  explicit ProcessGroup(const Launch& launch);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return launch_.rank; }
  int world_size() const { return launch_.world_size; }

  // In-place sums over all ranks, as one flat bucket (one message whatever the number of tensors).
  void allreduce_sum(const std::vector<torch::Tensor>& tensors);
  // Starts an in-place sum of one tensor over all ranks and returns at once; `wait()` on the result blocks
  // until it is done (a failed rank is the same qnas::Error as allreduce_sum's). Every rank must start the
  // same sums in the same order: collectives are matched by the order they are issued in.
  class PendingSum;
  PendingSum start_sum(torch::Tensor flat);
  // In-place element-wise maximum over all ranks.
  void allreduce_max(torch::Tensor& tensor);
  // Copies rank `root`'s values into these tensors on every rank (one message per dtype). The ranks must
  // pass tensors of the same shapes and dtypes, in the same order.
  void broadcast(const std::vector<torch::Tensor>& tensors, int root = 0);
  // Every rank's `tensor`, stacked in rank order: [world_size, tensor.sizes()...].
  torch::Tensor all_gather(const torch::Tensor& tensor);
  void barrier();
  // Atomically adds `value` to the store counter `key` and returns the new value (work claiming).
  std::int64_t add(const std::string& key, std::int64_t value);
  // Values in the store, which lives in rank 0's process: a work list, a finished block's files. `get` waits
  // for the key up to the timeout; `has` does not wait.
  void set(const std::string& key, const std::string& value);
  std::string get(const std::string& key);
  bool has(const std::string& key);

 private:
  struct State;
  Launch launch_;
  std::unique_ptr<State> state_;
};

class ProcessGroup::PendingSum {
 public:
  PendingSum(PendingSum&&) noexcept;
  PendingSum& operator=(PendingSum&&) noexcept;
  ~PendingSum();
  // Blocks until the sum is complete; the tensor given to start_sum then holds it.
  void wait();

 private:
  friend class ProcessGroup;
  struct Work;
  PendingSum(std::unique_ptr<Work> work, const Launch* launch);
  std::unique_ptr<Work> work_;
  const Launch* launch_;
};

}  // namespace qnas::dist
