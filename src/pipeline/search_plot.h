#pragma once
// front.svg: accuracy against INT8 latency, with every evaluated subnet faded, the front as a line, the
// latency limits as vertical lines and random search's best per limit for comparison. Standalone SVG.
#include <string>
#include <vector>

#include "search/subnet_search.h"

namespace qnas::pipeline {

struct FrontPlot {
  std::string title, algorithm;
  std::vector<search::Candidate> evaluated, front;
  std::vector<search::Candidate> baseline_evaluated;  // random search
  std::vector<search::LimitBest> baseline_best;
  std::vector<double> limits;
};

std::string front_svg(const FrontPlot& plot);

}  // namespace qnas::pipeline
