// LR schedules and their spec parser.
#include "optim/schedule.h"

#include <charconv>
#include <cmath>
#include <sstream>
#include <vector>

namespace lattice::optim {
namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, separator)) parts.push_back(part);
  if (!text.empty() && text.back() == separator) parts.emplace_back();
  return parts;
}

struct SpecReader {
  const std::string& spec;
  const std::string& item;

  [[noreturn]] void fail(const std::string& why) const {
    throw Error(concat("[schedule] \"", spec, "\": item \"", item, "\" ", why,
                       " (grammar: [warmup:N,]constant|cosine[:MIN]|linear[:MIN], or "
                       "wsd:N:F[:MIN])"));
  }
  int64_t steps(const std::string& text) const {
    int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value < 0)
      fail(concat("has \"", text, "\" where a step count >= 0 was expected"));
    return value;
  }
  double fraction(const std::string& text) const {
    double value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || !(value >= 0 && value <= 1))
      fail(concat("has \"", text, "\" where a number in [0, 1] was expected"));
    return value;
  }
};

/// The shortest decimal that reads back to `value`.
std::string shortest(double value) {
  char text[32];
  const auto result = std::to_chars(text, text + sizeof text, value);
  return std::string(text, result.ptr);
}

}  // namespace

double Schedule::multiplier(int64_t step) const {
  // A negative step (a corrupt checkpoint, a caller's off-by-one) would divide 0 by 0 in a
  // zero-length warmup and train on a NaN learning rate.
  LATTICE_CHECK(step >= 0, "[schedule] step ", step,
                ", expected >= 0 (steps count updates from 0)");
  if (step < warmup_steps) return double(step + 1) / double(warmup_steps);
  const double floor = min_multiplier;
  switch (shape) {
    case Shape::constant:
      return 1.0;
    case Shape::cosine:
    case Shape::linear: {
      const int64_t span = total_steps - warmup_steps;
      if (span <= 0) return floor;
      const double progress = std::min(1.0, double(step - warmup_steps) / double(span));
      const double pi = std::acos(-1.0);
      const double fall = shape == Shape::cosine ? (1 + std::cos(pi * progress)) / 2 : 1 - progress;
      return floor + (1 - floor) * fall;
    }
    case Shape::wsd: {
      const int64_t decay_steps = std::llround(decay_fraction * double(total_steps));
      const int64_t decay_start = std::max(warmup_steps, total_steps - decay_steps);
      if (step < decay_start) return 1.0;
      const int64_t span = total_steps - decay_start;
      if (span <= 0) return floor;
      const double progress = std::min(1.0, double(step - decay_start) / double(span));
      return floor + (1 - floor) * (1 - progress);
    }
  }
  return 1.0;
}

Schedule parse_schedule(const std::string& spec, int64_t total_steps) {
  Schedule schedule;
  schedule.total_steps = total_steps;
  bool have_warmup = false, have_shape = false;
  const std::vector<std::string> items =
      spec.empty() ? std::vector<std::string>{"constant"} : split(spec, ',');
  for (const std::string& item : items) {
    const SpecReader reader{spec, item};
    const std::vector<std::string> fields = split(item, ':');
    const std::string& kind = fields.empty() ? item : fields[0];
    auto arity = [&](size_t low, size_t high) {
      if (fields.size() < low + 1 || fields.size() > high + 1)
        reader.fail(low == high ? concat("takes ", low, " argument(s)")
                                : concat("takes ", low, " to ", high, " arguments"));
    };
    if (kind == "warmup") {
      arity(1, 1);
      if (have_warmup) reader.fail("repeats the warmup");
      schedule.warmup_steps = reader.steps(fields[1]);
      have_warmup = true;
      continue;
    }
    if (have_shape) reader.fail("adds a second shape");
    have_shape = true;
    if (kind == "constant") {
      arity(0, 0);
    } else if (kind == "cosine" || kind == "linear") {
      arity(0, 1);
      schedule.shape = kind == "cosine" ? Schedule::Shape::cosine : Schedule::Shape::linear;
      if (fields.size() == 2) schedule.min_multiplier = reader.fraction(fields[1]);
    } else if (kind == "wsd") {
      arity(2, 3);
      if (have_warmup) reader.fail("repeats the warmup (wsd:N:F carries its own)");
      schedule.shape = Schedule::Shape::wsd;
      schedule.warmup_steps = reader.steps(fields[1]);
      schedule.decay_fraction = reader.fraction(fields[2]);
      if (fields.size() == 4) schedule.min_multiplier = reader.fraction(fields[3]);
    } else {
      reader.fail("is not one of warmup, constant, cosine, linear, wsd");
    }
    if (schedule.shape != Schedule::Shape::constant && total_steps <= 0)
      reader.fail("needs the run's total step count (> 0)");
  }
  return schedule;
}

std::string to_string(const Schedule& s) {
  std::ostringstream out;
  if (s.shape == Schedule::Shape::wsd) {
    out << "wsd:" << s.warmup_steps << ":" << shortest(s.decay_fraction);
    if (s.min_multiplier != 0) out << ":" << shortest(s.min_multiplier);
    return out.str();
  }
  if (s.warmup_steps > 0) out << "warmup:" << s.warmup_steps << ",";
  switch (s.shape) {
    case Schedule::Shape::constant:
      out << "constant";
      break;
    case Schedule::Shape::cosine:
    case Schedule::Shape::linear:
      out << (s.shape == Schedule::Shape::cosine ? "cosine" : "linear");
      if (s.min_multiplier != 0) out << ":" << shortest(s.min_multiplier);
      break;
    case Schedule::Shape::wsd:
      break;
  }
  return out.str();
}

void apply_schedule(const Schedule& schedule, Optimizer& optimizer, int64_t step) {
  optimizer.set_lr_multiplier(schedule.multiplier(step));
}

}  // namespace lattice::optim
