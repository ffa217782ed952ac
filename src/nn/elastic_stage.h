#pragma once
// One (stage, block type, width window) of a hyperspace as a weight-sharing module, and the student that
// block-wise knowledge distillation trains around it: a 1x1 projection from the teacher's stage input to the
// sub-stage's input width, the elastic stage, and a 1x1 projection from its output width back to the
// teacher's stage output. The projections stay FP32: they stand in for the neighbouring stages and are
// never deployed.
#include <torch/torch.h>

#include <vector>

#include "nn/elastic_block.h"
#include "space/stage_space.h"

namespace qnas::nn {

class ElasticStageImpl : public torch::nn::Module {
 public:
  explicit ElasticStageImpl(space::StageSpace stage);
  // `x` has sub.cin channels; validates `sub` against the stage (a qnas::Error naming what is wrong).
  torch::Tensor forward(const torch::Tensor& x, const space::SubStage& sub);
  const space::StageSpace& stage() const { return stage_; }

 private:
  space::StageSpace stage_;
  std::vector<ElasticBlock> blocks_;
};
TORCH_MODULE(ElasticStage);

class StageStudentImpl : public torch::nn::Module {
 public:
  StageStudentImpl(space::StageSpace stage, int teacher_in_channels, int teacher_out_channels);
  torch::Tensor forward(const torch::Tensor& teacher_input, const space::SubStage& sub);
  ElasticStage stage{nullptr};

 private:
  torch::nn::Conv2d in_proj{nullptr};
  torch::nn::BatchNorm2d in_bn{nullptr};
  torch::Tensor out_weight, out_bias;
};
TORCH_MODULE(StageStudent);

}  // namespace qnas::nn
