// What the benchmarks share: `--flag value` parsing with one-line errors (and the step
// benchmarks' --steps/--warmup/--stack), a timed step loop (warm-up steps uncounted, times
// sorted) and the peak resident memory.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/text.h"
#include "kernels/device_memory.h"
#include "ops/quantized_gemm.h"
#include "tensor/precision_stack.h"

namespace lattice::bench {

/// A benchmark's flags: name (without "--") -> its value as text, preset with the default.
using Flags = std::map<std::string, std::string>;

/// Reads `--name value` pairs into `flags`. On an unknown flag or a missing value prints
/// "<program>: ..." naming the known flags and returns false.
inline bool parse_flags(int argc, char** argv, const char* program, Flags& flags) {
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    const auto found = flag.starts_with("--") ? flags.find(flag.substr(2)) : flags.end();
    if (found == flags.end() || i + 1 >= argc) {
      std::string known;
      for (const auto& [name, value] : flags) known += (known.empty() ? "--" : ", --") + name;
      std::fprintf(stderr, "%s: %s %s (known: %s, each followed by a value)\n", program,
                   found == flags.end() ? "unknown flag" : "no value after", flag.c_str(),
                   known.c_str());
      return false;
    }
    found->second = argv[i + 1];
  }
  return true;
}

/// The integer >= `minimum` in flags[name]; prints "<program>: ..." and returns nullopt
/// otherwise.
inline std::optional<int64_t> integer_flag(const Flags& flags,
                                           const std::string& name,
                                           const char* program,
                                           int64_t minimum) {
  const std::string& text = flags.at(name);
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < minimum) {
    std::fprintf(stderr, "%s: --%s \"%s\": expected an integer >= %lld\n", program, name.c_str(),
                 text.c_str(), (long long)minimum);
    return std::nullopt;
  }
  return value;
}

/// The device --device names ("cpu" or "cuda"); prints "<program>: ..." and returns nullopt
/// otherwise, or for cuda without a usable GPU.
inline std::optional<Device> device_flag(const Flags& flags, const char* program) {
  const std::string& text = flags.at("device");
  if (text == "cpu") return Device::cpu;
  if (text == "cuda" && cuda_available()) return Device::cuda;
  std::fprintf(stderr, "%s: --device \"%s\": expected cpu or cuda (cuda needs a usable GPU)\n",
               program, text.c_str());
  return std::nullopt;
}

/// Sets the process's GEMM path from flags["gemm"] (auto, exact-fp32 or fp8-blocks,
/// ops/quantized_gemm.h); prints "<program>: ..." and returns false on another value.
inline bool apply_gemm_flag(const Flags& flags, const char* program) {
  try {
    set_gemm_path(parse_gemm_path(flags.at("gemm")));
    return true;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: --gemm: %s\n", program, e.what());
    return false;
  }
}

/// The flags of a step benchmark: --steps, --warmup, --stack (one stack, or several where the
/// benchmark interleaves them), --device, --gemm, and the benchmark's own (`all` holds every
/// flag's text).
struct StepFlags {
  int64_t steps = 0, warmup = 0;
  PrecisionStack stack;                // the first of `stacks`
  std::vector<PrecisionStack> stacks;  // --stack SPEC;SPEC;... where the benchmark takes several
  Device device = Device::cpu;
  Flags all;
};

/// Parses --steps (>= 1), --warmup (>= 0), --stack SPEC, --device, --gemm and the benchmark's own
/// `extra` flags with these defaults; prints "<program>: ..." and returns nullopt on any error.
/// With `several_stacks`, --stack takes specs separated by ';'.
inline std::optional<StepFlags> parse_step_flags(int argc,
                                                 char** argv,
                                                 const char* program,
                                                 int64_t default_steps,
                                                 int64_t default_warmup,
                                                 Flags extra = {},
                                                 bool several_stacks = false) {
  Flags flags = std::move(extra);
  flags.insert({{"steps", std::to_string(default_steps)},
                {"warmup", std::to_string(default_warmup)},
                {"stack", "fp32"},
                {"device", "cpu"},
                {"gemm", "auto"}});
  if (!parse_flags(argc, argv, program, flags) || !apply_gemm_flag(flags, program))
    return std::nullopt;
  const std::optional<int64_t> steps = integer_flag(flags, "steps", program, 1);
  const std::optional<int64_t> warmup = integer_flag(flags, "warmup", program, 0);
  const std::optional<Device> device = device_flag(flags, program);
  if (!steps || !warmup || !device) return std::nullopt;
  try {
    std::vector<PrecisionStack> stacks;
    for (const std::string& spec :
         several_stacks ? split(flags["stack"], ';') : std::vector<std::string>{flags["stack"]})
      stacks.push_back(parse_precision_stack(spec));
    LATTICE_CHECK(!stacks.empty(), "[bench] --stack names no stack");
    return StepFlags{*steps, *warmup, stacks.front(), stacks, *device, flags};
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return std::nullopt;
  }
}

/// Runs step() warmup + steps times; returns the counted steps' milliseconds, sorted.
template <typename Step>
std::vector<double> time_steps(int64_t warmup, int64_t steps, Step&& step) {
  std::vector<double> times;
  for (int64_t i = 0; i < warmup + steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    step();
    const std::chrono::duration<double, std::milli> elapsed =
        std::chrono::steady_clock::now() - start;
    if (i >= warmup) times.push_back(elapsed.count());
  }
  std::sort(times.begin(), times.end());
  return times;
}

/// Runs step(i), the step of stacks[i] under that stack's scope, for every stack in turn,
/// warmup + steps rounds, so that drift in the machine's speed hits the stacks alike. Returns
/// each stack's counted milliseconds, sorted.
template <typename Step>
std::vector<std::vector<double>> time_interleaved_steps(const std::vector<PrecisionStack>& stacks,
                                                        int64_t warmup,
                                                        int64_t steps,
                                                        Step&& step) {
  std::vector<std::vector<double>> times(stacks.size());
  for (int64_t round = 0; round < warmup + steps; ++round)
    for (size_t i = 0; i < stacks.size(); ++i) {
      PrecisionScope scope(stacks[i]);
      const auto start = std::chrono::steady_clock::now();
      step(i);
      const std::chrono::duration<double, std::milli> elapsed =
          std::chrono::steady_clock::now() - start;
      if (round >= warmup) times[i].push_back(elapsed.count());
    }
  for (std::vector<double>& run : times) std::sort(run.begin(), run.end());
  return times;
}

inline double median(const std::vector<double>& sorted) {
  return sorted[sorted.size() / 2];
}

inline double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;
}

}  // namespace lattice::bench
