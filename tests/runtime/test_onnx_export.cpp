// The ONNX exporter: FP32 and INT8 QDQ models pass the checker and contain what the runtime computes
// (same ops, same quantised weights). Running them is ONNX Runtime's job (qnas profile ort).
#include <unistd.h>
#include <cstring>
#include <filesystem>
#include <map>

#include <onnx/onnx_pb.h>

#include <gtest/gtest.h>

#include "export/onnx_export.h"
#include "runtime/quant.h"
#include "runtime_fixture.h"
#include "test_util.h"

using namespace qnas;

namespace {

std::map<std::string, int> op_counts(const std::string& bytes) {
  onnx::ModelProto model;
  EXPECT_TRUE(model.ParseFromString(bytes));
  std::map<std::string, int> counts;
  for (const auto& node : model.graph().node()) counts[node.op_type()]++;
  return counts;
}

struct Net {
  runtime::Program program;
  runtime::Weights weights;
  runtime::QuantParams quant;
};

Net make_net(const std::string& space, int resolution) {
  Net n;
  n.program = runtime::lower(qnas::testing::random_arch(space, 4, resolution));
  n.weights = runtime::random_weights(n.program, 4);
  n.quant = runtime::calibrate(n.program, n.weights, qnas::testing::random_images(n.program, 1, 4));
  return n;
}

TEST(OnnxExport, Fp32GraphHasOneNodePerLayer) {
  const Net n = make_net("onnxw-151122-023231", 32);
  exporter::OnnxOptions options;
  const std::string bytes = exporter::export_onnx(n.program, n.weights, nullptr, options);
  const auto ops = op_counts(bytes);
  int convs = 0, se = 0;
  for (const auto& s : n.program.steps) {
    convs += s.layer.op == runtime::OpKind::kConv || s.layer.op == runtime::OpKind::kDepthwiseConv;
    se += s.layer.op == runtime::OpKind::kSqueezeExcite;
  }
  EXPECT_EQ(ops.at("Conv"), convs + 2 * se);
  EXPECT_EQ(ops.at("Gemm"), 1);
  EXPECT_EQ(ops.count("QuantizeLinear"), 0u);
}

TEST(OnnxExport, Int8QdqQuantisesEveryConvInput) {
  const Net n = make_net("mobilew-122222-155400", 32);
  exporter::OnnxOptions options;
  options.precision = runtime::Precision::kInt8;
  const std::string bytes = exporter::export_onnx(n.program, n.weights, &n.quant, options);
  const auto ops = op_counts(bytes);
  // One DequantizeLinear per conv weight and bias, one Q/DQ pair per quantised tensor at least.
  EXPECT_GE(ops.at("DequantizeLinear"), 2 * ops.at("Conv"));
  EXPECT_GE(ops.at("QuantizeLinear"), static_cast<int>(n.program.steps.size()) - 1);
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(bytes));
  // The first conv weight initializer holds exactly the runtime's s8 codes.
  for (const auto& t : model.graph().initializer()) {
    if (t.data_type() != onnx::TensorProto::INT8 || t.dims_size() != 4) continue;
    const auto& codes = n.quant.steps[0].weight;
    ASSERT_EQ(t.raw_data().size(), codes.size());
    EXPECT_EQ(0, std::memcmp(t.raw_data().data(), codes.data(), codes.size()));
    break;
  }
}

// A u8 tensor with zero point z goes out as u8 zero point z; an s8 tensor with zero point z as u8 z + 128.
TEST(OnnxExport, ZeroPointsReachTheQdqNodes) {
  Net n = make_net("fmnistw-151122-000000", 20);
  for (size_t t = 0; t < n.quant.tensors.size(); ++t) {
    n.quant.tensors[t].zero_point = n.quant.tensors[t].is_unsigned ? 17 : -3;
  }
  exporter::OnnxOptions options;
  options.precision = runtime::Precision::kInt8;
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(exporter::export_onnx(n.program, n.weights, &n.quant, options)));
  std::map<std::string, int> zero_points;  // initializer name -> value
  for (const auto& t : model.graph().initializer()) {
    if (t.data_type() == onnx::TensorProto::UINT8 && t.dims_size() == 0) {
      zero_points[t.name()] = static_cast<unsigned char>(t.raw_data()[0]);
    }
  }
  // The image's Q node carries the input tensor's parameters.
  const auto& first = model.graph().node(0);
  ASSERT_EQ(first.op_type(), "QuantizeLinear");
  const int expected = n.quant.tensors[0].zero_point + (n.quant.tensors[0].is_unsigned ? 0 : 128);
  EXPECT_EQ(zero_points.at(first.input(2)), expected);
  int seen_17 = 0;
  for (const auto& [name, value] : zero_points) seen_17 += value == 17;
  EXPECT_GT(seen_17, 0);
}

TEST(OnnxExport, MetadataRoundTrips) {
  const Net n = make_net("fmnistw-151122-000000", 20);
  exporter::OnnxOptions options;
  options.precision = runtime::Precision::kInt8;
  options.metadata = {{"qnas.space", "fmnistw-151122-000000"},
                      {"input_shape", "1,1,20,20"},
                      {"class_names", "[\"T-shirt/top\",\"Trouser\"]"}};
  const auto path =
      std::filesystem::temp_directory_path() / ("qnas-meta-" + std::to_string(::getpid()) + ".onnx");
  exporter::write_onnx(path.string(), n.program, n.weights, &n.quant, options);
  EXPECT_EQ(exporter::read_onnx_metadata(path.string()), options.metadata);
  std::filesystem::remove(path);
  EXPECT_CONTAINS(qnas::testing::error_message([&] { exporter::read_onnx_metadata(path.string()); }),
                  "does not exist");
}

TEST(OnnxExport, BadInputIsRefused) {
  const Net n = make_net("fmnistw-151122-000000", 20);
  exporter::OnnxOptions options;
  options.precision = runtime::Precision::kInt8;
  EXPECT_CONTAINS(
      qnas::testing::error_message([&] { exporter::export_onnx(n.program, n.weights, nullptr, options); }),
      "needs quantisation parameters");
  EXPECT_CONTAINS(qnas::testing::error_message([] { exporter::check_onnx("not a model", "model.onnx"); }),
                  "model.onnx");
}

}  // namespace
