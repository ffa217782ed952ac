#include "dist/process_group.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <fmt/format.h>

#include <map>
#include <thread>

#include "core/error.h"
#include "core/strings.h"

namespace qnas::dist {
namespace {

int integer_from(const Getenv& getenv, const char* name, int fallback) {
  const char* value = getenv(name);
  if (!value || !*value) return fallback;
  try {
    size_t used = 0;
    const int parsed = std::stoi(value, &used);
    if (used == std::string(value).size()) return parsed;
  } catch (const std::exception&) {
  }
  fail("{}='{}' is not an integer: set it to a number or unset it", name, value);
}

// The first host of a Slurm node list such as "node[01-04],gpu7" when it is a plain name ("node01" needs
// the bracket expansion Slurm's own tools do, so it is left to MASTER_ADDR).
std::string first_slurm_host(const char* nodelist) {
  if (!nodelist) return "";
  const std::string list(nodelist);
  const std::string first = list.substr(0, list.find(','));
  return first.find('[') == std::string::npos ? first : "";
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0;
}

}  // namespace

Launch launch_from_environment(const Getenv& getenv) {
  Launch launch;
  const bool torchrun = getenv("WORLD_SIZE") && *getenv("WORLD_SIZE");
  const bool slurm = !torchrun && getenv("SLURM_NTASKS") && *getenv("SLURM_NTASKS");
  const char* size_name = torchrun ? "WORLD_SIZE" : "SLURM_NTASKS";
  const char* rank_name = torchrun ? "RANK" : "SLURM_PROCID";
  if (torchrun || slurm) {
    launch.world_size = integer_from(getenv, size_name, 1);
    launch.rank = integer_from(getenv, rank_name, 0);
    launch.local_rank = integer_from(getenv, torchrun ? "LOCAL_RANK" : "SLURM_LOCALID", 0);
  }
  if (launch.world_size < 1) fail("{}={} must be at least 1", size_name, launch.world_size);
  if (launch.rank < 0 || launch.rank >= launch.world_size) {
    fail("{}={} is outside [0, {}={}): every rank needs a distinct rank below the world size", rank_name,
         launch.rank, size_name, launch.world_size);
  }
  if (const char* addr = getenv("MASTER_ADDR"); addr && *addr) {
    launch.master_addr = addr;
  } else if (slurm && !first_slurm_host(getenv("SLURM_NODELIST")).empty()) {
    launch.master_addr = first_slurm_host(getenv("SLURM_NODELIST"));
  }
  launch.master_port = integer_from(getenv, "MASTER_PORT", launch.master_port);
  if (launch.master_port < 1 || launch.master_port > 65535) {
    fail("MASTER_PORT={} is not a TCP port (1-65535)", launch.master_port);
  }
  const int timeout_s =
      integer_from(getenv, "QNAS_DIST_TIMEOUT", static_cast<int>(launch.timeout.count() / 1000));
  if (timeout_s < 1) fail("QNAS_DIST_TIMEOUT={} must be at least 1 (seconds)", timeout_s);
  launch.timeout = std::chrono::seconds(timeout_s);
  return launch;
}

struct ProcessGroup::State {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

ProcessGroup::ProcessGroup(const Launch& launch) : launch_(launch), state_(std::make_unique<State>()) {
  const std::string where = fmt::format("{}:{}", launch.master_addr, launch.master_port);
  const double seconds = static_cast<double>(launch.timeout.count()) / 1000.0;
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(launch.master_port);
  options.isServer = launch.rank == 0;
  options.waitWorkers = false;  // the join below counts the ranks itself, to say how many came
  options.timeout = launch.timeout;
  try {
    state_->store = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, options);
  } catch (const std::exception& e) {
    fail(
        "rank {}: cannot {} the rendezvous store at {} within {:.0f} s ({}): check MASTER_ADDR/MASTER_PORT, "
        "that rank 0 runs and that the port is free",
        launch.rank, launch.rank == 0 ? "open" : "reach", where, seconds, e.what());
  }
  // Rank 0 publishes its WORLD_SIZE, every rank counts itself in; a missing rank, or one started with another
  // WORLD_SIZE, is named below.
  auto& store = *state_->store;
  const std::string world_size = std::to_string(launch.world_size);
  if (launch.rank == 0)
    store.set("qnas/world_size", std::vector<uint8_t>(world_size.begin(), world_size.end()));
  store.add("qnas/joined", 1);
  const auto deadline = std::chrono::steady_clock::now() + launch.timeout;
  std::int64_t count = 0;
  while ((count = store.add("qnas/joined", 0)) < launch.world_size) {
    if (std::chrono::steady_clock::now() > deadline) {
      fail(
          "rank {}: only {} of WORLD_SIZE={} ranks joined at {} within {:.0f} s: start every rank, with the "
          "same WORLD_SIZE",
          launch.rank, count, launch.world_size, where, seconds);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (count > launch.world_size) {
    fail("rank {}: {} ranks joined at {} but WORLD_SIZE={}: the ranks were started with different WORLD_SIZE",
         launch.rank, count, where, launch.world_size);
  }
  // A rank started with another WORLD_SIZE than rank 0 stops here, before the Gloo group waits for it.
  const std::vector<uint8_t> published = store.get("qnas/world_size");
  const std::string rank0_world_size(published.begin(), published.end());
  if (rank0_world_size != world_size) {
    fail("rank {} was started with WORLD_SIZE={} but rank 0 with {}: start every rank with the same one",
         launch.rank, world_size, rank0_world_size);
  }
  auto options_gloo = c10d::ProcessGroupGloo::Options::create(launch.timeout);
  options_gloo->devices.push_back(is_loopback(launch.master_addr)
                                      ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                      : c10d::ProcessGroupGloo::createDefaultDevice());
  try {
    state_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("qnas/gloo", state_->store), launch.rank, launch.world_size,
        options_gloo);
  } catch (const std::exception& e) {
    fail(
        "rank {}: the Gloo process group did not form at {} ({}): every rank needs a distinct RANK and the "
        "same "
        "WORLD_SIZE",
        launch.rank, where, first_line(e.what()));
  }
}

ProcessGroup::~ProcessGroup() = default;

namespace {

void wait_for(const c10::intrusive_ptr<c10d::Work>& work, const Launch& launch, const char* what) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    fail(
        "rank {}: {} across {} ranks failed ({}): another rank stopped or is {} s behind; the run resumes "
        "from "
        "its last checkpoint when started again",
        launch.rank, what, launch.world_size, first_line(e.what()), launch.timeout.count() / 1000);
  }
}

// One contiguous copy of `tensors`, so a collective sends one message whatever their number.
torch::Tensor flatten(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> parts;
  parts.reserve(tensors.size());
  for (const auto& t : tensors) parts.push_back(t.reshape({-1}));
  return torch::cat(parts);
}

// Copies `flat` back into `tensors`, the inverse of flatten (copy_ converts dtypes).
void unflatten_into(const torch::Tensor& flat, const std::vector<torch::Tensor>& tensors) {
  std::int64_t at = 0;
  for (const auto& t : tensors) {
    t.copy_(flat.narrow(0, at, t.numel()).view(t.sizes()));
    at += t.numel();
  }
}

}  // namespace

