#include "nn/elastic_stage.h"

#include <fmt/format.h>

#include <algorithm>

namespace qnas::nn {

ElasticStageImpl::ElasticStageImpl(space::StageSpace stage) : stage_(std::move(stage)) {
  const auto max_blocks = space::build_sub_stage(stage_, space::max_sub_stage(stage_));
  for (const auto& b : max_blocks)
    blocks_.push_back(make_elastic_block(*this, b, fmt::format("{}_block{}", b.stage, b.block_index)));
}

torch::Tensor ElasticStageImpl::forward(const torch::Tensor& x, const space::SubStage& sub) {
  const auto active = space::build_sub_stage(stage_, sub);
  torch::Tensor y = x;
  for (size_t i = 0; i < active.size(); ++i) y = run_elastic_block(blocks_[i], active[i], y);
  return y;
}

StageStudentImpl::StageStudentImpl(space::StageSpace stage_space, int teacher_in_channels,
                                   int teacher_out_channels) {
  const int max_in = *std::max_element(stage_space.in_widths.begin(), stage_space.in_widths.end());
  const int max_out = *std::max_element(stage_space.widths.begin(), stage_space.widths.end());
  in_proj = register_module(
      "in_proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(teacher_in_channels, max_in, 1).bias(false)));
  in_bn = register_module("in_bn", torch::nn::BatchNorm2d(max_in));
  stage = register_module("stage", ElasticStage(std::move(stage_space)));
  torch::nn::Conv2d out(torch::nn::Conv2dOptions(max_out, teacher_out_channels, 1));
  out_weight = register_parameter("out_weight", out->weight.detach().clone());
  out_bias = register_parameter("out_bias", out->bias.detach().clone());
}

torch::Tensor StageStudentImpl::forward(const torch::Tensor& teacher_input, const space::SubStage& sub) {
  // Elastic input width: the leading channels of the projection, as elastic convs slice their weights.
  torch::Tensor x = torch::relu(in_bn(in_proj(teacher_input))).narrow(1, 0, sub.cin);
  torch::Tensor y = stage(x, sub);
  return torch::conv2d(y, out_weight.narrow(1, 0, y.size(1)), out_bias);
}

}  // namespace qnas::nn
