#include "pipeline/run_report.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/fs.h"
#include "pipeline/finish_choice.h"
#include "space/search_space.h"

namespace qnas::pipeline {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string pct(const json& v) {
  return v.is_number() ? fmt::format("{:.2f}%", 100 * v.get<double>()) : std::string("-");
}
std::string ms(const json& v) {
  return v.is_number() ? fmt::format("{:.3f}", v.get<double>()) : std::string("-");
}

struct Point {
  double latency, accuracy;
};

std::vector<Point> front_points(const fs::path& front_file) {
  std::vector<Point> points;
  if (!fs::exists(front_file)) return points;
  for (const auto& f : read_json_file(front_file).at("front"))
    points.push_back(
        {f.at("predicted_latency_ms").get<double>(), 100 * f.at("heldout_accuracy").get<double>()});
  std::sort(points.begin(), points.end(),
            [](const Point& a, const Point& b) { return a.latency < b.latency; });
  return points;
}

std::vector<Point> finished_points(const json& finish) {
  std::vector<Point> points;
  for (const auto& r : finish.at("limits")) {
    if (r.value("found", false))
      points.push_back({r.at("predicted_latency_ms").get<double>(),
                        100 * r.at("test_accuracy").at("onednn_int8").get<double>()});
  }
  return points;
}

// Both spaces' accuracy-latency fronts (held-out, from the supernets) and the finished networks (test,
// oneDNN INT8) on one plot.
std::string fronts_svg(const std::string& evolved, const std::vector<Point>& evolved_front,
                       const std::vector<Point>& evolved_final, const std::string& baseline,
                       const std::vector<Point>& baseline_front, const std::vector<Point>& baseline_final,
                       const std::vector<double>& limits) {
  const double W = 760, H = 470, L = 70, R = 250, T = 40, B = 60;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto* list : {&evolved_front, &evolved_final, &baseline_front, &baseline_final}) {
    for (const auto& p : *list)
      x0 = std::min(x0, p.latency), x1 = std::max(x1, p.latency), y0 = std::min(y0, p.accuracy),
      y1 = std::max(y1, p.accuracy);
  }
  for (double l : limits) x0 = std::min(x0, l), x1 = std::max(x1, l);
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 100;
  const double px_ = (x1 - x0) * 0.06 + 1e-6, py_ = (y1 - y0) * 0.08 + 0.5;
  x0 -= px_, x1 += px_, y0 -= py_, y1 += py_;
  auto X = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto Y = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">accuracy against INT8 latency on this "
      "CPU</text>\n"
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n",
      W, H, W, H, (L + W - R) / 2, L, T, W - L - R, H - T - B);
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.3g}</text>\n", X(xv),
                       H - B + 16, xv);
    svg +=
        fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3g}</text>\n", L - 6, Y(yv) + 4, yv);
  }
  svg += fmt::format(
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">predicted INT8 latency (ms, batch 1)</text>\n",
      (L + W - R) / 2, H - 18);
  svg += fmt::format(
      "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">accuracy "
      "(%)</text>\n",
      (T + H - B) / 2);
  for (double l : limits)
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#999\" stroke-dasharray=\"4 "
        "3\"/>\n",
        X(l), T, H - B);
  auto series = [&](const std::vector<Point>& front, const std::vector<Point>& final,
                    const std::string& color, int row, const std::string& name) {
    std::string path;
    for (const auto& p : front)
      path += fmt::format("{}{:.1f},{:.1f}", path.empty() ? "M" : " L", X(p.latency), Y(p.accuracy));
    if (!path.empty())
      svg += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n", path, color);
    for (const auto& p : front)
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", X(p.latency),
                         Y(p.accuracy), color);
    for (const auto& p : final)
      svg += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"9\" height=\"9\" fill=\"none\" stroke=\"{}\" "
          "stroke-width=\"2\"/>\n",
          X(p.latency) - 4.5, Y(p.accuracy) - 4.5, color);
    const double lx = W - R + 12, ly = T + 12 + 40 * row;
    svg += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"/><text x=\"{:.1f}\" y=\"{:.1f}\">{} front "
        "(held-out)</text>\n",
        lx, ly, color, lx + 10, ly + 4, name);
    svg += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"9\" height=\"9\" fill=\"none\" stroke=\"{}\" "
        "stroke-width=\"2\"/><text x=\"{:.1f}\" y=\"{:.1f}\">{} finished (test, oneDNN INT8)</text>\n",
        lx - 4.5, ly + 13.5, color, lx + 10, ly + 22, name);
  };
  series(evolved_front, evolved_final, "#c0392b", 0, "evolved");
  series(baseline_front, baseline_final, "#2471a3", 1, "baseline");
  svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\">evolved: {}</text>\n", W - R + 8, T + 100,
                     evolved);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\">baseline: {}</text>\n", W - R + 8, T + 116,
                     baseline);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\">dashed: latency limits</text>\n", W - R + 8,
                     T + 132);
  return svg + "</svg>\n";
}

