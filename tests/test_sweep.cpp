// `lattice sweep` and `lattice plot`: grid expansion under Table 10's conditional rules, stable
// run ids, TOML errors, the runner (resume, failed and diverged runs) with a scripted trainer,
// Score / Table 3 rows / Pareto frontier on synthetic results, and a real trainer end to end.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"
#include "process_support.h"
#include "tools/plot.h"
#include "tools/slurm.h"
#include "tools/sweep.h"
#include "tools/sweep_report.h"

namespace {

namespace fs = std::filesystem;
using namespace lattice::tools;

using lattice::test::read_file;
using lattice::test::scratch_dir;

Expansion expand(const std::string& toml) {
  return expand_sweep(parse_sweep_text(toml, "test.toml"));
}

const RunConfig* find_run(const Expansion& e, const std::string& axis, const std::string& value) {
  const auto it = std::find_if(e.runs.begin(), e.runs.end(), [&](const RunConfig& r) {
    const auto v = r.values.find(axis);
    return v != r.values.end() && v->second == value;
  });
  return it == e.runs.end() ? nullptr : &*it;
}

/// The message of the lattice::Error that parsing `toml` throws ("" if none).
std::string parse_error(const std::string& toml) {
  try {
    expand(toml);
  } catch (const lattice::Error& e) {
    return e.what();
  }
  return "";
}

int count_lines(const std::string& text) {
  return int(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

TEST_CASE("a grid expands to every combination, trainer flags in file order") {
  const Expansion e = expand(R"(
trainer = "mnist"
stack = "pure-fp4-e8m0"
[flags]
steps = 10
lr = 0.002
[grid]
optimizer = ["adam", "stablespam"]
gemm.sr = ["none", "backward"]
)");
  CHECK(e.grid_points == 4);
  REQUIRE(e.runs.size() == 4);
  CHECK(e.axes == std::vector<std::string>{"optimizer", "gemm.sr"});
  CHECK(e.runs[0].flags ==
        std::vector<std::string>{"--steps", "10", "--lr", "0.002", "--optimizer", "adam"});
  CHECK(e.runs[0].stack == "gemm=e2m1:rule=encode");
  CHECK(e.runs[1].stack == "gemm=e2m1:rule=encode,gemm.sr=backward");
}

TEST_CASE("Table 10 rule: a tensor-scale gradient without tensor scaling is the same run") {
  const Expansion e = expand(R"(
trainer = "mnist"
stack = "pure-fp4-e4m3"
[grid]
tensor_scale = [false, true]
gemm.ts_grad = ["ignore", "absmax", "ste"]
)");
  CHECK(e.grid_points == 6);
  CHECK(e.duplicates == 2);
  REQUIRE(e.runs.size() == 4);
  const RunConfig* plain = find_run(e, "tensor_scale", "false");
  REQUIRE(plain);
  CHECK(plain->stack == "gemm=e2m1:b16:scale=e4m3:rule=encode");
  CHECK(plain->values.at("gemm.ts_grad") == "");  // not applicable
  CHECK(find_run(e, "gemm.ts_grad", "absmax")->stack ==
        "gemm=e2m1:b16:scale=e4m3:rule=encode:ts,gemm.ts_grad=absmax");
}

TEST_CASE("Table 10 rule: the scale gradient acts only through a non-STE max approximation") {
  const Expansion e = expand(R"(
trainer = "mnist"
stack = "pure-fp4-e8m0"
[grid]
gemm.max = ["ste", "absmax"]
gemm.scale_grad = ["ste", "spline"]
)");
  CHECK(e.duplicates == 1);
  REQUIRE(e.runs.size() == 3);
  CHECK(e.runs[0].stack == "gemm=e2m1:rule=encode");
  CHECK(e.runs[1].stack == "gemm=e2m1:rule=encode,gemm.max=absmax");
  CHECK(e.runs[2].stack == "gemm=e2m1:rule=encode,gemm.max=absmax,gemm.scale_grad=spline");
}

TEST_CASE("Table 10 rule: soft max approximations pair with ignore or STE tensor gradients only") {
  const Expansion e = expand(R"(
trainer = "mnist"
stack = "pure-fp4-e4m3"
[grid]
tensor_scale = true
gemm.max = ["hardsoftmax", "absmax"]
gemm.ts_grad = ["absmax", "ste"]
)");
  CHECK(e.skipped_by_rules == 1);  // hardsoftmax with absmax
  CHECK(e.runs.size() == 3);
}

TEST_CASE("alpha applies to the soft max approximations only") {
  const Expansion e = expand(R"(
trainer = "mnist"
stack = "pure-fp4-e8m0"
[grid]
gemm.max = ["ste", "softsoftmax"]
gemm.alpha = [40, 80]
)");
  CHECK(e.duplicates == 1);
  REQUIRE(e.runs.size() == 3);
  CHECK(e.runs[0].values.at("gemm.alpha") == "");
  CHECK(e.runs[1].stack == "gemm=e2m1:rule=encode,gemm.max=softsoftmax,gemm.alpha=40");
}

TEST_CASE("a scale format brings Table 3's block size (32 for E8M0, 16 otherwise) unless set") {
  Expansion e = expand(R"(
trainer = "mnist"
stack = "pure-fp4-e8m0"
[grid]
scale = ["e8m0", "e4m3"]
)");
  REQUIRE(e.runs.size() == 2);
  CHECK(e.runs[0].stack == "gemm=e2m1:rule=encode");
  CHECK(e.runs[1].stack == "gemm=e2m1:b16:scale=e4m3:rule=encode");
  e = expand(R"(
trainer = "mnist"
stack = "pure-fp4-e8m0"
[grid]
scale = "e4m3"
block = 32
)");
  REQUIRE(e.runs.size() == 1);
  CHECK(e.runs[0].stack == "gemm=e2m1:scale=e4m3:rule=encode");
}

TEST_CASE("stack knobs do not apply to a stack without block-scaled GEMM operands") {
  const Expansion e = expand(R"(
trainer = "mnist"
[grid]
stack = ["bf16", "pure-fp4-e8m0"]
scale = ["e8m0", "e4m3"]
gemm.sr = ["none", "all"]
)");
  CHECK(e.grid_points == 8);
  CHECK(e.duplicates == 3);  // bf16 once
  REQUIRE(e.runs.size() == 5);
  CHECK(e.runs[0].stack == "w=bf16,a=bf16,g=bf16");
  CHECK(e.runs[0].values.at("scale") == "");
  CHECK(e.runs[0].values.at("gemm.sr") == "");
}

TEST_CASE("[[skip]] tables drop matching points; baselines run outside the grid") {
  const Expansion e = expand(R"(
trainer = "mnist"
stack = "pure-fp4-e8m0"
[grid]
optimizer = ["adam", "stablespam"]
loss_scale = ["none", "dynamic"]
[[skip]]
optimizer = "stablespam"
loss_scale = "dynamic"
[[baselines]]
stack = "bf16"
optimizer = ["adam", "stablespam"]
)");
  CHECK(e.skipped_by_rules == 1);
  REQUIRE(e.runs.size() == 5);
  CHECK(e.runs[0].role == "baseline");
  CHECK(e.runs[0].baseline == "bf16");
  CHECK(e.runs[0].id.starts_with("baseline-bf16_optimizer-adam-"));
  CHECK(e.runs[1].flags == std::vector<std::string>{"--optimizer", "stablespam"});
  for (const RunConfig& r : e.runs) {
    const bool both = r.values.count("optimizer") && r.values.at("optimizer") == "stablespam" &&
                      r.values.count("loss_scale") && r.values.at("loss_scale") == "dynamic";
    CHECK_FALSE(both);
  }
}

TEST_CASE("run ids are readable, stable across expansions and change with the config") {
  const std::string toml = R"(
trainer = "mnist"
stack = "pure-fp4-e8m0"
[flags]
steps = 10
[grid]
scale = ["e8m0", "e4m3"]
tensor_scale = [false, true]
)";
  const Expansion a = expand(toml), b = expand(toml);
  REQUIRE(a.runs.size() == 4);
  for (size_t i = 0; i < a.runs.size(); ++i) CHECK(a.runs[i].id == b.runs[i].id);
  CHECK(a.runs[3].id.starts_with("scale-e4m3_ts-"));
  CHECK(a.runs[3].id.size() == std::string("scale-e4m3_ts-").size() + 8);
  std::string changed = toml;
  changed.replace(changed.find("steps = 10"), 10, "steps = 11");
  CHECK(expand(changed).runs[0].id != a.runs[0].id);
}

TEST_CASE("sweep file errors are one line naming the file, line and key") {
  const auto check_error = [](const std::string& toml, const std::string& expected) {
    const std::string message = parse_error(toml);
    CAPTURE(message);
    CAPTURE(expected);
    CHECK(message.find(expected) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
    CHECK(message.starts_with("[sweep] test.toml"));
  };
  check_error("trainer = \"mnist\"\nepochs = 3\n", "test.toml:2: epochs: unknown key");
  check_error("trainer = 3\n", "test.toml:1: trainer: expected a string, got an integer");
  check_error("trainer = \"mnist\"\n[grid]\nlr = [[1, 2]]\n", "grid.lr: expected a string, number");
  check_error("trainer = \"mnist\"\n[grid]\nlr = []\n",
              "grid.lr: an axis needs at least one value");
  check_error("trainer = \"mnist\"\n[grid]\ngemm.srr = [\"all\"]\n",
              "grid.gemm.srr: unknown GEMM key");
  check_error("trainer = \"mnist\"\n[flags]\nout = \"x\"\n", "flags.out: the sweep sets --out");
  check_error("trainer = \"mnist\"\njobs = \"two\"\n", "jobs: expected a positive integer");
  check_error("trainer = \"mnist\"\n[grid]\nscale = \"e9m9\"\n",
              "test.toml: grid.scale: \"e9m9\": ");
  check_error("trainer = \"mnist\"\n[grid]\ngemm.sr = [\"none\", \"al\"]\n",
              "grid.gemm.sr: \"al\": [stack]");
  check_error("trainer = \"mnist\"\n[[skip]]\nlr = 1\n", "skip.lr: not an axis of [grid]");
  check_error("trainer = \"mnist\"\n[grid\n", "test.toml:2:");
  check_error("[grid]\nlr = 1\n", "trainer: missing");

  // 256^4 (4 billion) points are refused before any is built, naming the axis sizes.
  std::string huge = "trainer = \"mnist\"\n[grid]\n";
  for (const char* axis : {"lr", "seed", "batch", "clip"}) {
    huge += std::string(axis) + " = [";
    for (int i = 1; i <= 256; ++i) huge += std::to_string(i) + (i < 256 ? ", " : "]\n");
  }
  check_error(huge, "[grid] has 256 x 256 x 256 x 256 points, more than the limit of 100000");
}

// ---- The runner, with a scripted trainer ----

namespace {

/// A trainer stand-in: --mode ok writes a finished summary, nan a diverged one, fail exits 3
/// after printing to stderr; empty, cut and nostatus exit 0 with a summary that is empty, cut
/// short or without a status (what a full disk or a crash leaves). Every start is counted in its
/// output folder's parent.
fs::path fake_trainer() {
  const fs::path path = scratch_dir() / "fake_trainer.sh";
  std::ofstream(path) << R"(#!/bin/sh
out=""; mode=ok
while [ $# -gt 0 ]; do
  case "$1" in --out) out="$2"; shift;; --mode) mode="$2"; shift;; esac
  shift
done
echo start >> "$out/../starts"
printf '{"step":1,"epoch":0.5,"loss":2.0,"seconds":0.1}\n{"step":2,"epoch":1,"loss":1.0,"seconds":0.2}\n' > "$out/metrics.jsonl"
case "$mode" in
  fail) echo "fake: something broke" >&2; exit 3;;
  empty) : > "$out/summary.json";;
  cut) printf '{"trainer":"fake","sta' > "$out/summary.json";;
  nostatus) echo '{"trainer":"fake"}' > "$out/summary.json";;
  nan) echo '{"trainer":"fake","status":"diverged","steps":2,"val_loss":null,"train_loss":null,"complexity_points":0,"optimizer":"adam","loss_scale":"none","stack":"gemm=e2m1:rule=encode"}' > "$out/summary.json";;
  *) echo '{"trainer":"fake","status":"finished","steps":2,"val_loss":0.5,"train_loss":0.6,"complexity_points":0,"seconds":0.2,"optimizer":"adam","loss_scale":"none","stack":"gemm=e2m1:rule=encode"}' > "$out/summary.json";;
