#pragma once
// Each concern registers its subcommands on the root CLI11 app; main() only dispatches and reports errors.
#include <CLI/CLI.hpp>

namespace qnas::cli {

void add_space_commands(CLI::App& app);
void add_search_commands(CLI::App& app);
void add_run_command(CLI::App& app);
void add_train_command(CLI::App& app);            // needs LibTorch (QNAS_HAVE_TORCH)
void add_block_kd_commands(CLI::App& app);        // needs LibTorch and oneDNN
void add_subnet_search_command(CLI::App& app);    // needs the pipeline (LibTorch, oneDNN)
void add_mixed_precision_command(CLI::App& app);  // needs the pipeline
void add_mixed_precision_report_command(CLI::App& app);
// Need oneDNN (QNAS_HAVE_ONEDNN); add_profile_commands returns the `profile` subcommand for the ORT check.
CLI::App& add_profile_commands(CLI::App& app);
void add_export_commands(CLI::App& app, CLI::App& profile);  // needs libonnx too (QNAS_HAVE_ONNX)

}  // namespace qnas::cli
