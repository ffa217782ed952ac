#include "pipeline/mixed_precision_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/error.h"
#include "core/fs.h"

namespace qnas::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kResultFix =
    "pass the result.json a `qnas mixed-precision` run wrote, or its directory";

const json& field(const json& j, const char* key, const fs::path& file) {
  if (!j.is_object() || !j.contains(key))
    fail("{}: no \"{}\": not a `qnas mixed-precision` result; {}", file.string(), key, kResultFix);
  return j.at(key);
}

double number(const json& j, const char* key, const fs::path& file) {
  const json& v = field(j, key, file);
  if (!v.is_number()) fail("{}: \"{}\" is not a number; {}", file.string(), key, kResultFix);
  return v.get<double>();
}

std::string bits_text(const json& bits) {
  std::vector<int> b;
  for (const auto& v : bits)
    if (v.is_number_integer()) b.push_back(v.get<int>());
  return fmt::format("{{{}}}", fmt::join(b, ","));
}

std::string method_label(const json& r, const std::string& method, double ratio) {
  const json& m = r.at("method");
  const std::string bits = bits_text(r.value("bits", json::array()));
  if (method == "uniform") return "uniform " + bits.substr(1, bits.size() - 2);
  // A size target is labelled by the size reached (the ratio of a weights-only target says little).
  const std::string target = m.contains("size_ratio_target")
                                 ? fmt::format("size {:.3f}", r.value("size_ratio", 0.0))
                                 : fmt::format("ratio {:.3f}", ratio);
  if (method == "hawq") return fmt::format("hawq {} {}", bits, target);
  if (method == "random")
    return fmt::format("random {} {} seed {}", bits, target, m.value("seed", std::uint64_t{0}));
  if (method == "autoq")
    return fmt::format("autoq {} size {:.2f}, {} episodes", bits, m.value("size_ratio_target", 0.0),
                       m.value("episodes", 0));
  if (method == "latency-aware")
    return fmt::format("latency-aware slack {:.2f}", m.value("latency_slack", 0.0));
  if (method == "given") {
    // Named by the file, or by its directory when it is another run's assignment.json.
    const fs::path file(m.value("assignment", std::string("?")));
    return "given " +
           (file.filename() == "assignment.json" ? file.parent_path().filename() : file.stem()).string();
  }
  return method;
}

// Inputs at other bits than their weights' (--activation-bits) make another network: the label says so.
std::string label_of(const json& r, const std::string& method, double ratio) {
  const int activation_bits = r.value("activation_bits", 0);
  return method_label(r, method, ratio) +
         (activation_bits > 0 ? fmt::format(" (inputs {})", activation_bits) : std::string());
}

fs::path result_file(const fs::path& p) {
  if (fs::is_directory(p)) return p / "result.json";
  return p;
}

ComparisonRow result_row(const fs::path& given, std::string* space, std::string* subnet, json* raw) {
  const fs::path file = result_file(given);
  if (!fs::exists(file)) fail("{}: no such file; {}", file.string(), kResultFix);
  const json r = read_json_file(file);
  const json& m = field(r, "method", file);
  if (!m.is_object() || !m.contains("method") || !m.at("method").is_string())
    fail("{}: \"method\" names no method; {}", file.string(), kResultFix);
  ComparisonRow row;
  row.method = m.at("method").get<std::string>();
  row.source = file.string();
  row.accuracy = number(r, "accuracy", file);
  row.bitops_m = number(r, "bitops_m", file);
  row.size_kib = number(r, "model_size_kb", file);
  row.compression_ratio = number(r, "compression_ratio", file);
  const int epochs = static_cast<int>(number(r, "finetune_epochs", file));
  if (epochs > 0) {
    row.accuracy_before = number(r, "accuracy_before_finetune", file);
    row.finetune = fmt::format("{} x {} images{}", epochs, r.value("finetune_images", 0),
                               r.value("finetune_distill", false) ? ", distilled" : "");
  } else {
    row.finetune = "none";
  }
  if (r.contains("latency_int8_ms") && r["latency_int8_ms"].is_object())
    row.int8_ms = r["latency_int8_ms"].value("median", -1.0);
  row.label = label_of(r, row.method, row.compression_ratio);
  *space = field(r, "space", file).get<std::string>();
  *subnet = field(r, "subnet", file).get<std::string>();
  *raw = r;
  return row;
}

