#pragma once
// Which finished network each latency limit exports (the finish stage's last step, torch-free so it is tested
// on its own).
#include <nlohmann/json.hpp>

namespace qnas::pipeline {

// The held-out accuracy of the network a finish row exports: fine-tuned when that was kept.
double final_heldout_accuracy(const nlohmann::json& row);

// Rows are the finish stage's, one per limit. A network finished for a smaller limit also fits every larger
// one (its predicted latency is within the limit); each limit exports the fitting network with the highest
// held-out accuracy, and a replaced row keeps its own searched subnet under "searched_subnet".
nlohmann::json prefer_better_smaller_networks(const nlohmann::json& rows);

}  // namespace qnas::pipeline
