// The quantisation contract end to end: zero-point arithmetic against hand values, the oneDNN plan against
// the reference with zero points on every op, a QAT-trained tiny network lowered to the engine against its
// own fake-quant forward, the export's metadata, and the errors a bad run directory gets.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/quant_contract.h"
#include "deploy/deploy.h"
#include "nn/mixed_precision.h"
#include "nn/supernet.h"
#include "quant/quantizers.h"
#include "runtime/onednn_plan.h"
#include "runtime/reference.h"
#include "space/sampling.h"
#include "train/trainer.h"
#ifdef QNAS_HAVE_ONNX
#include <onnx/onnx_pb.h>

#include "export/onnx_export.h"
#include "export/ort_harness.h"
#endif
#include "test_util.h"
#include "train_test_util.h"

namespace qnas {
namespace {

using runtime::TensorQuant;

TEST(QuantContract, QuantizeRoundsHalfToEvenAndClamps) {
  using quant_contract::quantize;
  EXPECT_EQ(quantize(1.25f, 0.5f, 0, 0, 255), 2);   // 2.5 -> 2
  EXPECT_EQ(quantize(1.75f, 0.5f, 0, 0, 255), 4);   // 3.5 -> 4
  EXPECT_EQ(quantize(0.5f, 0.5f, 10, 0, 255), 11);  // zero point shifts the code
  EXPECT_EQ(quantize(-20.0f, 0.5f, 10, 0, 255), 0);
  EXPECT_EQ(quantize(200.0f, 0.5f, 10, 0, 255), 255);
  EXPECT_EQ(quantize(-1.0f, 0.5f, 0, -128, 127), -2);
  EXPECT_FLOAT_EQ(quant_contract::dequantize(11, 0.5f, 10), 0.5f);
}

TEST(QuantContract, ZeroPointFromLsqPlusOffset) {
  EXPECT_EQ(quant_contract::zero_point_from_offset(-0.3f, 0.1f, 255), 3);
  EXPECT_EQ(quant_contract::zero_point_from_offset(-0.26f, 0.1f, 255), 3);  // 2.6 rounds to 3
  EXPECT_EQ(quant_contract::zero_point_from_offset(0.5f, 0.1f, 255), 0);    // a positive offset clamps to 0
  EXPECT_EQ(quant_contract::zero_point_from_offset(-100.0f, 0.1f, 255), 255);
}

// The trainer's LSQ+ forward is the contract: codes with an integer zero point, nothing in between.
TEST(QuantContract, LsqPlusForwardIsTheEngineArithmetic) {
  quant::LsqPlusActivation q(8);
  torch::Tensor x = torch::linspace(-1.0, 3.0, 401);
  q->forward(x);  // min-max initialisation
  q->offset.data().fill_(-0.537);
  q->eval();
  const torch::Tensor y = q->forward(x);
  const float s = q->effective_scale();
  const int z = q->zero_point();
  EXPECT_EQ(z, quant_contract::zero_point_from_offset(-0.537f, s, 255));
  for (int64_t i = 0; i < x.size(0); ++i) {
    const int code = quant_contract::quantize(x[i].item<float>(), s, z, 0, 255);
    ASSERT_NEAR(y[i].item<float>(), quant_contract::dequantize(code, s, z), 1e-6)
        << "x = " << x[i].item<float>();
  }
}

// One 1x1 conv, input u8 with zero point 10, output u8 with zero point 5, worked out by hand.
TEST(ZeroPoints, ConvMatchesHandValuesInBothEngines) {
  space::BlockSpec block;
  block.stage = "s";
  block.cin = block.cout = 1;
  block.in_hw = block.out_hw = 2;
  block.layers.push_back(space::make_conv(1, 1, 1, 1, 2, space::Activation::kNone));
  const runtime::Program program = runtime::lower_block(block);
  runtime::Weights weights;
  weights.steps.resize(1);
  weights.steps[0].weight = {0.5f};
  weights.steps[0].bias = {0.1f};
  runtime::QuantParams quant;
  quant.tensors = {TensorQuant{0.1f, 10, true}, TensorQuant{0.01f, 5, true}};
  quant.steps.resize(1);
  runtime::quantize_per_channel(weights.steps[0].weight, 1, quant.steps[0].weight,
                                quant.steps[0].weight_scale);
  ASSERT_EQ(quant.steps[0].weight[0], 127);
  // codes 10, 11, 12, 9 -> acc (code - 10) * 127 -> acc * 0.1 * 0.5 / 127 + 0.1 -> requantised at 0.01, zp 5
  const std::vector<float> image = {0.0f, 0.1f, 0.2f, -0.1f};
  const std::vector<float> expected = {0.1f, 0.15f, 0.2f, 0.05f};
  runtime::ReferenceExecutor reference(program, weights, &quant);
  runtime::OnednnPlan plan(program, weights, runtime::Precision::kInt8, 1, &quant);
  const auto ours = reference.run(image), engine = plan.run(image);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(ours[i], expected[i], 1e-6) << i;
    EXPECT_NEAR(engine[i], expected[i], 1e-6) << i;
  }
}

// Calibrated parameters moved onto u8 grids with zero points (as LSQ+ learns them), with SE pools, mids and
// outputs on grids of their own: block by block (residual adds, projections, SE, pooling, classifier) the
// engine reproduces the reference within one output code, as it does without zero points.
void move_onto_zero_point_grids(const runtime::Program& program, runtime::QuantParams& quant, Rng& rng) {
  for (size_t t = 0; t < quant.tensors.size(); ++t) {
    if (program.tensors[t].is_logits) continue;
    TensorQuant& q = quant.tensors[t];
    // A signed grid is the same grid as u8 with zero point 128; jitter it so no zero point is special.
    q.zero_point = q.is_unsigned ? static_cast<int>(rng.below(12)) : 118 + static_cast<int>(rng.below(21));
    q.is_unsigned = true;
  }
  for (size_t i = 0; i < program.steps.size(); ++i) {
    if (program.steps[i].layer.op != space::OpKind::kSqueezeExcite) continue;
    quant.steps[i].pool = quant.tensors[static_cast<size_t>(program.steps[i].input)];
    quant.steps[i].pool.scale *= 0.7f;
    quant.steps[i].mid.zero_point = 3;
    quant.tensors[static_cast<size_t>(program.steps[i].output)].scale *= 1.3f;
  }
}

TEST(ZeroPoints, OnednnMatchesTheReferenceWithinOneCodePerBlock) {
  Rng rng(5);
  std::int64_t beyond_one_code = 0, codes = 0;
  for (const std::string space_name : {"fmnistw-222222-000000", "fmnistw-545454-000000"}) {
    const auto space = space::SearchSpace::parse(space_name);
    const space::ArchSpec spec = space::build_arch_spec(space, space::max_subnet(space), 20);
    for (const auto& block : spec.blocks) {
      const runtime::Program program = runtime::lower_block(block);
      const runtime::Weights weights = runtime::random_weights(program, 3);
      std::vector<float> image(static_cast<size_t>(program.in_channels) * block.in_hw * block.in_hw);
      for (auto& x : image) x = static_cast<float>(rng.uniform() * 4.0 - 2.0);
      runtime::QuantParams quant = runtime::calibrate(program, weights, {image});
      move_onto_zero_point_grids(program, quant, rng);
      runtime::validate(quant, program);
      runtime::ReferenceExecutor reference(program, weights, &quant);
      runtime::OnednnPlan plan(program, weights, runtime::Precision::kInt8, 1, &quant);
      const auto a = reference.run(image), b = plan.run(image);
      const bool logits = program.tensors[static_cast<size_t>(program.output)].is_logits;
      const float code = logits ? 1e-3f * (1.0f + std::fabs(*std::max_element(a.begin(), a.end())))
                                : quant.tensors[static_cast<size_t>(program.output)].scale;
      float diff = 0;
      for (size_t k = 0; k < a.size(); ++k) {
        diff = std::max(diff, std::fabs(a[k] - b[k]));
        beyond_one_code += std::fabs(a[k] - b[k]) > 1.01f * code;
        ++codes;
      }
      // Within a multi-step block a rounding tie that flips one code of an inner tensor (an SE product) can
      // reach two codes after the next conv; never more.
      EXPECT_LE(diff, 2.01f * code) << space_name << " " << block.stage << " block " << block.block_index
                                    << " " << block.type->name;
    }
  }
  EXPECT_LE(beyond_one_code * 1000, codes) << beyond_one_code << " of " << codes << " codes differ by 2";
  std::printf("codes differing by more than one: %lld of %lld\n", static_cast<long long>(beyond_one_code),
              static_cast<long long>(codes));
}

TEST(ZeroPoints, WholeNetworkAgreesAsWithoutZeroPoints) {
  Rng rng(7);
  const auto space = space::SearchSpace::parse("fmnistw-222222-000000");
  const space::ArchSpec spec = space::build_arch_spec(space, space::max_subnet(space), 20);
  const runtime::Program program = runtime::lower(spec);
  const runtime::Weights weights = runtime::random_weights(program, 3);
  std::vector<std::vector<float>> images(4, std::vector<float>(400));
  for (auto& image : images) {
    for (auto& x : image) x = static_cast<float>(rng.uniform() * 4.0 - 2.0);
  }
  runtime::QuantParams quant = runtime::calibrate(program, weights, images);
  move_onto_zero_point_grids(program, quant, rng);
  runtime::ReferenceExecutor reference(program, weights, &quant);
  runtime::OnednnPlan plan(program, weights, runtime::Precision::kInt8, 1, &quant);
  for (const auto& image : images) {
    const auto a = reference.run(image), b = plan.run(image);
    float range = 1e-6f, diff = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      range = std::max(range, std::fabs(a[k]));
      diff = std::max(diff, std::fabs(a[k] - b[k]));
    }
    // The bound test_engine_agreement uses without zero points: single-code flips through ~20 random blocks.
    EXPECT_LE(diff, 0.1f * range);
  }
}