esac
)";
  fs::permissions(path, fs::perms::owner_all);
  return path;
}

int starts(const fs::path& root) {
  return count_lines(read_file(root / "starts"));
}

}  // namespace

TEST_CASE("the runner records failed and diverged runs, and a rerun skips runs with a summary") {
  const fs::path root = scratch_dir() / "runner";
  const SweepSpec spec = parse_sweep_text(R"(
trainer = "fake_trainer.sh"
stack = "pure-fp4-e8m0"
[grid]
mode = ["ok", "nan", "fail"]
)",
                                          "fake.toml");
  const Expansion e = expand_sweep(spec);
  REQUIRE(e.runs.size() == 3);
  const SweepOptions options{.jobs = 2, .out = root.string(), .trainer_path = fake_trainer()};
  CHECK(run_sweep(spec, e, options) == 1);
  CHECK(starts(root) == 3);
  const fs::path failed = root / e.runs[2].id;
  const std::string error = read_file(failed / "error.txt");
  CHECK(error.starts_with("exit status 3\n"));
  CHECK(error.find("fake: something broke") != std::string::npos);
  CHECK(
      read_file(failed / "command.txt").find("--mode fail --stack gemm=e2m1:rule=encode --out ") !=
      std::string::npos);

  RunResult ok = load_run(e.runs[0], root.string(), "fake");
  RunResult nan = load_run(e.runs[1], root.string(), "fake");
  RunResult fail = load_run(e.runs[2], root.string(), "fake");
  CHECK(ok.status == "finished");
  CHECK(ok.val_loss == 0.5);
  CHECK(nan.status == "diverged");
  CHECK(std::isnan(nan.val_loss));
  CHECK(fail.status == "failed");
  CHECK(fail.error == "exit status 3");

  // A rerun starts only the failed run; a run cut off before its summary starts over too.
  fs::remove(root / e.runs[0].id / "summary.json");
  CHECK(run_sweep(spec, e, options) == 1);
  CHECK(starts(root) == 5);

  write_reports(spec, e, root.string());
  const std::string csv = read_file(root / "runs.csv");
  CHECK(count_lines(csv) == 4);
  CHECK(csv.starts_with("id,role,mode,stack,status,val_loss,"));
  CHECK(csv.find(",finished,0.5,0.6,") != std::string::npos);
  CHECK(csv.find(",diverged,,,") != std::string::npos);
  CHECK(csv.find(",failed,") != std::string::npos);
}