std::vector<ComparisonRow> front_rows(const fs::path& file) {
  if (!fs::exists(file))
    fail("{}: no such file; pass the front.json a QFA `qnas subnet-search --objective bitops|size` wrote",
         file.string());
  const json f = read_json_file(file);
  if (!f.is_object() || !f.contains("front") || !f.contains("elastic_bits"))
    fail(
        "{}: not a QFA search's front.json (no \"front\" or \"elastic_bits\"); pass the front.json of "
        "`qnas subnet-search --objective bitops|size` on a supernet trained with --elastic-bits",
        file.string());
  std::vector<ComparisonRow> rows;
  std::set<std::string> seen;
  for (const char* list : {"front", "uniform"}) {
    for (const auto& m : f.value(list, json::array())) {
      const std::string name = m.value("name", std::string("?"));
      if (!seen.insert(m.value("network", name)).second) continue;
      ComparisonRow row;
      row.method = "qfa";
      row.label = "QFA " + name;
      row.source = file.string();
      row.accuracy = m.value("test", 0.0);
      row.bitops_m = m.value("bitops_m", 0.0);
      row.size_kib = m.value("size_kib", 0.0);
      row.finetune = "none (supernet)";
      rows.push_back(row);
    }
  }
  if (rows.empty())
    fail("{}: the QFA search measured no network; rerun it with --front-test N", file.string());
  return rows;
}

void mark_dominance(std::vector<ComparisonRow*>& all) {
  auto dominates = [](double acc_b, double cost_b, double acc_a, double cost_a) {
    return acc_b >= acc_a && cost_b <= cost_a && (acc_b > acc_a || cost_b < cost_a);
  };
  for (auto* a : all) {
    for (const auto* b : all) {
      if (a == b) continue;
      if (dominates(b->accuracy, b->bitops_m, a->accuracy, a->bitops_m))
        a->dominated_by_bitops.push_back(b->label);
      if (dominates(b->accuracy, b->size_kib, a->accuracy, a->size_kib))
        a->dominated_by_size.push_back(b->label);
    }
  }
}

const ComparisonRow* uniform8(const Comparison& c) {
  for (const auto& r : c.rows)
    if (r.method == "uniform" && r.label == "uniform 8") return &r;
  return nullptr;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

json row_json(const ComparisonRow& r) {
  return {{"label", r.label},
          {"method", r.method},
          {"source", r.source},
          {"accuracy", r.accuracy},
          {"accuracy_before_finetune", r.accuracy_before < 0 ? json(nullptr) : json(r.accuracy_before)},
          {"bitops_m", r.bitops_m},
          {"size_kib", r.size_kib},
          {"compression_ratio", r.compression_ratio > 0 ? json(r.compression_ratio) : json(nullptr)},
          {"int8_median_ms", r.int8_ms < 0 ? json(nullptr) : json(r.int8_ms)},
          {"finetune", r.finetune},
          {"dominated_by_bitops", r.dominated_by_bitops},
          {"dominated_by_size", r.dominated_by_size}};
}

// --- the plot ------------------------------------------------------------------------------------------

struct Axes {
  double width = 760, height = 460, left = 70, right = 250, top = 40, bottom = 56;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  double px(double x) const { return left + (x - x0) / (x1 - x0) * (width - left - right); }
  double py(double y) const { return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom); }
};

const char* color_of(const std::string& method) {
  static const std::map<std::string, const char*> colors = {
      {"uniform", "#333333"}, {"hawq", "#d62728"},          {"autoq", "#2ca02c"}, {"random", "#ff7f0e"},
      {"given", "#9467bd"},   {"latency-aware", "#8c564b"}, {"qfa", "#1f77b4"}};
  const auto it = colors.find(method);
  return it == colors.end() ? "#7f7f7f" : it->second;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '<')
      out += "&lt;";
    else if (ch == '>')
      out += "&gt;";
    else if (ch == '&')
      out += "&amp;";
    else
      out += ch;
  }
  return out;
}

