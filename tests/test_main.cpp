// Every test binary's main: GoogleTest, with the allocator set up as in qnas's own main, so the training
// tests run at the speed (and with the memory behaviour) users get.
#include <gtest/gtest.h>

#include "core/memory.h"

int main(int argc, char** argv) {
  qnas::keep_freed_memory_for_reuse();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
