#include "core/progress.h"

#include <cstdio>
#include <string>

#include <gtest/gtest.h>

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(qnas::ProgressLine::format_duration(12.44), "12.4s");
  EXPECT_EQ(qnas::ProgressLine::format_duration(187), "3m07s");
  EXPECT_EQ(qnas::ProgressLine::format_duration(3720), "1h02m");
  EXPECT_EQ(qnas::ProgressLine::format_duration(-1), "?");
}

TEST(Progress, FinishPrintsRateAndCount) {
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  {
    qnas::ProgressLine progress("search", 10, "spaces", file);
    progress.update(5);
    progress.finish("best 1.23");
  }
  std::rewind(file);
  char buffer[512] = {};
  std::string text;
  while (std::fgets(buffer, sizeof(buffer), file)) text += buffer;
  std::fclose(file);
  EXPECT_NE(text.find("search 10/10 (100.0%)"), std::string::npos) << text;
  EXPECT_NE(text.find("spaces/s"), std::string::npos) << text;
  EXPECT_NE(text.find("best 1.23"), std::string::npos) << text;
}