// ---- The Slurm job array ----

namespace {

/// A trainer stand-in that records its arguments (the --out and --threads values as
/// placeholders) in argv.txt and fails with --mode fail.
fs::path recording_trainer() {
  const fs::path path = scratch_dir() / "recording_trainer.sh";
  std::ofstream(path) << R"(#!/bin/sh
out=""; mode=ok; args=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; args="$args|--out|OUT"; shift;;
    --threads) args="$args|--threads|N"; shift;;
    --mode) mode="$2"; args="$args|--mode|$2"; shift;;
    *) args="$args|$1";;
  esac
  shift
done
echo start >> "$out/../starts"
echo "$args" > "$out/argv.txt"
[ "$mode" = fail ] && { echo "fake: something broke" >&2; exit 3; }
echo '{"trainer":"fake","status":"finished","steps":2,"val_loss":0.5,"train_loss":0.6,"complexity_points":0,"seconds":0.2,"optimizer":"adam","loss_scale":"none","stack":"x"}' > "$out/summary.json"
)";
  fs::permissions(path, fs::perms::owner_all);
  return path;
}

/// Runs the script as Slurm would run array task `task` (with SLURM_CPUS_PER_TASK=2).
int run_array_task(const std::string& script, size_t task) {
  const std::string command = "SLURM_ARRAY_TASK_ID=" + std::to_string(task) +
                              " SLURM_CPUS_PER_TASK=2 bash '" + script + "' > /dev/null 2>&1";
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("--slurm writes a job array whose tasks run the local runner's commands") {
  const SweepSpec spec = parse_sweep_text(R"(
trainer = "recording_trainer.sh"
stack = "pure-fp4-e8m0"
[flags]
steps = 3
[grid]
mode = ["ok", "fail"]
scale = ["e8m0", "e4m3"]
[[baselines]]
stack = "bf16"
)",
                                          "fake.toml");
  const Expansion e = expand_sweep(spec);
  REQUIRE(e.runs.size() == 5);
  const fs::path local = scratch_dir() / "slurm-local", cluster = scratch_dir() / "slurm-cluster";
  SweepOptions options{.jobs = 2, .out = local.string(), .trainer_path = recording_trainer()};
  CHECK(run_sweep(spec, e, options) == 2);

  options.out = cluster.string();
  const SlurmOptions resources{.cpus_per_task = 2,
                               .memory = "2G",
                               .time = "1:30:00",
                               .partition = "short",
                               .max_parallel = 3};
  const std::string script = write_slurm_script(spec, e, options, resources);
  CHECK(script == (cluster / "sweep.sbatch").string());
  const std::string text = read_file(script);
  for (const char* line : {"#SBATCH --array=0-4%3\n", "#SBATCH --cpus-per-task=2\n",
                           "#SBATCH --mem=2G\n", "#SBATCH --time=1:30:00\n",
                           "#SBATCH --partition=short\n", "#SBATCH --job-name=lattice-fake\n"}) {
    CAPTURE(line);
    CHECK(text.find(line) != std::string::npos);
  }
  CHECK(text.find("--account") == std::string::npos);
  CHECK(text.find("--gpus-per-task") == std::string::npos);

  for (size_t i = 0; i < e.runs.size(); ++i) {
    CAPTURE(e.runs[i].id);
    const auto mode = e.runs[i].values.find("mode");  // baselines have no mode
    const bool fails = mode != e.runs[i].values.end() && mode->second == "fail";
    CHECK(run_array_task(script, i) == (fails ? 1 : 0));
    // The same trainer arguments, in the same order, as the local runner gave this run.
    CHECK(read_file(cluster / e.runs[i].id / "argv.txt") ==
          read_file(local / e.runs[i].id / "argv.txt"));
    CHECK(read_file(cluster / e.runs[i].id / "command.txt").find("--threads 2") !=
          std::string::npos);
    if (fails) {
      const std::string error = read_file(cluster / e.runs[i].id / "error.txt");
      CHECK(error.starts_with("exit status 3\n"));
      CHECK(error.find("fake: something broke") != std::string::npos);
    }
  }
  CHECK(count_lines(read_file(cluster / "starts")) == 5);
  // A finished task is not run again; a task outside the array is refused.
  CHECK(run_array_task(script, 0) == 0);
  CHECK(count_lines(read_file(cluster / "starts")) == 5);
  CHECK(run_array_task(script, 5) == 2);

  // Collecting the results gives the local runner's report.
  write_reports(spec, e, local.string());
  write_reports(spec, e, cluster.string());
  CHECK(read_file(cluster / "runs.csv") == read_file(local / "runs.csv"));

  CHECK_THROWS_WITH_AS(write_slurm_script(spec, e, options, SlurmOptions{.time = "soon"}),
                       "[sweep] --time \"soon\": expected minutes, HH:MM:SS or D-HH:MM:SS",
                       lattice::Error);
  options.out = (scratch_dir() / "two words").string();
  CHECK_THROWS_WITH_AS(write_slurm_script(spec, e, options, resources),
                       doctest::Contains("a Slurm script needs a path without spaces"),
                       lattice::Error);
}