std::string plot_svg(const Comparison& c, bool by_size, const std::string& title) {
  auto cost = [&](const ComparisonRow& r) { return by_size ? r.size_kib : r.bitops_m; };
  Axes a;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto* list : {&c.rows, &c.front}) {
    for (const auto& r : *list) {
      x0 = std::min(x0, cost(r)), x1 = std::max(x1, cost(r));
      y0 = std::min(y0, 100 * r.accuracy), y1 = std::max(y1, 100 * r.accuracy);
    }
  }
  const double padx = (x1 - x0) * 0.06 + 1e-6, pady = (y1 - y0) * 0.08 + 0.5;
  a.x0 = std::max(0.0, x0 - padx), a.x1 = x1 + padx, a.y0 = y0 - pady, a.y1 = std::min(100.0, y1 + pady);
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n"
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n",
      a.width, a.height, (a.left + a.width - a.right) / 2, escape(title), a.left, a.top,
      a.width - a.left - a.right, a.height - a.top - a.bottom);
  for (int i = 0; i <= 5; ++i) {
    const double xv = a.x0 + (a.x1 - a.x0) * i / 5, yv = a.y0 + (a.y1 - a.y0) * i / 5;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.3g}</text>\n", a.px(xv),
                       a.height - a.bottom + 15, xv);
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.1f}%</text>\n", a.left - 5,
                       a.py(yv) + 4, yv);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                     (a.left + a.width - a.right) / 2, a.height - 16,
                     by_size ? "model size (KiB)" : "BitOPs (M, INT8-equivalent MACs)");
  svg += fmt::format(
      "<text x=\"14\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {0})\">test top-1</text>\n",
      (a.top + a.height - a.bottom) / 2);
  // The QFA networks as a line by cost, so the front reads as a curve against the single-network points.
  std::vector<const ComparisonRow*> front;
  for (const auto& r : c.front) front.push_back(&r);
  std::sort(front.begin(), front.end(), [&](auto* p, auto* q) { return cost(*p) < cost(*q); });
  std::string line;
  for (const auto* r : front) line += fmt::format("{:.1f},{:.1f} ", a.px(cost(*r)), a.py(100 * r->accuracy));
  if (!front.empty())
    svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-opacity=\"0.5\"/>\n", line,
                       color_of("qfa"));
  for (const auto* r : front)
    svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"><title>{}</title></circle>\n",
                       a.px(cost(*r)), a.py(100 * r->accuracy), color_of("qfa"), escape(r->label));
  for (const auto& r : c.rows) {
    const double x = a.px(cost(r)), y = a.py(100 * r.accuracy);
    svg += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"8\" height=\"8\" fill=\"{}\"><title>{}</title></rect>\n",
        x - 4, y - 4, color_of(r.method), escape(r.label));
    // A label in the right half reads leftwards, so it never runs into the legend.
    const bool right_half = x > (a.left + a.width - a.right) / 2;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" fill=\"{}\" text-anchor=\"{}\">{}</text>\n",
                       right_half ? x - 7 : x + 7, y - 6, color_of(r.method), right_half ? "end" : "start",
                       escape(r.label));
  }
  std::vector<std::string> methods;
  for (const auto* list : {&c.rows, &c.front})
    for (const auto& r : *list)
      if (std::find(methods.begin(), methods.end(), r.method) == methods.end()) methods.push_back(r.method);
  for (size_t i = 0; i < methods.size(); ++i) {
    const double x = a.width - a.right + 14, y = a.top + 10 + 18.0 * static_cast<double>(i);
    svg += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"8\" height=\"8\" fill=\"{}\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
        x, y - 4, color_of(methods[i]), x + 14, y + 4,
        methods[i] == "qfa" ? "QFA supernet (not fine-tuned)" : methods[i]);
  }
  return svg + "</svg>\n";
}

}  // namespace

Comparison load_comparison(const std::vector<fs::path>& results, const fs::path& qfa_front) {
  if (results.empty() && qfa_front.empty())
    fail("nothing to compare: pass the result.json (or directory) of each `qnas mixed-precision` run");
  Comparison c;
  std::set<std::string> finetunes, test_sets, runs;
  std::map<std::string, int> labels;
  std::string first_run;
  std::vector<std::string> other_subnets;
  for (const auto& given : results) {
    std::string space, subnet;
    json raw;
    ComparisonRow row = result_row(given, &space, &subnet, &raw);
    const std::string run_dir = raw.value("run_dir", std::string());
    if (c.rows.empty()) {
      c.space = space, c.subnet = subnet, first_run = run_dir;
    } else if (space != c.space ||
               (subnet != c.subnet &&
                (run_dir != first_run || raw.at("method").value("method", "") != "given"))) {
      // Another subnet of the same supernet run is comparable when it was fine-tuned as given (a QFA search's
      // network, next to the front's rows); anything else is another network.
      fail(
          "{} measured another network ({} {} of {}) than {} ({} {} of {}): a comparison is of one network; "
          "pass the results of one run directory and subnet (other subnets of a supernet run only as "
          "--method given)",
          row.source, space, subnet, run_dir, c.rows.front().source, c.space, c.subnet, first_run);
    } else if (subnet != c.subnet) {
      other_subnets.push_back(row.label);
    }
    if (++labels[row.label] > 1) row.label += fmt::format(" #{}", labels[row.label]);
    if (row.finetune != "none") finetunes.insert(row.finetune);
    test_sets.insert(std::to_string(raw.value("test_images", 0)));
    runs.insert(raw.value("run_dir", std::string()));
    c.rows.push_back(row);
  }
  if (finetunes.size() > 1)
    c.notes.push_back(fmt::format("the fine-tunes differ: {}", fmt::join(finetunes, "; ")));
  if (test_sets.size() > 1)
    c.notes.push_back(fmt::format("the test sets differ (images: {})", fmt::join(test_sets, ", ")));
  if (!other_subnets.empty())
    c.notes.push_back(fmt::format("{} {} of the same supernet run, fine-tuned like the rest",
                                  fmt::join(other_subnets, ", "),
                                  other_subnets.size() == 1 ? "is another subnet" : "are other subnets"));
  if (runs.size() > 1)
    c.notes.push_back(fmt::format("the results name different run directories: {}", fmt::join(runs, ", ")));
  if (!qfa_front.empty()) {
    c.front = front_rows(qfa_front);
    c.notes.push_back(
        "QFA rows are supernet subnets (architecture and bits searched together), measured as "
        "the search left them, without a fine-tune");
  }
  std::vector<ComparisonRow*> all;
  for (auto& r : c.rows) all.push_back(&r);
  for (auto& r : c.front) all.push_back(&r);
  mark_dominance(all);
  return c;
}