void ProcessGroup::allreduce_sum(const std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return;
  std::vector<torch::Tensor> bucket = {flatten(tensors)};
  wait_for(state_->group->allreduce(bucket), launch_, "an all-reduce");
  unflatten_into(bucket[0], tensors);
}

struct ProcessGroup::PendingSum::Work {
  c10::intrusive_ptr<c10d::Work> work;
  std::vector<torch::Tensor> tensors;  // kept alive while Gloo's worker thread sums into them
};

ProcessGroup::PendingSum::PendingSum(std::unique_ptr<Work> work, const Launch* launch)
    : work_(std::move(work)), launch_(launch) {}
ProcessGroup::PendingSum::PendingSum(PendingSum&&) noexcept = default;
ProcessGroup::PendingSum& ProcessGroup::PendingSum::operator=(PendingSum&&) noexcept = default;
// An abandoned sum (an exception between start and wait) must still finish before its tensor is freed.
ProcessGroup::PendingSum::~PendingSum() {
  if (!work_) return;
  try {
    work_->work->wait();
  } catch (const std::exception&) {
  }
}

void ProcessGroup::PendingSum::wait() {
  if (!work_) return;
  const auto work = std::move(work_);
  wait_for(work->work, *launch_, "an all-reduce");
}

ProcessGroup::PendingSum ProcessGroup::start_sum(torch::Tensor flat) {
  auto work = std::make_unique<PendingSum::Work>();
  work->tensors = {std::move(flat)};
  work->work = state_->group->allreduce(work->tensors);
  return PendingSum(std::move(work), &launch_);
}

