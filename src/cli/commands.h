#pragma once
// Each concern registers its subcommands on the root CLI11 app; main() only dispatches and reports errors.
#include <CLI/CLI.hpp>

namespace qnas::cli {

void add_space_commands(CLI::App& app);
void add_search_commands(CLI::App& app);
void add_run_command(CLI::App& app);
void add_profile_commands(CLI::App& app);  // needs oneDNN (QNAS_HAVE_ONEDNN)

}  // namespace qnas::cli
