#include "core/memory.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <utility>

#include <fmt/format.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core/error.h"

namespace qnas {
namespace {
constexpr std::uint64_t kTooSmallToCheck = std::uint64_t{16} << 20;
constexpr std::uint64_t kUnlimited = std::numeric_limits<std::uint64_t>::max();

std::uint64_t meminfo_available() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  std::uint64_t kib = 0;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return kUnlimited;  // not Linux, or an old kernel: nothing to plan with
}

// A number from a cgroup file; "max" (no limit) and unreadable files are unlimited.
std::uint64_t read_cgroup_value(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return kUnlimited;
  const auto value = parse_bytes(text);
  return value ? *value : kUnlimited;
}

std::uint64_t cgroup_headroom() {
  for (const auto& [limit_path, usage_path] :
       {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        std::pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                  "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const std::uint64_t limit = read_cgroup_value(limit_path);
    if (limit == kUnlimited) continue;
    const std::uint64_t usage = read_cgroup_value(usage_path);
    return usage == kUnlimited || usage > limit ? 0 : limit - usage;
  }
  return kUnlimited;
}

std::optional<std::uint64_t> configured_limit() {
  const char* text = std::getenv(kMemoryLimitVariable);
  if (text == nullptr || *text == '\0') return std::nullopt;
  const auto value = parse_bytes(text);
  if (!value) {
    fail("{}={} is not a byte count: write e.g. 8G, 512M or 1048576, or unset it", kMemoryLimitVariable,
         text);
  }
  return value;
}
}  // namespace

std::string format_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 6) value /= 1024, ++unit;
  if (unit == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.{}f} {}", value, value < 10 ? 2 : value < 100 ? 1 : 0, kUnits[unit]);
}

std::optional<std::uint64_t> parse_bytes(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t value = 0;
  std::size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    const std::uint64_t digit = static_cast<std::uint64_t>(text[i] - '0');
    if (value > (kUnlimited - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  if (i == 0) return std::nullopt;
  int shift = 0;
  if (i < text.size()) {
    switch (text[i] | 0x20) {  // either case
      case 'k':
        shift = 10;
        break;
      case 'm':
        shift = 20;
        break;
      case 'g':
        shift = 30;
        break;
      case 't':
        shift = 40;
        break;
      default:
        return std::nullopt;
    }
    ++i;
    if (i < text.size() && (text[i] == 'B' || text[i] == 'b')) ++i;  // "8GB" reads as 8G
  }
  if (i != text.size() || (shift > 0 && value > (kUnlimited >> shift))) return std::nullopt;
  return value << shift;
}

std::uint64_t available_memory_bytes() {
  std::uint64_t available = std::min(meminfo_available(), cgroup_headroom());
  if (const auto limit = configured_limit()) available = std::min(available, *limit);
  return available;
}

void require_memory(std::uint64_t bytes, std::string_view what, std::string_view fix) {
  if (bytes < kTooSmallToCheck && std::getenv(kMemoryLimitVariable) == nullptr) return;
  const std::uint64_t available = available_memory_bytes();
  if (bytes <= available) return;
  const char* limit = std::getenv(kMemoryLimitVariable);
  fail("{} needs {} of memory but only {} {}: {}", what, format_bytes(bytes), format_bytes(available),
       limit != nullptr ? fmt::format("may be used ({}={})", kMemoryLimitVariable, limit)
                        : std::string("are available on this machine"),
       fix);
}

void keep_freed_memory_for_reuse() {
#ifdef __GLIBC__
  // No allocation is served by its own mmap: glibc's threshold stops at 32 MiB, and a training batch's
  // larger activations were mapped, page-faulted in and unmapped again at every step. On this project's
  // 2-core VM that made a fused fake-quant pass over a 38 MB tensor 125 ms instead of 3.5 ms, and the INT8
  // QAT step 0.51x the FP32 step instead of 0.74x (docs/training-throughput.md).
  mallopt(M_MMAP_MAX, 0);
  // Give memory back to the kernel only when 1 GiB sits unused at the top of the heap, and grow it in
  // 256 MiB steps, so a training step's buffers are reused rather than faulted in again.
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
#endif
}

}  // namespace qnas
