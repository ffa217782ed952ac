#include "core/work_queue.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace qnas {

namespace fs = std::filesystem;

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

WorkQueue::WorkQueue(fs::path dir, double stale_seconds)
    : dir_(std::move(dir)), stale_seconds_(stale_seconds) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail("cannot create the work directory {}: {}", dir_.string(), ec.message());
}

std::string WorkQueue::holder(const std::string& name) const {
  std::ifstream in(lock_path(name));
  std::string host, pid;
  if (!(in >> host >> pid)) return "";
  return host + " " + pid;
}

bool WorkQueue::is_stale(const fs::path& lock) const {
  std::ifstream in(lock);
  std::string host;
  long pid = 0;
  if (in >> host >> pid && host == host_name() && pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 &&
      errno == ESRCH) {
    return true;  // its owner on this machine is gone
  }
  std::error_code ec;
  const auto touched = fs::last_write_time(lock, ec);
  if (ec) return false;  // vanished meanwhile: the next claim attempt decides
  const double age = std::chrono::duration<double>(fs::file_time_type::clock::now() - touched).count();
  return age > stale_seconds_;
}

bool WorkQueue::claim(const std::string& name) {
  const fs::path lock = lock_path(name);
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int fd = ::open(lock.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd >= 0) {
      std::ostringstream text;
      text << host_name() << " " << ::getpid() << "\n";
      const std::string s = text.str();
      const bool written = ::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size());
      ::close(fd);
      if (!written) fail("cannot write the lock {}: is the disk full?", lock.string());
      return true;
    }
    if (errno != EEXIST) fail("cannot create the lock {}: {}", lock.string(), std::strerror(errno));
    if (!is_stale(lock)) return false;
    // Several workers may see the same stale lock: only the one whose rename succeeds retries the claim.
    const fs::path taken = lock.string() + ".stale." + std::to_string(::getpid());
    std::error_code ec;
    fs::rename(lock, taken, ec);
    if (ec) return false;
    fs::remove(taken, ec);
  }
  return false;
}

void WorkQueue::heartbeat(const std::string& name) const {
  std::error_code ec;
  fs::last_write_time(lock_path(name), fs::file_time_type::clock::now(), ec);
}

void WorkQueue::release(const std::string& name) const {
  std::error_code ec;
  fs::remove(lock_path(name), ec);
}

}  // namespace qnas
