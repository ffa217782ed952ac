// The supernet against its extracted static networks: a subnet cut out of the supernet must compute what
// the supernet computes with that subnet active, in FP32 and in INT8 fake-quant mode. The static network
// is an independent implementation of an ArchSpec (stock torch::nn layers), so this checks the slicing,
// the layer alignment (missing expand convs, shorter K3 stacks), the projections and the quantizer state.
#include "nn/supernet.h"

#include <gtest/gtest.h>

#include "quant/quantizers.h"
#include "search/qfa_genome.h"
#include "space/sampling.h"
#include "test_util.h"

using namespace qnas;
using namespace qnas::nn;

namespace {

double max_rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item<double>();
}

// Gives every BN non-trivial running statistics and affine parameters, and initialises the quantizers
// (min-max on the first batch), by running the max subnet in training mode once.
void warm_up(Supernet& net, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  for (auto& p : net->named_parameters()) {
    if (p.key().find("_bn.") != std::string::npos) p.value().uniform_(0.5, 1.5);
  }
  net->set_active(net->sample_max());
  net->train();
  net->forward(images);
  net->eval();
}

struct Case {
  const char* space;
  int bits;
  int random_subnets;
  int64_t channels, resolution;
};

class Extraction : public ::testing::TestWithParam<Case> {};

TEST_P(Extraction, ExtractedSubnetMatchesTheSupernet) {
  const Case c = GetParam();
  torch::manual_seed(7);
  Supernet net(space::SearchSpace::parse(c.space));
  const torch::Tensor images = torch::randn({2, c.channels, c.resolution, c.resolution});
  if (c.bits != 32) quant::set_bits(*net, c.bits);
  warm_up(net, images);

  Rng rng(11);
  std::vector<space::Subnet> subnets = {net->sample_max(), net->sample_min()};
  for (int i = 0; i < c.random_subnets; ++i) subnets.push_back(net->sample_random(rng));
  torch::NoGradGuard no_grad;
  for (const auto& subnet : subnets) {
    net->set_active(subnet);
    if (c.bits != 32) {  // subnets that reach quantizers the max subnet does not use initialise them here
      net->train();
      net->forward(images);
      net->eval();
    }
    const torch::Tensor expected = net->forward(images);
    StaticNet extracted = net->extract_active();
    const torch::Tensor got = extracted->forward(images);
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_LT(max_rel_diff(got, expected), 1e-5) << subnet.encode();
    // The static net owns exactly the active subnet's weights: its parameter count is the ArchSpec's
    // (plus the quantizers' scales and offsets).
    int64_t weights = 0;
    for (const auto& p : extracted->named_parameters()) {
      if (p.key().find("_wq") == std::string::npos && p.key().find("_aq") == std::string::npos)
        weights += p.value().numel();
    }
    EXPECT_EQ(weights, net->active_spec().params()) << subnet.encode();
  }
}

// fmnistw with every onnxw block type (one per stage), and mobilew with its K3 stacks and fused SE blocks
// (FP32 only: at 160x160 its INT8 case takes 40 s, and the quantizer copy does not depend on the block type).
INSTANTIATE_TEST_SUITE_P(Spaces, Extraction,
                         ::testing::Values(Case{"fmnistw-012345-000000", 32, 3, 1, 28},
                                           Case{"fmnistw-543210-111111", 8, 3, 1, 28},
                                           Case{"mobilew-654321-000000", 32, 1, 3, 160}),
                         [](const auto& info) {
                           std::string name = std::string(info.param.space) + "_" +
                                              (info.param.bits == 32 ? "fp32" : "int8");
                           for (char& ch : name)
                             if (ch == '-') ch = '_';
                           return name;
                         });

TEST(Supernet, SetActiveRejectsASubnetOfAnotherSpace) {
  Supernet net(space::SearchSpace::parse("fmnistw-151122-000000"));
  const auto other = space::max_subnet(space::SearchSpace::parse("onnxw-151122-023231"));
  EXPECT_CONTAINS(qnas::testing::error_message([&] { net->set_active(other); }), "not in");
}

TEST(Supernet, ForwardResizesToTheActiveResolution) {
  torch::manual_seed(3);
  Supernet net(space::SearchSpace::parse("fmnistw-151122-000000"));
  net->eval();
  space::Subnet subnet = net->sample_min();
  subnet.resolution = 20;
  net->set_active(subnet);
  torch::NoGradGuard no_grad;
  const torch::Tensor images = torch::randn({2, 1, 28, 28});
  const torch::Tensor direct = net->forward(resize_images(images, 20));
  EXPECT_EQ(direct.sizes(), (std::vector<int64_t>{2, 10}));
  EXPECT_LT(max_rel_diff(net->forward(images), direct), 1e-6);
}

