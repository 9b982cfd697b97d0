// `lattice sweep --slurm`: a sweep as a Slurm job array, one array task per configuration,
// running the same trainer commands as the local runner; `--report-only` collects afterwards.
#pragma once

#include <string>

#include "tools/sweep.h"

namespace lattice::tools {

/// The resources each array task asks for (sbatch's options of the same names).
struct SlurmOptions {
  int cpus_per_task = 1;          // also the trainer's --threads
  std::string memory = "8G";      // --mem
  std::string time = "24:00:00";  // --time
  std::string partition = {};     // --partition, when set
  std::string account = {};       // --account, when set
  int gpus_per_task = 0;          // --gpus-per-task, when positive
  int max_parallel = 0;           // the array's %limit: tasks running at once (0: no limit)
};

/// Writes RUN_ROOT/sweep.sbatch (and creates RUN_ROOT/slurm/ for the tasks' logs) and returns
/// its path. Task i runs expansion.runs[i] unless its folder already holds a summary.json, with
/// stdout and stderr in the run's train.log and, when it fails, error.txt as the local runner
/// writes them. Paths in the script are absolute. Throws lattice::Error on a bad option value.
std::string write_slurm_script(const SweepSpec& spec,
                               const Expansion& expansion,
                               const SweepOptions& options,
                               const SlurmOptions& slurm);

}  // namespace lattice::tools