// A tiny network trained a few QAT steps: lowered with BN folded and its learned scales and zero points, the
// engine's codes stay within one code of the fake-quant forward at every block output.
TEST(Deploy, QatNetworkOnTheEngineMatchesItsFakeQuantForward) {
  // OPEN (issue 13): trained with the fused fake-quant kernels, this network has one stage6 element 2 codes
  // apart between fake quant and the reference executor (the 1-code bound holds with the plain-op kernels,
  // on which it was calibrated). The fused forward equals the reference bit for bit
  // (test_fake_quant_ops), so the trajectory, not the contract, differs; until that is understood this
  // test trains on the reference kernels.
  quant::set_kernel(quant::Kernel::kReference);
  struct RestoreKernel {
    ~RestoreKernel() { quant::set_kernel(quant::Kernel::kFused); }
  } restore;
  torch::manual_seed(0);
  const auto space = space::SearchSpace::parse("fmnistw-222222-000000");
  nn::StaticNet net(space::build_arch_spec(space, space::min_subnet(space), 20));
  quant::set_bits(*net, 8);
  const data::ImageDataset images = train_test::synthetic(64, 3);
  std::vector<std::int64_t> all(64);
  for (int i = 0; i < 64; ++i) all[i] = i;
  const auto normalize = data::Normalize::fashion_mnist();
  const auto inputs = deploy::normalised_images(images, all, normalize);
  torch::Tensor batch = torch::empty({64, 1, 28, 28});
  for (int i = 0; i < 64; ++i)
    batch[i].copy_(torch::from_blob(const_cast<float*>(inputs[i].data()), {1, 28, 28}));
  torch::Tensor labels = torch::tensor(images.labels);
  net->train();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  for (int step = 0; step < 6; ++step) {
    sgd.zero_grad();
    torch::nn::functional::cross_entropy(net->forward(batch), labels).backward();
    sgd.step();
  }
  net->eval();
  // Offsets away from multiples of the scale, so zero points are non-trivial.
  int nonzero_zero_points = 0;
  for (auto& m : net->modules(false)) {
    if (auto* q = m->as<quant::LsqPlusActivationImpl>()) nonzero_zero_points += q->zero_point() != 0;
  }
  EXPECT_GT(nonzero_zero_points, 0);

  const deploy::DeployedModel m = deploy::lower_network(*net, {});
  EXPECT_EQ(m.quant_source, "lsq+ (trained)");
  // Reference INT8 at 20x20 on the images the network resizes to.
  const torch::Tensor resized = nn::resize_images(batch.narrow(0, 0, 8), 20).contiguous();
  torch::NoGradGuard no_grad;
  runtime::OnednnPlan plan(m.program, m.weights, runtime::Precision::kInt8, 1, &m.quant);
  runtime::ReferenceExecutor reference(m.program, m.weights, &m.quant);
  std::map<int, std::vector<float>> seen;
  reference.set_observer([&](int tensor, const std::vector<float>& v) { seen[tensor] = v; });
  int same_top1 = 0;
  for (int i = 0; i < 8; ++i) {
    const float* p = resized[i].data_ptr<float>();
    const std::vector<float> image(p, p + 400);
    const auto engine_logits = plan.run(image);
    seen.clear();
    reference.run(image);
    const torch::Tensor fq_logits = net->forward(batch.narrow(0, i, 1));
    // Block outputs: the fake-quant stage outputs against the reference's tensors, in codes.
    for (const std::string stage : {"first_conv", "stage1", "stage3", "stage6"}) {
      const torch::Tensor fq = net->stage_io(batch.narrow(0, i, 1), stage).second.flatten();
      int tensor = -1;
      for (const auto& s : m.program.steps) {
        if (m.spec.blocks[static_cast<size_t>(s.block)].stage == stage) tensor = s.output;
      }
      ASSERT_GE(tensor, 0) << stage;
      const TensorQuant& q = m.quant.tensors[static_cast<size_t>(tensor)];
      const auto& ref = seen.at(tensor);
      ASSERT_EQ(static_cast<int64_t>(ref.size()), fq.numel()) << stage;
      int worst = 0;
      for (size_t k = 0; k < ref.size(); ++k) {
        const int a = q.quantize(ref[k]), b = q.quantize(fq[static_cast<int64_t>(k)].item<float>());
        worst = std::max(worst, std::abs(a - b));
      }
      EXPECT_LE(worst, 1) << stage << " image " << i;
    }
    const auto fq = std::vector<float>(fq_logits.data_ptr<float>(), fq_logits.data_ptr<float>() + 10);
    same_top1 += std::max_element(fq.begin(), fq.end()) - fq.begin() ==
                 std::max_element(engine_logits.begin(), engine_logits.end()) - engine_logits.begin();
  }
  EXPECT_GE(same_top1, 7);
}

