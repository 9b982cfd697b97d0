// Shared by the fuzz targets: a scratch file per process for parsers that take paths, and the
// rule that lattice::Error is the parsers' expected answer to bad input (anything else that
// escapes, a crash or a sanitizer report is a finding).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/error.h"

namespace lattice::fuzz {

/// A folder of this process's own under the system temp dir, removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const struct Dir {
    std::filesystem::path path;
    Dir() {
      path = std::filesystem::temp_directory_path() / concat("lattice-fuzz-", ::getpid());
      std::filesystem::create_directories(path);
    }
    ~Dir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } dir;
  return dir.path;
}

/// Writes `bytes` to scratch_dir()/name and returns the path.
inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = (scratch_dir() / name).string();
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) __builtin_trap();  // the harness itself is broken, not the parser
  if (size != 0 && std::fwrite(data, 1, size, file) != size) __builtin_trap();
  std::fclose(file);
  return path;
}

/// Runs `parse`, treating lattice::Error as the documented rejection of bad input.
template <typename F>
void expect_error_or_success(F&& parse) {
  try {
    parse();
  } catch (const Error&) {
  }
}

/// A round-trip or invariant violation: abort so that libFuzzer saves the input.
#define FUZZ_CHECK(condition, ...)                                    \
  do {                                                                \
    if (!(condition)) {                                               \
      std::fprintf(stderr, "fuzz check failed: %s: %s\n", #condition, \
                   ::lattice::concat(__VA_ARGS__).c_str());           \
      __builtin_trap();                                               \
    }                                                                 \
  } while (0)

}  // namespace lattice::fuzz
