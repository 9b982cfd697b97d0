// Child processes for the tools: spawning a program with its output sent to a log file,
// waiting for one or all of them, and the small text helpers around command lines.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace lattice::tools {

/// Starts argv[0] (a path, or a name looked up in PATH) with stdout and stderr appended to
/// `log_path` (created or truncated). Throws lattice::Error when it cannot be started.
pid_t spawn_logged(const std::vector<std::string>& argv, const std::string& log_path);

/// How a child ended: its exit code, or the signal that killed it.
struct ExitStatus {
  pid_t pid = -1;
  int code = -1;   // exit code, -1 when killed by a signal
  int signal = 0;  // the killing signal, 0 when it exited
  bool ok() const {
    return code == 0;
  }
  std::string text() const;  // "exit status 1" or "killed by signal 9"
};

/// Waits for any child of this process.
ExitStatus wait_any();
/// Runs argv to completion with its output in log_path.
ExitStatus run_logged(const std::vector<std::string>& argv, const std::string& log_path);

/// The command as a POSIX shell line (each argument quoted where it needs to be).
std::string shell_line(const std::vector<std::string>& argv);
/// The last `lines` lines of a text file ("" if it cannot be read).
std::string file_tail(const std::string& path, int lines);
/// The folder holding the running executable (/proc/self/exe).
std::string executable_dir();

}  // namespace lattice::tools
