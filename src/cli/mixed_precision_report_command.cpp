// `qnas mixed-precision-report`: one table and two plots from several `qnas mixed-precision` results on one
// network and a QFA search's front (pipeline/mixed_precision_report.h). Needs no LibTorch.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "pipeline/mixed_precision_report.h"

namespace qnas::cli {

void add_mixed_precision_report_command(CLI::App& app) {
  struct Options {
    std::vector<std::filesystem::path> results;
    std::filesystem::path qfa_front, out = "mixed-precision-report";
    std::string title = "mixed precision";
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("mixed-precision-report",
                                 "Side by side: accuracy, BitOPs, size and latency of several `qnas "
                                 "mixed-precision` results on one network (and a QFA search's front)");
  cmd->add_option("RESULTS", o->results, "result.json files of `qnas mixed-precision`, or their directories");
  cmd->add_option("--qfa-front", o->qfa_front, "front.json of a QFA `qnas subnet-search --objective bitops`");
  cmd->add_option("--out", o->out, "output directory")->capture_default_str();
  cmd->add_option("--title", o->title, "title of the table and the plots")->capture_default_str();
  cmd->callback([o] {
    const auto comparison = pipeline::load_comparison(o->results, o->qfa_front);
    pipeline::write_comparison(comparison, o->out, o->title);
    std::printf(
        "%s\nwritten: %s/{comparison.json,comparison.csv,comparison.md,accuracy-bitops.svg,"
        "accuracy-size.svg}\n",
        pipeline::comparison_markdown(comparison).c_str(), o->out.c_str());
  });
}

}  // namespace qnas::cli
