#pragma once
// Memory a job may use, checked before a large allocation, so a data set or LUT too big for this machine is
// refused up front with the number it needs instead of being killed by the OOM killer halfway through.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qnas {

// The environment variable that caps the memory qnas plans with (bytes, or with a K/M/G/T suffix); for
// machines shared with other jobs, and for tests.
inline constexpr const char* kMemoryLimitVariable = "QNAS_MEMORY_LIMIT";

// "812 MiB", "3.2 GiB": binary units, three significant digits.
std::string format_bytes(std::uint64_t bytes);

// "2G", "512M", "4096": the byte count, or nullopt when the text is not one.
std::optional<std::uint64_t> parse_bytes(std::string_view text);

// MemAvailable from /proc/meminfo, lowered by a cgroup memory limit (v2 or v1) and by QNAS_MEMORY_LIMIT.
std::uint64_t available_memory_bytes();

// Throws one qnas::Error when `bytes` exceed what is available: "`what` needs N but only M are available:
// fix". Requests below 16 MiB pass without a look unless QNAS_MEMORY_LIMIT is set (they cannot matter, and
// reading /proc on every small file would).
void require_memory(std::uint64_t bytes, std::string_view what, std::string_view fix);

// Keeps freed memory in the process for reuse instead of handing it back to the kernel after every free.
// glibc serves large blocks (a training step's activations: 100 MB for a MobileNetV2 block at batch 128) with
// mmap and returns them with munmap, so each step pays page faults and zeroing again: a depthwise-expanded
// network trained at 99 img/s, 40% of it in the kernel, and at 389 img/s with this. Call once, early in main.
// A no-op where the C library is not glibc.
void keep_freed_memory_for_reuse();

}  // namespace qnas
