#include "export/ort_harness.h"

#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "core/error.h"

#ifndef QNAS_SOURCE_DIR
#define QNAS_SOURCE_DIR "."
#endif

namespace qnas::exporter {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

std::string default_ort_harness() {
  return QNAS_SOURCE_DIR "/tools/ort-harness/ort_bench.js";
}

json run_ort_harness(const std::string& harness, const std::string& model, const std::string& images_file,
                     const runtime::Program& p, int threads, int runs) {
  if (!fs::exists(harness)) {
    fail("ONNX Runtime harness {} not found: run scripts/setup.sh (it installs onnxruntime-node with npm)",
         harness);
  }
  const std::string cmd = fmt::format(
      "node {} --model {} --input {} --shape 1,{},{},{} --threads {} --runs {}", shell_quote(harness),
      shell_quote(model), shell_quote(images_file), p.in_channels, p.resolution, p.resolution, threads, runs);
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) fail("could not start node for {}", harness);
  std::string out;
  std::array<char, 65536> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe.get())) > 0) out.append(buffer.data(), n);
  const int status = pclose(pipe.release());
  if (status != 0) fail("ONNX Runtime harness failed on {} (exit {}); its message is above", model, status);
  try {
    return json::parse(out);
  } catch (const json::exception& e) {
    fail("ONNX Runtime harness printed no JSON for {}: {}", model, e.what());
  }
}

}  // namespace qnas::exporter
