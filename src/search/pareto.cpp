#include "search/pareto.h"

#include <algorithm>
#include <limits>
#include <numeric>

namespace qnas::search {

bool dominates(const Objectives& a, const Objectives& b) {
  const bool no_worse = a.accuracy >= b.accuracy && a.cost <= b.cost;
  const bool better = a.accuracy > b.accuracy || a.cost < b.cost;
  return no_worse && better;
}

std::vector<std::vector<std::size_t>> nondominated_fronts(const std::vector<Objectives>& points) {
  const std::size_t n = points.size();
  std::vector<std::vector<std::size_t>> dominated_by(n);  // the points each point dominates
  std::vector<int> domination_count(n, 0);
  std::vector<std::vector<std::size_t>> fronts(1);
  for (std::size_t p = 0; p < n; ++p) {
    for (std::size_t q = 0; q < n; ++q) {
      if (dominates(points[p], points[q])) {
        dominated_by[p].push_back(q);
      } else if (dominates(points[q], points[p])) {
        ++domination_count[p];
      }
    }
    if (domination_count[p] == 0) fronts[0].push_back(p);
  }
  while (!fronts.back().empty()) {
    std::vector<std::size_t> next;
    for (std::size_t p : fronts.back()) {
      for (std::size_t q : dominated_by[p]) {
        if (--domination_count[q] == 0) next.push_back(q);
      }
    }
    std::sort(next.begin(), next.end());
    fronts.push_back(std::move(next));
  }
  fronts.pop_back();
  return fronts;
}

std::vector<double> crowding_distance(const std::vector<Objectives>& points,
                                      const std::vector<std::size_t>& front) {
  const std::size_t m = front.size();
  std::vector<double> distance(m, 0.0);
  if (m <= 2) {
    std::fill(distance.begin(), distance.end(), std::numeric_limits<double>::infinity());
    return distance;
  }
  auto add_objective = [&](auto value) {
    std::vector<std::size_t> order(m);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return value(front[a]) < value(front[b]); });
    const double span = value(front[order.back()]) - value(front[order.front()]);
    distance[order.front()] = distance[order.back()] = std::numeric_limits<double>::infinity();
    // A front flat in this objective spreads nothing along it.
    if (span <= 0) return;
    for (std::size_t i = 1; i + 1 < m; ++i)
      distance[order[i]] += (value(front[order[i + 1]]) - value(front[order[i - 1]])) / span;
  };
  add_objective([&](std::size_t i) { return points[i].accuracy; });
  add_objective([&](std::size_t i) { return points[i].cost; });
  return distance;
}

std::vector<std::size_t> pareto_front(const std::vector<Objectives>& points) {
  const auto fronts = nondominated_fronts(points);
  if (fronts.empty()) return {};
  std::vector<std::size_t> front;
  for (std::size_t i : fronts[0]) {
    const bool duplicate = std::any_of(front.begin(), front.end(), [&](std::size_t j) {
      return points[j].accuracy == points[i].accuracy && points[j].cost == points[i].cost;
    });
    if (!duplicate) front.push_back(i);
  }
  std::stable_sort(front.begin(), front.end(),
                   [&](std::size_t a, std::size_t b) { return points[a].cost < points[b].cost; });
  return front;
}

}  // namespace qnas::search