TEST(Supernet, SmallSubnetTrainsOnlyTheLeadingWeights) {
  torch::manual_seed(4);
  Supernet net(space::SearchSpace::parse("fmnistw-151122-000000"));
  net->train();
  net->set_active(net->sample_min());
  net->forward(torch::randn({4, 1, 28, 28})).sum().backward();
  // The stem conv: min width 16 of 24, so output channels 16..23 get no gradient.
  const auto params = net->named_parameters();
  const torch::Tensor grad = params["first_conv_block0_layer0_conv.weight"].grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_GT(grad.narrow(0, 0, 16).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(grad.narrow(0, 16, 8).abs().sum().item<double>(), 0.0);
  // The deepest block of stage3 (depth 2 of at most 4) is not part of the min subnet at all.
  EXPECT_FALSE(params["stage3_block3_layer0_conv.weight"].grad().defined());
}

TEST(Supernet, RandomSamplingIsValidAndSeeded) {
  Supernet net(space::SearchSpace::parse("fmnistw-151122-000000"));
  Rng a(5), b(5);
  for (int i = 0; i < 20; ++i) {
    const auto s = net->sample_random(a);
    EXPECT_TRUE(space::is_valid(s, net->space()));
    EXPECT_EQ(s, net->sample_random(b));
  }
}

TEST(BatchNormRecalibration, RunningStatisticsAreTheMeanOfTheBatchStatistics) {
  torch::manual_seed(6);
  space::ArchSpec spec;
  spec.resolution = 6;
  spec.in_channels = 2;
  spec.num_classes = 3;
  space::BlockSpec block;
  block.layers = {space::make_conv(2, 3, 3, 1, 6, space::Activation::kRelu)};
  spec.blocks = {block};
  StaticNet net(spec);
  std::vector<torch::Tensor> batches = {torch::randn({4, 2, 6, 6}), torch::randn({4, 2, 6, 6}) * 2 + 1};
  size_t next = 0;
  const int used = recalibrate_batch_norm(
      *net,
      [&](torch::Tensor& x) {
        if (next == batches.size()) return false;
        x = batches[next++];
        return true;
      },
      10);
  EXPECT_EQ(used, 2);
  EXPECT_FALSE(net->is_training());
  torch::NoGradGuard no_grad;
  const torch::Tensor w = net->blocks()[0].layers[0].conv->weight;
  torch::Tensor mean = torch::zeros({3});
  for (const auto& x : batches) mean += torch::conv2d(x, w, {}, 1, 1).mean({0, 2, 3}) / 2.0;
  EXPECT_LT((net->blocks()[0].layers[0].bn->running_mean - mean).abs().max().item<double>(), 1e-5);
}

TEST(BatchNormRecalibration, EmptyDataIsAnError) {
  Supernet net(space::SearchSpace::parse("fmnistw-151122-000000"));
  EXPECT_CONTAINS(qnas::testing::error_message([&] {
                    recalibrate_batch_norm(
                        *net, [](torch::Tensor&) { return false; }, 5);
                  }),
                  "no batches");
}

}  // namespace

// QFA: per-layer bits on the supernet reach exactly the active layers' quantizers, each bit-width on its own
// scales, and the extracted network computes the same in those bits.
TEST(SupernetBits, MixedBitsReachTheActiveLayersAndExtractionKeepsThem) {
  torch::manual_seed(9);
  Supernet net(space::SearchSpace::parse("fmnistw-543210-111111"));
  net->enable_bit_bank({2, 4});
  quant::set_bits(*net, 8);
  const torch::Tensor images = torch::randn({2, 1, 28, 28});
  warm_up(net, images);
  Rng rng(3);
  for (const auto& subnet : {net->sample_max(), net->sample_min(), net->sample_random(rng)}) {
    const auto spec = space::build_arch_spec(net->space(), subnet);
    const auto bits = search::qfa_random(spec, {2, 4}, rng);
    net->set_active(subnet, bits);
    {
      torch::NoGradGuard no_grad;
      net->train();
      net->forward(images);  // initialises the 2- and 4-bit entries these layers use
      net->eval();
    }
    const auto handles = net->active_quant_handles();
    ASSERT_EQ(handles.size(), bits.layers.size());
    for (size_t i = 0; i < handles.size(); ++i) {
      EXPECT_EQ(handles[i].weight_quant->bits(), bits.layers[i].weight) << i;
      EXPECT_GE(handles[i].input_quant->bits(), bits.layers[i].activation) << i;
    }
    torch::NoGradGuard no_grad;
    const torch::Tensor expected = net->forward(images);
    StaticNet extracted = net->extract_active();
    EXPECT_LT(max_rel_diff(extracted->forward(images), expected), 1e-5) << subnet.encode();
    const auto static_handles = quant_layer_handles(*extracted);
    for (size_t i = 0; i < static_handles.size(); ++i) {
      EXPECT_EQ(static_handles[i].weight_quant->bits(), bits.layers[i].weight) << i;
      EXPECT_EQ(static_handles[i].input_quant->bits(), handles[i].input_quant->bits()) << i;
    }
  }
}

