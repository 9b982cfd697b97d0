// Test support for programs run as processes (the lattice tool, the trainers): a scratch
// directory removed at exit, and run_program capturing exit status, stdout and stderr.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace lattice::test {

struct ProgramResult {
  int status = -1;
  std::string out, err;
};

/// A directory for this test process's files, removed at exit.
inline const std::filesystem::path& scratch_dir() {
  struct Dir {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("lattice_test_" + std::to_string(getpid()));
    Dir() {
      std::filesystem::create_directories(path);
    }
    ~Dir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  };
  static const Dir dir;
  return dir.path;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Runs `'program' args` (args as a shell would split them) with `input` on stdin.
inline ProgramResult run_program(const std::string& program,
                                 const std::string& args,
                                 const std::string& input = "") {
  static int call = 0;
  const std::filesystem::path base = scratch_dir() / ("call" + std::to_string(call++));
  const std::string in = base.string() + ".in", out = base.string() + ".out",
                    err = base.string() + ".err";
  std::ofstream(in, std::ios::binary) << input;
  const std::string command =
      "'" + program + "' " + args + " <'" + in + "' >'" + out + "' 2>'" + err + "'";
  const int status = std::system(command.c_str());
  REQUIRE(WIFEXITED(status));
  return ProgramResult{WEXITSTATUS(status), read_file(out), read_file(err)};
}

}  // namespace lattice::test
