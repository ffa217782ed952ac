#include "space/published.h"

#include <fmt/format.h>

#include "core/error.h"
#include "space/search_space.h"

namespace qnas::space {

const std::vector<PublishedSpace>& published_spaces() {
  static const std::vector<PublishedSpace> spaces = {
      {"spaceevo@pixel4", "mobilew-122222-155400"},        {"spaceevo@pixel4-tiny", "mobilew-332160-134200"},
      {"spaceevo@pixel4-medium", "mobilew-112220-154410"}, {"spaceevo@vnni", "onnxw-151122-023231"},
      {"spaceevo@vnni-large", "onnxw-121122-133333"},
  };
  return spaces;
}

const std::vector<PublishedSubnet>& published_subnets() {
  static const std::vector<PublishedSubnet> subnets = {
      {"SEQnet@vnni-A0", "spaceevo@vnni",
       "d1#1#2#2#2#2#2#1_k3#3#3#3#3#3#3#3#3#3#3#3#3_w16#16#32#32#64#64#112#112#144#144#240#240#320_e0#0.5#4."
       "0#4.0#1.0#1.0#4.0#4.0#4.0#4.0#4.0#4.0#4.0_r160",
       163},
      {"SEQnet@vnni-A1", "spaceevo@vnni",
       "d1#1#2#2#3#2#3#1_k3#3#3#3#3#3#3#5#3#3#3#3#3#3#5_w16#16#32#32#64#80#128#112#112#144#176#304#304#256#"
       "368_e0#0.5#4.0#4.0#2.0#1.0#4.0#6.0#4.0#4.0#4.0#4.0#6.0#4.0#4.0_r192",
       358},
      {"SEQnet@vnni-A2", "spaceevo@vnni",
       "d1#1#2#2#4#4#4#1_k3#3#3#3#3#3#3#3#5#5#3#5#5#3#3#3#3#3#5_w16#16#32#32#64#64#112#112#112#128#144#144#"
       "160#160#288#272#288#256#320_e0#0.5#4.0#6.0#3.0#2.0#4.0#4.0#6.0#8.0#8.0#4.0#4.0#4.0#4.0#6.0#6.0#4.0#4."
       "0_r208",
       638},
      {"SEQnet@vnni-A3", "spaceevo@vnni",
       "d1#1#2#2#3#4#4#1_k3#3#3#3#3#3#5#5#5#3#3#5#3#3#5#3#3#3_w16#32#32#48#80#80#144#128#112#144#176#144#144#"
       "272#288#272#240#320_e0#0.5#4.0#8.0#4.0#2.0#6.0#6.0#6.0#6.0#8.0#4.0#4.0#8.0#6.0#4.0#6.0#6.0_r224",
       981},
      {"SEQnet@vnni-A4", "spaceevo@vnni",
       "d1#1#3#3#4#5#4#2_k3#3#3#5#3#3#3#3#5#5#5#5#5#3#3#3#5#3#5#5#3#3#3_w16#32#32#48#32#64#80#80#128#128#144#"
       "128#160#144#144#144#176#256#272#272#272#336#320_e0#0.5#4.0#8.0#6.0#4.0#2.0#2.0#6.0#8.0#6.0#6.0#8.0#8."
       "0#6.0#4.0#6.0#8.0#8.0#6.0#4.0#8.0#6.0_r224",
       1267},
      {"SEQnet@pixel4-A0", "spaceevo@pixel4",
       "d1#1#2#2#2#2#2#1_k3#3#3#3#3#3#3#3#3#3#3#3#3_w16#16#32#32#64#64#96#96#144#144#192#192#216_e0#1.0#3.0#"
       "3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0_r160",
       107},
      {"SEQnet@pixel4-A1", "spaceevo@pixel4",
       "d1#1#2#2#2#2#4#1_k3#3#3#3#3#3#7#3#3#3#3#3#5#3#3_w16#16#32#32#64#64#96#96#144#144#224#192#208#192#232_"
       "e0#1.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#6.0#6.0#6.0#3.0#3.0_r208",
       274},
      {"SEQnet@pixel4-A2", "spaceevo@pixel4",
       "d1#1#2#2#2#3#4#1_k3#3#3#3#3#3#3#3#5#3#3#7#5#7#5#5_w16#16#40#32#64#72#96#96#152#160#152#200#224#200#"
       "200#248_e0#1.0#3.0#3.0#3.0#3.0#3.0#6.0#3.0#6.0#3.0#6.0#3.0#3.0#6.0#3.0_r224",
       402},
      {"SEQnet@pixel4-A3", "spaceevo@pixel4",
       "d1#1#2#3#3#4#4#1_k3#3#3#3#3#3#5#7#3#3#3#3#3#5#3#3#3#5#3_w16#16#32#32#64#72#64#112#96#104#152#144#152#"
       "152#200#192#208#192#280_e0#1.0#8.0#3.0#3.0#6.0#3.0#8.0#3.0#6.0#6.0#6.0#3.0#3.0#6.0#8.0#6.0#6.0#6.0_"
       "r224",
       591},
      {"SEQnet@pixel4-A4", "spaceevo@pixel4",
       "d1#2#2#3#4#4#5#1_k3#3#3#3#3#3#3#5#3#5#5#3#3#3#3#5#7#5#3#5#3#3_w24#16#24#32#32#72#64#64#112#96#104#"
       "104#152#144#144#152#224#216#208#224#208#296_e0#1.0#1.0#6.0#8.0#6.0#3.0#3.0#6.0#6.0#3.0#3.0#8.0#8.0#6."
       "0#3.0#8.0#6.0#6.0#3.0#3.0#6.0_r224",
       738},
  };
  return subnets;
}

const PublishedSpace& find_published_space(const std::string& name) {
  std::vector<std::string> known;
  for (const auto& space : published_spaces()) {
    if (space.name == name) return space;
    known.push_back(space.name);
  }
  fail("unknown published space '{}': choose one of {}", name, fmt::join(known, ", "));
}

const PublishedSubnet& find_published_subnet(const std::string& name) {
  std::vector<std::string> known;
  for (const auto& subnet : published_subnets()) {
    if (subnet.name == name) return subnet;
    known.push_back(subnet.name);
  }
  fail("unknown published subnet '{}': choose one of {}", name, fmt::join(known, ", "));
}

SearchSpace parse_space_or_published(const std::string& text) {
  for (const auto& space : published_spaces()) {
    if (space.name == text) return SearchSpace::parse(space.encoding);
  }
  return SearchSpace::parse(text);
}

}  // namespace qnas::space