TEST(Deploy, Fp32NetworkIsCalibrated) {
  const auto space = space::SearchSpace::parse("fmnistw-000000-000000");
  nn::StaticNet net(space::build_arch_spec(space, space::min_subnet(space), 20));
  net->eval();
  EXPECT_THROW(deploy::lower_network(*net, {}), Error);
  const runtime::Program program = runtime::lower(net->spec());
  std::vector<std::vector<float>> images(2, std::vector<float>(400, 0.5f));
  const auto minmax = deploy::lower_network(*net, images);
  EXPECT_EQ(minmax.quant_source, "calibrated min-max");
  const auto pct = deploy::lower_network(*net, images, deploy::Calibration::kPercentile, 50.0);
  EXPECT_EQ(pct.quant_source, "calibrated percentile 50");
  // A median range never exceeds the maximum one.
  for (size_t t = 0; t < program.tensors.size(); ++t) {
    if (!program.tensors[t].is_logits) {
      EXPECT_LE(pct.quant.tensors[t].scale, minmax.quant.tensors[t].scale + 1e-9f);
    }
  }
}

// A network at 8 bits with every quantizer initialised (min-max on one batch) and BN statistics moved off
// their defaults, so BN folding has real factors.
nn::StaticNet initialised_int8_net() {
  torch::manual_seed(1);
  const auto space = space::SearchSpace::parse("fmnistw-000000-000000");
  nn::StaticNet net(space::build_arch_spec(space, space::min_subnet(space)));
  quant::set_bits(*net, 8);
  net->train();
  torch::NoGradGuard no_grad;
  for (auto& m : net->modules(false))
    if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) bn->weight.uniform_(-1.0, 1.5);  // some negative
  net->forward(torch::randn({8, 1, 28, 28}));
  net->eval();
  return net;
}

