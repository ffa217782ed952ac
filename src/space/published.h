#pragma once
// The published SpaceEvo results (official data/search_result.yaml), built in so that `qnas` never needs the
// shared data folder, with the FLOPs the paper's Table 1 reports for each SEQnet.
#include <string>
#include <vector>

namespace qnas::space {

struct PublishedSpace {
  std::string name;      // e.g. "spaceevo@vnni"
  std::string encoding;  // e.g. "onnxw-151122-023231"
};

struct PublishedSubnet {
  std::string name;         // e.g. "SEQnet@vnni-A0"
  std::string space_name;   // a PublishedSpace name
  std::string encoding;     // the subnet encoding
  double paper_mflops = 0;  // Table 1 of the paper
};

const std::vector<PublishedSpace>& published_spaces();
const std::vector<PublishedSubnet>& published_subnets();
// Throws qnas::Error listing the known names.
const PublishedSpace& find_published_space(const std::string& name);
const PublishedSubnet& find_published_subnet(const std::string& name);

class SearchSpace;
// A published space name ("spaceevo@vnni") or a space encoding ("onnxw-151122-023231").
SearchSpace parse_space_or_published(const std::string& text);

}  // namespace qnas::space
