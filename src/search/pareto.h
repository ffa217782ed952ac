#pragma once
// Two-objective Pareto machinery for subnet search: maximise accuracy, minimise latency (or any cost).
// Deb's fast non-dominated sort and NSGA-II's crowding distance, on plain numbers so tests can hand-make
// fronts.
#include <cstddef>
#include <vector>

namespace qnas::search {

struct Objectives {
  double accuracy = 0;  // higher is better
  double cost = 0;      // lower is better (INT8 latency in ms, BitOPs, model size)
};

// a is at least as good in both objectives and strictly better in one.
bool dominates(const Objectives& a, const Objectives& b);

// Fronts in order: fronts[0] holds the indices no point dominates, fronts[1] those only fronts[0]
// dominates, and so on. Every index appears exactly once; within a front indices ascend.
std::vector<std::vector<std::size_t>> nondominated_fronts(const std::vector<Objectives>& points);

// NSGA-II crowding distance of each member of `front` (same order): the sum over objectives of the
// normalised gap between its neighbours; the extremes of each objective get infinity.
std::vector<double> crowding_distance(const std::vector<Objectives>& points,
                                      const std::vector<std::size_t>& front);

// Indices of the non-dominated points, by ascending cost. Of points with equal objectives only the first
// is kept, so a front has no duplicates.
std::vector<std::size_t> pareto_front(const std::vector<Objectives>& points);

}  // namespace qnas::search
