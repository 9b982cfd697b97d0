// lattice::Error and LATTICE_CHECK: library errors carry the op and what was wrong, and are
// thrown, never printed or exited on.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace lattice {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace lattice

/// Throws lattice::Error with the concatenated message parts when `condition` is false.
#define LATTICE_CHECK(condition, ...)                                         \
  do {                                                                        \
    if (!(condition)) throw ::lattice::Error(::lattice::concat(__VA_ARGS__)); \
  } while (0)
