#include "core/stats.h"

#include <cmath>

#include <gtest/gtest.h>

using qnas::kendall_tau;

TEST(KendallTau, PerfectAndReversedOrder) {
  EXPECT_DOUBLE_EQ(kendall_tau({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(kendall_tau({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
}

TEST(KendallTau, MatchesAHandCount) {
  // Pairs: (1,2) C, (1,3) C, (1,4) C, (2,3) D, (2,4) C, (3,4) C -> (5 - 1) / 6.
  EXPECT_NEAR(kendall_tau({1, 2, 3, 4}, {1, 3, 2, 4}), 4.0 / 6.0, 1e-12);
}

TEST(KendallTau, TauBHandlesTies) {
  // x ties one pair; y has no ties: C=5, D=0, ties_x=1 -> 5 / sqrt(5 * 6).
  EXPECT_NEAR(kendall_tau({1, 1, 2, 3}, {1, 2, 3, 4}), 5.0 / std::sqrt(30.0), 1e-12);
}

TEST(ScatterSvg, DrawsEveryPoint) {
  const std::string svg = qnas::scatter_svg("t", "x", "y", {{"s", {{1, 2}, {3, 4}, {5, 6}}}}, true);
  size_t circles = 0;
  for (size_t p = svg.find("<circle"); p != std::string::npos; p = svg.find("<circle", p + 1)) ++circles;
  EXPECT_EQ(circles, 3u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
}
