// The sbatch job-array script of a sweep (see slurm.h).
#include "tools/slurm.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <regex>

#include "core/error.h"
#include "tools/process.h"

namespace lattice::tools {
namespace {

namespace fs = std::filesystem;

void check_value(const std::string& value,
                 const char* pattern,
                 const char* option,
                 const char* expected) {
  LATTICE_CHECK(std::regex_match(value, std::regex(pattern)), "[sweep] --", option, " \"", value,
                "\": expected ", expected);
}

}  // namespace

std::string write_slurm_script(const SweepSpec& spec,
                               const Expansion& expansion,
                               const SweepOptions& options,
                               const SlurmOptions& slurm) {
  LATTICE_CHECK(!expansion.runs.empty(), "[sweep] ", spec.file, ": no runs to submit");
  LATTICE_CHECK(slurm.cpus_per_task >= 1, "[sweep] --cpus-per-task ", slurm.cpus_per_task,
                ": expected a positive integer");
  LATTICE_CHECK(slurm.gpus_per_task >= 0 && slurm.max_parallel >= 0, "[sweep] --gpus-per-task ",
                slurm.gpus_per_task, " and --max-parallel ", slurm.max_parallel,
                ": expected non-negative integers");
  check_value(slurm.memory, R"(\d+[KMGT]?)", "mem", "a size such as 8G or 16000M");
  check_value(slurm.time, R"((\d+-)?\d+(:\d{2}){0,2})", "time", "minutes, HH:MM:SS or D-HH:MM:SS");
  if (!slurm.partition.empty())
    check_value(slurm.partition, R"([A-Za-z0-9_.,-]+)", "partition", "a partition name");
  if (!slurm.account.empty())
    check_value(slurm.account, R"([A-Za-z0-9_.-]+)", "account", "an account name");

  const fs::path root = fs::absolute(output_root(spec, options)).lexically_normal();
  // #SBATCH lines take no quoting, and '%' starts a file-name pattern there.
  LATTICE_CHECK(std::regex_match(root.string(), std::regex(R"([^\s%]+)")), "[sweep] output root \"",
                root.string(), "\": a Slurm script needs a path without spaces or '%'");
  fs::create_directories(root / "slurm");
  const fs::path script_path = root / "sweep.sbatch";
  const std::string array_limit =
      slurm.max_parallel > 0 ? concat("%", slurm.max_parallel) : std::string();
  std::ofstream script(script_path);
  LATTICE_CHECK(script.good(), "[sweep] cannot write ", script_path.string());

  std::string name = "lattice-" + fs::path(spec.file).stem().string();
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  script << "#!/bin/bash\n"
         << "# Lattice sweep " << spec.file << " as a Slurm job array: " << expansion.runs.size()
         << " runs, one array task each.\n"
         << "# Submit: sbatch " << shell_line({script_path.string()}) << "\n"
         << "# Then collect: lattice sweep " << shell_line({spec.file}) << " --report-only --out "
         << shell_line({root.string()}) << "\n"
         << "#SBATCH --job-name=" << name << "\n"
         << "#SBATCH --array=0-" << expansion.runs.size() - 1 << array_limit << "\n"
         << "#SBATCH --cpus-per-task=" << slurm.cpus_per_task << "\n"
         << "#SBATCH --mem=" << slurm.memory << "\n"
         << "#SBATCH --time=" << slurm.time << "\n";
  if (!slurm.partition.empty()) script << "#SBATCH --partition=" << slurm.partition << "\n";
  if (!slurm.account.empty()) script << "#SBATCH --account=" << slurm.account << "\n";
  if (slurm.gpus_per_task > 0) script << "#SBATCH --gpus-per-task=" << slurm.gpus_per_task << "\n";
  // sbatch takes #SBATCH lines only before the first command, and no quoting in them.
  script << "#SBATCH --output=" << (root / "slurm" / "%A_%a.out").string() << "\n"
         << "set -uo pipefail\n"
         << "threads=\"${SLURM_CPUS_PER_TASK:-" << slurm.cpus_per_task << "}\"\n"
         << "case \"${SLURM_ARRAY_TASK_ID:?run this script with sbatch (an array task)}\" in\n";
  for (size_t i = 0; i < expansion.runs.size(); ++i) {
    const RunConfig& run = expansion.runs[i];
    const std::string dir = (root / run.id).string();
    script << "  " << i << ") dir=" << shell_line({dir}) << "; set -- "
           << shell_line(run_command(run, options.trainer_path, dir)) << " ;;\n";
  }
  // The same steps as the local runner: skip a finished run (a summary.json with a status),
  // start an interrupted one over, keep the log, and leave error.txt (status and the log's
  // tail) when it fails.
  script << "  *) echo \"no run for array task $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;\n"
         << "esac\n"
         << "finished() { grep -qs '\"status\"' \"$dir/summary.json\"; }\n"
         << "if finished; then echo \"$dir: finished before\"; exit 0; fi\n"
         << "mkdir -p \"$dir\" && rm -f \"$dir/error.txt\" \"$dir/summary.json.partial\"\n"
         << "set -- \"$@\" --threads \"$threads\"\n"
         << "printf '%q ' \"$@\" > \"$dir/command.txt\" && echo >> \"$dir/command.txt\"\n"
         << "status=0\n"
         << "\"$@\" > \"$dir/train.log\" 2>&1 || status=$?\n"
         << "if [ \"$status\" -ne 0 ] || ! finished; then\n"
         << "  { if [ \"$status\" -ne 0 ]; then echo \"exit status $status\";\n"
         << "    else echo \"exit status 0 but no summary.json with a status\"; fi\n"
         << "    tail -n 20 \"$dir/train.log\"; } > \"$dir/error.txt\"\n"
         << "  echo \"$dir: FAILED, see $dir/error.txt\" >&2\n"
         << "  exit 1\n"
         << "fi\n"
         << "echo \"$dir: finished\"\n";
  script.close();
  LATTICE_CHECK(!script.fail(), "[sweep] cannot write ", script_path.string());
  fs::permissions(script_path, fs::perms::owner_exec, fs::perm_options::add);
  return script_path.string();
}

}  // namespace lattice::tools
