#pragma once
// A seeded generator whose draws are identical on every platform and standard library: std::mt19937_64
// is specified bit for bit, but std::uniform_int_distribution and std::shuffle are not.
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace qnas {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}

  // Uniform in [0, n) by rejection, so no value is favoured.
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t x;
    do {
      x = engine_();
    } while (x >= limit);
    return x % n;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

  template <typename T>
  const T& pick(const std::vector<T>& values) {
    return values[below(values.size())];
  }
  template <typename T>
  void shuffle(std::vector<T>& values) {
    for (std::size_t i = values.size(); i > 1; --i) std::swap(values[i - 1], values[below(i)]);
  }
  std::uint64_t next() { return engine_(); }

  // The full generator state as text, so a resumed job continues the exact same stream.
  std::string state() const {
    std::ostringstream out;
    out << engine_;
    return out.str();
  }
  void restore(const std::string& state) {
    std::istringstream in(state);
    in >> engine_;
  }

 private:
  std::mt19937_64 engine_;
};

// FNV-1a of a name: the same on every run, compiler and platform (std::hash is not), for seeds and file
// names.
inline std::uint64_t stable_hash(const std::string& text) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace qnas
