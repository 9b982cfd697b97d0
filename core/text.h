// Small text helpers shared by the parsers of format, rounding, quantizer and stack names.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace lattice {

/// `s` in lower case (names are matched case-insensitively).
inline std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

/// The pieces of `text` between `separator`s (n separators give n + 1 pieces, empty ones kept).
inline std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t end; (end = text.find(separator, start)) != std::string::npos; start = end + 1)
    parts.push_back(text.substr(start, end - start));
  parts.push_back(text.substr(start));
  return parts;
}

}  // namespace lattice
