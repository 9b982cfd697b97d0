// Small text helpers shared by the parsers of format, rounding and quantizer names.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>

namespace lattice {

/// `s` in lower case (names are matched case-insensitively).
inline std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace lattice
