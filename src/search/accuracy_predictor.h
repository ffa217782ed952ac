#pragma once
// An accuracy predictor that stands in for expensive supernet evaluations, as OFA's does: ridge regression
// on the one-hot encoding of a subnet (depth per stage; kernel, width and expand per block slot, all zero
// for a slot the depth leaves out; resolution). Trained on a few hundred evaluated subnets; its quality is
// reported as Kendall tau and RMSE on subnets it never saw.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "space/subnet.h"

namespace qnas::search {

// The one-hot features of `subnet` in `space`; the same length for every subnet of the space.
std::vector<double> one_hot(const space::Subnet& subnet, const space::SearchSpace& space);

class RidgePredictor {
 public:
  // Fits weights and bias to minimise sum (y - w.x - b)^2 + lambda |w|^2. lambda <= 0: chosen from a grid by
  // 5-fold cross-validation on the training rows.
  void fit(const std::vector<std::vector<double>>& x, const std::vector<double>& y, double lambda = -1);
  double predict(const std::vector<double>& x) const;
  double lambda() const { return lambda_; }
  bool fitted() const { return !weights_.empty(); }

  nlohmann::json to_json() const;
  static RidgePredictor from_json(const nlohmann::json& j);

 private:
  void solve(const std::vector<std::vector<double>>& x, const std::vector<double>& y, double lambda);
  std::vector<double> weights_;
  double bias_ = 0, lambda_ = 0;
};

struct PredictorQuality {
  int train = 0, test = 0;
  double kendall_tau = 0;
  double rmse = 0;  // in the accuracy's own unit (a fraction)
};

// Kendall tau and RMSE of predictions against truth.
PredictorQuality predictor_quality(const std::vector<double>& predicted, const std::vector<double>& truth);

}  // namespace qnas::search
