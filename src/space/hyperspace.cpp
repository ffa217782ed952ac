#include "space/hyperspace.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "space/arch_spec.h"

namespace qnas::space {
namespace {

std::vector<int> range_inclusive(int lo, int hi, int step) {
  std::vector<int> values;
  for (int v = lo; v <= hi; v += step) values.push_back(v);
  return values;
}

StageDef stage(std::string name, std::vector<int> widths, std::vector<int> depths, int stride,
               int window_size = 0) {
  StageDef def;
  def.name = std::move(name);
  def.window_size = window_size > 0 ? window_size : static_cast<int>(widths.size());
  def.widths = std::move(widths);
  def.depths = std::move(depths);
  def.stride = stride;
  return def;
}

const std::vector<int> kResolutions224 = {160, 176, 192, 208, 224};
const std::vector<int> kBlockKdResolutions224 = {160, 192, 224};

BlockType conv_block(std::string name, BlockKind kind, std::vector<int> kernels, Activation act) {
  return BlockType{std::move(name), kind, std::move(kernels), {}, act};
}

// Heads shared by onnxw and mobilew: final_expand 1280, feature_mix 1920, logits 1000.
void add_imagenet_heads(Hyperspace& hs, Activation head_act) {
  hs.stages.push_back(stage("final_expand", {1280}, {1}, 1));
  hs.stages.push_back(stage("feature_mix", {1920}, {1}, 1));
  hs.stages.push_back(stage("logits", {1000}, {1}, 1));
  hs.fixed_block_stages.insert(hs.fixed_block_stages.end(), {"final_expand", "feature_mix", "logits"});
  hs.fixed_blocks.push_back(conv_block("FinalExpandBlock", BlockKind::kFinalExpand, {1}, head_act));
  hs.fixed_blocks.push_back(conv_block("FeatureMixBlock", BlockKind::kFeatureMix, {1}, head_act));
  hs.fixed_blocks.push_back(conv_block("LogitsBlock", BlockKind::kLogits, {0}, Activation::kNone));
}

// The onnxw block candidates (official OnnxSuperSpaceW), shared with fmnistw.
std::vector<BlockType> onnxw_candidates() {
  return {
      {"MobileNetV1DualBlock", BlockKind::kMobileNetV1Dual, {3, 5}, {}, Activation::kRelu},
      {"MobileNetV2ResBlock", BlockKind::kMobileNetV2Res, {3, 5}, {4, 6, 8}, Activation::kRelu6},
      {"MobileNetV3ResBlock", BlockKind::kMobileNetV3Res, {3, 5}, {4, 6, 8}, Activation::kHswish},
      {"ResNetBlock", BlockKind::kResNet, {3, 5, 7}, {0.5, 1.0, 1.5}, Activation::kRelu},
      {"ResNetSEBlock", BlockKind::kResNetSE, {3, 5, 7}, {0.5, 1.0, 1.5}, Activation::kRelu},
      {"FusedMBConvResBlock", BlockKind::kFusedMBConvRes, {3, 5, 7}, {1, 2, 3, 4}, Activation::kSwish},
  };
}

// Official OnnxSuperSpaceW + OnnxMacroArchW (SpaceEvo/modules/search_space).
Hyperspace make_onnxw() {
  Hyperspace hs;
  hs.name = "onnxw";
  hs.description = "SpaceEvo hyperspace for ONNX Runtime on Intel VNNI CPUs (official OnnxSuperSpaceW)";
  hs.resolutions = kResolutions224;
  hs.block_kd_resolutions = kBlockKdResolutions224;
  hs.stages = {
      stage("first_conv", range_inclusive(16, 32, 16), {1}, 2),
      stage("stage0", range_inclusive(16, 32, 16), {1, 2}, 1),
      stage("stage1", range_inclusive(32, 64, 16), {2, 3, 4}, 2, 2),
      stage("stage2", range_inclusive(32, 96, 16), {2, 3, 4}, 2, 2),
      stage("stage3", range_inclusive(64, 144, 16), {2, 3, 4, 5, 6}, 2, 3),
      stage("stage4", range_inclusive(112, 192, 16), {2, 3, 4, 5, 6}, 1, 3),
      stage("stage5", range_inclusive(192, 304, 16), {2, 3, 4, 5, 6}, 2, 5),
      stage("stage6", range_inclusive(304, 448, 16), {1, 2}, 1, 7),
  };
  hs.candidates = onnxw_candidates();
  hs.fixed_block_stages = {"first_conv", "stage0"};
  hs.fixed_blocks = {conv_block("FirstConvBlock", BlockKind::kFirstConv, {3}, Activation::kRelu),
                     {"ResNetBlock", BlockKind::kResNet, {3}, {0.5}, Activation::kRelu}};
  add_imagenet_heads(hs, Activation::kHswish);
  return hs;
}

// Official MobileSuperSpaceW + MobileMacroArchW (width step 8, seven block types incl. the K3 variants).
Hyperspace make_mobilew() {
  Hyperspace hs;
  hs.name = "mobilew";
  hs.description = "SpaceEvo hyperspace for TFLite on mobile CPUs (official MobileSuperSpaceW)";
  hs.resolutions = kResolutions224;
  hs.block_kd_resolutions = kBlockKdResolutions224;
  hs.stages = {
      stage("first_conv", range_inclusive(16, 32, 8), {1}, 2),
      stage("stage0", range_inclusive(16, 32, 8), {1, 2}, 1),
      stage("stage1", range_inclusive(24, 40, 8), {2, 3, 4}, 2, 2),
      stage("stage2", range_inclusive(24, 72, 8), {2, 3, 4}, 2, 2),
      stage("stage3", range_inclusive(56, 112, 8), {2, 3, 4, 5, 6}, 2, 3),
      stage("stage4", range_inclusive(112, 176, 8), {2, 3, 4, 5, 6, 7, 8}, 1, 3),
      stage("stage5", {192, 200, 208, 216, 224, 240, 256, 272, 288}, {2, 3, 4, 5, 6, 7, 8}, 2, 5),
      stage("stage6", range_inclusive(216, 360, 16), {1, 2}, 1, 7),
  };
  hs.candidates = {
      {"MobileNetV1DualBlock", BlockKind::kMobileNetV1Dual, {3, 5, 7}, {}, Activation::kRelu},
      {"MobileNetV2ResBlock", BlockKind::kMobileNetV2Res, {3, 5, 7}, {3, 6, 8}, Activation::kRelu6},
      {"MobileNetV3ResBlock", BlockKind::kMobileNetV3Res, {3, 5, 7}, {3, 6, 8}, Activation::kSwish},
      {"ResNetBlock", BlockKind::kResNet, {3, 5}, {0.5, 1.0, 1.5}, Activation::kRelu},
      {"FusedMBConvSEResBlock", BlockKind::kFusedMBConvSERes, {3, 5, 7}, {1, 2, 3, 4}, Activation::kSwish},
      {"MobileNetV3K3ResBlock", BlockKind::kMobileNetV3K3Res, {3, 5, 7}, {3, 6, 8}, Activation::kSwish},
      {"MobileNetV2K3ResBlock", BlockKind::kMobileNetV2K3Res, {3, 5, 7}, {3, 6, 8}, Activation::kRelu6},
  };
  hs.fixed_block_stages = {"first_conv", "stage0"};
  hs.fixed_blocks = {conv_block("FirstConvBlock", BlockKind::kFirstConv, {3}, Activation::kRelu),
                     {"MobileNetV2Block", BlockKind::kMobileNetV2, {3}, {1}, Activation::kRelu}};
  add_imagenet_heads(hs, Activation::kSwish);
  return hs;
}

// fmnistw: onnxw scaled to 28x28 grey images and 10 classes. Why these numbers:
// - first_conv keeps stride 1: a stride-2 stem would leave 14x14 after one layer and 2x2 before the heads.
//   Three stride-2 stages (stage1, stage3, stage5) take 28 -> 14 -> 7 -> 4, the same "halve, then refine"
//   rhythm as onnxw's 112 -> 56 -> 28 -> 14 -> 7 after the stem.
// - widths step 8 (the INT8 kernels' natural channel block) and about a quarter of onnxw's, since the task
// has
//   10 classes and 784 pixels; windows keep onnxw's sizes (2, 2, 3, 3, 5, 7) so the space search has the same
//   shape of choice; depths stop at 4 so a max subnet still trains in minutes on a CPU.
// - resolutions 20/24/28 keep elastic resolution meaningful (the block KD runs at full 28x28).
// - the six onnxw block types with their kernels and expands, so LUTs and findings carry over.
Hyperspace make_fmnistw() {
  Hyperspace hs;
  hs.name = "fmnistw";
  hs.description = "qnas Fashion-MNIST hyperspace: onnxw's block types at 28x28x1, 10 classes";
  hs.in_channels = 1;
  hs.num_classes = 10;
  hs.resolutions = {20, 24, 28};
  hs.block_kd_resolutions = {28};
  hs.stages = {
      stage("first_conv", range_inclusive(16, 24, 8), {1}, 1),
      stage("stage0", range_inclusive(16, 24, 8), {1, 2}, 1),
      stage("stage1", range_inclusive(24, 48, 8), {1, 2, 3}, 2, 2),
      stage("stage2", range_inclusive(32, 64, 8), {1, 2, 3}, 1, 2),
      stage("stage3", range_inclusive(48, 96, 8), {2, 3, 4}, 2, 3),
      stage("stage4", range_inclusive(64, 112, 8), {2, 3, 4}, 1, 3),
      stage("stage5", range_inclusive(96, 160, 8), {2, 3, 4}, 2, 5),
      stage("stage6", range_inclusive(128, 192, 8), {1, 2}, 1, 7),
      stage("final_expand", {384}, {1}, 1),
      stage("feature_mix", {512}, {1}, 1),
      stage("logits", {10}, {1}, 1),
  };
  hs.candidates = onnxw_candidates();
  hs.fixed_block_stages = {"first_conv", "stage0", "final_expand", "feature_mix", "logits"};
  hs.fixed_blocks = {conv_block("FirstConvBlock", BlockKind::kFirstConv, {3}, Activation::kRelu),
                     {"ResNetBlock", BlockKind::kResNet, {3}, {0.5}, Activation::kRelu},
                     conv_block("FinalExpandBlock", BlockKind::kFinalExpand, {1}, Activation::kHswish),
                     conv_block("FeatureMixBlock", BlockKind::kFeatureMix, {1}, Activation::kHswish),
                     conv_block("LogitsBlock", BlockKind::kLogits, {0}, Activation::kNone)};
  return hs;
}

// cifarw: fmnistw for 32x32 colour images (CIFAR-10, small image folders). Same stages, widths, depths and
// block types, so spaces, LUT findings and budgets carry over; only the input (3 channels), the resolutions
// (24/28/32) and the block-KD resolution (32) change. Three stride-2 stages take 32 -> 16 -> 8 -> 4.
Hyperspace make_cifarw() {
  Hyperspace hs = make_fmnistw();
  hs.name = "cifarw";
  hs.description = "qnas CIFAR-10 hyperspace: fmnistw at 32x32x3, 10 classes";
  hs.in_channels = 3;
  hs.resolutions = {24, 28, 32};
  hs.block_kd_resolutions = {32};
  return hs;
}

const std::vector<Hyperspace>& builtins() {
  static const std::vector<Hyperspace> all = {make_onnxw(), make_mobilew(), make_fmnistw(), make_cifarw()};
  return all;
}

}  // namespace

std::vector<int> StageDef::window(int choice) const {
  if (choice < 0 || choice >= num_windows()) {
    fail("stage {}: width window {} out of range (0..{})", name, choice, num_windows() - 1);
  }
  return std::vector<int>(widths.begin() + choice, widths.begin() + choice + window_size);
}

int Hyperspace::num_subnet_stages() const {
  return static_cast<int>(stages.size()) - 3;
}

int Hyperspace::num_choosable_stages() const {
  return static_cast<int>(stages.size() - fixed_block_stages.size());
}

bool Hyperspace::is_choosable(int stage_index) const {
  const auto& stage_name = stages.at(stage_index).name;
  return std::find(fixed_block_stages.begin(), fixed_block_stages.end(), stage_name) ==
         fixed_block_stages.end();
}

int Hyperspace::choosable_stage_index(int i) const {
  int seen = 0;
  for (int s = 0; s < static_cast<int>(stages.size()); ++s) {
    if (is_choosable(s) && seen++ == i) return s;
  }
  fail("hyperspace {} has no choosable stage #{}", name, i);
}

const BlockType& Hyperspace::fixed_block(int stage_index) const {
  const auto& stage_name = stages.at(stage_index).name;
  for (size_t i = 0; i < fixed_block_stages.size(); ++i) {
    if (fixed_block_stages[i] == stage_name) return fixed_blocks.at(i);
  }
  fail("stage {} of hyperspace {} has no fixed block type", stage_name, name);
}

int Hyperspace::stage_index(const std::string& stage_name) const {
  for (size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].name == stage_name) return static_cast<int>(i);
  }
  fail("hyperspace {} has no stage named {}", name, stage_name);
}

const std::vector<std::string>& builtin_hyperspace_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& hs : builtins()) out.push_back(hs.name);
    return out;
  }();
  return names;
}

const Hyperspace& find_hyperspace(const std::string& name) {
  for (const auto& hs : builtins()) {
    if (hs.name == name) return hs;
  }
  fail("unknown hyperspace '{}': choose one of {}", name, fmt::join(builtin_hyperspace_names(), ", "));
}

std::vector<int> stage_input_sizes(const Hyperspace& hyperspace, int resolution) {
  std::vector<int> sizes;
  int hw = resolution;
  for (const auto& stage : hyperspace.stages) {
    sizes.push_back(hw);
    // The stride-s first block of each stage; stem kernel 3, all others keep "same" padding.
    hw = conv_out_size(hw, 3, stage.stride);
  }
  return sizes;
}

}  // namespace qnas::space