// QFA's BatchQuant in the supernet: the activation quantizers follow each batch in training, calibrate with
// BN recalibration, and the extracted subnet is a plain LSQ+ network with that calibrated range which
// computes what the supernet computes, at uniform 8 bits and at random per-layer bits.
TEST(SupernetBatchQuant, CalibratedSubnetsExtractToLsqPlusNetworksThatComputeTheSame) {
  torch::manual_seed(12);
  Supernet net(space::SearchSpace::parse("fmnistw-012345-000000"));
  const int quantizers = quant::count_quantizers(*net);
  quant::use_batch_range(*net);
  net->enable_bit_bank({2, 4});  // weights only: a BatchQuant range follows the batch at every bit-width
  EXPECT_EQ(quant::count_quantizers(*net), quantizers);
  EXPECT_FALSE(net->named_parameters().contains("input_aq.scale_b2"));
  quant::set_bits(*net, 8);
  const torch::Tensor images = torch::randn({4, 1, 28, 28});
  warm_up(net, images);
  Rng rng(5);
  for (const auto& subnet : {net->sample_max(), net->sample_min(), net->sample_random(rng)}) {
    const auto spec = space::build_arch_spec(net->space(), subnet);
    const bool mixed = subnet.encode() != net->sample_max().encode();
    if (mixed) {
      net->set_active(subnet, search::qfa_random(spec, {2, 4}, rng));
    } else {
      net->set_active(subnet);
      quant::set_bits(*net, 8);
    }
    int batches = 0;
    const int used = recalibrate_batch_norm(
        *net,
        [&](torch::Tensor& x) {
          x = images;
          return batches++ < 2;
        },
        2);
    ASSERT_EQ(used, 2);
    torch::NoGradGuard no_grad;
    const torch::Tensor expected = net->forward(images);
    StaticNet extracted = net->extract_active();
    extracted->eval();
    for (const auto& m : extracted->modules()) {
      const auto* q = m->as<quant::LsqPlusActivationImpl>();
      EXPECT_FALSE(q && q->uses_batch_range());
    }
    EXPECT_LT(max_rel_diff(extracted->forward(images), expected), 1e-5) << subnet.encode();
    // It quantises: the FP32 network computes something else.
    quant::set_bits(*extracted, quant::kFloatBits);
    EXPECT_GT(max_rel_diff(extracted->forward(images), expected), 1e-4) << subnet.encode();
  }
}

TEST(SupernetBits, LoadingAnExtractedSubnetIsTheInverseOfExtraction) {
  torch::manual_seed(10);
  const auto space = space::SearchSpace::parse("fmnistw-012345-000000");
  Supernet trained(space);
  const torch::Tensor images = torch::randn({2, 1, 28, 28});
  warm_up(trained, images);
  torch::NoGradGuard no_grad;
  for (const auto& subnet : {trained->sample_max(), trained->sample_min()}) {
    trained->set_active(subnet);
    StaticNet cut = trained->extract_active();
    torch::manual_seed(11);
    Supernet fresh(space);
    fresh->load_subnet_weights(*cut);
    fresh->set_active(subnet);
    fresh->eval();
    EXPECT_LT(max_rel_diff(fresh->forward(images), trained->forward(images)), 1e-6) << subnet.encode();
  }
  StaticNet foreign(
      space::build_arch_spec(space::SearchSpace::parse("fmnistw-000000-000000"),
                             space::max_subnet(space::SearchSpace::parse("fmnistw-000000-000000"))));
  EXPECT_CONTAINS(qnas::testing::error_message([&] { trained->load_subnet_weights(*foreign); }),
                  "is not a subnet of supernet");
}
