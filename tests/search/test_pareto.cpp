#include "search/pareto.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

using namespace qnas::search;

namespace {
// Hand-made: A, B, C are the front; D is dominated by A only, E by B and C; F by everyone.
const std::vector<Objectives> kPoints = {
    {0.90, 3.0},  // 0 A
    {0.80, 2.0},  // 1 B
    {0.70, 1.0},  // 2 C
    {0.85, 3.0},  // 3 D
    {0.60, 2.0},  // 4 E
    {0.50, 4.0},  // 5 F
};
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

TEST(Pareto, DominanceNeedsOneStrictImprovement) {
  EXPECT_TRUE(dominates({0.9, 1.0}, {0.8, 1.0}));
  EXPECT_TRUE(dominates({0.9, 1.0}, {0.9, 2.0}));
  EXPECT_FALSE(dominates({0.9, 1.0}, {0.9, 1.0}));
  EXPECT_FALSE(dominates({0.9, 2.0}, {0.8, 1.0}));
}

TEST(Pareto, FastNondominatedSortOnAHandMadeSet) {
  const auto fronts = nondominated_fronts(kPoints);
  ASSERT_EQ(fronts.size(), 3u);
  EXPECT_EQ(fronts[0], (std::vector<std::size_t>{0, 1, 2}));
  EXPECT_EQ(fronts[1], (std::vector<std::size_t>{3, 4}));
  EXPECT_EQ(fronts[2], (std::vector<std::size_t>{5}));
  EXPECT_TRUE(nondominated_fronts({}).empty());
}

TEST(Pareto, CrowdingDistanceByHand) {
  // Evenly spaced front: the middle point's gaps are the whole span in both objectives.
  const auto even = crowding_distance(kPoints, {0, 1, 2});
  EXPECT_EQ(even[0], kInf);
  EXPECT_NEAR(even[1], 2.0, 1e-12);
  EXPECT_EQ(even[2], kInf);
  // Uneven: accuracy span 0.5, cost span 9.
  const std::vector<Objectives> uneven = {{0.5, 1}, {0.6, 2}, {0.9, 5}, {1.0, 10}};
  const auto d = crowding_distance(uneven, {0, 1, 2, 3});
  EXPECT_EQ(d[0], kInf);
  EXPECT_NEAR(d[1], 0.4 / 0.5 + 4.0 / 9.0, 1e-12);
  EXPECT_NEAR(d[2], 0.4 / 0.5 + 8.0 / 9.0, 1e-12);
  EXPECT_EQ(d[3], kInf);
  // Two members are both extremes.
  const auto two = crowding_distance(uneven, {1, 2});
  EXPECT_EQ(two[0], kInf);
  EXPECT_EQ(two[1], kInf);
}

TEST(Pareto, CrowdingDistanceOfAFlatObjectiveAddsNothing) {
  const std::vector<Objectives> flat = {{0.5, 1}, {0.5, 2}, {0.5, 4}};
  const auto d = crowding_distance(flat, {0, 1, 2});
  EXPECT_EQ(d[0], kInf);
  EXPECT_NEAR(d[1], 3.0 / 3.0, 1e-12);  // cost gap 4 - 1 over span 3; accuracy adds 0
  EXPECT_EQ(d[2], kInf);
}

TEST(Pareto, FrontIsSortedByCostWithoutDuplicates) {
  std::vector<Objectives> points = kPoints;
  points.push_back({0.80, 2.0});  // a copy of B
  EXPECT_EQ(pareto_front(points), (std::vector<std::size_t>{2, 1, 0}));
}