std::string space_description(const std::string& encoding) {
  const auto space = space::SearchSpace::parse(encoding);
  std::string out;
  for (int i = 0; i < space.num_stages(); ++i) {
    const auto& st = space.stage(i);
    if (!space.hyperspace().is_choosable(i)) continue;
    out +=
        fmt::format("| {} | {} | {}-{} |\n", st.name(), st.block->name, st.widths.front(), st.widths.back());
  }
  return out;
}

// One row per finished network; results (reproducible) and measured (timed) apart.
json limit_results(const json& finish, json& measured) {
  json rows = json::array();
  measured = json::array();
  for (const auto& r : finish.at("limits")) {
    if (!r.value("found", false)) {
      rows.push_back({{"limit_ms", r.at("limit_ms")}, {"found", false}});
      measured.push_back({{"limit_ms", r.at("limit_ms")}, {"found", false}});
      continue;
    }
    json row = r;
    row.erase("measured");
    row.erase("model_bytes");
    rows.push_back(row);
    measured.push_back({{"limit_ms", r.at("limit_ms")},
                        {"measured", r.at("measured")},
                        {"model_bytes", r.at("model_bytes")}});
  }
  return rows;
}

}  // namespace

json write_run_report(const fs::path& dir, const RunState& state, const json& config,
                      const std::vector<std::string>& stages) {
  const json& search = state.result("space-search");
  const json& latency = state.result("latency");
  const json& finish = state.result("finish");
  const json& base_finish = state.result("baseline-finish");
  const std::string evolved = search.at("chosen").at("space");
  const std::string baseline = search.at("baseline").at("space");
  const auto limits = latency.at("limits_ms").get<std::vector<double>>();

  json evolved_measured, baseline_measured;
  json results = {{"data", state.result("data")},
                  {"limits_ms", limits},
                  {"limits_from", latency.at("limits_from")},
                  {"teacher", state.result("teacher")},
                  {"evolved_space", {{"space", evolved}, {"qt_score", search.at("chosen").at("score")}}},
                  {"baseline_space", {{"space", baseline}, {"qt_score", search.at("baseline").at("score")}}},
                  {"supernet", state.result("supernet")},
                  {"baseline_supernet", state.result("baseline-supernet")},
                  {"evolved", limit_results(finish, evolved_measured)},
                  {"baseline", limit_results(base_finish, baseline_measured)}};
  json verdicts = json::array();
  std::string verdict_text;
  for (size_t i = 0; i < limits.size(); ++i) {
    const json& e = results["evolved"][i];
    const json& b = results["baseline"][i];
    json v = {{"limit_ms", limits[i]}};
    if (e.value("found", false) && b.value("found", false)) {
      const double ea = e["test_accuracy"]["onednn_int8"].get<double>(),
                   ba = b["test_accuracy"]["onednn_int8"].get<double>();
      v["evolved_minus_baseline_points"] = 100 * (ea - ba);
      v["evolved_better"] = ea > ba;
      verdict_text += fmt::format(
          "- under {:.3f} ms: the evolved space's network {} the baseline's: {} against {} "
          "(oneDNN INT8, test), {:+.2f} points.\n",
          limits[i], ea > ba ? "**beat**" : (ea == ba ? "tied with" : "**lost to**"), pct(ea), pct(ba),
          100 * (ea - ba));
    } else {
      v["evolved_better"] = nullptr;
      const json& missing = e.value("found", false) ? b : e;
      verdict_text +=
          fmt::format("- under {:.3f} ms: no comparison, {} has no subnet within the limit ({}).\n",
                      limits[i], e.value("found", false) ? "the baseline" : "the evolved space",
                      missing.value("why", std::string("none found")));
    }
    verdicts.push_back(v);
  }
  results["verdicts"] = verdicts;
  json seconds = json::object();
  double total = 0;
  for (const auto& s : stages) {
    if (s == "report") continue;
    seconds[s] = state.seconds(s);
    total += state.seconds(s);
  }
  json summary = {{"format", "qnas-run-summary-1"},
                  {"results", results},
                  {"measured",
                   {{"evolved", evolved_measured},
                    {"baseline", baseline_measured},
                    {"stage_seconds", seconds},
                    {"total_stage_seconds", total},
                    {"latency_key", latency.at("key")}}}};

  // The person's view.
  const std::string svg = fronts_svg(
      evolved, front_points(dir / "subnet-search" / "front.json"), finished_points(finish), baseline,
      front_points(dir / "baseline" / "subnet-search" / "front.json"), finished_points(base_finish), limits);
  std::string md = fmt::format("# qnas run: {}\n\n", state.result("data").at("source").get<std::string>());
  md += fmt::format(
      "INT8 latency from this CPU's block LUT ({}), limits {} ms ({}).\n\n## The chosen space and why\n\n"
      "Space search (Q-T score on the block LUTs, aging evolution, {} spaces scored) chose **{}**, Q-T score "
      "**{:.4f}**; the hand-designed baseline {} scores {:.4f}.{}\n\n| stage | block type | widths |\n| --- "
      "| "
      "--- | --- |\n{}\n",
      latency.at("key").value("cpu", "?"), fmt::join(limits, ", "),
      latency.at("limits_from").get<std::string>(), search.at("evaluations").get<int>(), evolved,
      search.at("chosen").at("score").get<double>(), baseline,
      search.at("baseline").at("score").get<double>(),
      search.value("max_supernet_mflops", 0.0) > 0
          ? fmt::format(
                " It is the best-scoring space whose max subnet has at most {:.0f} MFLOPs (the preset's "
                "training budget; the supernet trains that subnet every step): its max subnet has {:.1f}. "
                "The best space without that cap was {} ({:.4f}, {:.1f} MFLOPs).",
                search.at("max_supernet_mflops").get<double>(),
                search.at("chosen").at("max_subnet_mflops").get<double>(),
                search.at("best_unconstrained").at("space").get<std::string>(),
                search.at("best_unconstrained").at("score").get<double>(),
                search.at("best_unconstrained").at("max_subnet_mflops").get<double>())
          : std::string(),
      space_description(evolved));
  md += "Baseline:\n\n| stage | block type | widths |\n| --- | --- | --- |\n" + space_description(baseline) +
        "\n";
  md += "## Did designing the space pay off?\n\n" + verdict_text + "\n## Per limit\n\n";
  md +=
      "| limit (ms) | space | test top-1 fake-quant | oneDNN INT8 | ORT INT8 | INT8 ms | FP32 ms | FP32/INT8 "
      "| MFLOPs | params (M) | fine-tune | model |\n";
  md += "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n";
  for (size_t i = 0; i < limits.size(); ++i) {
    for (const auto* side : {&finish, &base_finish}) {
      const json& r = side->at("limits")[i];
      const char* name = side == &finish ? "evolved" : "baseline";
      if (!r.value("found", false)) {
        md += fmt::format("| {:.3f} | {} | none fits: {} | | | | | | | | | |\n", limits[i], name,
                          r.value("why", std::string("-")));
        continue;
      }
      const json& ft = r.at("finetune");
      const std::string ft_text =
          !ft.value("ran", false)
              ? "-"
              : fmt::format("{} ({}{} -> {} held-out)", ft.value("helped", false) ? "kept" : "dropped",
                            ft.value("init", "supernet") == "scratch" ? "from scratch: " : "",
                            pct(ft.at("heldout_accuracy_before")), pct(ft.at("heldout_accuracy_after")));
      md += fmt::format(
          "| {:.3f} | {} | {} | {} | {} | {} | {} | {:.2f}x | {:.2f} | {:.3f} | {} | {} |\n", limits[i], name,
          pct(r["test_accuracy"]["fakequant"]), pct(r["test_accuracy"]["onednn_int8"]),
          pct(r["test_accuracy"]["ort_int8"]) +
              (r.value("ort_graph_optimization", json("all")) == "all"
                   ? ""
                   : fmt::format(" ({})", r["ort_graph_optimization"].get<std::string>())),
          ms(r["measured"]["int8_ms"]), ms(r["measured"]["fp32_ms"]),
          r["measured"]["fp32_over_int8"].get<double>(), r["mflops"].get<double>(),
          r["mparams"].get<double>(), ft_text, fs::relative(r["model"].get<std::string>(), dir).string());
    }
  }
  md +=
      "\nLatencies are the minimum of the timed batch-1 runs on the oneDNN INT8 and FP32 engines "
      "(latency.threads threads); accuracies are on the test set. Fine-tune: kept when it raised held-out "
      "accuracy. "
      "An ORT accuracy marked (extended) or (basic) ran at that graph optimisation level: ORT 1.30 rejected "
      "the "
      "model at level all after its QDQ fusions.\n\n";
  md += "Subnets:\n\n";
  for (const auto* side : {&finish, &base_finish})
    for (const auto& r : side->at("limits"))
      if (r.value("found", false)) {
        md += fmt::format("- {} {:.3f} ms: `{}`", side == &finish ? "evolved" : "baseline",
                          r["limit_ms"].get<double>(), r["subnet"].get<std::string>());
        if (r.contains("searched_subnet")) {
          // Chosen on held-out accuracy among the networks finished for this limit or a smaller one.
          const json& s = r["searched_subnet"];
          md += fmt::format(
              " (the network finished for {:.3f} ms: {} held-out against {} for this limit's searched subnet "
              "`{}`, {} oneDNN INT8 test)",
              r["same_as_limit_ms"].get<double>(), pct(final_heldout_accuracy(r)), pct(s["heldout_accuracy"]),
              s["subnet"].get<std::string>(), pct(s["test_accuracy"]["onednn_int8"]));
        }
        md += "\n";
      }
  md +=
      "\n## Fronts\n\n![fronts](report-front.svg)\n\n## Wall time per stage\n\n| stage | seconds |\n| --- | "
      "---: |\n";
  for (const auto& s : stages) {
    if (seconds.contains(s)) md += fmt::format("| {} | {:.1f} |\n", s, seconds[s].get<double>());
  }
  const json& teacher = state.result("teacher");
  md += fmt::format(
      "| total | {:.1f} |\n\nTeacher (block-wise distillation): the max subnet of {}, test accuracy {} "
      "({}).\n",
      total, teacher.at("space").get<std::string>(), pct(teacher.at("test_accuracy")),
      teacher.at("bits").get<int>() == 32 ? "FP32" : fmt::format("INT{}", teacher.at("bits").get<int>()));
  const json& sn = state.result("supernet");
  const json& bsn = state.result("baseline-supernet");
  auto images = [](const json& supernet) {
    const auto fp32 = supernet.at("train_images").get<std::int64_t>();
    const auto qat = supernet.value("qat_train_images", fp32);
    return qat == fp32 ? fmt::format("{} images", fp32) : fmt::format("{} images (QAT on {})", fp32, qat);
  };
  md += fmt::format(
      "Supernets: evolved {} ({:.1f} MFLOPs max subnet) trained on {}, baseline {} ({:.1f} MFLOPs) on {} ({} "
      "budget).\n",
      sn.at("space").get<std::string>(), sn.at("max_subnet_mflops").get<double>(), images(sn),
      bsn.at("space").get<std::string>(), bsn.at("max_subnet_mflops").get<double>(), images(bsn),
      config.at("baseline").at("budget").get<std::string>());

  // HTML: the same content, the SVG inline, tables rendered by a minimal markdown-table converter.
  std::string html =
      "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>qnas run report</title><style>"
      "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px "
      "8px;text-align:right}"
      "td:first-child,th:first-child{text-align:left}code{font-size:11px}</style></head><body>\n";
  bool in_table = false, in_list = false;
  auto escape = [](std::string s) {
    std::string o;
    for (char ch : s) o += ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : ch == '&' ? "&amp;" : std::string(1, ch);
    return o;
  };
  auto inline_md = [&](const std::string& s) {
    std::string o = escape(s), r;
    bool code = false, bold = false;
    for (size_t i = 0; i < o.size(); ++i) {
      if (o[i] == '`') {
        r += code ? "</code>" : "<code>";
        code = !code;
      } else if (o.compare(i, 2, "**") == 0) {
        r += bold ? "</b>" : "<b>";
        bold = !bold;
        ++i;
      } else
        r += o[i];
    }
    return r;
  };
  size_t pos = 0;
  while (pos < md.size()) {
    size_t end = md.find('\n', pos);
    if (end == std::string::npos) end = md.size();
    const std::string line = md.substr(pos, end - pos);
    pos = end + 1;
    if (in_table && line.rfind("|", 0) != 0) html += "</table>\n", in_table = false;
    if (in_list && line.rfind("- ", 0) != 0) html += "</ul>\n", in_list = false;
    if (line.rfind("| ---", 0) == 0) continue;
    if (line.rfind("|", 0) == 0) {
      const bool header = !in_table;
      if (!in_table) html += "<table>\n", in_table = true;
      html += "<tr>";
      size_t a = 1;
      while (a < line.size()) {
        size_t b = line.find('|', a);
        if (b == std::string::npos) break;
        std::string cell = line.substr(a, b - a);
        cell.erase(0, cell.find_first_not_of(' '));
        cell.erase(cell.find_last_not_of(' ') + 1);
        html += fmt::format(header ? "<th>{}</th>" : "<td>{}</td>", inline_md(cell));
        a = b + 1;
      }
      html += "</tr>\n";
    } else if (line.rfind("![", 0) == 0) {
      html += svg;
    } else if (line.rfind("## ", 0) == 0) {
      html += "<h2>" + inline_md(line.substr(3)) + "</h2>\n";
    } else if (line.rfind("# ", 0) == 0) {
      html += "<h1>" + inline_md(line.substr(2)) + "</h1>\n";
    } else if (line.rfind("- ", 0) == 0) {
      if (!in_list) html += "<ul>\n", in_list = true;
      html += "<li>" + inline_md(line.substr(2)) + "</li>\n";
    } else if (!line.empty()) {
      html += "<p>" + inline_md(line) + "</p>\n";
    }
  }
  if (in_table) html += "</table>\n";
  if (in_list) html += "</ul>\n";
  html += "</body></html>\n";

  write_file_atomic(dir / "report-front.svg", svg);
  write_file_atomic(dir / "report.md", md);
  write_file_atomic(dir / "report.html", html);
  write_json_atomic(dir / "summary.json", summary);
  return {{"report", (dir / "report.md").string()}, {"html", (dir / "report.html").string()}};
}

}  // namespace qnas::pipeline