TEST_CASE("the runner counts a run done only when its summary.json parses and has a status") {
  const fs::path root = scratch_dir() / "runner-summaries";
  const SweepSpec spec = parse_sweep_text(R"(
trainer = "fake_trainer.sh"
stack = "pure-fp4-e8m0"
[grid]
mode = ["ok", "empty", "cut", "nostatus"]
)",
                                          "fake.toml");
  const Expansion e = expand_sweep(spec);
  REQUIRE(e.runs.size() == 4);
  const SweepOptions options{.jobs = 1, .out = root.string(), .trainer_path = fake_trainer()};
  CHECK(run_sweep(spec, e, options) == 3);
  CHECK(starts(root) == 4);
  for (size_t i = 1; i < 4; ++i)
    CHECK(read_file(root / e.runs[i].id / "error.txt")
              .starts_with("exit status 0 but no summary.json with a status\n"));
  // A rerun starts the three again, not the finished one.
  CHECK(run_sweep(spec, e, options) == 3);
  CHECK(starts(root) == 7);
}

// ---- Score, Table 3 rows and the Pareto frontier on synthetic results ----

namespace {

RunResult result(const std::string& id,
                 const std::string& role,
                 const std::string& stack,
                 double val_loss,
                 double cp,
                 const std::string& optimizer = "adam") {
  RunResult r{.id = id, .role = role, .dataset = "toy", .stack = stack};
  r.status = std::isnan(val_loss) ? "diverged" : "finished";
  r.val_loss = val_loss;
  r.complexity_points = cp;
  r.optimizer = optimizer;
  if (role == "baseline") r.baseline = stack == "w=bf16,a=bf16,g=bf16" ? "bf16" : "fp32";
  return r;
}

}  // namespace

