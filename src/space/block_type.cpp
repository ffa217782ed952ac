#include "space/block_type.h"

namespace qnas::space {

bool BlockType::has_se() const {
  return kind == BlockKind::kMobileNetV3Res || kind == BlockKind::kMobileNetV3K3Res ||
         kind == BlockKind::kResNetSE || kind == BlockKind::kFusedMBConvSERes;
}

const char* to_string(Activation activation) {
  switch (activation) {
    case Activation::kNone:
      return "none";
    case Activation::kRelu:
      return "relu";
    case Activation::kRelu6:
      return "relu6";
    case Activation::kHswish:
      return "hswish";
    case Activation::kSwish:
      return "swish";
    case Activation::kHsigmoid:
      return "hsigmoid";
    case Activation::kSigmoid:
      return "sigmoid";
  }
  return "?";
}

const char* to_string(BlockKind kind) {
  switch (kind) {
    case BlockKind::kFirstConv:
      return "FirstConv";
    case BlockKind::kMobileNetV1Dual:
      return "MobileNetV1Dual";
    case BlockKind::kMobileNetV2:
      return "MobileNetV2";
    case BlockKind::kMobileNetV2Res:
      return "MobileNetV2Res";
    case BlockKind::kMobileNetV3Res:
      return "MobileNetV3Res";
    case BlockKind::kMobileNetV2K3Res:
      return "MobileNetV2K3Res";
    case BlockKind::kMobileNetV3K3Res:
      return "MobileNetV3K3Res";
    case BlockKind::kResNet:
      return "ResNet";
    case BlockKind::kResNetSE:
      return "ResNetSE";
    case BlockKind::kFusedMBConvRes:
      return "FusedMBConvRes";
    case BlockKind::kFusedMBConvSERes:
      return "FusedMBConvSERes";
    case BlockKind::kFinalExpand:
      return "FinalExpand";
    case BlockKind::kFeatureMix:
      return "FeatureMix";
    case BlockKind::kLogits:
      return "Logits";
  }
  return "?";
}

}  // namespace qnas::space
