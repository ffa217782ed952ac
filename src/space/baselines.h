#pragma once
// Hand-written reference networks expressed as ArchSpecs, so the latency engine and the exporter treat them
// exactly like subnets: MobileNetV2 (1.0), MobileNetV3-Large and -Small (1.0), as their papers define them.
#include <string>
#include <vector>

#include "space/arch_spec.h"

namespace qnas::space {

ArchSpec mobilenet_v2(int resolution = 224, int num_classes = 1000);
ArchSpec mobilenet_v3_large(int resolution = 224, int num_classes = 1000);
ArchSpec mobilenet_v3_small(int resolution = 224, int num_classes = 1000);

// "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"; fails with the list of names otherwise.
ArchSpec find_baseline(const std::string& name, int resolution = 224);
std::vector<std::string> baseline_names();

// Every network qnas profiles or exports by name: the published SEQnets, then the baselines.
std::vector<std::string> model_names();
// A published SEQnet or a baseline by name; `resolution` 0 keeps the model's own (224 for baselines). Fails
// listing model_names().
ArchSpec find_model(const std::string& name, int resolution = 0);

}  // namespace qnas::space
