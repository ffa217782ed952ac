#pragma once
// A one-line progress report for long work: done/total, rate and ETA, redrawn in place on a terminal and
// printed as plain lines (at most every few seconds) when the output is a log file.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace qnas {

class ProgressLine {
 public:
  ProgressLine(std::string label, std::int64_t total, std::string unit = "it", std::FILE* out = stderr);
  // Reports that `done` units are finished; `extra` is appended (e.g. "loss 0.41").
  void update(std::int64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");

  // Formats seconds as e.g. "1h02m", "3m07s", "12.4s".
  static std::string format_duration(double seconds);

 private:
  std::string render(std::int64_t done, const std::string& extra) const;

  std::string label_;
  std::int64_t total_;
  std::string unit_;
  std::FILE* out_;
  bool interactive_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
};

// Seconds of wall time since `start` (steady clock).
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace qnas