TEST_CASE("Score is against the best bf16 baseline; Table 3 rows pick by score, loss and purity") {
  const std::string bf16 = "w=bf16,a=bf16,g=bf16", e8m0 = "gemm=e2m1:rule=encode",
                    e4m3 = "gemm=e2m1:b16:scale=e4m3:rule=encode";
  std::vector<RunResult> runs = {
      result("bf16-adam", "baseline", bf16, 1.0, 0),
      result("bf16-spam", "baseline", bf16, 0.9, 0.5, "stablespam"),
      result("fp32", "baseline", "fp32", 0.8, 0),  // better, but not the bf16 reference
      result("e8m0-pure", "grid", e8m0, 1.2, 0),
      result("e8m0-ts", "grid", e8m0 + ":ts", 0.85, 0.5),
      result("e8m0-sr", "grid", e8m0 + ",gemm.sr=all", 0.95, 0.5),
      result("e8m0-ts-sr-spam", "grid", e8m0 + ":ts,gemm.sr=all", 0.8, 1.5, "stablespam"),
      result("e4m3-pure", "grid", e4m3, NAN, 0),
      result("e4m3-ts", "grid", e4m3 + ":ts", 0.99, 0.5),
  };
  const auto refs = score_runs(runs);
  CHECK(refs.at("toy") == 0.9);
  CHECK(runs[3].score == doctest::Approx(-0.3 / 0.9));       // cp 0 counts as 1
  CHECK(runs[4].score == doctest::Approx(0.05 / 0.9));       // diff / max(cp, 1)
  CHECK(runs[6].score == doctest::Approx(0.1 / 0.9 / 1.5));  // a better loss divided by cp
  CHECK(std::isnan(runs[7].score));                          // diverged: no score
  CHECK(std::isnan(runs[0].score));                          // baselines are not scored

  std::vector<std::string> rows;
  for (const TableRow& row : select_table_rows(runs, "toy"))
    rows.push_back(row.source + ":" + row.run->id);
  CHECK(rows == std::vector<std::string>{
                    "Baseline bf16:bf16-adam", "Baseline bf16:bf16-spam", "Baseline fp32:fp32",
                    "Best Score (Neg):e8m0-sr", "Best Score (Neg):e4m3-ts",
                    "Best Score (Pos):e8m0-ts-sr-spam", "Best loss E8M0:e8m0-ts-sr-spam",
                    "Best loss E4M3:e4m3-ts", "Pure FP4:e8m0-pure", "Pure FP4:e4m3-pure"});

  const std::string table = table_markdown(runs, refs);
  CHECK(table.starts_with(
      "| Dataset | Source | Val loss | Train loss | Scale | Block size | Max grad. |"));
  CHECK(table.find("| toy | Pure FP4 | NaN (diverged) |") != std::string::npos);
  CHECK(
      table.find("| E4M3 | 16 | STE | STE | N/A | STE | None | Adam | False | TiesToEven | True | "
                 "ignore | 0.50 | -0.100 | nearest_subnormal | e4m3-ts |") != std::string::npos);
  CHECK(table.find("ref = 0.9 (best bf16 baseline val loss)") != std::string::npos);
}