TEST(DeployMixedBits, AFourBitLayerDeploysAsTheIntegersItsFakeQuantUses) {
  nn::StaticNet net = initialised_int8_net();
  const auto ql = space::quant_layers(net->spec());
  auto bits = space::BitAssignment::uniform(net->spec(), 8, 8);
  const size_t four = ql.size() / 2;  // a middle conv: weights and input at 4 bits
  ASSERT_EQ(ql[four].part, space::QuantLayer::Part::kMain);
  bits.layers[four] = {4, 4};
  nn::apply_bits(*net, bits);
  auto h = nn::quant_layer_handles(*net);
  const deploy::DeployedModel m = deploy::lower_network(*net, {});
  EXPECT_NE(m.quant_source.find("mixed bits"), std::string::npos) << m.quant_source;
  // Each quantised layer's program step. Per block the program holds the projection first, then the main
  // path (runtime/program.cpp); quant_layers lists the projection last (this space has no SE layer).
  std::vector<size_t> step_of(ql.size());
  for (size_t b = 0; b < net->spec().blocks.size(); ++b) {
    std::vector<size_t> steps;
    for (size_t i = 0; i < m.program.steps.size(); ++i)
      if (m.program.steps[i].block == static_cast<int>(b) &&
          m.program.steps[i].layer.op != space::OpKind::kGlobalAvgPool)
        steps.push_back(i);
    size_t next = 0;
    for (size_t i = 0; i < ql.size(); ++i)
      if (ql[i].block == static_cast<int>(b) && ql[i].part == space::QuantLayer::Part::kProjection)
        step_of[i] = steps.at(next++);
    for (size_t i = 0; i < ql.size(); ++i)
      if (ql[i].block == static_cast<int>(b) && ql[i].part == space::QuantLayer::Part::kMain)
        step_of[i] = steps.at(next++);
    ASSERT_EQ(next, steps.size()) << "block " << b;
  }
  ASSERT_EQ(step_of.size(), ql.size());
  const runtime::StepQuant& q = m.quant.steps[step_of[four]];
  torch::NoGradGuard no_grad;
  const torch::Tensor wq = h[four].weight_quant->forward(h[four].weight);
  const torch::Tensor s = h[four].weight_quant->scale;
  const auto& layer =
      net->blocks()[static_cast<size_t>(ql[four].block)].layers[static_cast<size_t>(ql[four].layer)];
  ASSERT_TRUE(layer.bn);
  const int64_t out = wq.size(0), per = wq.numel() / out;
  int flipped = 0;
  for (int64_t c = 0; c < out; ++c) {
    const int sign = layer.bn->weight[c].item<float>() < 0 ? -1 : 1;  // BN's factor moved into the scale
    flipped += sign < 0;
    for (int64_t i = 0; i < per; ++i) {
      const float fq_code = wq[c].flatten()[i].item<float>() / s[c].item<float>();
      const int code = q.weight[static_cast<size_t>(c * per + i)];
      ASSERT_NEAR(fq_code, std::nearbyint(fq_code), 1e-3);
      EXPECT_EQ(code, sign * static_cast<int>(std::nearbyint(fq_code)))
          << "channel " << c << " element " << i;
      EXPECT_LE(std::abs(code), 7);
    }
  }
  EXPECT_GT(flipped, 0) << "some BN factor should be negative";
  // The 4-bit input: its own scale and zero point, so a value inside its range gets fake-quant's code.
  const TensorQuant& in = m.quant.tensors[static_cast<size_t>(m.program.steps[step_of[four]].input)];
  EXPECT_EQ(in.scale, h[four].input_quant->effective_scale());
  EXPECT_EQ(in.zero_point, h[four].input_quant->zero_point());
  EXPECT_LE(in.zero_point, 15);
#ifdef QNAS_HAVE_ONNX
  // The exported QDQ graph stores those very integers as the layer's INT8 weight initializer.
  {
    exporter::OnnxOptions options;
    options.precision = runtime::Precision::kInt8;
    onnx::ModelProto model;
    ASSERT_TRUE(model.ParseFromString(exporter::export_onnx(m.program, m.weights, &m.quant, options)));
    int found = 0;
    for (const auto& t : model.graph().initializer()) {
      if (t.data_type() != onnx::TensorProto::INT8 || t.raw_data().size() != q.weight.size()) continue;
      found += std::memcmp(t.raw_data().data(), q.weight.data(), q.weight.size()) == 0;
    }
    EXPECT_EQ(found, 1) << "the 4-bit layer's codes as one INT8 initializer";
  }
  // With int4_weights the same codes are stored as INT4 (two per byte, low nibble first) at opset 21; the
  // 8-bit layers stay INT8.
  {
    exporter::OnnxOptions options;
    options.precision = runtime::Precision::kInt8;
    options.int4_weights = true;
    onnx::ModelProto model;
    ASSERT_TRUE(model.ParseFromString(exporter::export_onnx(m.program, m.weights, &m.quant, options)));
    EXPECT_EQ(model.opset_import(0).version(), 21);
    int int4 = 0, same = 0;
    for (const auto& t : model.graph().initializer()) {
      if (t.data_type() != 22) continue;  // INT4
      ++int4;
      if (t.raw_data().size() != (q.weight.size() + 1) / 2) continue;
      bool equal = true;
      for (size_t i = 0; i < q.weight.size(); ++i) {
        const int nibble = (static_cast<unsigned char>(t.raw_data()[i / 2]) >> (i % 2 ? 4 : 0)) & 0x0F;
        equal = equal && (nibble >= 8 ? nibble - 16 : nibble) == q.weight[i];
      }
      same += equal;
    }
    EXPECT_EQ(int4, 2) << "the 4-bit layer's weights and their zero points";
    EXPECT_EQ(same, 1);
    options.precision = runtime::Precision::kFp32;
    EXPECT_NE(qnas::testing::error_message([&] {
                exporter::export_onnx(m.program, m.weights, &m.quant, options);
              }).find("INT4 weights need an INT8 export"),
              std::string::npos);
  }
#endif
  // An 8-bit layer beside it is unchanged: codes up to 127.
  int widest = 0;
  for (auto c : m.quant.steps[step_of[four + 1]].weight)
    widest = std::max(widest, std::abs(static_cast<int>(c)));
  EXPECT_GT(widest, 7);
}

