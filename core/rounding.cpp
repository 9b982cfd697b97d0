// Spellings of rounding modes and overflow policies, parsed and printed.
#include "core/rounding.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "core/text.h"

namespace lattice {
namespace {

struct ModeName {
  const char* spelling;
  RoundingMode mode;
};
constexpr ModeName kModes[] = {
    {"rne", RoundingMode::nearest_even},    {"nearest-even", RoundingMode::nearest_even},
    {"rna", RoundingMode::nearest_away},    {"nearest-away", RoundingMode::nearest_away},
    {"rtz", RoundingMode::toward_zero},     {"toward-zero", RoundingMode::toward_zero},
    {"rup", RoundingMode::toward_positive}, {"toward-positive", RoundingMode::toward_positive},
    {"rdn", RoundingMode::toward_negative}, {"toward-negative", RoundingMode::toward_negative},
};

/// Lower case with '_' read as '-' (nearest_even == nearest-even).
std::string normalised(const std::string& text) {
  std::string s = lowercase(text);
  std::replace(s.begin(), s.end(), '_', '-');
  return s;
}

}  // namespace

Rounding parse_rounding(const std::string& text) {
  const std::string name = normalised(text);
  for (const auto& [spelling, mode] : kModes)
    if (name == spelling) return Rounding{.mode = mode};
  if (name.rfind("sr", 0) == 0) {
    const std::string digits = name.substr(2);
    const bool numeric = !digits.empty() && digits.size() <= 2 &&
                         std::all_of(digits.begin(), digits.end(), ::isdigit);
    const int bits = digits.empty() ? 32 : numeric ? std::stoi(digits) : 0;
    LATTICE_CHECK(bits >= 1 && bits <= 32, "[rounding] \"", text,
                  "\": stochastic rounding takes 1 to 32 random bits (sr, sr16, ...)");
    return Rounding{.mode = RoundingMode::stochastic, .random_bits = bits};
  }
  throw Error(concat("[rounding] unknown mode \"", text,
                     "\" (known: rne, rna, rtz, rup, rdn, sr, sr<N>; or nearest-even, "
                     "nearest-away, toward-zero, toward-positive, toward-negative)"));
}

Overflow parse_overflow(const std::string& text) {
  const std::string name = normalised(text);
  if (name == "standard") return Overflow::standard;
  if (name == "saturate" || name == "satfinite") return Overflow::saturate;
  if (name == "inf" || name == "infinity") return Overflow::infinity;
  if (name == "nan") return Overflow::nan;
  throw Error(concat("[rounding] unknown overflow policy \"", text,
                     "\" (known: standard, saturate, inf, nan)"));
}

std::string rounding_name(const Rounding& r) {
  if (r.mode == RoundingMode::stochastic)
    return r.random_bits == 32 ? "sr" : "sr" + std::to_string(r.random_bits);
  for (const auto& [spelling, mode] : kModes)
    if (mode == r.mode) return spelling;
  return "?";
}

std::string overflow_name(Overflow o) {
  switch (o) {
    case Overflow::standard:
      return "standard";
    case Overflow::saturate:
      return "saturate";
    case Overflow::infinity:
      return "inf";
    case Overflow::nan:
      return "nan";
  }
  return "?";
}

}  // namespace lattice
