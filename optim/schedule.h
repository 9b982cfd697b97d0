// Learning-rate schedules as multipliers of each group's base lr: constant, linear warmup,
// cosine and linear decay to a floor, warmup-stable-decay; parsed from a short spec string.
#pragma once

#include <cstdint>
#include <string>

#include "optim/optimizer.h"

namespace lattice::optim {

/// Spec grammar (items separated by commas, at most one warmup and one shape):
///   constant            multiplier 1 (the default shape)
///   warmup:N            linear warmup over the first N steps: (s+1)/N for s < N
///   cosine[:MIN]        cosine from 1 down to MIN (default 0) between the warmup's end and
///                       total_steps
///   linear[:MIN]        the same, linear
///   wsd:N:F[:MIN]       warmup N steps, hold 1, then decay linearly to MIN (default 0) over
///                       the last fraction F of total_steps (warmup-stable-decay)
/// Examples: "constant", "cosine", "warmup:100,cosine:0.1", "wsd:100:0.2".
/// Steps s count optimizer updates from 0; past total_steps the multiplier stays at MIN.
struct Schedule {
  enum class Shape { constant, cosine, linear, wsd };
  Shape shape = Shape::constant;
  int64_t warmup_steps = 0;
  double min_multiplier = 0.0;  // cosine, linear, wsd: the floor reached at total_steps
  double decay_fraction = 0.0;  // wsd: the share of total_steps spent decaying
  int64_t total_steps = 0;      // needed by every shape but constant

  /// The lr multiplier for update `step` (0-based). Throws lattice::Error on a negative step.
  double multiplier(int64_t step) const;
};

/// Parses `spec` (grammar above). total_steps is the run's length in updates; cosine, linear
/// and wsd need it > 0. Throws a one-line lattice::Error quoting the spec and the bad item.
Schedule parse_schedule(const std::string& spec, int64_t total_steps = 0);

/// The canonical spec, read back by parse_schedule to the same schedule.
std::string to_string(const Schedule& schedule);

/// Sets every group's lr of `optimizer` to base_lr * schedule.multiplier(step).
void apply_schedule(const Schedule& schedule, Optimizer& optimizer, int64_t step);

}  // namespace lattice::optim
