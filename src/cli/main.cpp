// qnas: find networks that are accurate and fast in INT8 on a given CPU and inference engine.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#ifdef QNAS_HAVE_DEPLOY
#include "cli/deploy.h"
#endif
#include "core/error.h"
#include "core/memory.h"

int main(int argc, char** argv) {
  qnas::keep_freed_memory_for_reuse();
  CLI::App app{"qnas: quantization-aware, hardware-aware neural architecture search (SpaceEvo, QFA, HAWQ)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "qnas 0.1.0");
  qnas::cli::add_space_commands(app);
  qnas::cli::add_search_commands(app);
  qnas::cli::add_run_command(app);
  qnas::cli::add_mixed_precision_report_command(app);
#ifdef QNAS_HAVE_TORCH
  qnas::cli::add_train_command(app);
#endif
#ifdef QNAS_HAVE_BLOCK_KD
  qnas::cli::add_block_kd_commands(app);
#endif
#ifdef QNAS_HAVE_ONEDNN
  CLI::App& profile = qnas::cli::add_profile_commands(app);
#ifdef QNAS_HAVE_ONNX
  qnas::cli::add_export_commands(app, profile);
#endif
#ifdef QNAS_HAVE_DEPLOY
  qnas::cli::add_eval_command(app);
#endif
#ifdef QNAS_HAVE_PIPELINE
  qnas::cli::add_subnet_search_command(app);
  qnas::cli::add_mixed_precision_command(app);
#endif
  (void)profile;
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const qnas::Error& e) {
    std::fprintf(stderr, "qnas: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qnas: unexpected error: %s\n", e.what());
    return 1;
  }
  return 0;
}
