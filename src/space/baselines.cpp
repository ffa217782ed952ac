#include "space/baselines.h"

#include <fmt/ranges.h>

#include "core/error.h"
#include "space/published.h"

namespace qnas::space {
namespace {

// Only the names matter: the layers below are written out by hand rather than expanded from a kind.
const BlockType kStem{"Stem", BlockKind::kFirstConv, {3}, {}, Activation::kHswish};
const BlockType kInvertedResidual{"InvertedResidual", BlockKind::kMobileNetV2, {3}, {6}, Activation::kRelu6};
const BlockType kHead{"Head", BlockKind::kFinalExpand, {1}, {}, Activation::kHswish};
const BlockType kClassifier{"Classifier", BlockKind::kLogits, {1}, {}, Activation::kNone};

// One bottleneck row of the MobileNetV2/V3 tables.
struct Bneck {
  int kernel;
  int hidden;
  int out;
  bool se;
  Activation act;
  int stride;
};

class Builder {
 public:
  Builder(const std::string& name, int resolution, int num_classes) {
    spec_.space = name;
    spec_.subnet = name;
    spec_.resolution = resolution;
    spec_.in_channels = 3;
    spec_.num_classes = num_classes;
    hw_ = resolution;
    channels_ = 3;
  }

  void stem(int out, Activation act) {
    BlockSpec& b = open("first_conv", kStem, out, 3, 2);
    b.layers.push_back(make_conv(channels_, out, 3, 2, hw_, act));
    close(b);
  }

  void bneck(const Bneck& row) {
    BlockSpec& b = open("stage", kInvertedResidual, row.out, row.kernel, row.stride);
    b.expand = static_cast<double>(row.hidden) / channels_;
    if (row.hidden != channels_) b.layers.push_back(make_conv(channels_, row.hidden, 1, 1, hw_, row.act));
    b.layers.push_back(make_depthwise(row.hidden, row.kernel, row.stride, hw_, row.act));
    const int out_hw = b.layers.back().out_hw;
    if (row.se) b.layers.push_back(make_squeeze_excite(row.hidden, make_divisible(row.hidden / 4.0), out_hw));
    b.layers.push_back(make_conv(row.hidden, row.out, 1, 1, out_hw, Activation::kNone));
    if (row.stride == 1 && channels_ == row.out) b.shortcut = Shortcut::kIdentity;
    close(b);
  }

  // Last 1x1 conv at full resolution (optionally with SE, as in V3-Small), pool, optional 1x1 "feature mix"
  // conv, and the classifier.
  ArchSpec head(int expand, int mix, Activation act, bool se = false) {
    BlockSpec& e = open("final_expand", kHead, expand, 1, 1);
    e.layers.push_back(make_conv(channels_, expand, 1, 1, hw_, act));
    if (se) e.layers.push_back(make_squeeze_excite(expand, make_divisible(expand / 4.0), hw_));
    close(e);
    BlockSpec& m = open("feature_mix", kHead, mix > 0 ? mix : expand, 1, 1);
    m.layers.push_back(make_global_pool(channels_, hw_));
    if (mix > 0) m.layers.push_back(make_conv(channels_, mix, 1, 1, 1, act));
    close(m);
    BlockSpec& l = open("logits", kClassifier, spec_.num_classes, 1, 1);
    l.layers.push_back(make_linear(channels_, spec_.num_classes));
    close(l);
    return std::move(spec_);
  }

 private:
  BlockSpec& open(const std::string& stage, const BlockType& type, int cout, int kernel, int stride) {
    BlockSpec b;
    b.stage = stage == "stage" ? "stage" + std::to_string(stage_index_) : stage;
    b.stage_index = stage_index_++;
    b.type = &type;
    b.cin = channels_;
    b.cout = cout;
    b.kernel = kernel;
    b.stride = stride;
    b.in_hw = hw_;
    spec_.blocks.push_back(std::move(b));
    return spec_.blocks.back();
  }
  void close(BlockSpec& b) {
    b.out_hw = b.layers.back().out_hw;
    channels_ = b.layers.back().op == OpKind::kGlobalAvgPool ? b.cin : b.layers.back().cout;
    b.cout = channels_;
    hw_ = b.out_hw;
  }