void ProcessGroup::broadcast(const std::vector<torch::Tensor>& tensors, int root) {
  std::map<torch::Dtype, std::vector<torch::Tensor>> by_dtype;
  for (const auto& t : tensors) by_dtype[t.scalar_type()].push_back(t);
  torch::NoGradGuard no_grad;
  for (auto& [dtype, group] : by_dtype) {
    // Gloo sends no bool: flags (quantizers' initialised buffers) travel as bytes.
    std::vector<torch::Tensor> bucket = {dtype == torch::kBool ? flatten(group).to(torch::kUInt8)
                                                               : flatten(group)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    wait_for(state_->group->broadcast(bucket, options), launch_, "a broadcast");
    unflatten_into(bucket[0], group);
  }
}

torch::Tensor ProcessGroup::all_gather(const torch::Tensor& tensor) {
  std::vector<torch::Tensor> input = {tensor.contiguous()};
  std::vector<std::vector<torch::Tensor>> output(1);
  for (int r = 0; r < launch_.world_size; ++r) output[0].push_back(torch::empty_like(input[0]));
  wait_for(state_->group->allgather(output, input), launch_, "an all-gather");
  return torch::stack(output[0]);
}

void ProcessGroup::allreduce_max(torch::Tensor& tensor) {
  std::vector<torch::Tensor> one = {tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::MAX;
  wait_for(state_->group->allreduce(one, options), launch_, "a maximum all-reduce");
}

void ProcessGroup::barrier() {
  wait_for(state_->group->barrier(), launch_, "a barrier");
}

namespace {

// The store is served by rank 0: when a call fails, rank 0 is gone or the network between them is.
template <typename Call>
auto store_call(const Launch& launch, const std::string& key, Call&& call) {
  try {
    return call("qnas/user/" + key);
  } catch (const std::exception& e) {
    fail(
        "rank {}: the store at {}:{} did not answer for '{}' within {} s ({}): rank 0 stopped or is "
        "unreachable; start the job again to resume",
        launch.rank, launch.master_addr, launch.master_port, key, launch.timeout.count() / 1000,
        first_line(e.what()));
  }
}

}  // namespace

std::int64_t ProcessGroup::add(const std::string& key, std::int64_t value) {
  return store_call(launch_, key, [&](const std::string& k) { return state_->store->add(k, value); });
}

void ProcessGroup::set(const std::string& key, const std::string& value) {
  store_call(launch_, key, [&](const std::string& k) {
    state_->store->set(k, std::vector<uint8_t>(value.begin(), value.end()));
    return 0;
  });
}

std::string ProcessGroup::get(const std::string& key) {
  return store_call(launch_, key, [&](const std::string& k) {
    const std::vector<uint8_t> bytes = state_->store->get(k);
    return std::string(bytes.begin(), bytes.end());
  });
}

bool ProcessGroup::has(const std::string& key) {
  return store_call(launch_, key, [&](const std::string& k) { return state_->store->check({k}); });
}

}  // namespace qnas::dist
