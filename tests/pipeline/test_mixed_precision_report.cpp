#include "pipeline/mixed_precision_report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/fs.h"
#include "test_util.h"

using nlohmann::json;
using qnas::pipeline::Comparison;
using qnas::pipeline::load_comparison;
using qnas::testing::error_message;
namespace fs = std::filesystem;

namespace {

json result(const std::string& method, std::vector<int> bits, double accuracy, double bitops, double size,
            double ratio, int epochs = 3) {
  json m = {{"method", method}};
  if (method == "autoq") m["size_ratio_target"] = 0.15, m["episodes"] = 300;
  if (method == "random") m["seed"] = 1;
  return {{"run_dir", "Q"},
          {"subnet", "d1_k3"},
          {"space", "fmnistw-000000-000000"},
          {"method", m},
          {"bits", bits},
          {"test_images", 10000},
          {"accuracy_before_finetune", accuracy - 0.05},
          {"accuracy", accuracy},
          {"finetune_epochs", epochs},
          {"finetune_images", 20000},
          {"finetune_distill", true},
          {"bitops_m", bitops},
          {"model_size_kb", size},
          {"compression_ratio", ratio},
          {"latency_int8_ms", {{"median", 0.31}, {"min", 0.29}}}};
}

class MixedPrecisionReport : public ::testing::Test {
 protected:
  fs::path dir = fs::temp_directory_path() / ("qnas-mp-report-" + std::to_string(::getpid()));
  void SetUp() override { fs::create_directories(dir); }
  void TearDown() override { fs::remove_all(dir); }
  fs::path write(const std::string& name, const json& j) {
    fs::create_directories(dir / name);
    qnas::write_json_atomic(dir / name / "result.json", j);
    return dir / name;
  }
};

TEST_F(MixedPrecisionReport, RowsAreLabelledComparedWithUniform8AndMarkedWhenDominated) {
  const auto u8 = write("u8", result("uniform", {8}, 0.8307, 22.42, 779.4, 1.0));
  const auto u4 = write("u4", result("uniform", {4}, 0.7968, 5.74, 423.7, 1.985));
  const auto hawq = write("hawq", result("hawq", {4, 8}, 0.8034, 11.13, 553.8, 1.505));
  // Less accurate than uniform 4 at more BitOPs: dominated by it (and by two QFA networks).
  const auto h2 = write("h2", result("hawq", {2, 4, 8}, 0.7552, 8.35, 458.9, 1.96));
  const auto autoq = write("autoq", result("autoq", {2, 4, 8}, 0.80, 13.6, 414.4, 1.0, 0));
  qnas::write_json_atomic(
      dir / "front.json",
      {{"run", "Q"},
       {"elastic_bits", {4, 8}},
       {"front",
        {{{"name", "front1"}, {"network", "a"}, {"test", 0.7796}, {"bitops_m", 1.07}, {"size_kib", 226.7}}}},
       {"uniform",
        {{{"name", "uniform8-min"},
          {"network", "b"},
          {"test", 0.8097},
          {"bitops_m", 3.09},
          {"size_kib", 394.4}},
         {{"name", "front1 again"},
          {"network", "a"},
          {"test", 0.7796},
          {"bitops_m", 1.07},
          {"size_kib", 226.7}}}}});
  const Comparison c = load_comparison({u8 / "result.json", u4, hawq, h2, autoq}, dir / "front.json");
  ASSERT_EQ(c.rows.size(), 5u);
  ASSERT_EQ(c.front.size(), 2u);  // a network listed twice is one row
  EXPECT_EQ(c.rows[0].label, "uniform 8");
  EXPECT_EQ(c.rows[1].label, "uniform 4");
  EXPECT_EQ(c.rows[2].label, "hawq {4,8} ratio 1.505");
  EXPECT_EQ(c.rows[4].label, "autoq {2,4,8} size 0.15, 300 episodes");
  EXPECT_EQ(c.rows[4].finetune, "none");
  EXPECT_LT(c.rows[4].accuracy_before, 0);
  EXPECT_EQ(c.rows[2].finetune, "3 x 20000 images, distilled");
  EXPECT_DOUBLE_EQ(c.rows[2].accuracy_before, 0.8034 - 0.05);
  EXPECT_EQ(c.front[0].label, "QFA front1");
  // Dominance by BitOPs: uniform 8 is the most accurate, so nothing dominates it; the QFA uniform-8 min
  // subnet (80.97% at 3.09 M) dominates uniform 4, both HAWQ rows and AutoQ.
  EXPECT_TRUE(c.rows[0].dominated_by_bitops.empty());
  EXPECT_EQ(c.rows[1].dominated_by_bitops, std::vector<std::string>{"QFA uniform8-min"});
  EXPECT_EQ(c.rows[3].dominated_by_bitops,
            (std::vector<std::string>{"uniform 4", "QFA front1", "QFA uniform8-min"}));
  // By size the AutoQ row (414.4 KiB) is smaller than uniform 4 and more accurate.
  EXPECT_EQ(c.rows[1].dominated_by_size,
            (std::vector<std::string>{"autoq {2,4,8} size 0.15, 300 episodes", "QFA uniform8-min"}));
  EXPECT_TRUE(c.front[0].dominated_by_bitops.empty());
  // The fine-tunes differ (AutoQ's none is not counted), the QFA rows are not fine-tuned: a note says so.
  ASSERT_EQ(c.notes.size(), 1u);
  EXPECT_NE(c.notes[0].find("without a fine-tune"), std::string::npos);

  const std::string md = qnas::pipeline::comparison_markdown(c);
  EXPECT_NE(md.find("| hawq {4,8} ratio 1.505 | 80.34% (75.34%) | -2.73 | 11.13 | 1.505 | 553.8 | 0.310 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| uniform 8 | 83.07% (78.07%) | +0.00 |"), std::string::npos);

  qnas::pipeline::write_comparison(c, dir / "out", "test");
  for (const char* f :
       {"comparison.json", "comparison.csv", "comparison.md", "accuracy-bitops.svg", "accuracy-size.svg"})
    EXPECT_TRUE(fs::exists(dir / "out" / f)) << f;
  const json back = qnas::read_json_file(dir / "out" / "comparison.json");
  EXPECT_EQ(back["rows"].size(), 5u);
  EXPECT_EQ(back["qfa"].size(), 2u);
  EXPECT_TRUE(back["rows"][4]["accuracy_before_finetune"].is_null());
  const std::string csv = qnas::read_text_file(dir / "out" / "comparison.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 5 + 2);
  EXPECT_NE(csv.find("\"hawq {2,4,8} ratio 1.960\""), std::string::npos);  // a comma inside is quoted
  const std::string svg = qnas::read_text_file(dir / "out" / "accuracy-bitops.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("hawq {4,8} ratio 1.505"), std::string::npos);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
}

TEST_F(MixedPrecisionReport, TheSameLabelTwiceIsNumberedAndOtherFineTunesAreNoted) {
  const auto a = write("a", result("uniform", {4}, 0.79, 5.74, 423.7, 1.985));
  const auto b = write("b", result("uniform", {4}, 0.78, 5.74, 423.7, 1.985, 1));
  json w4a8 = result("uniform", {4}, 0.80, 11.2, 423.7, 1.0);
  w4a8["activation_bits"] = 8;
  // HAWQ under a size target is labelled by the size it reached.
  json hawq_size = result("hawq", {4, 8}, 0.82, 22.42, 437.0, 1.0);
  hawq_size["method"]["size_ratio_target"] = 0.15;
  hawq_size["size_ratio"] = 0.1492;
  hawq_size["activation_bits"] = 8;
  // A QFA search's network fine-tuned as given: another subnet of the same run, named by its file and noted.
  json front6 = result("given", {4, 8}, 0.77, 3.51, 378.5, 1.0);
  front6["subnet"] = "d2_k5";
  front6["method"]["assignment"] = "S/assignments/front6.json";
  const Comparison c = load_comparison(
      {a, b, write("w4a8", w4a8), write("hawq-size", hawq_size), write("front6", front6)}, {});
  EXPECT_EQ(c.rows[4].label, "given front6");
  EXPECT_EQ(c.rows[1].label, "uniform 4 #2");
  EXPECT_EQ(c.rows[2].label, "uniform 4 (inputs 8)");
  EXPECT_EQ(c.rows[3].label, "hawq {4,8} size 0.149 (inputs 8)");
  ASSERT_EQ(c.notes.size(), 2u);
  EXPECT_NE(c.notes[0].find("the fine-tunes differ"), std::string::npos);
  EXPECT_NE(c.notes[1].find("given front6 is another subnet of the same supernet run"), std::string::npos)
      << c.notes[1];
  // Equal cost, lower accuracy: dominated.
  EXPECT_EQ(c.rows[1].dominated_by_bitops, std::vector<std::string>{"uniform 4"});
}

TEST_F(MixedPrecisionReport, BadInputIsOneErrorNamingTheFileAndTheFix) {
  const auto u8 = write("u8", result("uniform", {8}, 0.83, 22.42, 779.4, 1.0));
  EXPECT_NE(error_message([&] { load_comparison({}, {}); }).find("nothing to compare"), std::string::npos);
  EXPECT_NE(error_message([&] { load_comparison({dir / "missing"}, {}); }).find("missing: no such file"),
            std::string::npos);
  {
    std::ofstream(dir / "broken.json") << "{\"method\": ";
    EXPECT_NE(error_message([&] { load_comparison({dir / "broken.json"}, {}); }).find("broken.json"),
              std::string::npos);
  }
  json no_accuracy = result("uniform", {8}, 0.83, 22.42, 779.4, 1.0);
  no_accuracy.erase("accuracy");
  const std::string e = error_message([&] { load_comparison({write("na", no_accuracy)}, {}); });
  EXPECT_NE(e.find("no \"accuracy\""), std::string::npos) << e;
  EXPECT_NE(e.find("qnas mixed-precision"), std::string::npos) << e;
  json other = result("uniform", {4}, 0.79, 5.74, 423.7, 1.985);
  other["subnet"] = "d2_k5";
  const std::string e2 = error_message([&] { load_comparison({u8, write("other", other)}, {}); });
  EXPECT_NE(e2.find("another network"), std::string::npos) << e2;
  // Another subnet as given, but of another run: still another network.
  json given_elsewhere = result("given", {4, 8}, 0.79, 3.5, 380.0, 1.0);
  given_elsewhere["subnet"] = "d2_k5";
  given_elsewhere["run_dir"] = "R";
  given_elsewhere["method"]["assignment"] = "S/assignments/front6.json";
  const std::string e3 = error_message([&] { load_comparison({u8, write("ge", given_elsewhere)}, {}); });
  EXPECT_NE(e3.find("another network"), std::string::npos) << e3;
  qnas::write_json_atomic(dir / "f.json", {{"front", json::array()}});
  EXPECT_NE(
      error_message([&] { load_comparison({u8}, dir / "f.json"); }).find("not a QFA search's front.json"),
      std::string::npos);
}

}  // namespace