std::string comparison_markdown(const Comparison& c) {
  const ComparisonRow* u8 = uniform8(c);
  std::string md =
      "| network | top-1 (before fine-tune) | vs uniform 8 | BitOPs (M) | ratio | size (KiB) | INT8 ms | "
      "fine-tune | "
      "dominated by (BitOPs) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n";
  for (const auto* list : {&c.rows, &c.front}) {
    for (const auto& r : *list) {
      md += fmt::format(
          "| {} | {:.2f}%{} | {} | {:.2f} | {} | {:.1f} | {} | {} | {} |\n", r.label, 100 * r.accuracy,
          r.accuracy_before < 0 ? std::string() : fmt::format(" ({:.2f}%)", 100 * r.accuracy_before),
          u8 ? fmt::format("{:+.2f}", 100 * (r.accuracy - u8->accuracy)) : std::string("-"), r.bitops_m,
          r.compression_ratio > 0 ? fmt::format("{:.3f}", r.compression_ratio) : std::string("-"), r.size_kib,
          r.int8_ms < 0 ? std::string("-") : fmt::format("{:.3f}", r.int8_ms), r.finetune,
          r.dominated_by_bitops.empty() ? std::string("**none**")
                                        : fmt::format("{}", fmt::join(r.dominated_by_bitops, ", ")));
    }
  }
  for (const auto& n : c.notes) md += "\nNote: " + n + ".";
  if (!c.notes.empty()) md += "\n";
  return md;
}

void write_comparison(const Comparison& c, const fs::path& out_dir, const std::string& title) {
  create_directories_or_fail(out_dir);
  json rows = json::array(), front = json::array();
  for (const auto& r : c.rows) rows.push_back(row_json(r));
  for (const auto& r : c.front) front.push_back(row_json(r));
  write_json_atomic(
      out_dir / "comparison.json",
      {{"space", c.space}, {"subnet", c.subnet}, {"rows", rows}, {"qfa", front}, {"notes", c.notes}});
  std::string csv =
      "label,method,accuracy,accuracy_before_finetune,bitops_m,compression_ratio,size_kib,int8_median_ms,"
      "finetune,"
      "dominated_by_bitops,dominated_by_size,source\n";
  for (const auto* list : {&c.rows, &c.front}) {
    for (const auto& r : *list) {
      csv += fmt::format(
          "{},{},{:.6f},{},{:.4f},{},{:.2f},{},{},{},{},{}\n", csv_field(r.label), r.method, r.accuracy,
          r.accuracy_before < 0 ? std::string() : fmt::format("{:.6f}", r.accuracy_before), r.bitops_m,
          r.compression_ratio > 0 ? fmt::format("{:.4f}", r.compression_ratio) : std::string(), r.size_kib,
          r.int8_ms < 0 ? std::string() : fmt::format("{:.4f}", r.int8_ms), csv_field(r.finetune),
          csv_field(fmt::format("{}", fmt::join(r.dominated_by_bitops, "; "))),
          csv_field(fmt::format("{}", fmt::join(r.dominated_by_size, "; "))), csv_field(r.source));
    }
  }
  write_file_atomic(out_dir / "comparison.csv", csv);
  write_file_atomic(out_dir / "comparison.md", fmt::format("# {}\n\n`{}` subnet `{}`\n\n{}", title, c.space,
                                                           c.subnet, comparison_markdown(c)));
  write_file_atomic(out_dir / "accuracy-bitops.svg", plot_svg(c, false, title + ": top-1 against BitOPs"));
  write_file_atomic(out_dir / "accuracy-size.svg", plot_svg(c, true, title + ": top-1 against model size"));
}

}  // namespace qnas::pipeline
