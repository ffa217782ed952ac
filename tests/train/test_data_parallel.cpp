// Data-parallel training over c10d Gloo on 127.0.0.1, two ranks as two threads of this test: they end with
// the weights one process reaches with the same global batch and seed (synchronised batch norm, quantizer
// ranges over the global batch, averaged gradients); launch settings come from torchrun's or Slurm's
// environment; a missing rank, a wrong WORLD_SIZE or an unreachable master is one clear error within the
// timeout, never a hang.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <thread>

#include <unistd.h>

#include "dist/gradient_reducer.h"
#include "dist/process_group.h"
#include "nn/dynamic_ops.h"
#include "nn/supernet.h"
#include "quant/quantizers.h"
#include "test_util.h"
#include "train/losses.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

using namespace qnas;

namespace {

using train_test::synthetic;
using train_test::TempDir;

dist::Getenv env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

// A port per test process, so parallel ctest runs do not meet.
int test_port(int offset) {
  return 20000 + static_cast<int>(getpid() % 20000) + offset;
}

dist::Launch local(int rank, int world, int port, int timeout_s = 20) {
  dist::Launch l;
  l.rank = rank;
  l.world_size = world;
  l.master_port = port;
  l.timeout = std::chrono::seconds(timeout_s);
  return l;
}

TEST(Launch, ReadsTorchrunAndSlurmEnvironments) {
  const dist::Launch none = dist::launch_from_environment(env({}));
  EXPECT_FALSE(none.distributed());
  const dist::Launch torchrun = dist::launch_from_environment(env({{"RANK", "3"},
                                                                   {"WORLD_SIZE", "4"},
                                                                   {"LOCAL_RANK", "1"},
                                                                   {"MASTER_ADDR", "10.0.0.2"},
                                                                   {"MASTER_PORT", "29511"},
                                                                   {"QNAS_DIST_TIMEOUT", "7"}}));
  EXPECT_EQ(torchrun.rank, 3);
  EXPECT_EQ(torchrun.world_size, 4);
  EXPECT_EQ(torchrun.local_rank, 1);
  EXPECT_EQ(torchrun.master_addr, "10.0.0.2");
  EXPECT_EQ(torchrun.master_port, 29511);
  EXPECT_EQ(torchrun.timeout, std::chrono::seconds(7));
  const dist::Launch slurm = dist::launch_from_environment(env({{"SLURM_PROCID", "5"},
                                                                {"SLURM_NTASKS", "8"},
                                                                {"SLURM_LOCALID", "1"},
                                                                {"SLURM_NODELIST", "gpu7,gpu8"}}));
  EXPECT_EQ(slurm.rank, 5);
  EXPECT_EQ(slurm.world_size, 8);
  EXPECT_EQ(slurm.master_addr, "gpu7");
}

TEST(Launch, BadValuesAreNamed) {
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    dist::launch_from_environment(env({{"RANK", "2"}, {"WORLD_SIZE", "2"}}));
                  }),
                  "RANK=2 is outside [0, WORLD_SIZE=2)");
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    dist::launch_from_environment(env({{"RANK", "0"}, {"WORLD_SIZE", "two"}}));
                  }),
                  "WORLD_SIZE='two' is not an integer");
  EXPECT_CONTAINS(qnas::testing::error_message([] {
                    dist::launch_from_environment(env({{"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}));
                  }),
                  "MASTER_PORT=70000");
}

TEST(ProcessGroup, AMissingRankIsAnErrorWithinTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  const std::string message =
      qnas::testing::error_message([] { dist::ProcessGroup group(local(0, 2, test_port(1), 2)); });
  EXPECT_CONTAINS(message, "only 1 of WORLD_SIZE=2 ranks joined");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(ProcessGroup, AnUnreachableMasterIsAnErrorWithinTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  const std::string message =
      qnas::testing::error_message([] { dist::ProcessGroup group(local(1, 2, test_port(2), 2)); });
  EXPECT_CONTAINS(message, "cannot reach the rendezvous store at 127.0.0.1");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
}

TEST(ProcessGroup, RanksWithDifferentWorldSizesAreStopped) {
  const int port = test_port(3);
  std::string messages[3];
  std::vector<std::thread> ranks;
  // Rank 0 and 1 think the world has 3 ranks, a third process was started with WORLD_SIZE=2.
  for (int r = 0; r < 3; ++r) {
    ranks.emplace_back([&, r] {
      messages[r] = qnas::testing::error_message(
          [&] { dist::ProcessGroup group(local(r == 2 ? 1 : r, r == 2 ? 2 : 3, port, 3)); });
    });
  }
  for (auto& t : ranks) t.join();
  bool named = false;
  for (const auto& m : messages) named |= m.find("WORLD_SIZE") != std::string::npos;
  EXPECT_TRUE(named) << messages[0] << "\n" << messages[1] << "\n" << messages[2];
}

TEST(ProcessGroup, SumsAndMaximaCoverEveryRank) {
  const int port = test_port(4);
  std::vector<torch::Tensor> results(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      dist::ProcessGroup group(local(r, 2, port));
      torch::Tensor a = torch::full({3}, static_cast<float>(r + 1)), b = torch::full({2, 2}, 10.0f * r);
      group.allreduce_sum({a, b});
      torch::Tensor m = torch::tensor({static_cast<float>(r), -static_cast<float>(r)});
      group.allreduce_max(m);
      EXPECT_EQ(group.add("blocks", 1) <= 2, true);
      results[static_cast<size_t>(r)] = torch::cat({a, b.reshape({-1}), m});
      group.barrier();
    });
  }
  for (auto& t : ranks) t.join();
  const torch::Tensor expected = torch::tensor({3.f, 3.f, 3.f, 10.f, 10.f, 10.f, 10.f, 1.f, 0.f});
  EXPECT_TRUE(torch::equal(results[0], expected)) << results[0];
  EXPECT_TRUE(torch::equal(results[1], expected)) << results[1];
}

// Two backward passes into the same gradients, as a sandwich step makes them: the reducer averages over the
// ranks during the second, one bucket per parameter here, each started by its gradient's hook (in order),
// and a parameter only the first pass used (d) is final from the start; one no pass used (e) keeps no
// gradient. The averages are those of the two ranks' gradients computed apart.
TEST(GradientReducer, AveragesEveryGradientWhileTheLastBackwardRuns) {
  torch::manual_seed(11);
  const std::vector<torch::Tensor> start = {torch::randn({4, 4}), torch::randn({4, 4}), torch::randn({4, 4}),
                                            torch::randn({4, 4}), torch::randn({4, 4})};
  const std::vector<torch::Tensor> inputs = {torch::randn({3, 4}), torch::randn({3, 4})};
  auto fresh = [&] {
    std::vector<torch::Tensor> p;
    for (const auto& t : start) p.push_back(t.clone().requires_grad_(true));
    return p;
  };
  auto first_pass = [](const std::vector<torch::Tensor>& p, const torch::Tensor& x) {
    return x.mm(p[0]).mm(p[3]).pow(2).sum();
  };
  auto last_pass = [](const std::vector<torch::Tensor>& p, const torch::Tensor& x) {
    return x.mm(p[0]).mm(p[1]).mm(p[2]).tanh().sum();
  };
  std::vector<torch::Tensor> expected(4, torch::zeros({4, 4}));
  for (const auto& x : inputs) {
    auto p = fresh();
    first_pass(p, x).backward();
    last_pass(p, x).backward();
    for (size_t i = 0; i < 4; ++i) expected[i] = expected[i] + p[i].grad() / 2;
  }
  const int port = test_port(9);
  std::vector<std::vector<torch::Tensor>> grads(2);
  std::vector<torch::Tensor> stats(2);
  std::vector<int> buckets(2), early(2);
  std::vector<bool> unused_has_grad(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      dist::ProcessGroup group(local(r, 2, port));
      auto p = fresh();
      dist::GradientReducer reducer(group, p, /*bucket_bytes=*/64);
      first_pass(p, inputs[r]).backward();
      const torch::Tensor loss = last_pass(p, inputs[r]);
      stats[r] = torch::tensor({1.0 + r, 10.0}, torch::kDouble);
      reducer.prepare(loss, stats[r]);
      loss.backward();
      reducer.finish();
      for (size_t i = 0; i < 4; ++i) grads[r].push_back(p[i].grad());
      unused_has_grad[r] = p[4].grad().defined();
      buckets[r] = reducer.buckets_last_step();
      early[r] = reducer.started_early_last_step();
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < 2; ++r) {
    for (size_t i = 0; i < 4; ++i)
      EXPECT_TRUE(torch::allclose(grads[r][i], expected[i], 1e-6, 1e-6))
          << "rank " << r << " parameter " << i;
    EXPECT_FALSE(unused_has_grad[r]);
    EXPECT_TRUE(torch::equal(stats[r], torch::tensor({3.0, 20.0}, torch::kDouble)));
    EXPECT_EQ(buckets[r], 4);
    EXPECT_EQ(early[r], 4);  // all before backward returned: none waited for finish()
  }
}

train::TrainConfig two_step_config() {
  train::TrainConfig c;
  c.epochs = 1;
  c.qat_epochs = 0;
  c.batch_size = 16;
  c.lr = 0.05;
  c.qat_lr = 0.005;
  c.warmup_epochs = 0.5;
  c.random_subnets = 1;
  c.bn_batches = 2;
  c.eval_random_subnets = 0;
  c.augment = true;
  c.train_limit = 32;  // 2 global steps
  return c;
}

std::shared_ptr<nn::SupernetImpl> fresh_ranked_supernet(torch::Dtype dtype = torch::kFloat) {
  torch::manual_seed(3);
  auto net = std::make_shared<nn::SupernetImpl>(space::SearchSpace::parse("fmnistw-000000-000000"));
  net->to(dtype);
  return net;
}

// Two sandwich steps (augmentation, alpha distillation, synchronised batch norm) in float64. Two ranks sum
// every statistic and gradient in another order than one process, and this untrained supernet amplifies
// that rounding ~10x per step, until an activation crosses a ReLU kink (measured: 6e-10 after 2 steps,
// 4e-9 after 3, 3e-3 after 4; in float32 0.5-1.5% of a step's update after one step), so the weights
// compare only in exact arithmetic and over few steps. QAT is compared below, at the step level.
TEST(DataParallel, TwoRanksReachTheWeightsOfOneProcess) {
  const auto train_set = synthetic(64, 1), test_set = synthetic(16, 2);
  TempDir single("single"), shared("shared");
  auto reference = fresh_ranked_supernet(torch::kDouble);
  const auto reference_logs =
      train::Trainer(two_step_config(), reference, train_set, test_set, single.path).run();

  const int port = test_port(5);
  std::vector<std::shared_ptr<nn::SupernetImpl>> models = {fresh_ranked_supernet(torch::kDouble),
                                                           fresh_ranked_supernet(torch::kDouble)};
  std::vector<std::vector<train::EpochLog>> logs(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      try {
        dist::ProcessGroup group(local(r, 2, port));
        train::Trainer trainer(two_step_config(), models[static_cast<size_t>(r)], train_set, test_set,
                               shared.path);
        trainer.set_process_group(&group);
        logs[static_cast<size_t>(r)] = trainer.run();
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_EQ(errors[0], "");  // both, so a failure shows which rank stopped first
  ASSERT_EQ(errors[1], "");
  ASSERT_EQ(errors[0], "");
  {
    const auto a = models[0]->named_parameters(), b = models[1]->named_parameters();
    double d = 0;
    for (const auto& p : a) d = std::max(d, (p.value() - b[p.key()]).abs().max().item<double>());
    EXPECT_LT(d, 1e-6) << "ranks differ";
  }
  for (int r = 0; r < 2; ++r) {
    const auto a = models[static_cast<size_t>(r)]->named_parameters();
    for (const auto& p : reference->named_parameters()) {
      EXPECT_LT((a[p.key()] - p.value()).abs().max().item<double>(), 1e-5) << "rank " << r << " " << p.key();
    }
  }
  // The logged losses are the global batch's, as one process logs them.
  ASSERT_EQ(logs[0].size(), reference_logs.size());
  for (size_t e = 0; e < reference_logs.size(); ++e) {
    EXPECT_NEAR(logs[0][e].loss, reference_logs[e].loss, 1e-4) << e;
    EXPECT_NEAR(logs[0][e].train_accuracy, reference_logs[e].train_accuracy, 1e-9) << e;
  }
  EXPECT_TRUE(std::filesystem::exists(shared.path / "checkpoint.pt"));
}

TEST(DataParallel, ABatchThatDoesNotSplitIsNamed) {
  const auto train_set = synthetic(32, 1), test_set = synthetic(8, 2);
  TempDir dir("odd");
  auto config = two_step_config();
  config.batch_size = 15;
  std::string messages[2];
  std::vector<std::thread> ranks;
  const int port = test_port(6);
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      messages[r] = qnas::testing::error_message([&] {
        dist::ProcessGroup group(local(r, 2, port));
        train::Trainer trainer(config, fresh_ranked_supernet(), train_set, test_set, dir.path);
        trainer.set_process_group(&group);
      });
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_CONTAINS(messages[0], "batch_size 15 does not split over 2 ranks");
}

}  // namespace

namespace {
TEST(DataParallel, SynchronisedBatchNormOverTwoRanksEqualsOneBatch) {
  torch::manual_seed(5);
  const torch::Tensor x0 = torch::randn({8, 4, 3, 3}) * 2 + 1, upstream = torch::randn({8, 4, 3, 3});
  auto make = [] {
    nn::DynamicBatchNorm2d bn(4);
    bn->train();
    return bn;
  };
  auto single = make();
  torch::Tensor xs = x0.clone().requires_grad_(true);
  (single->forward(xs) * upstream).sum().backward();
  const int port = test_port(7);
  std::vector<torch::Tensor> dx(2), dw(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      dist::ProcessGroup group(local(r, 2, port));
      quant::Collectives c;
      c.sum = [&](const std::vector<torch::Tensor>& t) { group.allreduce_sum(t); };
      c.max = [&](torch::Tensor& t) { group.allreduce_max(t); };
      c.gather = [&](const torch::Tensor& t) { return group.all_gather(t); };
      quant::set_collectives(&c);
      auto bn = make();
      torch::Tensor x = x0.narrow(0, 4 * r, 4).clone().requires_grad_(true);
      (bn->forward(x) * upstream.narrow(0, 4 * r, 4)).sum().backward();
      quant::set_collectives(nullptr);
      dx[r] = x.grad();
      dw[r] = bn->weight.grad();
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_TRUE(torch::allclose(torch::cat(dx), xs.grad(), 1e-4, 1e-5)) << torch::cat(dx) << xs.grad();
  EXPECT_TRUE(torch::allclose(dw[0] + dw[1], single->weight.grad(), 1e-4, 1e-5));
}
}  // namespace

namespace {

// One quantised sandwich step (max subnet with labels, min subnet distilled from it) under `collectives`;
// returns the max subnet's logits, and leaves the gradients in `net`.
torch::Tensor quantised_step(nn::SupernetImpl& net, const torch::Tensor& images, const torch::Tensor& labels,
                             const quant::Collectives& collectives) {
  quant::set_collectives(&collectives);
  net.set_active(net.sample_max());
  const torch::Tensor logits = net.forward(images);
  train::label_smoothing_cross_entropy(logits, labels, 0.1).backward();
  net.set_active(net.sample_min());
  train::kl_distillation(net.forward(images), logits.detach()).backward();
  quant::set_collectives(nullptr);
  return logits.detach();
}

std::shared_ptr<nn::SupernetImpl> quantised_supernet() {
  auto net = fresh_ranked_supernet(torch::kDouble);
  quant::set_bits(*net, 8);
  net->train();
  return net;
}

// QAT, in float64: two ranks against one process whose batch norm runs the same synchronised arithmetic on
// one rank. Fake-quant rounding turns any last-bit difference into whole codes, so the reference must round
// alike: LibTorch's own batch norm does not (measured: logits 2e-3 apart after one forward in float64), nor
// do float32 convolutions of 8 and 16 images (oneDNN picks its algorithm by batch size; measured: gradients
// apart by more than their size). Quantizer initialisation over the global batch is part of the step.
TEST(DataParallel, AQuantisedStepOnTwoRanksIsTheStepOfOneProcess) {
  {
    // The same rows of a product must not depend on how many rows there are, or no reference can round alike.
    // netlib's reference BLAS (Debian's default libblas.so.3) holds to that; OpenBLAS, when installed as the
    // libblas.so.3 alternative, picks other kernels for 8 and 16 rows (measured: the logits and gradients
    // below then differ by whole quantisation codes).
    torch::manual_seed(1);
    const torch::Tensor a = torch::rand({16, 300}, torch::kDouble),
                        w = torch::rand({300, 64}, torch::kDouble);
    if (!torch::equal(torch::mm(a.narrow(0, 0, 8), w), torch::mm(a, w).narrow(0, 0, 8)))
      GTEST_SKIP()
          << "this machine's BLAS rounds 8 and 16 rows differently (OpenBLAS as libblas.so.3?): an "
             "exact QAT comparison cannot hold; `update-alternatives --config libblas.so.3-x86_64-linux-gnu` "
             "selects the reference BLAS";
  }
  torch::manual_seed(9);
  const torch::Tensor images = torch::rand({16, 1, 28, 28}, torch::kDouble);
  const torch::Tensor labels = torch::randint(0, 10, {16});
  auto single = quantised_supernet();
  quant::Collectives one_rank;
  one_rank.sum = [](const std::vector<torch::Tensor>&) {};
  one_rank.max = [](torch::Tensor&) {};
  one_rank.gather = [](const torch::Tensor& t) { return t.unsqueeze(0); };
  const torch::Tensor single_logits = quantised_step(*single, images, labels, one_rank);

  std::vector<std::shared_ptr<nn::SupernetImpl>> nets = {quantised_supernet(), quantised_supernet()};
  std::vector<torch::Tensor> logits(2);
  const int port = test_port(8);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      dist::ProcessGroup group(local(r, 2, port));
      quant::Collectives c;
      c.sum = [&](const std::vector<torch::Tensor>& t) { group.allreduce_sum(t); };
      c.max = [&](torch::Tensor& t) { group.allreduce_max(t); };
      c.gather = [&](const torch::Tensor& t) { return group.all_gather(t); };
      logits[r] = quantised_step(*nets[r], images.narrow(0, 8 * r, 8), labels.narrow(0, 8 * r, 8), c);
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_TRUE(torch::allclose(torch::cat(logits), single_logits, 1e-5, 1e-6))
      << (torch::cat(logits) - single_logits).abs().max().item<double>();
  const auto a = nets[0]->named_parameters(), b = nets[1]->named_parameters();
  int compared = 0;
  for (const auto& p : single->named_parameters()) {
    EXPECT_TRUE(torch::allclose(a[p.key()], p.value(), 1e-12, 1e-15))
        << p.key() << ": initialisation differs";
    if (!p.value().grad().defined()) continue;
    const torch::Tensor averaged = (a[p.key()].grad() + b[p.key()].grad()) / 2;
    const double scale = std::max(p.value().grad().abs().max().item<double>(), 1e-3);
    EXPECT_LE((averaged - p.value().grad()).abs().max().item<double>(), 1e-5 * scale) << p.key();
    ++compared;
  }
  EXPECT_GT(compared, 50);
}

}  // namespace
