// The on-disk work queue: exclusive claims, and locks of dead or silent workers taken over.
#include "core/work_queue.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include "test_util.h"

using namespace qnas;
namespace fs = std::filesystem;

TEST(WorkQueue, ClaimsAreExclusiveAndStaleLocksAreTaken) {
  const fs::path dir = fs::temp_directory_path() / "qnas-test-work-queue";
  fs::remove_all(dir);
  WorkQueue queue(dir, 3600);
  EXPECT_TRUE(queue.claim("a"));
  EXPECT_FALSE(queue.claim("a"));  // held by a live process: this one
  EXPECT_CONTAINS(queue.holder("a"), host_name());
  queue.release("a");
  EXPECT_TRUE(queue.claim("a"));
  // Another host's lock that nobody touched for longer than the limit is stale.
  std::ofstream(queue.lock_path("b")) << "elsewhere 42\n";
  EXPECT_FALSE(queue.claim("b"));
  fs::last_write_time(queue.lock_path("b"), fs::file_time_type::clock::now() - std::chrono::hours(2));
  EXPECT_TRUE(queue.claim("b"));
  EXPECT_CONTAINS(queue.holder("b"), host_name());
  // A lock of this host whose process is gone is stale at once.
  std::ofstream(queue.lock_path("c")) << host_name() << " 999999999\n";
  EXPECT_TRUE(queue.claim("c"));
  fs::remove_all(dir);
}
