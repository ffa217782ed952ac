#pragma once
// The end of `qnas run`: RUN_DIR/report.md and a self-contained report.html (inline SVG, opens offline),
// report-front.svg, and summary.json for machines. summary.json keeps what a rerun reproduces exactly
// ("results": spaces, subnets, accuracies, predicted latencies) apart from what is timed anew each run
// ("measured": latencies, stage wall times).
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/run_state.h"

namespace qnas::pipeline {

// Writes the files and returns summary.json's content.
nlohmann::json write_run_report(const std::filesystem::path& run_dir, const RunState& state,
                                const nlohmann::json& config, const std::vector<std::string>& stages);

}  // namespace qnas::pipeline