TEST_CASE("the Pareto frontier keeps the points no cheaper-or-equal point beats") {
  const std::vector<ScatterPoint> points = {{0, -1, "a"},   {0.5, 0.1, "a"}, {0.5, -0.2, "a"},
                                            {1, 0.05, "b"}, {2, 0.3, "b"},   {0.25, NAN, "b"},
                                            {3, 0.3, "b"}};
  CHECK(pareto_frontier(points) == std::vector<size_t>{0, 1, 4});
}

// ---- Real trainer, through the lattice tool ----

namespace {

lattice::test::ProgramResult lattice_tool(const std::string& args) {
  return lattice::test::run_program(LATTICE_TOOL, args);
}

}  // namespace

TEST_CASE("a tiny regression sweep runs end to end, resumes, and lattice plot draws its runs") {
  const fs::path dir = scratch_dir() / "e2e";
  fs::create_directories(dir);
  const fs::path file = dir / "tiny.toml";
  std::ofstream(file) << "trainer = \"" << LATTICE_BIN_DIR << "/regression\"\n"
                      << "out = \"" << (dir / "out").string() << "\"\n"
                      << R"(
stack = "pure-fp4-e8m0"
[flags]
rows = 640
features = 32
batch = 64
steps = 4
[grid]
scale = ["e8m0", "e4m3"]
tensor_scale = [false, true]
[[baselines]]
stack = "bf16"
)";
  lattice::test::ProgramResult run = lattice_tool("sweep " + file.string() + " -j 2");
  CAPTURE(run.err);
  REQUIRE(run.status == 0);
  CHECK(run.err.find("5 runs, 0 finished before, 5 to run (-j 2") != std::string::npos);
  const std::string csv = read_file(dir / "out" / "runs.csv");
  CHECK(count_lines(csv) == 6);
  CHECK(csv.starts_with("id,role,scale,tensor_scale,stack,status,"));
  const std::string table = read_file(dir / "out" / "table.md");
  CHECK(table.find("| tiny | Baseline bf16 |") == std::string::npos);  // dataset: trainer name
  CHECK(table.find("| regression | Baseline bf16 |") != std::string::npos);
  CHECK(table.find("| regression | Pure FP4 |") != std::string::npos);
  CHECK(table.find("5 finished") != std::string::npos);
  CHECK(run.out == table);

  run = lattice_tool("sweep " + file.string());
  CHECK(run.status == 0);
  CHECK(run.err.find("5 runs, 5 finished before, 0 to run") != std::string::npos);
  run = lattice_tool("sweep --report-only " + file.string());
  CHECK(run.status == 0);
  CHECK(run.out == table);

  std::vector<std::string> folders;
  for (const auto& entry : fs::directory_iterator(dir / "out"))
    if (entry.is_directory()) folders.push_back(entry.path().string());
  std::sort(folders.begin(), folders.end());
  REQUIRE(folders.size() == 5);
  const fs::path image = dir / "two.png";
  run = lattice_tool("plot " + folders[0] + " " + folders[1] + " --metric loss,val_loss --out " +
                     image.string() + " --title 'two runs'");
  if (!gnuplot_available()) {
    MESSAGE("gnuplot not installed: the plot image is not checked");
    return;
  }
  CAPTURE(run.err);
  CHECK(run.status == 0);
  CHECK(fs::file_size(image) > 1000);
  CHECK(run.out.starts_with("| run | trainer | stack | status | steps |"));
  CHECK(run.out.find("| " + fs::path(folders[0]).filename().string() + " | regression | `") !=
        std::string::npos);
  CHECK(fs::exists(dir / "out" / "pareto.png"));
  CHECK(fs::exists(dir / "out" / "curves.png"));
}

