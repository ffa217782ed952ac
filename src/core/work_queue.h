#pragma once
// A work queue on disk: independent jobs that several processes, on one machine or on several sharing the
// directory, take one at a time. A job is claimed by creating "<name>.lock" exclusively (O_CREAT|O_EXCL is
// atomic, also on NFS v3+), the owner touches the lock while it works, and a lock whose owner died (same
// host, pid gone) or went silent (no touch for `stale_seconds`) is taken over, so a killed worker loses
// only the job it held. Whether a job is finished is the caller's business (its result file exists).
#include <filesystem>
#include <string>

namespace qnas {

class WorkQueue {
 public:
  WorkQueue(std::filesystem::path dir, double stale_seconds);
  // True when this process now holds `name`; false when a live worker holds it.
  bool claim(const std::string& name);
  // Tells the others this worker is alive.
  void heartbeat(const std::string& name) const;
  void release(const std::string& name) const;
  // The holder ("host pid") when `name` is locked, "" otherwise.
  std::string holder(const std::string& name) const;
  std::filesystem::path lock_path(const std::string& name) const { return dir_ / (name + ".lock"); }

 private:
  bool is_stale(const std::filesystem::path& lock) const;
  std::filesystem::path dir_;
  double stale_seconds_;
};

// This machine's host name.
std::string host_name();

}  // namespace qnas
