// Helpers for the data/ tests: a temporary directory removed on scope exit, the message
// of the lattice::Error an expression throws, and a substring check that shows the text.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/error.h"

namespace lattice::test {

/// Whether `text` contains `part`; says what it got when not, for the failing CHECK.
inline bool contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return true;
  MESSAGE("\"", text, "\" does not contain \"", part, "\"");
  return false;
}

class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() / concat("lattice_", name, "_", ::getpid())) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const {
    return (path_ / name).string();
  }
  const std::filesystem::path& path() const {
    return path_;
  }

 private:
  std::filesystem::path path_;
};

/// The message of the lattice::Error that `run` throws; "" (and a failed check) otherwise.
template <typename Run>
std::string error_message(Run&& run) {
  try {
    run();
  } catch (const Error& error) {
    const std::string message = error.what();
    CHECK_MESSAGE(message.find('\n') == std::string::npos, "not one line: ", message);
    return message;
  } catch (const std::exception& other) {
    FAIL_CHECK("threw a non-lattice exception: ", other.what());
    return "";
  }
  FAIL_CHECK("did not throw");
  return "";
}

}  // namespace lattice::test
