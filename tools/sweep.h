// `lattice sweep`: a TOML file names a trainer, fixed flags, a base precision stack, a grid of
// axes and baselines; the grid is expanded under the FP4 appendix's conditional rules (Table 10)
// and each configuration runs as its own trainer process in a folder named from its config.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lattice::tools {

/// One axis of a grid: a precision-stack knob (kStackAxes) or a trainer flag (anything else,
/// passed as --name-with-dashes VALUE), with its values as text (booleans as true/false).
struct Axis {
  std::string name = {};
  std::vector<std::string> values = {};
};

/// The stack knobs an axis may name: `stack` (a whole spec), the block-scaled GEMM operands'
/// quantizer options and the GEMM recipe keys of the precision-stack spec.
extern const std::vector<std::string> kStackAxes;

/// Configurations matching every listed axis value are left out of the grid.
struct SkipRule {
  std::vector<Axis> match = {};
};

/// Runs outside the grid (the bf16 and fp32 references); their axes form a small grid of their own.
struct Baseline {
  std::string name = {};
  std::string stack = {};
  std::vector<Axis> axes = {};
};

/// The most runs one sweep file may expand to (the appendix's largest sweeps are thousands).
inline constexpr uint64_t kMaxSweepPoints = 100000;

struct SweepSpec {
  std::string file = {};     // the TOML path, for messages
  std::string trainer = {};  // a name next to the lattice binary, or a path
  std::string dataset = {};  // label of the table rows (default: the trainer's name)
  std::string out = {};      // output root
  std::string stack = "fp32";
  std::vector<std::pair<std::string, std::string>> flags = {};  // fixed trainer flags
  std::vector<Axis> grid = {};
  std::vector<Baseline> baselines = {};
  std::vector<SkipRule> skips = {};
  int jobs = 1;
};

/// Parses a sweep file; the message of a lattice::Error names the file, the line where toml++
/// knows it, and the key: "[sweep] sweeps/x.toml:4: grid.lr: expected a number or string ...".
SweepSpec parse_sweep_file(const std::string& path);
/// The same from text; `file` names it in messages and anchors relative paths.
SweepSpec parse_sweep_text(const std::string& text, const std::string& file);

/// One run of the sweep.
struct RunConfig {
  std::string id = {};    // folder name: readable slug + "-" + 8 hex digits of the config's hash
  std::string role = {};  // "grid" or "baseline"
  std::string baseline = {};  // the baseline's name (role "baseline")
  std::map<std::string, std::string> values =
      {};                               // each axis' effective value; "" = not applicable
  std::string stack = {};               // canonical precision-stack spec
  std::vector<std::string> flags = {};  // trainer arguments but --stack/--out/--threads
};

struct Expansion {
  std::vector<RunConfig> runs = {};
  std::vector<std::string> axes = {};  // every axis name, grid first, then baseline-only axes
  int64_t grid_points = 0;             // before rules and deduplication
  int64_t skipped_by_rules = 0;        // left out by Table 10 rules and [[skip]] tables
  int64_t duplicates = 0;              // configurations the rules made identical to an earlier one
};

/// Expands grid and baselines. Per configuration: the `stack` axis (or the file's stack) is
/// parsed; quantizer options (scale, block, rule, scale_round, tensor_scale, zero) apply to
/// every block-scaled GEMM operand and the gemm.* keys to the recipe, neither to a stack
/// without block-scaled operands (there they are "not applicable"); then the conditional rules
/// of Table 10 hold (see sweep.cpp) and [[skip]] tables drop matches. Throws lattice::Error.
Expansion expand_sweep(const SweepSpec& spec);

/// The trainer's executable: a path as written (relative to the working directory), or a name
/// found next to `tool_dir` (the lattice binary's folder).
std::string resolve_trainer(const std::string& trainer, const std::string& tool_dir);

/// Checks every trainer flag of the sweep against the trainer's --help. Throws lattice::Error
/// "[sweep] FILE: grid.name: the trainer mnist has no flag --name".
void check_trainer_flags(const SweepSpec& spec, const std::string& trainer_path);

struct SweepOptions {
  int jobs = 0;                   // 0: the file's `jobs`
  std::string out = {};           // overrides the file's output root
  std::string trainer_path = {};  // resolved executable
  int cores = 0;                  // 0: hardware_concurrency
};

/// One run's trainer command as the local runner and the Slurm script start it, less the
/// --threads each of them adds: TRAINER FLAGS... --stack SPEC --out RUN_DIR.
std::vector<std::string> run_command(const RunConfig& run,
                                     const std::string& trainer_path,
                                     const std::string& run_dir);

/// Runs every configuration without a summary.json in its folder, `jobs` at a time, each with
/// --threads max(1, cores / jobs); writes command.txt and train.log in the run folder, and
/// error.txt (exit status and the log's tail) when a run fails. Progress goes to stderr.
/// Returns the number of failed runs.
int run_sweep(const SweepSpec& spec, const Expansion& expansion, const SweepOptions& options);

/// The output root: options.out if set, else the file's.
std::string output_root(const SweepSpec& spec, const SweepOptions& options);

}  // namespace lattice::tools
