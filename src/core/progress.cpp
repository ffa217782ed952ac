#include "core/progress.h"

#include <unistd.h>

#include <fmt/format.h>

namespace qnas {

ProgressLine::ProgressLine(std::string label, std::int64_t total, std::string unit, std::FILE* out)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      out_(out),
      interactive_(out != nullptr && ::isatty(fileno(out))),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

std::string ProgressLine::format_duration(double seconds) {
  if (seconds < 0 || seconds != seconds) return "?";
  if (seconds < 60) return fmt::format("{:.1f}s", seconds);
  const auto whole = static_cast<long long>(seconds + 0.5);
  if (whole < 3600) return fmt::format("{}m{:02d}s", whole / 60, static_cast<int>(whole % 60));
  return fmt::format("{}h{:02d}m", whole / 3600, static_cast<int>((whole % 3600) / 60));
}

std::string ProgressLine::render(std::int64_t done, const std::string& extra) const {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : -1.0;
  const double percent = total_ > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100.0;
  std::string line = fmt::format("{} {}/{} ({:.1f}%) {:.1f} {}/s elapsed {} ETA {}", label_, done, total_,
                                 percent, rate, unit_, format_duration(elapsed), format_duration(eta));
  if (!extra.empty()) line += " " + extra;
  return line;
}

void ProgressLine::update(std::int64_t done, const std::string& extra) {
  // The final line belongs to finish(), so a completed run never prints 100% twice.
  if (out_ == nullptr || done >= total_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_last = std::chrono::duration<double>(now - last_print_).count();
  if (interactive_) {
    if (since_last < 0.1) return;
    std::fprintf(out_, "\r\033[K%s", render(done, extra).c_str());
  } else {
    if (since_last < 5.0) return;
    std::fprintf(out_, "%s\n", render(done, extra).c_str());
  }
  std::fflush(out_);
  last_print_ = now;
}

void ProgressLine::finish(const std::string& extra) {
  if (out_ == nullptr) return;
  std::fprintf(out_, interactive_ ? "\r\033[K%s\n" : "%s\n", render(total_, extra).c_str());
  std::fflush(out_);
}

}  // namespace qnas
