#include "search/accuracy_predictor.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/stats.h"

namespace qnas::search {
namespace {

template <typename T>
void push_one_hot(std::vector<double>& out, const std::vector<T>& choices, const T* value) {
  for (const T& c : choices) out.push_back(value && *value == c ? 1.0 : 0.0);
}

// Solves A x = b for a symmetric positive definite A (Cholesky, in place).
std::vector<double> solve_spd(std::vector<std::vector<double>> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t j = 0; j < n; ++j) {
    double d = a[j][j];
    for (size_t k = 0; k < j; ++k) d -= a[j][k] * a[j][k];
    if (!(d > 0)) fail("ridge regression: the normal equations are not positive definite (raise lambda)");
    a[j][j] = std::sqrt(d);
    for (size_t i = j + 1; i < n; ++i) {
      double s = a[i][j];
      for (size_t k = 0; k < j; ++k) s -= a[i][k] * a[j][k];
      a[i][j] = s / a[j][j];
    }
  }
  for (size_t i = 0; i < n; ++i) {  // L y = b
    for (size_t k = 0; k < i; ++k) b[i] -= a[i][k] * b[k];
    b[i] /= a[i][i];
  }
  for (size_t i = n; i-- > 0;) {  // L^T x = y
    for (size_t k = i + 1; k < n; ++k) b[i] -= a[k][i] * b[k];
    b[i] /= a[i][i];
  }
  return b;
}

}  // namespace

std::vector<double> one_hot(const space::Subnet& subnet, const space::SearchSpace& space) {
  std::vector<double> f;
  for (int s = 0; s < space.num_subnet_stages(); ++s) {
    const auto& st = space.stage(s);
    const auto& blocks = subnet.stages.at(static_cast<size_t>(s));
    const int depth = static_cast<int>(blocks.size());
    push_one_hot(f, st.def->depths, &depth);
    const int slots = *std::max_element(st.def->depths.begin(), st.def->depths.end());
    for (int b = 0; b < slots; ++b) {
      const space::BlockChoice* block = b < depth ? &blocks[static_cast<size_t>(b)] : nullptr;
      push_one_hot(f, st.block->kernels, block ? &block->kernel : nullptr);
      push_one_hot(f, st.widths, block ? &block->width : nullptr);
      push_one_hot(f, st.block->expands, block ? &block->expand : nullptr);
    }
  }
  push_one_hot(f, space.hyperspace().resolutions, &subnet.resolution);
  return f;
}

void RidgePredictor::solve(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
                           double lambda) {
  const size_t n = x.size(), d = x.front().size();
  std::vector<double> mean_x(d, 0.0);
  double mean_y = 0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < d; ++k) mean_x[k] += x[i][k] / static_cast<double>(n);
    mean_y += y[i] / static_cast<double>(n);
  }
  // Centred normal equations, so the bias is not shrunk.
  std::vector<std::vector<double>> a(d, std::vector<double>(d, 0.0));
  std::vector<double> b(d, 0.0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < d; ++k) {
      const double xk = x[i][k] - mean_x[k];
      b[k] += xk * (y[i] - mean_y);
      for (size_t l = 0; l <= k; ++l) a[k][l] += xk * (x[i][l] - mean_x[l]);
    }
  }
  for (size_t k = 0; k < d; ++k) {
    a[k][k] += lambda;
    for (size_t l = 0; l < k; ++l) a[l][k] = a[k][l];
  }
  weights_ = solve_spd(std::move(a), std::move(b));
  bias_ = mean_y;
  for (size_t k = 0; k < d; ++k) bias_ -= weights_[k] * mean_x[k];
  lambda_ = lambda;
}

void RidgePredictor::fit(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
                         double lambda) {
  if (x.empty() || x.size() != y.size())
    fail("ridge regression needs as many targets as rows, and some rows");
  for (const auto& row : x) {
    if (row.size() != x.front().size()) fail("ridge regression: rows of different lengths");
  }
  if (lambda > 0) return solve(x, y, lambda);
  // Too few rows for 5 folds: a moderate default.
  if (x.size() < 10) return solve(x, y, 1.0);
  double best_lambda = 1.0, best_error = std::numeric_limits<double>::infinity();
  for (double candidate : {0.01, 0.1, 1.0, 10.0, 100.0}) {
    double error = 0;
    for (size_t fold = 0; fold < 5; ++fold) {
      std::vector<std::vector<double>> tx;
      std::vector<double> ty;
      for (size_t i = 0; i < x.size(); ++i) {
        if (i % 5 != fold) tx.push_back(x[i]), ty.push_back(y[i]);
      }
      RidgePredictor p;
      p.solve(tx, ty, candidate);
      for (size_t i = fold; i < x.size(); i += 5) error += std::pow(p.predict(x[i]) - y[i], 2);
    }
    if (error < best_error) best_error = error, best_lambda = candidate;
  }
  solve(x, y, best_lambda);
}

double RidgePredictor::predict(const std::vector<double>& x) const {
  if (x.size() != weights_.size()) fail("predictor takes {} features, got {}", weights_.size(), x.size());
  double y = bias_;
  for (size_t k = 0; k < x.size(); ++k) y += weights_[k] * x[k];
  return y;
}

nlohmann::json RidgePredictor::to_json() const {
  return {{"kind", "ridge-one-hot"}, {"lambda", lambda_}, {"bias", bias_}, {"weights", weights_}};
}

RidgePredictor RidgePredictor::from_json(const nlohmann::json& j) {
  RidgePredictor p;
  try {
    p.lambda_ = j.at("lambda").get<double>();
    p.bias_ = j.at("bias").get<double>();
    p.weights_ = j.at("weights").get<std::vector<double>>();
  } catch (const nlohmann::json::exception& e) {
    fail("accuracy predictor JSON is malformed ({}): refit it", e.what());
  }
  return p;
}

PredictorQuality predictor_quality(const std::vector<double>& predicted, const std::vector<double>& truth) {
  if (predicted.size() != truth.size() || truth.size() < 2)
    fail("predictor quality needs at least two (prediction, truth) pairs");
  PredictorQuality q;
  q.test = static_cast<int>(truth.size());
  q.kendall_tau = kendall_tau(predicted, truth);
  double sum = 0;
  for (size_t i = 0; i < truth.size(); ++i) sum += std::pow(predicted[i] - truth[i], 2);
  q.rmse = std::sqrt(sum / static_cast<double>(truth.size()));
  return q;
}

}  // namespace qnas::search