TEST_CASE("lattice sweep and plot fail with one line and status 2 on bad input") {
  const fs::path file = scratch_dir() / "bad.toml";
  std::ofstream(file) << "trainer = \"mnist\"\n[grid]\nlerning_rate = [1, 2]\n";
  lattice::test::ProgramResult run = lattice_tool("sweep " + file.string() + " --dry-run");
  CHECK(run.status == 2);
  CHECK(run.err == "lattice: [sweep] " + file.string() +
                       ": grid.lerning_rate: the trainer mnist has no flag --lerning-rate\n");
  // --data is a flag of its own even where --dataset comes first in the trainer's help.
  const fs::path data_flag = scratch_dir() / "data-flag.toml";
  std::ofstream(data_flag) << "trainer = \"cifar\"\n[flags]\ndata = \"somewhere\"\n";
  run = lattice_tool("sweep " + data_flag.string() + " --dry-run");
  CHECK(run.status == 0);
  CHECK(run.out.find("--data somewhere") != std::string::npos);
  run = lattice_tool("sweep " + file.string() + " --mem 4G");
  CHECK(run.status == 2);
  CHECK(run.err.find("--mem requires --slurm") != std::string::npos);
  run = lattice_tool("plot " + (scratch_dir() / "no-such-run").string());
  CHECK(run.status == 2);
  CHECK(run.err.find("metrics.jsonl: no such file") != std::string::npos);
  CHECK(count_lines(run.err) == 1);
}
