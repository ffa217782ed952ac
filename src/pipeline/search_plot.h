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
  // Axes and the baseline's legend; the candidates' latency_ms is whatever cost the x axis names.
  std::string x_label = "predicted INT8 latency (ms)", y_label = "held-out accuracy (%)";
  std::string baseline_label = "random evaluated";
};

std::string front_svg(const FrontPlot& plot);

}  // namespace qnas::pipeline
