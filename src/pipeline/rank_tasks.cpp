#include "pipeline/rank_tasks.h"

#include <fmt/format.h>

#include <exception>
#include <thread>

#include "core/error.h"

namespace qnas::pipeline {

namespace {

std::string task_key(std::int64_t n) {
  return fmt::format("run/task/{}", n);
}

}  // namespace

RankTasks::RankTasks(dist::ProcessGroup& group) : group_(group) {}

RankTasks::~RankTasks() {
  if (group_.rank() != 0 || finished_) return;
  try {
    publish({{"kind", "stop"}, {"why", "rank 0 stopped (its log says why)"}});
  } catch (const std::exception&) {
  }
}

void RankTasks::publish(const nlohmann::json& task) {
  group_.set(task_key(count_++), task.dump());
}

// The store lives in rank 0's process: it must not exit before every rank has read its last word.
void RankTasks::wait_for_others(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (group_.add("run/read_last_task", 0) < group_.world_size() - 1 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void RankTasks::finish() {
  publish({{"kind", "done"}});
  finished_ = true;
  wait_for_others(std::chrono::minutes(1));
}

void RankTasks::stop(const std::string& why) {
  finished_ = true;
  try {
    publish({{"kind", "stop"}, {"why", "rank 0 stopped: " + why}});
    wait_for_others(std::chrono::seconds(5));
  } catch (const std::exception&) {  // the error being reported matters more than this one
  }
}

nlohmann::json RankTasks::next(std::chrono::milliseconds poll) {
  const std::string key = task_key(count_);
  while (!group_.has(key)) std::this_thread::sleep_for(poll);
  ++count_;
  const nlohmann::json task = nlohmann::json::parse(group_.get(key));
  if (task.at("kind") == "stop" || task.at("kind") == "done") group_.add("run/read_last_task", 1);
  if (task.at("kind") == "stop")
    fail("rank {}: {}; start every rank again to resume", group_.rank(), task.at("why").get<std::string>());
  return task;
}

}  // namespace qnas::pipeline