#ifdef QNAS_HAVE_ONNX
// ONNX Runtime runs the INT4-weight export (opset 21) and computes what the INT8 export of the same codes
// computes (three middle layers with 4-bit weights; the rest 8 bits).
TEST(DeployMixedBits, OnnxRuntimeRunsTheInt4WeightExportLikeTheInt8One) {
  const std::string harness = exporter::default_ort_harness();
  if (!std::filesystem::exists(std::filesystem::path(harness).parent_path() / "node_modules" /
                               "onnxruntime-node"))
    GTEST_SKIP() << "onnxruntime-node is not installed (scripts/setup.sh installs it)";
  nn::StaticNet net = initialised_int8_net();
  auto bits = space::BitAssignment::uniform(net->spec(), 8, 8);
  const auto ql = space::quant_layers(net->spec());
  for (size_t i = ql.size() / 2; i < ql.size() / 2 + 3; ++i) bits.layers[i] = {4, 8};  // three middle layers
  nn::apply_bits(*net, bits);
  const deploy::DeployedModel m = deploy::lower_network(*net, {});
  train_test::TempDir dir("deploy-int4-ort");
  std::filesystem::create_directories(dir.path);
  const auto in = m.program.tensors[static_cast<size_t>(m.program.input)];
  const std::string images = (dir.path / "images.f32").string();
  {
    torch::manual_seed(3);
    const torch::Tensor x = torch::randn({4, in.channels * in.hw * in.hw}).contiguous();
    std::ofstream out(images, std::ios::binary);
    out.write(reinterpret_cast<const char*>(x.data_ptr<float>()),
              static_cast<std::streamsize>(x.numel() * 4));
  }
  std::vector<std::vector<std::vector<float>>> logits;
  for (const bool int4 : {false, true}) {
    exporter::OnnxOptions options;
    options.precision = runtime::Precision::kInt8;
    options.int4_weights = int4;
    const std::string model = (dir.path / (int4 ? "int4.onnx" : "int8.onnx")).string();
    exporter::write_onnx(model, m.program, m.weights, &m.quant, options);
    const auto result = exporter::run_ort_harness(harness, model, images, m.program, 1, 50);
    logits.emplace_back();
    for (const auto& o : result.at("outputs")) logits.back().push_back(o.get<std::vector<float>>());
  }
  ASSERT_EQ(logits[0].size(), 4u);
  ASSERT_EQ(logits[1].size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const auto& a = logits[0][i];
    const auto& b = logits[1][i];
    float range = 0, worst = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      range = std::max(range, std::fabs(a[k]));
      worst = std::max(worst, std::fabs(a[k] - b[k]));
    }
    EXPECT_LE(worst, 0.02f * range) << "image " << i;  // measured: 0, the logits are the same
  }
  // The images are told apart (the comparison is not of a constant output), and INT4 storage is smaller.
  EXPECT_NE(logits[0][0], logits[0][1]);
  EXPECT_LT(std::filesystem::file_size(dir.path / "int4.onnx"),
            std::filesystem::file_size(dir.path / "int8.onnx"));
}
#endif

