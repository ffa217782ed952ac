#pragma once
// Block types as data: what a stage of a hyperspace can be built from. The arithmetic that turns a
// (block type, k, w, e, stride, input) choice into concrete layers lives in arch_spec.cpp.
#include <string>
#include <vector>

namespace qnas::space {

enum class Activation { kNone, kRelu, kRelu6, kHswish, kSwish, kHsigmoid, kSigmoid };

// The structural families of the official SpaceEvo code (modules/modeling/blocks). "Res" blocks always
// carry a residual: identity when stride 1 and cin == cout, a 1x1 conv+BN projection otherwise.
enum class BlockKind {
  kFirstConv,         // conv kxk stride s + BN + act
  kMobileNetV1Dual,   // (dw kxk + pw 1x1) twice, residual
  kMobileNetV2,       // inverted residual, identity residual only when shapes match (stage0 of mobilew)
  kMobileNetV2Res,    // inverted residual, always residual
  kMobileNetV3Res,    // inverted residual with SE, always residual
  kMobileNetV2K3Res,  // as V2Res, the kxk depthwise made of stacked 3x3 depthwise convs
  kMobileNetV3K3Res,  // as V3Res, the kxk depthwise made of stacked 3x3 depthwise convs
  kResNet,            // bottleneck 1x1 -> kxk -> 1x1, residual, act after the add
  kResNetSE,          // as ResNet with SE after the kxk conv
  kFusedMBConvRes,    // fused kxk expand conv -> 1x1 project, residual
  kFusedMBConvSERes,  // as FusedMBConvRes with SE after the fused conv
  kFinalExpand,       // 1x1 conv + BN + act at full resolution
  kFeatureMix,        // global average pool, then 1x1 conv + BN + act
  kLogits,            // linear classifier
};

struct BlockType {
  std::string name;  // the official class name, e.g. "MobileNetV3ResBlock"
  BlockKind kind;
  std::vector<int> kernels;     // elastic kernel choices
  std::vector<double> expands;  // elastic expand ratios; empty = the block has none ("e0" in encodings)
  Activation activation;
  bool has_expand() const { return !expands.empty(); }
  bool has_se() const;
};

const char* to_string(Activation activation);
const char* to_string(BlockKind kind);

}  // namespace qnas::space