  ArchSpec spec_;
  int hw_ = 0;
  int channels_ = 0;
  int stage_index_ = 0;
};

constexpr Activation RE = Activation::kRelu;
constexpr Activation HS = Activation::kHswish;
constexpr Activation R6 = Activation::kRelu6;

}  // namespace

ArchSpec mobilenet_v2(int resolution, int num_classes) {
  Builder net("mobilenet_v2", resolution, num_classes);
  net.stem(32, R6);
  // (expand t, out c, repeats n, first stride s) from the MobileNetV2 paper, Table 2.
  const int rows[][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                         {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  int channels = 32;
  for (const auto& row : rows) {
    for (int i = 0; i < row[2]; ++i) {
      net.bneck({3, channels * row[0], row[1], false, R6, i == 0 ? row[3] : 1});
      channels = row[1];
    }
  }
  return net.head(1280, 0, R6);
}

ArchSpec mobilenet_v3_large(int resolution, int num_classes) {
  Builder net("mobilenet_v3_large", resolution, num_classes);
  net.stem(16, HS);
  // MobileNetV3 paper, Table 1.
  const Bneck rows[] = {{3, 16, 16, false, RE, 1},  {3, 64, 24, false, RE, 2},  {3, 72, 24, false, RE, 1},
                        {5, 72, 40, true, RE, 2},   {5, 120, 40, true, RE, 1},  {5, 120, 40, true, RE, 1},
                        {3, 240, 80, false, HS, 2}, {3, 200, 80, false, HS, 1}, {3, 184, 80, false, HS, 1},
                        {3, 184, 80, false, HS, 1}, {3, 480, 112, true, HS, 1}, {3, 672, 112, true, HS, 1},
                        {5, 672, 160, true, HS, 2}, {5, 960, 160, true, HS, 1}, {5, 960, 160, true, HS, 1}};
  for (const auto& row : rows) net.bneck(row);
  return net.head(960, 1280, HS);
}

ArchSpec mobilenet_v3_small(int resolution, int num_classes) {
  Builder net("mobilenet_v3_small", resolution, num_classes);
  net.stem(16, HS);
  // MobileNetV3 paper, Table 2.
  const Bneck rows[] = {{3, 16, 16, true, RE, 2},  {3, 72, 24, false, RE, 2}, {3, 88, 24, false, RE, 1},
                        {5, 96, 40, true, HS, 2},  {5, 240, 40, true, HS, 1}, {5, 240, 40, true, HS, 1},
                        {5, 120, 48, true, HS, 1}, {5, 144, 48, true, HS, 1}, {5, 288, 96, true, HS, 2},
                        {5, 576, 96, true, HS, 1}, {5, 576, 96, true, HS, 1}};
  for (const auto& row : rows) net.bneck(row);
  return net.head(576, 1024, HS, /*se=*/true);
}

std::vector<std::string> baseline_names() {
  return {"mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"};
}

ArchSpec find_baseline(const std::string& name, int resolution) {
  if (name == "mobilenet_v2") return mobilenet_v2(resolution);
  if (name == "mobilenet_v3_large") return mobilenet_v3_large(resolution);
  if (name == "mobilenet_v3_small") return mobilenet_v3_small(resolution);
  fail("unknown baseline '{}': choose one of mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small", name);
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& s : published_subnets()) names.push_back(s.name);
  for (const auto& b : baseline_names()) names.push_back(b);
  return names;
}

ArchSpec find_model(const std::string& name, int resolution) {
  for (const auto& b : baseline_names()) {
    if (b == name) return find_baseline(b, resolution > 0 ? resolution : 224);
  }
  for (const auto& s : published_subnets()) {
    if (s.name != name) continue;
    return build_arch_spec(SearchSpace::parse(find_published_space(s.space_name).encoding),
                           Subnet::parse(s.encoding), resolution);
  }
  fail("unknown model '{}': choose one of {}", name, fmt::join(model_names(), " "));
}

}  // namespace qnas::space
