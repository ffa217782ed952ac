#include "core/memory.h"

#include <cstdlib>
#include <filesystem>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <gtest/gtest.h>

#include "core/fs.h"
#include "test_util.h"

namespace fs = std::filesystem;
using qnas::testing::error_message;
using qnas::testing::ScopedEnvironment;

TEST(Memory, ParsesByteCounts) {
  EXPECT_EQ(qnas::parse_bytes("4096"), 4096u);
  EXPECT_EQ(qnas::parse_bytes("512M"), 512u << 20);
  EXPECT_EQ(qnas::parse_bytes("8g"), 8ull << 30);
  EXPECT_EQ(qnas::parse_bytes("8GB"), 8ull << 30);
  EXPECT_EQ(qnas::parse_bytes("2T"), 2ull << 40);
  for (const char* bad : {"", "M", "12Q", "1.5G", "-3", "99999999999999999999", "20000000000T", "4 G"}) {
    EXPECT_FALSE(qnas::parse_bytes(bad)) << bad;
  }
}

TEST(Memory, FormatsBytesInBinaryUnits) {
  EXPECT_EQ(qnas::format_bytes(512), "512 B");
  EXPECT_EQ(qnas::format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(qnas::format_bytes(47040016), "44.9 MiB");
  EXPECT_EQ(qnas::format_bytes(3ull << 40), "3.00 TiB");
}

TEST(Memory, TheMachineHasSomeAndTheVariableCapsIt) {
  const std::uint64_t machine = qnas::available_memory_bytes();
  EXPECT_GT(machine, 16u << 20);
  ScopedEnvironment limit(qnas::kMemoryLimitVariable, "1M");
  EXPECT_EQ(qnas::available_memory_bytes(), 1u << 20);
}

TEST(Memory, ARequestAboveTheLimitIsRefusedWithBothNumbers) {
  ScopedEnvironment limit(qnas::kMemoryLimitVariable, "1M");
  qnas::require_memory(1000, "a small table", "nothing");
  const std::string message =
      error_message([] { qnas::require_memory(3u << 20, "the block LUTs in /x", "load fewer files"); });
  EXPECT_CONTAINS(message, "the block LUTs in /x needs 3.00 MiB of memory but only 1.00 MiB may be used");
  EXPECT_CONTAINS(message, "QNAS_MEMORY_LIMIT=1M");
  EXPECT_CONTAINS(message, "load fewer files");
}

TEST(Memory, AMalformedLimitIsOneClearError) {
  ScopedEnvironment limit(qnas::kMemoryLimitVariable, "lots");
  EXPECT_CONTAINS(error_message([] { qnas::available_memory_bytes(); }),
                  "QNAS_MEMORY_LIMIT=lots is not a byte count");
}

// A file is refused before it is read, not after the allocation that would exhaust the machine.
TEST(Memory, AFileTooLargeIsRefusedBeforeReading) {
  const fs::path path = fs::temp_directory_path() / "qnas_test_core_memory" / "big.json";
  qnas::write_file_atomic(path, "[" + std::string(200000, ' ') + "1]");
  ScopedEnvironment limit(qnas::kMemoryLimitVariable, "100K");
  EXPECT_CONTAINS(error_message([&] { qnas::read_text_file(path); }),
                  "reading " + path.string() + " needs 195 KiB");
  ScopedEnvironment larger(qnas::kMemoryLimitVariable, "1M");
  EXPECT_CONTAINS(error_message([&] { qnas::read_json_file(path); }),
                  "parsing " + path.string() + " needs 1.91 MiB");
}

#ifdef __GLIBC__
// A 16 MiB block, the size of a training step's activation, comes from the heap and stays there when freed,
// instead of an mmap the kernel faults in and zeroes on every step.
TEST(Memory, FreedLargeBlocksStayInTheProcessForReuse) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer replaces glibc's allocator: mallopt and mallinfo2 do not apply";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "AddressSanitizer replaces glibc's allocator: mallopt and mallinfo2 do not apply";
#endif
#endif
  qnas::keep_freed_memory_for_reuse();
  const auto mapped_before = mallinfo2().hblkhd;
  void* block = std::malloc(std::size_t{16} << 20);
  ASSERT_NE(block, nullptr);
  static_cast<volatile char*>(block)[0] = 1;
  EXPECT_EQ(mallinfo2().hblkhd, mapped_before) << "a 16 MiB block was served by mmap";
  std::free(block);
  const auto heap_after_free = mallinfo2().arena;
  EXPECT_GE(heap_after_free, std::size_t{16} << 20) << "the freed block was handed back to the kernel";
}
#endif