TEST(DeployMixedBits, ARunTrainedInMixedBitsLoadsInThemAndBitsFromChecksWhatItGets) {
  train_test::TempDir dir("deploy-mixed-run");
  const auto space = space::SearchSpace::parse("fmnistw-000000-000000");
  torch::manual_seed(2);
  auto net = std::make_shared<nn::StaticNetImpl>(space::build_arch_spec(space, space::min_subnet(space)));
  auto bits = space::BitAssignment::uniform(net->spec(), 4, 4);
  const auto ql = space::quant_layers(net->spec());
  for (size_t i = 0; i < ql.size(); ++i)
    if (ql[i].first || ql[i].classifier) bits.layers[i] = {8, 8};
  train::TrainConfig c;
  c.epochs = 0;
  c.qat_epochs = 1;
  c.batch_size = 16;
  c.eval_random_subnets = 0;
  c.random_subnets = 0;
  const data::ImageDataset images = train_test::synthetic(32, 4);
  train::Trainer trainer(c, net, images, images, dir.path / "run");
  trainer.set_bits_policy([&](int phase) {
    quant::set_bits(*net, 8);
    if (phase != quant::kFloatBits) nn::apply_bits(*net, bits, nn::Scales::kAsTrained);
  });
  trainer.set_bit_assignment(bits.to_json(net->spec()));
  trainer.run();
  const auto trained = nn::quant_layer_handles(*net);

  deploy::TrainedRun run = deploy::load_run(dir.path / "run");
  ASSERT_TRUE(run.assignment.has_value());
  EXPECT_EQ(run.assignment->layers, bits.layers);
  const auto loaded = nn::quant_layer_handles(*run.net);
  for (size_t i = 0; i < ql.size(); ++i) {
    EXPECT_EQ(loaded[i].weight_quant->bits(), bits.layers[i].weight) << ql[i].name;
    // Loaded as trained: the scales are the 4-bit ones, not stretched again.
    EXPECT_TRUE(torch::equal(loaded[i].weight_quant->scale, trained[i].weight_quant->scale)) << ql[i].name;
  }
  // The loaded network computes what the trained one computes.
  {
    torch::NoGradGuard no_grad;
    net->eval();
    run.net->eval();
    const torch::Tensor x = torch::randn({4, 1, 28, 28});
    const torch::Tensor a = net->forward(x), b = run.net->forward(x);
    EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6)) << (a - b).abs().max().item<float>();
  }
  // --bits-from on top of a run that has its own bits, or on an FP32 run, is one clear error.
  try {
    deploy::apply_bits_from(run, *run.net, dir.path / "missing.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already has its own per-layer bits"), std::string::npos)
        << e.what();
  }
  run.assignment.reset();
  try {
    deploy::apply_bits_from(run, *run.net, dir.path / "missing.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
  run.bits = 32;
  EXPECT_THROW(deploy::apply_bits_from(run, *run.net, dir.path / "missing.json"), Error);
}

// A supernet trained with BatchQuant activations reopens with them (its checkpoint holds their parameters)
// and deploys as the LSQ+ network of the ranges calibrated with BN, which computes what the supernet computes
// and which the INT8 lowering takes like any trained network.
TEST(Deploy, ABatchQuantSupernetRunDeploysAsItsCalibratedRanges) {
  train_test::TempDir dir("deploy-batchquant");
  const auto space = space::SearchSpace::parse("fmnistw-000000-000000");
  torch::manual_seed(4);
  train::TrainConfig c;
  c.epochs = 0;
  c.qat_epochs = 1;
  c.batch_size = 16;
  c.bn_batches = 2;
  c.eval_random_subnets = 0;
  c.random_subnets = 0;
  c.activation_quantizer = "batchquant";
  const data::ImageDataset images = train_test::synthetic(32, 5);
  train::Trainer(c, std::make_shared<nn::SupernetImpl>(space), images, images, dir.path / "run").run();

  deploy::TrainedRun run = deploy::load_run(dir.path / "run");
  ASSERT_TRUE(run.is_supernet());
  EXPECT_TRUE(run.supernet->named_parameters().contains("input_aq.batch_range.multiplier_logit"));
  nn::StaticNet deployed = deploy::network_to_deploy(run, space::min_subnet(space).encode(), images,
                                                     data::Normalize::fashion_mnist(), {});
  int activation_quantizers = 0;
  for (const auto& m : deployed->modules(false)) {
    if (const auto* q = m->as<quant::LsqPlusActivationImpl>()) {
      EXPECT_FALSE(q->uses_batch_range());
      EXPECT_TRUE(q->initialized());
      ++activation_quantizers;
    }
  }
  EXPECT_GT(activation_quantizers, 0);
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor x = torch::randn({4, 1, 28, 28});
    const torch::Tensor a = deployed->forward(x), b = run.supernet->forward(x);
    EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-5)) << (a - b).abs().max().item<float>();
  }
  const deploy::DeployedModel m = deploy::lower_network(*deployed, {});
  EXPECT_EQ(m.quant_source, "lsq+ (trained)");
  for (const TensorQuant& q : m.quant.tensors) {
    EXPECT_GE(q.zero_point, 0);
    EXPECT_LE(q.zero_point, 255);
  }
}

TEST(Deploy, BadRunDirectoriesGetOneClearError) {
  train_test::TempDir dir("deploy-bad-run");
  auto message = [](const std::filesystem::path& p) {
    try {
      deploy::load_run(p);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(dir.path / "missing").find("does not exist"), std::string::npos);
  std::filesystem::create_directories(dir.path);
  EXPECT_NE(message(dir.path).find("no checkpoint.pt"), std::string::npos);
  std::ofstream(dir.path / "checkpoint.pt") << "not a checkpoint";
  EXPECT_NE(message(dir.path).find("unreadable"), std::string::npos);
}

}  // namespace
}  // namespace qnas
